import { describe, expect, it } from "vitest";
import type { Waiting } from "../../core/admission";
import { type PoolGaugeInput, poolGauges } from "../../core/pass-metrics";

const NOW = new Date("2026-12-01T12:00:00.000Z");
const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000).toISOString();

function wait(jobId: string, kind: Waiting["kind"], code: Waiting["code"]): Waiting {
  return { jobId, kind, code, reason: `${jobId} waits` };
}

function input(overrides: Partial<PoolGaugeInput>): PoolGaugeInput {
  return { waiting: [], jobs: new Map(), nodes: [], admitted: [], gpuPool: false, now: NOW, ...overrides };
}

describe("poolGauges", () => {
  it("ages only jobs waiting for capacity or priority, and counts what the pools scale on", () => {
    // Prepare
    const jobs = new Map([
      ["res", { priority: 0, queuedAt: minutesAgo(5) }],
      ["prio", { priority: 5, queuedAt: minutesAgo(12) }],
      ["nodes", { priority: 10, queuedAt: minutesAgo(3) }],
      // Held by design: older than all, yet no capacity would start them.
      ["quota", { priority: 0, queuedAt: minutesAgo(90) }],
      ["window", { priority: -5, queuedAt: minutesAgo(60) }],
    ]);
    const waiting = [
      wait("res", "capacity", "resources"),
      wait("prio", "held", "priority"),
      wait("nodes", "capacity", "no_nodes"),
      wait("quota", "gate", "quota"),
      wait("window", "gate", "off_peak_window"),
    ];

    // Act
    const gauges = poolGauges(input({ waiting, jobs }));

    // Assess
    expect(gauges.oldestCapacityWaitSeconds).toBe(12 * 60);
    expect(gauges.queuedJobs).toBe(3);
    expect(gauges.waitingByTier).toEqual({ critical: 1, high: 1, normal: 2, low: 1, background: 0 });
  });

  it("reports 0 for the oldest wait when nothing waits for capacity, and every tier at 0 when none waits", () => {
    const gauges = poolGauges(input({}));

    expect(gauges.oldestCapacityWaitSeconds).toBe(0);
    expect(gauges.queuedJobs).toBe(0);
    expect(Object.values(gauges.waitingByTier)).toEqual([0, 0, 0, 0, 0]);
  });

  it("leaves out jobs another pool must run (ineligible here)", () => {
    const gauges = poolGauges(
      input({
        waiting: [wait("elsewhere", "ineligible", "resources")],
        jobs: new Map([["elsewhere", { priority: 0, queuedAt: minutesAgo(30) }]]),
      }),
    );

    expect(gauges.oldestCapacityWaitSeconds).toBe(0);
    expect(gauges.waitingByTier.normal).toBe(0);
  });

  it("divides what is booked (and what the pass just booked) by the live nodes' capacity", () => {
    const gauges = poolGauges(
      input({
        nodes: [
          { capacity: { cpu: 4, memoryMb: 8192, gpu: 2 }, used: { cpu: 1, memoryMb: 2048, gpu: 0 } },
          { capacity: { cpu: 4, memoryMb: 8192, gpu: 2 }, used: { cpu: 2, memoryMb: 0, gpu: 1 } },
        ],
        admitted: [{ cpu: 1, memoryMb: 2048, gpu: 1 }],
        gpuPool: true,
      }),
    );

    expect(gauges.capacityInUse).toEqual({ cpu: 0.5, memory: 0.25, gpu: 0.5 });
  });

  it("gives a CPU pool no gpu figure, and a pool with no live nodes 0 rather than a division by zero", () => {
    const gauges = poolGauges(input({ nodes: [], gpuPool: false }));

    expect(gauges.capacityInUse).toEqual({ cpu: 0, memory: 0 });
  });
});
