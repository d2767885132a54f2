import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  currentGpuSeconds,
  gpuQuotaRefusal,
  gpuSecondsByWindow,
  NO_QUOTA,
  type QuotaLimits,
  queuedJobsRefusal,
  quotaView,
  usageWindows,
} from "../../core/quota";

function at(iso: string): Date {
  return new Date(iso);
}

function limits(partial: Partial<QuotaLimits>): QuotaLimits {
  return { ...NO_QUOTA, ...partial };
}

describe("usageWindows", () => {
  it("names the UTC day and the Monday that starts its week", () => {
    // Act
    const wednesday = usageWindows(at("2026-11-25T12:00:00Z"));
    const sundayNight = usageWindows(at("2026-11-29T23:59:59.999Z"));
    const mondayMidnight = usageWindows(at("2026-11-30T00:00:00Z"));

    // Assess
    expect(wednesday).toEqual({ day: "2026-11-25", week: "2026-11-23" });
    expect(sundayNight).toEqual({ day: "2026-11-29", week: "2026-11-23" });
    expect(mondayMidnight).toEqual({ day: "2026-11-30", week: "2026-11-30" });
  });

  it("goes by UTC, not by any local zone", () => {
    // 23:30 on Sunday in UTC is already Monday in Berlin: still last week's window.
    expect(usageWindows(at("2026-11-29T23:30:00Z"))).toEqual({ day: "2026-11-29", week: "2026-11-23" });
  });

  it("finds the Monday across a month and a year boundary", () => {
    expect(usageWindows(at("2027-01-01T08:00:00Z"))).toEqual({ day: "2027-01-01", week: "2026-12-28" });
  });
});

describe("gpuSecondsByWindow", () => {
  it("counts GPUs times duration within one day", () => {
    expect(gpuSecondsByWindow(2, at("2026-11-25T10:00:00Z"), at("2026-11-25T10:30:00Z"))).toEqual([
      { day: "2026-11-25", week: "2026-11-23", gpuSeconds: 3600 },
    ]);
  });

  it("splits an attempt at UTC midnight, and across Monday into two weeks", () => {
    // Act: Sunday 23:00 to Monday 01:30 on 4 GPUs.
    const spans = gpuSecondsByWindow(4, at("2026-11-29T23:00:00Z"), at("2026-11-30T01:30:00Z"));

    // Assess
    expect(spans).toEqual([
      { day: "2026-11-29", week: "2026-11-23", gpuSeconds: 4 * 3600 },
      { day: "2026-11-30", week: "2026-11-30", gpuSeconds: 4 * 5400 },
    ]);
  });

  it("gives a full day to every day in between", () => {
    // Act
    const spans = gpuSecondsByWindow(1, at("2026-11-24T12:00:00Z"), at("2026-11-27T00:00:00Z"));

    // Assess: the span ending exactly at midnight touches no part of the 27th.
    expect(spans.map((s) => [s.day, s.gpuSeconds])).toEqual([
      ["2026-11-24", 43_200],
      ["2026-11-25", 86_400],
      ["2026-11-26", 86_400],
    ]);
  });

  it("is empty without GPUs or without a positive duration", () => {
    const start = at("2026-11-25T10:00:00Z");
    expect(gpuSecondsByWindow(0, start, at("2026-11-25T11:00:00Z"))).toEqual([]);
    expect(gpuSecondsByWindow(2, start, start)).toEqual([]);
    expect(gpuSecondsByWindow(2, start, at("2026-11-25T09:00:00Z"))).toEqual([]);
  });
});

