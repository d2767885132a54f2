import { relative } from "node:path";
import type { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_POOLS } from "../../core/pools";
import { readConfig } from "../../functions/config";
import { ROUTES, type RouteSpec } from "../../functions/routes";
import { handlerEntry } from "../../lib/job-api";
import type { JobqStack } from "../../lib/jobq-stack";
import { corePool } from "../../lib/pool-settings";
import {
  actionsOf,
  dynamoStatements,
  environmentOf,
  grant,
  grantsOf,
  logicalId,
  mentions,
  methodPath,
  resolvedEnvironment,
  resourcePaths,
  resourcesOf,
  resourcesOfType,
  roleIdOf as roleIdOfConstruct,
  roleStatements,
  synthJobqStack,
  tableGrants,
} from "./fixtures";

let stack: JobqStack;
let template: Template;
let jobsTableId: string;
let tokensTableId: string;
let nodesTableId: string;
let policyTableId: string;

beforeAll(() => {
  ({ stack, template } = synthJobqStack());
  jobsTableId = logicalId(stack.store.jobsTable);
  tokensTableId = logicalId(stack.store.tokensTable);
  nodesTableId = logicalId(stack.store.nodesTable);
  policyTableId = logicalId(stack.store.policyTable);
});

function functionOf(routeId: string) {
  const fn = stack.jobApi.functions[routeId];
  if (!fn) throw new Error(`no function for route ${routeId}`);
  return fn;
}

function roleIdOf(fn: ReturnType<typeof functionOf>): string {
  return roleIdOfConstruct(fn);
}

const routeCases = ROUTES.map((r) => [`${r.method} ${r.path}`, r] as [string, RouteSpec]);

describe("routes", () => {
  it("builds every route's function from functions/api/<handler>.ts", () => {
    for (const route of ROUTES) {
      expect(relative(process.cwd(), handlerEntry(route))).toBe(`functions/api/${route.handler}.ts`);
    }
  });

  it.each(routeCases)(
    "%s is a method on its resource path, proxied to the route's own function",
    (_, route) => {
      const paths = resourcePaths(template);
      const methods = Object.values(resourcesOfType(template, "AWS::ApiGateway::Method")).filter(
        (m) => m.Properties?.HttpMethod === route.method && methodPath(m, paths) === route.path,
      );
      expect(methods).toHaveLength(1);
      const integration = methods[0]?.Properties?.Integration as { Type: string; Uri: unknown };
      expect(integration.Type).toBe("AWS_PROXY");
      expect(mentions(integration.Uri, logicalId(functionOf(route.id)))).toBe(true);
    },
  );

  it.each(routeCases)("%s: authorizer exactly when the route is authorized", (_, route) => {
    const paths = resourcePaths(template);
    const method = Object.values(resourcesOfType(template, "AWS::ApiGateway::Method")).find(
      (m) => m.Properties?.HttpMethod === route.method && methodPath(m, paths) === route.path,
    );
    const authorizerId = logicalId(stack.jobApi.authorizer);
    if (route.authorized) {
      expect(method?.Properties?.AuthorizationType).toBe("CUSTOM");
      expect(method?.Properties?.AuthorizerId).toEqual({ Ref: authorizerId });
    } else {
      expect(method?.Properties?.AuthorizationType).toBe("NONE");
      expect(method?.Properties?.AuthorizerId).toBeUndefined();
    }
  });

  it("leaves only GET /health and GET /openapi.json open", () => {
    const open = ["GET /health", "GET /openapi.json"];
    expect(ROUTES.filter((r) => !r.authorized).map((r) => `${r.method} ${r.path}`)).toEqual(open);
    // The template itself: every method API Gateway serves without the authorizer.
    const paths = resourcePaths(template);
    const unauthorized = Object.values(resourcesOfType(template, "AWS::ApiGateway::Method"))
      .filter((m) => m.Properties?.AuthorizationType !== "CUSTOM")
      .map((m) => `${m.Properties?.HttpMethod} ${methodPath(m, paths)}`);
    expect(unauthorized.sort()).toEqual(open);
  });
});

