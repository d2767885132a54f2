import { describe, expect, it } from "vitest";
import {
  notRetriedReason,
  parseReportedError,
  reportedErrorName,
  retryVerdict,
  UNRECOVERABLE_ERROR_PREFIX,
  unrecoverableMessage,
} from "../../core/retry-rule";

describe("retryVerdict", () => {
  it("retries a failure while attempts are left, after counting it", () => {
    expect(
      retryVerdict({ failuresBefore: 0, maxAttempts: 3, notCounted: false, unrecoverable: false }),
    ).toEqual({
      next: "retry",
      failures: 1,
    });
    expect(
      retryVerdict({ failuresBefore: 1, maxAttempts: 3, notCounted: false, unrecoverable: false }),
    ).toEqual({
      next: "retry",
      failures: 2,
    });
  });

  it("ends the job when the failure used the last attempt", () => {
    expect(
      retryVerdict({ failuresBefore: 2, maxAttempts: 3, notCounted: false, unrecoverable: false }),
    ).toEqual({
      next: "end",
      failures: 3,
      why: "exhausted",
      attemptsLeft: 0,
    });
    expect(
      retryVerdict({ failuresBefore: 0, maxAttempts: 1, notCounted: false, unrecoverable: false }),
    ).toMatchObject({
      next: "end",
      why: "exhausted",
    });
  });

  it("ends the job at once on an unrecoverable failure, counting it and naming the attempts left unused", () => {
    expect(
      retryVerdict({ failuresBefore: 0, maxAttempts: 3, notCounted: false, unrecoverable: true }),
    ).toEqual({
      next: "end",
      failures: 1,
      why: "unrecoverable",
      attemptsLeft: 2,
    });
    // On the last attempt the failure is still the reason no retry was made.
    expect(
      retryVerdict({ failuresBefore: 0, maxAttempts: 1, notCounted: false, unrecoverable: true }),
    ).toEqual({
      next: "end",
      failures: 1,
      why: "unrecoverable",
      attemptsLeft: 0,
    });
  });

  it("puts an uncounted attempt (its worker shut down) back in line at once, whatever else it says", () => {
    for (const unrecoverable of [false, true]) {
      expect(retryVerdict({ failuresBefore: 2, maxAttempts: 3, notCounted: true, unrecoverable })).toEqual({
        next: "retry_now",
        failures: 2,
      });
    }
  });
});

describe("the unrecoverable mark on the reported error name", () => {
  it("round-trips through reportedErrorName and parseReportedError", () => {
    for (const failure of [
      { type: "unknown_type", unrecoverable: true },
      { type: "task_failed", unrecoverable: false },
      { type: "a.b.c", unrecoverable: true },
    ]) {
      expect(parseReportedError(reportedErrorName(failure))).toEqual(failure);
    }
    expect(reportedErrorName({ type: "result_too_large", unrecoverable: true })).toBe(
      `${UNRECOVERABLE_ERROR_PREFIX}result_too_large`,
    );
  });

  it("reads any other name as an ordinary failure, including Step Functions' own and a bare prefix", () => {
    expect(parseReportedError("States.Timeout")).toEqual({ type: "States.Timeout", unrecoverable: false });
    expect(parseReportedError("lost")).toEqual({ type: "lost", unrecoverable: false });
    expect(parseReportedError(UNRECOVERABLE_ERROR_PREFIX)).toEqual({
      type: UNRECOVERABLE_ERROR_PREFIX,
      unrecoverable: false,
    });
  });
});

describe("the words for a job an unrecoverable failure ended", () => {
  it("say no retry was made, and how many attempts went unused", () => {
    expect(unrecoverableMessage("no handler for job type x")).toBe(
      "unrecoverable: no handler for job type x; not retried",
    );
    expect(notRetriedReason(2)).toBe("unrecoverable: not retried (2 attempts left)");
    expect(notRetriedReason(1)).toBe("unrecoverable: not retried (1 attempt left)");
    expect(notRetriedReason(0)).toBe("unrecoverable: not retried");
  });
});
