import { describe, expect, it } from "vitest";
import { decideAdmission, type NodeState, type NodeView, type QueuedJob } from "../../core/admission";
import { type GpuQuotaState, gpuQuotaGate, offPeakGate, typeConcurrencyGate } from "../../core/gates";
import type { Resources } from "../../core/job";
import type { PoolConfig } from "../../core/pools";
import { NO_QUOTA } from "../../core/quota";

const POOLS: PoolConfig[] = [
  { name: "cpu", labels: {}, nodes: 1, node: { cpu: 4, memoryMb: 8192, gpu: 0 } },
  { name: "gpu", labels: {}, nodes: 1, node: { cpu: 8, memoryMb: 32768, gpu: 2 } },
];

const NOON = new Date("2026-11-25T12:00:00Z");
const MIDNIGHT = new Date("2026-11-25T23:00:00Z");
const NIGHT = { start: "22:00", end: "08:00", timezone: "UTC" };

function job(id: string, resources: Partial<Resources> = {}, extra: Partial<QueuedJob> = {}): QueuedJob {
  return {
    id,
    priority: 0,
    resources: { cpu: 1, memoryMb: 512, gpu: 0, ...resources },
    pool: null,
    constraints: {},
    queuedAt: "2026-11-25T11:59:00Z",
    owner: "alice",
    type: "echo",
    ...extra,
  };
}

function node(nodeId: string, pool: string, used: Partial<Resources> = {}): NodeState {
  const size = POOLS.find((p) => p.name === pool)?.node ?? { cpu: 4, memoryMb: 8192, gpu: 0 };
  return { nodeId, pool, capacity: size, used: { cpu: 0, memoryMb: 0, gpu: 0, ...used } };
}

const ANY_NODE: NodeView = {
  nodeId: "n",
  pool: "cpu",
  capacity: { cpu: 4, memoryMb: 8192, gpu: 0 },
  free: { cpu: 4, memoryMb: 8192, gpu: 0 },
};

describe("offPeakGate", () => {
  it("keeps offPeakOnly jobs waiting while the window is closed, with the window's reason", () => {
    // Prepare
    const gate = offPeakGate(NIGHT);

    // Act
    const refusal = gate.check(job("nightly", {}, { offPeakOnly: true }), NOON);

    // Assess
    expect(refusal).toEqual({ code: "off_peak_window", message: "off-peak window opens at 22:00 UTC" });
  });

  it("lets offPeakOnly jobs through inside the window, and other jobs at any time", () => {
    // Prepare
    const gate = offPeakGate(NIGHT);

    // Act + Assess
    expect(gate.check(job("nightly", {}, { offPeakOnly: true }), MIDNIGHT)).toBeNull();
    expect(gate.check(job("now"), NOON)).toBeNull();
    expect(gate.check(job("now", {}, { offPeakOnly: false }), NOON)).toBeNull();
  });

  it("answers for the clock reading it is asked with, not the first one", () => {
    // Prepare
    const gate = offPeakGate(NIGHT);
    const nightly = job("nightly", {}, { offPeakOnly: true });

    // Act
    const atNoon = gate.check(nightly, NOON);
    const atMidnight = gate.check(nightly, MIDNIGHT);

    // Assess
    expect(atNoon?.code).toBe("off_peak_window");
    expect(atMidnight).toBeNull();
  });
});

describe("gpuQuotaGate", () => {
  const quotas = new Map<string, GpuQuotaState>([
    [
      "alice",
      {
        limits: { ...NO_QUOTA, dailyGpuSeconds: 3600 },
        used: { todayGpuSeconds: 3600, weekGpuSeconds: 3600 },
      },
    ],
    [
      "bob",
      { limits: { ...NO_QUOTA, dailyGpuSeconds: 3600 }, used: { todayGpuSeconds: 10, weekGpuSeconds: 10 } },
    ],
  ]);

  it("keeps an over-quota owner's GPU jobs waiting with the quota reason", () => {
    expect(gpuQuotaGate(quotas).check(job("train", { gpu: 1 }), NOON)).toEqual({
      code: "quota",
      message: "quota exceeded: 3600 of 3600 GPU-seconds used today",
    });
  });

  it("lets the same owner's CPU jobs through, and GPU jobs of owners under quota or without one", () => {
    // Prepare
    const gate = gpuQuotaGate(quotas);

    // Act + Assess
    expect(gate.check(job("etl"), NOON)).toBeNull();
    expect(gate.check(job("train", { gpu: 1 }, { owner: "bob" }), NOON)).toBeNull();
    expect(gate.check(job("train", { gpu: 1 }, { owner: "carol" }), NOON)).toBeNull();
  });
});