describe("currentGpuSeconds", () => {
  it("counts a running attempt from its start when it started today", () => {
    expect(currentGpuSeconds(2, at("2026-11-25T10:00:00Z"), at("2026-11-25T10:10:00Z"))).toEqual({
      todayGpuSeconds: 1200,
      weekGpuSeconds: 1200,
    });
  });

  it("counts only today's part toward today, and only this week's toward the week", () => {
    // Prepare: started Saturday 12:00, now Monday 06:00 of the next week.
    const startedAt = at("2026-11-28T12:00:00Z");

    // Act
    const monday = currentGpuSeconds(1, startedAt, at("2026-11-30T06:00:00Z"));
    const sunday = currentGpuSeconds(1, startedAt, at("2026-11-29T06:00:00Z"));

    // Assess
    expect(monday).toEqual({ todayGpuSeconds: 6 * 3600, weekGpuSeconds: 6 * 3600 });
    expect(sunday).toEqual({ todayGpuSeconds: 6 * 3600, weekGpuSeconds: 18 * 3600 });
  });

  it("is zero without GPUs or when the attempt has not started yet", () => {
    const now = at("2026-11-25T10:00:00Z");
    expect(currentGpuSeconds(0, at("2026-11-25T09:00:00Z"), now)).toEqual({
      todayGpuSeconds: 0,
      weekGpuSeconds: 0,
    });
    expect(currentGpuSeconds(2, at("2026-11-25T11:00:00Z"), now)).toEqual({
      todayGpuSeconds: 0,
      weekGpuSeconds: 0,
    });
  });
});

describe("quotaView", () => {
  it("shows what is left of each limit, and null where there is no limit", () => {
    // Act
    const view = quotaView("alice", limits({ dailyGpuSeconds: 3600, maxQueuedJobs: 10 }), {
      todayGpuSeconds: 1000,
      weekGpuSeconds: 5000,
      queuedJobs: 3,
    });

    // Assess
    expect(view).toEqual({
      principal: "alice",
      limits: { dailyGpuSeconds: 3600, weeklyGpuSeconds: null, maxQueuedJobs: 10, maxPriority: null },
      used: { todayGpuSeconds: 1000, weekGpuSeconds: 5000, queuedJobs: 3 },
      remaining: { todayGpuSeconds: 2600, weekGpuSeconds: null, queuedJobs: 7 },
      warning: false,
    });
  });

  it("rounds GPU-seconds down to whole seconds and never shows less than nothing left", () => {
    // Act
    const view = quotaView("bob", limits({ dailyGpuSeconds: 100, weeklyGpuSeconds: 1000 }), {
      todayGpuSeconds: 150.9,
      weekGpuSeconds: 499.99,
      queuedJobs: 0,
    });

    // Assess
    expect(view.used).toEqual({ todayGpuSeconds: 150, weekGpuSeconds: 499, queuedJobs: 0 });
    expect(view.remaining).toEqual({ todayGpuSeconds: 0, weekGpuSeconds: 501, queuedJobs: null });
  });

  it("warns from 80 % of any limit on", () => {
    // Prepare
    const daily = limits({ dailyGpuSeconds: 3600 });
    const usage = (today: number, queuedJobs = 0) => ({
      todayGpuSeconds: today,
      weekGpuSeconds: today,
      queuedJobs,
    });

    // Act + Assess
    expect(quotaView("a", daily, usage(2879)).warning).toBe(false);
    expect(quotaView("a", daily, usage(2880)).warning).toBe(true);
    expect(quotaView("a", limits({ weeklyGpuSeconds: 5 }), usage(4)).warning).toBe(true);
    expect(quotaView("a", limits({ maxQueuedJobs: 10 }), usage(0, 8)).warning).toBe(true);
    expect(quotaView("a", limits({ maxQueuedJobs: 10 }), usage(0, 7)).warning).toBe(false);
    expect(quotaView("a", NO_QUOTA, usage(1e9, 1e6)).warning).toBe(false);
  });

  it("warns when a limit of 0 is set: it is exhausted from the start", () => {
    expect(
      quotaView("a", limits({ dailyGpuSeconds: 0 }), {
        todayGpuSeconds: 0,
        weekGpuSeconds: 0,
        queuedJobs: 0,
      }),
    ).toMatchObject({ remaining: { todayGpuSeconds: 0 }, warning: true });
  });
});

