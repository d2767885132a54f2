import { describe, expect, it } from "vitest";
import type { LogLevel } from "../../core/job";
import {
  AttemptStoppedError,
  defineTask,
  describeFailure,
  loadTaskModules,
  type TaskContext,
  TaskError,
  TaskRegistry,
  TaskRegistryError,
} from "../../worker/registry";
import { EXAMPLE_TASKS, registerExampleTasks } from "../../worker/tasks/examples";

/** A TaskContext that records the task's log lines; abort it through `controller`. */
function context(attempt = 1) {
  const controller = new AbortController();
  const lines: { level: LogLevel; message: string }[] = [];
  const ctx: TaskContext = {
    jobId: "job_test",
    attempt,
    signal: controller.signal,
    log: (level, message) => lines.push({ level, message }),
    heartbeat: async () => undefined,
  };
  return { ctx, controller, lines };
}

const registry = registerExampleTasks(new TaskRegistry());
function handler(type: string) {
  const found = registry.get(type);
  if (!found) throw new Error(`no ${type} handler`);
  return found;
}

describe("example tasks", () => {
  it("registers API.md's five example types", () => {
    expect(registry.types()).toEqual(["echo", "fail", "flaky", "log", "sleep"]);
  });

  it("echo returns its payload", async () => {
    const payload = { greeting: "hello", n: [1, 2, 3] };

    expect(await handler("echo")(payload, context().ctx)).toEqual(payload);
  });

  it("echo of no payload is null", async () => {
    expect(await handler("echo")(undefined, context().ctx)).toBeNull();
  });

  it("sleep waits its seconds and says so", async () => {
    expect(await handler("sleep")({ seconds: 0.01 }, context().ctx)).toEqual({ slept: 0.01 });
  });

  it("sleep stops with the abort reason as soon as it is aborted", async () => {
    const { ctx, controller } = context();
    const reason = new AttemptStoppedError("execution_stopped", "cancelled");

    const running = handler("sleep")({ seconds: 3600 }, ctx);
    controller.abort(reason);

    await expect(running).rejects.toBe(reason);
  });

  it("sleep does not start when already aborted", async () => {
    const { ctx, controller } = context();
    controller.abort(new AttemptStoppedError("timeout", "timed out after 1 s"));

    await expect(handler("sleep")({ seconds: 3600 }, ctx)).rejects.toThrow("timed out after 1 s");
  });

  it("sleep refuses a payload without usable seconds", async () => {
    const run = handler("sleep")({ seconds: "soon" }, context().ctx);

    await expect(run).rejects.toBeInstanceOf(TaskError);
    await expect(run).rejects.toMatchObject({ type: "invalid_payload" });
  });

  it("flaky fails attempts 1..failTimes and succeeds after", async () => {
    const flaky = handler("flaky");
    const payload = { failTimes: 2, seconds: 0 };

    const outcomes = [];
    for (const attempt of [1, 2, 3]) {
      outcomes.push(
        await flaky(payload, context(attempt).ctx).then(
          (result) => ({ result }),
          (error: unknown) => ({ error }),
        ),
      );
    }

    expect(outcomes[0]).toMatchObject({
      error: { type: "flaky", message: expect.stringContaining("attempt 1") },
    });
    expect(outcomes[1]).toMatchObject({
      error: { type: "flaky", message: expect.stringContaining("attempt 2") },
    });
    expect(outcomes[2]).toEqual({ result: { attempt: 3, failedBefore: 2 } });
  });

  it("flaky with failTimes 0 succeeds at once", async () => {
    expect(await handler("flaky")({ failTimes: 0 }, context(1).ctx)).toEqual({ attempt: 1, failedBefore: 0 });
  });

  it("flaky honors abort while it sleeps", async () => {
    const { ctx, controller } = context(5);

    const running = handler("flaky")({ failTimes: 1, seconds: 3600 }, ctx);
    controller.abort(new AttemptStoppedError("worker_shutdown", "worker shutting down"));

    await expect(running).rejects.toThrow("worker shutting down");
  });

  it("fail fails with the payload's message", async () => {
    const run = handler("fail")({ message: "disk full" }, context().ctx);

    await expect(run).rejects.toBeInstanceOf(TaskError);
    await expect(run).rejects.toMatchObject({ message: "disk full", type: "task_failed" });
  });

  it("fail without a message still fails", async () => {
    await expect(handler("fail")({}, context().ctx)).rejects.toThrow("failed on purpose");
  });

  it("log writes n lines in order", async () => {
    const { ctx, lines } = context();

    const result = await handler("log")({ lines: 3 }, ctx);

    expect(result).toEqual({ lines: 3 });
    expect(lines).toEqual([
      { level: "info", message: "log line 1 of 3" },
      { level: "info", message: "log line 2 of 3" },
      { level: "info", message: "log line 3 of 3" },
    ]);
  });
});

describe("TaskRegistry", () => {
  it("refuses a type defined twice", () => {
    const twice = new TaskRegistry().register(defineTask("train", async () => 1));

    expect(() => twice.register(defineTask("train", async () => 2))).toThrow(TaskRegistryError);
  });

  it("refuses a type the API would refuse", () => {
    expect(() => defineTask("Not A Type", async () => null)).toThrow(TaskRegistryError);
  });

  it("loads every definition a task module exports, alone or in arrays", async () => {
    const train = defineTask("train-model", async () => "trained");
    const evaluate = defineTask("evaluate", async () => "evaluated");
    const modules: Record<string, Record<string, unknown>> = {
      "./ml.js": { train, more: [evaluate, "not a task"], helper: () => 1 },
    };
    const target = new TaskRegistry();

    const loaded = await loadTaskModules(target, ["./ml.js"], async (path) => modules[path] ?? {});

    expect(loaded.sort()).toEqual(["evaluate", "train-model"]);
    expect(await target.get("train-model")?.(null, context().ctx)).toBe("trained");
  });

  it("refuses a task module that defines no task", async () => {
    const load = loadTaskModules(new TaskRegistry(), ["./empty.js"], async () => ({ helper: () => 1 }));

    await expect(load).rejects.toThrow(/exports no task/);
  });

  it("says which task module could not be loaded", async () => {
    const load = loadTaskModules(new TaskRegistry(), ["./missing.js"], async () => {
      throw new Error("Cannot find module");
    });

    await expect(load).rejects.toThrow(/\.\/missing\.js cannot be loaded: Cannot find module/);
  });

  it("recognizes the examples as definitions when exported from a module", async () => {
    const target = new TaskRegistry();

    await loadTaskModules(target, ["examples"], async () => ({ EXAMPLE_TASKS }));

    expect(target.types()).toEqual(registry.types());
  });
});

describe("describeFailure", () => {
  it("reports a TaskError's own type", () => {
    expect(describeFailure(new TaskError("bad input", "invalid_payload"))).toEqual({
      type: "invalid_payload",
      message: "bad input",
    });
  });

  it("reports any other error by its name", () => {
    expect(describeFailure(new RangeError("too far"))).toEqual({ type: "RangeError", message: "too far" });
  });

  it("reports a thrown non-error as Error with its text", () => {
    expect(describeFailure("boom")).toEqual({ type: "Error", message: "boom" });
    expect(describeFailure({ code: 7 })).toEqual({ type: "Error", message: '{"code":7}' });
  });
});
