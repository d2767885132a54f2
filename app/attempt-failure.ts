import { backoffDelaySeconds } from "../core/backoff";
import type { Job, JobError } from "../core/job";
import { unsatisfiableReason } from "../core/pools";
import { notRetriedReason, parseReportedError, retryVerdict, unrecoverableMessage } from "../core/retry-rule";
import { transition } from "../core/status";
import { escalationFor } from "../core/type-rules";
import { newAttemptItem } from "../store/attempts";
import { endAttemptItem, releaseCapacityItem } from "../store/capacity";
import { fromJobItem, type JobItem } from "../store/job-items";
import type { StatusChange, TransactItem } from "../store/job-repository";
import { attemptSk, jobPk } from "../store/keys";
import { cascadeCancel } from "./actions";
import { finishEscalation, submitEscalation, withdrawEscalation } from "./escalation";
import { stateChange } from "./events";
import type {
  AttemptFailureInput,
  AttemptOutcome,
  LifecycleContext,
  RetryDecision,
  StepError,
} from "./lifecycle";
import {
  attemptUsageItems,
  clip,
  durationSince,
  readJob,
  releaseStrayAdmission,
  retryOnRace,
  supersededBy,
} from "./lifecycle-steps";
import { logger } from "./logger";
import { metricPool, millisBetween, recordMetrics } from "./metrics";

/**
 * The AttemptFailed step: a failed, timed-out or lost attempt ended, and the decision to retry
 * after a backoff or to end the job (failed with its dependents cancelled, or escalated).
 */

export const END: RetryDecision = { next: "end", delaySeconds: 0 };

/**
 * An attempt failed, timed out or was lost. In one transaction: the attempt is ended with that
 * status (when it ever started running), the reservation goes back to its node, and the job
 * becomes `retrying` (attempts left: the decision is to wait out the backoff), or `failed` /
 * `escalated` (the decision is to end). Then a failed job's dependents are cancelled, or an
 * escalated job's replacement is created and its dependents rewired to it.
 *
 * Also the reconciler's entry point for an attempt whose execution died (`outcome: "lost"`).
 * A replay for an attempt already ended changes nothing and returns the same decision.
 */
export async function recordAttemptFailure(
  ctx: LifecycleContext,
  input: AttemptFailureInput,
): Promise<RetryDecision> {
  // The escalation job, once created for this failure: a retried round reuses it.
  let escalation: string | undefined;
  type Untouched = { item: JobItem | undefined; superseded?: string };
  const result = await retryOnRace(async (): Promise<EndedAttempt | Untouched> => {
    const item = await readJob(ctx, input.jobId);
    if (!item) return { item };
    // A stale execution (its attempt ended by someone else, the job admitted again since, maybe
    // at the same attempt number after an undone admission) must not end the newer attempt.
    const superseded = supersededBy(item, input.executionArn);
    if (superseded) return { item, superseded };
    if (item.attempts !== input.attempt || (item.status !== "dispatched" && item.status !== "running")) {
      return { item };
    }
    return endFailedAttempt(ctx, item, input, async () => {
      escalation ??= (await submitEscalation(ctx, item, input.outcome === "timed_out")) ?? undefined;
      return escalation ?? null;
    });
  });
  if (escalation && !("next" in result && result.next.escalatedTo === escalation)) {
    // The job moved on (cancelled, paused) before it could be marked escalated: the job made
    // for it must not run on its own.
    await withdrawEscalation(ctx, escalation, input.jobId);
  }

  if (!("next" in result)) {
    if (result.superseded) {
      // Its follow-ups (cascade, escalation) belong to the execution that drives the job now.
      logger.info("attempt-failed from a superseded execution: nothing to do", {
        jobId: input.jobId,
        attempt: input.attempt,
        reason: result.superseded,
      });
      return END;
    }
    if (!result.item) return END;
    // A replay after a crash between the job's write and the breaker's: count it now (a failure
    // already counted is recognised by its attempt and not counted twice).
    if (result.item.attempts === input.attempt && ENDED_BY_THIS_STEP.has(result.item.status)) {
      await countOnBreaker(ctx, result.item, input);
    }
    return replayDecision(ctx, result.item, input.attempt);
  }
  const { item, next, decision } = result;
  await countOnBreaker(ctx, item, input);

  await ctx.events.publish([stateChange(item.status, next)]);
  if (next.status === "failed" || next.status === "escalated") {
    await releaseStrayAdmission(ctx, item, `job ${next.status}`);
  }
  if (next.status === "failed") await cascadeCancel(ctx, next.id, "failed");
  if (next.status === "escalated") await finishEscalation(ctx, next);
  return decision;
}

