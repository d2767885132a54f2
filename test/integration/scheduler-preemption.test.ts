import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelJob } from "../../app/actions";
import { notAdmittedSchema } from "../../app/lifecycle";
import { schedulePool } from "../../app/scheduler";
import { attemptSk, jobPk } from "../../store/keys";
import {
  type Harness,
  heartbeatNodes,
  jobItem,
  ownTables,
  parkLegacyAdmission,
  registerNode,
  schedulerFor,
  startHarness,
  startOnReservedNode,
  submitWaiting,
  suffix,
  tokenOf,
} from "../support/scheduling";

/**
 * Deadlines and preemption at the level of a scheduling pass (API.md "Queue, pools, policy,
 * quotas", POST /jobs `deadline`; issue 4), against DynamoDB Local with a clock the test moves:
 * the sweep fails jobs not started by their deadline; with preemption on, a queued job evicts
 * running jobs of strictly lower priority, and only when it then fits, and not a job evicted
 * within the cool-down.
 */

const RUN = suffix();
const OPS = { id: "ops", admin: true };
let h: Harness;

const CPU_NODE = { cpu: 2, memoryMb: 4096, gpu: 0 };
const WHOLE_NODE = { cpu: 2, memoryMb: 1024, gpu: 0 };
const PREEMPTION = { preemption: { enabled: true, cooldownSeconds: 300 } };

function newPool(node: { cpu: number; memoryMb: number; gpu: number }): string {
  const name = `p${suffix()}`;
  h.addPool({ name, labels: {}, nodes: 1, node });
  return name;
}

function inFuture(seconds: number): string {
  return new Date(h.clock.read().getTime() + seconds * 1000).toISOString();
}

