import { randomBytes } from "node:crypto";
import { GetCommand } from "@aws-sdk/lib-dynamodb";
import { afterAll, beforeEach, describe, expect, inject, it } from "vitest";
import { cancelJob, pauseJob } from "../../app/actions";
import { completeAttempt, type LifecycleContext, recordAttemptFailure } from "../../app/lifecycle";
import { countNotStarted, principalUsage } from "../../app/quota-usage";
import { submitJobs } from "../../app/submit";
import { batchJobSchema } from "../../core/job";
import type { PoolConfig } from "../../core/pools";
import { emptyDelta } from "../../core/stats";
import { LOCAL_REGION } from "../../local/config";
import type { NodeCapacity } from "../../store/capacity";
import { createDocumentClient } from "../../store/dynamo";
import type { JobItem } from "../../store/job-items";
import { JobRepository } from "../../store/job-repository";
import { dayUsageSk, principalPk, weekUsageSk } from "../../store/keys";
import { NodeRepository } from "../../store/nodes";
import { StatsRepository } from "../../store/stats";
import { UsageRepository } from "../../store/usage";
import { runOnNode } from "../support/attempts";
import { silentLifecyclePorts } from "../support/scheduling";

/**
 * GPU-seconds kept per principal (store/usage.ts) by the transactions that end attempts
 * (complete, fail, cancel, pause), the running attempts' share read from the `active` index,
 * the not-started count, and the run-time statistics — against DynamoDB Local. The scheduler's
 * admission and the worker's start are played with the writes those pieces make.
 */

const STATE_MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:jobq-usage";
const NODE_CAPACITY: NodeCapacity = { cpu: 8, memoryMb: 32_768, gpu: 2 };
const POOL = `usage-${randomBytes(4).toString("hex")}`;

const tables = inject("tables");
const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
const repo = new JobRepository(db, tables.Jobs ?? "");
const nodesTable = tables.Nodes ?? "";
const policyTable = tables.Policy ?? "";
const usage = new UsageRepository(db, policyTable);
const stats = new StatsRepository(db, policyTable);
const pools: PoolConfig[] = [{ name: POOL, labels: {}, nodes: 1, node: NODE_CAPACITY }];

let now: Date;
let ctx: LifecycleContext;
let owner: string;
let nodeId: string;

beforeEach(async () => {
  // A Wednesday: the week began on Monday 2026-11-23.
  now = new Date("2026-11-25T10:00:00.000Z");
  ctx = {
    repo,
    clock: () => now,
    nodesTable,
    pools,
    taskTypes: null,
    ...silentLifecyclePorts(STATE_MACHINE_ARN),
    usage,
  };
  owner = `usage-${randomBytes(4).toString("hex")}`;
  nodeId = `node-${randomBytes(4).toString("hex")}`;
  await new NodeRepository(db, nodesTable).register(
    { pool: POOL, nodeId, workerId: `worker-${nodeId}`, capacity: NODE_CAPACITY },
    now,
  );
});

afterAll(() => db.destroy());

const advance = (seconds: number): void => {
  now = new Date(now.getTime() + seconds * 1000);
};

/** Submits one job as `owner` in the test's pool; returns its id. */
async function submit(job: Record<string, unknown> = {}): Promise<string> {
  const result = await submitJobs(ctx, {
    principal: { id: owner, admin: false },
    jobs: [batchJobSchema.parse({ type: "train", pool: POOL, ...job })],
  });
  const id = result.jobs[0]?.id;
  if (!id) throw new Error("submit created no job");
  return id;
}

const gpuJob = (gpu: number): Record<string, unknown> => ({ resources: { cpu: 1, memoryMb: 1024, gpu } });

async function job(id: string): Promise<JobItem> {
  const item = (await repo.getJobItems([id])).get(id);
  if (!item) throw new Error(`job ${id} not found`);
  return item;
}

/** The scheduler's admission and the worker's start: the job running its next attempt from `now`. */
function startRunning(id: string): Promise<number> {
  return runOnNode(ctx, id, { pool: POOL, nodeId, workerId: `worker-${nodeId}`, capacity: NODE_CAPACITY });
}

/** One of the owner's usage items, strongly consistent. */
async function usageItem(sk: string): Promise<Record<string, unknown> | undefined> {
  const { Item } = await db.send(
    new GetCommand({ TableName: policyTable, Key: { pk: principalPk(owner), sk }, ConsistentRead: true }),
  );
  return Item;
}

