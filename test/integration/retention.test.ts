import { randomBytes } from "node:crypto";
import { afterAll, beforeEach, describe, expect, inject, it } from "vitest";
import { completeAttempt, type LifecycleContext, recordAttemptFailure } from "../../app/lifecycle";
import { retryJob } from "../../app/retry";
import { submitJobs } from "../../app/submit";
import { batchJobSchema, TERMINAL_STATUSES } from "../../core/job";
import type { PoolConfig } from "../../core/pools";
import { HISTORY_MARGIN_DAYS, type Retention } from "../../core/retention";
import { LOCAL_REGION } from "../../local/config";
import type { NodeCapacity } from "../../store/capacity";
import { createDocumentClient } from "../../store/dynamo";
import { JobRepository } from "../../store/job-repository";
import { JOB_SK } from "../../store/keys";
import { NodeRepository } from "../../store/nodes";
import { UsageRepository } from "../../store/usage";
import { AttemptLog } from "../../worker/logs";
import { admitOnNode, runOnNode } from "../support/attempts";
import { partitionItems } from "../support/partitions";
import { silentLifecyclePorts } from "../support/scheduling";

/**
 * Retention (docs/data-model.md#retention) against DynamoDB Local: the `expiresAt` every item of
 * a job's partition is written with, through the real lifecycle steps, worker log writer and
 * manual retry. DynamoDB Local does not run TTL deletions promptly, so the attribute is what is
 * checked, never a deletion. The clock is the test's: times are a day ahead of now, so no item
 * could have expired already whatever the emulator does.
 */

const STATE_MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:jobq-lifecycle";
const NODE_CAPACITY: NodeCapacity = { cpu: 4, memoryMb: 8192, gpu: 0 };
const POOL = `ret-${randomBytes(4).toString("hex")}`;
const DAY = 86_400;

const tables = inject("tables");
const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
const nodesTable = tables.Nodes ?? "";
const usage = new UsageRepository(db, tables.Policy ?? "");
const pools: PoolConfig[] = [{ name: POOL, labels: {}, nodes: 1, node: NODE_CAPACITY }];

let now: Date;
let owner: string;
let nodeId: string;

