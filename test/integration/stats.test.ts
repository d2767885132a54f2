import { DescribeTableCommand, DynamoDBClient, UpdateTableCommand } from "@aws-sdk/client-dynamodb";
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
} from "@aws-sdk/client-dynamodb-streams";
import { GetCommand } from "@aws-sdk/lib-dynamodb";
import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { completeAttempt, type LifecycleContext, recordAttemptFailure } from "../../app/lifecycle";
import { applyJobChanges, type SequencedChange } from "../../app/stats";
import { submitJobs } from "../../app/submit";
import { batchJobSchema } from "../../core/job";
import type { PoolConfig } from "../../core/pools";
import { foldChanges, hourOfMinute, type JobImage, RELATIVE_ACCURACY, typeDimension } from "../../core/stats";
import { handler as statsStream } from "../../functions/stats-stream";
import { LOCAL_REGION } from "../../local/config";
import { invokeHandler } from "../../local/lambda";
import type { NodeCapacity } from "../../store/capacity";
import { createDocumentClient } from "../../store/dynamo";
import { JobRepository } from "../../store/job-repository";
import { jobChangeOf } from "../../store/job-stream";
import { NodeRepository } from "../../store/nodes";
import {
  GAUGE_PK,
  GAUGE_SK,
  hourPk,
  minutePk,
  OWNERS_PK,
  RECEIPT_SK,
  receiptPk,
  STATS_SK,
  StatsRepository,
} from "../../store/stats";
import { runTimeDayItem, UsageRepository } from "../../store/usage";
import { startTestApi, type TestApi } from "../support/api";
import { runOnNode } from "../support/attempts";
import { ownTables, silentLifecyclePorts, suffix } from "../support/scheduling";

/**
 * GET /stats fed by the real change stream: jobs live their lives through the real submit and
 * lifecycle code in a Jobs table of this file's own with a stream (NEW_AND_OLD_IMAGES), the
 * stream's records are read from DynamoDB Local and handed to the consumer Lambda handler as
 * Lambda delivers them, and GET /stats is asked through the local API front. The aggregates live
 * in the shared Policy table; this file's pool, type and owner are its own, and counts are
 * compared before and after.
 */

const STATE_MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:jobq-stats";
const NODE_CAPACITY: NodeCapacity = { cpu: 64, memoryMb: 262_144, gpu: 2 };
const POOL = `stats-${suffix()}`;
const TYPE = `stats-${suffix()}`;
const OWNER = `stats-owner-${suffix()}`;
const OTHER = `stats-other-${suffix()}`;

const endpoint = inject("dynamoEndpoint");
const shared = inject("tables");
const credentials = { accessKeyId: "local", secretAccessKey: "local" };
const db = createDocumentClient({ region: LOCAL_REGION, endpoint });
const streams = new DynamoDBStreamsClient({ region: LOCAL_REGION, endpoint, credentials });
const nodeId = `node-${suffix()}`;
const pools: PoolConfig[] = [{ name: POOL, labels: {}, nodes: 1, node: NODE_CAPACITY }];

/** The lifecycle's clock: ten minutes ago, so every change lands in a complete minute of the last hour. */
let now = new Date(Date.now() - 10 * 60_000);
const advance = (seconds: number): void => {
  now = new Date(now.getTime() + seconds * 1000);
};
let ctx: LifecycleContext;
let api: TestApi;
let stream: StreamReader;

/** Reads a table's stream from its start, shard by shard, as Lambda would be handed it. */
class StreamReader {
  private readonly iterators = new Map<string, string | undefined>();
  constructor(readonly streamArn: string) {}

