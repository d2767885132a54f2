import { beforeAll, describe, expect, it } from "vitest";
import type { PoolConfig } from "../../core/pools";
import { request, type TestResponse } from "../support/api";
import { type E2eJob, TERMINAL, untilWithin, useLocalStack } from "../support/e2e";

/**
 * The scheduling rules of issue 4 on the whole local stack, driven over HTTP as a user would:
 * fair-share and round-robin between two owners, a GPU quota, the off-peak window, preemption,
 * deadlines, a type concurrency limit, constraint-based placement, the reasons a job waits, and
 * GET /queue. One stack for the file; the tests share it, so each one PUTs the policy it needs
 * first, and scenarios that watch capacity use pools of their own (or leave a shared one empty).
 * Every wait polls the API with a deadline; outcomes are strict, timings are never bounded above.
 */

const RUN = Date.now().toString(36);
const ADMIN = "policies-admin-token";
const USER = "policies-user-token";
const OWNER_A = "policies-a-token";
const OWNER_B = "policies-b-token";
const QUOTA_OWNER = "policies-quota-token";
const PRINCIPALS = {
  admin: `policies-ops-${RUN}`,
  user: `policies-user-${RUN}`,
  a: `policies-a-${RUN}`,
  b: `policies-b-${RUN}`,
  quota: `policies-quota-${RUN}`,
};
const DEADLINE_MS = 60_000;

/** Every job below names its pool (or constraints only the zone pools carry). */
const POOLS: PoolConfig[] = [
  // Two owners sharing two CPU slots.
  { name: "share", labels: {}, nodes: 1, node: { cpu: 2, memoryMb: 2048, gpu: 0 } },
  // One GPU: the quota and a capacity wait.
  { name: "gpu", labels: {}, nodes: 1, node: { cpu: 2, memoryMb: 4096, gpu: 1 } },
  // One CPU slot: preemption, a deadline behind a full pool, the queue order.
  { name: "solo", labels: {}, nodes: 1, node: { cpu: 1, memoryMb: 1024, gpu: 0 } },
  // Ample capacity: rules that hold jobs whatever the capacity (window, type limit).
  { name: "wide", labels: {}, nodes: 1, node: { cpu: 4, memoryMb: 4096, gpu: 0 } },
  { name: "zone-a", labels: { zone: "a" }, nodes: 1, node: { cpu: 1, memoryMb: 1024, gpu: 0 } },
  { name: "zone-b", labels: { zone: "b" }, nodes: 1, node: { cpu: 3, memoryMb: 2048, gpu: 0 } },
];

const e2e = useLocalStack(USER, {
  tablePrefix: "jobq-policies-",
  tokens: new Map([
    [ADMIN, { principal: PRINCIPALS.admin, role: "admin" }],
    [USER, { principal: PRINCIPALS.user, role: "user" }],
    [OWNER_A, { principal: PRINCIPALS.a, role: "user" }],
    [OWNER_B, { principal: PRINCIPALS.b, role: "user" }],
    [QUOTA_OWNER, { principal: PRINCIPALS.quota, role: "user" }],
  ]),
  pools: POOLS,
  // No test here kills a worker; a longer heartbeat keeps attempts alive while the 2-core machine
  // is busy compiling handler modules, and a cancel or an eviction still stops a task within
  // a third of it (the worker's heartbeat period).
  heartbeatSeconds: 6,
  nodeLostSeconds: 20,
  sweepSeconds: 2,
  workerShutdownGraceSeconds: 1,
  workerPollWaitSeconds: 2,
});
const { showWorkersOnFailure } = e2e;

/**
 * Warm-up: one job through every pool and one call of each route the tests use, so the handler
 * modules' first load (seconds of compiling on this machine) is not paid inside a test's waits.
 */
