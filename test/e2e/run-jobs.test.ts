import { describe, expect, it } from "vitest";
import { type E2eJob as Job, TERMINAL, useLocalStack } from "../support/e2e";

/**
 * Jobs run end to end on the whole local stack, as under `npm start`: the API, the lifecycle
 * executions on the local Step Functions, the scheduler on EventBridge events and its sweep, the
 * SQS queues and one worker process per node. It shares the run's DynamoDB Local under its own
 * table prefix. Every wait polls the API with a deadline; nothing asserts on timing. It drives the
 * API through the typed client (client/), which holds every answer to the OpenAPI document.
 */

const TOKEN = "e2e-token";
const DEADLINE_MS = 90_000;

const e2e = useLocalStack(TOKEN, {
  tablePrefix: "jobq-e2e-",
  tokens: new Map([[TOKEN, { principal: `e2e-${Date.now()}`, role: "user" }]]),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
});
const { submit, getJob, showWorkersOnFailure } = e2e;

/** Polls until every job has ended; fails with their statuses after the deadline. */
async function ended(ids: readonly string[]): Promise<Job[]> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const jobs = await Promise.all(ids.map(getJob));
    if (jobs.every((job) => TERMINAL.includes(job.status))) return jobs;
    if (Date.now() > deadline) {
      const states = jobs.map((job) => `${job.id}: ${job.status} (${job.statusReason})`).join("; ");
      throw new Error(`jobs still running after ${DEADLINE_MS} ms: ${states}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function time(value: string | null): number {
  expect(value).not.toBeNull();
  return Date.parse(value ?? "");
}

describe("jobs run on the local stack", () => {
  it("runs an echo job to completed with its payload as result", async () => {
    showWorkersOnFailure();
    // Prepare / Act
    const job = await submit({ type: "echo", payload: { hello: "world" } });
    const [done] = await ended([job.id]);

    // Assess
    expect(done).toMatchObject({ status: "completed", result: { hello: "world" }, attempts: 1 });
  }, 120_000);

  it("runs the README's DAG in dependency order", async () => {
    showWorkersOnFailure();
    // Prepare / Act: b and c wait on a, d waits on both
    const { refs } = await e2e.client.submitBatch({
      jobs: [
        { ref: "a", type: "echo" },
        { ref: "b", type: "sleep", payload: { seconds: 1 }, dependsOn: ["a"] },
        { ref: "c", type: "log", payload: { lines: 3 }, dependsOn: ["a"] },
        { ref: "d", type: "echo", dependsOn: ["b", "c"] },
      ],
    });
    const { a, b, c, d } = refs;
    const ids = [a, b, c, d].map((id) => id ?? "");
    const [jobA, jobB, jobC, jobD] = await ended(ids);

    // Assess
    for (const job of [jobA, jobB, jobC, jobD]) expect(job?.status).toBe("completed");
    const finishedA = time(jobA?.finishedAt ?? null);
    expect(time(jobB?.startedAt ?? null)).toBeGreaterThanOrEqual(finishedA);
    expect(time(jobC?.startedAt ?? null)).toBeGreaterThanOrEqual(finishedA);
    const startedD = time(jobD?.startedAt ?? null);
    expect(startedD).toBeGreaterThanOrEqual(time(jobB?.finishedAt ?? null));
    expect(startedD).toBeGreaterThanOrEqual(time(jobC?.finishedAt ?? null));
    const log = await e2e.client.logs(c ?? "", { attempt: 1 });
    expect(log.items.filter((line) => line.attempt === 1).length).toBeGreaterThanOrEqual(3);
  }, 120_000);

  it("fails a job after its attempts run out and cancels its dependent", async () => {
    showWorkersOnFailure();
    // Prepare / Act
    const parent = await submit({
      type: "fail",
      payload: { message: "broken on purpose" },
      retry: { maxAttempts: 2, initialDelaySeconds: 0 },
    });
    const child = await submit({ type: "echo", dependsOn: [parent.id] });
    const [failed, cancelled] = await ended([parent.id, child.id]);

    // Assess
    expect(failed).toMatchObject({ status: "failed", attempts: 2 });
    expect(failed?.error?.message).toContain("broken on purpose");
    expect(cancelled?.status).toBe("cancelled");
    const attempts = await e2e.client.attempts(parent.id);
    expect(attempts.items.map((item) => [item.attempt, item.status])).toEqual([
      [1, "failed"],
      [2, "failed"],
    ]);
  }, 120_000);

  it("folds the jobs it ran into GET /stats: counts, percentiles, pools and the caller's own row", async () => {
    showWorkersOnFailure();
    // Prepare: two jobs that end, one of them failed
    const done = await submit({ type: "echo", payload: { for: "stats" } });
    const failed = await submit({
      type: "fail",
      payload: { message: "for stats" },
      retry: { maxAttempts: 1 },
    });
    await ended([done.id, failed.id]);

    // Act: the /stats consumer folds the stream in windows (10 s, as in AWS): poll until it has.
    // GET /stats reads the counts and the series' minutes in separate reads, so one answer can
    // show a chunk's counts without its minutes: wait for both to show an end of each kind.
    const deadline = Date.now() + DEADLINE_MS;
    const folded = (s: Awaited<ReturnType<typeof e2e.client.stats>>, kind: "completed" | "failed") =>
      (s.counts.byStatus[kind] ?? 0) >= 1 && s.series.reduce((n, point) => n + point[kind], 0) >= 1;
    let stats = await e2e.client.stats("15m");
    while (!folded(stats, "completed") || !folded(stats, "failed")) {
      if (Date.now() > deadline)
        throw new Error(`GET /stats never counted the jobs: ${JSON.stringify(stats)}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      stats = await e2e.client.stats("15m");
    }

    // Assess: the window's figures include this minute's jobs; a user sees pools and their own row
    expect(stats.window).toBe("15m");
    expect(stats.queueWaitMs.p50).toEqual(expect.any(Number));
    expect(stats.runMs.p99).toEqual(expect.any(Number));
    expect(stats.byPool.cpu?.utilization.cpu).toEqual(expect.any(Number));
    expect(Object.values(stats.byPool).reduce((n, pool) => n + pool.completed, 0)).toBeGreaterThan(0);
    expect(stats.byType).toEqual({});
    expect(stats.owners.map((row) => row.owner)).toEqual([e2e.stack.tokens.get(TOKEN)?.principal]);
    expect(stats.series.length).toBe(16);
    expect(stats.series.reduce((n, point) => n + point.failed, 0)).toBeGreaterThan(0);
  }, 120_000);
});
