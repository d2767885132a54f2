import { describe, expect, it } from "vitest";
import type { Stats } from "../../client/index";
import {
  appendSample,
  formatMs,
  formatShare,
  medianColumns,
  percentileColumns,
  poolNames,
  type Sample,
  sampleOf,
  throughputColumns,
  utilizationColumns,
} from "../../web/src/views/stats-series";

const none = { p50: null, p95: null, p99: null };

function stats(at: string, extra: Partial<Stats> = {}): Stats {
  return {
    generatedAt: at,
    window: "1h",
    counts: { byStatus: {} as Stats["counts"]["byStatus"], byPool: {} },
    throughput: { completedLastMinute: 0, failedLastMinute: 0, completedLastHour: 0, failedLastHour: 0 },
    queueWaitMs: { p50: 100, p95: 900, p99: 1500 },
    runMs: none,
    byPool: {
      gpu: {
        completed: 1,
        failed: 0,
        queueWaitMs: { p50: 10, p95: 20, p99: 30 },
        runMs: none,
        utilization: { cpu: 0.5, memoryMb: 0.125, gpu: null },
      },
      cpu: {
        completed: 0,
        failed: 0,
        queueWaitMs: none,
        runMs: none,
        utilization: { cpu: 0, memoryMb: 0, gpu: null },
      },
    },
    byType: {},
    owners: [],
    ownersTruncated: false,
    overheadUsd: null,
    cost: {
      today: { jobs: 0, totalUsd: 0, requestsUsd: 0, computeUsd: 0, byOwner: {}, byProject: {} },
      week: { jobs: 0, totalUsd: 0, requestsUsd: 0, computeUsd: 0, byOwner: {}, byProject: {} },
    },
    series: [],
    seriesStepSeconds: 60,
    percentileRelativeError: 0.02,
    ...extra,
  };
}

const T0 = "2026-12-06T12:00:00.000Z";
const T1 = "2026-12-06T12:00:05.000Z";

describe("stats view series", () => {
  it("keeps samples oldest first, drops one not newer than the last, and caps their number", () => {
    const a = sampleOf(stats(T0));
    const b = sampleOf(stats(T1));
    let samples: Sample[] = appendSample([], a);
    samples = appendSample(samples, b);
    expect(samples.map((s) => s.t)).toEqual([a.t, b.t]);
    expect(appendSample(samples, a)).toEqual(samples);
    const many = Array.from({ length: 10 }, (_, i) => ({ ...a, t: a.t + i }));
    expect(many.reduce<Sample[]>((acc, s) => appendSample(acc, s, 4), []).map((s) => s.t)).toEqual([
      a.t + 6,
      a.t + 7,
      a.t + 8,
      a.t + 9,
    ]);
  });

  it("starts afresh when the window changes: figures over 5 min and 24 h are not one line", () => {
    const hour = sampleOf(stats(T0));
    const day = sampleOf(stats(T1, { window: "24h" }));
    expect(appendSample([hour], day)).toEqual([day]);
  });

  it("turns the server's series into chart columns in time order, gaps as null", () => {
    const s = stats(T0, {
      series: [
        { minute: "2026-12-06T12:01:00.000Z", completed: 3, failed: 1, queueWaitP50Ms: null, runP50Ms: 400 },
        { minute: "2026-12-06T12:00:00.000Z", completed: 2, failed: 0, queueWaitP50Ms: 50, runP50Ms: null },
      ],
    });
    const x = [Date.parse("2026-12-06T12:00:00Z") / 1000, Date.parse("2026-12-06T12:01:00Z") / 1000];
    expect(throughputColumns(s)).toEqual([x, [2, 3], [0, 1]]);
    expect(medianColumns(s)).toEqual([x, [50, null], [null, 400]]);
  });

  it("draws sampled percentiles for the system or one pool, and utilization as percentages", () => {
    const samples = [sampleOf(stats(T0)), sampleOf(stats(T1))];
    const xs = samples.map((s) => s.t);
    expect(percentileColumns(samples, "queueWaitMs")).toEqual([xs, [100, 100], [900, 900], [1500, 1500]]);
    expect(percentileColumns(samples, "queueWaitMs", "gpu")).toEqual([xs, [10, 10], [20, 20], [30, 30]]);
    expect(percentileColumns(samples, "queueWaitMs", "gone")).toEqual([
      xs,
      [null, null],
      [null, null],
      [null, null],
    ]);
    expect(utilizationColumns(samples, "gpu")).toEqual([xs, [50, 50], [12.5, 12.5], [null, null]]);
  });

  it("lists pools in a stable order without the any-pool bucket", () => {
    const s = stats(T0);
    expect(
      poolNames({ ...s, byPool: { ...s.byPool, "*": s.byPool.cpu as Stats["byPool"][string] } }),
    ).toEqual(["cpu", "gpu"]);
  });

  it("says durations and shares for people", () => {
    expect(formatMs(null)).toBe("—");
    expect(formatMs(850.4)).toBe("850 ms");
    expect(formatMs(12_400)).toBe("12.4 s");
    expect(formatMs(100_000)).toBe("100 s");
    expect(formatMs(210_000)).toBe("3.5 min");
    expect(formatMs(3 * 3_600_000)).toBe("3 h");
    expect(formatShare(0.424)).toBe("42\u00a0%");
    expect(formatShare(null)).toBe("—");
  });
});
