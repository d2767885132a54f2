import { describe, expect, it } from "vitest";
import { type E2eJob as Job, TERMINAL, untilWithin, useLocalStack } from "../support/e2e";

/**
 * UnrecoverableTaskError on the whole local stack, as under `npm start`: the worker process
 * reports the failure marked unrecoverable on the run token, the lifecycle execution's Catch hands
 * it to AttemptFailed, and the job ends after its first attempt although `retry.maxAttempts` is 3
 * — for a task that throws it (the example `fail` task with `unrecoverable: true`) and for the
 * worker's own `unknown_type`. Every wait polls the API with a deadline; nothing asserts on timing.
 */

const TOKEN = "e2e-unrecoverable-token";

const e2e = useLocalStack(TOKEN, {
  tablePrefix: "jobq-e2e-unrec-",
  tokens: new Map([[TOKEN, { principal: `e2e-unrec-${Date.now()}`, role: "admin" }]]),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
});
const { submit, getJob, showWorkersOnFailure } = e2e;
const until = untilWithin(90_000);

/** GET /jobs/{id}/attempts, through the typed client (answers held to the OpenAPI document). */
async function attemptsOf(id: string) {
  return (await e2e.client.attempts(id)).items;
}

/** A backoff long enough that a retry, had one been made, would still be waiting when the job is read. */
const RETRY = { maxAttempts: 3, strategy: "linear", initialDelaySeconds: 60 } as const;

describe("unrecoverable failures on the local stack", () => {
  it("ends a job whose task throws UnrecoverableTaskError after one attempt, with the reason", async () => {
    showWorkersOnFailure();
    // Prepare
    const submitted = await submit({
      type: "fail",
      payload: { message: "the input bucket is gone", unrecoverable: true },
      retry: RETRY,
    });

    // Act
    const ended = await until(
      "the job to end",
      () => getJob(submitted.id),
      (j: Job) => TERMINAL.includes(j.status),
    );

    // Assess
    expect(ended).toMatchObject({
      status: "failed",
      attempts: 1,
      statusReason:
        "attempt 1 failed (task_failed: the input bucket is gone); unrecoverable: not retried (2 attempts left)",
      error: { type: "task_failed", message: "unrecoverable: the input bucket is gone; not retried" },
      nextAttemptAt: null,
    });
    expect(await attemptsOf(submitted.id)).toEqual([
      expect.objectContaining({
        attempt: 1,
        status: "failed",
        error: { type: "task_failed", message: "unrecoverable: the input bucket is gone; not retried" },
      }),
    ]);
  }, 150_000);

  it("ends a job of a type no worker runs (unknown_type) after one attempt, with the reason", async () => {
    showWorkersOnFailure();
    // Prepare: no taskTypes configured, so the API takes any type and the worker finds no handler.
    const submitted = await submit({ type: "train-model", payload: {}, retry: RETRY });

    // Act
    const ended = await until(
      "the job to end",
      () => getJob(submitted.id),
      (j: Job) => TERMINAL.includes(j.status),
    );

    // Assess
    expect(ended).toMatchObject({
      status: "failed",
      attempts: 1,
      statusReason: expect.stringMatching(
        /^attempt 1 failed \(unknown_type: no handler for job type train-model .*\); unrecoverable: not retried \(2 attempts left\)$/,
      ),
      error: {
        type: "unknown_type",
        message: expect.stringMatching(
          /^unrecoverable: no handler for job type train-model .*; not retried$/,
        ),
      },
    });
    const attempts = await attemptsOf(submitted.id);
    expect(attempts.map((a) => [a.attempt, a.status, a.error?.type])).toEqual([
      [1, "failed", "unknown_type"],
    ]);
  }, 150_000);
});