describe("least privilege", () => {
  it.each(routeCases)(
    "%s: exactly the route's actions (jobs, nodes and policy tables, executions, events), nothing else",
    (_, route) => {
      const statements = roleStatements(template, roleIdOf(functionOf(route.id)));
      const states = new Set(route.states);
      const expected = [
        ...tableGrants(jobsTableId, route.jobsTable),
        ...tableGrants(nodesTableId, route.nodesTable ?? []),
        ...tableGrants(policyTableId, route.policyTable ?? []),
        ...tableGrants(tokensTableId, route.tokensTable ?? []),
        ...(states.has("states:StartExecution")
          ? [grant("states:StartExecution", stack.resolve(stack.lifecycle.stateMachineArn))]
          : []),
        ...(states.has("states:StopExecution")
          ? [grant("states:StopExecution", stack.resolve(stack.lifecycle.executionArns))]
          : []),
        ...(route.publishesEvents
          ? [grant("events:PutEvents", { "Fn::GetAtt": [logicalId(stack.eventBus), "Arn"] })]
          : []),
      ];

      expect(grantsOf(statements)).toEqual(new Set(expected));
      expect(statements.every((s) => s.Effect === "Allow")).toBe(true);
      expect(mentions(statements, tokensTableId)).toBe((route.tokensTable ?? []).length > 0);
    },
  );

  it("lets only the routes that change a job's status or create one touch executions and events", () => {
    const withEvents = ROUTES.filter((r) => r.publishesEvents).map((r) => r.id);
    expect(withEvents.sort()).toEqual([
      "CancelJob",
      "CancelJobs",
      "PauseJob",
      "ResumeJob",
      "RetryJob",
      "RetryJobs",
      "SubmitBatch",
      "SubmitJob",
      "TriggerSchedule",
    ]);
    const stops = ROUTES.filter((r) => r.states?.includes("states:StopExecution")).map((r) => r.id);
    expect(stops.sort()).toEqual(["CancelJob", "CancelJobs", "PauseJob"]);
  });

  it("lets no route start an execution: the scheduler starts one per attempt at admission", () => {
    for (const route of ROUTES) {
      const actions = roleStatements(template, roleIdOf(functionOf(route.id))).flatMap(actionsOf);
      expect(actions, route.id).not.toContain("states:StartExecution");
    }
  });

  it("lets the retry routes neither start nor stop executions", () => {
    for (const id of ["RetryJob", "RetryJobs"]) {
      const actions = roleStatements(template, roleIdOf(functionOf(id))).flatMap(actionsOf);
      expect(actions.some((a) => a.startsWith("states:"))).toBe(false);
    }
  });

  it("lets PATCH /jobs/{id} read the caller's quota (maxPriority) and write no policy", () => {
    const grants = grantsOf(roleStatements(template, roleIdOf(functionOf("UpdateJob"))));
    const onPolicy = [...grants].filter((g) => g.includes(`"${policyTableId}"`));
    expect(onPolicy.length).toBeGreaterThan(0);
    expect(onPolicy.every((g) => g.startsWith("dynamodb:GetItem "))).toBe(true);
  });

  it("lets the schedule routes touch only the policy table, except trigger, which submits", () => {
    for (const id of ["CreateSchedule", "ListSchedules", "GetSchedule", "UpdateSchedule", "DeleteSchedule"]) {
      const statements = roleStatements(template, roleIdOf(functionOf(id)));
      expect(mentions(statements, policyTableId), id).toBe(true);
      expect(mentions(statements, jobsTableId), id).toBe(false);
      expect(mentions(statements, nodesTableId), id).toBe(false);
    }
    const trigger = grantsOf(roleStatements(template, roleIdOf(functionOf("TriggerSchedule"))));
    expect(trigger).toContain(grant("dynamodb:PutItem", { "Fn::GetAtt": [policyTableId, "Arn"] }));
    expect(trigger).toContain(grant("dynamodb:PutItem", { "Fn::GetAtt": [jobsTableId, "Arn"] }));
    expect([...trigger].some((g) => g.startsWith("states:"))).toBe(false);
  });

  it("lets PUT /admin/policy write the policy table and nothing else", () => {
    const route = ROUTES.find((r) => r.method === "PUT" && r.path === "/admin/policy");
    if (!route) throw new Error("no PUT /admin/policy route");
    const statements = roleStatements(template, roleIdOf(functionOf(route.id)));
    const dynamo = dynamoStatements(statements);

    expect(dynamo.flatMap(actionsOf)).toContain("dynamodb:PutItem");
    expect(dynamo.flatMap(resourcesOf).every((r) => mentions(r, policyTableId))).toBe(true);
    expect(mentions(statements, jobsTableId)).toBe(false);
    expect(mentions(statements, nodesTableId)).toBe(false);
  });

  it("lets the submit routes read the policy table (quotas) but not write it", () => {
    for (const id of ["SubmitJob", "SubmitBatch"]) {
      const grants = grantsOf(roleStatements(template, roleIdOf(functionOf(id))));
      const onPolicy = [...grants].filter((g) => g.includes(`"${policyTableId}"`));
      expect(onPolicy.length).toBeGreaterThan(0);
      expect(onPolicy.every((g) => g.startsWith("dynamodb:GetItem "))).toBe(true);
    }
  });

  it("lets cancel and pause add a stopped attempt's GPU usage to the policy table", () => {
    for (const id of ["CancelJob", "PauseJob"]) {
      const grants = grantsOf(roleStatements(template, roleIdOf(functionOf(id))));
      expect(grants).toContain(grant("dynamodb:UpdateItem", { "Fn::GetAtt": [policyTableId, "Arn"] }));
    }
  });

  it("lets the drain route read and update the nodes table and record its audit, and nothing else: no job, execution or event", () => {
    const statements = roleStatements(template, roleIdOf(functionOf("DrainNode")));
    const grants = [...grantsOf(dynamoStatements(statements))];
    const onNodes = grants.filter((g) => g.includes(`"${nodesTableId}"`));
    const onPolicy = grants.filter((g) => g.includes(`"${policyTableId}"`));

    expect(grants).toContain(grant("dynamodb:UpdateItem", { "Fn::GetAtt": [nodesTableId, "Arn"] }));
    expect(onNodes.length + onPolicy.length).toBe(grants.length);
    expect(onNodes.some((g) => /dynamodb:(PutItem|DeleteItem|Query)/.test(g))).toBe(false);
    // The audit record (store/audit.ts) is a put in the drain's transaction: nothing else on policy.
    expect(onPolicy.some((g) => /dynamodb:(GetItem|UpdateItem|DeleteItem|Query)/.test(g))).toBe(false);
    expect(mentions(statements, jobsTableId)).toBe(false);
    const actions = statements.flatMap(actionsOf);
    expect(actions.some((a) => a.startsWith("states:") || a.startsWith("events:"))).toBe(false);
  });

  it("gives the health function no DynamoDB permission at all", () => {
    const health = ROUTES.find((r) => r.method === "GET" && r.path === "/health");
    if (!health) throw new Error("no GET /health route");
    const statements = roleStatements(template, roleIdOf(functionOf(health.id)));
    expect(dynamoStatements(statements)).toEqual([]);
    expect(mentions(statements, jobsTableId)).toBe(false);
  });

  it("lets only the admin token routes touch the tokens table, and never read a token by its hash", () => {
    const onTokens = ROUTES.filter((r) => (r.tokensTable ?? []).length > 0).map((r) => r.id);
    expect(onTokens.sort()).toEqual(["CreateToken", "ListTokens", "RevokeToken"]);
    const actions = (id: string) =>
      dynamoStatements(roleStatements(template, roleIdOf(functionOf(id))))
        .filter((s) => mentions(s, tokensTableId))
        .flatMap(actionsOf)
        .sort();
    expect(actions("CreateToken")).toEqual(["dynamodb:PutItem"]);
    expect(actions("ListTokens")).toEqual(["dynamodb:Scan"]);
    expect(actions("RevokeToken")).toEqual(["dynamodb:Scan", "dynamodb:UpdateItem"]);
    for (const id of onTokens) {
      const statements = roleStatements(template, roleIdOf(functionOf(id)));
      expect(mentions(statements, jobsTableId), id).toBe(false);
      expect(statements.flatMap(actionsOf), id).not.toContain("dynamodb:GetItem");
      expect(environmentOf(template, logicalId(functionOf(id))).JOBQ_TOKENS_TABLE).toEqual({
        Ref: tokensTableId,
      });
    }
    // Every other route's function is not even told the table's name.
    expect(environmentOf(template, logicalId(functionOf("GetJob"))).JOBQ_TOKENS_TABLE).toBeUndefined();
  });

  it("lets GET /jobs/{id}/dependents only read the jobs table", () => {
    const statements = roleStatements(template, roleIdOf(functionOf("ListDependents")));
    const dynamo = dynamoStatements(statements);
    expect(new Set(dynamo.flatMap(actionsOf))).toEqual(
      new Set(["dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"]),
    );
    expect(dynamo.flatMap(resourcesOf).every((r) => mentions(r, jobsTableId))).toBe(true);
  });

  it("lets the authorizer only GetItem the tokens table", () => {
    const statements = roleStatements(template, roleIdOf(stack.jobApi.authorizerFunction));
    const dynamo = dynamoStatements(statements);
    expect(dynamo.flatMap(actionsOf)).toEqual(["dynamodb:GetItem"]);
    expect(dynamo.flatMap(resourcesOf)).toEqual([{ "Fn::GetAtt": [tokensTableId, "Arn"] }]);
    expect(mentions(statements, jobsTableId)).toBe(false);
  });
});

