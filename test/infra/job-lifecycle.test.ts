import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { readConfig } from "../../functions/config";
import { DEFAULT_DEFINITION_FILE, LIFECYCLE_FUNCTION_ARN } from "../../lib/job-lifecycle";
import type { JobqStack } from "../../lib/jobq-stack";
import {
  type CfnResource,
  environmentOf,
  grant,
  grantsOf,
  logicalId,
  resolvedEnvironment,
  resourcesOfType,
  roleIdOf,
  roleStatements,
  synthJobqStack,
  tableGrants,
} from "./fixtures";

/** asl-validator ships no types; this is the part of its API the test uses. */
type AslValidator = (definition: unknown) => { isValid: boolean; errorsText: (separator?: string) => string };
const aslValidator = createRequire(import.meta.url)("asl-validator") as AslValidator;

let stack: JobqStack;
let template: Template;
let stateMachine: CfnResource;
let functionId: string;

beforeAll(() => {
  ({ stack, template } = synthJobqStack());
  const found = resourcesOfType(template, "AWS::StepFunctions::StateMachine")[
    logicalId(stack.lifecycle.stateMachine)
  ];
  if (!found) throw new Error("no lifecycle state machine");
  stateMachine = found;
  functionId = logicalId(stack.lifecycle.function);
});

const placeholders = (definition: string): string[] =>
  [...definition.matchAll(/\$\{([A-Za-z0-9]+)\}/g)].map((m) => m[1] ?? "");

describe("the lifecycle definition", () => {
  it("is valid ASL", () => {
    const result = aslValidator(JSON.parse(readFileSync(DEFAULT_DEFINITION_FILE, "utf8")));
    expect(result.errorsText("\n")).toBe("");
    expect(result.isValid).toBe(true);
  });

  it("is the repository's file, inline, with the lifecycle function's ARN for its one placeholder", () => {
    const definition = String(stateMachine.Properties?.DefinitionString);
    expect(JSON.parse(definition)).toEqual(JSON.parse(readFileSync(DEFAULT_DEFINITION_FILE, "utf8")));
    expect(new Set(placeholders(definition))).toEqual(new Set([LIFECYCLE_FUNCTION_ARN]));
    expect(stateMachine.Properties?.DefinitionSubstitutions).toEqual({
      [LIFECYCLE_FUNCTION_ARN]: { "Fn::GetAtt": [functionId, "Arn"] },
    });
  });

  it("is a Standard state machine, traced, logging errors without execution data", () => {
    const props = stateMachine.Properties ?? {};
    expect(props.StateMachineType).toBe("STANDARD");
    expect(props.TracingConfiguration).toEqual({ Enabled: true });
    expect(props.LoggingConfiguration).toEqual({
      Destinations: [
        {
          CloudWatchLogsLogGroup: {
            LogGroupArn: { "Fn::GetAtt": [logicalId(stack.lifecycle.logGroup), "Arn"] },
          },
        },
      ],
      IncludeExecutionData: false,
      Level: "ERROR",
    });
  });
});

