import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelJob } from "../../app/actions";
import type { PoolPassSummary } from "../../app/scheduler";
import { schedulePool } from "../../app/scheduler";
import { gpuUsageItems } from "../../store/usage";
import {
  type Harness,
  heartbeatNodes,
  jobItem,
  ownTables,
  registerNode,
  schedulerFor,
  startHarness,
  startOnReservedNode,
  submitWaiting,
  suffix,
} from "../support/scheduling";

/**
 * The rules that keep a job waiting whatever the free capacity (API.md "Queue, pools, policy,
 * quotas"; issue 4): GPU quotas per UTC day and week, the off-peak window (across midnight, in
 * another time zone) and typeConcurrency across pools — at the level of a scheduling pass,
 * against DynamoDB Local, with the clock set and moved by the test.
 */

const RUN = suffix();
const OPS = { id: "ops", admin: true };
let h: Harness;

const GPU_NODE = { cpu: 8, memoryMb: 32768, gpu: 2 };
const CPU_NODE = { cpu: 4, memoryMb: 8192, gpu: 0 };
const ONE_GPU = { cpu: 1, memoryMb: 1024, gpu: 1 };
const ONE_CPU = { cpu: 1, memoryMb: 512, gpu: 0 };

function newPool(node: { cpu: number; memoryMb: number; gpu: number }): string {
  const name = `p${suffix()}`;
  h.addPool({ name, labels: {}, nodes: 1, node });
  return name;
}

function principal(name: string): string {
  return `${name}-${suffix()}`;
}

function setClock(iso: string): void {
  h.clock.now = new Date(iso);
}

function waitingOf(summary: PoolPassSummary, jobId: string) {
  return summary.waiting.find((w) => w.jobId === jobId);
}

/** GPU-seconds of an attempt that ran from `startedAt` to `finishedAt`, as ending it would add them. */
async function seedGpuUsage(
  owner: string,
  gpu: number,
  startedAt: string,
  finishedAt: string,
): Promise<void> {
  await h.repo.transact(gpuUsageItems(h.scheduler.usage.tableName, owner, gpu, startedAt, finishedAt));
}