/** The statuses this step leaves a job in. */
const ENDED_BY_THIS_STEP = new Set(["retrying", "failed", "escalated"]);

/**
 * The attempt's end on its type's circuit breaker (app/circuits.ts): a failure or time-out is
 * counted, a lost probe lets another be admitted. Nothing at all when the type has no breaker and
 * the job is no probe. A breaker that cannot be written fails the step, which Step Functions
 * retries: the replay counts it then.
 */
async function countOnBreaker(
  ctx: LifecycleContext,
  item: JobItem,
  input: AttemptFailureInput,
): Promise<void> {
  if (!ctx.circuits) return;
  const evictedByWorker = input.outcome === "failed" && input.error.Error?.trim() === WORKER_SHUTDOWN;
  await ctx.circuits.attemptEnded(item, input.attempt, input.outcome, evictedByWorker);
}

interface EndedAttempt {
  readonly decision: RetryDecision;
  /** The job as read, and as written. */
  readonly item: JobItem;
  readonly next: JobItem;
}

/**
 * Ends the attempt. `escalate` creates the escalation job when the decision is to escalate:
 * it exists before the job is marked `escalated`, so the status and `escalatedTo` are written
 * together and a reader who follows `escalatedTo` always finds the job.
 */
export async function endFailedAttempt(
  ctx: LifecycleContext,
  item: JobItem,
  input: AttemptFailureInput,
  escalate: () => Promise<string | null>,
): Promise<EndedAttempt> {
  const now = ctx.clock();
  const at = now.toISOString();
  const job = fromJobItem(item);
  const reported = attemptError(input.outcome, input.error, job);
  const what = `attempt ${input.attempt} ${describeOutcome(input.outcome, reported)}`;
  // A worker that stopped the attempt because it was shutting down (scale-in, a deploy) did not
  // fail the job: like a preemption, the attempt is recorded `preempted`, does not count against
  // maxAttempts, and the job goes straight back in line.
  const evictedByWorker = input.outcome === "failed" && reported.type === WORKER_SHUTDOWN;
  // The worker marks a failure no retry can mend (UnrecoverableTaskError): core's rule ends the job.
  const unrecoverable = input.outcome === "failed" && isUnrecoverable(input.error);
  const verdict = retryVerdict({
    failuresBefore: item.failures ?? 0,
    maxAttempts: item.retry.maxAttempts,
    notCounted: evictedByWorker,
    unrecoverable,
  });
  const { failures } = verdict;
  // The attempt record and the job's error say that no retry was made, and why.
  const error: JobError = unrecoverable
    ? { ...reported, message: unrecoverableMessage(clip(reported.message, MAX_ERROR_MESSAGE - 32)) }
    : reported;

  let change: StatusChange;
  let decision: RetryDecision;
  if (verdict.next === "retry_now") {
    change = {
      to: transition(item.status, "retrying"),
      reason: `attempt ${input.attempt} was stopped by its worker shutting down; not counted, retrying now`,
      triggeredBy: null,
      set: { nextAttemptAt: at },
      remove: ["admissionToken"],
    };
    decision = { next: "retry", delaySeconds: 0 };
  } else if (verdict.next === "retry") {
    // Whole seconds: a Wait state's SecondsPath takes an integer, and nextAttemptAt must agree.
    const delaySeconds = Math.ceil(backoffDelaySeconds(item.retry, failures));
    change = {
      to: transition(item.status, "retrying"),
      reason: `${what}; retrying in ${delaySeconds} s`,
      triggeredBy: null,
      set: { failures, nextAttemptAt: new Date(now.getTime() + delaySeconds * 1000).toISOString() },
      remove: ["admissionToken"],
    };
    decision = { next: "retry", delaySeconds };
  } else {
    const escalateTo = escalationFor(job, input.outcome === "timed_out") ?? undefined;
    const blocker = escalateTo ? escalationBlocker(ctx, job, escalateTo.type) : null;
    const escalatedTo = escalateTo !== undefined && blocker === null ? await escalate() : null;
    const ended =
      verdict.why === "unrecoverable" ? notRetriedReason(verdict.attemptsLeft) : "no attempts left";
    const tail = escalatedTo
      ? `${verdict.why === "unrecoverable" ? `${ended}; ` : ""}escalated to ${escalatedTo}`
      : escalateTo
        ? `${ended}; cannot escalate to ${escalateTo.type}: ${blocker}`
        : ended;
    change = {
      to: transition(item.status, escalatedTo ? "escalated" : "failed"),
      reason: `${what}; ${tail}`,
      triggeredBy: null,
      set: { failures, error, finishedAt: at, nextAttemptAt: null, ...(escalatedTo ? { escalatedTo } : {}) },
      remove: ["admissionToken"],
    };
    decision = END;
  }

  const { items, next, historyExpiresAt } = ctx.repo.statusChangeItems(item, change, at);
  const extra: TransactItem[] = [];
  if (item.reservation) extra.push(releaseCapacityItem(ctx.nodesTable, item.reservation));
  if (item.status === "dispatched") {
    // No worker took it, so no attempt record exists yet; one is written now, because the
    // attempt counts (API.md: one item per attempt) and the record is what says why.
    extra.push(unstartedAttemptItem(ctx, item, input.attempt, input.outcome, error, at, historyExpiresAt));
  }
  if (item.status === "running") {
    extra.push(
      endAttemptItem(ctx.repo.tableName, item, input.attempt, {
        status: evictedByWorker ? "preempted" : input.outcome,
        finishedAt: at,
        durationMs: durationSince(item.attemptStartedAt, at),
        error,
        expiresAt: historyExpiresAt,
      }),
      ...attemptUsageItems(ctx, item, at),
    );
  }
  await ctx.repo.transact([...items, ...extra]);
  countAttemptEnd(item, next, input.outcome, at);
  return { decision, item, next };
}

