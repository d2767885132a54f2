import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type CfnElement, Stage } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { describe, expect, it } from "vitest";
import type { PoolConfig } from "../../core/pools";
import { EC2_HOURLY_USD } from "../../core/prices";
import { environmentOf, logicalId, logicalIdOfElement, resourcesOfType, synthJobqStack } from "./fixtures";

const POOLS: PoolConfig[] = [
  { name: "big", labels: { zone: "a" }, nodes: 3, node: { cpu: 16, memoryMb: 65536, gpu: 4 } },
];
/** As the functions get them: with each node's hourly price, here the g5.12xlarge that holds one. */
const PRICED_POOLS = POOLS.map((pool) => ({ ...pool, hourlyUsd: EC2_HOURLY_USD["g5.12xlarge"] }));

function poolsOfEveryRoute(synth: ReturnType<typeof synthJobqStack>): unknown[] {
  return Object.values(synth.stack.jobApi.functions).map((fn) => {
    const variables = environmentOf(synth.template, logicalId(fn));
    return JSON.parse(String(variables.JOBQ_POOLS));
  });
}

describe("JobqStack", () => {
  it("outputs the API URL, both table names, the event bus, the state machine and the cluster", () => {
    const { stack, template } = synthJobqStack();
    template.hasOutput("ApiUrl", {});
    template.hasOutput("JobsTableName", { Value: { Ref: logicalId(stack.store.jobsTable) } });
    template.hasOutput("TokensTableName", { Value: { Ref: logicalId(stack.store.tokensTable) } });
    template.hasOutput("EventBusName", { Value: { Ref: logicalId(stack.eventBus) } });
    template.hasOutput("StateMachineArn", { Value: { Ref: logicalId(stack.lifecycle.stateMachine) } });
    // The cluster is in the worker pools' nested stack: the output reads that stack's output of it.
    if (!stack.workers || !stack.workersStack) throw new Error("no workers");
    const value = (template.toJSON().Outputs as Record<string, { Value: unknown }>).ClusterName?.Value;
    const [stackId, attribute] = (value as { "Fn::GetAtt": [string, string] })["Fn::GetAtt"];
    expect(stackId).toBe(logicalIdOfElement(stack.workersStack.nestedStackResource as CfnElement));
    Template.fromStack(stack.workersStack).hasOutput(attribute.replace(/^Outputs\./, ""), {
      Value: { Ref: logicalId(stack.workers.cluster) },
    });
  });

  it("passes CDK's CloudFormation validation without a finding", () => {
    const { stack } = synthJobqStack({}, { validate: true });
    const app = Stage.of(stack);
    if (!app) throw new Error("no app");
    const report = JSON.parse(
      readFileSync(join(app.synth().directory, "validation-report.json"), "utf8"),
    ) as {
      pluginReports: { violations?: unknown[] }[];
    };
    expect(report.pluginReports.flatMap((r) => r.violations ?? [])).toEqual([]);
  });

  it("leaves out the VPC, cluster and workers with jobq:workers=none (LocalStack's free tier has no ECS)", () => {
    const { stack, template } = synthJobqStack({ "jobq:workers": "none" });
    expect(stack.workers).toBeUndefined();
    expect(stack.workersStack).toBeUndefined();
    for (const type of ["AWS::EC2::VPC", "AWS::ECS::Cluster", "AWS::ECS::Service"]) {
      expect(resourcesOfType(template, type)).toEqual({});
    }
    expect(Object.keys(template.findOutputs("*"))).not.toContain("ClusterName");
    template.hasResourceProperties("AWS::StepFunctions::StateMachine", {});
    expect(() => synthJobqStack({ "jobq:workers": "fargate" })).toThrow(/jobq:workers/);
  });

  it("passes the pools of context jobq:pools to every route, as JSON string or as cdk.json value", () => {
    for (const value of [JSON.stringify(POOLS), POOLS]) {
      for (const pools of poolsOfEveryRoute(synthJobqStack({ "jobq:pools": value })))
        expect(pools).toEqual(PRICED_POOLS);
    }
  });

  it("refuses pools that core/pools.ts would refuse, naming the key", () => {
    expect(() => synthJobqStack({ "jobq:pools": "[]" })).toThrow(/jobq:pools/);
    expect(() => synthJobqStack({ "jobq:pools": "{not json" })).toThrow(/jobq:pools/);
  });

  it("takes each pool's ECS settings from jobq:pools but gives the handlers the pools without them", () => {
    const withEcs = POOLS.map((p) => ({
      ...p,
      ecs: { instanceType: "g5.12xlarge", minNodes: 1, maxNodes: 5 },
    }));
    for (const pools of poolsOfEveryRoute(synthJobqStack({ "jobq:pools": withEcs })))
      expect(pools).toEqual(PRICED_POOLS);
  });

  it("refuses more pools than fit Lambda's 4 KB environment and CloudFormation's 500 resources", () => {
    const pools = (n: number) =>
      Array.from({ length: n }, (_, i) => ({ name: `p${i}`, node: { cpu: 1, memoryMb: 2048 } }));
    expect(() => synthJobqStack({ "jobq:pools": pools(6), "jobq:workers": "none" })).toThrow(
      /jobq:pools.*at most 5 pools.*4 KB.*500/,
    );
    // CDK refuses a stack over 500 resources at synth (TooManyResourcesInStack): five pools fit.
    expect(() => synthJobqStack({ "jobq:pools": pools(5), "jobq:workers": "none" })).not.toThrow();
  });

  it("refuses ECS settings that make no sense, naming the pool's field", () => {
    const pool = POOLS[0];
    const bad = [
      { ...pool, ecs: { minNodes: 4 } },
      { ...pool, ecs: { maxNodes: -1 } },
      { ...pool, ecs: { instanceType: "big" } },
      { ...pool, ecs: { spot: true } },
      { ...pool, node: { cpu: 2, memoryMb: 4096 }, ecs: { instanceType: "g5.xlarge" } },
    ];
    for (const b of bad)
      expect(() => synthJobqStack({ "jobq:pools": [b] })).toThrow(/jobq:pools.*0\.(ecs|node)/);
    // Known instance type too small for the node: refused with the sizes.
    expect(() => synthJobqStack({ "jobq:pools": [{ ...pool, ecs: { instanceType: "g5.xlarge" } }] })).toThrow(
      /g5\.xlarge .*cannot hold one node/,
    );
    expect(() => synthJobqStack({ "jobq:natGateways": "-1" })).toThrow(/jobq:natGateways/);
  });

  it("retains tables and logs by default and deletes them with jobq:removalPolicy=destroy", () => {
    const retained = synthJobqStack();
    const destroyed = synthJobqStack({ "jobq:removalPolicy": "destroy" });
    for (const type of ["AWS::DynamoDB::Table", "AWS::Logs::LogGroup"]) {
      for (const r of Object.values(resourcesOfType(retained.template, type)))
        expect(r.DeletionPolicy).toBe("Retain");
      for (const r of Object.values(resourcesOfType(destroyed.template, type)))
        expect(r.DeletionPolicy).toBe("Delete");
    }
    expect(() => synthJobqStack({ "jobq:removalPolicy": "snapshot" })).toThrow(/jobq:removalPolicy/);
  });

  it("tells every route, the lifecycle, the scheduler and the reconciler the policy table", () => {
    const { stack, template } = synthJobqStack();
    const policyTable = { Ref: logicalId(stack.store.policyTable) };
    const functions = [
      ...Object.values(stack.jobApi.functions),
      stack.lifecycle.function,
      stack.scheduler.schedulerFunction,
      stack.scheduler.reconcilerFunction,
    ];
    for (const fn of functions) {
      expect(environmentOf(template, logicalId(fn)).JOBQ_POLICY_TABLE).toEqual(policyTable);
    }
  });

  it("passes context jobq:taskTypes to the handlers", () => {
    const { stack, template } = synthJobqStack({ "jobq:taskTypes": '["echo","train-model"]' });
    for (const fn of Object.values(stack.jobApi.functions)) {
      const variables = environmentOf(template, logicalId(fn));
      expect(JSON.parse(String(variables.JOBQ_TASK_TYPES))).toEqual(["echo", "train-model"]);
    }
  });
});
