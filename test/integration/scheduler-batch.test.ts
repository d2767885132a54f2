import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type SchedulerContext, type SchedulerTuning, schedulePool } from "../../app/scheduler";
import { LOCAL_REGION } from "../../local/config";
import type { NodeCapacity } from "../../store/capacity";
import { reservationFor, reserveCapacityItem } from "../../store/capacity";
import { createDocumentClient } from "../../store/dynamo";
import type { Reservation } from "../../store/job-items";
import {
  type ChangeOutcome,
  JobRepository,
  type StatusChangeWrite,
  type TransactItem,
} from "../../store/job-repository";
import { JOB_SK, jobPk } from "../../store/keys";
import { type Booking, NodeRepository } from "../../store/nodes";
import {
  type Harness,
  jobItem,
  ownTables,
  registerNode,
  schedulerFor,
  startHarness,
  submitWaitingBatch,
  suffix,
} from "../support/scheduling";

/**
 * One node's admissions of a pass (app/admissions.ts admitOnNode): the node booked once for all
 * of them, then each job's own conditional write (admitApart); a rate-limited type's jobs in one
 * transaction with one update of the node adding up their reservations. Against DynamoDB Local,
 * on tables of this file's own; each test has a pool of its own.
 */

const RUN = suffix();
const NODE = { cpu: 4, memoryMb: 8192, gpu: 0 };
const JOB = { cpu: 1, memoryMb: 512, gpu: 0 };
const TWO_JOBS = { cpu: 2, memoryMb: 1024, gpu: 0 };
let h: Harness;
let tableName = "";

/**
 * The real repository on the test's tables, which counts its transactions and its requests of
 * many jobs' changes, and can lose the answer to one job's change: after it landed, or with the
 * change never sent (a request that failed on the way).
 */
class WatchedRepository extends JobRepository {
  transactions = 0;
  changeRequests = 0;
  answerLost: { readonly id: string; readonly landed: boolean } | null = null;

  override async transact(items: readonly TransactItem[]): Promise<void> {
    this.transactions++;
    await super.transact(items);
  }

  override async changeEach(writes: readonly StatusChangeWrite[]): Promise<ChangeOutcome[]> {
    this.changeRequests++;
    const lost = this.answerLost;
    const isLost = (write: StatusChangeWrite) => lost !== null && write.pk === jobPk(lost.id);
    const sent = lost?.landed === false ? writes.filter((w) => !isLost(w)) : writes;
    const outcomes = await super.changeEach(sent);
    return writes.map((write) => (isLost(write) ? "unknown" : (outcomes[sent.indexOf(write)] ?? "unknown")));
  }
}

/**
 * The real node book, which counts the bookings and can run a concurrent writer's change just
 * before the first one: a job or the node moving between the pass's read and its writes.
 */
class WatchedNodes extends NodeRepository {
  bookings = 0;
  beforeFirst: (() => Promise<void>) | null = null;

  override async book(reservation: Reservation, capacity: NodeCapacity, at: Date): Promise<Booking> {
    const race = this.beforeFirst;
    this.beforeFirst = null;
    if (race) await race();
    this.bookings++;
    return super.book(reservation, capacity, at);
  }
}

function newPool(): string {
  const name = `p${suffix()}`;
  h.addPool({ name, labels: {}, nodes: 1, node: NODE });
  return name;
}

function watched(
  pool: string,
  tuning?: Partial<SchedulerTuning>,
  policy = {},
): { ctx: SchedulerContext; repo: WatchedRepository; nodes: WatchedNodes } {
  const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
  const repo = new WatchedRepository(db, tableName);
  const nodes = new WatchedNodes(db, h.scheduler.nodesTable);
  return { ctx: { ...schedulerFor(h, [pool], policy, tuning), repo, nodes }, repo, nodes };
}

async function nodeUsed(pool: string, nodeId: string) {
  return (await h.nodes.getNode(pool, nodeId))?.used;
}

beforeAll(async () => {
  const tables = await ownTables(`jobq-batch-${RUN}-`);
  tableName = tables.jobs;
  h = await startHarness(tables);
});
afterAll(() => h?.close());

