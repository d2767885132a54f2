import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { cancelJob, pauseJob } from "../../app/actions";
import { startAttempt } from "../../app/attempts";
import { type DispatchInput, notAdmittedSchema, recordAttemptFailure } from "../../app/lifecycle";
import { listPools } from "../../app/pools";
import { poolsToSchedule, runScheduler, schedulePool } from "../../app/scheduler";
import type { PoolConfig } from "../../core/pools";
import { LOCAL_REGION } from "../../local/config";
import { createDocumentClient } from "../../store/dynamo";
import { NodeRepository } from "../../store/nodes";
import { startTestApi, type TestApi } from "../support/api";
import {
  executionArn,
  type Harness,
  HEARTBEAT_SECONDS,
  jobItem,
  LOST_AFTER_SECONDS,
  NODE_LOST_SECONDS,
  ownTables,
  parkLegacyAdmission,
  startHarness,
  startOnReservedNode,
  submitWaiting,
  suffix,
  tokenOf,
} from "../support/scheduling";

/**
 * The scheduler against DynamoDB Local, on tables of this file's own, with a real loopback Step
 * Functions peer that keeps the executions the scheduler starts (one per admission) and records
 * SendTaskSuccess/Failure. Each test uses pools of its own.
 */

const RUN = suffix();
let h: Harness;

/** A pool only this test uses, added to the harness's configuration. */
function newPool(
  node: { cpu: number; memoryMb: number; gpu: number },
  labels: Record<string, string> = {},
): string {
  const name = `p${suffix()}`;
  h.addPool({ name, labels, nodes: 1, node });
  return name;
}

const GPU_NODE = { cpu: 8, memoryMb: 32768, gpu: 2 };
const CPU_NODE = { cpu: 2, memoryMb: 4096, gpu: 0 };

/** A node that registers now, by the harness's clock (the clock a pass judges heartbeats by). */
async function addNode(
  pool: string,
  capacity: { cpu: number; memoryMb: number; gpu: number },
  at = h.clock.read(),
) {
  const nodeId = `node-${suffix()}`;
  await h.nodes.register({ pool, nodeId, workerId: `worker-${nodeId}`, capacity }, at);
  return nodeId;
}

