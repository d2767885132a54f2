import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type AdmissionDecision,
  type AdmissionGate,
  AdmissionPass,
  decideAdmission,
  dominantResource,
  type NodeState,
  type PlacementStrategy,
  type QueuedJob,
} from "../../core/admission";
import type { Resources } from "../../core/job";
import type { PoolConfig } from "../../core/pools";

const NOW = new Date("2026-11-25T12:00:00.000Z");

const POOLS: PoolConfig[] = [
  { name: "cpu", labels: { zone: "a" }, nodes: 2, node: { cpu: 4, memoryMb: 8192, gpu: 0 } },
  { name: "gpu", labels: { zone: "b", accel: "h100" }, nodes: 2, node: { cpu: 8, memoryMb: 32768, gpu: 4 } },
];

function secondsAgo(seconds: number): string {
  return new Date(NOW.getTime() - seconds * 1000).toISOString();
}

function job(id: string, resources: Partial<Resources> = {}, extra: Partial<QueuedJob> = {}): QueuedJob {
  return {
    id,
    priority: 0,
    resources: { cpu: 1, memoryMb: 512, gpu: 0, ...resources },
    pool: null,
    constraints: {},
    queuedAt: secondsAgo(10),
    ...extra,
  };
}

function node(nodeId: string, pool: string, used: Partial<Resources> = {}): NodeState {
  const size = POOLS.find((p) => p.name === pool)?.node ?? { cpu: 4, memoryMb: 8192, gpu: 0 };
  return { nodeId, pool, capacity: size, used: { cpu: 0, memoryMb: 0, gpu: 0, ...used } };
}

function placements(decision: AdmissionDecision): Record<string, string> {
  return Object.fromEntries(decision.admit.map((a) => [a.jobId, a.nodeId]));
}

function reasons(decision: AdmissionDecision): Record<string, string> {
  return Object.fromEntries(decision.waiting.map((w) => [w.jobId, w.reason]));
}