describe("admissions onto one node", () => {
  it("book the node once for all of them, then write each job alone: dispatched with its transition, the node used by their sum, every execution started", async () => {
    // Prepare
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const ids = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }, { pool }]);
    const { ctx, repo, nodes } = watched(pool);

    // Act
    const summary = await schedulePool(ctx, pool);

    // Assess
    expect(summary.admitted.map((a) => a.jobId).sort()).toEqual([...ids].sort());
    expect(nodes.bookings).toBe(1);
    expect(repo.changeRequests).toBe(1);
    expect(repo.transactions).toBe(0);
    expect(await h.nodes.getNode(pool, nodeId)).toMatchObject({
      used: { cpu: 4, memoryMb: 2048, gpu: 0 },
      bookedAt: h.clock.read().toISOString(),
    });
    for (const id of ids) {
      expect(await jobItem(h, id)).toMatchObject({
        status: "dispatched",
        attempts: 1,
        reservation: { pool, nodeId, ...JOB },
      });
      // Out of the three queue views, into `active`: what the UpdateItem would have set and removed.
      const stored = await h.repo.getItem({ pk: jobPk(id), sk: JOB_SK });
      expect(Object.keys(stored ?? {})).not.toEqual(
        expect.arrayContaining([expect.stringMatching(/^queue(Pk|Sk|OwnerSk|AgeSk)$/)]),
      );
      expect(stored).toMatchObject({ activePk: expect.any(String), statusReason: expect.any(String) });
      // The creation of a job born queued is derived on read, not stored.
      const transitions = await h.repo.queryJobPartition(id, "TRN#", { limit: 10 });
      expect(transitions.items.map((t) => t.to)).toEqual(["dispatched"]);
      expect(h.sfn.admissions(id)).toEqual([
        expect.objectContaining({ jobId: id, attempt: 1, pool, nodeId }),
      ]);
    }
  });

  it("book the node once even when the pass read them over several pages of the queue", async () => {
    // Prepare: pages of 2, so the 4 jobs are read in 2 pages
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const ids = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }, { pool }]);
    const { ctx, nodes } = watched(pool, { pageSize: 2 });

    // Act
    const summary = await schedulePool(ctx, pool);

    // Assess
    expect(summary.admitted.map((a) => a.jobId).sort()).toEqual([...ids].sort());
    expect(nodes.bookings).toBe(1);
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 4, memoryMb: 2048, gpu: 0 });
    for (const id of ids) expect(await jobItem(h, id)).toMatchObject({ status: "dispatched", attempts: 1 });
  });

  it("go alone when the node refused the batch: the jobs that still fit are admitted", async () => {
    // Prepare: the node's free capacity shrinks from 4 jobs to 2 between the read and the write
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const ids = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }]);
    const { ctx, repo, nodes } = watched(pool, { maxPasses: 1 });
    nodes.beforeFirst = () =>
      h.repo.transact([
        reserveCapacityItem(h.scheduler.nodesTable, reservationFor(pool, nodeId, TWO_JOBS), NODE),
      ]);

    // Act
    const summary = await schedulePool(ctx, pool);

    // Assess: the batch's booking, then one per job; two fit, the third is refused, unwritten
    expect(nodes.bookings).toBe(4);
    expect(repo.changeRequests).toBe(2);
    expect(summary.admitted).toHaveLength(2);
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 4, memoryMb: 2048, gpu: 0 });
    const statuses = await Promise.all(ids.map(async (id) => (await jobItem(h, id)).status));
    expect(statuses.sort()).toEqual(["dispatched", "dispatched", "queued"]);
  });

  it("undo only the job whose execution could not be started: the others stay dispatched and keep their capacity", async () => {
    // Prepare
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const [gone = "", ...others] = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }]);
    h.sfn.refusedStarts.add(gone);

    // Act
    const summary = await schedulePool(schedulerFor(h, [pool]), pool);

    // Assess
    expect(summary.undone).toEqual([gone]);
    expect(summary.admitted.map((a) => a.jobId).sort()).toEqual([...others].sort());
    expect(await jobItem(h, gone)).toMatchObject({ status: "queued", attempts: 0 });
    expect((await jobItem(h, gone)).reservation).toBeUndefined();
    for (const id of others) expect(await jobItem(h, id)).toMatchObject({ status: "dispatched" });
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 2, memoryMb: 1024, gpu: 0 });
  });

  it("still admit the others when one job moved after the pass read it, and give its booking back", async () => {
    // Prepare
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const [moved = "", ...others] = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }]);
    // One pass: the lost race would otherwise have a second pass admit the moved job too.
    const { ctx, nodes } = watched(pool, { maxPasses: 1 });
    // A priority change lands between the read and the admission: the job's version moves on.
    nodes.beforeFirst = async () => {
      const current = await jobItem(h, moved);
      const at = new Date().toISOString();
      const change = h.repo.priorityChangeItems(
        current,
        { priority: 1, reason: "priority changed", triggeredBy: "alice" },
        at,
      );
      await h.repo.transact(change.items);
    };

    // Act
    const summary = await schedulePool(ctx, pool);

    // Assess: booked for 3, the moved job's write refused, its 1 CPU given back
    expect(nodes.bookings).toBe(1);
    expect(summary.admitted.map((a) => a.jobId).sort()).toEqual([...others].sort());
    expect(await jobItem(h, moved)).toMatchObject({ status: "queued", priority: 1, attempts: 0 });
    for (const id of others) expect(await jobItem(h, id)).toMatchObject({ status: "dispatched" });
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 2, memoryMb: 1024, gpu: 0 });
    expect(h.sfn.startRequests(moved)).toHaveLength(0);
  });

  it("take a job whose write's answer was lost for admitted when it reads back as that write made it", async () => {
    // Prepare: the change of one job lands, and its answer is lost.
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const ids = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }]);
    const { ctx, repo } = watched(pool, { maxPasses: 1 });
    repo.answerLost = { id: ids[0] ?? "", landed: true };

    // Act
    const summary = await schedulePool(ctx, pool);

    // Assess: all three admitted, started and booked
    expect(summary.admitted.map((a) => a.jobId).sort()).toEqual([...ids].sort());
    for (const id of ids) expect(h.sfn.startRequests(id)).toHaveLength(1);
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 3, memoryMb: 1536, gpu: 0 });
  });

  it("leave the booking of a job whose write's answer was lost and which reads back unchanged to the proof: never given back twice", async () => {
    // Prepare: the change of one job never reaches DynamoDB, and no answer says so.
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const [lost = "", ...others] = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }]);
    const { ctx, repo } = watched(pool, { maxPasses: 1 });
    repo.answerLost = { id: lost, landed: false };

    // Act
    const summary = await schedulePool(ctx, pool);

    // Assess: the others admitted; that one still queued, not started; the node holds all three
    // (a write sent may land late: only the reconciler's proof gives that back).
    expect(summary.admitted.map((a) => a.jobId).sort()).toEqual([...others].sort());
    expect(await jobItem(h, lost)).toMatchObject({ status: "queued", attempts: 0 });
    expect(h.sfn.startRequests(lost)).toHaveLength(0);
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 3, memoryMb: 1536, gpu: 0 });
  });

  it("of a rate-limited type go in one transaction with the node's update and the type's counter", async () => {
    // Prepare
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const type = `t${suffix()}`;
    const ids = await submitWaitingBatch(h, "alice", [
      { pool, type },
      { pool, type },
    ]);
    const { ctx, repo, nodes } = watched(pool, undefined, {
      types: { [type]: { rateLimit: { starts: 10, perSeconds: 60 } } },
    });

    // Act
    const summary = await schedulePool(ctx, pool);

    // Assess
    expect(summary.admitted.map((a) => a.jobId).sort()).toEqual([...ids].sort());
    expect(repo.transactions).toBe(1);
    expect(nodes.bookings).toBe(0);
    expect(await nodeUsed(pool, nodeId)).toEqual(TWO_JOBS);
  });
});
