import { describe, expect, it } from "vitest";
import { readConfig } from "../../functions/config";
import {
  environmentOf,
  logicalId,
  nestedTemplate,
  resolvedEnvironment,
  resourcesOfType,
  synthJobqStack,
} from "./fixtures";

/**
 * Context jobq:retentionDays / jobq:jobRetentionDays reach every process that writes a job's
 * history or ends a job (docs/data-model.md#retention), and a bad value fails the synth.
 */

type Synth = ReturnType<typeof synthJobqStack>;

/** The retention functions/config.ts reads in each function that writes jobs, by name. */
function retentionOfWriters({ stack, template }: Synth): Map<string, unknown> {
  const writers = {
    lifecycle: stack.lifecycle.function,
    scheduler: stack.scheduler.schedulerFunction,
    reconciler: stack.scheduler.reconcilerFunction,
    ...stack.jobApi.functions,
  };
  return new Map(
    Object.entries(writers).map(([name, fn]) => [
      name,
      readConfig(resolvedEnvironment(environmentOf(template, logicalId(fn)))).retention,
    ]),
  );
}

/** The retention each worker pool's container reads. */
function retentionOfWorkers({ stack }: Synth): unknown[] {
  if (!stack.workersStack) throw new Error("no workers");
  const tasks = resourcesOfType(nestedTemplate(stack.workersStack), "AWS::ECS::TaskDefinition");
  return Object.values(tasks).map((task) => {
    const [container] = (task.Properties?.ContainerDefinitions ?? []) as {
      Environment: { Name: string; Value: unknown }[];
    }[];
    const variables = Object.fromEntries((container?.Environment ?? []).map((e) => [e.Name, e.Value]));
    return readConfig(resolvedEnvironment(variables)).retention;
  });
}

describe("retention settings", () => {
  it("default to 90 days of history and job items kept for good, in every function and worker", () => {
    const synth = synthJobqStack();
    const functions = retentionOfWriters(synth);
    expect(functions.size).toBeGreaterThan(10);
    for (const [name, retention] of functions) {
      expect({ name, retention }).toEqual({ name, retention: { historyDays: 90, jobDays: null } });
    }
    const workers = retentionOfWorkers(synth);
    expect(workers.length).toBeGreaterThan(0);
    for (const retention of workers) expect(retention).toEqual({ historyDays: 90, jobDays: null });
  });

  it("pass jobq:retentionDays and jobq:jobRetentionDays to every function and worker, as -c string or cdk.json number", () => {
    const synth = synthJobqStack({ "jobq:retentionDays": "30", "jobq:jobRetentionDays": 365 });
    for (const [name, retention] of retentionOfWriters(synth)) {
      expect({ name, retention }).toEqual({ name, retention: { historyDays: 30, jobDays: 365 } });
    }
    for (const retention of retentionOfWorkers(synth))
      expect(retention).toEqual({ historyDays: 30, jobDays: 365 });
  });

  it.each([
    ["jobq:retentionDays", 0],
    ["jobq:retentionDays", "1.5"],
    ["jobq:retentionDays", "ninety"],
    ["jobq:jobRetentionDays", -1],
  ])("fails the synth on %s = %j, naming the key", (key, value) => {
    expect(() => synthJobqStack({ [key]: value })).toThrow(new RegExp(key));
  });
});
