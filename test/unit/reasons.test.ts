import { describe, expect, it } from "vitest";
import { PENDING_REASON, queuedReason } from "../../core/reasons";

/** How a queued job's stored reason reads once the jobs ahead of it are known (core/reasons.ts). */
describe("queuedReason", () => {
  it("reads a job queued with no more said of it, with jobs ahead, as waiting behind them", () => {
    expect(queuedReason(PENDING_REASON, 3)).toEqual({
      code: "priority",
      message: "waiting behind 3 jobs ahead of it in the queue",
    });
    expect(queuedReason(PENDING_REASON, 1)).toEqual({
      code: "priority",
      message: "waiting behind 1 job ahead of it in the queue",
    });
    expect(queuedReason(PENDING_REASON, null)).toEqual({
      code: "priority",
      message: "waiting behind jobs ahead of it in the queue",
    });
  });

  it("leaves the first in line, and any other pending reason, as stored", () => {
    expect(queuedReason(PENDING_REASON, 0)).toEqual(PENDING_REASON);
    const starting = {
      code: "pending",
      message: "waiting for admission (its execution could not be started)",
    } as const;
    expect(queuedReason(starting, 4)).toEqual(starting);
  });

  it("counts the jobs ahead into a stored behind reason, keeping what it says the job needs", () => {
    const stored = {
      code: "priority",
      message: "waiting behind jobs ahead of it in the queue; needs 2 GPU in pool gpu, 0 free",
    } as const;
    expect(queuedReason(stored, 2)).toEqual({
      code: "priority",
      message: "waiting behind 2 jobs ahead of it in the queue; needs 2 GPU in pool gpu, 0 free",
    });
    expect(queuedReason(stored, 0)).toEqual(stored);
  });

  it("leaves every other reason as stored", () => {
    const quota = { code: "quota", message: "quota exceeded: 3600 of 3600 GPU-seconds used today" } as const;
    const resources = { code: "resources", message: "needs 4 GPU in pool gpu, 2 free" } as const;
    expect(queuedReason(quota, 5)).toEqual(quota);
    expect(queuedReason(resources, 5)).toEqual(resources);
  });
});
