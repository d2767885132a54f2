import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pauseJob } from "../../app/actions";
import { recordAttemptFailure } from "../../app/lifecycle";
import { DEFAULT_RECONCILER_TUNING, reconcile } from "../../app/reconciler";
import { schedulePool } from "../../app/scheduler";
import type { BatchJobRequest } from "../../core/job";
import {
  type Harness,
  jobItem,
  ownTables,
  parkLegacyAdmission,
  startHarness,
  startOnReservedNode,
  submitWaiting,
  suffix,
  tokenOf,
} from "../support/scheduling";

/**
 * The reconciler against DynamoDB Local, on tables of this file's own (it walks every live job
 * and every pool), with the loopback Step Functions peer answering DescribeExecution: an
 * execution exists there once the scheduler started it (at admission), and runs until a test
 * ends it. Waiting jobs have no execution: the reconciler starts none.
 */

const RUN = suffix();
let h: Harness;

const NODE = { cpu: 4, memoryMb: 8192, gpu: 0 };
/** Past the reconciler's grace for jobs that changed just now. */
const LATER_SECONDS = 120;

function newPool(): string {
  const name = `r${suffix()}`;
  h.addPool({ name, labels: {}, nodes: 1, node: NODE });
  return name;
}

async function addNode(pool: string): Promise<string> {
  const nodeId = `node-${suffix()}`;
  await h.nodes.register({ pool, nodeId, workerId: `worker-${nodeId}`, capacity: NODE }, h.clock.read());
  return nodeId;
}

/** The names of the executions started for the job, in order. */
function startsOf(id: string): string[] {
  return h.sfn.startRequests(id).map((r) => r.name);
}