describe("least privilege", () => {
  it("lets the state machine invoke only the lifecycle function and send only to the job queues", () => {
    const roleId = logicalId(stack.lifecycle.stateMachine.role);
    const grants = [...grantsOf(roleStatements(template, roleId))];
    const fnArn = { "Fn::GetAtt": [functionId, "Arn"] };

    const lambda = grants.filter((g) => g.startsWith("lambda:"));
    expect(new Set(lambda)).toEqual(
      new Set([
        grant("lambda:InvokeFunction", fnArn),
        grant("lambda:InvokeFunction", { "Fn::Join": ["", [fnArn, ":*"]] }),
      ]),
    );
    const sqs = grants.filter((g) => g.startsWith("sqs:"));
    const queueArns = stack.queues.allQueues.map((q) => ({ "Fn::GetAtt": [logicalId(q), "Arn"] }));
    expect(new Set(sqs)).toEqual(new Set(queueArns.map((arn) => grant("sqs:SendMessage", arn))));
    // Besides: log delivery and nothing else (no DynamoDB, no states:*, no wildcard action).
    const other = grants.filter((g) => !g.startsWith("lambda:") && !g.startsWith("sqs:"));
    expect(other.every((g) => g.startsWith("logs:"))).toBe(true);
  });

  it("lets the lifecycle function use the tables, answer tokens, stop executions and publish events", () => {
    const statements = roleStatements(template, roleIdOf(stack.lifecycle.function));
    const stateMachineArn = stack.resolve(stack.lifecycle.stateMachineArn);
    const jobs = logicalId(stack.store.jobsTable);
    const nodes = logicalId(stack.store.nodesTable);
    const policy = logicalId(stack.store.policyTable);
    const grants = grantsOf(statements);

    expect(grants).toEqual(
      new Set([
        ...tableGrants(jobs, [
          "dynamodb:GetItem",
          "dynamodb:BatchGetItem",
          "dynamodb:Query",
          "dynamodb:PutItem",
          "dynamodb:UpdateItem",
          "dynamodb:ConditionCheckItem",
        ]),
        ...tableGrants(nodes, [
          "dynamodb:GetItem",
          "dynamodb:Query",
          "dynamodb:UpdateItem",
          "dynamodb:ConditionCheckItem",
        ]),
        // GPU usage and run times, added in the transaction that ends an attempt; the policy,
        // read for circuit breakers and an escalation job's type rules; a breaker written with its history.
        ...tableGrants(policy, ["dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:PutItem"]),
        grant("states:StopExecution", stack.resolve(stack.lifecycle.executionArns)),
        grant("states:SendTaskSuccess", stateMachineArn),
        grant("states:SendTaskFailure", stateMachineArn),
        grant("events:PutEvents", { "Fn::GetAtt": [logicalId(stack.eventBus), "Arn"] }),
      ]),
    );
  });

  it("releases dependents from the Jobs table's stream, invoked only for job items that became completed", () => {
    const fnId = logicalId(stack.lifecycle.dependentsFunction);
    const mappings = template.findResources("AWS::Lambda::EventSourceMapping", {
      Properties: { FunctionName: { Ref: fnId } },
    });
    const mapping = Object.values(mappings)[0] as { Properties: Record<string, unknown> } | undefined;
    if (!mapping) throw new Error("the dependents function has no event source");
    expect(mapping.Properties.EventSourceArn).toEqual({
      "Fn::GetAtt": [logicalId(stack.store.jobsTable), "StreamArn"],
    });
    expect(mapping.Properties.FunctionResponseTypes).toEqual(["ReportBatchItemFailures"]);
    const patterns = (mapping.Properties.FilterCriteria as { Filters: { Pattern: string }[] }).Filters.map(
      (f) => JSON.parse(f.Pattern),
    );
    // Completions of jobs that may be waited on, and of breakers' probes: a job created with
    // nothing waiting on it (`noDependents`) that is no probe invokes nothing.
    expect(patterns).toEqual([
      {
        dynamodb: {
          Keys: { sk: { S: ["JOB"] } },
          NewImage: { status: { S: ["completed"] }, noDependents: { BOOL: [{ exists: false }] } },
        },
      },
      {
        dynamodb: {
          Keys: { sk: { S: ["JOB"] } },
          NewImage: { status: { S: ["completed"] }, circuitProbe: { S: [{ exists: true }] } },
        },
      },
    ]);
    // A batch it gives up on goes to a queue of its own, not silently away.
    const destination = (mapping.Properties.DestinationConfig as { OnFailure: { Destination: unknown } })
      .OnFailure.Destination;
    expect(destination).toEqual({
      "Fn::GetAtt": [logicalId(stack.lifecycle.dependentsFailedBatches), "Arn"],
    });
    // It moves dependents (Jobs table) and publishes their events; it starts no execution.
    const grants = [...grantsOf(roleStatements(template, roleIdOf(stack.lifecycle.dependentsFunction)))];
    expect(grants.some((g) => g.startsWith("states:"))).toBe(false);
    expect(grants).toContain(grant("events:PutEvents", { "Fn::GetAtt": [logicalId(stack.eventBus), "Arn"] }));
    // A completed probe closes its circuit breaker: read and conditionally put in the Policy table, nothing else there.
    const policy = logicalId(stack.store.policyTable);
    const policyGrants = grants.filter((g) => g.includes(policy));
    expect(new Set(policyGrants)).toEqual(
      new Set(tableGrants(policy, ["dynamodb:GetItem", "dynamodb:PutItem"])),
    );
  });

  it("names the state machine's ARN in the function without referencing it (no cycle)", () => {
    const variables = environmentOf(template, functionId);
    expect(JSON.stringify(variables)).not.toContain(logicalId(stack.lifecycle.stateMachine));
    const config = readConfig(resolvedEnvironment(variables));
    expect(config.stateMachineArn).toBe(
      `arn:<Ref:AWS::Partition>:states:<Ref:AWS::Region>:<Ref:AWS::AccountId>:stateMachine:${stateMachine.Properties?.StateMachineName}`,
    );
  });
});

describe("alarms", () => {
  const alarmOn = (metricName: string, dimension: string, id: string) =>
    Object.values(resourcesOfType(template, "AWS::CloudWatch::Alarm")).find(
      (a) =>
        a.Properties?.MetricName === metricName &&
        JSON.stringify(a.Properties?.Dimensions).includes(`"${dimension}"`) &&
        JSON.stringify(a.Properties?.Dimensions).includes(`"${id}"`),
    );

  it("fire on a failed execution and on a lifecycle function error", () => {
    const failed = alarmOn("ExecutionsFailed", "StateMachineArn", logicalId(stack.lifecycle.stateMachine));
    expect(failed?.Properties).toMatchObject({
      Namespace: "AWS/States",
      Threshold: 1,
      ComparisonOperator: "GreaterThanOrEqualToThreshold",
    });
    const errors = alarmOn("Errors", "FunctionName", functionId);
    expect(errors?.Properties).toMatchObject({ Namespace: "AWS/Lambda", Threshold: 1 });
  });
});