describe("authorizer", () => {
  it("is a TOKEN authorizer on the Authorization header, cached 300 s, invoking the authorizer function", () => {
    const authorizer = resourcesOfType(template, "AWS::ApiGateway::Authorizer")[
      logicalId(stack.jobApi.authorizer)
    ];
    const props = authorizer?.Properties ?? {};
    expect(props.Type).toBe("TOKEN");
    expect(props.IdentitySource).toBe("method.request.header.Authorization");
    expect(props.AuthorizerResultTtlInSeconds).toBe(300);
    expect(mentions(props.AuthorizerUri, logicalId(stack.jobApi.authorizerFunction))).toBe(true);
  });

  it("lets API Gateway refuse anything but a bearer token of jobq's shape before invoking it", () => {
    const authorizer = resourcesOfType(template, "AWS::ApiGateway::Authorizer")[
      logicalId(stack.jobApi.authorizer)
    ];
    const regex = new RegExp(String(authorizer?.Properties?.IdentityValidationExpression));
    expect(regex.test(`Bearer jq_${"a1_-".repeat(10)}xyz`)).toBe(true);
    expect(regex.test("Bearer local-dev-token")).toBe(false);
    expect(regex.test(`Basic jq_${"a".repeat(43)}`)).toBe(false);
  });

  it("reads the tokens table named by the template", () => {
    const variables = environmentOf(template, logicalId(stack.jobApi.authorizerFunction));
    expect(variables.JOBQ_TOKENS_TABLE).toEqual({ Ref: tokensTableId });
  });
});

