import { CfnResource, Stack, Validations } from "aws-cdk-lib";
import type { IConstruct } from "constructs";

/**
 * cdk-nag's AwsSolutions findings that jobq accepts, each with its reason: the one place where
 * they are acknowledged (docs/deploy.md, "Security checks"). A finding not matched here fails
 * test/infra/hardening.test.ts, so a new wildcard or an unlogged resource is a decision someone
 * has to write down, not a default.
 *
 * Acknowledgements are per resource and per finding (cdk-nag v3 compares exact ids such as
 * `AwsSolutions-IAM5[Resource::<StoreJobs22D0D865.Arn>/index/*]`), so they are computed from
 * each resource's own properties, after CDK has replaced cross-stack references by nested-stack
 * parameters: a node validation runs at that point of the synth, before the nag pack reads them.
 */

interface Rule {
  /** The rule (`AwsSolutions-XXX`) as cdk-nag names it, without a finding suffix. */
  readonly id: string;
  /** CloudFormation type of the resources it applies to. */
  readonly type: string;
  /** Narrows it to some resources of that type (by their properties or path). */
  readonly where?: (resource: CfnResource, properties: () => Record<string, unknown>) => boolean;
  readonly reason: string;
}

const PUBLIC_ROUTES = /\/Default\/(health|openapi\.json)\/GET\/Resource$/;

/** Findings without a suffix: one per resource. */
const RULES: readonly Rule[] = [
  {
    id: "AwsSolutions-L1",
    type: "AWS::Lambda::Function",
    reason:
      "nodejs22.x on purpose: the runtime that BUNDLING (lib/jobq-function.ts) targets and the tests run on; a runtime upgrade is a reviewed change, not a lint fix",
  },
  {
    id: "AwsSolutions-COG4",
    type: "AWS::ApiGateway::Method",
    reason:
      "jobq's own bearer tokens are the API's authorization (a Lambda TOKEN authorizer on the Tokens table, API.md); there is no Cognito user pool by design",
  },
  {
    id: "AwsSolutions-APIG4",
    type: "AWS::ApiGateway::Method",
    where: (resource) => PUBLIC_ROUTES.test(resource.node.path),
    reason: "GET /health and GET /openapi.json are public by contract (API.md): no token, no data",
  },
  {
    id: "AwsSolutions-APIG4",
    type: "AWS::ApiGatewayV2::Route",
    where: (_, p) => ["$disconnect", "$default"].includes(String(p().RouteKey)),
    reason:
      "a WebSocket API authorizes at $connect only; $disconnect and $default run on a connection that the token authorizer already let in",
  },
  {
    id: "AwsSolutions-APIG2",
    type: "AWS::ApiGateway::RestApi",
    reason:
      "every handler validates its input with zod and answers 400 validation_failed listing every problem (API.md); an API Gateway validator would answer first, in another format",
  },
  {
    id: "AwsSolutions-APIG3",
    type: "AWS::ApiGateway::Stage",
    reason:
      "no WAF by default (a web ACL is 5 USD/month plus rules and requests): the stage throttles at 100 requests/s, and every route but /health and /openapi.json needs a token; attach an ACL to the stage where policy asks for one",
  },
  {
    id: "AwsSolutions-APIG6",
    type: "AWS::ApiGateway::Stage",
    reason:
      "execution logs go to a group API Gateway creates itself, outside jobq:logRetentionDays; the stage's access log (one JSON line per request, with retention) and the functions' logs say what happened",
  },
  {
    id: "AwsSolutions-SF1",
    type: "AWS::StepFunctions::StateMachine",
    reason:
      "level ERROR: ALL would write a log event per state transition of every job, and each job's transitions are already kept in the Jobs table (GET /jobs/{id}/transitions) and traced in X-Ray",
  },
  {
    id: "AwsSolutions-SQS3",
    type: "AWS::SQS::Queue",
    where: (resource) => resource.node.path.endsWith("/FailedBatches/Resource"),
    reason:
      "it is the on-failure destination of a DynamoDB stream event source mapping: a dead-letter queue in all but name, read by an operator",
  },
  {
    id: "AwsSolutions-ECS2",
    type: "AWS::ECS::TaskDefinition",
    reason:
      "the variables are table names, queue URLs, pools and timings (functions/config.ts), no secrets: workers reach AWS through their task role",
  },
  {
    id: "AwsSolutions-AS3",
    type: "AWS::AutoScaling::AutoScalingGroup",
    reason:
      "the ECS capacity provider (managed scaling) drives the group; its scaling shows in the ECS service's events and the pool's backlog alarms",
  },
  {
    id: "AwsSolutions-S1",
    type: "AWS::S3::Bucket",
    reason:
      "the dashboard bucket holds the public static bundle and nothing else, and only CloudFront reads it (origin access control); a log bucket would log CloudFront's cache fills",
  },
  {
    id: "AwsSolutions-CFR1",
    type: "AWS::CloudFront::Distribution",
    reason: "the dashboard is static code with no data of its own; its users are wherever the operators are",
  },
  {
    id: "AwsSolutions-CFR2",
    type: "AWS::CloudFront::Distribution",
    reason:
      "no WAF by default (5 USD/month plus rules): the distribution serves static files, and the API it calls needs a token for everything",
  },
  {
    id: "AwsSolutions-CFR3",
    type: "AWS::CloudFront::Distribution",
    reason:
      "the page is static public code; every call it makes lands in the API's access log. CloudFront standard logs would need an ACL-enabled bucket",
  },
  {
    id: "AwsSolutions-CFR4",
    type: "AWS::CloudFront::Distribution",
    reason:
      "the distribution uses the default *.cloudfront.net certificate, for which CloudFront fixes the minimum protocol itself; a custom domain with its own certificate would take TLSv1.2_2021",
  },
];

