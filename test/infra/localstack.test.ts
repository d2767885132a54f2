import { Match, type Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import type { JobqStack } from "../../lib/jobq-stack";
import { type CfnResource, environmentOf, logicalId, resourcesOfType, synthJobqStack } from "./fixtures";

/**
 * `npm run deploy:localstack` deploys the variant of context jobq:target=localstack. LocalStack
 * cannot run here (it needs Docker and an auth token), so this checks the next best thing: that
 * the variant uses only services of LocalStack's free tier, and drops the ones it lacks.
 */

/** Services of LocalStack's free tier the variant may use, by CloudFormation type prefix. */
const FREE_TIER = [
  "AWS::ApiGateway::", // REST APIs (v1); v2 (HTTP and WebSocket APIs) is in the paid tier
  "AWS::Lambda::",
  "AWS::DynamoDB::", // streams included
  "AWS::SQS::",
  "AWS::StepFunctions::",
  "AWS::Events::", // EventBridge buses and rules
  "AWS::IAM::",
  "AWS::CloudWatch::", // metrics, alarms, dashboards
  "AWS::Logs::",
  "AWS::SNS::",
  "AWS::KMS::",
  "AWS::S3::",
  "AWS::CDK::Metadata", // CDK's version report, where CDK adds it
];

/** What the variant must leave out: not in the free tier. */
const DROPPED = [
  "AWS::ApiGatewayV2::",
  "AWS::ECS::",
  "AWS::CloudFront::",
  "AWS::EC2::",
  "AWS::CloudFormation::Stack",
];

let stack: JobqStack;
let template: Template;
let resources: [string, CfnResource][];

beforeAll(() => {
  // jobq:workers=ecs and jobq:dashboard=true on purpose: the target overrides both.
  ({ stack, template } = synthJobqStack({
    "jobq:target": "localstack",
    "jobq:workers": "ecs",
    "jobq:dashboard": "true",
  }));
  resources = Object.entries(template.toJSON().Resources as Record<string, CfnResource>);
});

/** A custom resource is fine where its provider is a Lambda function of the same template. */
function isLambdaBacked(resource: CfnResource): boolean {
  const token = resource.Properties?.ServiceToken as { "Fn::GetAtt"?: [string, string] } | undefined;
  const target = token?.["Fn::GetAtt"]?.[0];
  return target !== undefined && resourcesOfType(template, "AWS::Lambda::Function")[target] !== undefined;
}

describe("jobq:target=localstack", () => {
  it("uses only services of LocalStack's free tier (and Lambda-backed custom resources)", () => {
    const outside = resources
      .filter(([, r]) => !FREE_TIER.some((prefix) => r.Type.startsWith(prefix)))
      .filter(
        ([, r]) =>
          !(
            (r.Type.startsWith("Custom::") || r.Type === "AWS::CloudFormation::CustomResource") &&
            isLambdaBacked(r)
          ),
      )
      .map(([id, r]) => `${id} (${r.Type})`);
    expect(outside).toEqual([]);
  });

  it("drops API Gateway v2 (the WebSocket stream), ECS and its VPC, CloudFront and the nested stacks", () => {
    const kept = resources.filter(([, r]) => DROPPED.some((prefix) => r.Type.startsWith(prefix)));
    expect(kept.map(([id, r]) => `${id} (${r.Type})`)).toEqual([]);
    expect(stack.jobStream).toBeUndefined();
    expect(stack.workers).toBeUndefined();
    expect(stack.dashboard).toBeUndefined();
    const outputs = Object.keys(template.findOutputs("*"));
    expect(outputs).toEqual(expect.arrayContaining(["ApiUrl", "TokensTableName", "StateMachineArn"]));
    for (const gone of ["StreamUrl", "ClusterName", "DashboardUrl"]) expect(outputs).not.toContain(gone);
  });

  it("keeps the REST API, the tables with their stream, the queues and the lifecycle", () => {
    template.hasResourceProperties("AWS::ApiGateway::RestApi", {});
    template.hasResourceProperties("AWS::DynamoDB::Table", {
      StreamSpecification: { StreamViewType: Match.anyValue() },
    });
    template.hasResourceProperties("AWS::Lambda::EventSourceMapping", {});
    template.hasResourceProperties("AWS::StepFunctions::StateMachine", {});
    template.hasResourceProperties("AWS::SQS::Queue", {});
  });

  it("tells GET /health no stream URL, so it answers streamUrl: null", () => {
    const health = stack.jobApi.functions.Health;
    if (!health) throw new Error("no Health function");
    expect(environmentOf(template, logicalId(health))).not.toHaveProperty("JOBQ_STREAM_URL");
  });

  it("refuses an unknown target, naming the key", () => {
    expect(() => synthJobqStack({ "jobq:target": "azure" })).toThrow(/jobq:target/);
  });
});