const epochSeconds = (iso: string): number => Date.parse(iso) / 1000;

describe("finished attempts", () => {
  it("a completed GPU attempt adds GPUs × duration to today and this week, once even when replayed", async () => {
    const id = await submit(gpuJob(2));
    const attempt = await startRunning(id);
    advance(100);

    await completeAttempt(ctx, { jobId: id, attempt });
    await completeAttempt(ctx, { jobId: id, attempt });

    expect(await usage.readGpuUsage([owner], now)).toEqual(
      new Map([[owner, { todayGpuSeconds: 200, weekGpuSeconds: 200 }]]),
    );
    expect(await usageItem(dayUsageSk("2026-11-25"))).toMatchObject({
      gpuSeconds: 200,
      expiresAt: epochSeconds("2026-12-03T00:00:00Z"),
    });
    expect(await usageItem(weekUsageSk("2026-11-23"))).toMatchObject({
      gpuSeconds: 200,
      expiresAt: epochSeconds("2026-12-08T00:00:00Z"),
    });
  });

  it("a failed attempt counts, once when the step is replayed", async () => {
    const id = await submit({ ...gpuJob(1), retry: { maxAttempts: 2 } });
    const attempt = await startRunning(id);
    advance(30);
    const failure = { jobId: id, attempt, outcome: "failed" as const, error: { Error: "OOM" } };

    await recordAttemptFailure(ctx, failure);
    await recordAttemptFailure(ctx, failure);

    expect((await job(id)).status).toBe("retrying");
    expect(await usage.readGpuUsage([owner], now)).toEqual(
      new Map([[owner, { todayGpuSeconds: 30, weekGpuSeconds: 30 }]]),
    );
  });

  it("a running GPU job that is cancelled or paused counts what it ran", async () => {
    const cancelled = await submit(gpuJob(1));
    const paused = await submit(gpuJob(1));
    await startRunning(cancelled);
    await startRunning(paused);
    advance(40);

    await cancelJob(ctx, { id: owner, admin: false }, cancelled);
    advance(10);
    await pauseJob(ctx, { id: owner, admin: false }, paused);

    expect((await job(cancelled)).status).toBe("cancelled");
    expect((await job(paused)).status).toBe("paused");
    expect(await usage.readGpuUsage([owner], now)).toEqual(
      new Map([[owner, { todayGpuSeconds: 90, weekGpuSeconds: 90 }]]),
    );
  });

  it("a CPU job, and a GPU job cancelled before it ran, add nothing", async () => {
    const cpu = await submit(gpuJob(0));
    const waiting = await submit(gpuJob(2));
    const attempt = await startRunning(cpu);
    advance(60);

    await completeAttempt(ctx, { jobId: cpu, attempt });
    await cancelJob(ctx, { id: owner, admin: false }, waiting);

    expect(await usageItem(dayUsageSk("2026-11-25"))).toBeUndefined();
    expect(await usageItem(weekUsageSk("2026-11-23"))).toBeUndefined();
    expect(await usage.readGpuUsage([owner], now)).toEqual(
      new Map([[owner, { todayGpuSeconds: 0, weekGpuSeconds: 0 }]]),
    );
  });

  it("an attempt across midnight splits between the two days (and here, two weeks)", async () => {
    // Sunday 23:59 to Monday 00:01: both a new day and a new week.
    now = new Date("2026-11-22T23:59:00.000Z");
    const id = await submit(gpuJob(2));
    const attempt = await startRunning(id);
    advance(120);

    await completeAttempt(ctx, { jobId: id, attempt });

    expect(await usageItem(dayUsageSk("2026-11-22"))).toMatchObject({ gpuSeconds: 120 });
    expect(await usageItem(dayUsageSk("2026-11-23"))).toMatchObject({ gpuSeconds: 120 });
    expect(await usageItem(weekUsageSk("2026-11-16"))).toMatchObject({ gpuSeconds: 120 });
    expect(await usageItem(weekUsageSk("2026-11-23"))).toMatchObject({ gpuSeconds: 120 });
    expect(await usage.readGpuUsage([owner], now)).toEqual(
      new Map([[owner, { todayGpuSeconds: 120, weekGpuSeconds: 120 }]]),
    );
  });
});

