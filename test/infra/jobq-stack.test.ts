import { describe, expect, it } from "vitest";
import type { PoolConfig } from "../../core/pools";
import { environmentOf, logicalId, resourcesOfType, synthJobqStack } from "./fixtures";

const POOLS: PoolConfig[] = [
  { name: "big", labels: { zone: "a" }, nodes: 3, node: { cpu: 16, memoryMb: 65536, gpu: 4 } },
];

function poolsOfEveryRoute(synth: ReturnType<typeof synthJobqStack>): unknown[] {
  return Object.values(synth.stack.jobApi.functions).map((fn) => {
    const variables = environmentOf(synth.template, logicalId(synth.stack, fn));
    return JSON.parse(String(variables.JOBQ_POOLS));
  });
}

describe("JobqStack", () => {
  it("outputs the API URL and both table names", () => {
    const { stack, template } = synthJobqStack();
    template.hasOutput("ApiUrl", {});
    template.hasOutput("JobsTableName", { Value: { Ref: logicalId(stack, stack.store.jobsTable) } });
    template.hasOutput("TokensTableName", { Value: { Ref: logicalId(stack, stack.store.tokensTable) } });
  });

  it("passes the pools of context jobq:pools to every route, as JSON string or as cdk.json value", () => {
    for (const value of [JSON.stringify(POOLS), POOLS]) {
      for (const pools of poolsOfEveryRoute(synthJobqStack({ "jobq:pools": value })))
        expect(pools).toEqual(POOLS);
    }
  });

  it("refuses pools that core/pools.ts would refuse, naming the key", () => {
    expect(() => synthJobqStack({ "jobq:pools": "[]" })).toThrow(/jobq:pools/);
    expect(() => synthJobqStack({ "jobq:pools": "{not json" })).toThrow(/jobq:pools/);
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

  it("passes context jobq:taskTypes to the handlers", () => {
    const { stack, template } = synthJobqStack({ "jobq:taskTypes": '["echo","train-model"]' });
    for (const fn of Object.values(stack.jobApi.functions)) {
      const variables = environmentOf(template, logicalId(stack, fn));
      expect(JSON.parse(String(variables.JOBQ_TASK_TYPES))).toEqual(["echo", "train-model"]);
    }
  });
});