async function nodeUsed(pool: string, nodeId: string) {
  return (await h.nodes.getNode(pool, nodeId))?.used;
}

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-sched-${RUN}-`));
});
afterAll(() => h?.close());

describe("a scheduling pass", () => {
  it("admits a queued job in one pass: dispatched, reserved, node used up, its attempt's execution started with the admission", async () => {
    // Prepare
    const pool = newPool(GPU_NODE);
    const nodeId = await addNode(pool, GPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [
      { pool, resources: { cpu: 1, memoryMb: 1024, gpu: 1 }, timeoutSeconds: 600 },
    ]);

    // Act
    const [summary] = await runScheduler(h.scheduler, [pool]);

    // Assess
    expect(summary?.admitted).toEqual([{ jobId: id, nodeId }]);
    const job = await jobItem(h, id);
    expect(job).toMatchObject({
      status: "dispatched",
      statusReason: `dispatched to node ${nodeId} in pool ${pool}`,
      attempts: 1,
      reservation: { pool, nodeId, cpu: 1, memoryMb: 1024, gpu: 1 },
    });
    // Where, and why there (the placement rule): the transition is the record of the decision.
    const transitions = await h.repo.queryJobPartition(id, "TRN#", { limit: 10 });
    expect(transitions.items.at(-1)).toMatchObject({
      to: "dispatched",
      reason: expect.stringMatching(
        new RegExp(`^dispatched to node ${nodeId} in pool ${pool}: best fit for 1 GPU: `),
      ),
    });
    expect(job.admissionToken).toBeUndefined();
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 1, memoryMb: 1024, gpu: 1 });
    // One execution, named by the version the admission wrote, and the job knows it.
    expect(job.executionArn).toBe(executionArn(id, job.version));
    expect(h.sfn.execution(job.executionArn ?? "")).toMatchObject({
      name: `${id}-${job.version}`,
      status: "RUNNING",
    });
    expect(h.sfn.admissions(id)).toEqual([
      {
        jobId: id,
        pool,
        nodeId,
        queueUrl: h.queueUrl(pool, "normal"),
        attempt: 1,
        // The queue wait (up to lostAfterSeconds) comes before the job's own 600 s.
        timeoutSeconds: 600 + LOST_AFTER_SECONDS + 30,
        heartbeatSeconds: HEARTBEAT_SECONDS,
        lostAfterSeconds: LOST_AFTER_SECONDS,
      },
    ]);
    // No AwaitAdmission token to answer any more.
    expect(h.sfn.successes()).toEqual([]);
    expect(h.events.published).toContainEqual(
      expect.objectContaining({ jobId: id, previousStatus: "queued", status: "dispatched" }),
    );
  });

  it("admits one of three 2-GPU jobs per pass on one 2-GPU node; the others wait and say why", async () => {
    // Prepare
    const pool = newPool(GPU_NODE);
    const nodeId = await addNode(pool, GPU_NODE);
    const gpuJob = { pool, resources: { cpu: 1, memoryMb: 512, gpu: 2 } };
    const ids = await submitWaiting(h, "alice", [gpuJob, gpuJob, gpuJob]);
    const [first = "", second = "", third = ""] = ids;

    // Act
    const pass1 = await schedulePool(h.scheduler, pool);
    const waitingAfter1 = await jobItem(h, second);
    // Pausing the admitted job gives its GPUs back (in the same transaction as the status change).
    await pauseJob(h.reconciler, { id: "ops", admin: true }, first);
    const pass2 = await schedulePool(h.scheduler, pool);

    // Assess
    expect(pass1.admitted).toEqual([{ jobId: first, nodeId }]);
    expect(pass1.waiting.map((w) => w.jobId)).toEqual([second, third]);
    expect(waitingAfter1).toMatchObject({
      status: "queued",
      statusReason: `needs 2 GPU in pool ${pool}, 0 free`,
    });
    expect(pass2.admitted).toEqual([{ jobId: second, nodeId }]);
    expect((await jobItem(h, third)).status).toBe("queued");
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 1, memoryMb: 512, gpu: 2 });
  });

  it("admits the higher priority first", async () => {
    // Prepare: room for one job; the low one was submitted first.
    const pool = newPool(CPU_NODE);
    await addNode(pool, CPU_NODE);
    const big = { cpu: 2, memoryMb: 1024, gpu: 0 };
    const [low = "", high = ""] = await submitWaiting(h, "alice", [
      { pool, resources: big, priority: -5 },
      { pool, resources: big, priority: 5 },
    ]);

    // Act
    const summary = await schedulePool(h.scheduler, pool);

    // Assess
    expect(summary.admitted.map((a) => a.jobId)).toEqual([high]);
    expect((await jobItem(h, low)).status).toBe("queued");
    expect(h.sfn.admissions(high).map((a) => a.queueUrl)).toEqual([h.queueUrl(pool, "high")]);
    expect(h.sfn.startRequests(low)).toEqual([]);
  });

  it("admits nothing twice when a pass runs twice", async () => {
    // Prepare
    const pool = newPool(CPU_NODE);
    const nodeId = await addNode(pool, CPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    await schedulePool(h.scheduler, pool);
    const afterFirst = await jobItem(h, id);

    // Act
    const again = await schedulePool(h.scheduler, pool);

    // Assess
    expect(again.admitted).toEqual([]);
    expect(await jobItem(h, id)).toMatchObject({
      status: "dispatched",
      version: afterFirst.version,
      attempts: 1,
    });
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 1, memoryMb: 512, gpu: 0 });
    expect(h.sfn.startRequests(id)).toHaveLength(1);
  });

  it("serializes concurrent passes of a pool: one admits, the other marks the lease dirty and the holder runs again", async () => {
    // Prepare: the first pass stops inside StartExecution until released.
    const pool = newPool(CPU_NODE);
    await addNode(pool, CPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    const hold = h.sfn.hold(["StartExecution"]);

    // Act
    const holderRun = schedulePool(h.scheduler, pool);
    await hold.arrived;
    const contender = await schedulePool(h.scheduler, pool);
    const lease = await h.nodes.getLease(pool);
    hold.release();
    const holder = await holderRun;

    // Assess
    expect(contender).toMatchObject({ outcome: "busy", passes: 0, admitted: [] });
    expect(lease?.dirty).toBe(true);
    expect(holder.outcome).toBe("ran");
    expect(holder.admitted.map((a) => a.jobId)).toEqual([id]);
    expect(holder.passes).toBe(2);
    expect(h.sfn.startRequests(id)).toHaveLength(1);
    expect(await h.nodes.getLease(pool)).toMatchObject({ dirty: false });
    expect((await h.nodes.getLease(pool))?.holder).toBeUndefined();
  });

  it("moves a scheduled job whose runAt has come to queued, then admits it", async () => {
    // Prepare
    const pool = newPool(CPU_NODE);
    const runAt = new Date(h.clock.read().getTime() + 3_600_000).toISOString();
    const [id = ""] = await submitWaiting(h, "alice", [{ pool, runAt }]);
    const before = await jobItem(h, id);
    h.clock.advance(3_601);
    // The node registers once the clock has moved, so it is not lost in the future the test lives in.
    const nodeId = await addNode(pool, CPU_NODE, h.clock.read());

    // Act
    const summary = await schedulePool(h.scheduler, pool);

    // Assess
    expect(before.status).toBe("scheduled");
    expect(summary.promoted).toEqual([id]);
    expect(summary.admitted).toEqual([{ jobId: id, nodeId }]);
    expect(h.events.published).toContainEqual(
      expect.objectContaining({ jobId: id, previousStatus: "scheduled", status: "queued" }),
    );
    const transitions = await h.repo.queryJobPartition(id, "TRN#", { limit: 10 });
    expect(transitions.items.map((t) => t.to)).toEqual(["scheduled", "queued", "dispatched"]);
  });

  it("requeues a retrying job whose backoff is over when its execution did not (a crash, a restart), and admits its next attempt under a new execution", async () => {
    // Prepare: admitted, then its attempt failed with attempts left
    const pool = newPool(CPU_NODE);
    await addNode(pool, CPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    await schedulePool(h.scheduler, pool);
    const admitted = await jobItem(h, id);
    await recordAttemptFailure(h.reconciler, {
      jobId: id,
      attempt: admitted.attempts,
      outcome: "failed",
      error: { Error: "boom", Cause: "it broke" },
    });
    const retrying = await jobItem(h, id);
    const early = await schedulePool(h.scheduler, pool);
    h.clock.advance(60);
    await addNode(pool, CPU_NODE); // the first node may count as silent by now

    // Act
    const late = await schedulePool(h.scheduler, pool);

    // Assess
    expect(retrying.status).toBe("retrying");
    expect(early.promoted).not.toContain(id);
    expect(early.admitted).toEqual([]);
    expect(late.promoted).toContain(id);
    expect(late.admitted.map((a) => a.jobId)).toEqual([id]);
    const after = await jobItem(h, id);
    expect(after).toMatchObject({ status: "dispatched", attempts: 2, nextAttemptAt: null });
    expect(h.events.published).toContainEqual(
      expect.objectContaining({ jobId: id, previousStatus: "retrying", status: "queued" }),
    );
    // One execution per attempt, each named by the version its admission wrote.
    expect(h.sfn.startRequests(id).map((r) => r.name)).toEqual([
      `${id}-${admitted.version}`,
      `${id}-${after.version}`,
    ]);
    expect(h.sfn.admissions(id).map((a) => a.attempt)).toEqual([1, 2]);
    expect(after.executionArn).toBe(executionArn(id, after.version));
  });

  it("marks a silent node lost: its capacity leaves the pool and no job goes there", async () => {
    // Prepare
    const pool = newPool(CPU_NODE);
    const now = h.clock.read();
    const silent = await addNode(pool, CPU_NODE, new Date(now.getTime() - (NODE_LOST_SECONDS + 5) * 1000));
    const alive = await addNode(pool, CPU_NODE, now);
    const [a = "", b = ""] = await submitWaiting(h, "alice", [
      { pool, resources: { cpu: 2, memoryMb: 512, gpu: 0 } },
      { pool, resources: { cpu: 2, memoryMb: 512, gpu: 0 } },
    ]);

    // Act
    const summary = await schedulePool(h.scheduler, pool);
    const [view] = await listPools({ pools: h.pools.filter((p) => p.name === pool), nodes: h.nodes });

    // Assess
    expect(summary.lostNodes).toEqual([silent]);
    expect(summary.admitted).toEqual([{ jobId: a, nodeId: alive }]);
    expect((await jobItem(h, b)).statusReason).toBe(`needs 2 CPU in pool ${pool}, 0 free`);
    expect(view?.capacity).toEqual(CPU_NODE);
    expect(view?.used).toEqual({ cpu: 2, memoryMb: 512, gpu: 0 });
    expect(view?.nodes.find((n) => n.id === silent)?.status).toBe("lost");
    expect(await h.nodes.heartbeat(pool, silent, now)).toBe(false);
  });

  it("reports the attempts that ran on a node gone silent as lost on their run tokens, and leaves unstarted ones", async () => {
    // Prepare: one node runs a job; a job booked there has not been taken yet
    const pool = newPool(CPU_NODE);
    const dying = await addNode(pool, CPU_NODE);
    const [running = "", booked = ""] = await submitWaiting(h, "alice", [
      { pool, resources: { cpu: 1, memoryMb: 512, gpu: 0 } },
      { pool, resources: { cpu: 1, memoryMb: 512, gpu: 0 } },
    ]);
    await schedulePool(h.scheduler, pool);
    await startOnReservedNode(h, running, `run-token-${running}`);
    expect((await jobItem(h, booked)).status).toBe("dispatched");

    // Act: the node stops heartbeating
    h.clock.advance(NODE_LOST_SECONDS + 5);
    const first = await schedulePool(h.scheduler, pool);
    // A pass before the attempt has ended reports it again: Step Functions refuses a spent token.
    h.sfn.deadTokens.add(`run-token-${running}`);
    await schedulePool(h.scheduler, pool);

    // Assess
    expect(first.lostNodes).toEqual([dying]);
    const reports = h.sfn.failures().filter((f) => f.taskToken === `run-token-${running}`);
    expect(reports[0]).toEqual({
      taskToken: `run-token-${running}`,
      error: "lost",
      cause: expect.stringContaining(`its node ${dying} stopped heartbeating`),
    });
    expect(reports).toHaveLength(2);
    // The booked job is still dispatched: any other node of the pool may take it.
    expect(h.sfn.failures().some((f) => f.taskToken.includes(booked))).toBe(false);
    expect((await jobItem(h, booked)).status).toBe("dispatched");
  });

  it("starts a job on the first free node of its pool by swapping bookings, with no node over capacity", async () => {
    // Prepare: two one-slot nodes, one job booked on each, neither started
    const SLOT = { cpu: 1, memoryMb: 1024, gpu: 0 };
    const pool = newPool(SLOT);
    const [x, y] = [await addNode(pool, SLOT), await addNode(pool, SLOT)];
    const [a = "", b = ""] = await submitWaiting(h, "alice", [
      { pool, resources: SLOT },
      { pool, resources: SLOT },
    ]);
    await schedulePool(h.scheduler, pool);
    const bookedOn = async (id: string) => (await jobItem(h, id)).reservation?.nodeId;
    const onX = (await bookedOn(a)) === x ? a : b;
    const onY = onX === a ? b : a;
    const attemptCtx = {
      repo: h.repo,
      clock: h.clock.read,
      nodesTable: h.scheduler.nodesTable,
      events: h.events,
    };
    const node = (nodeId: string) => ({ pool, nodeId, workerId: `worker-${nodeId}`, capacity: SLOT });

    // Act: node y receives the job booked on x first (they share the pool's queue)
    const swapped = await startAttempt(attemptCtx, { jobId: onX, attempt: 1, node: node(y) });
    const direct = await startAttempt(attemptCtx, { jobId: onY, attempt: 1, node: node(x) });

    // Assess: both run, each node holds one job, none was refused
    expect(swapped.outcome).toBe("started");
    expect(direct.outcome).toBe("started");
    expect(await jobItem(h, onX)).toMatchObject({ status: "running", reservation: { nodeId: y } });
    expect(await jobItem(h, onY)).toMatchObject({ status: "running", reservation: { nodeId: x } });
    expect(await nodeUsed(pool, x)).toEqual(SLOT);
    expect(await nodeUsed(pool, y)).toEqual(SLOT);
  });

  it("undoes an admission whose execution could not be started: queued again, capacity released, admitted later under a new execution", async () => {
    // Prepare
    const pool = newPool(CPU_NODE);
    const nodeId = await addNode(pool, CPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    const submitted = await jobItem(h, id);
    h.sfn.refusedStarts.add(id);

    // Act
    const summary = await schedulePool(h.scheduler, pool);
    const undone = await jobItem(h, id);
    const usedAfterUndo = await nodeUsed(pool, nodeId);
    h.sfn.refusedStarts.delete(id);
    const later = await schedulePool(h.scheduler, pool);

    // Assess
    expect(summary.undone).toEqual([id]);
    expect(summary.admitted).toEqual([]);
    expect(undone).toMatchObject({ status: "queued", attempts: 0, version: submitted.version + 2 });
    expect(undone.reservation).toBeUndefined();
    expect(undone.executionArn).toBeUndefined();
    expect(usedAfterUndo).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(h.sfn.execution(executionArn(id, submitted.version + 1))).toBeUndefined();
    // The next admission writes a new version, so its execution has a name of its own.
    expect(later.admitted).toEqual([{ jobId: id, nodeId }]);
    expect(await jobItem(h, id)).toMatchObject({
      status: "dispatched",
      attempts: 1,
      executionArn: executionArn(id, undone.version + 1),
    });
    expect(h.sfn.startRequests(id).map((r) => r.name)).toEqual([
      `${id}-${submitted.version + 1}`,
      `${id}-${undone.version + 1}`,
    ]);
    expect(h.sfn.admissions(id).map((a) => a.attempt)).toEqual([1, 1]);
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 1, memoryMb: 512, gpu: 0 });
  });

  it("answers the AwaitAdmission token a job of the previous lifecycle carries once its new execution started, and only then", async () => {
    // Prepare: a job whose execution of the previous definition waits at AwaitAdmission.
    const pool = newPool(CPU_NODE);
    const nodeId = await addNode(pool, CPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    const legacyArn = await parkLegacyAdmission(h, id);
    h.sfn.refusedStarts.add(id);
    const refused = await schedulePool(h.scheduler, pool);
    const answeredWhileRefused = h.sfn.successes().filter((s) => s.taskToken === tokenOf(id));
    h.sfn.refusedStarts.delete(id);

    // Act
    const summary = await schedulePool(h.scheduler, pool);

    // Assess: while no new execution could start, the old one kept waiting.
    expect(refused.undone).toEqual([id]);
    expect(answeredWhileRefused).toEqual([]);
    expect(summary.admitted).toEqual([{ jobId: id, nodeId }]);
    const job = await jobItem(h, id);
    expect(job.admissionToken).toBeUndefined();
    expect(job.executionArn).toBe(executionArn(id, job.version));
    expect(job.executionArn).not.toBe(legacyArn);
    const answers = h.sfn.successes().filter((s) => s.taskToken === tokenOf(id));
    expect(answers).toHaveLength(1);
    expect(notAdmittedSchema.parse(answers[0]?.output)).toEqual({
      admitted: false,
      reason: `superseded by execution ${job.executionArn}, started at admission`,
    });
  });

  it("keeps no capacity for a job cancelled while its execution was being started", async () => {
    // Prepare: the pass stops inside StartExecution, after the admission's transaction.
    const pool = newPool(CPU_NODE);
    const nodeId = await addNode(pool, CPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    const hold = h.sfn.hold(["StartExecution"]);

    // Act
    const run = schedulePool(h.scheduler, pool);
    await hold.arrived;
    const dispatched = await jobItem(h, id);
    await cancelJob(h.reconciler, { id: "alice", admin: false }, id);
    hold.release();
    await run;

    // Assess: the cancel won; the node holds nothing for the job, whatever the late start did.
    expect(dispatched).toMatchObject({
      status: "dispatched",
      executionArn: executionArn(id, dispatched.version),
    });
    const job = await jobItem(h, id);
    expect(job.status).toBe("cancelled");
    expect(job.reservation).toBeUndefined();
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    // The cancel asked Step Functions to stop the admission's execution, by the ARN the job held.
    expect(h.sfn.stops()).toContain(dispatched.executionArn);
  });

  it("places a job without a pool in a pool whose labels match its constraints", async () => {
    // Prepare: the label is this run's own, so no other pool could take the job.
    const label = { suite: `sched-${RUN}` };
    const pool = newPool(CPU_NODE, label);
    const nodeId = await addNode(pool, CPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [{ constraints: label }]);

    // Act
    const summary = await schedulePool(h.scheduler, pool);

    // Assess
    expect(summary.admitted).toEqual([{ jobId: id, nodeId }]);
    expect((await jobItem(h, id)).reservation).toMatchObject({ pool, nodeId });
  });
});

describe("an admission's execution", () => {
  it("is started once however often the start is tried: a repeat, even after the execution ended, gives the same ARN", async () => {
    // Prepare: an admission's input, as the scheduler builds it.
    const id = `job_${suffix()}`;
    const input: DispatchInput = {
      jobId: id,
      pool: "p",
      nodeId: "n",
      queueUrl: h.queueUrl("p", "normal"),
      attempt: 1,
      timeoutSeconds: 60 + LOST_AFTER_SECONDS + 30,
      heartbeatSeconds: HEARTBEAT_SECONDS,
      lostAfterSeconds: LOST_AFTER_SECONDS,
    };

    // Act: an at-least-once caller tries the start again while it runs, and after it ended.
    const first = await h.executions.start(id, 2, input);
    const again = await h.executions.start(id, 2, input);
    h.sfn.endExecution(first ?? "", "SUCCEEDED");
    const afterEnd = await h.executions.start(id, 2, input);

    // Assess
    expect(first).toBe(executionArn(id, 2));
    expect(h.executions.arnOf(id, 2)).toBe(first);
    expect(again).toBe(first);
    expect(afterEnd).toBe(first);
    expect(h.sfn.startRequests(id)).toHaveLength(3);
    // One execution, not run again.
    expect(h.sfn.execution(first ?? "")).toMatchObject({ name: `${id}-2`, status: "SUCCEEDED" });
  });
});

describe("poolsToSchedule", () => {
  const configured: PoolConfig[] = [
    { name: "cpu", labels: {}, nodes: 1, node: CPU_NODE },
    { name: "gpu", labels: {}, nodes: 1, node: GPU_NODE },
  ];

  it("schedules the event's pool, every pool for a job without one, and every pool on the sweep", () => {
    const change = (pool: string | null) => ({
      source: "jobq",
      "detail-type": "Job State Change",
      detail: { jobId: "job_1", pool, status: "queued" },
    });
    const sweep = { source: "aws.events", "detail-type": "Scheduled Event", detail: {} };
    expect(poolsToSchedule(change("gpu"), configured)).toEqual(["gpu"]);
    expect(poolsToSchedule(change(null), configured)).toEqual(["cpu", "gpu"]);
    expect(poolsToSchedule(sweep, configured)).toEqual(["cpu", "gpu"]);
  });
});

describe("GET /pools", () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi();
  });
  afterAll(() => api?.close());

  it("lists each configured pool with its labels, capacity, use and nodes", async () => {
    // Prepare: a node in the shared tables' gpu pool (the default pools), removed afterwards.
    const nodeId = `node-${suffix()}`;
    await handlerNodes().register(
      { pool: "gpu", nodeId, workerId: `worker-${nodeId}`, capacity: GPU_NODE },
      new Date(),
    );

    try {
      // Act
      const response = await api.request<{ items: Record<string, unknown>[]; nextCursor: null }>(
        "GET",
        "/pools",
        {
          token: "alice-token",
        },
      );

      // Assess
      expect(response.status).toBe(200);
      expect(response.json.nextCursor).toBeNull();
      expect(response.json.items.map((p) => p.name)).toEqual(["cpu", "gpu"]);
      const gpu = response.json.items.find((p) => p.name === "gpu");
      expect(gpu).toMatchObject({
        name: "gpu",
        labels: {},
        capacity: { cpu: expect.any(Number), memoryMb: expect.any(Number), gpu: expect.any(Number) },
        used: { cpu: expect.any(Number), memoryMb: expect.any(Number), gpu: expect.any(Number) },
      });
      expect(Object.keys(gpu ?? {})).toEqual(["name", "labels", "capacity", "used", "nodes"]);
      const mine = ((gpu?.nodes ?? []) as Record<string, unknown>[]).find((n) => n.id === nodeId);
      expect(mine).toEqual({
        id: nodeId,
        capacity: GPU_NODE,
        used: { cpu: 0, memoryMb: 0, gpu: 0 },
        status: "up",
        lastHeartbeatAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        // Nobody drained it (POST /pools/{pool}/nodes/{id}/drain sets both).
        drainedBy: null,
        drainedAt: null,
      });
    } finally {
      await handlerNodes().deregister("gpu", nodeId);
    }
  });

  it("answers 401 without a token", async () => {
    const response = await api.request("GET", "/pools");
    expect(response.status).toBe(401);
  });
});

/** The Nodes table the API handlers use (the shared test tables). */
function handlerNodes(): NodeRepository {
  const tables = inject("tables");
  const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
  return new NodeRepository(db, tables.Nodes ?? "");
}
