import type { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import type { JobStream } from "../../lib/job-stream";
import type { JobqStack } from "../../lib/jobq-stack";
import { connectionsTable } from "../../store/tables";
import {
  actionsOf,
  environmentOf,
  grant,
  grantsOf,
  logicalId,
  logicalIdOfElement,
  mentions,
  resourcesOf,
  resourcesOfType,
  roleIdOf,
  roleStatements,
  synthJobqStack,
  tableGrants,
} from "./fixtures";

/** WS /jobs/stream in the template: the WebSocket API, its authorizer, the connections table, the broadcaster. */

let stack: JobqStack;
let template: Template;
let apiId: string;
let connectionsId: string;
let jobsId: string;
let tokensId: string;

beforeAll(() => {
  ({ stack, template } = synthJobqStack());
  apiId = logicalIdOfElement(stream().api.node.defaultChild as never);
  connectionsId = logicalId(stack.store.connectionsTable);
  jobsId = logicalId(stack.store.jobsTable);
  tokensId = logicalId(stack.store.tokensTable);
});

/** The stack's stream, which exists unless jobq:target=localstack. */
function stream(): JobStream {
  if (!stack.jobStream) throw new Error("no job stream");
  return stack.jobStream;
}

const fnId = (
  name: "authorizerFunction" | "connectFunction" | "disconnectFunction" | "messageFunction" | "broadcaster",
) => logicalId(stream()[name]);
const roleOf = (name: Parameters<typeof fnId>[0]) => roleIdOf(stream()[name]);

describe("JobStream", () => {
  it("is a WebSocket API with $connect behind a Lambda REQUEST authorizer, $disconnect and a $default that answers", () => {
    template.hasResourceProperties("AWS::ApiGatewayV2::Api", { ProtocolType: "WEBSOCKET" });
    const routes = Object.values(resourcesOfType(template, "AWS::ApiGatewayV2::Route")).filter((r) =>
      mentions(r.Properties?.ApiId, apiId),
    );
    const byKey = new Map(routes.map((r) => [String(r.Properties?.RouteKey), r.Properties ?? {}]));
    expect([...byKey.keys()].sort()).toEqual(["$connect", "$default", "$disconnect"]);
    expect(byKey.get("$connect")?.AuthorizationType).toBe("CUSTOM");
    expect(byKey.get("$disconnect")?.AuthorizationType ?? "NONE").toBe("NONE");
    // The route response carries ping's pong and subscribe's answer back to the client.
    expect(byKey.get("$default")?.RouteResponseSelectionExpression).toBe("$default");

    const [authorizer] = Object.values(resourcesOfType(template, "AWS::ApiGatewayV2::Authorizer"));
    expect(authorizer?.Properties).toMatchObject({ AuthorizerType: "REQUEST", IdentitySource: [] });
    expect(mentions(authorizer?.Properties?.AuthorizerUri, fnId("authorizerFunction"))).toBe(true);
    expect(environmentOf(template, fnId("authorizerFunction")).JOBQ_TOKENS_TABLE).toEqual({ Ref: tokensId });
  });

  it("keeps connections in a table with TTL and an index by subscriber", () => {
    const table = resourcesOfType(template, "AWS::DynamoDB::Table")[connectionsId];
    expect(table?.Properties?.TimeToLiveSpecification).toEqual({
      AttributeName: connectionsTable.timeToLiveAttribute,
      Enabled: true,
    });
    expect(JSON.stringify(table?.Properties?.GlobalSecondaryIndexes)).toContain('"subscriberPk"');
  });

  it("feeds the broadcaster from the Jobs table's stream (new and old images), job items only, with retries, bisection, partial failures and a failure queue", () => {
    const jobs = resourcesOfType(template, "AWS::DynamoDB::Table")[jobsId];
    expect(jobs?.Properties?.StreamSpecification).toEqual({ StreamViewType: "NEW_AND_OLD_IMAGES" });
    const [mapping] = Object.values(resourcesOfType(template, "AWS::Lambda::EventSourceMapping")).filter(
      (m) => mentions(m.Properties?.FunctionName, fnId("broadcaster")),
    );
    expect(mapping?.Properties).toMatchObject({
      EventSourceArn: { "Fn::GetAtt": [jobsId, "StreamArn"] },
      StartingPosition: "LATEST",
      BisectBatchOnFunctionError: true,
      FunctionResponseTypes: ["ReportBatchItemFailures"],
      MaximumRetryAttempts: 3,
    });
    expect(JSON.stringify(mapping?.Properties?.FilterCriteria)).toContain('\\"sk\\":{\\"S\\":[\\"JOB\\"]}');
    const failureQueue = logicalId(stream().failedBatches);
    expect(mentions(mapping?.Properties?.DestinationConfig, failureQueue)).toBe(true);
  });

  it("lets the broadcaster manage connections of this API's stage only, and query and delete connections", () => {
    const statements = roleStatements(template, roleOf("broadcaster"));
    const manage = statements.filter((s) => actionsOf(s).includes("execute-api:ManageConnections"));
    expect(manage).toHaveLength(1);
    const resources = manage.flatMap(resourcesOf);
    expect(resources).toHaveLength(1);
    const arn = JSON.stringify(resources[0]);
    expect(arn).toContain(apiId);
    expect(arn).toContain("/@connections/*");
    expect(arn).not.toMatch(/execute-api:[^"]*:\*"/);

    const grants = grantsOf(statements);
    for (const g of tableGrants(connectionsId, ["dynamodb:Query", "dynamodb:DeleteItem"]))
      expect(grants).toContain(g);
    // On the Jobs table only its stream is read (ListStreams is account-wide in IAM: "*").
    const elsewhere = [...grants].filter((g) => g.startsWith("dynamodb:") && !g.includes(connectionsId));
    expect(
      elsewhere
        .filter((g) => g !== 'dynamodb:ListStreams "*"')
        .map((g) => g.split(" ")[0])
        .sort(),
    ).toEqual(["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"]);
    for (const g of elsewhere.filter((g) => g.includes(jobsId))) expect(g).toContain("StreamArn");
    // Its environment points the management client at the stage's callback URL.
    expect(JSON.stringify(environmentOf(template, fnId("broadcaster")).JOBQ_STREAM_ENDPOINT)).toContain(
      apiId,
    );
  });

  it("gives connect, disconnect and message exactly their one write on the connections table", () => {
    const expected = {
      connectFunction: "dynamodb:PutItem",
      disconnectFunction: "dynamodb:DeleteItem",
      messageFunction: "dynamodb:UpdateItem",
    } as const;
    for (const [name, action] of Object.entries(expected) as [keyof typeof expected, string][]) {
      const grants = [...grantsOf(roleStatements(template, roleOf(name)))].filter(
        (g) => !g.startsWith("logs:"),
      );
      expect(grants.sort()).toEqual(tableGrants(connectionsId, [action]).sort());
    }
    expect([...grantsOf(roleStatements(template, roleOf("authorizerFunction")))]).toContain(
      grant("dynamodb:GetItem", { "Fn::GetAtt": [tokensId, "Arn"] }),
    );
  });

  it("tells GET /health and the stack's outputs the stream's URL", () => {
    const health = logicalId(stack.jobApi.functions.Health as never);
    const url = environmentOf(template, health).JOBQ_STREAM_URL;
    expect(JSON.stringify(url)).toContain(apiId);
    expect(JSON.stringify(url)).toContain("wss://");
    expect(JSON.stringify(template.findOutputs("StreamUrl"))).toContain(apiId);
  });
});
