import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { backoffDelaySeconds, nextAttemptAt } from "../../core/backoff";
import { BACKOFF_STRATEGIES, type RetryPolicy } from "../../core/job";

function policy(overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  return {
    maxAttempts: 3,
    strategy: "exponential",
    initialDelaySeconds: 1,
    backoffMultiplier: 2,
    maxDelaySeconds: 3600,
    ...overrides,
  };
}

describe("backoffDelaySeconds", () => {
  it.each([
    // strategy, initial, multiplier, cap, failed attempts, expected delay
    ["exponential", 1, 2, 3600, 1, 1],
    ["exponential", 1, 2, 3600, 2, 2],
    ["exponential", 1, 2, 3600, 3, 4],
    ["exponential", 1, 2, 3600, 10, 512],
    ["exponential", 1, 2, 3600, 12, 2048],
    ["exponential", 1, 2, 3600, 13, 3600],
    ["exponential", 5, 3, 100, 1, 5],
    ["exponential", 5, 3, 100, 3, 45],
    ["exponential", 5, 3, 100, 4, 100],
    ["exponential", 2, 1, 3600, 50, 2],
    ["exponential", 0.5, 2, 3600, 2, 1],
    ["linear", 10, 2, 3600, 1, 10],
    ["linear", 10, 2, 3600, 2, 20],
    ["linear", 10, 2, 3600, 7, 70],
    ["linear", 10, 2, 45, 5, 45],
    ["fibonacci", 3, 2, 3600, 1, 3],
    ["fibonacci", 3, 2, 3600, 2, 3],
    ["fibonacci", 3, 2, 3600, 3, 6],
    ["fibonacci", 3, 2, 3600, 4, 9],
    ["fibonacci", 3, 2, 3600, 5, 15],
    ["fibonacci", 3, 2, 3600, 10, 165],
    ["fibonacci", 3, 2, 100, 10, 100],
    ["immediate", 30, 2, 3600, 1, 0],
    ["immediate", 30, 2, 3600, 99, 0],
    ["exponential", 0, 2, 3600, 5, 0],
    ["exponential", 7, 2, 0, 5, 0],
  ] as const)(
    "%s initial %d × %d capped at %d after %d failures waits %d s",
    (strategy, initial, multiplier, cap, failed, expected) => {
      // Prepare
      const retry = policy({
        strategy,
        initialDelaySeconds: initial,
        backoffMultiplier: multiplier,
        maxDelaySeconds: cap,
      });

      // Act
      const delay = backoffDelaySeconds(retry, failed);

      // Assess
      expect(delay).toBe(expected);
    },
  );

  it.each(BACKOFF_STRATEGIES)("stays finite and capped for %s after 10 000 failures", (strategy) => {
    // Prepare
    const retry = policy({
      strategy,
      initialDelaySeconds: 600_000,
      backoffMultiplier: 100,
      maxDelaySeconds: 604_800,
    });

    // Act
    const delay = backoffDelaySeconds(retry, 10_000);

    // Assess
    expect(Number.isFinite(delay)).toBe(true);
    expect(delay).toBe(strategy === "immediate" ? 0 : 604_800);
  });

  it.each(["exponential", "linear", "fibonacci"] as const)(
    "saturates %s at the cap for an astronomically large attempt count instead of overflowing",
    (strategy) => {
      // Prepare
      const retry = policy({ strategy });

      // Act
      const delay = backoffDelaySeconds(retry, 1e300);

      // Assess
      expect(delay).toBe(3600);
    },
  );

  it("bounds the fibonacci walk by the cap, not by the attempt count, even for a tiny initial delay", () => {
    // Prepare
    const retry = policy({ strategy: "fibonacci", initialDelaySeconds: 1e-300 });

    // Act
    const delay = backoffDelaySeconds(retry, Number.MAX_SAFE_INTEGER);

    // Assess
    expect(delay).toBe(3600);
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])(
    "throws a RangeError for %d failed attempts",
    (failed) => {
      // Prepare
      const retry = policy();

      // Act
      const act = () => backoffDelaySeconds(retry, failed);

      // Assess
      expect(act).toThrow(RangeError);
    },
  );

  it.each([
    { initialDelaySeconds: -1 },
    { initialDelaySeconds: Number.NaN },
    { maxDelaySeconds: -5 },
    { maxDelaySeconds: Number.POSITIVE_INFINITY },
    { backoffMultiplier: 0.5 },
  ])("refuses a policy that would make a negative or NaN delay: %o", (overrides) => {
    // Prepare
    const retry = policy(overrides);

    // Act
    const act = () => backoffDelaySeconds(retry, 1);

    // Assess
    expect(act).toThrow(RangeError);
  });
});

describe("backoffDelaySeconds properties", () => {
  const anyPolicy = fc.record({
    maxAttempts: fc.integer({ min: 1, max: 100 }),
    strategy: fc.constantFrom(...BACKOFF_STRATEGIES),
    initialDelaySeconds: fc.double({ min: 0, max: 604_800, noNaN: true }),
    backoffMultiplier: fc.double({ min: 1, max: 100, noNaN: true }),
    maxDelaySeconds: fc.double({ min: 0, max: 604_800, noNaN: true }),
  });
  const failedAttempts = fc.integer({ min: 1, max: 10_000 });

  it("never decreases as failures accumulate, for every strategy", () => {
    // Prepare / Act / Assess
    fc.assert(
      fc.property(anyPolicy, failedAttempts, (retry, n) => {
        expect(backoffDelaySeconds(retry, n + 1)).toBeGreaterThanOrEqual(backoffDelaySeconds(retry, n));
      }),
      { numRuns: 1000 },
    );
  });

  it("is finite, never negative and never above the cap", () => {
    // Prepare / Act / Assess
    fc.assert(
      fc.property(anyPolicy, failedAttempts, (retry, n) => {
        const delay = backoffDelaySeconds(retry, n);
        expect(Number.isFinite(delay)).toBe(true);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThanOrEqual(retry.maxDelaySeconds);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("nextAttemptAt", () => {
  it("adds the backoff to now", () => {
    // Prepare
    const now = new Date("2026-11-22T22:00:00.000Z");

    // Act
    const at = nextAttemptAt(policy(), 3, now);

    // Assess
    expect(at.toISOString()).toBe("2026-11-22T22:00:04.000Z");
  });

  it("rounds a fractional delay up to the next millisecond, never earlier", () => {
    // Prepare
    const now = new Date("2026-11-22T22:00:00.000Z");

    // Act
    const at = nextAttemptAt(policy({ strategy: "linear", initialDelaySeconds: 0.0004 }), 1, now);

    // Assess
    expect(at.toISOString()).toBe("2026-11-22T22:00:00.001Z");
  });

  it("is now itself for the immediate strategy", () => {
    // Prepare
    const now = new Date("2026-11-22T22:00:00.000Z");

    // Act
    const at = nextAttemptAt(policy({ strategy: "immediate" }), 2, now);

    // Assess
    expect(at.getTime()).toBe(now.getTime());
  });
});