/** AWS managed policies jobq's roles may carry (IAM4), by name. */
const MANAGED_POLICIES: Readonly<Record<string, string>> = {
  "service-role/AWSLambdaBasicExecutionRole":
    "AWS's minimal policy for a function to write its own CloudWatch Logs (CreateLogStream, PutLogEvents) and nothing else",
  "service-role/AmazonAPIGatewayPushToCloudWatchLogs":
    "the account-level role API Gateway needs to write the stage's access log; AWS keeps the policy current",
};

/** Actions that IAM cannot scope to a resource, so they are granted on `*` (IAM5 Resource::*). */
const ACTIONS_WITHOUT_RESOURCES: ReadonlySet<string> = new Set([
  // Tracing (X-Ray active tracing on functions and the state machine).
  "xray:PutTraceSegments",
  "xray:PutTelemetryRecords",
  "xray:GetSamplingRules",
  "xray:GetSamplingTargets",
  // Step Functions' log delivery (vended logs) to the state machine's log group.
  "logs:CreateLogDelivery",
  "logs:GetLogDelivery",
  "logs:UpdateLogDelivery",
  "logs:DeleteLogDelivery",
  "logs:ListLogDeliveries",
  "logs:PutResourcePolicy",
  "logs:DescribeResourcePolicies",
  "logs:DescribeLogGroups",
  // A DynamoDB stream event source mapping lists the table's streams.
  "dynamodb:ListStreams",
  // ECS: pulling images and the container agent on GPU instances.
  "ecr:GetAuthorizationToken",
  "ecs:Poll",
  "ecs:StartTelemetrySession",
  "ecs:DiscoverPollEndpoint",
  // CDK's ECS instance role: the agent on a GPU instance writes the awslogs streams of tasks it
  // has not yet started, so it cannot name their groups.
  "logs:CreateLogStream",
  "logs:PutLogEvents",
  // Powertools Metrics writes EMF to stdout, but a direct PutMetricData has no resource either.
  "cloudwatch:PutMetricData",
]);

/** Wildcards (IAM5) jobq accepts in a resource ARN or an action, with why. */
const WILDCARDS: readonly { readonly finding: RegExp; readonly reason: string }[] = [
  {
    finding: /^Resource::<[A-Za-z0-9]+(\.Arn)?>\/index\/\*$/,
    reason:
      "the indexes of one named table (grantTable in lib/jobq-function.ts): the same actions as on the table, on its own GSIs",
  },
  {
    finding: /^Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:[^:*]+:\*$/,
    reason: "executions of jobq's own lifecycle state machine, named by job id, so not known in advance",
  },
  {
    finding: /^Resource::<[A-Za-z0-9]+\.Arn>:\*$/,
    reason:
      "versions and aliases of the one lifecycle function the state machine invokes (CDK's grantInvoke)",
  },
  {
    finding: /^Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task\/<[A-Za-z0-9]+>\/\*$/,
    reason: "the tasks of the pool's own cluster: a worker sets scale-in protection on its own task",
  },
  {
    finding:
      /^Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:<[A-Za-z0-9]+>\/[^/]+\/\*\/@connections\/\*$/,
    reason: "posting to the connections of this stream's own stage; connection ids are not known in advance",
  },
  {
    finding: /^Action::ecs:Submit\*$/,
    reason: "CDK's ECS instance role for the GPU pools' container agent (state change submissions)",
  },
  {
    finding:
      /^(Action::s3:(Abort|DeleteObject|GetBucket|GetObject|List)\*|Resource::<[A-Za-z0-9]+\.Arn>\/\*|Resource::arn:<AWS::Partition>:s3:::cdk-[a-z0-9]+-assets-<AWS::AccountId>-<AWS::Region>\/\*)$/,
    reason:
      "CDK's BucketDeployment: copies the bundle from the CDK assets bucket into the dashboard bucket, and only those",
  },
];

