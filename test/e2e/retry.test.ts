import { describe, expect, it } from "vitest";
import { request } from "../support/api";
import { type E2eJob as Job, TERMINAL, useLocalStack } from "../support/e2e";

/**
 * A manual retry on the whole local stack, as under `npm start`: a flaky job with one attempt
 * fails, its dependent is cancelled by the cascade, and POST /jobs/{id}/retry with dependents
 * runs both to completed; and an admin's priority change shows in /transitions. Every wait polls
 * the API with a deadline; nothing asserts on timing.
 */

const TOKEN = "e2e-retry-token";
const DEADLINE_MS = 90_000;

const e2e = useLocalStack(TOKEN, {
  tablePrefix: "jobq-e2e-retry-",
  tokens: new Map([[TOKEN, { principal: `e2e-retry-${Date.now()}`, role: "admin" }]]),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
});
const { submit, getJob, showWorkersOnFailure } = e2e;

async function call<T>(method: string, path: string, body?: unknown) {
  return request<T>(e2e.stack.url, method, path, { token: TOKEN, ...(body === undefined ? {} : { body }) });
}

/** Polls until every job has reached one of `statuses`; fails with their statuses after the deadline. */
async function reach(ids: readonly string[], statuses: readonly string[] = TERMINAL): Promise<Job[]> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const jobs = await Promise.all(ids.map(getJob));
    if (jobs.every((job) => statuses.includes(job.status))) return jobs;
    if (Date.now() > deadline) {
      const states = jobs.map((job) => `${job.id}: ${job.status} (${job.statusReason})`).join("; ");
      throw new Error(`jobs not ${statuses.join("|")} after ${DEADLINE_MS} ms: ${states}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe("manual retry on the local stack", () => {
  it("runs a failed job retried with dependents, and its dependent, to completed", async () => {
    showWorkersOnFailure();
    // Prepare: attempt 1 fails, and with maxAttempts 1 that ends the job; the dependent is cancelled
    const root = await submit({ type: "flaky", payload: { failTimes: 1 }, retry: { maxAttempts: 1 } });
    const child = await submit({ type: "echo", payload: { after: "root" }, dependsOn: [root.id] });
    const [failed, cancelled] = await reach([root.id, child.id]);
    expect(failed?.status).toBe("failed");
    expect(cancelled).toMatchObject({ status: "cancelled", statusReason: `dependency ${root.id} failed` });

    // Act
    const response = await call<Job>("POST", `/jobs/${root.id}/retry`, { dependents: true });

    // Assess
    expect(response.status).toBe(200);
    const [rootDone, childDone] = await reach([root.id, child.id], ["completed", "failed", "escalated"]);
    expect(rootDone).toMatchObject({ status: "completed", attempts: 2 });
    expect(childDone).toMatchObject({ status: "completed", result: { after: "root" } });
    const attempts = await call<{ items: { attempt: number; status: string }[] }>(
      "GET",
      `/jobs/${root.id}/attempts`,
    );
    expect(attempts.json.items.map((a) => [a.attempt, a.status])).toEqual([
      [1, "failed"],
      [2, "succeeded"],
    ]);
  }, 150_000);

  it("shows an admin's priority change in /transitions", async () => {
    // Prepare: a job that waits (runAt far ahead), so nothing else changes it meanwhile
    const job = await submit({ type: "echo", runAt: "2099-01-01T00:00:00Z" });

    // Act
    const patched = await call<Job>("PATCH", `/jobs/${job.id}`, { priority: "critical" });

    // Assess
    expect(patched.status).toBe(200);
    const history = await call<{ items: Record<string, unknown>[] }>("GET", `/jobs/${job.id}/transitions`);
    expect(history.json.items.at(-1)).toMatchObject({
      from: "scheduled",
      to: "scheduled",
      fromPriority: 0,
      toPriority: 10,
      triggeredBy: expect.stringMatching(/^e2e-retry-/),
    });
    await call("PATCH", `/jobs/${job.id}/cancel`);
  }, 60_000);
});