describe("decideAdmission", () => {
  it("admits a job to a node whose free capacity holds every resource", () => {
    // Prepare
    const nodes = [
      node("n1", "gpu", { cpu: 7.5 }),
      node("n2", "gpu", { memoryMb: 32000 }),
      node("n3", "gpu"),
    ];

    // Act
    const decision = decideAdmission({
      queued: [job("j1", { cpu: 1, memoryMb: 1024, gpu: 1 }, { pool: "gpu" })],
      nodes,
      pools: POOLS,
      now: NOW,
    });

    // Assess
    expect(decision.admit).toEqual([
      {
        jobId: "j1",
        pool: "gpu",
        nodeId: "n3",
        why: "best fit for 1 GPU: node n3 has the least free GPU that fits (4 of 4 free)",
      },
    ]);
    expect(decision.waiting).toEqual([]);
  });

  it("places a GPU job best-fit: the node with the least free GPU that still fits", () => {
    // Prepare
    const nodes = [node("four", "gpu"), node("one", "gpu", { gpu: 3 }), node("two", "gpu", { gpu: 2 })];

    // Act
    const decision = decideAdmission({
      queued: [job("small", { gpu: 1 }), job("pair", { gpu: 2 })],
      nodes,
      pools: POOLS,
      now: NOW,
    });

    // Assess
    expect(placements(decision)).toEqual({ small: "one", pair: "two" });
  });

  it("spreads CPU jobs: most free CPU first, and GPU-less nodes before GPU nodes", () => {
    // Prepare
    const nodes = [node("busy", "cpu", { cpu: 3 }), node("idle", "cpu"), node("gpu-node", "gpu")];

    // Act
    const decision = decideAdmission({
      queued: [job("a"), job("b"), job("c")],
      nodes,
      pools: POOLS,
      now: NOW,
    });

    // Assess: idle (4 free) takes a, then idle (3) and busy (1) → idle again, then idle (2) over busy (1).
    expect(placements(decision)).toEqual({ a: "idle", b: "idle", c: "idle" });
  });

  it("backfills smaller jobs behind one that cannot fit, and says why the big one waits", () => {
    // Prepare
    const nodes = [node("g1", "gpu", { gpu: 2 })];

    // Act
    const decision = decideAdmission({
      queued: [job("big", { gpu: 4 }, { pool: "gpu" }), job("small", { gpu: 1 }, { pool: "gpu" })],
      nodes,
      pools: POOLS,
      now: NOW,
    });

    // Assess
    expect(placements(decision)).toEqual({ small: "g1" });
    expect(reasons(decision)).toEqual({ big: "needs 4 GPU in pool gpu, 2 free" });
  });

  it("holds the node where a starving job fits soonest, and places no later job there", () => {
    // Prepare: the big job has waited 10 minutes; g2 has the most free GPU (its dominant resource).
    const nodes = [node("g1", "gpu", { gpu: 3 }), node("g2", "gpu", { gpu: 2 })];
    const big = job("big", { gpu: 4 }, { pool: "gpu", queuedAt: secondsAgo(600) });

    // Act
    const decision = decideAdmission({
      queued: [big, job("s1", { gpu: 1 }), job("s2", { gpu: 1 }), job("s3", { gpu: 1 })],
      nodes,
      pools: POOLS,
      now: NOW,
    });

    // Assess
    expect(decision.held).toEqual([{ jobId: "big", pool: "gpu", nodeId: "g2" }]);
    expect(placements(decision)).toEqual({ s1: "g1" });
    expect(reasons(decision).big).toBe(
      `needs 4 GPU in pool gpu, 2 free; node g2 is held for it (waiting since ${big.queuedAt})`,
    );
    expect(decision.waiting.find((w) => w.jobId === "big")?.code).toBe("resources");
    // Kept off a held node: that is about it in particular, so not a plain wait for its turn.
    expect(decision.waiting.find((w) => w.jobId === "s2")?.behind).toBeUndefined();
    expect(decision.waiting.find((w) => w.jobId === "s2")).toMatchObject({
      kind: "held",
      code: "priority",
      reason:
        "waiting behind jobs ahead of it in the queue; needs 1 GPU in pool gpu, 0 free (node g2 is held for big, which has waited longer)",
    });
  });

  it("holds nothing for a job that has waited less than starvationSeconds", () => {
    // Prepare
    const nodes = [node("g1", "gpu", { gpu: 2 })];
    const queued = [job("big", { gpu: 4 }, { queuedAt: secondsAgo(200) }), job("small", { gpu: 1 })];

    // Act
    const lenient = decideAdmission({ queued, nodes, pools: POOLS, now: NOW });
    const strict = decideAdmission({ queued, nodes, pools: POOLS, now: NOW, starvationSeconds: 100 });

    // Assess
    expect(lenient.held).toEqual([]);
    expect(placements(lenient)).toEqual({ small: "g1" });
    expect(strict.held).toEqual([{ jobId: "big", pool: "gpu", nodeId: "g1" }]);
    expect(placements(strict)).toEqual({});
  });

  it("sends a job without a pool only to pools whose labels and node size fit it", () => {
    // Prepare
    const nodes = [node("c1", "cpu"), node("g1", "gpu")];

    // Act
    const decision = decideAdmission({
      queued: [
        job("wants-b", {}, { constraints: { zone: "b" } }),
        job("too-big-for-cpu", { memoryMb: 16384 }),
        job("wants-nowhere", {}, { constraints: { zone: "z" } }),
        job("named", {}, { pool: "cpu", constraints: { accel: "h100" } }),
      ],
      nodes,
      pools: POOLS,
      now: NOW,
    });

    // Assess
    expect(placements(decision)).toEqual({ "wants-b": "g1", "too-big-for-cpu": "g1" });
    expect(decision.waiting).toEqual([
      {
        jobId: "wants-nowhere",
        kind: "ineligible",
        code: "no_nodes",
        reason: 'no node of a pool with labels {"zone":"z"} is up',
      },
      { jobId: "named", kind: "ineligible", code: "no_nodes", reason: "no node of pool cpu is up" },
    ]);
  });

  it("says so when a pool has no node up, or none big enough", () => {
    // Prepare
    const small: NodeState = {
      nodeId: "tiny",
      pool: "gpu",
      capacity: { cpu: 8, memoryMb: 32768, gpu: 1 },
      used: { cpu: 0, memoryMb: 0, gpu: 0 },
    };

    // Act
    const none = decideAdmission({
      queued: [job("j", {}, { pool: "gpu" })],
      nodes: [],
      pools: POOLS,
      now: NOW,
    });
    const tooSmall = decideAdmission({
      queued: [job("j", { gpu: 2 }, { pool: "gpu" })],
      nodes: [small],
      pools: POOLS,
      now: NOW,
    });

    // Assess
    expect(reasons(none)).toEqual({ j: "no node of pool gpu is up" });
    expect(reasons(tooSmall)).toEqual({ j: "needs 2 GPU; no node of pool gpu has more than 1" });
  });

  it("admits fractional CPUs that add up exactly to a node's capacity", () => {
    // Prepare
    const nodes: NodeState[] = [
      {
        nodeId: "n",
        pool: "cpu",
        capacity: { cpu: 0.3, memoryMb: 1024, gpu: 0 },
        used: { cpu: 0, memoryMb: 0, gpu: 0 },
      },
    ];

    // Act
    const decision = decideAdmission({
      queued: [job("a", { cpu: 0.1, memoryMb: 1 }), job("b", { cpu: 0.2, memoryMb: 1 })],
      nodes,
      pools: POOLS,
      now: NOW,
    });

    // Assess
    expect(decision.admit.map((a) => a.jobId)).toEqual(["a", "b"]);
  });

  it("lets gates keep jobs waiting and count what was admitted", () => {
    // Prepare: at most one `train` job per pass.
    let trains = 0;
    const gate: AdmissionGate = {
      check: (j) =>
        j.type === "train" && trains >= 1
          ? { code: "type_limit", message: "type train: 1 of 1 running" }
          : null,
      admitted: (j) => {
        if (j.type === "train") trains++;
      },
    };

    // Act
    const decision = decideAdmission({
      queued: [
        job("t1", {}, { type: "train" }),
        job("t2", {}, { type: "train" }),
        job("e1", {}, { type: "echo" }),
      ],
      nodes: [node("c1", "cpu")],
      pools: POOLS,
      now: NOW,
      gates: [gate],
    });

    // Assess
    expect(decision.admit.map((a) => a.jobId)).toEqual(["t1", "e1"]);
    expect(decision.waiting).toEqual([
      { jobId: "t2", kind: "gate", code: "type_limit", reason: "type train: 1 of 1 running" },
    ]);
  });

  it("reports a pass as exhausted once no free node has room for any job", () => {
    // Prepare
    const pass = new AdmissionPass({ nodes: [node("c1", "cpu", { cpu: 3 })], pools: POOLS, now: NOW });

    // Act
    const before = pass.exhausted;
    pass.offer([job("last", { cpu: 1 })]);

    // Assess
    expect(before).toBe(false);
    expect(pass.exhausted).toBe(true);
  });

  it("names a job's dominant resource relative to the node", () => {
    const size = { cpu: 8, memoryMb: 32768, gpu: 4 };
    expect(dominantResource({ cpu: 1, memoryMb: 512, gpu: 2 }, size)).toBe("gpu");
    expect(dominantResource({ cpu: 1, memoryMb: 16384, gpu: 0 }, size)).toBe("memoryMb");
    expect(dominantResource({ cpu: 6, memoryMb: 16384, gpu: 0 }, size)).toBe("cpu");
  });
});