  async next(): Promise<DynamoDBRecord[]> {
    const { StreamDescription } = await streams.send(
      new DescribeStreamCommand({ StreamArn: this.streamArn }),
    );
    const records: DynamoDBRecord[] = [];
    for (const shard of StreamDescription?.Shards ?? []) {
      const shardId = shard.ShardId ?? "";
      let iterator = this.iterators.get(shardId);
      if (!this.iterators.has(shardId)) {
        const out = await streams.send(
          new GetShardIteratorCommand({
            StreamArn: this.streamArn,
            ShardId: shardId,
            ShardIteratorType: "TRIM_HORIZON",
          }),
        );
        iterator = out.ShardIterator;
      }
      while (iterator) {
        const out = await streams.send(new GetRecordsCommand({ ShardIterator: iterator }));
        iterator = out.NextShardIterator;
        if (!out.Records || out.Records.length === 0) break;
        for (const r of out.Records) {
          records.push({
            eventID: r.eventID,
            eventName: r.eventName,
            eventVersion: r.eventVersion,
            eventSource: r.eventSource,
            awsRegion: r.awsRegion,
            eventSourceARN: this.streamArn,
            dynamodb: {
              ApproximateCreationDateTime: Math.floor(
                (r.dynamodb?.ApproximateCreationDateTime?.getTime() ?? 0) / 1000,
              ),
              Keys: r.dynamodb?.Keys,
              NewImage: r.dynamodb?.NewImage,
              OldImage: r.dynamodb?.OldImage,
              SequenceNumber: r.dynamodb?.SequenceNumber,
              SizeBytes: r.dynamodb?.SizeBytes,
              StreamViewType: r.dynamodb?.StreamViewType,
            },
          } as DynamoDBRecord);
        }
      }
      this.iterators.set(shardId, iterator);
    }
    return records;
  }
}

/** A Jobs table of this file's own, with the stream the consumer reads. */
async function jobsTableWithStream(): Promise<{ table: string; streamArn: string }> {
  const { jobs } = await ownTables(`jobq-stats-${suffix()}-`);
  const client = new DynamoDBClient({ region: LOCAL_REGION, endpoint, credentials });
  try {
    let { Table } = await client.send(new DescribeTableCommand({ TableName: jobs }));
    if (!Table?.StreamSpecification?.StreamEnabled) {
      await client.send(
        new UpdateTableCommand({
          TableName: jobs,
          StreamSpecification: { StreamEnabled: true, StreamViewType: "NEW_AND_OLD_IMAGES" },
        }),
      );
      ({ Table } = await client.send(new DescribeTableCommand({ TableName: jobs })));
    }
    const streamArn = Table?.LatestStreamArn;
    if (!streamArn) throw new Error("DynamoDB Local gave the table no stream");
    return { table: jobs, streamArn };
  } finally {
    client.destroy();
  }
}

function eventOf(records: readonly DynamoDBRecord[]): DynamoDBStreamEvent {
  return { Records: [...records] };
}

async function consume(records: readonly DynamoDBRecord[]): Promise<DynamoDBBatchResponse> {
  return (await invokeHandler(
    statsStream as unknown as Parameters<typeof invokeHandler>[0],
    "StatsStream",
    eventOf(records),
    LOCAL_REGION,
  )) as DynamoDBBatchResponse;
}

async function submit(owner: string, job: Record<string, unknown> = {}): Promise<string> {
  const result = await submitJobs(ctx, {
    principal: { id: owner, admin: false },
    jobs: [batchJobSchema.parse({ type: TYPE, pool: POOL, ...job })],
  });
  const id = result.jobs[0]?.id;
  if (!id) throw new Error("submit created no job");
  return id;
}

const node = { pool: POOL, nodeId, workerId: `worker-${nodeId}`, capacity: NODE_CAPACITY };
/** A node of the configured cpu pool (the handlers' default pools), for its utilization. */
const cpuNodeId = `node-${suffix()}`;
const cpuNode = {
  pool: "cpu",
  nodeId: cpuNodeId,
  workerId: `worker-${cpuNodeId}`,
  capacity: { cpu: 2, memoryMb: 4096, gpu: 0 },
};

/** Queued 10 s, run 30 s, then completed (or failed: one attempt allowed). */
async function liveAndEnd(owner: string, end: "completed" | "failed"): Promise<string> {
  const id = await submit(owner, end === "failed" ? { retry: { maxAttempts: 1 } } : {});
  advance(10);
  const attempt = await runOnNode(ctx, id, node);
  advance(30);
  if (end === "completed") await completeAttempt(ctx, { jobId: id, attempt });
  else await recordAttemptFailure(ctx, { jobId: id, attempt, outcome: "failed", error: { Error: "Boom" } });
  return id;
}

