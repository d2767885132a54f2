import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { JobStatus } from "../../core/job";
import {
  ALL,
  addSample,
  bucketOf,
  compareSequence,
  emptyDelta,
  foldChange,
  foldChanges,
  type Histogram,
  type JobChange,
  type JobImage,
  mergeDelta,
  mergeHistogram,
  percentile,
  percentiles,
  poolDimension,
  RELATIVE_ACCURACY,
  rollUpHours,
  typeDimension,
  windowPlan,
} from "../../core/stats";

/** The exact nearest-rank quantile the histogram is promised to approximate. */
function exactPercentile(samples: readonly number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1] ?? Number.NaN;
}

function histogramOf(samples: readonly number[]): Histogram {
  const h: Histogram = new Map();
  for (const s of samples) addSample(h, s);
  return h;
}

// Durations from 0 to a week in ms, skewed towards small ones as real queue waits are.
const duration = fc.oneof(
  fc.integer({ min: 0, max: 1_000 }),
  fc.integer({ min: 0, max: 3_600_000 }),
  fc.integer({ min: 0, max: 604_800_000 }),
);
const quantile = fc.oneof(
  fc.constantFrom(0.5, 0.95, 0.99, 1),
  fc.double({ min: 0.001, max: 1, noNaN: true }),
);

describe("histogram", () => {
  it(`answers every quantile within ${RELATIVE_ACCURACY * 100} % of the exact one`, () => {
    fc.assert(
      fc.property(fc.array(duration, { minLength: 1, maxLength: 300 }), quantile, (samples, q) => {
        const exact = exactPercentile(samples, q);
        const estimate = percentile(histogramOf(samples), q) ?? Number.NaN;

        // A hair of floating point at bucket edges: log() of an exact power of γ.
        expect(Math.abs(estimate - exact)).toBeLessThanOrEqual(exact * RELATIVE_ACCURACY * (1 + 1e-9));
      }),
      { numRuns: 500 },
    );
  });

  it("rounded to whole milliseconds, stays within the bound plus half a millisecond", () => {
    fc.assert(
      fc.property(fc.array(duration, { minLength: 1, maxLength: 200 }), (samples) => {
        const shown = percentiles(histogramOf(samples));
        for (const [q, value] of [
          [0.5, shown.p50],
          [0.95, shown.p95],
          [0.99, shown.p99],
        ] as const) {
          const exact = exactPercentile(samples, q);
          expect(Math.abs((value ?? Number.NaN) - exact)).toBeLessThanOrEqual(
            exact * RELATIVE_ACCURACY + 0.5,
          );
        }
      }),
    );
  });

  it("merging histograms is the histogram of all the samples (how a window's minutes combine)", () => {
    fc.assert(
      fc.property(fc.array(fc.array(duration, { maxLength: 50 }), { maxLength: 8 }), (parts) => {
        const merged: Histogram = new Map();
        for (const part of parts) mergeHistogram(merged, histogramOf(part));

        expect(merged).toEqual(histogramOf(parts.flat()));
      }),
    );
  });

  it("has no percentile without samples, and reads 0 exactly", () => {
    expect(percentiles(new Map())).toEqual({ p50: null, p95: null, p99: null });
    expect(percentiles(histogramOf([0, 0, 0]))).toEqual({ p50: 0, p95: 0, p99: 0 });
    expect(bucketOf(-5)).toBe(0);
  });

  it("spans a week of milliseconds in a few hundred buckets", () => {
    expect(bucketOf(604_800_000)).toBeLessThan(520);
  });
});

const T0 = "2026-12-06T09:00:00.000Z";
const at = (seconds: number): string => new Date(Date.parse(T0) + seconds * 1000).toISOString();

function image(overrides: Partial<JobImage> = {}): JobImage {
  return {
    id: "job_1",
    status: "queued",
    owner: "alice",
    type: "train",
    pool: null,
    reservationPool: null,
    createdAt: T0,
    updatedAt: T0,
    queuedAt: T0,
    attemptStartedAt: null,
    staged: false,
    ...overrides,
  };
}

/** A job's life as the stream shows it: submitted queued, admitted after 10 s, run 30 s, completed. */
function lifeOf(id: string, end: JobStatus = "completed", owner = "alice"): JobChange[] {
  const queued = image({ id, owner });
  const dispatched = image({ id, owner, status: "dispatched", reservationPool: "gpu", updatedAt: at(10) });
  const running = { ...dispatched, status: "running" as const, updatedAt: at(11), attemptStartedAt: at(11) };
  const ended = image({ id, owner, status: end, updatedAt: at(41), attemptStartedAt: at(11) });
  return [
    { old: null, new: queued },
    // A write that changes no status (the scheduler's reason): moves nothing.
    { old: queued, new: { ...queued, updatedAt: at(5) } },
    { old: queued, new: dispatched },
    { old: dispatched, new: running },
    { old: running, new: ended },
  ];
}