beforeAll(async () => {
  await setPolicy({});
  await Promise.all([
    call(ADMIN, "GET", "/admin/policy"),
    call(ADMIN, "GET", `/quotas/${PRINCIPALS.quota}`),
    call(ADMIN, "GET", "/queue"),
    call(ADMIN, "GET", "/pools"),
  ]);
  const jobs = await Promise.all(POOLS.map((pool) => submit({ type: "echo", pool: pool.name })));
  await ended(jobs.map((job) => job.id));
  await Promise.all(jobs.map((job) => Promise.all([attemptsOf(job.id), transitionsOf(job.id)])));
}, 150_000);

/** The job as these tests read it: E2eJob plus the scheduling fields. */
interface Job extends E2eJob {
  readonly owner: string;
  readonly priority: number;
  readonly pool: string | null;
  readonly reasonCode: string | null;
  readonly queuePosition?: number | null;
  readonly estimatedStartAt?: string | null;
}

interface Attempt {
  readonly attempt: number;
  readonly status: string;
  readonly startedAt: string;
  readonly finishedAt: string | null;
  readonly nodeId: string;
  readonly pool: string;
}

interface Transition {
  readonly from: string | null;
  readonly to: string;
  readonly at: string;
  readonly reason: string;
}

interface QuotaView {
  readonly limits: Record<string, number | null>;
  readonly used: {
    readonly todayGpuSeconds: number;
    readonly weekGpuSeconds: number;
    readonly queuedJobs: number;
  };
  readonly remaining: Record<string, number | null>;
  readonly warning: boolean;
}

interface QueueView {
  readonly counts: Record<string, number>;
  readonly pools: readonly { readonly name: string }[];
  readonly queued: readonly {
    readonly id: string;
    readonly type: string;
    readonly priority: number;
    readonly owner: string;
    readonly position: number;
    readonly estimatedStartAt: string | null;
    readonly statusReason: string;
  }[];
}

interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

function call<T>(token: string, method: string, path: string, body?: unknown): Promise<TestResponse<T>> {
  return request<T>(e2e.stack.url, method, path, { token, ...(body === undefined ? {} : { body }) });
}

async function submitAs(token: string, body: Record<string, unknown>): Promise<Job> {
  const response = await call<Job | ErrorBody>(token, "POST", "/jobs", body);
  if (response.status !== 201) throw new Error(`submit: ${response.status} ${JSON.stringify(response.json)}`);
  return response.json as Job;
}

const submit = (body: Record<string, unknown>): Promise<Job> => submitAs(USER, body);

/** Read as the admin, who sees every owner's jobs. */
async function getJob(id: string): Promise<Job> {
  const response = await call<Job>(ADMIN, "GET", `/jobs/${id}`);
  expect(response.status).toBe(200);
  return response.json;
}

async function attemptsOf(id: string): Promise<Attempt[]> {
  const response = await call<{ items: Attempt[] }>(ADMIN, "GET", `/jobs/${id}/attempts`);
  expect(response.status).toBe(200);
  return [...response.json.items].sort((a, b) => a.attempt - b.attempt);
}

async function transitionsOf(id: string): Promise<Transition[]> {
  const response = await call<{ items: Transition[] }>(ADMIN, "GET", `/jobs/${id}/transitions`);
  expect(response.status).toBe(200);
  return response.json.items;
}

async function setPolicy(policy: Record<string, unknown>): Promise<Record<string, unknown>> {
  const response = await call<Record<string, unknown>>(ADMIN, "PUT", "/admin/policy", policy);
  expect(response.status, JSON.stringify(response.json)).toBe(200);
  return response.json;
}

async function setQuota(principal: string, limits: Record<string, unknown>): Promise<void> {
  const response = await call(ADMIN, "PUT", `/quotas/${principal}`, limits);
  expect(response.status, JSON.stringify(response.json)).toBe(200);
}

async function cancel(id: string): Promise<void> {
  const response = await call<Job>(ADMIN, "PATCH", `/jobs/${id}/cancel`);
  // A job that ended meanwhile answers 409: either way it no longer waits or runs.
  expect([200, 409]).toContain(response.status);
}

