import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { NodeView, QueuedJob } from "../../core/admission";
import type { Resources } from "../../core/job";
import { applyPlan, type PreemptionInput, planPreemption, type RunningJob } from "../../core/preemption";

const NOW = new Date("2026-11-25T12:00:00.000Z");
const GPU_NODE: Resources = { cpu: 8, memoryMb: 32768, gpu: 4 };

function secondsAgo(seconds: number): string {
  return new Date(NOW.getTime() - seconds * 1000).toISOString();
}

function queued(id: string, priority: number, resources: Partial<Resources> = {}): QueuedJob {
  return {
    id,
    priority,
    resources: { cpu: 1, memoryMb: 1024, gpu: 0, ...resources },
    pool: "gpu",
    constraints: {},
    queuedAt: secondsAgo(10),
    owner: "alice",
    type: "train",
  };
}

function running(
  id: string,
  nodeId: string,
  priority: number,
  resources: Partial<Resources> = {},
  extra: Partial<RunningJob> = {},
): RunningJob {
  return {
    id,
    owner: "bob",
    type: "train",
    priority,
    pool: "gpu",
    nodeId,
    resources: { cpu: 1, memoryMb: 1024, gpu: 0, ...resources },
    startedAt: secondsAgo(600),
    preemptedAt: null,
    ...extra,
  };
}

/** Nodes whose free capacity is what the given running jobs leave. */
function nodesFor(ids: readonly string[], runs: readonly RunningJob[], capacity = GPU_NODE): NodeView[] {
  return ids.map((nodeId) => {
    const free = { ...capacity };
    for (const run of runs.filter((r) => r.nodeId === nodeId)) {
      free.cpu -= run.resources.cpu;
      free.memoryMb -= run.resources.memoryMb;
      free.gpu -= run.resources.gpu;
    }
    return { nodeId, pool: "gpu", capacity, free };
  });
}

function plan(job: QueuedJob, runs: readonly RunningJob[], nodeIds = ["n1"], cooldownSeconds = 300) {
  const input: PreemptionInput = {
    job,
    nodes: nodesFor(nodeIds, runs),
    running: runs,
    now: NOW,
    cooldownSeconds,
  };
  return planPreemption(input);
}

const victimIds = (p: ReturnType<typeof planPreemption>): string[] | null =>
  p?.victims.map((v) => v.id) ?? null;

