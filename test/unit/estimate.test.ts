import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { NodeState } from "../../core/admission";
import { type EstimateQueued, type EstimateRunning, estimateStarts } from "../../core/estimate";
import type { Resources } from "../../core/job";

const NOW = new Date("2026-11-25T12:00:00.000Z");
const SIZE: Resources = { cpu: 4, memoryMb: 8192, gpu: 0 };

function inSeconds(seconds: number): Date {
  return new Date(NOW.getTime() + seconds * 1000);
}

function node(nodeId: string, used: Partial<Resources> = {}, pool = "cpu"): NodeState {
  return { nodeId, pool, capacity: SIZE, used: { cpu: 0, memoryMb: 0, gpu: 0, ...used } };
}

function run(nodeId: string, cpu: number, endsIn: number | null): EstimateRunning {
  return {
    nodeId,
    resources: { cpu, memoryMb: 512, gpu: 0 },
    expectedEndAt: endsIn === null ? null : inSeconds(endsIn),
  };
}

function job(id: string, cpu: number, seconds: number | null, pools?: string[]): EstimateQueued {
  return {
    id,
    resources: { cpu, memoryMb: 512, gpu: 0 },
    expectedDurationMs: seconds === null ? null : seconds * 1000,
    ...(pools ? { pools } : {}),
  };
}