describe("principalUsage", () => {
  it("adds the running attempts' share inside today and this week to the finished ones", async () => {
    // Tuesday 23:58: one attempt finishes yesterday-to-be, another runs across midnight.
    now = new Date("2026-11-24T23:58:00.000Z");
    const finished = await submit(gpuJob(1));
    const attempt = await startRunning(finished);
    advance(60);
    await completeAttempt(ctx, { jobId: finished, attempt });
    const running = await submit(gpuJob(2));
    await startRunning(running);
    await submit(gpuJob(0));
    advance(120);

    const used = await principalUsage(ctx, owner);

    // Today (Wednesday) holds only the running job's last 60 s; the week holds everything.
    expect(used).toEqual({ todayGpuSeconds: 2 * 60, weekGpuSeconds: 60 + 2 * 120, queuedJobs: 1 });
    const other = await principalUsage(ctx, `${owner}-other`);
    expect(other).toEqual({ todayGpuSeconds: 0, weekGpuSeconds: 0, queuedJobs: 0 });
  });
});

describe("countNotStarted", () => {
  it("counts scheduled, blocked, queued, retrying and paused jobs, and stops at the cap", async () => {
    const result = await submitJobs(ctx, {
      principal: { id: owner, admin: false },
      jobs: [
        batchJobSchema.parse({ ref: "queued", type: "t", pool: POOL }),
        batchJobSchema.parse({ ref: "blocked", type: "t", pool: POOL, dependsOn: ["queued"] }),
        batchJobSchema.parse({
          ref: "scheduled",
          type: "t",
          pool: POOL,
          runAt: new Date(now.getTime() + 3_600_000).toISOString(),
        }),
      ],
    });
    expect(result.jobs.map((j) => j.status).sort()).toEqual(["blocked", "queued", "scheduled"]);
    await pauseJob(ctx, { id: owner, admin: false }, await submit());
    const retrying = await submit({ retry: { maxAttempts: 3 } });
    await recordAttemptFailure(ctx, {
      jobId: retrying,
      attempt: await startRunning(retrying),
      outcome: "failed",
      error: {},
    });
    expect((await job(retrying)).status).toBe("retrying");
    await startRunning(await submit());
    const done = await submit();
    await completeAttempt(ctx, { jobId: done, attempt: await startRunning(done) });

    expect(await countNotStarted(ctx, owner)).toBe(5);
    expect(await countNotStarted(ctx, owner, 6)).toBe(5);
    expect(await countNotStarted(ctx, owner, 5)).toBe(5);
    expect(await countNotStarted(ctx, owner, 3)).toBe(3);
    expect(await countNotStarted(ctx, `${owner}-other`, 3)).toBe(0);
  });
});

describe("run-time statistics", () => {
  /** What the /stats stream consumer adds for a chunk of records: here, run times alone. */
  function runTimes(type: string, entries: readonly [day: string, count: number, totalMs: number][]) {
    const delta = emptyDelta();
    for (const [day, count, totalMs] of entries) {
      const types = delta.runTimes.get(day) ?? new Map();
      types.set(type, { count, totalMs });
      delta.runTimes.set(day, types);
    }
    return delta;
  }
  const dayAgo = (days: number) => new Date(now.getTime() - days * 86_400_000).toISOString().slice(0, 10);

  it("reads back the mean run time per type over today and the 6 days before", async () => {
    const type = `type-${randomBytes(4).toString("hex")}`;
    const sequence = `${Date.now()}${randomBytes(4).readUInt32BE()}`;

    await stats.apply(
      runTimes(type, [
        [dayAgo(0), 2, 4000],
        [dayAgo(6), 1, 8000],
        [dayAgo(7), 1, 100_000],
      ]),
      sequence,
      sequence,
      now,
    );

    const means = await usage.readRunTimes([type, `${type}-none`], now);
    expect(means).toEqual(new Map([[type, 4000]]));
  });

  it("counts a chunk's run times once, however often the chunk is delivered", async () => {
    const type = `type-${randomBytes(4).toString("hex")}`;
    const sequence = `${Date.now()}${randomBytes(4).readUInt32BE()}`;
    const delta = runTimes(type, [[dayAgo(0), 1, 3000]]);

    const first = await stats.apply(delta, sequence, sequence, now);
    const again = await stats.apply(delta, sequence, sequence, now);

    expect(first).toMatchObject({ applied: true });
    expect(again).toMatchObject({ applied: false });
    expect(await usage.readRunTimes([type], now)).toEqual(new Map([[type, 3000]]));
  });
});
