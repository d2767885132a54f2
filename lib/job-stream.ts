import { fileURLToPath } from "node:url";
import { Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as apigateway from "aws-cdk-lib/aws-apigateway";
import * as apigwv2 from "aws-cdk-lib/aws-apigatewayv2";
import { WebSocketLambdaAuthorizer } from "aws-cdk-lib/aws-apigatewayv2-authorizers";
import { WebSocketLambdaIntegration } from "aws-cdk-lib/aws-apigatewayv2-integrations";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as lambda from "aws-cdk-lib/aws-lambda";
import type * as nodejs from "aws-cdk-lib/aws-lambda-nodejs";
import * as logs from "aws-cdk-lib/aws-logs";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import type { JobStore } from "./job-store";
import { consumeJobStream } from "./job-stream-source";
import { jobqFunction } from "./jobq-function";
import { jobqMetric } from "./jobq-metrics";
import { checkName, checkNumber } from "./validate-props";

/** functions/stream of this repository: connect, disconnect, message, broadcaster, authorizer. */
export const DEFAULT_STREAM_DIR = fileURLToPath(new URL("../functions/stream", import.meta.url));

export interface JobStreamProps {
  /**
   * The tables: the Jobs table's stream feeds the broadcaster, the $connect authorizer looks token
   * hashes up, open connections live in the Connections table.
   */
  readonly store: JobStore;
  /**
   * Directory of the stream's handler modules.
   * @default DEFAULT_STREAM_DIR
   */
  readonly handlersDir?: string;
  /** Letters, digits, - and _, up to 128. @default "v1" */
  readonly stageName?: string;
  /**
   * Steady-state messages and connections per second the stage admits.
   * @default 100
   */
  readonly throttlingRateLimit?: number;
  /** @default 200 */
  readonly throttlingBurstLimit?: number;
  /**
   * Stream records per broadcaster invocation, 1 to 10,000.
   * @default 100
   */
  readonly batchSize?: number;
  /**
   * Retries of a batch the broadcaster could not deliver before it goes to the failure queue,
   * 0 to 10,000.
   * @default 3
   */
  readonly retryAttempts?: number;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** The documented limits of JobStreamProps, checked at synth (Lambda's limits on a stream source). */
export function validateJobStreamProps(
  scope: Construct,
  props: Pick<
    JobStreamProps,
    "stageName" | "throttlingRateLimit" | "throttlingBurstLimit" | "batchSize" | "retryAttempts"
  >,
): void {
  checkName(scope, "stageName", props.stageName, {
    pattern: /^[A-Za-z0-9_-]+$/,
    maxLength: 128,
    describe: "letters, digits, - and _",
  });
  checkNumber(scope, "throttlingRateLimit", props.throttlingRateLimit, { min: 0 });
  checkNumber(scope, "throttlingBurstLimit", props.throttlingBurstLimit, { min: 0, integer: true });
  checkNumber(scope, "batchSize", props.batchSize, {
    min: 1,
    max: 10_000,
    integer: true,
    why: "Lambda's limit for a DynamoDB stream",
  });
  checkNumber(scope, "retryAttempts", props.retryAttempts, {
    min: 0,
    max: 10_000,
    integer: true,
    why: "Lambda's limit for a DynamoDB stream",
  });
}

/**
 * WS /jobs/stream in AWS: an API Gateway WebSocket API whose $connect is guarded by a REQUEST
 * authorizer on the Tokens table, connections kept in the Connections table, and a broadcaster
 * that reads the Jobs table's change stream (DynamoDB Streams: Lambda reads it at no request
 * charge) and posts each status change to the connections that may see it, through this API's
 * `@connections` management endpoint and nowhere else.
 */
export class JobStream extends Construct {
  public readonly api: apigwv2.WebSocketApi;
  public readonly stage: apigwv2.WebSocketStage;
  public readonly authorizerFunction: nodejs.NodejsFunction;
  public readonly connectFunction: nodejs.NodejsFunction;
  public readonly disconnectFunction: nodejs.NodejsFunction;
  public readonly messageFunction: nodejs.NodejsFunction;
  public readonly broadcaster: nodejs.NodejsFunction;
  /** Stream batches the broadcaster gave up on (their records, by shard and sequence number). */
  public readonly failedBatches: sqs.Queue;
  /** The stage's access log: a JSON line per connect, message and disconnect. */
  public readonly accessLogGroup: logs.LogGroup;
  /** What clients connect to: `wss://…/<stage>`. */
  public readonly url: string;
  /** `wss://<api id>.execute-api.<region>.<suffix>`: the URL's origin, independent of the stage. */
  public readonly origin: string;

  constructor(scope: Construct, id: string, props: JobStreamProps) {
    super(scope, id);
    validateJobStreamProps(this, props);
    const { store } = props;
    const dir = props.handlersDir ?? DEFAULT_STREAM_DIR;
    const newFunction = (functionId: string, module: string, environment: Record<string, string>) =>
      jobqFunction(this, functionId, {
        entry: `${dir}/${module}.ts`,
        environment,
        logRetention: props.logRetention,
        logRemovalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
      });
    const connections = { JOBQ_CONNECTIONS_TABLE: store.connectionsTable.tableName };

    this.authorizerFunction = newFunction("Authorizer", "authorizer", {
      JOBQ_TOKENS_TABLE: store.tokensTable.tableName,
    });
    store.grantTokenLookup(this.authorizerFunction);
    this.connectFunction = newFunction("Connect", "connect", connections);
    store.grantConnections(this.connectFunction, ["dynamodb:PutItem"]);
    this.disconnectFunction = newFunction("Disconnect", "disconnect", connections);
    store.grantConnections(this.disconnectFunction, ["dynamodb:DeleteItem"]);
    this.messageFunction = newFunction("Message", "message", connections);
    store.grantConnections(this.messageFunction, ["dynamodb:UpdateItem"]);

    this.api = new apigwv2.WebSocketApi(this, "Api", {
      description: "jobq job stream (WS /jobs/stream)",
      routeSelectionExpression: "$request.body.action",
      connectRouteOptions: {
        integration: new WebSocketLambdaIntegration("ConnectIntegration", this.connectFunction),
        // No identity source: the token may come in the header or as ?token= (browsers), and
        // API Gateway would refuse a handshake lacking any listed source before asking.
        authorizer: new WebSocketLambdaAuthorizer("TokenAuthorizer", this.authorizerFunction, {
          identitySource: [],
        }),
      },
      disconnectRouteOptions: {
        integration: new WebSocketLambdaIntegration("DisconnectIntegration", this.disconnectFunction),
      },
      // ping and subscribe: the function's answer is the route response, sent back to the client.
      defaultRouteOptions: {
        integration: new WebSocketLambdaIntegration("MessageIntegration", this.messageFunction),
        returnResponse: true,
      },
    });
    // One line per connect, message and disconnect (who, which route, status): the stream's
    // counterpart of the REST API's access log, kept as long as every other log of the stack.
    this.accessLogGroup = new logs.LogGroup(this, "AccessLogs", {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
    });
    this.stage = new apigwv2.WebSocketStage(this, "Stage", {
      webSocketApi: this.api,
      accessLogSettings: {
        destination: new apigwv2.LogGroupLogDestination(this.accessLogGroup),
        format: apigateway.AccessLogFormat.custom(
          JSON.stringify({
            requestId: apigateway.AccessLogField.contextRequestId(),
            requestTime: apigateway.AccessLogField.contextRequestTime(),
            routeKey: "$context.routeKey",
            eventType: "$context.eventType",
            connectionId: "$context.connectionId",
            status: apigateway.AccessLogField.contextStatus(),
            sourceIp: apigateway.AccessLogField.contextIdentitySourceIp(),
            errorMessage: apigateway.AccessLogField.contextErrorMessage(),
            authorizerError: apigateway.AccessLogField.contextAuthorizerError(),
          }),
        ),
      },
      stageName: props.stageName ?? "v1",
      autoDeploy: true,
      throttle: {
        rateLimit: props.throttlingRateLimit ?? 100,
        burstLimit: props.throttlingBurstLimit ?? 200,
      },
    });
    this.url = this.stage.url;
    const stack = Stack.of(this);
    this.origin = `wss://${this.api.apiId}.execute-api.${stack.region}.${stack.urlSuffix}`;

    this.broadcaster = newFunction("Broadcaster", "broadcaster", {
      ...connections,
      JOBQ_STREAM_ENDPOINT: this.stage.callbackUrl,
    });
    // Fan-out reads the subscriber index and deletes connections found gone; nothing else.
    store.grantConnections(this.broadcaster, ["dynamodb:Query", "dynamodb:DeleteItem"]);
    // execute-api:ManageConnections on this API's stage's @connections only.
    this.stage.grantManagementApiAccess(this.broadcaster);

    this.failedBatches = consumeJobStream(this, this.broadcaster, store.jobsTable, {
      // Connected clients want what happens from now on; after a reconnect they resynchronise
      // with GET /jobs?updatedSince= (docs/stream.md).
      startingPosition: lambda.StartingPosition.LATEST,
      batchSize: props.batchSize ?? 100,
      bisectBatchOnError: true,
      reportBatchItemFailures: true,
      retryAttempts: props.retryAttempts ?? 3,
      maxRecordAge: Duration.hours(1),
    });
  }
  /** WebSocket connections opened (StreamConnections). */
  public metricConnections(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("streamConnections", {}, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Job changes posted to stream connections (StreamPosts). */
  public metricPosts(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("streamPosts", {}, { statistic: cloudwatch.Stats.SUM, ...props });
  }
}