/** A template value as cdk-nag writes it into a finding id (its flattenCfnReference). */
function flatten(value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value.replace(/\$\{/g, "<").replace(/\}/g, ">");
  if (typeof value === "object" && value !== null) {
    const v = value as Record<string, unknown>;
    const join = v["Fn::Join"];
    if (Array.isArray(join)) return (join[1] as unknown[]).map(flatten).join(String(join[0]));
    if (v["Fn::Sub"] !== undefined) return flatten(v["Fn::Sub"]);
    const getAtt = v["Fn::GetAtt"];
    if (Array.isArray(getAtt)) return `<${flatten(getAtt[0])}.${flatten(getAtt[1])}>`;
    if (v["Fn::ImportValue"] !== undefined) return flatten(v["Fn::ImportValue"]);
    if (v.Ref !== undefined) return `<${flatten(v.Ref)}>`;
  }
  return JSON.stringify(value);
}

interface Statement {
  readonly Effect?: string;
  readonly Action?: string | string[];
  readonly Resource?: unknown;
}

const asList = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

function acknowledgeWildcards(resource: CfnResource, document: unknown): void {
  const statements = asList((document as { Statement?: Statement | Statement[] } | undefined)?.Statement);
  const acknowledge = (finding: string, reason: string) =>
    Validations.of(resource).acknowledge({ id: `AwsSolutions-IAM5[${finding}]`, reason });
  const onStar = new Set<string>();
  for (const statement of statements) {
    if (statement.Effect !== "Allow") continue;
    const actions = asList(statement.Action);
    const resources = asList(statement.Resource).map(flatten);
    if (resources.includes("*")) for (const action of actions) onStar.add(action);
    for (const finding of [
      ...actions.filter((a) => a.includes("*")).map((a) => `Action::${a}`),
      ...resources.filter((r) => r !== "*" && r.includes("*")).map((r) => `Resource::${r}`),
    ]) {
      const known = WILDCARDS.find((w) => w.finding.test(finding));
      if (known) acknowledge(finding, known.reason);
    }
  }
  if (onStar.size > 0 && [...onStar].every((a) => ACTIONS_WITHOUT_RESOURCES.has(a))) {
    acknowledge(
      "Resource::*",
      `only actions IAM cannot scope to a resource are granted on *: ${[...onStar].sort().join(", ")}`,
    );
  }
}

function acknowledgeManagedPolicies(resource: CfnResource, arns: unknown): void {
  for (const arn of asList(arns)) {
    const flat = flatten(arn);
    const name = /:iam::aws:policy\/(.+)$/.exec(flat)?.[1];
    const reason = name === undefined ? undefined : MANAGED_POLICIES[name];
    if (reason) Validations.of(resource).acknowledge({ id: `AwsSolutions-IAM4[Policy::${flat}]`, reason });
  }
}

/** Types with a rule here: the others are not looked at. */
const TYPES: ReadonlySet<string> = new Set([
  ...RULES.map((r) => r.type),
  "AWS::IAM::Policy",
  "AWS::IAM::Role",
]);

/** The resource's properties as the template will have them (references resolved). */
function propertiesOf(resource: CfnResource): Record<string, unknown> {
  const rendered = Stack.of(resource).resolve(resource._toCloudFormation()) as {
    Resources?: Record<string, { Properties?: Record<string, unknown> }>;
  };
  return Object.values(rendered.Resources ?? {})[0]?.Properties ?? {};
}

function acknowledgeResource(resource: CfnResource): void {
  const type = resource.cfnResourceType;
  if (!TYPES.has(type)) return;
  // Rendering a resource is the costly part (this runs in every synth): only where it is read.
  let properties: Record<string, unknown> | undefined;
  const props = (): Record<string, unknown> => {
    properties ??= propertiesOf(resource);
    return properties;
  };
  for (const rule of RULES) {
    if (rule.type !== type) continue;
    if (rule.where && !rule.where(resource, props)) continue;
    Validations.of(resource).acknowledge({ id: rule.id, reason: rule.reason });
  }
  if (type === "AWS::IAM::Policy") acknowledgeWildcards(resource, props().PolicyDocument);
  if (type === "AWS::IAM::Role") {
    acknowledgeManagedPolicies(resource, props().ManagedPolicyArns);
    for (const policy of asList(props().Policies as { PolicyDocument?: unknown }[] | undefined))
      acknowledgeWildcards(resource, policy.PolicyDocument);
  }
}

/**
 * Acknowledges, on every resource under `scope` (nested stacks included), the cdk-nag findings
 * listed above. Call once, on the top-level stack.
 */
export function acknowledgeNagFindings(scope: IConstruct): void {
  scope.node.addValidation({
    validate: () => {
      for (const construct of scope.node.findAll()) {
        if (CfnResource.isCfnResource(construct)) acknowledgeResource(construct);
      }
      return [];
    },
  });
}
