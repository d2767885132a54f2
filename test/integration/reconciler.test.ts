import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pauseJob } from "../../app/actions";
import { reconcile } from "../../app/reconciler";
import { schedulePool } from "../../app/scheduler";
import { submitJobs } from "../../app/submit";
import { type Harness, jobItem, ownTables, startHarness, submitWaiting, suffix } from "../support/scheduling";

/**
 * The reconciler against DynamoDB Local, on tables of this file's own (it walks every live job
 * and every pool), with the loopback Step Functions peer answering DescribeExecution: only the
 * executions a test declares running exist there.
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

function startsOf(id: string) {
  return h.executions.started.filter((s) => s.jobId === id);
}

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-rec-${RUN}-`));
  // StartExecution answers with an ARN, as with a state machine configured.
  h.executions.startsExecutions = true;
});
afterAll(() => h?.close());

describe("reconcile: executions", () => {
  it("starts an execution for a queued job that has none, once", async () => {
    // Prepare: submitted while no execution could be started.
    const pool = newPool();
    const { jobs } = await submitJobs(h.reconciler, {
      principal: { id: "alice", admin: false },
      jobs: [
        {
          type: "echo",
          pool,
          priority: 0,
          resources: { cpu: 1, memoryMb: 512, gpu: 0 },
          dependsOn: [],
          retry: {
            maxAttempts: 3,
            strategy: "exponential",
            initialDelaySeconds: 1,
            backoffMultiplier: 2,
            maxDelaySeconds: 60,
          },
          timeoutSeconds: 60,
          offPeakOnly: false,
        },
      ],
    });
    const id = jobs[0]?.id ?? "";
    h.clock.advance(LATER_SECONDS);

    // Act
    const summary = await reconcile(h.reconciler);
    const again = await reconcile(h.reconciler);

    // Assess
    expect(summary.executionsStarted).toBeGreaterThanOrEqual(1);
    expect(startsOf(id)).toEqual([
      { jobId: id, version: 1 },
      { jobId: id, version: 2 },
    ]);
    expect(await jobItem(h, id)).toMatchObject({ status: "queued", version: 2 });
    expect(again.jobsChecked).toBeGreaterThanOrEqual(1);
  });

  it("leaves a job alone whose execution is running", async () => {
    // Prepare
    const pool = newPool();
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    const before = await jobItem(h, id);
    h.sfn.runningExecutions.add(before.executionArn ?? "");
    h.clock.advance(LATER_SECONDS);

    // Act
    await reconcile(h.reconciler);

    // Assess
    expect(startsOf(id)).toEqual([{ jobId: id, version: 1 }]);
    expect(await jobItem(h, id)).toMatchObject({
      version: before.version,
      admissionToken: before.admissionToken,
      executionArn: before.executionArn,
    });
  });

  it("gives a waiting job whose execution died a new one, dropping the dead one's token", async () => {
    // Prepare
    const pool = newPool();
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    const before = await jobItem(h, id);
    h.clock.advance(LATER_SECONDS);

    // Act
    await reconcile(h.reconciler);

    // Assess
    const after = await jobItem(h, id);
    expect(after).toMatchObject({ status: "queued", version: before.version + 1 });
    expect(after.admissionToken).toBeUndefined();
    expect(after.executionArn).toBeUndefined();
    expect(startsOf(id).at(-1)).toEqual({ jobId: id, version: before.version + 1 });
    expect(h.sfn.calls).toContainEqual({
      operation: "DescribeExecution",
      body: { executionArn: before.executionArn },
    });
  });

  it("records a dispatched job's attempt lost when its execution died, requeues it and starts an execution", async () => {
    // Prepare: admitted onto a node, then its execution vanished.
    const pool = newPool();
    const nodeId = await addNode(pool);
    const [id = ""] = await submitWaiting(h, "alice", [
      {
        pool,
        retry: {
          maxAttempts: 3,
          strategy: "immediate",
          initialDelaySeconds: 0,
          backoffMultiplier: 1,
          maxDelaySeconds: 0,
        },
      },
    ]);
    await schedulePool(h.scheduler, pool);
    const dispatched = await jobItem(h, id);
    h.clock.advance(LATER_SECONDS);
    // The node keeps heartbeating meanwhile.
    await h.nodes.heartbeat(pool, nodeId, h.clock.read());

    // Act
    const summary = await reconcile(h.reconciler);

    // Assess
    expect(dispatched.status).toBe("dispatched");
    expect(summary.attemptsLost).toBeGreaterThanOrEqual(1);
    const after = await jobItem(h, id);
    expect(after).toMatchObject({ status: "queued", attempts: 1, failures: 1 });
    expect(after.reservation).toBeUndefined();
    expect((await h.nodes.getNode(pool, nodeId))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(startsOf(id).at(-1)).toEqual({ jobId: id, version: after.version });
    expect(h.events.published).toContainEqual(
      expect.objectContaining({ jobId: id, previousStatus: "dispatched", status: "retrying" }),
    );
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
    expect(startsOf(id)).toEqual([{ jobId: id, version: 1 }]);
  });
});

describe("reconcile: capacity", () => {
  it("repairs a node whose used disagrees with the reservations on it, and only that node", async () => {
    // Prepare: one job admitted (1 CPU, 512 MB), then the node's books drift by a leak.
    const pool = newPool();
    const leaky = await addNode(pool);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    await schedulePool(h.scheduler, pool);
    const job = await jobItem(h, id);
    h.sfn.runningExecutions.add(job.executionArn ?? "");
    const leak = { cpu: 3, memoryMb: 2560, gpu: 0 };
    const clean = await addNode(pool);
    await h.nodes.repairUsed(pool, job.reservation?.nodeId ?? "", { cpu: 1, memoryMb: 512, gpu: 0 }, leak);

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
