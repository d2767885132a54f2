import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type SchedulerContext, type SchedulerTuning, schedulePool } from "../../app/scheduler";
import { LOCAL_REGION } from "../../local/config";
import { reservationFor, reserveCapacityItem } from "../../store/capacity";
import { createDocumentClient } from "../../store/dynamo";
import { JobRepository, type TransactItem } from "../../store/job-repository";
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
 * Batched admission (app/scheduler.ts admitOnNode): the jobs a pass places on one node go in
 * one transaction with one update of the node adding up their reservations. Against DynamoDB
 * Local, on tables of this file's own; each test has a pool of its own.
 */

const RUN = suffix();
const NODE = { cpu: 4, memoryMb: 8192, gpu: 0 };
const JOB = { cpu: 1, memoryMb: 512, gpu: 0 };
const TWO_JOBS = { cpu: 2, memoryMb: 1024, gpu: 0 };
let h: Harness;
let tableName = "";

/**
 * The real repository on the test's tables, which counts its transactions and can run a
 * concurrent writer's change just before the first one: a job moving between the pass's read
 * and its write.
 */
class WatchedRepository extends JobRepository {
  transactions = 0;
  beforeFirst: (() => Promise<void>) | null = null;

  override async transact(items: readonly TransactItem[]): Promise<void> {
    const race = this.beforeFirst;
    this.beforeFirst = null;
    if (race) await race();
    this.transactions++;
    await super.transact(items);
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
): { ctx: SchedulerContext; repo: WatchedRepository } {
  const repo = new WatchedRepository(
    createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") }),
    tableName,
  );
  return { ctx: { ...schedulerFor(h, [pool], {}, tuning), repo }, repo };
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
  it("go in one transaction: each job dispatched with its transition, the node used by their sum, every execution started", async () => {
    // Prepare
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const ids = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }, { pool }]);
    const { ctx, repo } = watched(pool);

    // Act
    const summary = await schedulePool(ctx, pool);

    // Assess
    expect(summary.admitted.map((a) => a.jobId).sort()).toEqual([...ids].sort());
    expect(repo.transactions).toBe(1);
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 4, memoryMb: 2048, gpu: 0 });
    for (const id of ids) {
      expect(await jobItem(h, id)).toMatchObject({
        status: "dispatched",
        attempts: 1,
        reservation: { pool, nodeId, ...JOB },
      });
      // The creation of a job born queued is derived on read, not stored.
      const transitions = await h.repo.queryJobPartition(id, "TRN#", { limit: 10 });
      expect(transitions.items.map((t) => t.to)).toEqual(["dispatched"]);
      expect(h.sfn.admissions(id)).toEqual([
        expect.objectContaining({ jobId: id, attempt: 1, pool, nodeId }),
      ]);
    }
  });

  it("go in one transaction even when the pass read them over several pages of the queue", async () => {
    // Prepare: pages of 2, so the 4 jobs are read in 2 pages
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const ids = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }, { pool }]);
    const { ctx, repo } = watched(pool, { pageSize: 2 });

    // Act
    const summary = await schedulePool(ctx, pool);

    // Assess
    expect(summary.admitted.map((a) => a.jobId).sort()).toEqual([...ids].sort());
    expect(repo.transactions).toBe(1);
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 4, memoryMb: 2048, gpu: 0 });
    for (const id of ids) expect(await jobItem(h, id)).toMatchObject({ status: "dispatched", attempts: 1 });
  });

  it("go alone when the node refused the batch: the jobs that still fit are admitted", async () => {
    // Prepare: the node's free capacity shrinks from 4 jobs to 2 between the read and the write
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const ids = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }]);
    const { ctx, repo } = watched(pool, { maxPasses: 1 });
    repo.beforeFirst = () =>
      h.repo.transact([
        reserveCapacityItem(h.scheduler.nodesTable, reservationFor(pool, nodeId, TWO_JOBS), NODE),
      ]);

    // Act
    const summary = await schedulePool(ctx, pool);

    // Assess: the batch, then one transaction per job; two fit, the third is refused
    expect(repo.transactions).toBe(4);
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

  it("still admit the others when one job moved after the pass read it: the batch is refused whole, then the others go again together", async () => {
    // Prepare
    const pool = newPool();
    const nodeId = await registerNode(h, pool, NODE);
    const [moved = "", ...others] = await submitWaitingBatch(h, "alice", [{ pool }, { pool }, { pool }]);
    // One pass: the lost race would otherwise have a second pass admit the moved job too.
    const { ctx, repo } = watched(pool, { maxPasses: 1 });
    // A priority change lands between the read and the admission: the job's version moves on.
    repo.beforeFirst = async () => {
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

    // Assess: the batch, refused by the moved job's condition, then the others' batch
    expect(repo.transactions).toBe(2);
    expect(summary.admitted.map((a) => a.jobId).sort()).toEqual([...others].sort());
    expect(await jobItem(h, moved)).toMatchObject({ status: "queued", priority: 1, attempts: 0 });
    for (const id of others) expect(await jobItem(h, id)).toMatchObject({ status: "dispatched" });
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 2, memoryMb: 1024, gpu: 0 });
    expect(h.sfn.startRequests(moved)).toHaveLength(0);
  });
});
