import type { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { readConfig } from "../../functions/config";
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

let stack: JobqStack;
let template: Template;
let schedulerId: string;
let reconcilerId: string;

beforeAll(() => {
  ({ stack, template } = synthJobqStack());
  schedulerId = logicalId(stack.scheduler.schedulerFunction);
  reconcilerId = logicalId(stack.scheduler.reconcilerFunction);
});

/** Rules with a target that invokes the function. */
function rulesTargeting(functionId: string): CfnResource[] {
  return Object.values(resourcesOfType(template, "AWS::Events::Rule")).filter((rule) =>
    ((rule.Properties?.Targets ?? []) as { Arn: unknown }[]).some(
      (t) => JSON.stringify(t.Arn) === JSON.stringify({ "Fn::GetAtt": [functionId, "Arn"] }),
    ),
  );
}

/** EventBridge may invoke the function (the rule's resource policy on the function). */
function invokableBy(functionId: string, ruleId: string): boolean {
  return Object.values(resourcesOfType(template, "AWS::Lambda::Permission")).some(
    (p) =>
      p.Properties?.Principal === "events.amazonaws.com" &&
      JSON.stringify(p.Properties?.FunctionName) === JSON.stringify({ "Fn::GetAtt": [functionId, "Arn"] }) &&
      JSON.stringify(p.Properties?.SourceArn) === JSON.stringify({ "Fn::GetAtt": [ruleId, "Arn"] }),
  );
}

describe("scheduler", () => {
  it("runs every minute", () => {
    const rules = rulesTargeting(schedulerId);
    const sweep = rules.find((r) => r.Properties?.ScheduleExpression === "rate(1 minute)");
    expect(sweep?.Properties?.State).toBe("ENABLED");
    expect(invokableBy(schedulerId, logicalId(stack.scheduler.sweepRule))).toBe(true);
  });

  it("wakes on the Jobs table's stream for jobs that became queued or gave up a reservation, not on paid events", () => {
    const mappings = template.findResources("AWS::Lambda::EventSourceMapping", {
      Properties: { FunctionName: { Ref: schedulerId } },
    });
    const mapping = Object.values(mappings)[0] as { Properties: Record<string, unknown> } | undefined;
    if (!mapping) throw new Error("the scheduler has no stream event source");
    expect(mapping.Properties.EventSourceArn).toEqual({
      "Fn::GetAtt": [logicalId(stack.store.jobsTable), "StreamArn"],
    });
    // A wake-up older than a sweep is overtaken by the sweep; a failing batch is not retried for long.
    expect(mapping.Properties.MaximumRecordAgeInSeconds).toBe(60);
    expect(mapping.Properties.MaximumRetryAttempts).toBe(2);
    const patterns = (mapping.Properties.FilterCriteria as { Filters: { Pattern: string }[] }).Filters.map(
      (f) => JSON.parse(f.Pattern),
    );
    const job = { Keys: { sk: { S: ["JOB"] } } };
    // Not a large batch's job before its commit: that is not in the queue yet.
    const visible = { staged: { BOOL: [{ exists: false }] } };
    expect(patterns).toEqual([
      { eventName: ["INSERT"], dynamodb: { ...job, NewImage: { status: { S: ["queued"] }, ...visible } } },
      {
        eventName: ["MODIFY"],
        dynamodb: {
          ...job,
          NewImage: { status: { S: ["queued"] }, ...visible },
          OldImage: { status: { S: [{ "anything-but": ["queued"] }] } },
        },
      },
      {
        eventName: ["MODIFY"],
        dynamodb: {
          ...job,
          NewImage: { status: { S: ["queued"] }, ...visible },
          OldImage: { staged: { BOOL: [true] } },
        },
      },
      {
        eventName: ["MODIFY", "REMOVE"],
        dynamodb: {
          ...job,
          OldImage: { reservation: { M: { pool: { S: [{ exists: true }] } } } },
          NewImage: { reservation: { M: { pool: { S: [{ exists: false }] } } } },
        },
      },
    ]);
    // No rule on the jobq bus invokes it: events are for users, and may be terminal-only.
    expect(rulesTargeting(schedulerId).every((r) => r.Properties?.EventPattern === undefined)).toBe(true);
  });

  it("publishes every status change by default, and only terminal ones with jobq:stateChangeEvents=terminal", () => {
    expect(readConfig(resolvedEnvironment(environmentOf(template, schedulerId))).stateChangeEvents).toBe(
      "all",
    );
    const terminal = synthJobqStack({ "jobq:stateChangeEvents": "terminal" });
    const id = logicalId(terminal.stack.scheduler.schedulerFunction);
    const variables = resolvedEnvironment(environmentOf(terminal.template, id));
    expect(variables.JOBQ_STATE_CHANGE_EVENTS).toBe("terminal");
    expect(readConfig(variables).stateChangeEvents).toBe("terminal");
    expect(() => synthJobqStack({ "jobq:stateChangeEvents": "some" })).toThrow(/jobq:stateChangeEvents/);
  });

  it("has no reserved concurrency (pool leases serialize passes)", () => {
    const fn = resourcesOfType(template, "AWS::Lambda::Function")[schedulerId];
    expect(fn?.Properties?.ReservedConcurrentExecutions).toBeUndefined();
  });

  it("may admit (tables), start and stop executions, read its wake-ups and publish events, nothing more", () => {
    const all = [...grantsOf(roleStatements(template, roleIdOf(stack.scheduler.schedulerFunction)))];
    // Its event source on the Jobs table's stream, and the queue its failed wake-ups go to.
    const streamReads = all.filter((g) =>
      /^dynamodb:(DescribeStream|GetRecords|GetShardIterator|ListStreams) /.test(g),
    );
    expect(streamReads.length).toBeGreaterThan(0);
    expect(
      streamReads.every(
        (g) => g.includes(logicalId(stack.store.jobsTable)) || g.startsWith("dynamodb:ListStreams "),
      ),
    ).toBe(true);
    const sends = all.filter((g) => g.startsWith("sqs:"));
    expect(sends.length).toBeGreaterThan(0);
    expect(sends.every((g) => g.includes(logicalId(stack.scheduler.wakeFailedBatches)))).toBe(true);
    const grants = new Set(all.filter((g) => !streamReads.includes(g) && !sends.includes(g)));
    expect(grants).toEqual(
      new Set([
        ...tableGrants(logicalId(stack.store.jobsTable), [
          "dynamodb:Query",
          "dynamodb:GetItem",
          "dynamodb:BatchGetItem",
          "dynamodb:UpdateItem",
          "dynamodb:PutItem",
          "dynamodb:ConditionCheckItem",
          // Admissions' job changes and waiting jobs' reasons, 25 conditional updates a request
          // (BatchExecuteStatement).
          "dynamodb:PartiQLUpdate",
          // A schedule's fire is a submission: a refused one gives its idempotency claim back.
          "dynamodb:DeleteItem",
        ]),
        ...tableGrants(logicalId(stack.store.nodesTable), [
          "dynamodb:GetItem",
          "dynamodb:Query",
          "dynamodb:PutItem",
          "dynamodb:UpdateItem",
          "dynamodb:DeleteItem",
          "dynamodb:ConditionCheckItem",
        ]),
        ...tableGrants(logicalId(stack.store.policyTable), [
          "dynamodb:GetItem",
          "dynamodb:BatchGetItem",
          "dynamodb:Query",
          "dynamodb:UpdateItem",
          // A schedule's fire is recorded with a conditional PutItem of the schedule.
          "dynamodb:PutItem",
        ]),
        // Tokens the previous lifecycle's executions parked on jobs it admits.
        grant("states:SendTaskSuccess", stack.resolve(stack.lifecycle.stateMachineArn)),
        // A silent node's running attempts are reported lost on their run tokens.
        grant("states:SendTaskFailure", stack.resolve(stack.lifecycle.stateMachineArn)),
        // Every admission starts its attempt's execution; preemption stops the victim's.
        grant("states:StartExecution", stack.resolve(stack.lifecycle.stateMachineArn)),
        grant("states:StopExecution", stack.resolve(stack.lifecycle.executionArns)),
        grant("events:PutEvents", { "Fn::GetAtt": [logicalId(stack.eventBus), "Arn"] }),
      ]),
    );
  });

  it("is told the event bus, the state machine, the queues, the nodes and policy tables", () => {
    const config = readConfig(resolvedEnvironment(environmentOf(template, schedulerId)));
    expect(config.eventBus).toBe(`<Ref:${logicalId(stack.eventBus)}>`);
    expect(config.nodesTable).toBe(`<Ref:${logicalId(stack.store.nodesTable)}>`);
    expect(config.policyTable).toBe(`<Ref:${logicalId(stack.store.policyTable)}>`);
    expect(config.stateMachineArn).toMatch(/:stateMachine:Jobq-job-lifecycle$/);
    expect(Object.keys(config.queues).sort()).toEqual(["cpu", "gpu"]);
    // The Dispatch heartbeat spans the queue wait: minutes, not the workers' beat period.
    expect(config).toMatchObject({ heartbeatSeconds: 30, lostAfterSeconds: 300, nodeLostSeconds: 30 });
  });
});

describe("scheduler and recurring schedules", () => {
  it("may query the schedule indexes of the policy table and write schedules only conditionally", () => {
    const statements = roleStatements(template, roleIdOf(stack.scheduler.schedulerFunction));
    const policyTableId = logicalId(stack.store.policyTable);
    // The due index is read by Query on `<table>/index/*`; a fire records itself with PutItem.
    const grants = grantsOf(statements);
    expect(grants).toContain(
      grant("dynamodb:Query", { "Fn::Join": ["", [{ "Fn::GetAtt": [policyTableId, "Arn"] }, "/index/*"]] }),
    );
    expect(grants).toContain(grant("dynamodb:PutItem", { "Fn::GetAtt": [policyTableId, "Arn"] }));
    expect([...grants].some((g) => g.startsWith("dynamodb:DeleteItem ") && g.includes(policyTableId))).toBe(
      false,
    );
  });

  it("gives the policy table the schedules and sparse scheduleDue indexes", () => {
    const table = resourcesOfType(template, "AWS::DynamoDB::Table")[logicalId(stack.store.policyTable)];
    const indexes = (table?.Properties?.GlobalSecondaryIndexes ?? []) as {
      IndexName: string;
      KeySchema: { AttributeName: string; KeyType: string }[];
    }[];
    expect(indexes.map((i) => [i.IndexName, i.KeySchema.map((k) => k.AttributeName)])).toEqual(
      expect.arrayContaining([
        ["schedules", ["schedulesPk", "schedulesSk"]],
        ["scheduleDue", ["scheduleDuePk", "scheduleDueSk"]],
      ]),
    );
  });
});

describe("reconciler", () => {
  it("runs every 5 minutes", () => {
    const rules = rulesTargeting(reconcilerId);
    expect(rules.map((r) => r.Properties?.ScheduleExpression)).toEqual(["rate(5 minutes)"]);
    expect(invokableBy(reconcilerId, logicalId(stack.scheduler.reconcileRule))).toBe(true);
  });

  it("may describe executions and release tokens on the lifecycle state machine only, and start none", () => {
    const grants = [...grantsOf(roleStatements(template, roleIdOf(stack.scheduler.reconcilerFunction)))];
    const states = grants.filter((g) => g.startsWith("states:"));
    expect(new Set(states)).toEqual(
      new Set([
        grant("states:SendTaskSuccess", stack.resolve(stack.lifecycle.stateMachineArn)),
        grant("states:DescribeExecution", stack.resolve(stack.lifecycle.executionArns)),
      ]),
    );
    const tables = [logicalId(stack.store.jobsTable), logicalId(stack.store.nodesTable)];
    const policy = logicalId(stack.store.policyTable);
    const dynamo = grants.filter((g) => g.startsWith("dynamodb:"));
    expect(dynamo.length).toBeGreaterThan(0);
    // A lost attempt's GPU usage is added in the transaction that ends it: UpdateItem, no more.
    const onPolicy = dynamo.filter((g) => g.includes(`"${policy}"`));
    expect(onPolicy.length).toBeGreaterThan(0);
    expect(onPolicy.every((g) => g.startsWith("dynamodb:UpdateItem "))).toBe(true);
    expect(
      dynamo.filter((g) => !onPolicy.includes(g)).every((g) => tables.some((t) => g.includes(`"${t}"`))),
    ).toBe(true);
    expect(grants.some((g) => g.includes(logicalId(stack.store.tokensTable)))).toBe(false);
  });
});

describe("alarms", () => {
  it("fire when the scheduler or the reconciler throws", () => {
    const alarms = Object.values(resourcesOfType(template, "AWS::CloudWatch::Alarm"));
    for (const id of [schedulerId, reconcilerId]) {
      const alarm = alarms.find(
        (a) =>
          a.Properties?.MetricName === "Errors" &&
          JSON.stringify(a.Properties?.Dimensions).includes(`"${id}"`),
      );
      expect(alarm?.Properties).toMatchObject({ Namespace: "AWS/Lambda", Threshold: 1 });
    }
  });
});