describe("why a job waits: reason codes", () => {
  it("gives `resources` to the first job of the pass that waits for capacity, `priority` to every later one, marked as only waiting its turn", () => {
    // Prepare: one GPU node with 1 GPU free; the pass is fed in two offers, as the scheduler does.
    const pass = new AdmissionPass({ nodes: [node("g1", "gpu", { gpu: 3 })], pools: POOLS, now: NOW });

    // Act
    const first = pass.offer([
      job("big", { gpu: 4 }, { pool: "gpu" }),
      job("fits", { gpu: 1 }, { pool: "gpu" }),
    ]);
    const second = pass.offer([
      job("pair", { gpu: 2 }, { pool: "gpu" }),
      job("quad", { gpu: 4 }, { pool: "gpu" }),
    ]);

    // Assess
    expect(first.admit.map((a) => a.jobId)).toEqual(["fits"]);
    expect([...first.waiting, ...second.waiting]).toEqual([
      { jobId: "big", kind: "capacity", code: "resources", reason: "needs 4 GPU in pool gpu, 1 free" },
      {
        jobId: "pair",
        kind: "capacity",
        code: "priority",
        behind: true,
        reason: "waiting behind jobs ahead of it in the queue; needs 2 GPU in pool gpu, 0 free",
      },
      {
        jobId: "quad",
        kind: "capacity",
        code: "priority",
        behind: true,
        reason: "waiting behind jobs ahead of it in the queue; needs 4 GPU in pool gpu, 0 free",
      },
    ]);
  });

  it("says no_nodes when no node of the job's pools is up, and that does not count as the first capacity wait", () => {
    // Prepare: the cpu pool has a node, the gpu pool none.
    const nodes = [node("c1", "cpu", { cpu: 4 })];

    // Act
    const decision = decideAdmission({
      queued: [job("gpu-job", { gpu: 1 }, { pool: "gpu" }), job("cpu-job", {}, { pool: "cpu" })],
      nodes,
      pools: POOLS,
      now: NOW,
    });

    // Assess
    expect(decision.waiting.map((w) => [w.jobId, w.code])).toEqual([
      ["gpu-job", "no_nodes"],
      ["cpu-job", "resources"],
    ]);
  });

  it("passes a gate's own code through, and a gated job is not the one waiting for resources", () => {
    // Prepare
    const gate: AdmissionGate = {
      check: (j) => (j.owner === "over" ? { code: "quota", message: "quota exceeded" } : null),
    };

    // Act
    const decision = decideAdmission({
      queued: [job("gated", { cpu: 8 }, { owner: "over" }), job("too-big", { cpu: 8 }, { owner: "ok" })],
      nodes: [node("g1", "gpu", { cpu: 4 })],
      pools: POOLS,
      now: NOW,
      gates: [gate],
    });

    // Assess
    expect(decision.waiting.map((w) => [w.jobId, w.kind, w.code])).toEqual([
      ["gated", "gate", "quota"],
      ["too-big", "capacity", "resources"],
    ]);
  });
});