describe("typeConcurrencyGate", () => {
  it("refuses a type at its limit, counting jobs already dispatched or running", () => {
    // Prepare
    const gate = typeConcurrencyGate({ "train-model": 2 }, new Map([["train-model", 2]]));

    // Act
    const refusal = gate.check(job("t", {}, { type: "train-model" }), NOON);

    // Assess
    expect(refusal).toEqual({
      code: "type_limit",
      message: "type train-model is at its concurrency limit: 2 of 2 dispatched or running",
    });
  });

  it("counts the jobs it admitted in the pass", () => {
    // Prepare
    const gate = typeConcurrencyGate({ "train-model": 2 }, new Map([["train-model", 1]]));
    const train = job("t1", {}, { type: "train-model" });

    // Act
    const before = gate.check(train, NOON);
    gate.admitted?.(train, ANY_NODE);
    const after = gate.check(job("t2", {}, { type: "train-model" }), NOON);

    // Assess
    expect(before).toBeNull();
    expect(after?.message).toBe("type train-model is at its concurrency limit: 2 of 2 dispatched or running");
  });

  it("lets through types without a limit, and jobs without a type", () => {
    // Prepare
    const gate = typeConcurrencyGate({ "train-model": 0 }, new Map());

    // Act + Assess
    expect(gate.check(job("e", {}, { type: "echo" }), NOON)).toBeNull();
    expect(gate.check(job("e", {}, { type: "constructor" }), NOON)).toBeNull();
    expect(gate.check(job("x", {}, { type: undefined }), NOON)).toBeNull();
    expect(gate.check(job("t", {}, { type: "train-model" }), NOON)?.code).toBe("type_limit");
  });
});

describe("gates in a pass", () => {
  it("an off-peak job waits without taking the node; the job behind it runs there", () => {
    // Prepare: room for one 4-CPU job.
    const queued = [job("nightly", { cpu: 4 }, { offPeakOnly: true }), job("now", { cpu: 4 })];

    // Act
    const decision = decideAdmission({
      queued,
      nodes: [node("c1", "cpu")],
      pools: POOLS,
      now: NOON,
      gates: [offPeakGate(NIGHT)],
    });

    // Assess
    expect(decision.admit.map((a) => [a.jobId, a.nodeId])).toEqual([["now", "c1"]]);
    expect(decision.waiting).toEqual([
      {
        jobId: "nightly",
        kind: "gate",
        code: "off_peak_window",
        reason: "off-peak window opens at 22:00 UTC",
      },
    ]);
  });

  it("an over-quota owner's GPU job waits; its CPU job and another owner's GPU job get the capacity", () => {
    // Prepare
    const quotas = new Map<string, GpuQuotaState>([
      [
        "alice",
        {
          limits: { ...NO_QUOTA, weeklyGpuSeconds: 20_000 },
          used: { todayGpuSeconds: 0, weekGpuSeconds: 20_500 },
        },
      ],
    ]);
    const queued = [
      job("alice-train", { gpu: 2 }, { pool: "gpu" }),
      job("alice-etl", { cpu: 1 }, { pool: "cpu" }),
      job("bob-train", { gpu: 2 }, { pool: "gpu", owner: "bob" }),
    ];

    // Act
    const decision = decideAdmission({
      queued,
      nodes: [node("c1", "cpu"), node("g1", "gpu")],
      pools: POOLS,
      now: NOON,
      gates: [gpuQuotaGate(quotas)],
    });

    // Assess
    expect(decision.admit.map((a) => [a.jobId, a.nodeId])).toEqual([
      ["alice-etl", "c1"],
      ["bob-train", "g1"],
    ]);
    expect(decision.waiting).toEqual([
      {
        jobId: "alice-train",
        kind: "gate",
        code: "quota",
        reason: "quota exceeded: 20500 of 20000 GPU-seconds used this week",
      },
    ]);
  });

  it("admits a type up to its limit across the pass, then keeps the rest waiting while others run", () => {
    // Prepare: one train-model already running elsewhere, limit 2.
    const queued = [
      job("t1", {}, { type: "train-model" }),
      job("t2", {}, { type: "train-model" }),
      job("e1", {}, { type: "echo" }),
      job("t3", {}, { type: "train-model" }),
    ];

    // Act
    const decision = decideAdmission({
      queued,
      nodes: [node("c1", "cpu")],
      pools: POOLS,
      now: NOON,
      gates: [typeConcurrencyGate({ "train-model": 2 }, new Map([["train-model", 1]]))],
    });

    // Assess
    expect(decision.admit.map((a) => a.jobId)).toEqual(["t1", "e1"]);
    expect(decision.waiting).toEqual([
      {
        jobId: "t2",
        kind: "gate",
        code: "type_limit",
        reason: "type train-model is at its concurrency limit: 2 of 2 dispatched or running",
      },
      {
        jobId: "t3",
        kind: "gate",
        code: "type_limit",
        reason: "type train-model is at its concurrency limit: 2 of 2 dispatched or running",
      },
    ]);
  });

  it("a job refused by one gate is not counted by another", () => {
    // Prepare: the off-peak gate refuses first, so the type gate never sees t1 placed.
    const queued = [
      job("t1", {}, { type: "train-model", offPeakOnly: true }),
      job("t2", {}, { type: "train-model" }),
    ];

    // Act
    const decision = decideAdmission({
      queued,
      nodes: [node("c1", "cpu")],
      pools: POOLS,
      now: NOON,
      gates: [offPeakGate(NIGHT), typeConcurrencyGate({ "train-model": 1 }, new Map())],
    });

    // Assess
    expect(decision.admit.map((a) => a.jobId)).toEqual(["t2"]);
    expect(decision.waiting.map((w) => [w.jobId, w.code])).toEqual([["t1", "off_peak_window"]]);
  });
});