describe("estimateStarts", () => {
  it("starts a job now on a node with room", () => {
    // Prepare
    const input = { now: NOW, nodes: [node("n1")], running: [], queued: [job("j1", 2, 60)] };

    // Act
    const starts = estimateStarts(input);

    // Assess
    expect(starts.get("j1")).toEqual(NOW);
  });

  it("starts a job when the running job holding its room is expected to end", () => {
    // Prepare
    const input = {
      now: NOW,
      nodes: [node("n1", { cpu: 4 })],
      running: [run("n1", 4, 60)],
      queued: [job("j1", 2, 60)],
    };

    // Act
    const starts = estimateStarts(input);

    // Assess
    expect(starts.get("j1")).toEqual(inSeconds(60));
  });

  it("counts running jobs the node's used does not include", () => {
    // Prepare: used is 0, but the running list holds the whole node for a minute
    const input = { now: NOW, nodes: [node("n1")], running: [run("n1", 4, 60)], queued: [job("j1", 2, 60)] };

    // Act
    const starts = estimateStarts(input);

    // Assess
    expect(starts.get("j1")).toEqual(inSeconds(60));
  });

  it("queues jobs behind each other as earlier simulated jobs take the room", () => {
    // Prepare: the node is full for 60 s; then each job takes the whole node for 120 s
    const input = {
      now: NOW,
      nodes: [node("n1", { cpu: 4 })],
      running: [run("n1", 4, 60)],
      queued: [job("j1", 4, 120), job("j2", 4, 120), job("j3", 4, 30)],
    };

    // Act
    const starts = estimateStarts(input);

    // Assess
    expect(starts.get("j1")).toEqual(inSeconds(60));
    expect(starts.get("j2")).toEqual(inSeconds(180));
    expect(starts.get("j3")).toEqual(inSeconds(300));
  });

  it("lets a later small job fill a gap without delaying an earlier one", () => {
    // Prepare: 2 CPUs free now until the big job starts at 60 s
    const input = {
      now: NOW,
      nodes: [node("n1", { cpu: 2 })],
      running: [run("n1", 2, 60)],
      queued: [job("big", 4, 120), job("short", 2, 30), job("long", 2, 90)],
    };

    // Act
    const starts = estimateStarts(input);

    // Assess: short ends at 30 s, before big starts; long would overlap it and goes after
    expect(starts.get("big")).toEqual(inSeconds(60));
    expect(starts.get("short")).toEqual(NOW);
    expect(starts.get("long")).toEqual(inSeconds(180));
  });

  it("picks the node that frees up first", () => {
    // Prepare
    const input = {
      now: NOW,
      nodes: [node("n1", { cpu: 4 }), node("n2", { cpu: 4 })],
      running: [run("n1", 4, 300), run("n2", 4, 45)],
      queued: [job("j1", 1, 60)],
    };

    // Act
    const starts = estimateStarts(input);

    // Assess
    expect(starts.get("j1")).toEqual(inSeconds(45));
  });

  it("takes an overdue running job to end now", () => {
    // Prepare
    const input = {
      now: NOW,
      nodes: [node("n1", { cpu: 4 })],
      running: [run("n1", 4, -30)],
      queued: [job("j1", 4, 60)],
    };

    // Act
    const starts = estimateStarts(input);

    // Assess
    expect(starts.get("j1")).toEqual(NOW);
  });

  it("has no estimate where unknown durations hold the room", () => {
    // Prepare: n1 runs a job of unknown end; j1 starts on n2 but its own duration is unknown
    const input = {
      now: NOW,
      nodes: [node("n1", { cpu: 4 }), node("n2")],
      running: [run("n1", 4, null)],
      queued: [job("j1", 4, null), job("j2", 1, 60), job("j3", 1, 60, ["gpu"])],
    };

    // Act
    const starts = estimateStarts(input);

    // Assess
    expect(starts.get("j1")).toEqual(NOW);
    expect(starts.get("j2")).toBeNull();
    expect(starts.get("j3")).toBeNull();
  });

  it("has no estimate for a job bigger than any node", () => {
    // Prepare
    const input = { now: NOW, nodes: [node("n1")], running: [], queued: [job("j1", 8, 60)] };

    // Act
    const starts = estimateStarts(input);

    // Assess
    expect(starts.get("j1")).toBeNull();
  });

  it("keeps a reservation not in the running list held", () => {
    // Prepare: used says 3 CPUs, the running list knows of 1 of them
    const input = {
      now: NOW,
      nodes: [node("n1", { cpu: 3 })],
      running: [run("n1", 1, 60)],
      queued: [job("j1", 2, 60)],
    };

    // Act
    const starts = estimateStarts(input);

    // Assess
    expect(starts.get("j1")).toEqual(inSeconds(60));
  });

  it("never over-commits the nodes at any moment of the simulation", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            node: fc.integer({ min: 0, max: 2 }),
            cpu: fc.integer({ min: 1, max: 2 }),
            ends: fc.integer({ min: -10, max: 300 }),
          }),
          { maxLength: 6 },
        ),
        fc.array(
          fc.record({ cpu: fc.integer({ min: 1, max: 4 }), seconds: fc.integer({ min: 1, max: 300 }) }),
          { maxLength: 20 },
        ),
        fc.integer({ min: 1, max: 3 }),
        (runs, jobs, nodeCount) => {
          // With one node the pool-wide check below is the node's own.
          const ids = ["n0", "n1", "n2"].slice(0, nodeCount);
          const running: EstimateRunning[] = [];
          for (const r of runs) {
            const nodeId = ids[r.node % nodeCount] ?? "n0";
            const held = running.filter((x) => x.nodeId === nodeId).reduce((s, x) => s + x.resources.cpu, 0);
            if (held + r.cpu <= SIZE.cpu) running.push(run(nodeId, r.cpu, r.ends));
          }
          const queued = jobs.map((j, i) => job(`j${i}`, j.cpu, j.seconds));
          const starts = estimateStarts({ now: NOW, nodes: ids.map((id) => node(id)), running, queued });
          // Replay: at every start, the total demand at that moment across the pool fits.
          const intervals = [
            ...running.map((r) => ({
              cpu: r.resources.cpu,
              from: NOW.getTime(),
              to: Math.max(NOW.getTime(), r.expectedEndAt?.getTime() ?? 0),
            })),
            ...queued.map((q) => {
              const at = starts.get(q.id)?.getTime() ?? Number.NaN;
              return { cpu: q.resources.cpu, from: at, to: at + (q.expectedDurationMs ?? 0) };
            }),
          ];
          for (const q of queued) {
            const at = starts.get(q.id);
            expect(at).toBeInstanceOf(Date);
            if (!at) continue;
            expect(at.getTime()).toBeGreaterThanOrEqual(NOW.getTime());
            const t = at.getTime();
            const busy = intervals.filter((i) => i.from <= t && t < i.to).reduce((s, i) => s + i.cpu, 0);
            expect(busy).toBeLessThanOrEqual(SIZE.cpu * ids.length);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