/**
 * The figures of an attempt that ended without success, counted by the write that ended it (a
 * replayed step finds the attempt ended and writes nothing, so counts nothing). A job that ends
 * `failed` counts as JobsTimedOut when its last attempt timed out and JobsFailed otherwise, and
 * in JobsFailedByType either way; an escalated job counts in neither (its replacement goes on).
 */
export function countAttemptEnd(item: JobItem, next: JobItem, outcome: AttemptOutcome, at: string): void {
  const pool = metricPool(item);
  const failed = next.status === "failed";
  recordMetrics(
    { pool },
    {
      runTime: item.status === "running" ? millisBetween(item.attemptStartedAt, at) : undefined,
      attemptsLost: outcome === "lost" ? 1 : undefined,
      jobsFailed: failed && outcome !== "timed_out" ? 1 : undefined,
      jobsTimedOut: failed && outcome === "timed_out" ? 1 : undefined,
    },
  );
  if (failed) recordMetrics({ type: item.type }, { jobsFailedByType: 1 });
}

/** The record of a dispatched attempt that ended before any worker started it. */
export function unstartedAttemptItem(
  ctx: LifecycleContext,
  item: JobItem,
  attempt: number,
  outcome: AttemptOutcome,
  error: JobError,
  at: string,
  expiresAt: number,
): TransactItem {
  // A worker's start writes the same key in a transaction conditional on `dispatched`: only
  // one of the two can win the job's version, so this never overwrites a started attempt.
  return newAttemptItem(ctx.repo.tableName, {
    pk: jobPk(item.id),
    sk: attemptSk(attempt),
    entity: "attempt",
    attempt,
    status: outcome,
    startedAt: null,
    finishedAt: at,
    durationMs: null,
    workerId: null,
    // Where the scheduler sent it: the node it was reserved on.
    nodeId: item.reservation?.nodeId ?? null,
    pool: item.reservation?.pool ?? null,
    error,
    expiresAt,
  });
}

