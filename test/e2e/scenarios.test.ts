import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { request } from "../support/api";
import { type E2eJob as Job, TERMINAL, untilWithin, useLocalStack } from "../support/e2e";

/**
 * Scenarios of jobs running on the whole local stack (issue "Jobs run", item 9), driven over HTTP
 * as a user would: retries with backoff, exhausted attempts, escalation, timeouts, GPU capacity,
 * priority, cancel of a running job, a worker killed mid-attempt, and an idempotent replay. One
 * stack for the file (handler modules read their configuration once per process), with short
 * heartbeats for the killed worker and one pool per scenario that needs capacity of its own.
 * Every wait polls the API with a deadline; timings are asserted only as lower bounds the
 * contract guarantees (the backoff), never as upper bounds.
 */

const TOKEN = "scenarios-token";
const PRINCIPAL = `scenarios-${Date.now()}`;
const DEADLINE_MS = 60_000;
/** One pool per scenario that watches capacity, so scenarios cannot disturb each other. */
const POOLS = [
  { name: "cpu", labels: {}, nodes: 1, node: { cpu: 4, memoryMb: 4096, gpu: 0 } },
  { name: "gpu", labels: {}, nodes: 1, node: { cpu: 8, memoryMb: 32768, gpu: 2 } },
  { name: "solo", labels: {}, nodes: 1, node: { cpu: 1, memoryMb: 1024, gpu: 0 } },
  { name: "kill", labels: {}, nodes: 2, node: { cpu: 1, memoryMb: 1024, gpu: 0 } },
];

interface Attempt {
  readonly attempt: number;
  readonly status: string;
  readonly startedAt: string;
  readonly finishedAt: string | null;
  readonly nodeId: string;
  readonly error: { readonly type?: string; readonly message?: string } | null;
}

interface Transition {
  readonly from: string | null;
  readonly to: string;
  readonly reason: string;
  readonly triggeredBy: string | null;
}

interface Capacity {
  readonly cpu: number;
  readonly memoryMb: number;
  readonly gpu: number;
}

interface Pool {
  readonly name: string;
  readonly capacity: Capacity;
  readonly used: Capacity;
  readonly nodes: readonly { readonly id: string; readonly capacity: Capacity; readonly status: string }[];
}

const e2e = useLocalStack(TOKEN, {
  tablePrefix: "jobq-scenarios-",
  tokens: new Map([[TOKEN, { principal: PRINCIPAL, role: "user" }]]),
  pools: POOLS,
  // Short enough that a killed worker's node is presumed lost within seconds.
  heartbeatSeconds: 2,
  nodeLostSeconds: 5,
  sweepSeconds: 2,
  workerShutdownGraceSeconds: 1,
  workerPollWaitSeconds: 2,
});
const { submit, getJob, showWorkersOnFailure } = e2e;

async function attemptsOf(id: string): Promise<Attempt[]> {
  const response = await request<{ items: Attempt[] }>(e2e.stack.url, "GET", `/jobs/${id}/attempts`, {
    token: TOKEN,
  });
  expect(response.status).toBe(200);
  return [...response.json.items].sort((a, b) => a.attempt - b.attempt);
}

async function transitionsOf(id: string): Promise<Transition[]> {
  const response = await request<{ items: Transition[] }>(e2e.stack.url, "GET", `/jobs/${id}/transitions`, {
    token: TOKEN,
  });
  expect(response.status).toBe(200);
  return response.json.items;
}

/** A pool as GET /pools?lost=true shows it: lost nodes are listed only when asked for. */
async function pool(name: string): Promise<Pool> {
  const response = await request<{ items: Pool[] } | Pool[]>(e2e.stack.url, "GET", "/pools?lost=true", {
    token: TOKEN,
  });
  expect(response.status).toBe(200);
  const pools = Array.isArray(response.json) ? response.json : response.json.items;
  const found = pools.find((p) => p.name === name);
  if (!found) throw new Error(`no pool ${name} in GET /pools`);
  return found;
}

const until = untilWithin(DEADLINE_MS);

function ended(ids: readonly string[]): Promise<Job[]> {
  return until(
    `jobs ${ids.join(", ")} ended`,
    () => Promise.all(ids.map(getJob)),
    (jobs) => jobs.every((job) => TERMINAL.includes(job.status)),
  );
}

function time(value: string | null | undefined): number {
  expect(value).toBeTruthy();
  return Date.parse(value ?? "");
}

/**
 * The worker process of a node: a child of this process whose JOBQ_NODE_NAME is the prefix of
 * the node id (worker/config.ts). local/workers.ts exposes no pids, so /proc it is (Linux).
 */
function workerPid(nodeId: string): number {
  const names = (e2e.stack.execution?.workers ?? [])
    .map((node) => node.name)
    .filter((name) => nodeId.startsWith(name))
    .sort((a, b) => b.length - a.length);
  const name = names[0];
  if (name === undefined) throw new Error(`no local worker node for ${nodeId}`);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== process.pid) continue;
      const environ = readFileSync(`/proc/${entry}/environ`, "utf8").split("\0");
      if (environ.includes(`JOBQ_NODE_NAME=${name}`)) return Number(entry);
    } catch {
      // A process that ended while we looked.
    }
  }
  throw new Error(`no worker process for node ${name}`);
}

