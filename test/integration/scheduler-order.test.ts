import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { pauseJob } from "../../app/actions";
import { schedulePool } from "../../app/scheduler";
import { JOB_INDEX } from "../../store/tables";
import {
  type Harness,
  jobItem,
  ownTables,
  registerNode,
  schedulerFor,
  startHarness,
  submitWaiting,
  submitWaitingBatch,
  suffix,
} from "../support/scheduling";

/**
 * The policy algorithms (API.md "Queue, pools, policy, quotas"; issue 4) at the level of a
 * scheduling pass, against DynamoDB Local: `priority` (earliest deadline first, aging),
 * `fair-share` (Dominant Resource Fairness, weights, the owner-by-owner read) and `round-robin`
 * (turns kept across passes). The test moves the clock. Each test has pools of its own and a
 * scheduler that sees only those; the policy is the one the test passes.
 */

const RUN = suffix();
const OPS = { id: "ops", admin: true };
let h: Harness;

const CPU_NODE = { cpu: 2, memoryMb: 4096, gpu: 0 };
/** A job that fills a CPU_NODE: one admission per pass. */
const WHOLE_NODE = { cpu: 2, memoryMb: 512, gpu: 0 };
const ONE_CPU = { cpu: 1, memoryMb: 512, gpu: 0 };

function newPool(node: { cpu: number; memoryMb: number; gpu: number }): string {
  const name = `p${suffix()}`;
  h.addPool({ name, labels: {}, nodes: 1, node });
  return name;
}

/** Owners of this test only, named so that `a` sorts before `b` (round-robin turns go by name). */
function owners(): { a: string; b: string } {
  const s = suffix();
  return { a: `a-${s}`, b: `b-${s}` };
}

function inFuture(seconds: number): string {
  return new Date(h.clock.read().getTime() + seconds * 1000).toISOString();
}