describe("gpuQuotaRefusal", () => {
  it("refuses once today's usage reaches the daily limit, in API.md's words", () => {
    expect(
      gpuQuotaRefusal(limits({ dailyGpuSeconds: 3600 }), { todayGpuSeconds: 3600, weekGpuSeconds: 3600 }),
    ).toEqual({ code: "quota", message: "quota exceeded: 3600 of 3600 GPU-seconds used today" });
  });

  it("names the weekly limit when only that one is over", () => {
    expect(
      gpuQuotaRefusal(limits({ dailyGpuSeconds: 3600, weeklyGpuSeconds: 20_000 }), {
        todayGpuSeconds: 100,
        weekGpuSeconds: 20_000.7,
      }),
    ).toEqual({ code: "quota", message: "quota exceeded: 20000 of 20000 GPU-seconds used this week" });
  });

  it("names the daily limit first when both are over", () => {
    expect(
      gpuQuotaRefusal(limits({ dailyGpuSeconds: 10, weeklyGpuSeconds: 10 }), {
        todayGpuSeconds: 12,
        weekGpuSeconds: 40,
      })?.message,
    ).toBe("quota exceeded: 12 of 10 GPU-seconds used today");
  });

  it("lets GPU work through under the limits, or with none", () => {
    const used = { todayGpuSeconds: 3599.9, weekGpuSeconds: 3599.9 };
    expect(gpuQuotaRefusal(limits({ dailyGpuSeconds: 3600, weeklyGpuSeconds: 3600 }), used)).toBeNull();
    expect(gpuQuotaRefusal(NO_QUOTA, { todayGpuSeconds: 1e12, weekGpuSeconds: 1e12 })).toBeNull();
  });
});

describe("queuedJobsRefusal", () => {
  it("refuses a submission that would take the not-yet-started jobs past maxQueuedJobs", () => {
    expect(queuedJobsRefusal(limits({ maxQueuedJobs: 1000 }), 999, 2, "alice")).toBe(
      "maxQueuedJobs is 1000 and alice has 999 jobs not yet started; 2 more would exceed it",
    );
    expect(queuedJobsRefusal(limits({ maxQueuedJobs: 1 }), 1, 1)).toBe(
      "maxQueuedJobs is 1 and this principal has 1 job not yet started; 1 more would exceed it",
    );
  });

  it("accepts a submission that reaches the limit exactly, or with no limit", () => {
    expect(queuedJobsRefusal(limits({ maxQueuedJobs: 1000 }), 998, 2, "alice")).toBeNull();
    expect(queuedJobsRefusal(NO_QUOTA, 1e9, 500, "alice")).toBeNull();
  });
});

// ---- properties ----

const instantArb = fc.integer({ min: Date.UTC(2024, 0, 1), max: Date.UTC(2028, 0, 1) });
const attemptArb = fc.record({
  gpu: fc.integer({ min: 1, max: 8 }),
  start: instantArb,
  durationMs: fc.integer({ min: 1, max: 10 * 86_400_000 }),
});

describe("GPU-seconds properties", () => {
  it("the spans of an attempt add up to GPUs × duration, one per distinct day, in order", () => {
    fc.assert(
      fc.property(attemptArb, ({ gpu, start, durationMs }) => {
        const spans = gpuSecondsByWindow(gpu, new Date(start), new Date(start + durationMs));
        const total = spans.reduce((sum, s) => sum + s.gpuSeconds, 0);
        expect(total).toBeCloseTo((gpu * durationMs) / 1000, 6);
        const days = spans.map((s) => s.day);
        expect(days).toEqual([...new Set(days)].sort());
        for (const span of spans) {
          expect(span.gpuSeconds).toBeGreaterThan(0);
          expect(span.gpuSeconds).toBeLessThanOrEqual(gpu * 86_400);
          expect(span.week).toBe(usageWindows(new Date(`${span.day}T00:00:00Z`)).week);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("a running attempt's current usage is the part of its spans in today's and this week's windows", () => {
    fc.assert(
      fc.property(attemptArb, ({ gpu, start, durationMs }) => {
        const now = new Date(start + durationMs);
        const windows = usageWindows(now);
        const spans = gpuSecondsByWindow(gpu, new Date(start), now);
        const current = currentGpuSeconds(gpu, new Date(start), now);
        const sum = (keep: (day: string, week: string) => boolean) =>
          spans.filter((s) => keep(s.day, s.week)).reduce((total, s) => total + s.gpuSeconds, 0);
        expect(current.todayGpuSeconds).toBeCloseTo(
          sum((day) => day === windows.day),
          6,
        );
        expect(current.weekGpuSeconds).toBeCloseTo(
          sum((_, week) => week === windows.week),
          6,
        );
      }),
      { numRuns: 300 },
    );
  });
});
