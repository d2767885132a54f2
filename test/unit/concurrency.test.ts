import { describe, expect, it } from "vitest";
import { forEachConcurrent } from "../../core/concurrency";

describe("forEachConcurrent", () => {
  it("visits every input once with at most the given number in flight", async () => {
    // Prepare
    const inputs = Array.from({ length: 25 }, (_, i) => i);
    const seen: number[] = [];
    let inFlight = 0;
    let peak = 0;

    // Act
    await forEachConcurrent(inputs, 4, async (n) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((resolve) => setImmediate(resolve));
      seen.push(n);
      inFlight--;
    });

    // Assess
    expect([...seen].sort((a, b) => a - b)).toEqual(inputs);
    expect(peak).toBe(4);
  });

  it("does nothing for no inputs and rejects when a call fails", async () => {
    await expect(forEachConcurrent([], 8, async () => undefined)).resolves.toBeUndefined();
    await expect(
      forEachConcurrent([1, 2, 3], 2, async (n) => {
        if (n === 2) throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
  });
});