describe("functions", () => {
  it("run nodejs22.x on arm64 with active tracing, every one of them", () => {
    const functions = Object.entries(resourcesOfType(template, "AWS::Lambda::Function"));
    expect(functions.length).toBeGreaterThan(0);
    for (const [, fn] of functions) {
      expect(fn.Properties?.Runtime).toBe("nodejs22.x");
      expect(fn.Properties?.Architectures).toEqual(["arm64"]);
      expect(fn.Properties?.TracingConfig).toEqual({ Mode: "Active" });
    }
  });

  it("log to their own group kept for a month", () => {
    const groups = resourcesOfType(template, "AWS::Logs::LogGroup");
    for (const [, fn] of Object.entries(resourcesOfType(template, "AWS::Lambda::Function"))) {
      const ref = (fn.Properties?.LoggingConfig as { LogGroup?: { Ref?: string } } | undefined)?.LogGroup
        ?.Ref;
      expect(ref).toBeDefined();
      expect(groups[ref ?? ""]?.Properties?.RetentionInDays).toBe(30);
    }
  });

  it.each(routeCases)("%s gets a configuration functions/config.ts accepts", (_, route) => {
    const variables = environmentOf(template, logicalId(functionOf(route.id)));
    expect(variables.JOBQ_JOBS_TABLE).toEqual({ Ref: jobsTableId });
    expect(variables.POWERTOOLS_SERVICE_NAME).toBe("jobq");
    expect(variables.NODE_OPTIONS).toBe("--enable-source-maps");

    const config = readConfig(resolvedEnvironment(variables));
    expect(config.jobsTable).toBe(`<Ref:${jobsTableId}>`);
    expect(config.nodesTable).toBe(`<Ref:${nodesTableId}>`);
    // The pools as deployed: each with the hourly price its cost is computed at (lib/pool-settings.ts).
    expect(config.pools).toEqual(DEFAULT_POOLS.map(corePool));
    expect(config.taskTypes).toBeNull();
    expect(config.eventBus).toBe(`<Ref:${logicalId(stack.eventBus)}>`);
    expect(config.stateMachineArn).toMatch(/:states:.*:stateMachine:Jobq-job-lifecycle$/);
    expect(Object.keys(config.queues).sort()).toEqual(DEFAULT_POOLS.map((p) => p.name).sort());
  });
});