describe("placement: which pool and node, and why", () => {
  const TWO_GPU_POOLS: PoolConfig[] = [
    { name: "gpu-a", labels: { accel: "h100" }, nodes: 2, node: { cpu: 8, memoryMb: 32768, gpu: 8 } },
    { name: "gpu-b", labels: { accel: "h100" }, nodes: 2, node: { cpu: 8, memoryMb: 32768, gpu: 8 } },
    { name: "cpu-a", labels: {}, nodes: 2, node: { cpu: 4, memoryMb: 8192, gpu: 0 } },
    { name: "cpu-b", labels: {}, nodes: 2, node: { cpu: 4, memoryMb: 8192, gpu: 0 } },
  ];

  function at(nodeId: string, pool: string, used: Partial<Resources> = {}): NodeState {
    const size = TWO_GPU_POOLS.find((p) => p.name === pool)?.node ?? { cpu: 4, memoryMb: 8192, gpu: 0 };
    return { nodeId, pool, capacity: size, used: { cpu: 0, memoryMb: 0, gpu: 0, ...used } };
  }

  it("sends a GPU job to the eligible pool with the most free GPU in total, then best fit within it", () => {
    // Prepare: gpu-a has 2 + 3 = 5 GPU free over its nodes, gpu-b 4 on one node.
    const nodes = [
      at("a1", "gpu-a", { gpu: 6 }),
      at("a2", "gpu-a", { gpu: 5 }),
      at("b1", "gpu-b", { gpu: 4 }),
    ];

    // Act
    const decision = decideAdmission({
      queued: [job("train", { gpu: 2 }, { constraints: { accel: "h100" } })],
      nodes,
      pools: TWO_GPU_POOLS,
      now: NOW,
    });

    // Assess
    expect(decision.admit).toEqual([
      {
        jobId: "train",
        pool: "gpu-a",
        nodeId: "a1",
        why:
          "pool gpu-a has the most free GPU of the eligible pools (gpu-a, gpu-b); " +
          "best fit for 2 GPU: node a1 has the least free GPU that fits (2 of 8 free)",
      },
    ]);
  });

  it("counts only the nodes the job fits on when comparing pools", () => {
    // Prepare: gpu-a has 3 GPU free but 1 per node; only gpu-b's node can take 2 GPU.
    const nodes = [
      at("a1", "gpu-a", { gpu: 7 }),
      at("a2", "gpu-a", { gpu: 7 }),
      at("a3", "gpu-a", { gpu: 7 }),
      at("b1", "gpu-b", { gpu: 6 }),
    ];

    // Act
    const decision = decideAdmission({
      queued: [job("pair", { gpu: 2 }, { constraints: { accel: "h100" } })],
      nodes,
      pools: TWO_GPU_POOLS,
      now: NOW,
    });

    // Assess
    expect(decision.admit.map((a) => [a.pool, a.nodeId])).toEqual([["gpu-b", "b1"]]);
  });

  it("sends a CPU job to the pool without GPUs that has the most free CPU, and spreads it there", () => {
    // Prepare: the GPU pools have the most free CPU, but CPU work stays off GPU nodes while it fits elsewhere.
    const nodes = [
      at("a1", "gpu-a"),
      at("c1", "cpu-a", { cpu: 3 }),
      at("c2", "cpu-a", { cpu: 3 }),
      at("d1", "cpu-b", { cpu: 1.5 }),
      at("d2", "cpu-b", { cpu: 3 }),
    ];

    // Act
    const decision = decideAdmission({
      queued: [job("etl", { cpu: 1 })],
      nodes,
      pools: TWO_GPU_POOLS,
      now: NOW,
    });

    // Assess: cpu-b has 2.5 + 1 free, cpu-a 1 + 1.
    expect(decision.admit).toEqual([
      {
        jobId: "etl",
        pool: "cpu-b",
        nodeId: "d1",
        why:
          "pool cpu-b has the most free CPU of the eligible pools without GPUs (cpu-a, cpu-b); " +
          "spread: node d1 has the most free CPU (2.5 of 4 free)",
      },
    ]);
  });

  it("puts a CPU job on a GPU node only when no node without GPUs fits, and says so", () => {
    // Prepare
    const nodes = [at("a1", "gpu-a", { cpu: 2 }), at("c1", "cpu-a", { cpu: 4 })];

    // Act
    const decision = decideAdmission({
      queued: [job("etl", { cpu: 1 })],
      nodes,
      pools: TWO_GPU_POOLS,
      now: NOW,
    });

    // Assess
    expect(decision.admit).toEqual([
      {
        jobId: "etl",
        pool: "gpu-a",
        nodeId: "a1",
        why:
          "pool gpu-a has the most free CPU of the eligible pools (gpu-a, cpu-a); " +
          "spread: no node without GPUs fits; node a1 has the most free CPU (6 of 8 free)",
      },
    ]);
  });

  it("names no pool choice for a job that named its pool", () => {
    // Act
    const decision = decideAdmission({
      queued: [job("etl", { cpu: 0.5 }, { pool: "cpu-a" })],
      nodes: [at("c1", "cpu-a", { cpu: 1 }), at("c2", "cpu-a"), at("d1", "cpu-b")],
      pools: TWO_GPU_POOLS,
      now: NOW,
    });

    // Assess
    expect(decision.admit).toEqual([
      {
        jobId: "etl",
        pool: "cpu-a",
        nodeId: "c2",
        why: "spread: node c2 has the most free CPU (4 of 4 free)",
      },
    ]);
  });

  it("lets the pool's node be chosen by another placement strategy, among that pool's nodes only", () => {
    // Prepare: pack CPU jobs onto the fullest node instead of spreading them.
    const seen: string[][] = [];
    const pack: PlacementStrategy = (_job, fitting) => {
      seen.push(fitting.map((n) => n.nodeId));
      const node = [...fitting].sort((a, b) => a.free.cpu - b.free.cpu)[0];
      if (!node) throw new Error("placement is given at least one node");
      return { node, why: `pack: node ${node.nodeId} is the fullest that fits` };
    };

    // Act
    const decision = decideAdmission({
      queued: [job("etl", { cpu: 1 })],
      nodes: [at("c1", "cpu-a", { cpu: 1 }), at("c2", "cpu-a", { cpu: 2 }), at("d1", "cpu-b")],
      pools: TWO_GPU_POOLS,
      now: NOW,
      placement: pack,
    });

    // Assess: cpu-a has 3 + 2 free, cpu-b 4; the GPU pools have no node up, so they are not compared.
    expect(seen).toEqual([["c1", "c2"]]);
    expect(decision.admit).toEqual([
      {
        jobId: "etl",
        pool: "cpu-a",
        nodeId: "c2",
        why:
          "pool cpu-a has the most free CPU of the eligible pools (cpu-a, cpu-b); " +
          "pack: node c2 is the fullest that fits",
      },
    ]);
  });

  it("refuses a placement that returns a node it was not given", () => {
    const stray: PlacementStrategy = (_job, fitting) => {
      const node = fitting[0];
      if (!node) throw new Error("placement is given at least one node");
      return { node: { ...node }, why: "a copy" };
    };
    expect(() =>
      decideAdmission({
        queued: [job("j")],
        nodes: [node("c1", "cpu")],
        pools: POOLS,
        now: NOW,
        placement: stray,
      }),
    ).toThrow(RangeError);
  });
});