interface Percentiles {
  readonly p50: number | null;
  readonly p95: number | null;
  readonly p99: number | null;
}
interface Figures {
  readonly completed: number;
  readonly failed: number;
  readonly queueWaitMs: Percentiles;
  readonly runMs: Percentiles;
}
interface StatsBody {
  readonly window: string;
  readonly counts: { byStatus: Record<string, number>; byPool: Record<string, Record<string, number>> };
  readonly throughput: {
    completedLastMinute: number;
    failedLastMinute: number;
    completedLastHour: number;
    failedLastHour: number;
  };
  readonly queueWaitMs: Percentiles;
  readonly byPool: Record<string, Figures & { utilization: Record<string, number | null> }>;
  readonly byType: Record<string, Figures>;
  readonly owners: {
    owner: string;
    running: number;
    queued: number;
    gpuSecondsToday: number;
    costUsdToday: number | null;
  }[];
  readonly series: { minute: string; completed: number }[];
  readonly overheadUsd: number | null;
  readonly cost: {
    today: { jobs: number; totalUsd: number; byOwner: Record<string, unknown> };
    week: { totalUsd: number };
  };
  readonly error?: { code: string };
}

const OWNER_TOKEN = "stats-owner-token";
const ADMIN_TOKEN = "stats-admin-token";

async function stats(token = ADMIN_TOKEN, query = ""): Promise<StatsBody> {
  const response = await api.request<StatsBody>("GET", `/stats${query}`, { token });
  expect(response.status).toBe(200);
  return response.json;
}

const within = (value: number | null | undefined, exact: number): boolean =>
  value !== null && value !== undefined && Math.abs(value - exact) <= exact * RELATIVE_ACCURACY + 0.5;

let before: StatsBody;
let afterFirst: StatsBody;
let firstBatch: DynamoDBRecord[];

beforeAll(async () => {
  const { table, streamArn } = await jobsTableWithStream();
  stream = new StreamReader(streamArn);
  ctx = {
    repo: new JobRepository(db, table),
    clock: () => now,
    nodesTable: shared.Nodes ?? "",
    pools,
    taskTypes: null,
    ...silentLifecyclePorts(STATE_MACHINE_ARN),
    usage: new UsageRepository(db, shared.Policy ?? ""),
  };
  await new NodeRepository(db, shared.Nodes ?? "").register(node, now);
  await new NodeRepository(db, shared.Nodes ?? "").register(cpuNode, now);
  api = await startTestApi({
    [OWNER_TOKEN]: { principal: OWNER, role: "user" },
    [ADMIN_TOKEN]: { principal: "stats-admin", role: "admin" },
  });
  before = await stats();

  // Prepare: one job completed, one failed, one still queued and one running, all OWNER's; one
  // queued job of another owner.
  await liveAndEnd(OWNER, "completed");
  await liveAndEnd(OWNER, "failed");
  await submit(OWNER);
  await runOnNode(ctx, await submit(OWNER, { resources: { cpu: 1, memoryMb: 512, gpu: 1 } }), node);
  await submit(OTHER);
  firstBatch = await stream.next();

  const response = await consume(firstBatch);

  expect(response.batchItemFailures).toEqual([]);
  afterFirst = await stats();
});

afterAll(async () => {
  await new NodeRepository(db, shared.Nodes ?? "").deregister(cpuNode.pool, cpuNode.nodeId);
  await api?.close();
  streams.destroy();
});

