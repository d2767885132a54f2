import { fileURLToPath } from "node:url";
import { Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as apigateway from "aws-cdk-lib/aws-apigateway";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import type * as nodejs from "aws-cdk-lib/aws-lambda-nodejs";
import * as logs from "aws-cdk-lib/aws-logs";
import { Construct } from "constructs";
import type { ErrorCode } from "../core/errors";
import { CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS } from "../functions/cors";
import { AUTH_CONTEXT_KEYS, ROUTES, type RouteSpec } from "../functions/routes";
import { TOKEN_PATTERN } from "../store/tokens";
import type { JobLifecycle } from "./job-lifecycle";
import {
  type JobqRuntime,
  jobqFunction,
  type RuntimeSettings,
  runtimeEnvironment,
  validateRuntimeProps,
} from "./jobq-function";
import { jobqMetric } from "./jobq-metrics";
import { checkDuration, checkName, checkNumber } from "./validate-props";

/** functions/api of this repository: one module per route, exporting `handler`. */
export const DEFAULT_HANDLERS_DIR = fileURLToPath(new URL("../functions/api", import.meta.url));
const AUTHORIZER_ENTRY = fileURLToPath(new URL("../functions/authorizer.ts", import.meta.url));

/**
 * The jobs, nodes and policy tables, the event bus and the queues come from JobqRuntime: each route
 * function gets exactly its route's actions (functions/routes.ts) on them. The pools go to the
 * handlers as JOBQ_POOLS (submit refuses jobs no pool can fit), the job types as JOBQ_TASK_TYPES.
 */
export interface JobApiProps extends JobqRuntime {
  /** The executions that submit and resume start and cancel and pause stop. */
  readonly lifecycle: JobLifecycle;
  /**
   * Directory of the route handler modules, `<handler>.ts` per route of functions/routes.ts.
   * @default DEFAULT_HANDLERS_DIR (functions/api)
   */
  readonly handlersDir?: string;
  /**
   * The stage, and so the first segment of every URL path: letters, digits, - and _, up to 128.
   * @default "v1"
   */
  readonly stageName?: string;
  /**
   * Steady-state requests per second the stage admits across all methods before answering 429.
   * @default 100
   */
  readonly throttlingRateLimit?: number;
  /**
   * Requests the stage admits in a burst above the rate.
   * @default 200
   */
  readonly throttlingBurstLimit?: number;
  /**
   * How long API Gateway reuses an authorizer decision for the same token. Longer saves
   * authorizer calls and DynamoDB reads; a revoked token keeps working for up to this long.
   * At most an hour (API Gateway's limit).
   * @default Duration.minutes(5)
   */
  readonly authorizerCacheTtl?: Duration;
  /**
   * Memory of every API function, 128 to 10,240 MB.
   * @default 512
   */
  readonly memorySize?: number;
  /**
   * Timeout of every API function, at most 29 s: API Gateway itself gives up then, so a longer one
   * would only keep a function running for an answer nobody receives.
   * @default Duration.seconds(10)
   */
  readonly timeout?: Duration;
  /**
   * How long function and access logs are kept.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * What happens to the log groups when they leave the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** The documented limits of JobApiProps (and the runtime settings), checked at synth. */
export function validateJobApiProps(
  scope: Construct,
  props: Pick<
    JobApiProps,
    | "stageName"
    | "throttlingRateLimit"
    | "throttlingBurstLimit"
    | "authorizerCacheTtl"
    | "memorySize"
    | "timeout"
  > &
    RuntimeSettings,
): void {
  validateRuntimeProps(scope, props);
  checkName(scope, "stageName", props.stageName, {
    pattern: /^[A-Za-z0-9_-]+$/,
    maxLength: 128,
    describe: "letters, digits, - and _",
  });
  checkNumber(scope, "throttlingRateLimit", props.throttlingRateLimit, { min: 0 });
  checkNumber(scope, "throttlingBurstLimit", props.throttlingBurstLimit, { min: 0, integer: true });
  checkDuration(scope, "authorizerCacheTtl", props.authorizerCacheTtl, {
    max: Duration.hours(1),
    why: "API Gateway's limit",
  });
  checkNumber(scope, "memorySize", props.memorySize, { min: 128, max: 10_240, integer: true, unit: " MB" });
  checkDuration(scope, "timeout", props.timeout, {
    min: Duration.seconds(1),
    max: Duration.seconds(29),
    why: "API Gateway's integration timeout",
  });
}

/** The module a route's function is built from. */
export function handlerEntry(route: RouteSpec, handlersDir: string = DEFAULT_HANDLERS_DIR): string {
  return `${handlersDir}/${route.handler}.ts`;
}

/** A gateway response body in the contract's error format (API.md). */
function errorBody(code: ErrorCode, message: string | undefined, details?: string): string {
  // $context.error.messageString is API Gateway's message already quoted and escaped as JSON.
  const messageJson = message === undefined ? "$context.error.messageString" : JSON.stringify(message);
  const detailsJson = details ? `,"details":${details}` : "";
  return `{"error":{"code":"${code}","message":${messageJson}${detailsJson}}}`;
}

interface GatewayError {
  readonly type: apigateway.ResponseType;
  readonly statusCode: string;
  readonly code: ErrorCode;
  /** @default - API Gateway's own message */
  readonly message?: string;
  readonly details?: string;
  readonly headers?: Record<string, string>;
}

/** What API Gateway answers itself (before or instead of a function), in the contract's terms. */
const GATEWAY_ERRORS: readonly GatewayError[] = [
  {
    type: apigateway.ResponseType.UNAUTHORIZED,
    statusCode: "401",
    code: "unauthorized",
    message: "missing or unknown bearer token",
  },
  // The authorizer never denies (it throws instead), but a Deny must not become a 403 that
  // tells a caller more than "your token is no good".
  {
    type: apigateway.ResponseType.ACCESS_DENIED,
    statusCode: "401",
    code: "unauthorized",
    message: "missing or unknown bearer token",
  },
  // API Gateway's answer to a path or method it has no resource for.
  {
    type: apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN,
    statusCode: "404",
    code: "not_found",
    message: "no route matches this method and path",
  },
  {
    type: apigateway.ResponseType.REQUEST_TOO_LARGE,
    statusCode: "413",
    code: "payload_too_large",
    message: "request body too large",
  },
  {
    type: apigateway.ResponseType.THROTTLED,
    statusCode: "429",
    code: "too_many_requests",
    message: "too many requests",
    // The token bucket refills at the stage rate each second.
    headers: { "Retry-After": "'1'" },
  },
  {
    type: apigateway.ResponseType.DEFAULT_4XX,
    statusCode: "400",
    code: "validation_failed",
  },
  {
    type: apigateway.ResponseType.DEFAULT_5XX,
    statusCode: "500",
    code: "internal",
    message: "internal error",
    details: '{"requestId":"$context.requestId"}',
  },
];

/** Exactly what the route's spec says its handler does, and nothing else. */
function grantRoute(fn: nodejs.NodejsFunction, route: RouteSpec, props: JobApiProps): void {
  props.store.grantJobs(fn, route.jobsTable);
  props.store.grantNodes(fn, route.nodesTable ?? []);
  props.store.grantPolicy(fn, route.policyTable ?? []);
  props.store.grantTokens(fn, route.tokensTable ?? []);
  const states = new Set(route.states);
  if (states.has("states:StartExecution")) props.lifecycle.grantStartExecution(fn);
  if (states.has("states:StopExecution")) props.lifecycle.grantStopExecution(fn);
  if (route.publishesEvents) props.eventBus.grantPutEventsTo(fn);
}

/**
 * The HTTP API: a REST API (API Gateway v1, which LocalStack's free tier serves too) with one
 * Lambda function per route of functions/routes.ts, each allowed exactly its route's actions
 * (tables, executions, events), and a TOKEN authorizer in front of every route but GET /health
 * and GET /openapi.json.
 */
export class JobApi extends Construct {
  public readonly api: apigateway.RestApi;
  /** The function of each route, by route id. */
  public readonly functions: Readonly<Record<string, nodejs.NodejsFunction>>;
  public readonly authorizerFunction: nodejs.NodejsFunction;
  public readonly authorizer: apigateway.TokenAuthorizer;
  public readonly accessLogGroup: logs.LogGroup;
  /** The stage's base URL, ending in `/`. */
  public readonly url: string;
  /**
   * `https://<api id>.execute-api.<region>.<suffix>`: the URL's origin without the stage, so a
   * page's Content-Security-Policy can name it without depending on the stage (and so on the
   * functions behind it).
   */
  public readonly origin: string;
  /** The stage's name: `${origin}/${stageName}/` is `url` without a dependency on the stage. */
  public readonly stageName: string;
  private readonly gatewayResponses: apigateway.GatewayResponse[] = [];
  /** The methods of each resource that has routes. */
  private readonly routeMethods = new Map<apigateway.Resource, RouteSpec["method"][]>();

  constructor(scope: Construct, id: string, props: JobApiProps) {
    super(scope, id);
    validateJobApiProps(this, props);
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const logRemovalPolicy = props.logRemovalPolicy ?? RemovalPolicy.RETAIN;
    const handlersDir = props.handlersDir ?? DEFAULT_HANDLERS_DIR;
    this.stageName = props.stageName ?? "v1";

    const logGroup = (logicalId: string): logs.LogGroup =>
      new logs.LogGroup(this, logicalId, { retention: logRetention, removalPolicy: logRemovalPolicy });

    const newFunction = (
      functionId: string,
      entry: string,
      environment: Record<string, string>,
    ): nodejs.NodejsFunction =>
      jobqFunction(this, functionId, {
        entry,
        environment,
        memorySize: props.memorySize ?? 512,
        timeout: props.timeout ?? Duration.seconds(10),
        logRetention,
        logRemovalPolicy,
      });

    this.accessLogGroup = logGroup("AccessLogs");
    this.api = new apigateway.RestApi(this, "Api", {
      description: "jobq HTTP API",
      // Regional: clients call it directly; an edge endpoint adds a CloudFront hop that caches nothing here.
      endpointTypes: [apigateway.EndpointType.REGIONAL],
      // Access logging needs the account-level CloudWatch role; a fresh account has none.
      cloudWatchRole: true,
      deployOptions: {
        stageName: this.stageName,
        throttlingRateLimit: props.throttlingRateLimit ?? 100,
        throttlingBurstLimit: props.throttlingBurstLimit ?? 200,
        tracingEnabled: true,
        // Execution logs would copy request bodies (payloads) into CloudWatch; access logs do not.
        dataTraceEnabled: false,
        accessLogDestination: new apigateway.LogGroupLogDestination(this.accessLogGroup),
        accessLogFormat: apigateway.AccessLogFormat.custom(
          JSON.stringify({
            requestId: apigateway.AccessLogField.contextRequestId(),
            requestTime: apigateway.AccessLogField.contextRequestTime(),
            sourceIp: apigateway.AccessLogField.contextIdentitySourceIp(),
            httpMethod: apigateway.AccessLogField.contextHttpMethod(),
            resourcePath: apigateway.AccessLogField.contextResourcePath(),
            path: apigateway.AccessLogField.contextPath(),
            status: apigateway.AccessLogField.contextStatus(),
            responseLength: apigateway.AccessLogField.contextResponseLength(),
            responseLatency: apigateway.AccessLogField.contextResponseLatency(),
            integrationLatency: apigateway.AccessLogField.contextIntegrationLatency(),
            principal: apigateway.AccessLogField.contextAuthorizer(AUTH_CONTEXT_KEYS.principal),
            errorType: apigateway.AccessLogField.contextErrorResponseType(),
            errorMessage: apigateway.AccessLogField.contextErrorMessage(),
            authorizerError: apigateway.AccessLogField.contextAuthorizerError(),
            xrayTraceId: apigateway.AccessLogField.contextXrayTraceId(),
          }),
        ),
      },
    });
    this.url = this.api.url;
    const stack = Stack.of(this);
    this.origin = `https://${this.api.restApiId}.execute-api.${stack.region}.${stack.urlSuffix}`;

    for (const e of GATEWAY_ERRORS) {
      const response = this.api.addGatewayResponse(`${e.type.responseType}Response`, {
        type: e.type,
        statusCode: e.statusCode,
        templates: { "application/json": errorBody(e.code, e.message, e.details) },
        responseHeaders: e.headers,
      });
      this.gatewayResponses.push(response);
    }

    this.authorizerFunction = newFunction("Authorizer", AUTHORIZER_ENTRY, {
      JOBQ_TOKENS_TABLE: props.store.tokensTable.tableName,
    });
    props.store.grantTokenLookup(this.authorizerFunction);
    this.authorizer = new apigateway.TokenAuthorizer(this, "TokenAuthorizer", {
      handler: this.authorizerFunction,
      identitySource: apigateway.IdentitySource.header("Authorization"),
      // Turned away by API Gateway itself (401) without invoking the function.
      validationRegex: `^[Bb]earer ${TOKEN_PATTERN.source.replace(/^\^/, "")}`,
      // Keyed by token; the policy covers the whole stage, so one decision serves every route.
      resultsCacheTtl: props.authorizerCacheTtl ?? Duration.minutes(5),
    });

    const routeEnvironment = runtimeEnvironment(props, props.lifecycle.stateMachineArn);
    const functions: Record<string, nodejs.NodejsFunction> = {};
    for (const route of ROUTES) {
      // Only the admin token routes learn the Tokens table's name; no other handler has a use for it.
      const environment = route.tokensTable?.length
        ? { ...routeEnvironment, JOBQ_TOKENS_TABLE: props.store.tokensTable.tableName }
        : routeEnvironment;
      const fn = newFunction(route.id, handlerEntry(route, handlersDir), environment);
      grantRoute(fn, route, props);
      const resource = this.api.root.resourceForPath(route.path);
      this.routeMethods.set(resource, [...(this.routeMethods.get(resource) ?? []), route.method]);
      resource.addMethod(
        route.method,
        // No second invoke permission per method for the console's test-invoke (stage `*`): one
        // Lambda::Permission per route, not two, keeps the stack well under CloudFormation's
        // 500 resources as routes and pools grow.
        new apigateway.LambdaIntegration(fn, { allowTestInvoke: false }),
        route.authorized
          ? { authorizationType: apigateway.AuthorizationType.CUSTOM, authorizer: this.authorizer }
          : { authorizationType: apigateway.AuthorizationType.NONE },
      );
      functions[route.id] = fn;
    }
    this.functions = functions;
  }

  /** Jobs accepted by POST /jobs and by schedules, per pool (JobsSubmitted). */
  public metricJobsSubmitted(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("jobsSubmitted", { pool }, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Jobs cancelled by a user or a cascade, per pool (JobsCancelled). */
  public metricJobsCancelled(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("jobsCancelled", { pool }, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Requests the stage answered (API Gateway's Count). */
  public metricRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.api.metricCount({ statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Requests the stage answered with a 5xx (API Gateway's 5XXError). */
  public metricServerErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.api.metricServerError({ statistic: cloudwatch.Stats.SUM, ...props });
  }

  /**
   * Lets a page of `origin` (the dashboard's CloudFront domain, `https://…`) call the API from the
   * browser: an OPTIONS preflight on every route's resource, answered by API Gateway itself (no
   * token, no function) for that origin alone with the resource's own methods; the origin in every
   * function's JOBQ_CORS_ORIGIN, so answers and the handlers' errors carry
   * Access-Control-Allow-Origin (functions/http.ts); and the same header on API Gateway's own
   * answers (401 from the authorizer, 404, 413, 429, 5xx), so the page can read their error bodies
   * too. The preflight methods are made in `preflightScope` (a nested stack keeps them out of a
   * stack near CloudFormation's 500 resources). Call it once.
   */
  public allowOrigin(origin: string, preflightScope: Construct = this): void {
    const preflightHeaders: Record<string, string> = {
      "Access-Control-Allow-Origin": `'${origin}'`,
      "Access-Control-Allow-Headers": `'${CORS_ALLOW_HEADERS.join(",")}'`,
      // Chrome's cap; fewer preflights, each a billed API Gateway request.
      "Access-Control-Max-Age": `'${Duration.hours(2).toSeconds()}'`,
      Vary: "'Origin'",
    };
    for (const [resource, methods] of this.routeMethods) {
      const headers = { ...preflightHeaders, "Access-Control-Allow-Methods": `'${methods.join(",")}'` };
      // What Resource.addCorsPreflight builds, but in a scope of our choosing.
      new apigateway.Method(preflightScope, `Preflight${resource.path.replaceAll("/", ".")}`, {
        resource,
        httpMethod: "OPTIONS",
        integration: new apigateway.MockIntegration({
          requestTemplates: { "application/json": "{ statusCode: 200 }" },
          integrationResponses: [
            {
              statusCode: "204",
              responseParameters: Object.fromEntries(
                Object.entries(headers).map(([name, value]) => [`method.response.header.${name}`, value]),
              ),
            },
          ],
        }),
        options: {
          authorizationType: apigateway.AuthorizationType.NONE,
          methodResponses: [
            {
              statusCode: "204",
              responseParameters: Object.fromEntries(
                Object.keys(headers).map((name) => [`method.response.header.${name}`, true]),
              ),
            },
          ],
        },
      });
    }
    for (const fn of Object.values(this.functions)) fn.addEnvironment("JOBQ_CORS_ORIGIN", origin);
    const corsHeaders: Record<string, string> = {
      "Access-Control-Allow-Origin": `'${origin}'`,
      "Access-Control-Expose-Headers": `'${CORS_EXPOSE_HEADERS.join(", ")}'`,
      Vary: "'Origin'",
    };
    for (const response of this.gatewayResponses) {
      // GatewayResponse takes its headers only at construction; these are added to its resource.
      const resource = response.node.defaultChild as apigateway.CfnGatewayResponse;
      for (const [name, value] of Object.entries(corsHeaders)) {
        resource.addPropertyOverride(`ResponseParameters.gatewayresponse\\.header\\.${name}`, value);
      }
    }
  }
}
