import type { RetryPolicy } from "./job";

/**
 * Retry backoff of API.md: the delay before attempt n+1 after n failed attempts. Pure, so the
 * lifecycle's Wait state and the API's `nextAttemptAt` agree to the millisecond.
 */

/**
 * Seconds to wait before the next attempt, after `failedAttempts` (n ≥ 1) failed ones:
 * exponential `initial × multiplier^(n−1)`, linear `initial × n`, fibonacci `initial × fib(n)`
 * with fib = 1, 1, 2, 3, 5 …, immediate 0; always capped by `maxDelaySeconds`.
 *
 * Whether an attempt n+1 is allowed at all (`maxAttempts`) is the caller's decision.
 */
export function backoffDelaySeconds(retry: RetryPolicy, failedAttempts: number): number {
  if (!Number.isInteger(failedAttempts) || failedAttempts < 1) {
    throw new RangeError(`failedAttempts must be an integer >= 1, got ${failedAttempts}`);
  }
  assertUsablePolicy(retry);
  const { initialDelaySeconds: initial, maxDelaySeconds: cap } = retry;
  // Zero would otherwise meet an Infinity below and make NaN.
  if (initial === 0 || cap === 0) return 0;

  switch (retry.strategy) {
    case "immediate":
      return 0;
    case "linear":
      // Compared by division so a huge n saturates at the cap instead of overflowing.
      return failedAttempts >= cap / initial ? cap : Math.min(cap, initial * failedAttempts);
    case "exponential":
      return exponentialDelay(initial, retry.backoffMultiplier, failedAttempts, cap);
    case "fibonacci":
      return fibonacciDelay(initial, failedAttempts, cap);
  }
}

/** When the next attempt may start: `now` plus the backoff, rounded up to whole milliseconds. */
export function nextAttemptAt(retry: RetryPolicy, failedAttempts: number, now: Date): Date {
  return new Date(now.getTime() + Math.ceil(backoffDelaySeconds(retry, failedAttempts) * 1000));
}

function exponentialDelay(initial: number, multiplier: number, failedAttempts: number, cap: number): number {
  const exponent = failedAttempts - 1;
  // Compared in log space so multiplier^exponent is only computed when it stays below the cap.
  if (Math.log(initial) + exponent * Math.log(multiplier) >= Math.log(cap)) return cap;
  return Math.min(cap, initial * multiplier ** exponent);
}

function fibonacciDelay(initial: number, failedAttempts: number, cap: number): number {
  // fib grows geometrically, so this loop reaches the cap within ~1500 steps whatever n is.
  let previous = 0;
  let current = 1;
  for (let n = 1; n < failedAttempts; n++) {
    if (initial * current >= cap) return cap;
    [previous, current] = [current, previous + current];
  }
  return Math.min(cap, initial * current);
}

/**
 * The schema already bounds these; the guard keeps a hand-built policy from turning into a
 * negative or NaN delay, which a Wait state would reject far from the cause.
 */
function assertUsablePolicy(retry: RetryPolicy): void {
  const { initialDelaySeconds, maxDelaySeconds, backoffMultiplier } = retry;
  if (!Number.isFinite(initialDelaySeconds) || initialDelaySeconds < 0) {
    throw new RangeError(`initialDelaySeconds must be a finite number >= 0, got ${initialDelaySeconds}`);
  }
  if (!Number.isFinite(maxDelaySeconds) || maxDelaySeconds < 0) {
    throw new RangeError(`maxDelaySeconds must be a finite number >= 0, got ${maxDelaySeconds}`);
  }
  if (!Number.isFinite(backoffMultiplier) || backoffMultiplier < 1) {
    throw new RangeError(`backoffMultiplier must be a finite number >= 1, got ${backoffMultiplier}`);
  }
}