function admittedIds(summary: { admitted: readonly { jobId: string }[] }): string[] {
  return summary.admitted.map((a) => a.jobId);
}

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-order-${RUN}-`));
});
afterAll(() => h?.close());

describe("priority", () => {
  it("admits the earliest deadline first among jobs of equal priority, then FIFO; jobs without one last", async () => {
    // Prepare: room for one job; the job without a deadline was submitted first.
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool], { algorithm: "priority", agingSecondsPerStep: 0 });
    await registerNode(h, pool, CPU_NODE);
    const { a } = owners();
    const [none = "", later = "", sooner = ""] = await submitWaiting(h, a, [
      { pool, resources: WHOLE_NODE },
      { pool, resources: WHOLE_NODE, deadline: inFuture(7200) },
      { pool, resources: WHOLE_NODE, deadline: inFuture(3600) },
    ]);

    // Act
    const pass = await schedulePool(ctx, pool);

    // Assess
    expect(admittedIds(pass)).toEqual([sooner]);
    expect(pass.waiting.map((w) => w.jobId)).toEqual([later, none]);
    expect((await jobItem(h, none)).status).toBe("queued");
  });

  it("ages a waiting job one step per agingSecondsPerStep: an old low-priority job goes before newer high-priority ones", async () => {
    // Prepare: a low job waits 10 minutes; then two high jobs arrive. Room for one job.
    const pool = newPool(CPU_NODE);
    const { a } = owners();
    const [old = ""] = await submitWaiting(h, a, [{ pool, resources: WHOLE_NODE, priority: -5 }]);
    h.clock.advance(600);
    const [high1 = "", high2 = ""] = await submitWaiting(h, a, [
      { pool, resources: WHOLE_NODE, priority: 3 },
      { pool, resources: WHOLE_NODE, priority: 3 },
    ]);
    const nodeId = await registerNode(h, pool, CPU_NODE);

    // Act: without aging the high job goes first; with one step a minute the old one is at -5 + 10.
    const unaged = await schedulePool(schedulerFor(h, [pool], { agingSecondsPerStep: 0 }), pool);
    await pauseJob(h.reconciler, OPS, high1);
    const aged = await schedulePool(schedulerFor(h, [pool], { agingSecondsPerStep: 60 }), pool);

    // Assess
    expect(admittedIds(unaged)).toEqual([high1]);
    expect(aged.admitted).toEqual([{ jobId: old, nodeId }]);
    expect(aged.waiting.map((w) => w.jobId)).toEqual([high2]);
    expect((await jobItem(h, high2)).status).toBe("queued");
  });

  it("finds an old low-priority job beyond the first page of the priority order (the queueByAge read)", async () => {
    // Prepare: one old low job behind ten newer high ones; pages of 5; room for one job.
    const pool = newPool(CPU_NODE);
    const { a } = owners();
    const [old = ""] = await submitWaiting(h, a, [{ pool, resources: WHOLE_NODE, priority: -5 }]);
    h.clock.advance(600);
    // FIFO goes by job id; ids made in the same millisecond are not in submission order.
    const newer = (
      await submitWaitingBatch(
        h,
        a,
        Array.from({ length: 10 }, () => ({ pool, resources: WHOLE_NODE, priority: 3 })),
      )
    ).sort();
    const nodeId = await registerNode(h, pool, CPU_NODE);
    const tuning = { pageSize: 5 };

    // Act
    const unaged = await schedulePool(schedulerFor(h, [pool], { agingSecondsPerStep: 0 }, tuning), pool);
    await pauseJob(h.reconciler, OPS, newer[0] ?? "");
    const aged = await schedulePool(schedulerFor(h, [pool], { agingSecondsPerStep: 60 }, tuning), pool);

    // Assess: without aging the pass never read the old job (it is not even among the waiting).
    expect(admittedIds(unaged)).toEqual([newer[0]]);
    expect(unaged.waiting.map((w) => w.jobId)).not.toContain(old);
    expect(aged.admitted).toEqual([{ jobId: old, nodeId }]);
    expect((await jobItem(h, old)).status).toBe("dispatched");
  });
});

describe("fair-share", () => {
  it("admits, within a priority, the owner with the smallest dominant share in use first", async () => {
    // Prepare: owner a holds 2 of the node's 4 CPUs; then a and b each queue a 2-CPU job, a first.
    const node = { cpu: 4, memoryMb: 8192, gpu: 0 };
    const pool = newPool(node);
    const ctx = schedulerFor(h, [pool], { algorithm: "fair-share", agingSecondsPerStep: 0 });
    await registerNode(h, pool, node);
    const { a, b } = owners();
    const running = await submitWaiting(h, a, [
      { pool, resources: ONE_CPU },
      { pool, resources: ONE_CPU },
    ]);
    const first = await schedulePool(ctx, pool);
    const [aJob = ""] = await submitWaiting(h, a, [{ pool, resources: WHOLE_NODE }]);
    const [bJob = ""] = await submitWaiting(h, b, [{ pool, resources: WHOLE_NODE }]);

    // Act
    const pass = await schedulePool(ctx, pool);

    // Assess
    expect(admittedIds(first).sort()).toEqual([...running].sort());
    expect(admittedIds(pass)).toEqual([bJob]);
    expect((await jobItem(h, aJob)).status).toBe("queued");
  });

  it("divides an owner's dominant share by its weight", async () => {
    // Prepare, twice: a holds 2 of 4 CPUs (share 1/2), b holds 1 (1/4); each queues a 1-CPU job,
    // and 1 CPU is left. Unweighted b goes first; with weight 3, a's share counts 1/6 and a does.
    const node = { cpu: 4, memoryMb: 8192, gpu: 0 };
    const setUp = async () => {
      const pool = newPool(node);
      await registerNode(h, pool, node);
      const { a, b } = owners();
      await submitWaiting(h, a, [
        { pool, resources: ONE_CPU },
        { pool, resources: ONE_CPU },
      ]);
      await submitWaiting(h, b, [{ pool, resources: ONE_CPU }]);
      const first = await schedulePool(schedulerFor(h, [pool], { algorithm: "fair-share" }), pool);
      const [aJob = ""] = await submitWaiting(h, a, [{ pool, resources: ONE_CPU }]);
      const [bJob = ""] = await submitWaiting(h, b, [{ pool, resources: ONE_CPU }]);
      return { pool, a, first, aJob, bJob };
    };
    const plain = await setUp();
    const weighted = await setUp();

    // Act
    const unweighted = await schedulePool(
      schedulerFor(h, [plain.pool], { algorithm: "fair-share" }),
      plain.pool,
    );
    const withWeights = await schedulePool(
      schedulerFor(h, [weighted.pool], { algorithm: "fair-share", weights: { [weighted.a]: 3 } }),
      weighted.pool,
    );

    // Assess
    expect(plain.first.admitted).toHaveLength(3);
    expect(weighted.first.admitted).toHaveLength(3);
    expect(admittedIds(unweighted)).toEqual([plain.bJob]);
    expect(admittedIds(withWeights)).toEqual([weighted.aJob]);
  });

  it("admits an owner's job in the first pass behind another owner's backlog of 300, reading the queue owner by owner", async () => {
    // Prepare: a's 300 jobs were all submitted before b's 5; room for two jobs.
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool], { algorithm: "fair-share", agingSecondsPerStep: 0 });
    await registerNode(h, pool, CPU_NODE);
    const { a, b } = owners();
    // FIFO goes by job id; ids made in the same millisecond are not in submission order.
    const backlog = (
      await submitWaitingBatch(
        h,
        a,
        Array.from({ length: 300 }, () => ({ pool, resources: ONE_CPU })),
      )
    ).sort();
    const bJobs = (
      await submitWaitingBatch(
        h,
        b,
        Array.from({ length: 5 }, () => ({ pool, resources: ONE_CPU })),
      )
    ).sort();
    const queueIndexes = new Set<string>([JOB_INDEX.queue, JOB_INDEX.queueByOwner, JOB_INDEX.queueByAge]);
    let queueItemsRead = 0;
    const query = h.repo.queryIndex.bind(h.repo);
    const spy = vi.spyOn(h.repo, "queryIndex").mockImplementation(async (input) => {
      const page = await query(input);
      if (input.IndexName && queueIndexes.has(input.IndexName)) queueItemsRead += page.items.length;
      return page;
    });

    // Act
    let pass: Awaited<ReturnType<typeof schedulePool>>;
    try {
      pass = await schedulePool(ctx, pool);
    } finally {
      spy.mockRestore();
    }

    // Assess: equal shares at first, a's oldest job goes; then b's share is the smaller.
    expect(admittedIds(pass)).toEqual([backlog[0], bJobs[0]]);
    expect(queueItemsRead).toBeGreaterThan(0);
    expect(queueItemsRead).toBeLessThan(100);
    expect((await jobItem(h, backlog[1] ?? "")).status).toBe("queued");
  });
});

describe("round-robin", () => {
  it("lets owners take turns across passes, the last owner kept on the pool's lease", async () => {
    // Prepare: a's three jobs before b's three; each fills the node, so one admission per pass.
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool], { algorithm: "round-robin", agingSecondsPerStep: 0 });
    const nodeId = await registerNode(h, pool, CPU_NODE);
    const { a, b } = owners();
    const aJobs = await submitWaiting(h, a, [
      { pool, resources: WHOLE_NODE },
      { pool, resources: WHOLE_NODE },
      { pool, resources: WHOLE_NODE },
    ]);
    const bJobs = await submitWaiting(h, b, [
      { pool, resources: WHOLE_NODE },
      { pool, resources: WHOLE_NODE },
      { pool, resources: WHOLE_NODE },
    ]);
    const owner = new Map([...aJobs.map((id) => [id, a] as const), ...bJobs.map((id) => [id, b] as const)]);

    // Act: four passes; between them the admitted job is paused, which gives its node back.
    const turns: { owners: (string | undefined)[]; nodes: string[]; lastOwner: string | undefined }[] = [];
    for (let round = 0; round < 4; round++) {
      const pass = await schedulePool(ctx, pool);
      turns.push({
        owners: pass.admitted.map((x) => owner.get(x.jobId)),
        nodes: pass.admitted.map((x) => x.nodeId),
        lastOwner: (await h.nodes.getLease(pool))?.lastOwner,
      });
      for (const x of pass.admitted) await pauseJob(h.reconciler, OPS, x.jobId);
    }

    // Assess
    expect(turns).toEqual([
      { owners: [a], nodes: [nodeId], lastOwner: a },
      { owners: [b], nodes: [nodeId], lastOwner: b },
      { owners: [a], nodes: [nodeId], lastOwner: a },
      { owners: [b], nodes: [nodeId], lastOwner: b },
    ]);
    expect((await jobItem(h, aJobs[2] ?? "")).status).toBe("queued");
    expect((await jobItem(h, bJobs[2] ?? "")).status).toBe("queued");
  });
});
