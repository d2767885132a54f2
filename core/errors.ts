/**
 * Domain errors. Each carries the contract's error code; the one mapping to HTTP status lives in
 * functions/http.ts. Errors keep their `cause` so logs show the whole chain.
 */
export type ErrorCode =
  | "validation_failed"
  | "unknown_dependency"
  | "dependency_cycle"
  | "unknown_type"
  | "unsatisfiable_resources"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "invalid_transition"
  | "idempotency_key_reused"
  | "payload_too_large"
  | "too_many_requests"
  | "internal";

export interface FieldProblem {
  /** Dotted path to the field, e.g. `jobs.3.retry.maxAttempts`; empty for the body itself. */
  readonly path: string;
  readonly message: string;
}

export abstract class JobqError extends Error {
  abstract readonly code: ErrorCode;
  readonly details: unknown;

  constructor(message: string, details?: unknown, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.details = details;
  }
}

export class ValidationError extends JobqError {
  readonly code = "validation_failed";
  constructor(readonly problems: readonly FieldProblem[]) {
    super(
      problems.length === 1 && problems[0]
        ? `invalid request: ${problems[0].path || "body"}: ${problems[0].message}`
        : `invalid request: ${problems.length} problems`,
      problems,
    );
  }
}

export class UnknownDependencyError extends JobqError {
  readonly code = "unknown_dependency";
  constructor(readonly missing: readonly string[]) {
    super(`unknown dependency: ${missing.join(", ")}`, { missing });
  }
}

export class DependencyCycleError extends JobqError {
  readonly code = "dependency_cycle";
  constructor(readonly cycle: readonly string[]) {
    super(`dependency cycle: ${cycle.join(" -> ")}`, { cycle });
  }
}

export class UnknownTypeError extends JobqError {
  readonly code = "unknown_type";
  constructor(readonly type: string) {
    super(`unknown job type: ${type}`, { type });
  }
}

export class UnsatisfiableResourcesError extends JobqError {
  readonly code = "unsatisfiable_resources";
}

export class UnauthorizedError extends JobqError {
  readonly code = "unauthorized";
  constructor(message = "missing or unknown bearer token") {
    super(message);
  }
}

export class ForbiddenError extends JobqError {
  readonly code = "forbidden";
}

/**
 * A project-bound token naming another project (issue 13): 403 `forbidden`, the contract's code for
 * "not allowed", with the two projects in details so a client can tell what to fix.
 */
export class ProjectForbiddenError extends JobqError {
  readonly code = "forbidden";
  constructor(
    readonly project: string,
    readonly boundTo: string,
  ) {
    super(`this token is bound to project ${boundTo}; it may not submit jobs of project ${project}`, {
      project,
      boundTo,
    });
  }
}

export class NotFoundError extends JobqError {
  readonly code = "not_found";
}

export class InvalidTransitionError extends JobqError {
  readonly code = "invalid_transition";
  constructor(
    readonly from: string,
    readonly to: string,
    message = `cannot go from ${from} to ${to}`,
  ) {
    super(message, { from, to });
  }
}

export class IdempotencyKeyReusedError extends JobqError {
  readonly code = "idempotency_key_reused";
  constructor() {
    super("this Idempotency-Key was used with a different request in the last 24 h");
  }
}

export class PayloadTooLargeError extends JobqError {
  readonly code = "payload_too_large";
}

export class TooManyRequestsError extends JobqError {
  readonly code = "too_many_requests";
  constructor(
    message: string,
    /** Seconds the client should wait before retrying (the Retry-After header). */
    readonly retryAfterSeconds: number,
  ) {
    super(message, { retryAfterSeconds });
  }
}

/**
 * A submission could not be written within the time its caller waits (the API function's
 * timeout): nothing was created and the Idempotency-Key, if any, was given back, so the same
 * request may simply be sent again. A 429 with Retry-After, like any "try again shortly".
 */
export class SubmitTimeoutError extends TooManyRequestsError {
  constructor(message: string, retryAfterSeconds: number, options?: { cause?: unknown }) {
    super(message, retryAfterSeconds);
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/**
 * A write lost a race (its condition no longer held). Callers re-read and retry or map it to a
 * 409; it never reaches the client as a 500.
 */
export class ConcurrentUpdateError extends JobqError {
  readonly code = "invalid_transition";
}

/**
 * A submission refused by the principal's maxQueuedJobs quota: a 429 like any other, told apart
 * so a schedule's fire records it as a skipped fire instead of retrying it (docs/schedules.md).
 */
export class QueueLimitError extends TooManyRequestsError {}