async function putQuota(
  owner: string,
  limits: { dailyGpuSeconds?: number; weeklyGpuSeconds?: number },
): Promise<void> {
  await h.scheduler.policies.putQuota(
    owner,
    {
      dailyGpuSeconds: limits.dailyGpuSeconds ?? null,
      weeklyGpuSeconds: limits.weeklyGpuSeconds ?? null,
      maxQueuedJobs: null,
    },
    h.clock.read().toISOString(),
  );
}

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-gates-${RUN}-`));
});
afterAll(() => h?.close());

describe("GPU quotas", () => {
  it("holds an owner's GPU jobs over the daily quota with the quota reason while its CPU jobs run; 00:00 UTC resets it", async () => {
    // Prepare: a Wednesday; alice used her 3600 GPU-seconds this morning; bob has no quota.
    setClock("2026-11-25T10:00:00.000Z");
    const pool = newPool(GPU_NODE);
    const ctx = schedulerFor(h, [pool]);
    const nodeId = await registerNode(h, pool, GPU_NODE);
    const alice = principal("alice");
    const bob = principal("bob");
    await putQuota(alice, { dailyGpuSeconds: 3600 });
    await seedGpuUsage(alice, 1, "2026-11-25T08:00:00.000Z", "2026-11-25T09:00:00.000Z");
    const [aliceGpu = "", aliceCpu = ""] = await submitWaiting(h, alice, [
      { pool, resources: ONE_GPU },
      { pool, resources: ONE_CPU },
    ]);
    const [bobGpu = ""] = await submitWaiting(h, bob, [{ pool, resources: ONE_GPU }]);

    // Act
    const today = await schedulePool(ctx, pool);
    const held = await jobItem(h, aliceGpu);
    setClock("2026-11-26T00:00:30.000Z");
    await heartbeatNodes(h, pool, [nodeId]);
    const tomorrow = await schedulePool(ctx, pool);

    // Assess
    expect(today.admitted.map((a) => a.jobId).sort()).toEqual([aliceCpu, bobGpu].sort());
    expect(waitingOf(today, aliceGpu)).toMatchObject({
      code: "quota",
      reason: "quota exceeded: 3600 of 3600 GPU-seconds used today",
    });
    expect(held).toMatchObject({
      status: "queued",
      reasonCode: "quota",
      statusReason: "quota exceeded: 3600 of 3600 GPU-seconds used today",
    });
    expect(tomorrow.admitted).toEqual([{ jobId: aliceGpu, nodeId }]);
    expect((await jobItem(h, aliceGpu)).status).toBe("dispatched");
  });

  it("counts a running attempt's GPU-seconds so far against the quota", async () => {
    // Prepare: alice's 1-GPU job started at 09:00; by 10:00 it has used her 3600 GPU-seconds.
    // The node has GPUs to spare throughout.
    setClock("2026-11-25T09:00:00.000Z");
    const node = { cpu: 8, memoryMb: 32768, gpu: 4 };
    const pool = newPool(node);
    const ctx = schedulerFor(h, [pool]);
    const nodeId = await registerNode(h, pool, node);
    const alice = principal("alice");
    await putQuota(alice, { dailyGpuSeconds: 3600 });
    const [running = ""] = await submitWaiting(h, alice, [{ pool, resources: ONE_GPU }]);
    const started = await schedulePool(ctx, pool);
    await startOnReservedNode(h, running);
    setClock("2026-11-25T09:30:00.000Z");
    await heartbeatNodes(h, pool, [nodeId]);
    const [next = ""] = await submitWaiting(h, alice, [{ pool, resources: ONE_GPU }]);

    // Act: at 09:30 half the quota is used; at 10:00 all of it.
    const halfway = await schedulePool(ctx, pool);
    const [after = ""] = await submitWaiting(h, alice, [{ pool, resources: ONE_GPU }]);
    setClock("2026-11-25T10:00:00.000Z");
    await heartbeatNodes(h, pool, [nodeId]);
    const used = await schedulePool(ctx, pool);

    // Assess
    expect(started.admitted.map((a) => a.jobId)).toEqual([running]);
    expect(halfway.admitted.map((a) => a.jobId)).toEqual([next]);
    expect(used.admitted).toEqual([]);
    expect(waitingOf(used, after)).toMatchObject({
      code: "quota",
      reason: "quota exceeded: 3600 of 3600 GPU-seconds used today",
    });
  });

  it("keeps the weekly quota over a day change and resets it on Monday 00:00 UTC", async () => {
    // Prepare: a Saturday; alice used her weekly 7200 GPU-seconds this morning (no daily limit).
    setClock("2026-11-28T20:00:00.000Z");
    const pool = newPool(GPU_NODE);
    const ctx = schedulerFor(h, [pool]);
    const nodeId = await registerNode(h, pool, GPU_NODE);
    const alice = principal("alice");
    await putQuota(alice, { weeklyGpuSeconds: 7200 });
    await seedGpuUsage(alice, 2, "2026-11-28T08:00:00.000Z", "2026-11-28T09:00:00.000Z");
    const [gpuJob = ""] = await submitWaiting(h, alice, [{ pool, resources: ONE_GPU }]);
    const reason = "quota exceeded: 7200 of 7200 GPU-seconds used this week";

    // Act
    const saturday = await schedulePool(ctx, pool);
    setClock("2026-11-29T12:00:00.000Z");
    await heartbeatNodes(h, pool, [nodeId]);
    const sunday = await schedulePool(ctx, pool);
    setClock("2026-11-30T00:00:30.000Z");
    await heartbeatNodes(h, pool, [nodeId]);
    const monday = await schedulePool(ctx, pool);

    // Assess
    expect(saturday.admitted).toEqual([]);
    expect(waitingOf(saturday, gpuJob)).toMatchObject({ code: "quota", reason });
    expect(sunday.admitted).toEqual([]);
    expect(waitingOf(sunday, gpuJob)).toMatchObject({ code: "quota", reason });
    expect(monday.admitted).toEqual([{ jobId: gpuJob, nodeId }]);
  });
});

describe("the off-peak window", () => {
  it("holds an offPeakOnly job outside a window across midnight and admits it inside", async () => {
    // Prepare: noon UTC, window 22:00-08:00 UTC.
    setClock("2026-11-25T12:00:00.000Z");
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool], { offPeak: { start: "22:00", end: "08:00", timezone: "UTC" } });
    const nodeId = await registerNode(h, pool, CPU_NODE);
    const owner = principal("alice");
    const [offPeak = "", anytime = ""] = await submitWaiting(h, owner, [
      { pool, resources: ONE_CPU, offPeakOnly: true },
      { pool, resources: ONE_CPU },
    ]);

    // Act
    const noon = await schedulePool(ctx, pool);
    const held = await jobItem(h, offPeak);
    setClock("2026-11-25T23:00:00.000Z");
    await heartbeatNodes(h, pool, [nodeId]);
    const night = await schedulePool(ctx, pool);

    // Assess
    expect(noon.admitted.map((a) => a.jobId)).toEqual([anytime]);
    expect(waitingOf(noon, offPeak)).toMatchObject({
      code: "off_peak_window",
      reason: "off-peak window opens at 22:00 UTC",
    });
    expect(held).toMatchObject({
      status: "queued",
      reasonCode: "off_peak_window",
      statusReason: "off-peak window opens at 22:00 UTC",
    });
    expect(night.admitted).toEqual([{ jobId: offPeak, nodeId }]);
  });

  it("judges the window by the wall clock of its time zone", async () => {
    // Prepare: 22:00-08:00 in Tokyo (UTC+9, no daylight saving) is 13:00-23:00 UTC.
    setClock("2026-11-25T12:00:00.000Z"); // 21:00 in Tokyo
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool], {
      offPeak: { start: "22:00", end: "08:00", timezone: "Asia/Tokyo" },
    });
    const nodeId = await registerNode(h, pool, CPU_NODE);
    const [offPeak = ""] = await submitWaiting(h, principal("alice"), [
      { pool, resources: ONE_CPU, offPeakOnly: true },
    ]);
    const reason = "off-peak window opens at 22:00 Asia/Tokyo (13:00 UTC)";

    // Act: before it opens; after it closed (08:30 in Tokyo, though 23:30 UTC); inside it.
    const before = await schedulePool(ctx, pool);
    setClock("2026-11-25T23:30:00.000Z");
    await heartbeatNodes(h, pool, [nodeId]);
    const closed = await schedulePool(ctx, pool);
    setClock("2026-11-26T13:30:00.000Z"); // 22:30 in Tokyo
    await heartbeatNodes(h, pool, [nodeId]);
    const open = await schedulePool(ctx, pool);

    // Assess
    expect(before.admitted).toEqual([]);
    expect(waitingOf(before, offPeak)).toMatchObject({ code: "off_peak_window", reason });
    expect(closed.admitted).toEqual([]);
    expect(waitingOf(closed, offPeak)).toMatchObject({ code: "off_peak_window", reason });
    expect(open.admitted).toEqual([{ jobId: offPeak, nodeId }]);
  });
});

describe("typeConcurrency", () => {
  it("holds a type at its limit across pools while other types pass, and lets it go when one ends", async () => {
    // Prepare: at most one `train` job dispatched or running, in whichever pool.
    setClock("2026-11-25T12:00:00.000Z");
    const first = newPool(CPU_NODE);
    const second = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [first, second], { typeConcurrency: { train: 1 } });
    await registerNode(h, first, CPU_NODE);
    await registerNode(h, second, CPU_NODE);
    const owner = principal("alice");
    const [train1 = "", train2 = "", echo1 = ""] = await submitWaiting(h, owner, [
      { pool: first, type: "train", resources: ONE_CPU },
      { pool: first, type: "train", resources: ONE_CPU },
      { pool: first, type: "echo", resources: ONE_CPU },
    ]);
    const [train3 = "", echo2 = ""] = await submitWaiting(h, owner, [
      { pool: second, type: "train", resources: ONE_CPU },
      { pool: second, type: "echo", resources: ONE_CPU },
    ]);

    // Act
    const inFirst = await schedulePool(ctx, first);
    const inSecond = await schedulePool(ctx, second);
    const held = await jobItem(h, train3);
    await cancelJob(h.reconciler, OPS, train1);
    const afterEnd = await schedulePool(ctx, second);

    // Assess
    expect(inFirst.admitted.map((a) => a.jobId)).toEqual([train1, echo1]);
    expect(waitingOf(inFirst, train2)?.code).toBe("type_limit");
    expect(waitingOf(inFirst, train2)?.reason).toMatch(/train/);
    expect(inSecond.admitted.map((a) => a.jobId)).toEqual([echo2]);
    expect(waitingOf(inSecond, train3)?.code).toBe("type_limit");
    expect(held).toMatchObject({ status: "queued", reasonCode: "type_limit" });
    expect(held.statusReason).toBe("type train is at its concurrency limit: 1 of 1 dispatched or running");
    expect(afterEnd.admitted.map((a) => a.jobId)).toEqual([train3]);
  });
});
