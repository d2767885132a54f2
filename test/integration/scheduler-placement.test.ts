import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { cancelJob } from "../../app/actions";
import { getJobView } from "../../app/queries";
import { getQueue } from "../../app/queue";
import { runScheduler, schedulePool } from "../../app/scheduler";
import { TRANSITION_PREFIX } from "../../store/keys";
import {
  type Harness,
  jobItem,
  ownTables,
  registerNode,
  schedulerFor,
  startHarness,
  submitWaiting,
  suffix,
} from "../support/scheduling";

/**
 * Placement and why-pending at the level of a scheduling pass (API.md "Queue, pools, policy,
 * quotas", GET /jobs statusReason; issue 4), against DynamoDB Local: where a job without a pool
 * goes, which pool and node among several and why (recorded on the dispatched transition), and
 * the reasons waiting jobs carry — written when they change, not on every pass.
 */

const RUN = suffix();
const OPS = { id: "ops", admin: true };
let h: Harness;

const CPU_NODE = { cpu: 2, memoryMb: 4096, gpu: 0 };
const GPU_NODE = { cpu: 8, memoryMb: 32768, gpu: 2 };
const ONE_CPU = { cpu: 1, memoryMb: 512, gpu: 0 };
const WHOLE_NODE = { cpu: 2, memoryMb: 512, gpu: 0 };

function newPool(
  node: { cpu: number; memoryMb: number; gpu: number },
  labels: Record<string, string> = {},
  nodes = 1,
): string {
  const name = `p${suffix()}`;
  h.addPool({ name, labels, nodes, node });
  return name;
}

/** Labels no other test's pool has: a job constrained to them can only go to this test's pools. */
function ownLabels(extra: Record<string, string> = {}): Record<string, string> {
  return { suite: `placement-${RUN}-${suffix()}`, ...extra };
}