describe("GET /stats from the change stream", () => {
  it("counts ended jobs per pool and type, with queue wait and run time within the stated error", () => {
    const pool = afterFirst.byPool[POOL];
    const type = afterFirst.byType[TYPE];

    for (const figures of [pool, type]) {
      expect(figures?.completed).toBe(1);
      expect(figures?.failed).toBe(1);
      // Four admissions waited 10 s each (the running job's too); two attempts ran 30 s.
      expect(within(figures?.queueWaitMs.p50, 10_000)).toBe(true);
      expect(within(figures?.queueWaitMs.p99, 10_000)).toBe(true);
      expect(within(figures?.runMs.p50, 30_000)).toBe(true);
    }
    expect(afterFirst.throughput.completedLastHour - before.throughput.completedLastHour).toBe(1);
    expect(afterFirst.throughput.failedLastHour - before.throughput.failedLastHour).toBe(1);
  });

  it("keeps gauges: jobs per status and pool, and each owner's running and queued", () => {
    const delta = (status: string) =>
      (afterFirst.counts.byStatus[status] ?? 0) - (before.counts.byStatus[status] ?? 0);

    expect(delta("completed")).toBe(1);
    expect(delta("failed")).toBe(1);
    expect(delta("queued")).toBe(2);
    expect(delta("running")).toBe(1);
    expect(delta("dispatched")).toBe(0);
    expect(afterFirst.counts.byPool[POOL]).toEqual({ queued: 2, running: 1 });
    expect(afterFirst.owners.find((o) => o.owner === OWNER)).toMatchObject({ running: 1, queued: 1 });
    expect(afterFirst.owners.find((o) => o.owner === OTHER)).toMatchObject({ running: 0, queued: 1 });
  });

  it("counts a redelivered batch once, and only the new records of a longer redelivery", async () => {
    // Act: the same batch again (Lambda retrying after a timeout), then it again with the
    // records of one more completed job after it.
    const again = await consume(firstBatch);
    await liveAndEnd(OWNER, "completed");
    const longer = await consume([...firstBatch, ...(await stream.next())]);

    expect(again.batchItemFailures).toEqual([]);
    expect(longer.batchItemFailures).toEqual([]);
    const after = await stats();
    expect(after.byType[TYPE]?.completed).toBe(2);
    expect(after.byType[TYPE]?.failed).toBe(1);
    expect(after.counts.byPool[POOL]).toEqual({ queued: 2, running: 1 });
    expect((after.counts.byStatus.completed ?? 0) - (before.counts.byStatus.completed ?? 0)).toBe(2);
  });

  it("drops an owner's row once nothing of theirs runs or waits", async () => {
    const owner = `stats-brief-${suffix()}`;
    const id = await submit(owner);
    await consume(await stream.next());
    const whileQueued = await ownerItem(owner);

    const attempt = await runOnNode(ctx, id, node);
    await completeAttempt(ctx, { jobId: id, attempt });
    await consume(await stream.next());

    expect(whileQueued).toMatchObject({ owner, running: 0, queued: 1 });
    expect(await ownerItem(owner)).toBeUndefined();
    expect((await stats()).owners.map((o) => o.owner)).not.toContain(owner);
  });

  it("shows a user the pool figures and their own owner row only", async () => {
    const mine = await stats(OWNER_TOKEN);

    expect(mine.owners).toEqual([
      { owner: OWNER, running: 1, queued: 1, gpuSecondsToday: 0, costUsdToday: expect.any(Number) },
    ]);
    // Their completed and failed jobs ended today: their cost is summed, and only theirs is shown.
    expect(mine.owners[0]?.costUsdToday).toBeGreaterThan(0);
    expect(mine.cost.today.jobs).toBeGreaterThanOrEqual(2);
    expect(mine.cost.week.totalUsd).toBeGreaterThanOrEqual(mine.cost.today.totalUsd);
    expect(Object.keys(mine.cost.today.byOwner)).toEqual([OWNER]);
    expect(mine.byType).toEqual({});
    expect(mine.byPool[POOL]?.completed).toBeGreaterThanOrEqual(1);
    expect(mine.counts.byPool[POOL]).toEqual({ queued: 2, running: 1 });
  });

  it("has every field of the contract, and a series point per period of the window", async () => {
    const body = await stats(ADMIN_TOKEN, "?window=15m");

    for (const field of [
      "generatedAt",
      "window",
      "counts",
      "throughput",
      "queueWaitMs",
      "runMs",
      "byPool",
      "byType",
      "owners",
      "overheadUsd",
      "cost",
      "series",
    ]) {
      expect(body).toHaveProperty(field);
    }
    expect(body.window).toBe("15m");
    expect(body.series).toHaveLength(16);
    expect((await stats(ADMIN_TOKEN, "?window=24h")).series).toHaveLength(25);
    // The configured cpu pool, whose only node up is this file's idle one.
    expect(body.byPool.cpu?.utilization).toEqual({ cpu: 0, memoryMb: 0, gpu: null });
  });

  it.each(["?window=2h", "?window=", "?window=1H", "?verbose=1"])(
    "answers %s with a 400 validation_failed",
    async (query) => {
      const response = await api.request<StatsBody>("GET", `/stats${query}`, { token: ADMIN_TOKEN });

      expect(response.status).toBe(400);
      expect(response.json.error?.code).toBe("validation_failed");
    },
  );

  it("answers 401 without a token", async () => {
    const response = await api.request<StatsBody>("GET", "/stats");

    expect(response.status).toBe(401);
  });
});