beforeEach(async () => {
  now = new Date(Math.floor(Date.now() / 1000) * 1000 + DAY * 1000);
  owner = `retention-${randomBytes(4).toString("hex")}`;
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
const epoch = (at: string | Date): number => Math.floor(new Date(at).getTime() / 1000);

/** The lifecycle's context, its repository configured with `retention`. */
function contextWith(retention: Retention): LifecycleContext {
  const repo = new JobRepository(db, tables.Jobs ?? "", retention);
  return {
    repo,
    clock: () => now,
    nodesTable,
    pools,
    taskTypes: null,
    ...silentLifecyclePorts(STATE_MACHINE_ARN),
    usage,
  };
}

async function submitOne(ctx: LifecycleContext, job: Record<string, unknown> = {}): Promise<string> {
  const result = await submitJobs(ctx, {
    principal: { id: owner, admin: false },
    jobs: [batchJobSchema.parse({ type: "work", pool: POOL, ref: "a", ...job })],
  });
  const id = result.refs.a;
  if (!id) throw new Error("no job submitted");
  return id;
}

const workerNode = () => ({ pool: POOL, nodeId, workerId: `worker-${nodeId}`, capacity: NODE_CAPACITY });

/** Every item of the job's partition (job, transitions, attempts, logs), by sort key. */
async function partition(ctx: LifecycleContext, id: string): Promise<Record<string, unknown>[]> {
  return partitionItems(db, ctx.repo.tableName, id);
}

const isHistory = (item: Record<string, unknown>): boolean => item.sk !== JOB_SK;

/** When the item was written: the transition's `at`, a log line's `timestamp`. */
function writtenAt(item: Record<string, unknown>): string {
  const at = item.entity === "log" ? item.timestamp : item.at;
  if (typeof at !== "string") throw new Error(`no write time on ${String(item.sk)}`);
  return at;
}

/** Writes log lines as the worker does (worker/logs.ts) at the current clock. */
async function writeLogs(ctx: LifecycleContext, id: string, attempt: number, lines: number): Promise<void> {
  const log = new AttemptLog(
    ctx.repo as JobRepository,
    id,
    attempt,
    () => now,
    (error) => {
      throw error;
    },
  );
  for (let i = 0; i < lines; i++) log.add("info", `line ${i}`);
  await log.close();
}

describe("retention of an ended job's history", () => {
  const retention: Retention = { historyDays: 90, jobDays: null };
  const endDays = 90;
  const aliveDays = 90 + HISTORY_MARGIN_DAYS;

  it("stamps what the end writes at exactly retentionDays after it, and the rest no sooner", async () => {
    const ctx = contextWith(retention);
    const id = await submitOne(ctx);
    advance(60);
    const attempt = await runOnNode(ctx, id, workerNode());
    advance(5);
    await writeLogs(ctx, id, attempt, 3);
    advance(3600);
    await completeAttempt(ctx, { jobId: id, attempt });
    const end = now.toISOString();

    const items = await partition(ctx, id);
    const job = items.find((i) => i.sk === JOB_SK);
    expect(job).toMatchObject({ status: "completed" });
    // The job item stays for good without jobRetentionDays.
    expect(job?.expiresAt).toBeUndefined();

    const history = items.filter(isHistory);
    // Born queued, the job stores no creation record (reads derive it).
    expect(history.map((i) => i.entity).sort()).toEqual([
      "attempt",
      "log",
      "log",
      "log",
      "transition",
      "transition",
      "transition",
    ]);
    for (const item of history) {
      const endsJob =
        item.entity === "attempt" ||
        (item.entity === "transition" && TERMINAL_STATUSES.has(item.to as never));
      const expected = endsJob ? epoch(end) + endDays * DAY : epoch(writtenAt(item)) + aliveDays * DAY;
      expect({ sk: item.sk, expiresAt: item.expiresAt }).toEqual({ sk: item.sk, expiresAt: expected });
      // The guarantee: nothing of an ended job goes before retentionDays after its end.
      expect(item.expiresAt as number).toBeGreaterThanOrEqual(epoch(end) + endDays * DAY);
    }
  });

  it("records an attempt that no worker started with the end's expiry when it ends the job", async () => {
    const ctx = contextWith(retention);
    const id = await submitOne(ctx, { retry: { maxAttempts: 1 } });
    const attempt = await admitOnNode(ctx, id, workerNode());
    advance(300);
    await recordAttemptFailure(ctx, {
      jobId: id,
      attempt,
      outcome: "lost",
      error: { Error: "States.HeartbeatTimeout" },
    });

    const items = await partition(ctx, id);
    expect(items.find((i) => i.sk === JOB_SK)).toMatchObject({ status: "failed" });
    const attemptItem = items.find((i) => i.entity === "attempt");
    expect(attemptItem).toMatchObject({ status: "lost", expiresAt: epoch(now) + endDays * DAY });
  });

  it("keeps a live job's history retentionDays plus the margin after each write, and its job item for good", async () => {
    const ctx = contextWith(retention);
    const id = await submitOne(ctx, { retry: { maxAttempts: 3 } });
    const attempt = await runOnNode(ctx, id, workerNode());
    await writeLogs(ctx, id, attempt, 2);
    advance(10);
    await recordAttemptFailure(ctx, {
      jobId: id,
      attempt,
      outcome: "failed",
      error: { Error: "ValueError", Cause: "boom" },
    });

    const items = await partition(ctx, id);
    expect(items.find((i) => i.sk === JOB_SK)).toMatchObject({ status: "retrying" });
    expect(items.find((i) => i.sk === JOB_SK)?.expiresAt).toBeUndefined();
    const history = items.filter(isHistory);
    expect(history.length).toBeGreaterThanOrEqual(6);
    for (const item of history) {
      // The attempt ended (retrying), not the job: its record is kept as a live job's.
      const at = item.entity === "attempt" ? now.toISOString() : writtenAt(item);
      expect({ sk: item.sk, expiresAt: item.expiresAt }).toEqual({
        sk: item.sk,
        expiresAt: epoch(at) + aliveDays * DAY,
      });
    }
  });
});

describe("jobRetentionDays", () => {
  const retention: Retention = { historyDays: 7, jobDays: 30 };

  it("stamps the ended job item that many days after its end, its history with retentionDays", async () => {
    const ctx = contextWith(retention);
    const id = await submitOne(ctx);
    const attempt = await runOnNode(ctx, id, workerNode());
    advance(120);
    await completeAttempt(ctx, { jobId: id, attempt });

    const items = await partition(ctx, id);
    expect(items.find((i) => i.sk === JOB_SK)).toMatchObject({
      status: "completed",
      expiresAt: epoch(now) + 30 * DAY,
    });
    const last = items.filter((i) => i.entity === "transition").at(-1);
    expect(last).toMatchObject({ to: "completed", expiresAt: epoch(now) + 7 * DAY });
  });

  it("stamps a job cancelled at its submission (its dependency had failed) at once", async () => {
    const ctx = contextWith(retention);
    const parent = await submitOne(ctx, { retry: { maxAttempts: 1 } });
    const attempt = await runOnNode(ctx, parent, workerNode());
    await recordAttemptFailure(ctx, { jobId: parent, attempt, outcome: "failed", error: {} });
    advance(60);
    const child = await submitOne(ctx, { dependsOn: [parent] });

    const items = await partition(ctx, child);
    expect(items.find((i) => i.sk === JOB_SK)).toMatchObject({
      status: "cancelled",
      expiresAt: epoch(now) + 30 * DAY,
    });
    expect(items.find((i) => i.entity === "transition")).toMatchObject({
      to: "cancelled",
      expiresAt: epoch(now) + 7 * DAY,
    });
  });
});

describe("a manual retry after the end", () => {
  const retention: Retention = { historyDays: 7, jobDays: 30 };

  it("drops the job's expiry and renews its history as a live job's, so none of it goes under the revived job", async () => {
    const ctx = contextWith(retention);
    const id = await submitOne(ctx, { retry: { maxAttempts: 1 } });
    const attempt = await runOnNode(ctx, id, workerNode());
    await writeLogs(ctx, id, attempt, 2);
    advance(30);
    await recordAttemptFailure(ctx, { jobId: id, attempt, outcome: "failed", error: {} });
    const before = await partition(ctx, id);
    expect(before.find((i) => i.sk === JOB_SK)).toMatchObject({ status: "failed" });
    expect(before.find((i) => i.sk === JOB_SK)?.expiresAt).toBe(epoch(now) + 30 * DAY);

    advance(5 * DAY);
    await retryJob(ctx, { id: owner, admin: false }, id, {});
    const retriedAt = epoch(now);

    const after = await partition(ctx, id);
    const job = after.find((i) => i.sk === JOB_SK);
    expect(job?.status).toBe("queued");
    expect(job?.expiresAt).toBeUndefined();
    const history = after.filter(isHistory);
    // Everything the first run wrote is still there, and nothing of it goes sooner than a live
    // job's history written at the retry.
    expect(history.length).toBe(before.filter(isHistory).length + 1);
    for (const item of history) {
      expect({ sk: item.sk, expiresAt: item.expiresAt }).toEqual({
        sk: item.sk,
        expiresAt: retriedAt + (7 + HISTORY_MARGIN_DAYS) * DAY,
      });
    }
  });
});