/**
 * The decision for an attempt that was already ended, by this step before (a replay) or by
 * someone else (cancel, pause, preemption, the reconciler). Follow-ups a crash may have cut
 * short (cascade, escalation) are finished here; each is idempotent.
 */
export async function replayDecision(
  ctx: LifecycleContext,
  item: JobItem,
  attempt: number,
): Promise<RetryDecision> {
  // A later attempt exists: another execution drives the job now.
  if (item.attempts > attempt) return END;
  switch (item.status) {
    case "retrying": {
      const remainingMs = item.nextAttemptAt ? Date.parse(item.nextAttemptAt) - ctx.clock().getTime() : 0;
      return { next: "retry", delaySeconds: Math.max(0, Math.ceil(remainingMs / 1000)) };
    }
    // Back in line without this step (preempted): wait for admission again.
    case "queued":
    case "blocked":
    case "scheduled":
      return { next: "retry", delaySeconds: 0 };
    case "failed":
      await cascadeCancel(ctx, item.id, "failed");
      return END;
    case "escalated":
      await finishEscalation(ctx, item);
      return END;
    default:
      return END;
  }
}

/** The error type a worker reports for an attempt it stopped while shutting down (worker/registry.ts). */
export const WORKER_SHUTDOWN = "worker_shutdown";

/** Longest error message kept on the job and the attempt; causes can be whole stack traces. */
export const MAX_ERROR_MESSAGE = 2048;

export function attemptError(outcome: AttemptOutcome, error: StepError, job: Job): JobError {
  const cause = error.Cause?.trim() ?? "";
  switch (outcome) {
    case "timed_out":
      return { type: "timeout", message: `timed out after ${job.timeoutSeconds} s` };
    case "lost":
      return {
        type: "lost",
        message: clip(cause || "the worker stopped heartbeating and is presumed dead", MAX_ERROR_MESSAGE),
      };
    case "failed": {
      // The type without the worker's unrecoverable mark, which endFailedAttempt reads apart.
      const name = error.Error?.trim() ?? "";
      const type = name ? parseReportedError(name).type : "";
      return {
        type: type || "error",
        message: clip(cause || type || "the attempt failed", MAX_ERROR_MESSAGE),
      };
    }
  }
}

/** Whether the failure the Dispatch state caught is marked unrecoverable (core/retry-rule.ts). */
export function isUnrecoverable(error: StepError): boolean {
  return parseReportedError(error.Error?.trim() ?? "").unrecoverable;
}

export function describeOutcome(outcome: AttemptOutcome, error: JobError): string {
  const message = clip(error.message.split("\n", 1)[0] ?? "", 200);
  switch (outcome) {
    case "timed_out":
      return error.message;
    case "lost":
      return `was lost (${message})`;
    case "failed":
      return `failed (${error.type}: ${message})`;
  }
}

/** Why an escalation job could not be created, checked before the job is marked escalated. */
function escalationBlocker(ctx: LifecycleContext, job: Job, type: string): string | null {
  if (ctx.taskTypes && !ctx.taskTypes.has(type)) return `unknown job type ${type}`;
  return unsatisfiableReason(ctx.pools, job);
}