async function attempt(jobId: string, n: number) {
  return h.repo.getItem({ pk: jobPk(jobId), sk: attemptSk(n) });
}

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-preempt-${RUN}-`));
});
afterAll(() => h?.close());

describe("deadlines", () => {
  it("fails queued, blocked and scheduled jobs not started by their deadline, ends a previous lifecycle's executions waiting for them and cancels dependents", async () => {
    // Prepare: a pool without nodes, so nothing starts; deadlines a minute away.
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool]);
    const owner = `alice-${suffix()}`;
    const [parent = ""] = await submitWaiting(h, owner, [{ pool }]);
    const [queued = "", blocked = "", scheduled = ""] = await submitWaiting(h, owner, [
      { pool, deadline: inFuture(60) },
      { pool, deadline: inFuture(60), dependsOn: [parent] },
      { pool, deadline: inFuture(60), runAt: inFuture(7200) },
    ]);
    const [dependent = ""] = await submitWaiting(h, owner, [{ pool, dependsOn: [queued] }]);
    // Two wait on executions of the previous definition (parked at AwaitAdmission); the blocked
    // one, as every job submitted now, has no execution while it waits.
    await parkLegacyAdmission(h, queued);
    await parkLegacyAdmission(h, scheduled);
    const before = await Promise.all([queued, blocked, scheduled].map((id) => jobItem(h, id)));
    const early = await schedulePool(ctx, pool);

    // Act
    h.clock.advance(61);
    const late = await schedulePool(ctx, pool);

    // Assess
    expect(before.map((j) => j.status)).toEqual(["queued", "blocked", "scheduled"]);
    expect(early.expired).toEqual([]);
    expect([...late.expired].sort()).toEqual([queued, blocked, scheduled].sort());
    for (const id of [queued, blocked, scheduled]) {
      const job = await jobItem(h, id);
      expect(job).toMatchObject({
        status: "failed",
        reasonCode: "deadline_exceeded",
        error: { type: "deadline_exceeded" },
      });
      expect(job.statusReason).toMatch(/^deadline_exceeded/);
      expect(job.admissionToken).toBeUndefined();
      // Nothing was started for a job that ended before its admission.
      expect(h.sfn.startRequests(id)).toEqual([]);
    }
    for (const id of [queued, scheduled]) {
      const answers = h.sfn.successes().filter((s) => s.taskToken === tokenOf(id));
      expect(answers).toHaveLength(1);
      expect(notAdmittedSchema.parse(answers[0]?.output).admitted).toBe(false);
    }
    expect(h.sfn.successes().filter((s) => s.taskToken === tokenOf(blocked))).toEqual([]);
    expect((await jobItem(h, dependent)).status).toBe("cancelled");
    expect((await jobItem(h, parent)).status).toBe("queued");
    expect(h.events.published).toContainEqual(
      expect.objectContaining({ jobId: queued, previousStatus: "queued", status: "failed" }),
    );
  });

  it("leaves a job that started before its deadline running", async () => {
    // Prepare
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool]);
    const nodeId = await registerNode(h, pool, CPU_NODE);
    const [id = ""] = await submitWaiting(h, `alice-${suffix()}`, [{ pool, deadline: inFuture(60) }]);
    await schedulePool(ctx, pool);
    await startOnReservedNode(h, id);

    // Act
    h.clock.advance(61);
    await heartbeatNodes(h, pool, [nodeId]);
    const late = await schedulePool(ctx, pool);

    // Assess
    expect(late.expired).toEqual([]);
    expect((await jobItem(h, id)).status).toBe("running");
  });
});

describe("preemption", () => {
  it("evicts a running lower-priority job for a critical one: queued again, attempt preempted, failures unchanged, its execution stopped and none started for it, capacity to the critical job", async () => {
    // Prepare: a low-priority job running fills the node; a critical job queues behind it.
    const pool = newPool(CPU_NODE);
    const nodeId = await registerNode(h, pool, CPU_NODE);
    const owner = `alice-${suffix()}`;
    const [low = ""] = await submitWaiting(h, owner, [{ pool, resources: WHOLE_NODE, priority: -5 }]);
    await schedulePool(schedulerFor(h, [pool]), pool);
    const running = await startOnReservedNode(h, low);
    const [critical = ""] = await submitWaiting(h, owner, [{ pool, resources: WHOLE_NODE, priority: 10 }]);
    const off = await schedulePool(schedulerFor(h, [pool]), pool);
    const afterOff = await jobItem(h, low);
    const stoppedBefore = h.sfn.stops().length;

    // Act
    const pass = await schedulePool(schedulerFor(h, [pool], PREEMPTION), pool);

    // Assess: with preemption off nothing happened; on, the low job was evicted and the critical admitted.
    expect(off.preempted).toEqual([]);
    expect(off.waiting.map((w) => w.jobId)).toEqual([critical]);
    expect(afterOff.status).toBe("running");
    expect(pass.preempted).toEqual([{ jobId: low, preemptor: critical }]);
    expect(pass.admitted).toEqual([{ jobId: critical, nodeId }]);
    const evicted = await jobItem(h, low);
    expect(evicted).toMatchObject({ status: "queued", attempts: running.attempts });
    // The eviction's reason is in its event, its transition and (API.md) on the job: the evicted
    // job is admit-able at once, but the passes right after keep "preempted by" for a while.
    expect(h.events.published).toContainEqual(
      expect.objectContaining({
        jobId: low,
        previousStatus: "running",
        status: "queued",
        statusReason: `preempted by ${critical}`,
      }),
    );
    const transitions = await h.repo.queryJobPartition(low, "TRN#", { limit: 20 });
    expect(transitions.items.at(-1)).toMatchObject({
      from: "running",
      to: "queued",
      reason: `preempted by ${critical}`,
    });
    expect(evicted).toMatchObject({ statusReason: `preempted by ${critical}`, reasonCode: "preempted" });
    expect(evicted.failures ?? 0).toBe(running.failures ?? 0);
    expect(evicted.reservation).toBeUndefined();
    expect(evicted.preemptedAt).toBe(h.clock.read().toISOString());
    expect(await attempt(low, running.attempts)).toMatchObject({
      status: "preempted",
      error: { type: "preempted" },
    });
    expect(h.sfn.stops().slice(stoppedBefore)).toEqual([running.executionArn]);
    expect(h.sfn.execution(running.executionArn ?? "")?.status).toBe("ABORTED");
    // Waiting again, it has no execution until the scheduler admits it: one start, its first admission.
    expect(evicted.executionArn).toBeUndefined();
    expect(h.sfn.admissions(low).map((a) => a.attempt)).toEqual([1]);
    expect(h.sfn.admissions(critical).map((a) => a.nodeId)).toEqual([nodeId]);
    expect((await h.nodes.getNode(pool, nodeId))?.used).toEqual(WHOLE_NODE);
    expect(await jobItem(h, critical)).toMatchObject({ status: "dispatched", reservation: { pool, nodeId } });
    expect(h.events.published).toContainEqual(
      expect.objectContaining({ jobId: low, previousStatus: "running", status: "queued" }),
    );
  });

  it("does not evict a job preempted within the cool-down, and does after it", async () => {
    // Prepare: low is evicted by a first critical job, which is then cancelled; low is admitted
    // and started again; a second critical job arrives a minute later.
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool], PREEMPTION);
    const nodeId = await registerNode(h, pool, CPU_NODE);
    const owner = `alice-${suffix()}`;
    const [low = ""] = await submitWaiting(h, owner, [{ pool, resources: WHOLE_NODE, priority: -5 }]);
    await schedulePool(ctx, pool);
    await startOnReservedNode(h, low);
    const [critical1 = ""] = await submitWaiting(h, owner, [{ pool, resources: WHOLE_NODE, priority: 10 }]);
    const first = await schedulePool(ctx, pool);
    await cancelJob(h.reconciler, OPS, critical1);
    const readmitted = await schedulePool(ctx, pool);
    await startOnReservedNode(h, low);
    h.clock.advance(60);
    await heartbeatNodes(h, pool, [nodeId]);
    const [critical2 = ""] = await submitWaiting(h, owner, [{ pool, resources: WHOLE_NODE, priority: 10 }]);

    // Act
    const cooling = await schedulePool(ctx, pool);
    const stillRunning = await jobItem(h, low);
    h.clock.advance(300);
    await heartbeatNodes(h, pool, [nodeId]);
    const cooled = await schedulePool(ctx, pool);

    // Assess
    expect(first.preempted).toEqual([{ jobId: low, preemptor: critical1 }]);
    expect(readmitted.admitted).toEqual([{ jobId: low, nodeId }]);
    expect(cooling.preempted).toEqual([]);
    expect(stillRunning).toMatchObject({ status: "running", attempts: 2 });
    expect((await jobItem(h, critical2)).status).toBe("dispatched");
    expect(cooled.preempted).toEqual([{ jobId: low, preemptor: critical2 }]);
    expect(cooled.admitted).toEqual([{ jobId: critical2, nodeId }]);
    expect(await attempt(low, 2)).toMatchObject({ status: "preempted" });
  });

  it("never evicts a job of equal priority", async () => {
    // Prepare
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool], PREEMPTION);
    await registerNode(h, pool, CPU_NODE);
    const owner = `alice-${suffix()}`;
    const [runningJob = ""] = await submitWaiting(h, owner, [{ pool, resources: WHOLE_NODE, priority: 5 }]);
    await schedulePool(ctx, pool);
    await startOnReservedNode(h, runningJob);
    const [waitingJob = ""] = await submitWaiting(h, owner, [{ pool, resources: WHOLE_NODE, priority: 5 }]);

    // Act
    const pass = await schedulePool(ctx, pool);

    // Assess
    expect(pass.preempted).toEqual([]);
    expect(pass.admitted).toEqual([]);
    expect((await jobItem(h, runningJob)).status).toBe("running");
    expect((await jobItem(h, waitingJob)).status).toBe("queued");
  });

  it("evicts nothing for a job that would not fit even after evicting every lower-priority job", async () => {
    // Prepare: a 4-CPU node runs a low 1-CPU job and a critical 3-CPU one; a critical 2-CPU job
    // queues. Evicting the low job frees 1 CPU: not enough.
    const node = { cpu: 4, memoryMb: 8192, gpu: 0 };
    const pool = newPool(node);
    const ctx = schedulerFor(h, [pool], PREEMPTION);
    await registerNode(h, pool, node);
    const owner = `alice-${suffix()}`;
    const [low = "", big = ""] = await submitWaiting(h, owner, [
      { pool, resources: { cpu: 1, memoryMb: 512, gpu: 0 }, priority: -5 },
      { pool, resources: { cpu: 3, memoryMb: 512, gpu: 0 }, priority: 10 },
    ]);
    await schedulePool(ctx, pool);
    await startOnReservedNode(h, low);
    await startOnReservedNode(h, big);
    const [preemptor = ""] = await submitWaiting(h, owner, [
      { pool, resources: { cpu: 2, memoryMb: 512, gpu: 0 }, priority: 10 },
    ]);

    // Act
    const pass = await schedulePool(ctx, pool);

    // Assess
    expect(pass.preempted).toEqual([]);
    expect((await jobItem(h, low)).status).toBe("running");
    expect((await jobItem(h, big)).status).toBe("running");
    expect((await jobItem(h, preemptor)).status).toBe("queued");
  });
});
