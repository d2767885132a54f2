/**
 * Whether a failed attempt is tried again, and how a failure that must not be retried travels
 * from the worker to the lifecycle. BullMQ's `UnrecoverableError` is the model: some failures
 * (a type no worker can run, a result that can never be stored, a task that knows its input is
 * bad) would fail the same way on every attempt, so retrying them only spends the backoff and
 * the attempts before the job ends the way it was always going to.
 *
 * The mark rides in the name of the error the worker hands Step Functions (SendTaskFailure's
 * `error`), because that name is the one thing every hop keeps as it is: the Dispatch state's
 * Catch puts it in `$.failure.Error`, and an ASL Retry or Catch could match on it. Dot-separated
 * like Step Functions' own `States.*` and `Lambda.*` names.
 */

export const UNRECOVERABLE_ERROR_PREFIX = "Unrecoverable.";

/** A failure as the worker reports it: its error type, and whether a retry could ever succeed. */
export interface ReportedFailure {
  readonly type: string;
  readonly unrecoverable: boolean;
}

/** The SendTaskFailure `error` for a failure of this type. */
export function reportedErrorName(failure: ReportedFailure): string {
  return failure.unrecoverable ? `${UNRECOVERABLE_ERROR_PREFIX}${failure.type}` : failure.type;
}

/** Reads back what `reportedErrorName` wrote; any other name is an ordinary (retriable) failure. */
export function parseReportedError(name: string): ReportedFailure {
  if (name.startsWith(UNRECOVERABLE_ERROR_PREFIX) && name.length > UNRECOVERABLE_ERROR_PREFIX.length) {
    return { type: name.slice(UNRECOVERABLE_ERROR_PREFIX.length), unrecoverable: true };
  }
  return { type: name, unrecoverable: false };
}

/** A failed attempt as the retry rule sees it. */
export interface FailedAttempt {
  /** Attempts that counted against maxAttempts before this one. */
  readonly failuresBefore: number;
  readonly maxAttempts: number;
  /** The attempt did not fail the job (its worker stopped it while shutting down): not counted. */
  readonly notCounted: boolean;
  /** The failure says no retry can succeed (UnrecoverableTaskError, the worker's own such failures). */
  readonly unrecoverable: boolean;
}

/** What happens after a failed attempt; `failures` is the job's count after it. */
export type RetryVerdict =
  /** Back in line at once, uncounted (a worker shutting down is not the job's fault). */
  | { readonly next: "retry_now"; readonly failures: number }
  /** After the backoff for `failures` failed attempts. */
  | { readonly next: "retry"; readonly failures: number }
  /** The job ends (failed, or its escalation): out of attempts, or not worth another one. */
  | {
      readonly next: "end";
      readonly failures: number;
      readonly why: "exhausted" | "unrecoverable";
      /** Attempts maxAttempts still allowed, which an unrecoverable failure leaves unused. */
      readonly attemptsLeft: number;
    };

/**
 * The retry rule. An uncounted attempt always goes back in line; an unrecoverable failure ends the
 * job whatever attempts are left (it still counts as a failure: it used an attempt); any other
 * failure is retried while the attempts counted stay below maxAttempts.
 */
export function retryVerdict(attempt: FailedAttempt): RetryVerdict {
  if (attempt.notCounted) return { next: "retry_now", failures: attempt.failuresBefore };
  const failures = attempt.failuresBefore + 1;
  const attemptsLeft = Math.max(0, attempt.maxAttempts - failures);
  if (attempt.unrecoverable) return { next: "end", failures, why: "unrecoverable", attemptsLeft };
  if (attemptsLeft > 0) return { next: "retry", failures };
  return { next: "end", failures, why: "exhausted", attemptsLeft: 0 };
}

/** The attempt's and the job's error message for an unrecoverable failure: says no retry was made. */
export function unrecoverableMessage(message: string): string {
  return `unrecoverable: ${message}; not retried`;
}

/** The end of a statusReason for a job an unrecoverable failure ended. */
export function notRetriedReason(attemptsLeft: number): string {
  const left = attemptsLeft === 1 ? "1 attempt left" : `${attemptsLeft} attempts left`;
  return attemptsLeft > 0 ? `unrecoverable: not retried (${left})` : "unrecoverable: not retried";
}