describe("job scenarios on the local stack", () => {
  it("retries a flaky job with exponential backoff until its third attempt completes", async () => {
    showWorkersOnFailure();
    // Prepare / Act
    const job = await submit({
      type: "flaky",
      pool: "cpu",
      payload: { failTimes: 2, seconds: 0 },
      retry: { maxAttempts: 3, strategy: "exponential", initialDelaySeconds: 1, backoffMultiplier: 2 },
    });
    const [done] = await ended([job.id]);

    // Assess
    expect(done).toMatchObject({ status: "completed", attempts: 3, result: { attempt: 3, failedBefore: 2 } });
    const attempts = await attemptsOf(job.id);
    expect(attempts.map((a) => [a.attempt, a.status])).toEqual([
      [1, "failed"],
      [2, "failed"],
      [3, "succeeded"],
    ]);
    const [first, second, third] = attempts;
    expect(first?.error?.type).toBe("flaky");
    // The backoff: 1 s after the first failure, 2 s after the second (lower bounds only).
    expect(time(second?.startedAt) - time(first?.finishedAt)).toBeGreaterThanOrEqual(1000);
    expect(time(third?.startedAt) - time(second?.finishedAt)).toBeGreaterThanOrEqual(2000);
    const to = (await transitionsOf(job.id)).map((t) => t.to);
    expect(to.filter((status) => status === "retrying")).toHaveLength(2);
    expect(to.at(-1)).toBe("completed");
  }, 90_000);

  it("fails a job whose attempts run out and cancels its dependent, naming it", async () => {
    showWorkersOnFailure();
    // Prepare / Act
    const parent = await submit({
      type: "fail",
      pool: "cpu",
      payload: { message: "out of luck" },
      retry: { maxAttempts: 2, initialDelaySeconds: 0 },
    });
    const child = await submit({ type: "echo", pool: "cpu", dependsOn: [parent.id] });
    const [failed, cancelled] = await ended([parent.id, child.id]);

    // Assess
    expect(failed).toMatchObject({ status: "failed", attempts: 2 });
    expect(failed?.error?.message).toContain("out of luck");
    expect((await attemptsOf(parent.id)).map((a) => a.status)).toEqual(["failed", "failed"]);
    expect(cancelled?.status).toBe("cancelled");
    expect(cancelled?.statusReason).toContain(parent.id);
    expect(cancelled?.startedAt ?? null).toBeNull();
  }, 90_000);

  it("escalates a failed job to a new job that its dependent then waits on", async () => {
    showWorkersOnFailure();
    // Prepare / Act
    const original = await submit({
      type: "fail",
      pool: "cpu",
      payload: { message: "needs a bigger hammer" },
      retry: { maxAttempts: 1 },
      onFailure: { escalateTo: { type: "echo" } },
    });
    const dependent = await submit({ type: "echo", pool: "cpu", dependsOn: [original.id] });
    // escalatedTo is recorded just after the job ends escalated (app/lifecycle.ts finishEscalation).
    const escalated = await until(
      "escalatedTo recorded",
      () => getJob(original.id),
      (job) => job.escalatedTo !== null,
    );
    const escalatedTo = escalated.escalatedTo ?? "";
    expect(escalatedTo).toMatch(/^job_/);
    const [replacement, after] = await ended([escalatedTo, dependent.id]);

    // Assess
    expect(escalated.status).toBe("escalated");
    expect(escalated.statusReason).toContain(escalatedTo);
    expect((await attemptsOf(original.id)).map((a) => a.status)).toEqual(["failed"]);
    expect(replacement).toMatchObject({
      status: "completed",
      result: { message: "needs a bigger hammer" },
    });
    expect(after?.status).toBe("completed");
    expect(time(after?.startedAt)).toBeGreaterThanOrEqual(time(replacement?.finishedAt));
  }, 90_000);

  it("times out an attempt that runs too long and fails the job with a timeout", async () => {
    showWorkersOnFailure();
    // Prepare / Act
    const job = await submit({
      type: "sleep",
      pool: "cpu",
      payload: { seconds: 30 },
      timeoutSeconds: 2,
      retry: { maxAttempts: 1 },
    });
    const [done] = await ended([job.id]);

    // Assess
    expect(done?.status).toBe("failed");
    expect(done?.error?.type).toBe("timeout");
    expect(done?.statusReason).toMatch(/time/i);
    const attempts = await attemptsOf(job.id);
    expect(attempts.map((a) => a.status)).toEqual(["timed_out"]);
    expect(attempts[0]?.error?.type).toBe("timeout");
  }, 90_000);

  it("runs jobs that each need both GPUs of the one GPU node one at a time", async () => {
    showWorkersOnFailure();
    // Prepare / Act
    const jobs = await Promise.all(
      [1, 2, 3].map(() =>
        submit({
          type: "sleep",
          pool: "gpu",
          payload: { seconds: 1 },
          resources: { cpu: 1, memoryMb: 512, gpu: 2 },
        }),
      ),
    );
    const done = await ended(jobs.map((job) => job.id));

    // Assess
    for (const job of done) expect(job.status).toBe("completed");
    const intervals = done
      .map((job) => [time(job.startedAt), time(job.finishedAt)] as const)
      .sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < intervals.length; i++) {
      expect(intervals[i]?.[0]).toBeGreaterThanOrEqual(intervals[i - 1]?.[1] ?? Number.POSITIVE_INFINITY);
    }
  }, 90_000);

  it("starts a critical job before a low one submitted earlier once capacity frees", async () => {
    showWorkersOnFailure();
    // Prepare: the one CPU of the solo pool is taken
    const blocker = await submit({
      type: "sleep",
      pool: "solo",
      payload: { seconds: 4 },
      resources: { cpu: 1 },
    });
    await until(
      "blocker running",
      () => getJob(blocker.id),
      (job) => job.status === "running",
    );

    // Act
    const low = await submit({ type: "echo", pool: "solo", priority: "low", resources: { cpu: 1 } });
    const critical = await submit({
      type: "echo",
      pool: "solo",
      priority: "critical",
      resources: { cpu: 1 },
    });
    const [, lowDone, criticalDone] = await ended([blocker.id, low.id, critical.id]);

    // Assess
    expect(lowDone?.status).toBe("completed");
    expect(criticalDone?.status).toBe("completed");
    expect(time(criticalDone?.startedAt)).toBeLessThan(time(lowDone?.startedAt));
    expect(time(lowDone?.startedAt)).toBeGreaterThanOrEqual(time(criticalDone?.finishedAt));
  }, 90_000);

  it("cancels a running job: its attempt ends cancelled and its capacity comes back", async () => {
    showWorkersOnFailure();
    // Prepare
    const job = await submit({ type: "sleep", pool: "cpu", payload: { seconds: 30 }, resources: { cpu: 2 } });
    await until(
      "job running",
      () => getJob(job.id),
      (j) => j.status === "running",
    );
    expect((await pool("cpu")).used.cpu).toBeGreaterThanOrEqual(2);

    // Act
    const response = await request<Job>(e2e.stack.url, "PATCH", `/jobs/${job.id}/cancel`, { token: TOKEN });

    // Assess
    expect(response.status).toBe(200);
    expect(response.json.status).toBe("cancelled");
    const attempts = await until(
      "attempt ended",
      () => attemptsOf(job.id),
      (items) => items.every((a) => a.status !== "running"),
    );
    expect(attempts.map((a) => a.status)).toEqual(["cancelled"]);
    await until(
      "capacity released",
      () => pool("cpu"),
      (p) => p.used.cpu === 0 && p.used.memoryMb === 0,
    );
    expect((await getJob(job.id)).status).toBe("cancelled");
    expect((await transitionsOf(job.id)).at(-1)).toMatchObject({
      from: "running",
      to: "cancelled",
      triggeredBy: PRINCIPAL,
    });
  }, 90_000);

  it("retries the attempt of a SIGKILLed worker on another node and drops the lost node's capacity", async () => {
    showWorkersOnFailure();
    // Prepare
    const job = await submit({
      type: "sleep",
      pool: "kill",
      payload: { seconds: 20 },
      resources: { cpu: 1 },
      retry: { maxAttempts: 2, initialDelaySeconds: 0 },
    });
    const [running] = await until(
      "attempt running",
      () => attemptsOf(job.id),
      (items) => items[0]?.status === "running",
    );
    const lostNode = running?.nodeId ?? "";

    // Act
    process.kill(workerPid(lostNode), "SIGKILL");
    const [done] = await ended([job.id]);

    // Assess
    expect(done?.status).toBe("completed");
    const attempts = await attemptsOf(job.id);
    expect(attempts.map((a) => a.status)).toEqual(["lost", "succeeded"]);
    expect(attempts[0]?.error?.type).toBe("lost");
    expect(attempts[1]?.nodeId).not.toBe(lostNode);
    const kill = await pool("kill");
    expect(kill.nodes.find((node) => node.id === lostNode)?.status).toBe("lost");
    const up = kill.nodes.filter((node) => node.status === "up");
    expect(kill.capacity.cpu).toBe(up.reduce((total, node) => total + node.capacity.cpu, 0));
  }, 120_000);

  it("runs a job submitted twice with one Idempotency-Key exactly once", async () => {
    showWorkersOnFailure();
    // Prepare
    const body = { type: "sleep", pool: "cpu", payload: { seconds: 1 } };
    const headers = { "Idempotency-Key": `scenario-${Date.now()}` };

    // Act
    const first = await request<Job>(e2e.stack.url, "POST", "/jobs", { token: TOKEN, body, headers });
    const replay = await request<Job>(e2e.stack.url, "POST", "/jobs", { token: TOKEN, body, headers });
    const [done] = await ended([first.json.id]);

    // Assess
    expect(first.status).toBe(201);
    expect(replay.status).toBe(200);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.json.id).toBe(first.json.id);
    expect(done).toMatchObject({ status: "completed", attempts: 1 });
    expect(await attemptsOf(first.json.id)).toHaveLength(1);
  }, 90_000);
});