async function poolUsed(name: string): Promise<number> {
  type PoolView = { name: string; used: { cpu: number } };
  const response = await call<{ items: PoolView[] } | PoolView[]>(USER, "GET", "/pools");
  expect(response.status).toBe(200);
  const pools = Array.isArray(response.json) ? response.json : response.json.items;
  const pool = pools.find((p) => p.name === name);
  if (!pool) throw new Error(`no pool ${name} in GET /pools`);
  return pool.used.cpu;
}

const until = untilWithin(DEADLINE_MS);

async function ended(ids: readonly string[]): Promise<Job[]> {
  try {
    return await until(
      `jobs ${ids.join(", ")} ended`,
      () => Promise.all(ids.map(getJob)),
      (jobs) => jobs.every((job) => TERMINAL.includes(job.status)),
      90_000,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${await history(ids)}`);
  }
}

/** Each job's transitions and attempts, for a failure message that says what happened. */
async function history(ids: readonly string[]): Promise<string> {
  const lines: string[] = [];
  for (const id of ids) {
    const [transitions, attempts] = await Promise.all([transitionsOf(id), attemptsOf(id)]);
    lines.push(`${id}:`);
    for (const t of transitions) lines.push(`  ${t.at} ${t.from ?? "-"} -> ${t.to}: ${t.reason}`);
    for (const a of attempts) lines.push(`  attempt ${a.attempt} ${a.status} on ${a.nodeId} (${a.pool})`);
  }
  return lines.join("\n");
}

function time(value: string | null | undefined): number {
  expect(value).toBeTruthy();
  return Date.parse(value ?? "");
}

/** HH:MM in UTC, `offsetMinutes` from now. */
function utcClock(offsetMinutes: number): string {
  return new Date(Date.now() + offsetMinutes * 60_000).toISOString().slice(11, 16);
}

function isIsoTime(value: unknown): boolean {
  return typeof value === "string" && !Number.isNaN(Date.parse(value)) && value.endsWith("Z");
}

/**
 * Owner A submits a backlog to the `share` pool, then owner B a few jobs; all sleep a second on
 * one of its two CPU slots. Returns every job with its owner, ended.
 */
async function twoOwners(): Promise<{ a: Job[]; b: Job[] }> {
  const body = {
    type: "sleep",
    pool: "share",
    payload: { seconds: 1 },
    resources: { cpu: 1, memoryMb: 256 },
  };
  // A's backlog goes in first, then B's jobs: each owner's in parallel.
  const a = await Promise.all(Array.from({ length: 7 }, () => submitAs(OWNER_A, body)));
  const b = await Promise.all(Array.from({ length: 3 }, () => submitAs(OWNER_B, body)));
  const done = await ended([...a, ...b].map((job) => job.id));
  return { a: done.slice(0, a.length), b: done.slice(a.length) };
}

/** Both owners progress: B starts while A still has a backlog, and B is done before A's last start. */
function expectBothProgress(a: readonly Job[], b: readonly Job[]): void {
  for (const job of [...a, ...b]) expect(job.status).toBe("completed");
  const bStarts = b.map((job) => time(job.startedAt)).sort((x, y) => x - y);
  const aStarts = a.map((job) => time(job.startedAt)).sort((x, y) => x - y);
  const bFirst = bStarts[0] ?? Number.NaN;
  const bLast = bStarts.at(-1) ?? Number.NaN;
  // Under strict FIFO B would start only after every one of A's seven: here at least three wait.
  expect(aStarts.filter((start) => start > bFirst).length).toBeGreaterThanOrEqual(3);
  expect(bLast).toBeLessThan(aStarts.at(-1) ?? Number.NaN);
}

describe("scheduling policies on the local stack", () => {
  it("fair-share: a second owner's jobs start while the first owner still has a backlog", async () => {
    showWorkersOnFailure();
    // Prepare
    expect(await setPolicy({ algorithm: "fair-share" })).toMatchObject({ algorithm: "fair-share" });

    // Act
    const { a, b } = await twoOwners();

    // Assess
    expectBothProgress(a, b);
  }, 120_000);

  it("round-robin: two owners take turns on a shared pool", async () => {
    showWorkersOnFailure();
    // Prepare
    expect(await setPolicy({ algorithm: "round-robin" })).toMatchObject({ algorithm: "round-robin" });

    // Act
    const { a, b } = await twoOwners();

    // Assess
    expectBothProgress(a, b);
    // Turns: from B's first start to its last, A never starts three in a row.
    const starts = [
      ...a.map((job) => ["a", time(job.startedAt)] as const),
      ...b.map((job) => ["b", time(job.startedAt)] as const),
    ]
      .sort((x, y) => x[1] - y[1])
      .map(([owner]) => owner);
    const turns = starts.slice(starts.indexOf("b"), starts.lastIndexOf("b") + 1).join("");
    expect(turns).not.toContain("aaa");
  }, 120_000);

  it("quota: GPU jobs of an owner over its daily GPU-seconds wait with the quota reason, CPU jobs run", async () => {
    showWorkersOnFailure();
    // Prepare: 2 GPU-seconds a day, then a 3-second job on 1 GPU uses them up
    await setPolicy({});
    await setQuota(PRINCIPALS.quota, { dailyGpuSeconds: 2 });
    const gpuJob = { type: "sleep", pool: "gpu", resources: { cpu: 1, memoryMb: 512, gpu: 1 } };
    const first = await submitAs(QUOTA_OWNER, { ...gpuJob, payload: { seconds: 3 } });
    const [firstDone] = await ended([first.id]);
    expect(firstDone?.status).toBe("completed");

    // Act
    const held = await submitAs(QUOTA_OWNER, { ...gpuJob, payload: { seconds: 0 } });
    const waiting = await until(
      "GPU job held by the quota",
      () => getJob(held.id),
      (job) => job.reasonCode === "quota" || job.status !== "queued",
    );
    const cpu = await submitAs(QUOTA_OWNER, {
      type: "echo",
      pool: "gpu",
      resources: { cpu: 1, memoryMb: 256, gpu: 0 },
    });
    const [cpuDone] = await ended([cpu.id]);
    const quota = await call<QuotaView>(QUOTA_OWNER, "GET", `/quotas/${PRINCIPALS.quota}`);

    // Assess
    expect(waiting.status).toBe("queued");
    expect(waiting.reasonCode).toBe("quota");
    expect(waiting.statusReason).toMatch(/^quota exceeded:/);
    expect(waiting.startedAt ?? null).toBeNull();
    expect(cpuDone?.status).toBe("completed");
    const still = await getJob(held.id);
    expect(still.status).toBe("queued");
    expect(still.reasonCode).toBe("quota");
    expect(quota.status).toBe(200);
    expect(quota.json.limits.dailyGpuSeconds).toBe(2);
    expect(quota.json.used.todayGpuSeconds).toBeGreaterThan(0);
    expect(quota.json.used.todayGpuSeconds).toBeGreaterThanOrEqual(2);
    expect(quota.json.remaining.todayGpuSeconds).toBe(0);
    expect(quota.json.warning).toBe(true);

    // Act: at most one job not yet started, and the held one is it
    await setQuota(PRINCIPALS.quota, { dailyGpuSeconds: 2, maxQueuedJobs: 1 });
    const refused = await call<ErrorBody>(QUOTA_OWNER, "POST", "/jobs", { type: "echo", pool: "gpu" });
    const after = await call<QuotaView>(ADMIN, "GET", `/quotas/${PRINCIPALS.quota}`);

    // Assess
    expect(refused.status).toBe(429);
    expect(refused.json.error.code).toBe("too_many_requests");
    const retryAfter = refused.headers.get("Retry-After");
    expect(retryAfter).toMatch(/^\d+$/);
    expect(Number(retryAfter)).toBeGreaterThan(0);
    expect(after.status).toBe(200);
    expect(after.json.used.queuedJobs).toBe(1);
    expect(after.json.remaining.queuedJobs).toBe(0);

    await cancel(held.id);
    await setQuota(PRINCIPALS.quota, {});
  }, 120_000);

  it("off-peak: an offPeakOnly job waits for a closed window and runs once the window is open", async () => {
    showWorkersOnFailure();
    // Prepare: a window that opens in two hours
    const opens = utcClock(120);
    const closed = { start: opens, end: utcClock(180), timezone: "UTC" };
    expect(await setPolicy({ offPeak: closed })).toMatchObject({ offPeak: closed });
    const job = await submit({ type: "echo", pool: "wide", offPeakOnly: true, payload: { night: true } });

    // Act
    const waiting = await until(
      "job held by the window",
      () => getJob(job.id),
      (j) => j.reasonCode === "off_peak_window" || j.status !== "queued",
    );
    const open = { start: utcClock(-60), end: utcClock(60), timezone: "UTC" };
    await setPolicy({ offPeak: open });
    const policy = await call<Record<string, unknown>>(ADMIN, "GET", "/admin/policy");
    const [done] = await ended([job.id]);

    // Assess
    expect(waiting).toMatchObject({
      status: "queued",
      reasonCode: "off_peak_window",
      statusReason: `off-peak window opens at ${opens} UTC`,
    });
    expect(policy.status).toBe(200);
    expect(policy.json).toMatchObject({ offPeak: open });
    expect(done).toMatchObject({ status: "completed", result: { night: true } });
  }, 120_000);

  it("preemption: a critical job evicts a running low one, whose preempted attempt does not count", async () => {
    showWorkersOnFailure();
    // Prepare: the one CPU of the solo pool taken by a low-priority job with a single attempt
    await setPolicy({ preemption: { enabled: true } });
    const low = await submit({
      type: "sleep",
      pool: "solo",
      priority: "low",
      payload: { seconds: 5 },
      resources: { cpu: 1, memoryMb: 256 },
      retry: { maxAttempts: 1 },
    });
    await until(
      "low job running",
      () => getJob(low.id),
      (job) => job.status === "running",
    );

    // Act
    const critical = await submit({
      type: "sleep",
      pool: "solo",
      priority: "critical",
      payload: { seconds: 1 },
      resources: { cpu: 1, memoryMb: 256 },
    });
    const [lowDone, criticalDone] = await ended([low.id, critical.id]);

    // Assess
    expect(criticalDone?.status).toBe("completed");
    expect(lowDone).toMatchObject({ status: "completed", attempts: 2 });
    const attempts = await attemptsOf(low.id);
    expect(attempts.map((a) => a.status)).toEqual(["preempted", "succeeded"]);
    const requeued = (await transitionsOf(low.id)).find(
      (t) => t.to === "queued" && t.from !== null && t.from !== "queued",
    );
    expect(requeued).toMatchObject({ to: "queued", reason: `preempted by ${critical.id}` });
    expect(time(criticalDone?.startedAt)).toBeGreaterThanOrEqual(time(attempts[0]?.finishedAt));
    expect(time(attempts[1]?.startedAt)).toBeGreaterThanOrEqual(time(criticalDone?.startedAt));
  }, 120_000);

  it("deadline: a job not started by its deadline fails with deadline_exceeded", async () => {
    showWorkersOnFailure();
    // Prepare: the solo pool full for a while, and an off-peak window that is closed
    await setPolicy({ offPeak: { start: utcClock(120), end: utcClock(180), timezone: "UTC" } });
    const blocker = await submit({
      type: "sleep",
      pool: "solo",
      payload: { seconds: 30 },
      resources: { cpu: 1, memoryMb: 256 },
    });
    await until(
      "blocker running",
      () => getJob(blocker.id),
      (job) => job.status === "running",
    );
    const deadline = () => new Date(Date.now() + 4000).toISOString();

    // Act
    const noRoom = await submit({ type: "echo", pool: "solo", deadline: deadline() });
    const noWindow = await submit({ type: "echo", pool: "wide", offPeakOnly: true, deadline: deadline() });
    const done = await ended([noRoom.id, noWindow.id]);
    await cancel(blocker.id);

    // Assess
    for (const job of done) {
      expect(job).toMatchObject({ status: "failed", reasonCode: "deadline_exceeded" });
      expect(job.error?.type).toBe("deadline_exceeded");
      expect(job.startedAt ?? null).toBeNull();
      expect(await attemptsOf(job.id)).toEqual([]);
    }
    await until(
      "solo pool empty again",
      () => poolUsed("solo"),
      (used) => used === 0,
    );
  }, 120_000);

  it("typeConcurrency: two jobs of a type limited to one never run at once", async () => {
    showWorkersOnFailure();
    // Prepare: one `flaky` job at a time (a type no other test runs), on a pool with room for four
    await setPolicy({ typeConcurrency: { flaky: 1 } });
    const body = {
      type: "flaky",
      pool: "wide",
      payload: { failTimes: 0, seconds: 2 },
      resources: { cpu: 1 },
    };
    const first = await submit(body);
    const second = await submit(body);

    // Act: watch both until they end
    let mostActive = 0;
    const limited = new Set<string>();
    const done = await until(
      "both flaky jobs ended",
      () => Promise.all([getJob(first.id), getJob(second.id)]),
      (jobs) => {
        mostActive = Math.max(
          mostActive,
          jobs.filter((j) => j.status === "dispatched" || j.status === "running").length,
        );
        for (const j of jobs) if (j.status === "queued" && j.reasonCode === "type_limit") limited.add(j.id);
        return jobs.every((j) => TERMINAL.includes(j.status));
      },
      90_000,
    );

    // Assess
    for (const job of done) expect(job.status).toBe("completed");
    expect(mostActive).toBe(1);
    expect(limited.size).toBeGreaterThanOrEqual(1);
    const [earlier, later] = [...done].sort((x, y) => time(x.startedAt) - time(y.startedAt));
    expect(time(later?.startedAt)).toBeGreaterThanOrEqual(time(earlier?.finishedAt));
  }, 120_000);

  it("placement: a job constrained to zone b runs in the zone-b pool; impossible constraints are refused", async () => {
    showWorkersOnFailure();
    // Prepare
    await setPolicy({});

    // Act
    const jobs = await Promise.all([1, 2, 3].map(() => submit({ type: "echo", constraints: { zone: "b" } })));
    const done = await ended(jobs.map((job) => job.id));
    const noZone = await call<ErrorBody>(USER, "POST", "/jobs", { type: "echo", constraints: { zone: "c" } });
    const tooBig = await call<ErrorBody>(USER, "POST", "/jobs", {
      type: "echo",
      constraints: { zone: "b" },
      resources: { cpu: 4 },
    });

    // Assess
    for (const job of done) {
      expect(job.status).toBe("completed");
      const [attempt] = await attemptsOf(job.id);
      expect(attempt?.pool).toBe("zone-b");
      const dispatched = (await transitionsOf(job.id)).find((t) => t.to === "dispatched");
      expect(dispatched?.reason).toContain("zone-b");
      expect(dispatched?.reason).toContain(attempt?.nodeId ?? "a node id");
    }
    expect(noZone.status).toBe(400);
    expect(noZone.json.error.code).toBe("unsatisfiable_resources");
    expect(tooBig.status).toBe(400);
    expect(tooBig.json.error.code).toBe("unsatisfiable_resources");
  }, 120_000);

  it("why pending: dependency, capacity, priority and begin-time waits say why, with a code", async () => {
    showWorkersOnFailure();
    // Prepare: a running parent with a dependent, and the one GPU of the gpu pool taken
    await setPolicy({});
    const long = { type: "sleep", payload: { seconds: 60 } };
    const parent = await submit({ ...long, pool: "wide", resources: { cpu: 1 } });
    const child = await submit({ type: "echo", pool: "wide", dependsOn: [parent.id] });
    const gpu = { pool: "gpu", resources: { cpu: 1, memoryMb: 512, gpu: 1 } };
    const holder = await submit({ ...long, ...gpu });
    await until(
      "parent and GPU holder running",
      () => Promise.all([getJob(parent.id), getJob(holder.id)]),
      (jobs) => jobs.every((job) => job.status === "running"),
    );

    // Act
    const blocked = await until(
      "blocked reason names the dependency",
      () => getJob(child.id),
      (job) => job.status !== "blocked" || job.statusReason.includes(parent.id),
      15_000,
    ).catch(() => getJob(child.id));
    const later = await submit({
      type: "echo",
      pool: "wide",
      runAt: new Date(Date.now() + 3_600_000).toISOString(),
    });
    const scheduled = await getJob(later.id);
    const firstInLine = await submit({ type: "echo", ...gpu });
    const behind = await submit({ type: "echo", ...gpu });
    const [waitingForRoom, waitingBehind] = await until(
      "capacity reasons written",
      () => Promise.all([getJob(firstInLine.id), getJob(behind.id)]),
      (jobs) =>
        jobs.some((job) => job.status !== "queued") ||
        (jobs[0]?.reasonCode === "resources" && jobs[1]?.reasonCode === "priority"),
    );

    // Assess
    expect(blocked).toMatchObject({ status: "blocked", reasonCode: "dependency" });
    expect(blocked.statusReason).toContain("waiting for 1 of 1 dependencies");
    expect(blocked.statusReason).toContain(parent.id);
    expect(scheduled).toMatchObject({ status: "scheduled", reasonCode: "begin_time" });
    expect(waitingForRoom).toMatchObject({ status: "queued", reasonCode: "resources" });
    expect(waitingForRoom?.statusReason).toMatch(/needs 1 GPU in pool gpu, 0 free/);
    expect(waitingBehind).toMatchObject({ status: "queued", reasonCode: "priority" });
    expect(waitingBehind?.statusReason).toBeTruthy();

    // The GPU waiters run once the holder is gone; the rest is cancelled.
    for (const id of [later.id, parent.id, holder.id]) await cancel(id);
    const done = await ended([child.id, firstInLine.id, behind.id]);
    expect(done.map((job) => job.status)).toEqual(["cancelled", "completed", "completed"]);
  }, 120_000);

  it("GET /queue lists the queued jobs in admission order, with positions, estimates and reasons", async () => {
    showWorkersOnFailure();
    // Prepare: the solo pool's one CPU taken, three jobs queued behind it in the wrong order
    await setPolicy({});
    const cpu = { pool: "solo", resources: { cpu: 1, memoryMb: 256 } };
    const blocker = await submit({ type: "sleep", ...cpu, payload: { seconds: 4 } });
    await until(
      "blocker running",
      () => getJob(blocker.id),
      (job) => job.status === "running",
    );
    const normal = await submit({ type: "echo", ...cpu });
    const low = await submit({ type: "echo", ...cpu, priority: "low" });
    const high = await submit({ type: "echo", ...cpu, priority: "high" });
    const mine = [high.id, normal.id, low.id];

    // Act
    const queue = await until(
      "the three queued in GET /queue",
      () => call<QueueView>(USER, "GET", "/queue?pool=solo"),
      (r) => r.status !== 200 || mine.every((id) => r.json.queued.some((q) => q.id === id)),
    );
    const adminQueue = await call<QueueView>(ADMIN, "GET", "/queue");
    const done = await ended([blocker.id, ...mine]);

    // Assess
    expect(queue.status).toBe(200);
    expect(queue.json.counts.queued).toBeGreaterThanOrEqual(3);
    expect((queue.json.counts.running ?? 0) + (queue.json.counts.dispatched ?? 0)).toBeGreaterThanOrEqual(1);
    expect(queue.json.pools.map((p) => p.name)).toContain("solo");
    const listed = queue.json.queued.filter((q) => mine.includes(q.id));
    expect(listed.map((q) => q.id)).toEqual(mine);
    expect(listed.map((q) => q.position)).toEqual([1, 2, 3]);
    expect(listed.map((q) => q.priority)).toEqual([5, 0, -5]);
    for (const q of listed) {
      expect(q).toMatchObject({ type: "echo", owner: PRINCIPALS.user });
      expect(q.estimatedStartAt === null || isIsoTime(q.estimatedStartAt)).toBe(true);
      expect(typeof q.statusReason).toBe("string");
    }
    expect(adminQueue.status).toBe(200);
    expect(Array.isArray(adminQueue.json.queued)).toBe(true);
    for (const job of done) expect(job.status).toBe("completed");
    const [, highDone, normalDone, lowDone] = done;
    expect(time(highDone?.startedAt)).toBeLessThanOrEqual(time(normalDone?.startedAt));
    expect(time(normalDone?.startedAt)).toBeLessThanOrEqual(time(lowDone?.startedAt));
  }, 120_000);

  it("GET /jobs/{id} of a queued job: its position, and an estimated start once its type has run", async () => {
    showWorkersOnFailure();
    // Prepare: `log` jobs (a type no other test runs) behind a job holding the solo pool's CPU
    await setPolicy({});
    const cpu = { pool: "solo", resources: { cpu: 1, memoryMb: 256 } };
    const logJob = { type: "log", ...cpu, payload: { lines: 1 } };
    const blocker = await submit({ type: "sleep", ...cpu, payload: { seconds: 4 } });
    await until(
      "blocker running",
      () => getJob(blocker.id),
      (job) => job.status === "running",
    );
    const first = await submit(logJob);
    const second = await submit(logJob);

    // Act
    const [firstView, secondView] = await Promise.all([getJob(first.id), getJob(second.id)]);
    await ended([blocker.id, first.id, second.id]);

    // Assess: nothing is known yet of how long a `log` job runs, so nothing of when the second starts
    expect(firstView).toMatchObject({ status: "queued", queuePosition: 1 });
    expect(firstView.estimatedStartAt === null || isIsoTime(firstView.estimatedStartAt)).toBe(true);
    expect(secondView).toMatchObject({ status: "queued", queuePosition: 2, estimatedStartAt: null });

    // Run times reach the types' statistics with the /stats consumer's transaction (its batching
    // window, 10 s): GET /stats counting the two `log` jobs means they have been recorded.
    await until(
      "the /stats consumer has applied the first round",
      () => call<{ byType: Record<string, { completed: number } | undefined> }>(ADMIN, "GET", "/stats"),
      (stats) =>
        (stats.json.byType.log?.completed ?? 0) >= 2 && (stats.json.byType.sleep?.completed ?? 0) >= 1,
    );

    // Act: with `sleep` and `log` run times known, the same wait gets a time
    const blocker2 = await submit({ type: "sleep", ...cpu, payload: { seconds: 4 } });
    await until(
      "second blocker running",
      () => getJob(blocker2.id),
      (job) => job.status === "running",
    );
    const third = await submit(logJob);
    const fourth = await submit(logJob);
    const estimated = await until(
      "an estimate for the second queued log job",
      () => getJob(fourth.id),
      (job) => job.status !== "queued" || isIsoTime(job.estimatedStartAt),
    );
    const running = await getJob(blocker2.id);
    const rest = await ended([blocker2.id, third.id, fourth.id]);

    // Assess
    expect(estimated).toMatchObject({ status: "queued", queuePosition: 2 });
    expect(isIsoTime(estimated.estimatedStartAt)).toBe(true);
    expect(time(estimated.estimatedStartAt)).toBeGreaterThanOrEqual(time(running.startedAt));
    for (const job of rest) expect(job.status).toBe("completed");
  }, 120_000);
});