describe("stage", () => {
  it("v1 throttles every method, traces, and writes JSON access logs to a log group", () => {
    const stages = Object.values(resourcesOfType(template, "AWS::ApiGateway::Stage"));
    const stage = stages.find((s) => s.Properties?.StageName === "v1");
    const props = stage?.Properties ?? {};
    expect(props.TracingEnabled).toBe(true);
    expect(props.MethodSettings).toContainEqual(
      expect.objectContaining({
        HttpMethod: "*",
        ResourcePath: "/*",
        ThrottlingRateLimit: 100,
        ThrottlingBurstLimit: 200,
      }),
    );

    const accessLog = props.AccessLogSetting as { DestinationArn: unknown; Format: string };
    expect(accessLog.DestinationArn).toEqual({
      "Fn::GetAtt": [logicalId(stack.jobApi.accessLogGroup), "Arn"],
    });
    const format = JSON.parse(accessLog.Format) as Record<string, string>;
    expect(format).toMatchObject({
      requestId: "$context.requestId",
      status: "$context.status",
      principal: "$context.authorizer.principal",
    });
  });

  it("has the account-level CloudWatch role that access logging needs", () => {
    template.hasResourceProperties("AWS::ApiGateway::Account", {});
  });
});

describe("gateway responses", () => {
  const cases = [
    ["MISSING_AUTHENTICATION_TOKEN", "404", "not_found"],
    ["UNAUTHORIZED", "401", "unauthorized"],
    ["ACCESS_DENIED", "401", "unauthorized"],
    ["REQUEST_TOO_LARGE", "413", "payload_too_large"],
    ["THROTTLED", "429", "too_many_requests"],
    ["DEFAULT_4XX", "400", "validation_failed"],
    ["DEFAULT_5XX", "500", "internal"],
  ] as const;

  it.each(cases)("%s answers %s with the contract's JSON error %s", (type, status, code) => {
    const response = Object.values(resourcesOfType(template, "AWS::ApiGateway::GatewayResponse")).find(
      (r) => r.Properties?.ResponseType === type,
    );
    expect(response?.Properties?.StatusCode).toBe(status);
    const templates = response?.Properties?.ResponseTemplates as Record<string, string> | undefined;
    const body = templates?.["application/json"] ?? "";
    // What API Gateway substitutes at request time, including a message that needs escaping.
    const rendered = body
      .replaceAll("$context.error.messageString", JSON.stringify('Bad "thing"'))
      .replaceAll("$context.requestId", "req-1");
    const parsed = JSON.parse(rendered) as { error: { code: string; message: unknown } };
    expect(parsed.error.code).toBe(code);
    expect(typeof parsed.error.message).toBe("string");
  });

  it("passes API Gateway's own message through for other 4xx", () => {
    const response = Object.values(resourcesOfType(template, "AWS::ApiGateway::GatewayResponse")).find(
      (r) => r.Properties?.ResponseType === "DEFAULT_4XX",
    );
    const templates = response?.Properties?.ResponseTemplates as Record<string, string> | undefined;
    const rendered = (templates?.["application/json"] ?? "").replaceAll(
      "$context.error.messageString",
      JSON.stringify('Invalid "x" header'),
    );
    expect(JSON.parse(rendered)).toEqual({
      error: { code: "validation_failed", message: 'Invalid "x" header' },
    });
  });

  it("tells a throttled client when to retry", () => {
    const throttled = Object.values(resourcesOfType(template, "AWS::ApiGateway::GatewayResponse")).find(
      (r) => r.Properties?.ResponseType === "THROTTLED",
    );
    expect(throttled?.Properties?.ResponseParameters).toMatchObject({
      "gatewayresponse.header.Retry-After": "'1'",
    });
  });
});