describe("the consumer's cost", () => {
  it("writes a handful of items per batch, not one per job (measured, printed)", async () => {
    // Prepare: 40 jobs living side by side — submitted, admitted 10 s later, run 30 s — and
    // their records delivered as one batch, as a Lambda batching window gathers them.
    const jobs = 40;
    const ids: string[] = [];
    for (let i = 0; i < jobs; i++) ids.push(await submit(OWNER));
    advance(10);
    const attempts = new Map<string, number>();
    for (const id of ids) attempts.set(id, await runOnNode(ctx, id, node));
    advance(30);
    for (const id of ids) await completeAttempt(ctx, { jobId: id, attempt: attempts.get(id) ?? 1 });
    const records = await stream.next();

    const result = await applyJobChanges(
      { stats: new StatsRepository(db, shared.Policy ?? ""), clock: () => new Date() },
      records.map(changeOf),
    );

    expect(result.failedAt).toBeNull();
    // What DynamoDB bills a transaction: 2 WCU per KB of each item written (DynamoDB Local
    // reports a flat figure), so the items are read back and sized.
    const written = await writtenItems(records);
    const wcu = written.reduce((sum, item) => sum + 2 * Math.ceil(itemBytes(item) / 1024), 0);
    console.info(
      `stats consumer: ${records.length} records of ${jobs} jobs → ${result.writes} transaction(s) of ` +
        `${result.itemsWritten} items (${written.map((i) => itemBytes(i)).join(", ")} bytes) ≈ ${wcu} WCU, ` +
        `${(wcu / jobs).toFixed(2)} WCU per job`,
    );
    expect(written).toHaveLength(result.itemsWritten);
    expect(result.itemsWritten).toBeLessThanOrEqual(8);
    expect(wcu / jobs).toBeLessThanOrEqual(1);
  });
});

async function ownerItem(owner: string): Promise<Record<string, unknown> | undefined> {
  const { Item } = await db.send(
    new GetCommand({
      TableName: shared.Policy ?? "",
      Key: { pk: OWNERS_PK, sk: owner },
      ConsistentRead: true,
    }),
  );
  return Item;
}

function changeOf(record: DynamoDBRecord): SequencedChange {
  const change = jobChangeOf(record);
  return change ?? { sequence: record.dynamodb?.SequenceNumber ?? "", old: null, new: null };
}

