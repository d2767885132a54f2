import { randomBytes } from "node:crypto";
import { DeleteCommand, GetCommand, PutCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { afterAll, beforeEach, describe, expect, inject, it } from "vitest";
import { startAttempt } from "../../app/attempts";
import type { JobEventPublisher, JobStateChange } from "../../app/events";
import { executionArnOf, executionName, type LifecycleExecutions } from "../../app/executions";
import {
  type CompletionContext,
  completeAttempt,
  completeRun,
  type DispatchInput,
  type LifecycleContext,
  lifecycleRequestSchema,
  recordAttemptFailure,
  releaseDependents,
  requeueJob,
  runLifecycleStep,
  type TaskTokens,
} from "../../app/lifecycle";
import { listAttempts, listJobs, listLogs, listTransitions } from "../../app/queries";
import { submitJobs } from "../../app/submit";
import { batchJobSchema, listJobsQuerySchema, type Transition } from "../../core/job";
import type { PoolConfig } from "../../core/pools";
import { LOCAL_REGION } from "../../local/config";
import type { NodeCapacity } from "../../store/capacity";
import { createDocumentClient } from "../../store/dynamo";
import { type JobItem, transitionItem } from "../../store/job-items";
import { JobRepository } from "../../store/job-repository";
import {
  attemptSk,
  dependentSk,
  dependsOnSk,
  jobPk,
  nodeSk,
  RESULT_SK,
  TRANSITION_PREFIX,
  transitionSk,
} from "../../store/keys";
import { NodeRepository } from "../../store/nodes";
import { UsageRepository } from "../../store/usage";
import { admitOnNode, runOnNode } from "../support/attempts";

/**
 * The lifecycle steps (app/lifecycle.ts) against DynamoDB Local, driven directly as the state
 * machine (AttemptFailed, Requeue), the worker (completeRun) and the Jobs table's stream consumer
 * (releaseDependents) call them. The scheduler's admission and the worker's start are played by
 * the test with the same writes those pieces make; Step Functions, EventBridge and the execution
 * starter are the recording stand-ins below, so the test sees what the steps tell them.
 */

const STATE_MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:jobq-lifecycle";
const NODE_CAPACITY: NodeCapacity = { cpu: 4, memoryMb: 8192, gpu: 0 };
const run = randomBytes(4).toString("hex");
const POOL = `lc-${run}`;

class RecordingEvents implements JobEventPublisher {
  changes: JobStateChange[] = [];
  async publish(changes: readonly JobStateChange[]): Promise<void> {
    this.changes.push(...changes);
  }
  of(jobId: string): string[] {
    return this.changes.filter((c) => c.jobId === jobId).map((c) => `${c.previousStatus}→${c.status}`);
  }
}

class RecordingExecutions implements LifecycleExecutions {
  started: { jobId: string; version: number; input: DispatchInput }[] = [];
  stopped: { executionArn: string; cause: string }[] = [];
  async start(jobId: string, version: number, input: DispatchInput): Promise<string | null> {
    this.started.push({ jobId, version, input });
    return this.arnOf(jobId, version);
  }
  arnOf(jobId: string, version: number): string {
    return executionArnOf(STATE_MACHINE_ARN, executionName(jobId, version));
  }
  async stop(executionArn: string, cause: string): Promise<void> {
    this.stopped.push({ executionArn, cause });
  }
}

class RecordingTokens implements TaskTokens {
  sent: { token: string; output: unknown }[] = [];
  async succeed(token: string, output: unknown): Promise<boolean> {
    this.sent.push({ token, output });
    return true;
  }
  async fail(token: string, error: string): Promise<boolean> {
    this.sent.push({ token, output: { error } });
    return true;
  }
}

const tables = inject("tables");
const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
const repo = new JobRepository(db, tables.Jobs ?? "");
const nodesTable = tables.Nodes ?? "";
const usage = new UsageRepository(db, tables.Policy ?? "");
const pools: PoolConfig[] = [{ name: POOL, labels: { zone: "a" }, nodes: 1, node: NODE_CAPACITY }];

let now = new Date("2026-11-22T10:00:00.000Z");
let events: RecordingEvents;
let executions: RecordingExecutions;
let tokens: RecordingTokens;
let ctx: LifecycleContext;
let owner: string;
let nodeId: string;

beforeEach(async () => {
  now = new Date("2026-11-22T10:00:00.000Z");
  events = new RecordingEvents();
  executions = new RecordingExecutions();
  tokens = new RecordingTokens();
  ctx = { repo, clock: () => now, nodesTable, pools, taskTypes: null, executions, events, tokens, usage };
  owner = `lifecycle-${randomBytes(4).toString("hex")}`;
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

/** Submits a batch through app/submit.ts as `owner`; returns the id of each ref. */
async function submit(jobs: readonly Record<string, unknown>[]): Promise<(ref: string) => string> {
  const result = await submitJobs(ctx, {
    principal: { id: owner, admin: false },
    jobs: jobs.map((job) => batchJobSchema.parse({ type: "work", pool: POOL, ...job })),
  });
  return (ref) => {
    const id = result.refs[ref];
    if (!id) throw new Error(`no job for ref ${ref}`);
    return id;
  };
}

async function job(id: string): Promise<JobItem> {
  const item = (await repo.getJobItems([id])).get(id);
  if (!item) throw new Error(`job ${id} not found`);
  return item;
}

async function used(): Promise<NodeCapacity> {
  const out = await db.send(
    new GetCommand({ TableName: nodesTable, Key: { pool: POOL, sk: nodeSk(nodeId) } }),
  );
  return out.Item?.used as NodeCapacity;
}

/** This test's node, as a worker registered it. */
const workerNode = () => ({ pool: POOL, nodeId, workerId: `worker-${nodeId}`, capacity: NODE_CAPACITY });

/** The scheduler's admission write: queued → dispatched, reservation, attempts + 1. */
function admit(id: string): Promise<number> {
  return admitOnNode(ctx, id, workerNode());
}

/** Admission and the worker's start (app/attempts.ts): the job running its next attempt. */
function startRunning(id: string): Promise<number> {
  return runOnNode(ctx, id, workerNode());
}

async function attemptItem(id: string, attempt: number): Promise<Record<string, unknown> | undefined> {
  return repo.getItem({ pk: jobPk(id), sk: attemptSk(attempt) });
}

/**
 * A document client whose first UpdateItem (of partition `pk`, when given) fails with `error`:
 * before it is sent (nothing written, as a throttled request), or after (written, its answer
 * lost). How many such UpdateItems it sent, the SDK's retries included, is in `tries`.
 */
function failingFirstUpdate(
  when: "before" | "after",
  error: Error,
  pk?: string,
): { client: ReturnType<typeof createDocumentClient>; tries: () => number } {
  const client = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
  let tries = 0;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const key = (args.input as { Key?: Record<string, { S?: string }> }).Key;
      if (context.commandName !== "UpdateItemCommand" || (pk !== undefined && key?.pk?.S !== pk)) {
        return next(args);
      }
      tries++;
      if (tries === 1 && when === "before") throw error;
      const result = await next(args);
      if (tries === 1) throw error;
      return result;
    },
    { step: "deserialize", name: "failFirstUpdate" },
  );
  clients.push(client);
  return { client, tries: () => tries };
}

/** The clients failingFirstUpdate made, closed with the file's own. */
const clients: ReturnType<typeof createDocumentClient>[] = [];
afterAll(() => {
  for (const client of clients) client.destroy();
});

/**
 * The worker's end of a successful attempt: `result` stored as JSON text, as the worker does.
 * `nodes` stands where the worker's own node book does (it reads the node's repair count).
 */
function complete(
  jobId: string,
  attempt: number,
  result: unknown = { ok: attempt },
  nodes: CompletionContext["nodes"] = new NodeRepository(db, nodesTable),
) {
  return completeRun({ ...ctx, nodes }, { jobId, attempt, resultJson: JSON.stringify(result) });
}

async function transitionCount(id: string): Promise<number> {
  return (await repo.queryJobPartition(id, TRANSITION_PREFIX, { limit: 100 })).count;
}

/** GET /jobs/{id}/transitions as the owner, read one row a page, following the cursor to the end. */
async function transitionsOneByOne(id: string): Promise<Transition[]> {
  const rows: Transition[] = [];
  let cursor: string | undefined;
  do {
    const page = await listTransitions(ctx, { id: owner, admin: false }, id, { limit: 1, cursor });
    rows.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return rows;
}

const boom = { Error: "ValueError", Cause: "boom" };

describe("completeRun (the worker's completion)", () => {
  it("job completed, attempt succeeded, result stored, capacity released", async () => {
    const id = (await submit([{ ref: "a", resources: { cpu: 1, memoryMb: 1024 } }]))("a");
    const attempt = await startRunning(id);
    expect(await used()).toEqual({ cpu: 1, memoryMb: 1024, gpu: 0 });
    const before = await job(id);
    advance(12);

    const done = await complete(id, attempt, { answer: 42, numbers: [1, 2.5] });

    expect(done).toEqual({ outcome: "completed" });
    const after = await job(id);
    expect(after).toMatchObject({
      status: "completed",
      statusReason: `completed on attempt ${attempt}`,
      finishedAt: now.toISOString(),
      version: before.version + 1,
    });
    expect(after.reservation).toBeUndefined();
    expect(await used()).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(await attemptItem(id, attempt)).toMatchObject({
      status: "succeeded",
      durationMs: 12_000,
      finishedAt: now.toISOString(),
      error: null,
    });
    expect(await repo.getItem({ pk: jobPk(id), sk: RESULT_SK })).toMatchObject({
      entity: "result",
      resultJson: JSON.stringify({ answer: 42, numbers: [1, 2.5] }),
      attempt,
      bytes: Buffer.byteLength(JSON.stringify({ answer: 42, numbers: [1, 2.5] })),
      writtenAt: now.toISOString(),
      expiresAt: expect.any(Number),
    });
    expect((await repo.getJob(id))?.result).toEqual({ answer: 42, numbers: [1, 2.5] });
    expect(events.of(id)).toEqual([
      "null→queued",
      // The test's admission write publishes nothing (the scheduler does); the start does.
      "dispatched→running",
      "running→completed",
    ]);
    // The worker ends the attempt itself: no execution is started, no token answered.
    expect(executions.started).toEqual([]);
    expect(tokens.sent).toEqual([]);
  });

  it("gives capacity back once when the reconciler repairs the node between the count's read and the release", async () => {
    // Prepare: a proof that lands right after the completion read the node's repair count, and
    // counts the job out (as one that finds it gone from `active` would): used goes to 0.
    const id = (await submit([{ ref: "a", resources: { cpu: 1, memoryMb: 1024 } }]))("a");
    const attempt = await startRunning(id);
    const book = new NodeRepository(db, nodesTable);
    const repairing: CompletionContext["nodes"] = {
      releaseOnce: (reservation, seen) => book.releaseOnce(reservation, seen),
      repairsOf: async (pool, node) => {
        const count = await book.repairsOf(pool, node);
        const zero = { cpu: 0, memoryMb: 0, gpu: 0 };
        expect(await book.repairUsed(pool, node, await used(), zero)).toBe(true);
        return count;
      },
    };

    // Act
    const done = await complete(id, attempt, "ok", repairing);

    // Assess: completed, and the repair's figure stands: the release did not take it below zero.
    expect(done).toEqual({ outcome: "completed" });
    expect((await job(id)).status).toBe("completed");
    expect(await used()).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(await attemptItem(id, attempt)).toMatchObject({ status: "succeeded" });
  });

  it("releases after a repair that came before the count was read (the repair counted the job in)", async () => {
    // Prepare: a proof repairs the node while the job runs, counting its reservation.
    const id = (await submit([{ ref: "a", resources: { cpu: 1, memoryMb: 1024 } }]))("a");
    const attempt = await startRunning(id);
    const book = new NodeRepository(db, nodesTable);
    expect(await book.repairUsed(POOL, nodeId, await used(), { cpu: 1, memoryMb: 1024, gpu: 0 })).toBe(true);
    expect(await book.repairsOf(POOL, nodeId)).toBe(1);

    // Act
    await complete(id, attempt);

    // Assess
    expect(await used()).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
  });

  it("leaves the attempt record as the start stored it when told so; reads show the attempt succeeded", async () => {
    // Prepare
    const id = (await submit([{ ref: "a" }]))("a");
    const attempt = await startRunning(id);
    const started = await attemptItem(id, attempt);
    advance(4);

    // Act
    const done = await completeRun(
      { ...ctx, nodes: new NodeRepository(db, nodesTable) },
      { jobId: id, attempt, resultJson: "1", attemptRecorded: true },
    );

    // Assess: the record as the start wrote it, the job completed, the attempt read as succeeded
    expect(done).toEqual({ outcome: "completed" });
    expect(await attemptItem(id, attempt)).toEqual(started);
    const page = await listAttempts(ctx, { id: owner, admin: false }, id, { limit: 10 });
    expect(page.items).toEqual([
      expect.objectContaining({
        attempt,
        status: "succeeded",
        finishedAt: now.toISOString(),
        durationMs: 4000,
        error: null,
      }),
    ]);
  });

  it("shows the attempt a completion ended as succeeded when the worker died before ending its record", async () => {
    // Prepare: completed, then the attempt record as a worker killed right after the job's write
    // leaves it (the end it writes next never came).
    const id = (await submit([{ ref: "a" }]))("a");
    const attempt = await startRunning(id);
    const started = await attemptItem(id, attempt);
    advance(3);
    await complete(id, attempt);
    await db.send(new PutCommand({ TableName: repo.tableName, Item: { ...started } }));

    // Act
    const page = await listAttempts(ctx, { id: owner, admin: false }, id, { limit: 10 });

    // Assess
    expect(page.items).toEqual([
      expect.objectContaining({ attempt, status: "succeeded", durationMs: 3000, error: null }),
    ]);
  });

  it("writes no completed record: /transitions and /logs end with the row derived from the completed job", async () => {
    // Prepare
    const id = (await submit([{ ref: "a" }]))("a");
    const attempt = await startRunning(id);
    advance(3);
    await complete(id, attempt);
    const done = await job(id);
    const key = { pk: done.pk, sk: transitionSk(done.version) };
    const me = { id: owner, admin: false };

    // Act
    const rows = await listTransitions(ctx, me, id, { limit: 10 });
    const lines = await listLogs(ctx, me, id, { limit: 50 });
    const filtered = await listLogs(ctx, me, id, { limit: 50, attempt, level: "info" });
    // Paged one at a time, the derived row comes last, once.
    const paged = await transitionsOneByOne(id);

    // Assess: nothing stored, and the row a record would hold
    expect((await db.send(new GetCommand({ TableName: repo.tableName, Key: key }))).Item).toBeUndefined();
    expect(rows.items.map((t) => t.to)).toEqual(["queued", "dispatched", "running", "completed"]);
    expect(rows.items.at(-1)).toEqual({
      from: "running",
      to: "completed",
      at: done.updatedAt,
      reason: `completed on attempt ${attempt}`,
      triggeredBy: null,
      fromPriority: null,
      toPriority: null,
    });
    expect(rows.nextCursor).toBeNull();
    expect(paged).toEqual(rows.items);
    expect(lines.items.at(-1)).toEqual({
      timestamp: done.updatedAt,
      level: "info",
      message: `running → completed: completed on attempt ${attempt}`,
      attempt,
    });
    expect(lines.nextCursor).toBeNull();
    expect(filtered.items.at(-1)).toEqual(lines.items.at(-1));
  });

  it("writes no creation record for a job born queued: /transitions and /logs start with the row derived from the job", async () => {
    // Prepare
    const id = (await submit([{ ref: "a" }]))("a");
    const created = await job(id);
    await startRunning(id);
    const me = { id: owner, admin: false };

    // Act
    const rows = await listTransitions(ctx, me, id, { limit: 10 });
    const lines = await listLogs(ctx, me, id, { limit: 50 });
    const infoLines = await listLogs(ctx, me, id, { limit: 50, level: "info" });
    const ofAttempt = await listLogs(ctx, me, id, { limit: 50, attempt: 1 });
    const paged = await transitionsOneByOne(id);

    // Assess: nothing stored, and the row a record would hold, once, first
    const key = { pk: created.pk, sk: transitionSk(1) };
    expect((await db.send(new GetCommand({ TableName: repo.tableName, Key: key }))).Item).toBeUndefined();
    expect(rows.items[0]).toEqual({
      from: null,
      to: "queued",
      at: created.createdAt,
      reason: "waiting for admission",
      triggeredBy: owner,
      fromPriority: null,
      toPriority: null,
    });
    expect(rows.items.map((t) => t.to)).toEqual(["queued", "dispatched", "running"]);
    expect(paged).toEqual(rows.items);
    const first = {
      timestamp: created.createdAt,
      level: "info",
      message: "submitted → queued: waiting for admission",
      attempt: null,
    };
    expect(lines.items[0]).toEqual(first);
    expect(lines.items.filter((l) => l.message.startsWith("submitted"))).toHaveLength(1);
    expect(infoLines.items[0]).toEqual(first);
    expect(ofAttempt.items.some((l) => l.message.startsWith("submitted"))).toBe(false);
  });

  it("keeps the creation record of a job born otherwise, and derives none once the history may have expired", async () => {
    // Prepare: one job born scheduled, one born queued
    const scheduled = (await submit([{ ref: "s", runAt: "2099-01-01T00:00:00.000Z" }]))("s");
    const queued = (await submit([{ ref: "q" }]))("q");
    const me = { id: owner, admin: false };

    // Act
    const scheduledRows = await listTransitions(ctx, me, scheduled, { limit: 10 });
    const fresh = await listTransitions(ctx, me, queued, { limit: 10 });
    advance(91 * 86_400);
    const old = await listTransitions(ctx, me, queued, { limit: 10 });

    // Assess
    const stored = await db.send(
      new GetCommand({ TableName: repo.tableName, Key: { pk: jobPk(scheduled), sk: transitionSk(1) } }),
    );
    expect(stored.Item).toMatchObject({ from: null, to: "scheduled" });
    expect(scheduledRows.items.map((t) => [t.from, t.to])).toEqual([[null, "scheduled"]]);
    expect(fresh.items.map((t) => [t.from, t.to])).toEqual([[null, "queued"]]);
    expect(old.items).toEqual([]);
  });

  it("shows a stored completed record as stored, with no derived row beside it", async () => {
    // Prepare: a completion recorded as the previous lifecycle's Complete step records it
    const id = (await submit([{ ref: "a" }]))("a");
    const attempt = await startRunning(id);
    await complete(id, attempt);
    const done = await job(id);
    const record = transitionItem(
      id,
      done.version,
      {
        from: "running",
        to: "completed",
        at: done.updatedAt,
        reason: "recorded",
        triggeredBy: null,
        attempt,
      },
      0,
    );
    await db.send(new PutCommand({ TableName: repo.tableName, Item: record }));

    // Act
    const page = await listTransitions(ctx, { id: owner, admin: false }, id, { limit: 10 });

    // Assess
    expect(page.items.map((t) => [t.to, t.reason])).toEqual([
      ["queued", expect.any(String)],
      ["dispatched", expect.any(String)],
      ["running", expect.any(String)],
      ["completed", "recorded"],
    ]);
  });

  it("completes a job whose node is gone, releasing nothing", async () => {
    const id = (await submit([{ ref: "a" }]))("a");
    const attempt = await startRunning(id);
    const book = new NodeRepository(db, nodesTable);
    const gone: CompletionContext["nodes"] = {
      repairsOf: async () => null,
      releaseOnce: (reservation, seen) => book.releaseOnce(reservation, seen),
    };
    const before = await used();

    const done = await complete(id, attempt, "ok", gone);

    expect(done).toEqual({ outcome: "completed" });
    expect((await job(id)).status).toBe("completed");
    expect(await used()).toEqual(before);
  });

  describe("NodeRepository#releaseOnce (the completion's release)", () => {
    const reservation = (cpu: number) => ({ pool: POOL, nodeId, cpu, memoryMb: 0, gpu: 0 });
    /** The node's books at 2 CPUs, as a repair sets them (its count then 1). */
    const bookTwoCpus = async () =>
      new NodeRepository(db, nodesTable).repairUsed(POOL, nodeId, await used(), {
        cpu: 2,
        memoryMb: 0,
        gpu: 0,
      });

    it("releases, and refuses once the node was repaired since the count was read", async () => {
      const book = new NodeRepository(db, nodesTable);
      await bookTwoCpus();

      expect(await book.releaseOnce(reservation(1), 1)).toBe("released");
      expect(await book.releaseOnce(reservation(1), 0)).toBe("refused");
      expect(await used()).toEqual({ cpu: 1, memoryMb: 0, gpu: 0 });
    });

    it("sends a throttled release again: DynamoDB wrote nothing", async () => {
      const throttled = Object.assign(new Error("slow down"), {
        name: "ProvisionedThroughputExceededException",
        $retryable: { throttling: true },
      });
      const { client, tries } = failingFirstUpdate("before", throttled);
      const book = new NodeRepository(client, nodesTable);
      await bookTwoCpus();

      expect(await book.releaseOnce(reservation(1), 1)).toBe("released");
      expect(tries()).toBe(2);
      expect(await used()).toEqual({ cpu: 1, memoryMb: 0, gpu: 0 });
    });

    it("does not send a release again after its answer was lost: it may have landed", async () => {
      const lost = Object.assign(new Error("socket hang up"), { name: "TimeoutError", $retryable: {} });
      const { client, tries } = failingFirstUpdate("after", lost);
      const book = new NodeRepository(client, nodesTable);
      await bookTwoCpus();

      expect(await book.releaseOnce(reservation(1), 1)).toBe("unknown");
      expect(tries()).toBe(1);
      expect(await used()).toEqual({ cpu: 1, memoryMb: 0, gpu: 0 });
    });
  });

  it("abandons a replay without writing: no second transition, release or result", async () => {
    const id = (await submit([{ ref: "a" }]))("a");
    const attempt = await startRunning(id);
    await complete(id, attempt, "first");
    const afterFirst = { job: await job(id), used: await used(), transitions: await transitionCount(id) };
    const result = await repo.getItem({ pk: jobPk(id), sk: RESULT_SK });
    events.changes = [];
    advance(5);

    const replay = await complete(id, attempt, "second");

    expect(replay).toMatchObject({ outcome: "abandoned", reason: expect.stringContaining("completed") });
    expect(await job(id)).toEqual(afterFirst.job);
    expect(await used()).toEqual(afterFirst.used);
    expect(await transitionCount(id)).toBe(afterFirst.transitions);
    expect(await repo.getItem({ pk: jobPk(id), sk: RESULT_SK })).toEqual(result);
    expect(events.changes).toEqual([]);
  });

  it("abandons a late attempt (the job ended, or runs a later attempt, or is gone): nothing written, no result", async () => {
    const retry = { maxAttempts: 3, initialDelaySeconds: 1 };
    const ids = await submit([
      { ref: "late", retry },
      { ref: "gone", retry: { maxAttempts: 1 } },
    ]);
    const [late, gone] = [ids("late"), ids("gone")];
    // `late`: attempt 1 lost while it still ran, attempt 2 running now.
    const first = await startRunning(late);
    await recordAttemptFailure(ctx, { jobId: late, attempt: first, outcome: "lost", error: {} });
    advance(1);
    await requeueJob(ctx, { jobId: late });
    const second = await startRunning(late);
    // `gone`: its only attempt reported failed (the worker's result came too late).
    const goneAttempt = await startRunning(gone);
    await recordAttemptFailure(ctx, { jobId: gone, attempt: goneAttempt, outcome: "failed", error: boom });
    expect((await job(gone)).status).toBe("failed");
    const before = { late: await job(late), gone: await job(gone), used: await used() };
    events.changes = [];

    const fromFirst = await complete(late, first, "stale");
    const fromGone = await complete(gone, goneAttempt, "too late");
    const missing = await complete(`job_${randomBytes(6).toString("hex")}`, 1, "nobody");

    expect(fromFirst).toEqual({
      outcome: "abandoned",
      reason: `job ${late} is running at attempt ${second}, not running attempt ${first}`,
    });
    expect(fromGone).toMatchObject({ outcome: "abandoned" });
    expect(missing).toMatchObject({
      outcome: "abandoned",
      reason: expect.stringContaining("does not exist"),
    });
    expect(await job(late)).toEqual(before.late);
    expect(await job(gone)).toEqual(before.gone);
    expect(await used()).toEqual(before.used);
    expect(await repo.getItem({ pk: jobPk(late), sk: RESULT_SK })).toBeUndefined();
    expect(await repo.getItem({ pk: jobPk(gone), sk: RESULT_SK })).toBeUndefined();
    expect(await attemptItem(late, second)).toMatchObject({ status: "running" });
    expect(events.changes).toEqual([]);
  });

  it("writes no run time of its own (the /stats stream consumer adds it) and no GPU usage for a CPU job", async () => {
    const type = `train-${randomBytes(4).toString("hex")}`;
    const id = (await submit([{ ref: "a", type }]))("a");
    const attempt = await startRunning(id);
    advance(42);

    await complete(id, attempt);
    await complete(id, attempt);

    expect(await usage.readRunTimes([type], now)).toEqual(new Map());
    expect(await usage.readGpuUsage([owner], now)).toEqual(
      new Map([[owner, { todayGpuSeconds: 0, weekGpuSeconds: 0 }]]),
    );
  });

  it("releases no dependent itself: the Jobs table's stream does, through releaseDependents", async () => {
    const id = await submit([{ ref: "b" }, { ref: "d", dependsOn: ["b"] }]);
    const [b, d] = [id("b"), id("d")];
    const dBefore = await job(d);

    await complete(b, await startRunning(b));

    expect(await job(d)).toEqual(dBefore);
    expect(await repo.getItem({ pk: jobPk(d), sk: dependsOnSk(b) })).toMatchObject({ met: false });
  });
});

describe("the worker's start: one UpdateItem, then its records", () => {
  it("leaves the job running with its transition and attempt record, none written in a transaction", async () => {
    // Prepare
    const id = (await submit([{ ref: "a" }]))("a");

    // Act
    const attempt = await startRunning(id);

    // Assess
    const started = await job(id);
    expect(started).toMatchObject({ status: "running", attemptWorkerId: `worker-${nodeId}` });
    expect(await attemptItem(id, attempt)).toMatchObject({
      status: "running",
      workerId: `worker-${nodeId}`,
      nodeId,
      pool: POOL,
      startedAt: started.attemptStartedAt,
    });
    const transitions = (await repo.queryJobPartition(id, TRANSITION_PREFIX, { limit: 100 })).items;
    expect(transitions.map((t) => [t.from, t.to])).toContainEqual(["dispatched", "running"]);
  });

  it("moves no byOwnerStatus key: dispatched and running share a partition, and lists tell them apart", async () => {
    // Prepare: `a` dispatched, `b` running, `c` dispatched as written before the two shared one
    // partition (its entry under `#dispatched`).
    const ids = await submit([{ ref: "a" }, { ref: "b" }, { ref: "c" }]);
    const [a, b, c] = [ids("a"), ids("b"), ids("c")];
    await admit(a);
    await admit(c);
    await db.send(
      new UpdateCommand({
        TableName: repo.tableName,
        Key: { pk: jobPk(c), sk: "JOB" },
        UpdateExpression: "SET ownerStatusPk = :legacy",
        ExpressionAttributeValues: { ":legacy": `O#${owner}#dispatched` },
      }),
    );

    // Act
    await startRunning(b);

    // Assess: the started job's entry is where a dispatched one's is.
    expect((await job(b)).ownerStatusPk).toBe(`O#${owner}#running`);
    expect((await job(a)).ownerStatusPk).toBe(`O#${owner}#running`);
    // One batch's ids share a millisecond, so their order is the ULIDs' random part: compared as sets.
    const listed = async (status: string) =>
      (await listJobs(ctx, { id: owner, admin: false }, listJobsQuerySchema.parse({ status }))).items
        .map((j) => j.id)
        .sort();
    expect(await listed("dispatched")).toEqual([a, c].sort());
    expect(await listed("running")).toEqual([b]);
    expect(await listed("dispatched,running")).toEqual([a, b, c].sort());
  });

  it("tells the worker whether it stored the attempt record, so its completion ends the record only when it did not", async () => {
    // Prepare: one start as usual, one whose attempt record's put fails (throttled past the SDK's retries).
    const ids = await submit([{ ref: "a" }, { ref: "b" }]);
    const [a, b] = [ids("a"), ids("b")];
    const attemptA = await admitOnNode(ctx, a, workerNode());
    const attemptB = await admitOnNode(ctx, b, workerNode());
    const failing = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
    clients.push(failing);
    failing.middlewareStack.add(
      (next, context) => async (args) => {
        const sk = (args.input as { Item?: Record<string, { S?: string }> }).Item?.sk?.S;
        if (context.commandName === "PutItemCommand" && sk === attemptSk(attemptB)) {
          throw new Error("ProvisionedThroughputExceededException");
        }
        return next(args);
      },
      { step: "deserialize", name: "failAttemptPut" },
    );

    // Act
    const startedA = await startAttempt(ctx, { jobId: a, attempt: attemptA, node: workerNode() });
    const startedB = await startAttempt(
      { ...ctx, repo: new JobRepository(failing, repo.tableName) },
      { jobId: b, attempt: attemptB, node: workerNode() },
    );

    // Assess
    expect(startedA).toMatchObject({ outcome: "started", attemptRecorded: true });
    expect(startedB).toMatchObject({ outcome: "started", attemptRecorded: false });
    expect(await attemptItem(b, attemptB)).toBeUndefined();
    // As the worker passes it on: B's completion writes the whole record, A's leaves it running.
    const nodes = new NodeRepository(db, nodesTable);
    for (const [id, attempt, started] of [
      [a, attemptA, startedA],
      [b, attemptB, startedB],
    ] as const) {
      const attemptRecorded = started.outcome === "started" && started.attemptRecorded;
      await completeRun({ ...ctx, nodes }, { jobId: id, attempt, resultJson: "1", attemptRecorded });
    }
    expect(await attemptItem(a, attemptA)).toMatchObject({ status: "running" });
    expect(await attemptItem(b, attemptB)).toMatchObject({ status: "succeeded", nodeId });
  });

  it("ends an attempt whose record the start never put (its worker died between the two writes) with the whole record", async () => {
    // Prepare: the start's UpdateItem landed, its attempt record did not.
    const id = (await submit([{ ref: "a" }]))("a");
    const attempt = await startRunning(id);
    const started = await job(id);
    await db.send(
      new DeleteCommand({ TableName: repo.tableName, Key: { pk: jobPk(id), sk: attemptSk(attempt) } }),
    );
    advance(7);

    // Act
    const done = await complete(id, attempt);

    // Assess
    expect(done.outcome).toBe("completed");
    expect(await attemptItem(id, attempt)).toMatchObject({
      entity: "attempt",
      attempt,
      status: "succeeded",
      startedAt: started.attemptStartedAt,
      durationMs: 7000,
      workerId: `worker-${nodeId}`,
      nodeId,
      pool: POOL,
    });
  });

  it("keeps an ended attempt's record when the start's late put of it arrives after the end", async () => {
    // Prepare: the attempt ended (completed) before the start's own put reached DynamoDB.
    const id = (await submit([{ ref: "a" }]))("a");
    const attempt = await startRunning(id);
    const startRecord = await attemptItem(id, attempt);
    await complete(id, attempt);

    // Act: the start's put, late, as JobRepository#changeAlone sends it (only where absent).
    await repo.putRecords([
      {
        Put: {
          TableName: repo.tableName,
          Item: { ...startRecord },
          ConditionExpression: "attribute_not_exists(pk)",
        },
      },
    ]);

    // Assess
    expect(await attemptItem(id, attempt)).toMatchObject({ status: "succeeded" });
  });
});

describe("releaseDependents (after a completion, from the Jobs table's stream)", () => {
  it("marks each edge met and queues a dependent with nothing left to wait on (diamond)", async () => {
    const id = await submit([
      { ref: "b", resources: { cpu: 1, memoryMb: 1024 } },
      { ref: "c", resources: { cpu: 2, memoryMb: 512 } },
      { ref: "d", dependsOn: ["b", "c"] },
    ]);
    const [b, c, d] = [id("b"), id("c"), id("d")];
    const attemptB = await startRunning(b);
    const attemptC = await startRunning(c);
    expect(await used()).toEqual({ cpu: 3, memoryMb: 1536, gpu: 0 });
    advance(12);

    await complete(b, attemptB);
    const first = await releaseDependents(ctx, b);

    expect(first).toBe(0);
    expect(await used()).toEqual({ cpu: 2, memoryMb: 512, gpu: 0 });
    expect(await job(d)).toMatchObject({
      status: "blocked",
      statusReason: "waiting for 1 of 2 dependencies",
      unmet: 1,
    });
    expect(await repo.getItem({ pk: jobPk(d), sk: dependsOnSk(b) })).toMatchObject({ met: true });

    await complete(c, attemptC);
    const second = await releaseDependents(ctx, c);

    expect(second).toBe(1);
    expect(await used()).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(await job(d)).toMatchObject({
      status: "queued",
      statusReason: "waiting for admission",
      unmet: 0,
      queuedAt: now.toISOString(),
    });
    expect(events.of(b)).toContain("running→completed");
    expect(events.of(d)).toEqual(["null→blocked", "blocked→queued"]);
    // A queued dependent waits for admission without an execution: the scheduler starts one then.
    expect(executions.started).toEqual([]);
  });

  it("marks a job nothing waits on (noDependents) so its completion asks no one; a dependent submitted later unmarks it", async () => {
    // Prepare: a batch where d waits on b, and a job a alone.
    const id = await submit([{ ref: "a" }, { ref: "b" }, { ref: "d", dependsOn: ["b"] }]);
    const [a, b, d] = [id("a"), id("b"), id("d")];
    expect((await job(a)).noDependents).toBe(true);
    expect((await job(b)).noDependents).toBeUndefined();
    expect((await job(d)).noDependents).toBe(true);
    const attemptA = await startRunning(a);
    const aBefore = await job(a);

    // Act: a job submitted while a runs waits on it.
    const later = (await submit([{ ref: "e", dependsOn: [a] }]))("e");

    // Assess: the mark went in the submission's write, and nothing else of a's changed.
    const aAfter = await job(a);
    expect(aAfter.noDependents).toBeUndefined();
    const { noDependents: _mark, ...rest } = aBefore;
    expect(aAfter).toEqual(rest);
    await complete(a, attemptA);
    expect((await job(a)).noDependents).toBeUndefined();
    expect(await releaseDependents(ctx, a)).toBe(1);
    expect(await job(later)).toMatchObject({ status: "queued", unmet: 0 });
  });

  it("marks no array child: its parent waits on each without an edge", async () => {
    const result = await submitJobs(ctx, {
      principal: { id: owner, admin: false },
      jobs: [batchJobSchema.parse({ type: "work", pool: POOL })],
      array: { size: 2 },
    });
    const parent = result.jobs[0]?.id ?? "";
    const children = await repo.getJobItems([`${parent}-0`, `${parent}-1`]);

    expect([...children.values()].map((c) => [c.arrayParentId, c.noDependents])).toEqual([
      [parent, undefined],
      [parent, undefined],
    ]);
  });

  it("keeps a completed job's mark when a dependent is submitted after it: the edge is born met", async () => {
    const a = (await submit([{ ref: "a" }]))("a");
    await complete(a, await startRunning(a));

    const later = (await submit([{ ref: "e", dependsOn: [a] }]))("e");

    expect((await job(a)).noDependents).toBe(true);
    expect(await job(later)).toMatchObject({ status: "queued", unmet: 0 });
    expect(await repo.getItem({ pk: jobPk(later), sk: dependsOnSk(a) })).toMatchObject({ met: true });
  });

  it("changes nothing when the stream delivers the completion again: no double decrement", async () => {
    const id = await submit([{ ref: "b" }, { ref: "c" }, { ref: "d", dependsOn: ["b", "c"] }]);
    const [b, d] = [id("b"), id("d")];
    await complete(b, await startRunning(b));
    await releaseDependents(ctx, b);
    const dAfterFirst = await job(d);
    events.changes = [];

    const again = await releaseDependents(ctx, b);

    expect(again).toBe(0);
    expect(await job(d)).toEqual(dAfterFirst);
    expect(dAfterFirst).toMatchObject({ status: "blocked", unmet: 1 });
    expect(events.changes).toEqual([]);
  });
});

describe("complete (the previous lifecycle's step, for its executions still running)", () => {
  it("completes a running job, ends the attempt, releases capacity and its dependents", async () => {
    const id = await submit([
      { ref: "b", resources: { cpu: 1, memoryMb: 1024 } },
      { ref: "d", dependsOn: ["b"] },
    ]);
    const [b, d] = [id("b"), id("d")];
    const attempt = await startRunning(b);
    advance(7);

    const answer = await runLifecycleStep(
      ctx,
      lifecycleRequestSchema.parse({ action: "complete", jobId: b, attempt }),
    );

    expect(answer).toEqual({ status: "completed", released: 1 });
    expect(await job(b)).toMatchObject({ status: "completed", finishedAt: now.toISOString() });
    expect((await job(b)).reservation).toBeUndefined();
    expect(await attemptItem(b, attempt)).toMatchObject({ status: "succeeded", durationMs: 7000 });
    expect(await used()).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(await job(d)).toMatchObject({ status: "queued", unmet: 0 });
  });

  it("on a job the worker already completed: releases its dependents, and is idempotent", async () => {
    const id = await submit([
      { ref: "b" },
      { ref: "c" },
      { ref: "d", dependsOn: ["b"] },
      { ref: "e", dependsOn: ["b", "c"] },
    ]);
    const [b, d, e] = [id("b"), id("d"), id("e")];
    const attempt = await startRunning(b);
    await complete(b, attempt);
    const afterRun = { b: await job(b), used: await used(), transitions: await transitionCount(b) };

    const first = await completeAttempt(ctx, { jobId: b, attempt });
    const afterFirst = { d: await job(d), e: await job(e) };
    const replay = await completeAttempt(ctx, { jobId: b, attempt });

    expect(first).toEqual({ status: "completed", released: 1 });
    expect(replay).toEqual({ status: "completed", released: 0 });
    expect(afterFirst.d).toMatchObject({ status: "queued", unmet: 0 });
    expect(afterFirst.e).toMatchObject({ status: "blocked", unmet: 1 });
    expect(await job(d)).toEqual(afterFirst.d);
    expect(await job(e)).toEqual(afterFirst.e);
    // The job itself is left as the worker's completion wrote it.
    expect(await job(b)).toEqual(afterRun.b);
    expect(await used()).toEqual(afterRun.used);
    expect(await transitionCount(b)).toBe(afterRun.transitions);
  });

  it("is a no-op when replayed on a job it completed: no second release, no double decrement", async () => {
    const id = await submit([{ ref: "b" }, { ref: "c" }, { ref: "d", dependsOn: ["b", "c"] }]);
    const [b, d] = [id("b"), id("d")];
    const attempt = await startRunning(b);
    await completeAttempt(ctx, { jobId: b, attempt });
    const afterFirst = { b: await job(b), d: await job(d), used: await used() };
    const transitions = await transitionCount(b);
    events.changes = [];

    const replay = await completeAttempt(ctx, { jobId: b, attempt });

    expect(replay).toEqual({ status: "completed", released: 0 });
    expect(await job(b)).toEqual(afterFirst.b);
    expect(await job(d)).toMatchObject({ status: "blocked", unmet: 1, version: afterFirst.d.version });
    expect(await used()).toEqual(afterFirst.used);
    expect(await transitionCount(b)).toBe(transitions);
    expect(events.changes).toEqual([]);
  });
});

describe("attempt-failed", () => {
  const retry = { maxAttempts: 3, strategy: "exponential", initialDelaySeconds: 2, backoffMultiplier: 3 };

  it("with attempts left: ends the attempt, releases capacity, retrying after the policy's backoff", async () => {
    const id = (await submit([{ ref: "a", retry }]))("a");
    const attempt = await startRunning(id);
    advance(5);

    const decision = await recordAttemptFailure(ctx, { jobId: id, attempt, outcome: "failed", error: boom });

    expect(decision).toEqual({ next: "retry", delaySeconds: 2 });
    expect(await job(id)).toMatchObject({
      status: "retrying",
      statusReason: "attempt 1 failed (ValueError: boom); retrying in 2 s",
      failures: 1,
      nextAttemptAt: new Date(now.getTime() + 2000).toISOString(),
    });
    expect((await job(id)).reservation).toBeUndefined();
    expect(await used()).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(await attemptItem(id, attempt)).toMatchObject({
      status: "failed",
      durationMs: 5000,
      error: { type: "ValueError", message: "boom" },
    });
    expect(events.of(id)).toContain("running→retrying");
  });

  it("returns the same decision when replayed, and changes nothing", async () => {
    const id = (await submit([{ ref: "a", retry }]))("a");
    const attempt = await startRunning(id);
    await recordAttemptFailure(ctx, { jobId: id, attempt, outcome: "failed", error: boom });
    const before = { job: await job(id), used: await used() };

    const replay = await recordAttemptFailure(ctx, { jobId: id, attempt, outcome: "failed", error: boom });

    expect(replay).toEqual({ next: "retry", delaySeconds: 2 });
    expect(await job(id)).toEqual(before.job);
    expect(await used()).toEqual(before.used);
  });

  it("records a dispatched attempt that no worker started: one attempt item per counted attempt", async () => {
    const id = (await submit([{ ref: "a", retry }]))("a");
    const first = await admit(id);
    await recordAttemptFailure(ctx, {
      jobId: id,
      attempt: first,
      outcome: "lost",
      error: { Error: "States.HeartbeatTimeout" },
    });
    advance(2);
    await requeueJob(ctx, { jobId: id });
    const second = await startRunning(id);
    await complete(id, second);

    expect(await job(id)).toMatchObject({ status: "completed", attempts: 2 });
    expect(await attemptItem(id, first)).toMatchObject({ attempt: 1, status: "lost", startedAt: null });
    expect(await attemptItem(id, second)).toMatchObject({ attempt: 2, status: "succeeded" });
  });

  it("backs off by the policy on the next failure, and records a timeout as timed_out", async () => {
    const id = (await submit([{ ref: "a", retry, timeoutSeconds: 30 }]))("a");
    await recordAttemptFailure(ctx, {
      jobId: id,
      attempt: await startRunning(id),
      outcome: "failed",
      error: boom,
    });
    advance(2);
    await requeueJob(ctx, { jobId: id });

    const attempt = await startRunning(id);
    const decision = await recordAttemptFailure(ctx, {
      jobId: id,
      attempt,
      outcome: "timed_out",
      error: { Error: "States.Timeout" },
    });

    expect(attempt).toBe(2);
    expect(decision).toEqual({ next: "retry", delaySeconds: 6 });
    expect(await job(id)).toMatchObject({
      status: "retrying",
      failures: 2,
      statusReason: "attempt 2 timed out after 30 s; retrying in 6 s",
    });
    expect(await attemptItem(id, 2)).toMatchObject({
      status: "timed_out",
      error: { type: "timeout", message: "timed out after 30 s" },
    });
  });

  it("does not count an attempt its worker stopped while shutting down: preempted, retried at once", async () => {
    const id = (await submit([{ ref: "a", retry: { maxAttempts: 1 } }]))("a");
    const attempt = await startRunning(id);
    advance(3);

    const decision = await recordAttemptFailure(ctx, {
      jobId: id,
      attempt,
      outcome: "failed",
      error: { Error: "worker_shutdown", Cause: "worker shutting down" },
    });

    // maxAttempts 1 and yet a retry: the shutdown was the platform's doing, not the job's.
    expect(decision).toEqual({ next: "retry", delaySeconds: 0 });
    const after = await job(id);
    expect(after).toMatchObject({ status: "retrying", nextAttemptAt: now.toISOString() });
    expect(after.failures ?? 0).toBe(0);
    expect(await used()).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(await attemptItem(id, attempt)).toMatchObject({
      status: "preempted",
      durationMs: 3000,
      error: { type: "worker_shutdown", message: "worker shutting down" },
    });
  });

  it("with no attempts left: failed, and dependents cascade-cancelled naming the job", async () => {
    const id = await submit([
      { ref: "a", retry: { maxAttempts: 1 } },
      { ref: "b", dependsOn: ["a"] },
      { ref: "c", dependsOn: ["b"] },
    ]);
    const [a, b, c] = [id("a"), id("b"), id("c")];
    const attempt = await startRunning(a);

    const decision = await recordAttemptFailure(ctx, { jobId: a, attempt, outcome: "failed", error: boom });

    expect(decision).toEqual({ next: "end", delaySeconds: 0 });
    expect(await job(a)).toMatchObject({
      status: "failed",
      statusReason: "attempt 1 failed (ValueError: boom); no attempts left",
      error: { type: "ValueError", message: "boom" },
      finishedAt: now.toISOString(),
    });
    expect(await used()).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(await job(b)).toMatchObject({ status: "cancelled", statusReason: `dependency ${a} failed` });
    expect(await job(c)).toMatchObject({
      status: "cancelled",
      statusReason: `dependency ${b} was cancelled`,
    });
  });

  it("with no attempts left and escalateTo: escalated, the new job created and the dependent rewired", async () => {
    const id = await submit([
      {
        ref: "a",
        type: "small-model",
        payload: { dataset: "s3://bucket/key", epochs: 3 },
        priority: "low",
        resources: { cpu: 2, memoryMb: 2048 },
        constraints: { zone: "a" },
        retry: { maxAttempts: 1, initialDelaySeconds: 5 },
        timeoutSeconds: 120,
        onFailure: { escalateTo: { type: "big-model", priority: "high" } },
      },
      { ref: "b", dependsOn: ["a"] },
    ]);
    const [a, b] = [id("a"), id("b")];
    // Lost while dispatched: no worker ever started it.
    const attempt = await admit(a);
    // What a reader sees at the moment the job becomes escalated, before the follow-ups run.
    let seenAtEscalation: JobItem | undefined;
    const publish = events.publish.bind(events);
    events.publish = async (changes) => {
      if (changes.some((c) => c.jobId === a && c.status === "escalated")) seenAtEscalation = await job(a);
      await publish(changes);
    };

    const decision = await recordAttemptFailure(ctx, {
      jobId: a,
      attempt,
      outcome: "lost",
      error: { Error: "States.HeartbeatTimeout" },
    });

    expect(decision).toEqual({ next: "end", delaySeconds: 0 });
    const escalated = await job(a);
    const newId = String(escalated.escalatedTo);
    expect(escalated).toMatchObject({
      status: "escalated",
      error: { type: "lost" },
      statusReason: expect.stringMatching(new RegExp(`^attempt 1 was lost \\(.+\\); escalated to ${newId}$`)),
    });
    // Written with the status in one transaction: a client never finds escalatedTo missing.
    expect(seenAtEscalation).toMatchObject({ status: "escalated", escalatedTo: newId });
    // The attempt counted, so it has its record, though it never started.
    expect(await attemptItem(a, attempt)).toMatchObject({
      status: "lost",
      startedAt: null,
      workerId: null,
      nodeId,
      pool: POOL,
      error: { type: "lost" },
    });
    expect(await used()).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    const replacement = await job(newId);
    expect(replacement).toMatchObject({
      type: "big-model",
      priority: 5,
      owner,
      status: "queued",
      resources: escalated.resources,
      pool: POOL,
      retry: escalated.retry,
      timeoutSeconds: 120,
    });
    expect(replacement.payloadJson).toBe(escalated.payloadJson);
    expect(replacement.constraintsJson).toBe(escalated.constraintsJson);
    // Queued without an execution: the scheduler starts one when it admits the job.
    expect(executions.started).toEqual([]);
    expect(await job(b)).toMatchObject({ status: "blocked", unmet: 1, dependsOn: [newId] });
    expect(await repo.getItem({ pk: jobPk(b), sk: dependsOnSk(a) })).toBeUndefined();
    expect(await repo.getItem({ pk: jobPk(b), sk: dependsOnSk(newId) })).toMatchObject({ met: false });
    expect(await repo.getItem({ pk: jobPk(newId), sk: dependentSk(b) })).toBeDefined();
    expect(await repo.getItem({ pk: jobPk(a), sk: dependentSk(b) })).toBeUndefined();
    // Created marked as waited on by nothing, the new job lost the mark with the moved edge.
    expect(replacement.noDependents).toBeUndefined();

    // A replay creates nothing new, and the dependent now runs when the new job completes.
    const replay = await recordAttemptFailure(ctx, { jobId: a, attempt, outcome: "lost", error: {} });
    expect(replay).toEqual({ next: "end", delaySeconds: 0 });
    expect((await job(a)).escalatedTo).toBe(newId);
    const created = events.changes.filter((c) => c.previousStatus === null && c.jobId !== a && c.jobId !== b);
    expect(created.map((c) => c.jobId)).toEqual([newId]);
    await complete(newId, await startRunning(newId));
    expect(await releaseDependents(ctx, newId)).toBe(1);
    expect(await job(b)).toMatchObject({ status: "queued", unmet: 0 });
  });
});

describe("requeue", () => {
  it("moves a retrying job back to queued once, clearing nextAttemptAt", async () => {
    const id = (await submit([{ ref: "a" }]))("a");
    await recordAttemptFailure(ctx, {
      jobId: id,
      attempt: await startRunning(id),
      outcome: "failed",
      error: boom,
    });
    advance(1);

    const requeued = await requeueJob(ctx, { jobId: id });
    const versionAfter = (await job(id)).version;
    const replay = await requeueJob(ctx, { jobId: id });

    expect(requeued).toEqual({ status: "queued" });
    expect(replay).toEqual({ status: "queued" });
    expect(await job(id)).toMatchObject({
      status: "queued",
      statusReason: "waiting for admission",
      nextAttemptAt: null,
      queuedAt: now.toISOString(),
      version: versionAfter,
    });
    expect(events.of(id).filter((e) => e === "retrying→queued")).toHaveLength(1);
  });

  it("keeps its transition when its write landed but the answer was lost (the SDK's retry found it refused)", async () => {
    // Prepare: a retrying job, and a client that loses the answer to the first write of its item.
    const id = (await submit([{ ref: "a" }]))("a");
    await recordAttemptFailure(ctx, {
      jobId: id,
      attempt: await startRunning(id),
      outcome: "failed",
      error: boom,
    });
    advance(1);
    const lost = Object.assign(new Error("the answer was lost"), { name: "TimeoutError", $retryable: {} });
    const { client: lossy, tries } = failingFirstUpdate("after", lost, jobPk(id));

    // Act
    const requeued = await requeueJob(
      { ...ctx, repo: new JobRepository(lossy, repo.tableName) },
      { jobId: id },
    );

    // Assess: one change, and its record
    expect(tries()).toBe(2);
    expect(requeued).toEqual({ status: "queued" });
    const transitions = (await repo.queryJobPartition(id, TRANSITION_PREFIX, { limit: 100 })).items;
    expect(transitions.filter((t) => t.from === "retrying" && t.to === "queued")).toHaveLength(1);
    expect(events.of(id).filter((e) => e === "retrying→queued")).toHaveLength(1);
  });
});

describe("attempt-failed as the state machine sends it: the outcome from the error's name", () => {
  const retry = { maxAttempts: 5, initialDelaySeconds: 1 };

  /** What the AttemptFailed state's Payload holds, through the Lambda's own schema. */
  const attemptFailed = (jobId: string, attempt: number, error: Record<string, string>) =>
    runLifecycleStep(ctx, lifecycleRequestSchema.parse({ action: "attempt-failed", jobId, attempt, error }));

  it.each([
    ["States.HeartbeatTimeout", "lost", "", "lost", "was lost"],
    ["lost", "lost", "node n1 stopped heartbeating", "lost", "was lost (node n1 stopped heartbeating)"],
    ["States.Timeout", "timed_out", "", "timeout", "timed out after 30 s"],
    ["timeout", "timed_out", "timed out after 30 s", "timeout", "timed out after 30 s"],
    ["ValueError", "failed", "boom", "ValueError", "failed (ValueError: boom)"],
  ])("records the error %s as %s", async (errorName, status, cause, errorType, reason) => {
    const id = (await submit([{ ref: "a", retry, timeoutSeconds: 30 }]))("a");
    const attempt = await startRunning(id);

    const decision = await attemptFailed(id, attempt, { Error: errorName, Cause: cause });

    expect(decision).toEqual({ next: "retry", delaySeconds: 1 });
    expect(await attemptItem(id, attempt)).toMatchObject({ status, error: { type: errorType } });
    expect(await job(id)).toMatchObject({
      status: "retrying",
      failures: 1,
      statusReason: expect.stringContaining(`attempt ${attempt} ${reason}`),
    });
    expect(await used()).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
  });

  it("keeps an outcome the caller names (the reconciler's lost) over the error's name", async () => {
    const id = (await submit([{ ref: "a", retry }]))("a");
    const attempt = await startRunning(id);

    await runLifecycleStep(
      ctx,
      lifecycleRequestSchema.parse({
        action: "attempt-failed",
        jobId: id,
        attempt,
        outcome: "lost",
        error: { Error: "ExecutionDead", Cause: "its execution ended" },
      }),
    );

    expect(await attemptItem(id, attempt)).toMatchObject({ status: "lost", error: { type: "lost" } });
  });

  it("accepts a failure with no error at all as failed", async () => {
    const id = (await submit([{ ref: "a", retry }]))("a");
    const attempt = await startRunning(id);

    await runLifecycleStep(
      ctx,
      lifecycleRequestSchema.parse({ action: "attempt-failed", jobId: id, attempt }),
    );

    expect(await attemptItem(id, attempt)).toMatchObject({ status: "failed" });
  });
});

describe("await-admission (executions of the previous lifecycle)", () => {
  const arnOf = (id: string, version: number) =>
    executionArnOf(STATE_MACHINE_ARN, executionName(id, version));

  /** What the previous definition's AwaitAdmission state sent, through the Lambda's own schema. */
  const awaitAdmission = (jobId: string, taskToken: string, executionArn: string) =>
    runLifecycleStep(
      ctx,
      lifecycleRequestSchema.parse({ action: "await-admission", jobId, taskToken, executionArn }),
    );

  it("answers not-admitted at once on a queued job, parking nothing on it", async () => {
    const id = (await submit([{ ref: "a" }]))("a");
    const before = await job(id);
    events.changes = [];

    const answer = await awaitAdmission(id, "token-1", arnOf(id, 1));

    expect(answer).toMatchObject({ waiting: false, reason: expect.stringContaining(id) });
    expect(tokens.sent).toEqual([
      {
        token: "token-1",
        output: { admitted: false, reason: expect.stringContaining("start at admission") },
      },
    ]);
    // The job stays admissible as it was: the scheduler starts its execution when it admits it.
    expect(await job(id)).toEqual(before);
    expect(before.admissionToken).toBeUndefined();
    expect(events.changes).toEqual([]);
    expect(executions.started).toEqual([]);
  });

  it("answers not-admitted whatever the job's state: ended, running, or missing", async () => {
    const ids = await submit([{ ref: "ended", retry: { maxAttempts: 1 } }, { ref: "running" }]);
    const [ended, running] = [ids("ended"), ids("running")];
    await recordAttemptFailure(ctx, {
      jobId: ended,
      attempt: await startRunning(ended),
      outcome: "failed",
      error: boom,
    });
    await startRunning(running);
    const before = { ended: await job(ended), running: await job(running), used: await used() };

    await awaitAdmission(ended, "token-ended", arnOf(ended, 1));
    await awaitAdmission(running, "token-running", arnOf(running, 1));
    await awaitAdmission("job_missing", "token-missing", arnOf("job_missing", 1));

    expect(tokens.sent.map((t) => [t.token, (t.output as { admitted: boolean }).admitted])).toEqual([
      ["token-ended", false],
      ["token-running", false],
      ["token-missing", false],
    ]);
    expect(await job(ended)).toEqual(before.ended);
    expect(await job(running)).toEqual(before.running);
    expect(await used()).toEqual(before.used);
  });
});