describe("planPreemption", () => {
  it("evicts only jobs of strictly lower priority", () => {
    // Prepare: the node's 4 GPUs are held by a job of equal priority and one of lower
    const runs = [running("r1", "n1", 5, { gpu: 2 }), running("r2", "n1", 0, { gpu: 2 })];

    // Act
    const needsTwo = plan(queued("q1", 5, { gpu: 2 }), runs);
    const needsFour = plan(queued("q2", 5, { gpu: 4 }), runs);

    // Assess
    expect(victimIds(needsTwo)).toEqual(["r2"]);
    expect(needsFour).toBeNull();
  });

  it("plans the preemptor onto the node it frees", () => {
    // Prepare
    const runs = [running("r1", "n1", 0, { gpu: 4 })];

    // Act
    const p = plan(queued("q1", 10, { gpu: 4 }), runs);

    // Assess
    expect(p).toEqual({ preemptor: "q1", pool: "gpu", nodeId: "n1", victims: [runs[0]] });
  });

  it("does not evict a job preempted within the cool-down", () => {
    // Prepare
    const runs = [
      running("r1", "n1", 0, { gpu: 2 }, { preemptedAt: secondsAgo(100) }),
      running("r2", "n1", 0, { gpu: 2 }, { preemptedAt: secondsAgo(400) }),
    ];

    // Act
    const twoGpus = plan(queued("q1", 10, { gpu: 2 }), runs);
    const fourGpus = plan(queued("q2", 10, { gpu: 4 }), runs);
    const noCooldown = plan(queued("q3", 10, { gpu: 4 }), runs, ["n1"], 0);

    // Assess
    expect(victimIds(twoGpus)).toEqual(["r2"]);
    expect(fourGpus).toBeNull();
    expect(victimIds(noCooldown)?.sort()).toEqual(["r1", "r2"]);
  });

  it("plans nothing when the job would not fit even after every eviction", () => {
    // Prepare: one GPU is held by a critical job, so 4 never come free
    const runs = [running("r1", "n1", 10, { gpu: 1 }), running("r2", "n1", 0, { gpu: 3 })];

    // Act
    const p = plan(queued("q1", 5, { gpu: 4 }), runs);

    // Assess
    expect(p).toBeNull();
  });

  it("plans nothing for a job bigger than any node, or one that already fits", () => {
    // Prepare
    const runs = [running("r1", "n1", 0, { gpu: 2 })];

    // Act
    const tooBig = plan(queued("q1", 10, { gpu: 8 }), runs);
    const fits = plan(queued("q2", 10, { gpu: 2 }), runs);

    // Assess
    expect(tooBig).toBeNull();
    expect(fits).toBeNull();
  });

  it("takes victims lowest priority first, then most recently started, not-yet-started first", () => {
    // Prepare: four 1-GPU jobs; the job needs three GPUs
    const runs = [
      running("old-low", "n1", -5, { gpu: 1 }, { startedAt: secondsAgo(3600) }),
      running("new-normal", "n1", 0, { gpu: 1 }, { startedAt: secondsAgo(60) }),
      running("dispatched-normal", "n1", 0, { gpu: 1 }, { startedAt: null }),
      running("old-normal", "n1", 0, { gpu: 1 }, { startedAt: secondsAgo(3600) }),
    ];

    // Act
    const p = plan(queued("q1", 10, { gpu: 3 }), runs);

    // Assess
    expect(victimIds(p)).toEqual(["old-low", "dispatched-normal", "new-normal"]);
  });

  it("skips victims that free nothing the job is short of, and spares those a bigger victim covers", () => {
    // Prepare: the job needs 4 GPUs; two CPU jobs and two small GPU jobs go before a 4-GPU job
    const capacity = { cpu: 16, memoryMb: 65536, gpu: 4 };
    const runs = [
      running("cpu-only", "n1", -10, { cpu: 4 }),
      running("gpu-1", "n1", -5, { gpu: 1 }),
      running("gpu-4", "n1", 0, { gpu: 3 }),
    ];
    const job = queued("q1", 10, { gpu: 3 });

    // Act
    const p = planPreemption({
      job,
      nodes: nodesFor(["n1"], runs, capacity),
      running: runs,
      now: NOW,
      cooldownSeconds: 300,
    });

    // Assess: gpu-1 and gpu-4 free 4; gpu-4 alone frees 3, enough
    expect(victimIds(p)).toEqual(["gpu-4"]);
  });

  it("chooses the node needing the fewest victims, then the lowest priority, then the least work lost", () => {
    // Prepare
    const runs = [
      running("a1", "n1", -10, { gpu: 2 }),
      running("a2", "n1", -10, { gpu: 2 }),
      running("b1", "n2", 0, { gpu: 4 }),
      running("c1", "n3", -5, { gpu: 4 }, { startedAt: secondsAgo(7200) }),
      running("d1", "n4", -5, { gpu: 4 }, { startedAt: secondsAgo(60) }),
    ];

    // Act
    const p = plan(queued("q1", 10, { gpu: 4 }), runs, ["n1", "n2", "n3", "n4"]);

    // Assess: n1 needs two victims; n2's victim has priority 0; d1 has run for a minute, c1 for two hours
    expect(p?.nodeId).toBe("n4");
    expect(victimIds(p)).toEqual(["d1"]);
  });

  it("considers only running jobs in the node's pool", () => {
    // Prepare: a job recorded in another pool on a node of the same name is not this node's
    const runs = [running("r1", "n1", 0, { gpu: 4 }, { pool: "other" })];
    const nodes: NodeView[] = [
      { nodeId: "n1", pool: "gpu", capacity: GPU_NODE, free: { cpu: 8, memoryMb: 32768, gpu: 0 } },
    ];

    // Act
    const p = planPreemption({
      job: queued("q1", 10, { gpu: 4 }),
      nodes,
      running: runs,
      now: NOW,
      cooldownSeconds: 0,
    });

    // Assess
    expect(p).toBeNull();
  });
});