/** The aggregate items a batch's records wrote, read back: its minutes and hours, the gauge, owners, the receipt. */
async function writtenItems(records: readonly DynamoDBRecord[]): Promise<Record<string, unknown>[]> {
  const changes = records.map(changeOf);
  const delta = foldChanges(changes);
  const minutes = [...delta.minutes.keys()];
  const keys = [
    ...minutes.map((m) => ({ pk: minutePk(m), sk: STATS_SK })),
    ...[...new Set(minutes.map(hourOfMinute))].map((h) => ({ pk: hourPk(h), sk: STATS_SK })),
    ...(delta.byStatus.size > 0 ? [{ pk: GAUGE_PK, sk: GAUGE_SK }] : []),
    ...[...delta.owners.keys()].map((owner) => ({ pk: OWNERS_PK, sk: owner })),
    // The types' run-time statistics ride the same transaction (estimatedStartAt reads them).
    ...[...delta.runTimes].flatMap(([day, types]) =>
      [...types.keys()].map((type) => runTimeDayItem(type, day).key),
    ),
    { pk: receiptPk(changes[0]?.sequence ?? ""), sk: RECEIPT_SK },
  ];
  const items: Record<string, unknown>[] = [];
  for (const Key of keys) {
    const { Item } = await db.send(new GetCommand({ TableName: shared.Policy ?? "", Key }));
    if (Item) items.push(Item);
  }
  return items;
}

/** An item's size as DynamoDB counts it: names and values, numbers at most 21 bytes. */
function itemBytes(item: Record<string, unknown>): number {
  const valueBytes = (value: unknown): number => {
    if (typeof value === "string") return Buffer.byteLength(value, "utf8");
    if (typeof value === "number")
      return Math.min(21, Math.ceil(String(Math.abs(value)).replace(/[.-]/g, "").length / 2) + 1);
    if (typeof value === "boolean" || value === null) return 1;
    if (Array.isArray(value)) return 3 + value.reduce((sum: number, v) => sum + 1 + valueBytes(v), 0);
    if (typeof value === "object") return 3 + itemBytes(value as Record<string, unknown>);
    return 0;
  };
  return Object.entries(item).reduce(
    (sum, [name, value]) => sum + Buffer.byteLength(name, "utf8") + valueBytes(value),
    0,
  );
}

describe("a batch larger than one transaction", () => {
  /** A job of its own type completing at `minute` minutes past `base`. */
  const type = `stats-wide-${suffix()}`;
  const base = Date.now() - 4 * 3_600_000;
  const run = String(Math.floor(Math.random() * 1e9)).padStart(9, "0");
  const completion = (i: number): SequencedChange => {
    const at = new Date(base + i * 60_000).toISOString();
    const image: JobImage = {
      id: `job_wide_${run}_${i}`,
      status: "running",
      owner: OTHER,
      type,
      pool: POOL,
      reservationPool: POOL,
      createdAt: at,
      updatedAt: at,
      queuedAt: at,
      attemptStartedAt: at,
      staged: false,
    };
    // Sequence numbers of this test's own, far above DynamoDB Local's, so no receipt collides.
    return {
      sequence: `9${run}${String(i).padStart(6, "0")}`,
      old: image,
      new: { ...image, status: "completed", updatedAt: new Date(base + i * 60_000 + 5_000).toISOString() },
    };
  };
  const repository = new StatsRepository(db, shared.Policy ?? "");
  const consumer = { stats: repository, clock: () => new Date() };
  const hours = Array.from({ length: 5 }, (_, i) =>
    new Date(base + i * 3_600_000).toISOString().slice(0, 13),
  );
  const completedOfType = async (): Promise<number> => {
    const { hours: read } = await repository.readPeriods([], hours);
    return [...read.values()].reduce((sum, dims) => sum + (dims.get(typeDimension(type))?.completed ?? 0), 0);
  };

  it("is written in several transactions, each with its receipt, and counted once when delivered again", async () => {
    // 150 jobs ending in 150 different minutes: 150 minute items, more than one transaction holds.
    const records = Array.from({ length: 150 }, (_, i) => completion(i));

    const first = await applyJobChanges(consumer, records);
    const again = await applyJobChanges(consumer, records);
    const longer = await applyJobChanges(consumer, [
      ...records,
      ...Array.from({ length: 10 }, (_, i) => completion(150 + i)),
    ]);

    expect(first).toMatchObject({ failedAt: null, replayed: 0 });
    expect(first.writes).toBeGreaterThanOrEqual(2);
    expect(again).toMatchObject({ failedAt: null, writes: 0, replayed: 150 });
    expect(longer).toMatchObject({ failedAt: null, writes: 1, replayed: 150 });
    expect(await completedOfType()).toBe(160);
  });
});
