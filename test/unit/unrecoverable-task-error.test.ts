import { describe, expect, it } from "vitest";
import { attemptError, isUnrecoverable as isMarkedUnrecoverable } from "../../app/attempt-failure";
import type { Job } from "../../core/job";
import { reportedErrorName } from "../../core/retry-rule";
import {
  describeFailure,
  isUnrecoverable,
  type TaskContext,
  TaskError,
  TaskRegistry,
  UnrecoverableTaskError,
} from "../../worker/registry";
import { registerExampleTasks } from "../../worker/tasks/examples";

/**
 * UnrecoverableTaskError from the task's throw to the name the worker reports, and back to the
 * attempt's error type in the lifecycle. The whole path runs in test/e2e/unrecoverable.test.ts.
 */

function context(): TaskContext {
  return {
    jobId: "job_test",
    attempt: 1,
    signal: new AbortController().signal,
    log: () => undefined,
    heartbeat: async () => undefined,
  };
}

const registry = registerExampleTasks(new TaskRegistry());

describe("UnrecoverableTaskError", () => {
  it("is a TaskError with its type, and describeFailure marks it unrecoverable", () => {
    // Prepare
    const error = new UnrecoverableTaskError("not an image reference", "invalid_payload");

    // Act
    const failure = describeFailure(error);

    // Assess
    expect(error).toBeInstanceOf(TaskError);
    expect(error.name).toBe("UnrecoverableTaskError");
    expect(failure).toEqual({
      type: "invalid_payload",
      message: "not an image reference",
      unrecoverable: true,
    });
    expect(describeFailure(new UnrecoverableTaskError("gone"))).toMatchObject({ type: "task_failed" });
  });

  it("is recognised by name when thrown from another copy of the registry module", () => {
    // Prepare: what a task module built against its own copy of worker/registry.ts throws.
    const foreign = Object.assign(new Error("bucket deleted"), { name: "UnrecoverableTaskError" });
    const typed = Object.assign(new Error("bucket deleted"), {
      name: "UnrecoverableTaskError",
      type: "gone",
    });

    // Act / Assess
    expect(isUnrecoverable(foreign)).toBe(true);
    expect(describeFailure(foreign)).toEqual({
      type: "task_failed",
      message: "bucket deleted",
      unrecoverable: true,
    });
    expect(describeFailure(typed)).toEqual({ type: "gone", message: "bucket deleted", unrecoverable: true });
  });

  it("leaves every other failure retriable", () => {
    expect(describeFailure(new TaskError("disk full"))).toEqual({
      type: "task_failed",
      message: "disk full",
    });
    expect(describeFailure(new RangeError("too far"))).toEqual({ type: "RangeError", message: "too far" });
    expect(isUnrecoverable("UnrecoverableTaskError")).toBe(false);
  });
});

describe("the example tasks", () => {
  it("fail with `unrecoverable: true` throws UnrecoverableTaskError; without it, a TaskError", async () => {
    const fail = registry.get("fail");
    await expect(fail?.({ message: "no", unrecoverable: true }, context())).rejects.toBeInstanceOf(
      UnrecoverableTaskError,
    );
    const plain = await fail?.({ message: "no" }, context()).catch((e: unknown) => e);
    expect(plain).toBeInstanceOf(TaskError);
    expect(isUnrecoverable(plain)).toBe(false);
  });

  it("refuse an invalid payload as unrecoverable: every retry would read the same payload", async () => {
    const run = registry.get("sleep")?.({ seconds: "soon" }, context());
    await expect(run).rejects.toBeInstanceOf(UnrecoverableTaskError);
    await expect(run).rejects.toMatchObject({ type: "invalid_payload" });
  });
});

describe("the lifecycle's reading of the reported name", () => {
  const job = { timeoutSeconds: 30 } as Job;

  it("takes the type without the mark, and sees the mark apart", () => {
    // Prepare
    const error = {
      Error: reportedErrorName({ type: "unknown_type", unrecoverable: true }),
      Cause: "no handler",
    };

    // Act / Assess
    expect(attemptError("failed", error, job)).toEqual({ type: "unknown_type", message: "no handler" });
    expect(isMarkedUnrecoverable(error)).toBe(true);
    expect(isMarkedUnrecoverable({ Error: "unknown_type", Cause: "no handler" })).toBe(false);
    expect(isMarkedUnrecoverable({})).toBe(false);
  });

  it("keeps its fallbacks for a failure with no name or no cause", () => {
    expect(attemptError("failed", {}, job)).toEqual({ type: "error", message: "the attempt failed" });
    expect(attemptError("failed", { Error: "ValueError" }, job)).toEqual({
      type: "ValueError",
      message: "ValueError",
    });
    expect(attemptError("failed", { Error: "Unrecoverable.gone" }, job)).toEqual({
      type: "gone",
      message: "gone",
    });
  });
});