describe("applyPlan", () => {
  it("removes the victims and reserves the preemptor's resources on the plan's node", () => {
    // Prepare
    const runs = [running("r1", "n1", 0, { gpu: 4 }), running("r2", "n2", 0, { gpu: 4 })];
    const nodes = nodesFor(["n1", "n2"], runs);
    const job = queued("q1", 10, { gpu: 2 });
    const p = planPreemption({ job, nodes, running: runs, now: NOW, cooldownSeconds: 0 });
    if (!p) throw new Error("expected a plan");

    // Act
    const after = applyPlan(nodes, runs, p, job);

    // Assess
    expect(after.nodes.find((n) => n.nodeId === p.nodeId)?.free).toEqual({ cpu: 7, memoryMb: 31744, gpu: 2 });
    expect(after.running.map((r) => r.id).sort()).toEqual(
      ["q1", ...runs.filter((r) => r.nodeId !== p.nodeId).map((r) => r.id)].sort(),
    );
  });

  it("lets a pass plan several preemptors without evicting the same job twice", () => {
    // Prepare: two critical jobs, each wanting all 4 GPUs; one node has a low job on it
    const runs = [running("r1", "n1", 0, { gpu: 4 }), running("r2", "n2", 0, { gpu: 4 })];
    let state = { nodes: nodesFor(["n1", "n2"], runs), running: [...runs] };
    const victims: string[] = [];

    // Act
    for (const job of [
      queued("q1", 10, { gpu: 4 }),
      queued("q2", 10, { gpu: 4 }),
      queued("q3", 10, { gpu: 4 }),
    ]) {
      const p = planPreemption({ job, ...state, now: NOW, cooldownSeconds: 300 });
      if (!p) continue;
      victims.push(...p.victims.map((v) => v.id));
      state = applyPlan(state.nodes, state.running, p, job);
    }

    // Assess: two evictions for two of them; the third finds nothing lower to evict
    expect(victims.sort()).toEqual(["r1", "r2"]);
    expect(state.nodes.map((n) => n.free.gpu)).toEqual([0, 0]);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const runArb = fc.record({
  node: fc.integer({ min: 0, max: 2 }),
  priority: fc.integer({ min: -10, max: 10 }),
  gpu: fc.integer({ min: 0, max: 2 }),
  cpu: fc.integer({ min: 1, max: 3 }),
  startedAgo: fc.option(fc.integer({ min: 0, max: 7200 })),
  preemptedAgo: fc.option(fc.integer({ min: 0, max: 900 })),
});

const scenarioArb = fc.record({
  runs: fc.array(runArb, { maxLength: 12 }),
  priority: fc.integer({ min: -10, max: 10 }),
  gpu: fc.integer({ min: 0, max: 4 }),
  cpu: fc.integer({ min: 1, max: 8 }),
  cooldown: fc.constantFrom(0, 300),
});

type Scenario = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

/** Running jobs placed on three nodes as far as they fit (a node never over-committed). */
function build(s: Scenario): { job: QueuedJob; nodes: NodeView[]; runs: RunningJob[] } {
  const ids = ["n0", "n1", "n2"];
  const runs: RunningJob[] = [];
  s.runs.forEach((r, i) => {
    const nodeId = ids[r.node] ?? "n0";
    const candidate = running(
      `r${i}`,
      nodeId,
      r.priority,
      { gpu: r.gpu, cpu: r.cpu },
      {
        startedAt: r.startedAgo === null ? null : secondsAgo(r.startedAgo),
        preemptedAt: r.preemptedAgo === null ? null : secondsAgo(r.preemptedAgo),
      },
    );
    const free = nodesFor([nodeId], [...runs, candidate])[0]?.free;
    if (free && free.cpu >= 0 && free.gpu >= 0 && free.memoryMb >= 0) runs.push(candidate);
  });
  const job = queued("q", s.priority, { gpu: s.gpu, cpu: s.cpu });
  return { job, nodes: nodesFor(ids, runs), runs };
}

describe("planPreemption properties", () => {
  it("every plan evicts only lower-priority jobs outside the cool-down, and the job fits after", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { job, nodes, runs } = build(s);
        const p = planPreemption({ job, nodes, running: runs, now: NOW, cooldownSeconds: s.cooldown });
        if (!p) return;
        const node = nodes.find((n) => n.nodeId === p.nodeId);
        expect(node).toBeDefined();
        if (!node) return;
        const room = { ...node.free };
        for (const v of p.victims) {
          expect(v.priority).toBeLessThan(job.priority);
          expect(v.nodeId).toBe(p.nodeId);
          if (v.preemptedAt)
            expect(NOW.getTime() - Date.parse(v.preemptedAt)).toBeGreaterThanOrEqual(s.cooldown * 1000);
          room.cpu += v.resources.cpu;
          room.memoryMb += v.resources.memoryMb;
          room.gpu += v.resources.gpu;
        }
        expect(job.resources.gpu).toBeLessThanOrEqual(room.gpu);
        expect(job.resources.cpu).toBeLessThanOrEqual(room.cpu);
        expect(job.resources.memoryMb).toBeLessThanOrEqual(room.memoryMb);
        expect(p.victims.length).toBeGreaterThan(0);
      }),
      { numRuns: 500 },
    );
  });

  it("no ping-pong: no victim, queued again, can plan to evict its preemptor", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const { job, nodes, runs } = build(s);
        const p = planPreemption({ job, nodes, running: runs, now: NOW, cooldownSeconds: s.cooldown });
        if (!p) return;
        const after = applyPlan(nodes, runs, p, job);
        for (const victim of p.victims) {
          const requeued: QueuedJob = { ...queued(victim.id, victim.priority), resources: victim.resources };
          const back = planPreemption({ job: requeued, ...after, now: NOW, cooldownSeconds: 0 });
          expect(back?.victims.map((v) => v.id) ?? []).not.toContain(job.id);
        }
      }),
      { numRuns: 500 },
    );
  });
});