// ---- properties ----

const SHAPES: Resources[] = [
  { cpu: 0.5, memoryMb: 256, gpu: 0 },
  { cpu: 1, memoryMb: 512, gpu: 0 },
  { cpu: 2, memoryMb: 4096, gpu: 0 },
  { cpu: 1, memoryMb: 1024, gpu: 1 },
  { cpu: 4, memoryMb: 8192, gpu: 2 },
  { cpu: 8, memoryMb: 16384, gpu: 4 },
];

const jobArb = fc.record({
  shape: fc.integer({ min: 0, max: SHAPES.length - 1 }),
  pool: fc.constantFrom(null, "cpu", "gpu"),
  zone: fc.constantFrom(null, "a", "b"),
  waited: fc.integer({ min: 0, max: 900 }),
});

const nodeArb = fc.record({
  pool: fc.constantFrom("cpu", "gpu"),
  usedShare: fc.double({ min: 0, max: 1, noNaN: true }),
});

const scenarioArb = fc.record({
  jobs: fc.array(jobArb, { maxLength: 60 }),
  nodes: fc.array(nodeArb, { maxLength: 6 }),
});

interface Scenario {
  readonly jobs: readonly { shape: number; pool: string | null; zone: string | null; waited: number }[];
  readonly nodes: readonly { pool: string; usedShare: number }[];
}