describe("folding job changes", () => {
  it("counts an ended job once per dimension, with its queue wait and run time", () => {
    const delta = foldChanges(lifeOf("job_1"));

    const minute = delta.minutes.get("2026-12-06T09:00");
    for (const dim of [ALL, poolDimension("gpu"), typeDimension("train")]) {
      const f = minute?.get(dim);
      expect(f?.completed).toBe(1);
      expect(f?.failed).toBe(0);
      expect(percentile(f?.queueWait ?? new Map(), 0.5)).toBeCloseTo(10_000, -3);
      expect(percentile(f?.run ?? new Map(), 0.5)).toBeCloseTo(30_000, -3);
    }
    expect([...delta.byStatus]).toEqual([["completed", 1]]);
    expect(delta.byPool.size).toBe(0);
    expect(delta.owners.size).toBe(0);
    // The successful attempt's run time, for the type's mean (estimatedStartAt).
    expect(delta.runTimes.get("2026-12-06")?.get("train")).toEqual({ count: 1, totalMs: 30_000 });
  });

  it("keeps the gauges of jobs still on the way, per status, pool and owner", () => {
    const [submitted, , admitted, started] = lifeOf("job_2", "completed", "bob");
    const delta = foldChanges([submitted, admitted, started].filter((c): c is JobChange => c !== undefined));

    expect([...delta.byStatus]).toEqual([["running", 1]]);
    expect([...(delta.byPool.get("gpu") ?? [])]).toEqual([["running", 1]]);
    expect(delta.owners.get("bob")).toEqual({ running: 1, queued: 0 });
  });

  it("counts a failed job and its last attempt's run time", () => {
    const delta = foldChanges(lifeOf("job_3", "failed"));

    const f = delta.minutes.get("2026-12-06T09:00")?.get(ALL);
    expect(f?.failed).toBe(1);
    expect(f?.completed).toBe(0);
    expect(f?.run.size).toBe(1);
    // A failed attempt says nothing of how long the type takes to succeed.
    expect(delta.runTimes.size).toBe(0);
  });

  it("ignores staged images: a staged job counts from its commit", () => {
    const staged = image({ staged: true });
    const delta = foldChanges([
      { old: null, new: staged },
      { old: staged, new: image() },
    ]);

    expect([...delta.byStatus]).toEqual([["queued", 1]]);
    expect(delta.byPool.get("*")?.get("queued")).toBe(1);
  });

  it("adds up to the same delta however the changes are split into batches", () => {
    const jobs = fc.array(
      fc.record({ end: fc.constantFrom<JobStatus>("completed", "failed"), owner: fc.constantFrom("a", "b") }),
      { maxLength: 6 },
    );
    fc.assert(
      fc.property(jobs, fc.integer({ min: 0, max: 40 }), (specs, cut) => {
        const changes = specs.flatMap((s, i) => lifeOf(`job_${i}`, s.end, s.owner));
        const split = emptyDelta();
        mergeDelta(split, foldChanges(changes.slice(0, cut)));
        mergeDelta(split, foldChanges(changes.slice(cut)));

        expect(split).toEqual(foldChanges(changes));
      }),
    );
  });

  it("leaves nothing behind for a change that moves no figure", () => {
    const delta = emptyDelta();
    foldChange(delta, { old: image(), new: image({ updatedAt: at(3) }) });

    expect(delta).toEqual(emptyDelta());
  });

  it("rolls minutes up into hours", () => {
    const early = lifeOf("job_a");
    const late = lifeOf("job_b").map((c) => ({
      old: c.old && { ...c.old, updatedAt: at(1800) },
      new: c.new && { ...c.new, updatedAt: at(1800) },
    }));
    const hours = rollUpHours(foldChanges([...early, ...late]).minutes);

    expect([...hours.keys()]).toEqual(["2026-12-06T09"]);
    expect(hours.get("2026-12-06T09")?.get(ALL)?.completed).toBe(2);
  });
});

describe("stream sequence numbers", () => {
  it("orders decimal strings beyond a double's precision", () => {
    expect(compareSequence("100000000000000000000001", "99999999999999999999999")).toBeGreaterThan(0);
    expect(compareSequence("000123", "123")).toBe(0);
    expect(compareSequence("4500000000000000000001", "4500000000000000000002")).toBeLessThan(0);
  });
});

describe("windows", () => {
  const now = new Date("2026-12-06T09:30:20.000Z");

  it("reads the current minute and the window's minutes before it, up to an hour", () => {
    const plan = windowPlan("5m", now);

    expect(plan.resolution).toBe("minute");
    expect(plan.periods).toEqual([
      "2026-12-06T09:25",
      "2026-12-06T09:26",
      "2026-12-06T09:27",
      "2026-12-06T09:28",
      "2026-12-06T09:29",
      "2026-12-06T09:30",
    ]);
    expect(windowPlan("1h", now).periods).toHaveLength(61);
  });

  it("reads whole hours beyond an hour: 25 items for a day", () => {
    const plan = windowPlan("24h", now);

    expect(plan.resolution).toBe("hour");
    expect(plan.periods).toHaveLength(25);
    expect(plan.periods[0]).toBe("2026-12-05T09");
    expect(plan.periods.at(-1)).toBe("2026-12-06T09");
  });
});