function retryEvery(seconds: number): Partial<BatchJobRequest> {
  return {
    retry: {
      maxAttempts: 3,
      strategy: seconds === 0 ? "immediate" : "exponential",
      initialDelaySeconds: seconds,
      backoffMultiplier: 1,
      maxDelaySeconds: seconds,
    },
  };
}

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-rec-${RUN}-`));
});
afterAll(() => h?.close());

describe("reconcile: executions", () => {
  it("starts no execution for a waiting job and leaves it as it is: the scheduler starts one when it admits the job", async () => {
    // Prepare
    const pool = newPool();
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    const submitted = await jobItem(h, id);
    h.clock.advance(LATER_SECONDS);

    // Act
    await reconcile(h.reconciler);
    await reconcile(h.reconciler);

    // Assess
    expect(startsOf(id)).toEqual([]);
    expect(await jobItem(h, id)).toMatchObject({ status: "queued", version: submitted.version });
  });

  it("leaves a dispatched job alone whose execution is running", async () => {
    // Prepare
    const pool = newPool();
    const nodeId = await addNode(pool);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    await schedulePool(h.scheduler, pool);
    const before = await jobItem(h, id);
    h.clock.advance(LATER_SECONDS);
    await h.nodes.heartbeat(pool, nodeId, h.clock.read());

    // Act
    await reconcile(h.reconciler);

    // Assess
    expect(before.status).toBe("dispatched");
    expect(h.sfn.calls).toContainEqual({
      operation: "DescribeExecution",
      body: { executionArn: before.executionArn },
    });
    expect(startsOf(id)).toEqual([`${id}-${before.version}`]);
    expect(await jobItem(h, id)).toMatchObject({
      status: "dispatched",
      version: before.version,
      attempts: 1,
      executionArn: before.executionArn,
    });
  });

  it("leaves a waiting job of the previous lifecycle alone when its execution died; the scheduler admits it all the same", async () => {
    // Prepare: the job's execution of the previous definition parked its token, then died.
    const pool = newPool();
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    const legacyArn = await parkLegacyAdmission(h, id);
    h.sfn.runningExecutions.delete(legacyArn);
    h.sfn.deadTokens.add(tokenOf(id));
    const parked = await jobItem(h, id);
    h.clock.advance(LATER_SECONDS);

    // Act
    await reconcile(h.reconciler);
    const afterReconcile = await jobItem(h, id);
    const nodeId = await addNode(pool);
    const pass = await schedulePool(h.scheduler, pool);

    // Assess
    expect(afterReconcile).toMatchObject({
      status: "queued",
      version: parked.version,
      executionArn: legacyArn,
    });
    expect(pass.admitted).toEqual([{ jobId: id, nodeId }]);
    const admitted = await jobItem(h, id);
    expect(admitted).toMatchObject({ status: "dispatched", attempts: 1 });
    expect(admitted.admissionToken).toBeUndefined();
    expect(startsOf(id)).toEqual([`${id}-${admitted.version}`]);
  });

  it("records a dispatched job's attempt lost when its execution died and requeues it, starting nothing; the scheduler admits the next attempt", async () => {
    // Prepare: admitted onto a node, then its execution ended with nobody told.
    const pool = newPool();
    const nodeId = await addNode(pool);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool, ...retryEvery(0) }]);
    await schedulePool(h.scheduler, pool);
    const dispatched = await jobItem(h, id);
    h.sfn.endExecution(dispatched.executionArn ?? "", "ABORTED");
    h.clock.advance(LATER_SECONDS);
    // The node keeps heartbeating meanwhile.
    await h.nodes.heartbeat(pool, nodeId, h.clock.read());

    // Act
    const summary = await reconcile(h.reconciler);
    const after = await jobItem(h, id);
    const startsAfterReconcile = startsOf(id);
    const usedAfterReconcile = (await h.nodes.getNode(pool, nodeId))?.used;
    const pass = await schedulePool(h.scheduler, pool);

    // Assess
    expect(dispatched.status).toBe("dispatched");
    expect(summary.attemptsLost).toBeGreaterThanOrEqual(1);
    expect(summary.requeued).toBeGreaterThanOrEqual(1);
    expect(after).toMatchObject({ status: "queued", attempts: 1, failures: 1 });
    expect(after.reservation).toBeUndefined();
    expect(usedAfterReconcile).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(startsAfterReconcile).toEqual([`${id}-${dispatched.version}`]);
    expect(h.events.published).toContainEqual(
      expect.objectContaining({ jobId: id, previousStatus: "dispatched", status: "retrying" }),
    );
    expect(pass.admitted).toEqual([{ jobId: id, nodeId }]);
    expect(h.sfn.admissions(id).map((a) => a.attempt)).toEqual([1, 2]);
  });

  it("stops at once when told to (a stopping process): a job whose execution died is left for the next run, and no pool's lease is taken", async () => {
    // Prepare: as above, an admitted job whose execution ended with nobody told.
    const pool = newPool();
    await addNode(pool);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool, ...retryEvery(0) }]);
    await schedulePool(h.scheduler, pool);
    const dispatched = await jobItem(h, id);
    h.sfn.endExecution(dispatched.executionArn ?? "", "ABORTED");
    h.clock.advance(LATER_SECONDS);
    const stopping = new AbortController();
    stopping.abort(new Error("stack stopping"));
    const lease = await h.nodes.getLease(pool);

    // Act
    const run = reconcile(h.reconciler, { signal: stopping.signal });

    // Assess
    await expect(run).rejects.toThrow("stack stopping");
    expect(await jobItem(h, id)).toMatchObject({ status: "dispatched", attempts: 1 });
    expect(lease?.holder).toBeUndefined();
    expect(await h.nodes.getLease(pool)).toEqual(lease);
    // The next run does what this one left.
    await reconcile(h.reconciler);
    expect(await jobItem(h, id)).toMatchObject({ status: "queued", failures: 1 });
  });

  it("records a running job's attempt lost when its execution no longer exists", async () => {
    // Prepare: running on its node; its execution is unknown to Step Functions (deleted with its
    // state machine, or its history expired).
    const pool = newPool();
    const nodeId = await addNode(pool);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool, ...retryEvery(600) }]);
    await schedulePool(h.scheduler, pool);
    const dispatched = await jobItem(h, id);
    const running = await startOnReservedNode(h, id, `run-token-${id}`);
    h.sfn.forgetExecution(running.executionArn ?? "");
    h.clock.advance(LATER_SECONDS);
    await h.nodes.heartbeat(pool, nodeId, h.clock.read());

    // Act
    const summary = await reconcile(h.reconciler);

    // Assess: lost, and waiting out its backoff (600 s) before it is requeued.
    expect(running.status).toBe("running");
    expect(summary.attemptsLost).toBeGreaterThanOrEqual(1);
    const after = await jobItem(h, id);
    expect(after).toMatchObject({ status: "retrying", attempts: 1, failures: 1 });
    expect(after.reservation).toBeUndefined();
    expect((await h.nodes.getNode(pool, nodeId))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(startsOf(id)).toEqual([`${id}-${dispatched.version}`]);
  });

  it("requeues a retrying job whose backoff is over and leaves one still in its backoff", async () => {
    // Prepare: two jobs whose first attempt failed, one retrying after 60 s, one after an hour.
    const pool = newPool();
    await addNode(pool);
    const [soon = "", late = ""] = await submitWaiting(h, "alice", [
      { pool, resources: { cpu: 1, memoryMb: 512, gpu: 0 }, ...retryEvery(60) },
      { pool, resources: { cpu: 1, memoryMb: 512, gpu: 0 }, ...retryEvery(3600) },
    ]);
    await schedulePool(h.scheduler, pool);
    for (const id of [soon, late]) {
      await recordAttemptFailure(h.reconciler, {
        jobId: id,
        attempt: 1,
        outcome: "failed",
        error: { Error: "boom", Cause: "it broke" },
      });
    }
    h.clock.advance(LATER_SECONDS);

    // Act
    await reconcile(h.reconciler);

    // Assess
    expect(await jobItem(h, soon)).toMatchObject({ status: "queued", nextAttemptAt: null, attempts: 1 });
    expect((await jobItem(h, late)).status).toBe("retrying");
    expect(h.events.published).toContainEqual(
      expect.objectContaining({ jobId: soon, previousStatus: "retrying", status: "queued" }),
    );
    expect(startsOf(soon)).toHaveLength(1);
    expect(startsOf(late)).toHaveLength(1);
  });

  it("starts nothing for a paused job", async () => {
    // Prepare
    const pool = newPool();
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    await pauseJob(h.reconciler, { id: "alice", admin: false }, id);
    const paused = await jobItem(h, id);
    h.clock.advance(LATER_SECONDS);

    // Act
    await reconcile(h.reconciler);

    // Assess
    expect(await jobItem(h, id)).toMatchObject({ status: "paused", version: paused.version });
    expect(startsOf(id)).toEqual([]);
  });
});

describe("reconcile: capacity", () => {
  it("repairs a node whose used disagrees with the reservations on it, and only that node", async () => {
    // Prepare: one job admitted (1 CPU, 512 MB), then the node's books drift by a leak.
    const pool = newPool();
    const leaky = await addNode(pool);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    await schedulePool(h.scheduler, pool);
    // Its execution, started at admission, keeps running.
    const job = await jobItem(h, id);
    const leak = { cpu: 3, memoryMb: 2560, gpu: 0 };
    const clean = await addNode(pool);
    await h.nodes.repairUsed(pool, job.reservation?.nodeId ?? "", { cpu: 1, memoryMb: 512, gpu: 0 }, leak);
    // Past the grace a pass's booking has (the next test).
    h.clock.advance(DEFAULT_RECONCILER_TUNING.bookingGraceSeconds + 1);

    // Act
    const summary = await reconcile(h.reconciler);
    const again = await reconcile(h.reconciler);

    // Assess
    expect(job.reservation?.nodeId).toBe(leaky);
    expect(summary.capacityRepairs.filter((r) => r.pool === pool)).toEqual([
      { pool, nodeId: leaky, from: leak, to: { cpu: 1, memoryMb: 512, gpu: 0 } },
    ]);
    expect((await h.nodes.getNode(pool, leaky))?.used).toEqual({ cpu: 1, memoryMb: 512, gpu: 0 });
    expect((await h.nodes.getNode(pool, clean))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(again.capacityRepairs.filter((r) => r.pool === pool)).toEqual([]);
    expect(await jobItem(h, id)).toMatchObject({ status: "dispatched" });
  });

  it("leaves an excess a pass booked moments ago alone, its jobs' writes may be landing, and gives it back once that is past", async () => {
    // Prepare: a pass booked 2 CPUs on the node and died before it wrote its jobs.
    const pool = newPool();
    const nodeId = await addNode(pool);
    const booked = { cpu: 2, memoryMb: 1024, gpu: 0 };
    const zero = { cpu: 0, memoryMb: 0, gpu: 0 };
    const booking = await h.nodes.book({ pool, nodeId, ...booked }, NODE, h.clock.read());
    expect(booking).toEqual({ outcome: "booked", repairs: 0 });

    // Act
    const soon = await reconcile(h.reconciler);
    h.clock.advance(DEFAULT_RECONCILER_TUNING.bookingGraceSeconds + 1);
    const later = await reconcile(h.reconciler);

    // Assess
    expect(soon.capacityRepairs.filter((r) => r.pool === pool)).toEqual([]);
    expect(later.capacityRepairs.filter((r) => r.pool === pool)).toEqual([
      { pool, nodeId, from: booked, to: zero },
    ]);
    expect((await h.nodes.getNode(pool, nodeId))?.used).toEqual(zero);
  });

  it("repairs a shortfall at once, even on a node a pass booked moments ago", async () => {
    // Prepare: a job admitted (1 CPU, 512 MB); then the node's books fall short of it.
    const pool = newPool();
    const nodeId = await addNode(pool);
    await submitWaiting(h, "alice", [{ pool }]);
    await schedulePool(h.scheduler, pool);
    const held = { cpu: 1, memoryMb: 512, gpu: 0 };
    const zero = { cpu: 0, memoryMb: 0, gpu: 0 };
    await h.nodes.repairUsed(pool, nodeId, held, zero);

    // Act
    const summary = await reconcile(h.reconciler);

    // Assess
    expect(summary.capacityRepairs.filter((r) => r.pool === pool)).toEqual([
      { pool, nodeId, from: zero, to: held },
    ]);
    expect((await h.nodes.getNode(pool, nodeId))?.used).toEqual(held);
  });

  it("repairs a lost node's books while a pass holds the lease, and leaves the live nodes to the next run", async () => {
    // Prepare: a completion's release that never came (its worker died after the job's write)
    // left 1 CPU booked on a node now lost; a live node has drifted too; a pass holds the lease.
    const pool = newPool();
    const lost = await addNode(pool);
    const live = await addNode(pool);
    const drift = { cpu: 1, memoryMb: 512, gpu: 0 };
    const zero = { cpu: 0, memoryMb: 0, gpu: 0 };
    await h.nodes.repairUsed(pool, lost, zero, drift);
    await h.nodes.repairUsed(pool, live, zero, drift);
    await h.nodes.setStatus(pool, lost, "lost");
    expect(await h.nodes.acquireLease(pool, "a-pass", h.clock.read(), 600)).not.toBeNull();

    // Act
    const summary = await reconcile(h.reconciler);

    // Assess
    expect(summary.poolsSkipped).toContain(pool);
    expect(summary.capacityRepairs.filter((r) => r.pool === pool)).toEqual([
      { pool, nodeId: lost, from: drift, to: zero },
    ]);
    expect((await h.nodes.getNode(pool, lost))?.used).toEqual(zero);
    expect((await h.nodes.getNode(pool, live))?.used).toEqual(drift);
    expect((await h.nodes.getLease(pool))?.holder).toBe("a-pass");
  });

  it("prunes a lost node with nothing reserved once it has been lost long enough", async () => {
    // Prepare
    const pool = newPool();
    const nodeId = await addNode(pool);
    await h.nodes.setStatus(pool, nodeId, "lost");
    h.clock.advance(2 * 3600);

    // Act
    const summary = await reconcile(h.reconciler);

    // Assess
    expect(summary.nodesPruned).toBeGreaterThanOrEqual(1);
    expect(await h.nodes.getNode(pool, nodeId)).toBeNull();
  });
});