function build(scenario: Scenario): { queued: QueuedJob[]; nodes: NodeState[] } {
  const queued = scenario.jobs.map((j, i) => {
    const resources = SHAPES[j.shape] ?? { cpu: 1, memoryMb: 512, gpu: 0 };
    return job(`j${String(i).padStart(3, "0")}`, resources, {
      pool: j.pool,
      constraints: j.zone ? { zone: j.zone } : {},
      queuedAt: secondsAgo(j.waited),
    });
  });
  const nodes = scenario.nodes.map((n, i) => {
    const size = POOLS.find((p) => p.name === n.pool)?.node ?? { cpu: 4, memoryMb: 8192, gpu: 0 };
    return node(`n${i}`, n.pool, {
      cpu: Math.floor(size.cpu * n.usedShare),
      memoryMb: Math.floor(size.memoryMb * n.usedShare),
      gpu: Math.floor(size.gpu * n.usedShare),
    });
  });
  return { queued, nodes };
}

describe("decideAdmission properties", () => {
  it("never over-commits a node, and every admitted job fits where it went", () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const { queued, nodes } = build(scenario);
        const decision = decideAdmission({ queued, nodes, pools: POOLS, now: NOW });
        const byId = new Map(queued.map((j) => [j.id, j]));
        for (const n of nodes) {
          const placed = decision.admit.filter((a) => a.nodeId === n.nodeId).map((a) => byId.get(a.jobId));
          for (const r of ["cpu", "memoryMb", "gpu"] as const) {
            const sum = placed.reduce((total, j) => total + (j?.resources[r] ?? 0), 0);
            expect(n.used[r] + sum).toBeLessThanOrEqual(n.capacity[r] + 1e-9);
          }
        }
        for (const a of decision.admit) {
          const j = byId.get(a.jobId);
          const pool = POOLS.find((p) => p.name === a.pool);
          expect(j && pool).toBeTruthy();
          if (!j || !pool) continue;
          if (j.pool) expect(a.pool).toBe(j.pool);
          for (const [k, v] of Object.entries(j.constraints)) expect(pool.labels[k]).toBe(v);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("decides every job exactly once", () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const { queued, nodes } = build(scenario);
        const decision = decideAdmission({ queued, nodes, pools: POOLS, now: NOW });
        const decided = [...decision.admit.map((a) => a.jobId), ...decision.waiting.map((w) => w.jobId)];
        expect(decided.sort()).toEqual(queued.map((j) => j.id).sort());
      }),
      { numRuns: 200 },
    );
  });

  it("respects order among jobs of equal size: a later one is never admitted over an earlier one", () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const { queued, nodes } = build(scenario);
        const decision = decideAdmission({ queued, nodes, pools: POOLS, now: NOW });
        const admitted = new Set(decision.admit.map((a) => a.jobId));
        const key = (j: QueuedJob) => JSON.stringify([j.resources, j.pool, j.constraints]);
        queued.forEach((later, i) => {
          if (!admitted.has(later.id)) return;
          for (const earlier of queued.slice(0, i)) {
            if (key(earlier) === key(later))
              expect(admitted.has(earlier.id), `${earlier.id} before ${later.id}`).toBe(true);
          }
        });
      }),
      { numRuns: 300 },
    );
  });

  it("places no later job on a node held for a starving job", () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const { queued, nodes } = build(scenario);
        const decision = decideAdmission({ queued, nodes, pools: POOLS, now: NOW });
        const position = new Map(queued.map((j, i) => [j.id, i]));
        for (const hold of decision.held) {
          const holder = position.get(hold.jobId) ?? -1;
          const later = decision.admit.filter(
            (a) => a.nodeId === hold.nodeId && (position.get(a.jobId) ?? -1) > holder,
          );
          expect(later).toEqual([]);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("decides the same whether the queue is offered at once or page by page", () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer({ min: 1, max: 10 }), (scenario, pageSize) => {
        const { queued, nodes } = build(scenario);
        const whole = decideAdmission({ queued, nodes, pools: POOLS, now: NOW });
        const pass = new AdmissionPass({ nodes, pools: POOLS, now: NOW });
        const pages: AdmissionDecision[] = [];
        for (let i = 0; i < queued.length; i += pageSize)
          pages.push(pass.offer(queued.slice(i, i + pageSize)));
        expect(pages.flatMap((p) => p.admit)).toEqual(whole.admit);
        expect(pages.flatMap((p) => p.waiting)).toEqual(whole.waiting);
        expect(pages.flatMap((p) => p.held)).toEqual(whole.held);
      }),
      { numRuns: 200 },
    );
  });

  it("gives `resources` to at most one waiting job, the first that waits for capacity", () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const { queued, nodes } = build(scenario);
        const decision = decideAdmission({ queued, nodes, pools: POOLS, now: NOW });
        const forCapacity = decision.waiting.filter((w) => w.kind === "capacity" && w.code !== "no_nodes");
        const resources = decision.waiting.filter((w) => w.code === "resources");
        expect(resources).toEqual(forCapacity.slice(0, 1));
        for (const w of decision.waiting) {
          if (w.kind === "held") expect(w.code).toBe("priority");
          if (w.kind === "ineligible") expect(w.code).toBe("no_nodes");
        }
      }),
      { numRuns: 300 },
    );
  });
});