async function dispatchedReason(jobId: string): Promise<string | undefined> {
  const transitions = await h.repo.queryJobPartition(jobId, TRANSITION_PREFIX, { limit: 20 });
  const dispatched = transitions.items.find((t) => t.to === "dispatched");
  return typeof dispatched?.reason === "string" ? dispatched.reason : undefined;
}

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-place-${RUN}-`));
});
afterAll(() => h?.close());

describe("placement", () => {
  it("sends a job without a pool to the pool whose labels match its constraints", async () => {
    // Prepare: zone a and zone b, each with room; the job asks for zone b.
    const suite = ownLabels();
    const zoneA = newPool(CPU_NODE, { ...suite, zone: "a" });
    const zoneB = newPool(CPU_NODE, { ...suite, zone: "b" });
    const ctx = schedulerFor(h, [zoneA, zoneB]);
    await registerNode(h, zoneA, CPU_NODE);
    const nodeB = await registerNode(h, zoneB, CPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [{ constraints: { ...suite, zone: "b" } }]);

    // Act
    const [passA, passB] = await runScheduler(ctx, [zoneA, zoneB]);

    // Assess: zone a's pass neither admitted it nor counted it as waiting there.
    expect(passA?.admitted).toEqual([]);
    expect(passA?.waiting.map((w) => w.jobId)).not.toContain(id);
    expect(passB?.admitted).toEqual([{ jobId: id, nodeId: nodeB }]);
    expect((await jobItem(h, id)).reservation).toMatchObject({ pool: zoneB, nodeId: nodeB });
  });

  it("chooses, among eligible pools, the one with the most free of the job's dominant resource, and says so on the dispatched transition", async () => {
    // Prepare: pool `roomy` has the bigger node but only 2 CPUs free; pool `small` has 4 free.
    const labels = ownLabels();
    const roomyNode = { cpu: 8, memoryMb: 16384, gpu: 0 };
    const smallNode = { cpu: 4, memoryMb: 16384, gpu: 0 };
    const roomy = newPool(roomyNode, labels);
    const small = newPool(smallNode, labels);
    const ctx = schedulerFor(h, [roomy, small]);
    const roomyId = await registerNode(h, roomy, roomyNode);
    const smallId = await registerNode(h, small, smallNode);
    const [filler = ""] = await submitWaiting(h, "alice", [
      { pool: roomy, resources: { cpu: 6, memoryMb: 512, gpu: 0 } },
    ]);
    await schedulePool(ctx, roomy);
    const [id = ""] = await submitWaiting(h, "alice", [{ constraints: labels, resources: ONE_CPU }]);

    // Act
    const passes = await runScheduler(ctx, [roomy, small]);

    // Assess
    expect((await jobItem(h, filler)).reservation).toMatchObject({ pool: roomy, nodeId: roomyId });
    expect(passes.flatMap((p) => p.admitted)).toEqual([{ jobId: id, nodeId: smallId }]);
    const job = await jobItem(h, id);
    expect(job.reservation).toMatchObject({ pool: small, nodeId: smallId });
    const reason = await dispatchedReason(id);
    expect(reason).toContain(`node ${smallId}`);
    expect(reason).toContain(`pool ${small}`);
    expect(reason).toMatch(/most free CPU/);
    // The job says where; why is the transition's to say.
    expect(job.statusReason).toBe(`dispatched to node ${smallId} in pool ${small}`);
    expect(reason?.startsWith(`${job.statusReason}: `)).toBe(true);
  });

  it("sends a CPU job to a pool without GPUs before a GPU pool with more free CPU", async () => {
    // Prepare
    const labels = ownLabels();
    const gpuPool = newPool(GPU_NODE, labels);
    const cpuPool = newPool(CPU_NODE, labels);
    const ctx = schedulerFor(h, [gpuPool, cpuPool]);
    await registerNode(h, gpuPool, GPU_NODE);
    const cpuNode = await registerNode(h, cpuPool, CPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [{ constraints: labels, resources: ONE_CPU }]);

    // Act
    const passes = await runScheduler(ctx, [gpuPool, cpuPool]);

    // Assess
    expect(passes.flatMap((p) => p.admitted)).toEqual([{ jobId: id, nodeId: cpuNode }]);
    expect(await dispatchedReason(id)).toContain("without GPUs");
  });

  it("places GPU jobs best fit (filling a node before starting another) and spreads CPU jobs", async () => {
    // Prepare: two 2-GPU nodes and two 1-GPU jobs; two 2-CPU nodes and two 1-CPU jobs.
    const gpuPool = newPool(GPU_NODE, {}, 2);
    const cpuPool = newPool({ cpu: 2, memoryMb: 4096, gpu: 0 }, {}, 2);
    const ctx = schedulerFor(h, [gpuPool, cpuPool]);
    await registerNode(h, gpuPool, GPU_NODE);
    await registerNode(h, gpuPool, GPU_NODE);
    await registerNode(h, cpuPool, CPU_NODE);
    await registerNode(h, cpuPool, CPU_NODE);
    const oneGpu = { cpu: 1, memoryMb: 1024, gpu: 1 };
    const gpuJobs = await submitWaiting(h, "alice", [
      { pool: gpuPool, resources: oneGpu },
      { pool: gpuPool, resources: oneGpu },
    ]);
    const cpuJobs = await submitWaiting(h, "alice", [
      { pool: cpuPool, resources: ONE_CPU },
      { pool: cpuPool, resources: ONE_CPU },
    ]);

    // Act
    const [gpuPass, cpuPass] = await runScheduler(ctx, [gpuPool, cpuPool]);

    // Assess
    // Admissions on different nodes are written in parallel: the summary's order is theirs.
    expect(gpuPass?.admitted.map((a) => a.jobId).sort()).toEqual([...gpuJobs].sort());
    expect(new Set(gpuPass?.admitted.map((a) => a.nodeId)).size).toBe(1);
    expect(cpuPass?.admitted.map((a) => a.jobId).sort()).toEqual([...cpuJobs].sort());
    expect(new Set(cpuPass?.admitted.map((a) => a.nodeId)).size).toBe(2);
    expect(await dispatchedReason(gpuJobs[1] ?? "")).toMatch(/best fit for 1 GPU/);
    expect(await dispatchedReason(cpuJobs[1] ?? "")).toMatch(/spread/);
  });
});

describe("why a queued job waits", () => {
  it("gives the first job waiting for capacity `resources`; one behind it keeps `pending`, read as `priority` with the jobs ahead counted", async () => {
    // Prepare: three jobs that each fill the node.
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool]);
    await registerNode(h, pool, CPU_NODE);
    const [first = "", second = "", third = ""] = await submitWaiting(h, "alice", [
      { pool, resources: WHOLE_NODE },
      { pool, resources: WHOLE_NODE },
      { pool, resources: WHOLE_NODE },
    ]);

    // Act
    const pass = await schedulePool(ctx, pool);

    // Assess
    const need = `needs 2 CPU in pool ${pool}, 0 free`;
    expect(pass.admitted.map((a) => a.jobId)).toEqual([first]);
    expect(await jobItem(h, second)).toMatchObject({
      status: "queued",
      reasonCode: "resources",
      statusReason: need,
    });
    // Stored as queued: writing "waiting behind" into every job of a backlog would cost 4 write
    // units a job; GET /jobs/{id} says it, with the count it finds (core/reasons.ts queuedReason).
    expect(await jobItem(h, third)).toMatchObject({
      status: "queued",
      reasonCode: "pending",
      statusReason: "waiting for admission",
    });
    expect(await getJobView(h.reconciler, OPS, third)).toMatchObject({
      status: "queued",
      reasonCode: "priority",
      statusReason: "waiting behind 1 job ahead of it in the queue",
      queuePosition: 2,
    });
  });

  it("GET /queue reads a job that only waits its turn with the jobs ahead of it that share its pool", async () => {
    // Prepare: in pool a, one job running and two behind it; in pool b, a more urgent job
    // listed first, which waits for nobody in pool a.
    const [a, b] = [newPool(CPU_NODE), newPool(CPU_NODE)];
    const ctx = schedulerFor(h, [a, b]);
    await registerNode(h, a, CPU_NODE);
    const [, second = "", third = ""] = await submitWaiting(h, "alice", [
      { pool: a, resources: WHOLE_NODE },
      { pool: a, resources: WHOLE_NODE },
      { pool: a, resources: WHOLE_NODE },
    ]);
    await schedulePool(ctx, a);
    const [urgent = ""] = await submitWaiting(h, "alice", [{ pool: b, priority: 5, resources: WHOLE_NODE }]);

    // Act
    const queue = await getQueue(ctx, OPS, undefined);

    // Assess
    const listed = Object.fromEntries(queue.queued.map((q) => [q.id, q]));
    expect(queue.queued.map((q) => q.id)).toEqual([urgent, second, third]);
    expect(listed[urgent]).toMatchObject({
      position: 1,
      reasonCode: "pending",
      statusReason: "waiting for admission",
    });
    expect(listed[second]).toMatchObject({
      position: 2,
      reasonCode: "resources",
      statusReason: `needs 2 CPU in pool ${a}, 0 free`,
    });
    expect(listed[third]).toMatchObject({
      position: 3,
      reasonCode: "priority",
      statusReason: "waiting behind 1 job ahead of it in the queue",
    });
  });

  it("writes a waiting job's reason once, without a version bump, and again only when it changes", async () => {
    // Prepare
    const pool = newPool(CPU_NODE);
    const ctx = schedulerFor(h, [pool]);
    await registerNode(h, pool, CPU_NODE);
    const [first = "", second = "", third = ""] = await submitWaiting(h, "alice", [
      { pool, resources: WHOLE_NODE },
      { pool, resources: WHOLE_NODE },
      { pool, resources: WHOLE_NODE },
    ]);
    const beforeFirstPass = await jobItem(h, second);
    const reasonWrites: string[] = [];
    const setWaitingReasons = h.repo.setWaitingReasons.bind(h.repo);
    const spy = vi.spyOn(h.repo, "setWaitingReasons").mockImplementation(async (updates) => {
      reasonWrites.push(...updates.map((u) => `JOB#${u.id}`));
      return setWaitingReasons(updates);
    });

    // Act
    let writes: { first: string[]; steady: string[]; changed: string[] };
    let afterFirstPass: Awaited<ReturnType<typeof jobItem>>;
    let afterSteadyPass: Awaited<ReturnType<typeof jobItem>>;
    try {
      await schedulePool(ctx, pool);
      const firstWrites = reasonWrites.splice(0);
      afterFirstPass = await jobItem(h, second);
      await schedulePool(ctx, pool);
      const steadyWrites = reasonWrites.splice(0);
      afterSteadyPass = await jobItem(h, second);
      await cancelJob(h.reconciler, OPS, first);
      await schedulePool(ctx, pool);
      writes = { first: firstWrites, steady: steadyWrites, changed: reasonWrites.splice(0) };
    } finally {
      spy.mockRestore();
    }

    // Assess: the first pass wrote the reason of the job first in line (the third only waits its
    // turn: it keeps the reason it was queued with), the steady one nothing; once the second job
    // was admitted, the third job's reason changed (it is now first in line).
    expect(writes.first).toEqual([`JOB#${second}`]);
    expect(writes.steady).toEqual([]);
    expect(writes.changed).toEqual([`JOB#${third}`]);
    expect(afterFirstPass.version).toBe(beforeFirstPass.version);
    expect(afterFirstPass.reasonCode).toBe("resources");
    expect(afterSteadyPass).toEqual(afterFirstPass);
    expect(await jobItem(h, second)).toMatchObject({ status: "dispatched" });
    expect(await jobItem(h, third)).toMatchObject({
      status: "queued",
      reasonCode: "resources",
      statusReason: `needs 2 CPU in pool ${pool}, 0 free`,
    });
  });
});
