import {
  InvalidToken,
  SendTaskFailureCommand,
  SendTaskSuccessCommand,
  type SFNClient,
  TaskDoesNotExist,
  TaskTimedOut,
} from "@aws-sdk/client-sfn";
import { z } from "zod";
import { backoffDelaySeconds } from "../core/backoff";
import { forEachConcurrent } from "../core/concurrency";
import { applicableStatus, dependencyOutcome } from "../core/dependencies";
import { ConcurrentUpdateError, InvalidTransitionError } from "../core/errors";
import type { BatchJobRequest, Job, JobError, JobStatus } from "../core/job";
import { unsatisfiableReason } from "../core/pools";
import { canTransition, transition } from "../core/status";
import { endAttemptItem, releaseCapacityItem } from "../store/capacity";
import { fromJobItem, type JobItem } from "../store/job-items";
import { applicableChange, type StatusChange, type TransactItem } from "../store/job-repository";
import { attemptSk, dependentSk, dependsOnSk, JOB_SK, jobPk, RESULT_SK } from "../store/keys";
import { gpuUsageItems } from "../store/usage";
import { cancelJob, cascadeCancel } from "./actions";
import { config } from "./config";
import { type JobStateChange, stateChange } from "./events";
import { createSfnClient } from "./executions";
import { requestHash } from "./idempotency";
import { logger } from "./logger";
import { metricPool, millisBetween, recordMetrics } from "./metrics";
import { type AppContext, appContext } from "./runtime";
import { submitJobs } from "./submit";

/**
 * The steps of the job lifecycle state machine (state-machines/job-lifecycle.asl.json), one
 * function per `action` of the lifecycle Lambda: wait for admission, complete an attempt,
 * record a failed attempt, requeue after the backoff. docs/lifecycle.md is the design.
 *
 * Step Functions delivers every step at least once (a Lambda retried after a lost response, a
 * reconciler that replays a dead execution's step), so each step reads the job, decides from
 * what it finds, and writes conditionally: a replay finds its work done and does nothing more
 * than finish what a crash may have left half done (dependents, escalation).
 */

// ---------------------------------------------------------------------------------------------
// Contracts with the scheduler and the state machine
// ---------------------------------------------------------------------------------------------

/**
 * A lifecycle execution's input: the admission. The scheduler starts the execution (named
 * `<jobId>-<version>` by the version its admission wrote) once it has reserved capacity and moved
 * the job to `dispatched`; the Dispatch state reads these fields.
 */
export const dispatchInputSchema = z
  .object({
    jobId: z.string().min(1),
    /** The pool and node holding the reservation. */
    pool: z.string().min(1),
    nodeId: z.string().min(1),
    /** The pool's SQS queue for the job's priority tier (JOBQ_QUEUES). */
    queueUrl: z.string().min(1),
    /** The attempt being started: the job's `attempts` after admission (1 for the first). */
    attempt: z.number().int().min(1),
    /**
     * The Dispatch state's TimeoutSeconds: the job's timeoutSeconds plus the queue wait the
     * scheduler allows (lostAfterSeconds) and a grace. Step Functions wants it above the
     * state's HeartbeatSeconds (lostAfterSeconds).
     */
    timeoutSeconds: z.number().int().min(2),
    /** The worker heartbeats the attempt every third of this (the dispatch message carries it). */
    heartbeatSeconds: z.number().int().min(1),
    /**
     * The Dispatch state's HeartbeatSeconds: the backstop that declares an attempt lost when no
     * heartbeat came for this long. It spans the queue wait before a worker takes the attempt;
     * a worker that dies while running is found sooner, by its node going silent.
     */
    lostAfterSeconds: z.number().int().min(1),
  })
  .refine((a) => a.heartbeatSeconds <= a.lostAfterSeconds, {
    message: "heartbeatSeconds must not exceed lostAfterSeconds",
    path: ["heartbeatSeconds"],
  })
  .refine((a) => a.lostAfterSeconds < a.timeoutSeconds, {
    message: "lostAfterSeconds must be smaller than timeoutSeconds",
    path: ["lostAfterSeconds"],
  });
export type DispatchInput = z.infer<typeof dispatchInputSchema>;

/**
 * The answer to an AwaitAdmission token of the lifecycle before executions started at admission
 * (docs/lifecycle.md, "Moving a deployed stack"): it ends that execution without running anything.
 */
export const notAdmittedSchema = z.object({
  admitted: z.literal(false),
  reason: z.string().min(1),
});
export type NotAdmittedOutput = z.infer<typeof notAdmittedSchema>;

/** How an attempt ended without success: from the error the Dispatch state caught (`outcomeOf`). */
export const ATTEMPT_OUTCOMES = ["failed", "timed_out", "lost"] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

/** A Step Functions error as a Catch puts it: `Error` is the type, `Cause` the message. */
export const stepErrorSchema = z.object({
  Error: z.string().nullish(),
  Cause: z.string().nullish(),
});
export type StepError = z.infer<typeof stepErrorSchema>;

const jobId = z.string().min(1).max(128);
const attempt = z.number().int().min(1);

/** The lifecycle Lambda's input: the state machine's Payload for each action. */
export const lifecycleRequestSchema = z.discriminatedUnion("action", [
  z.object({
    action: z.literal("await-admission"),
    jobId,
    taskToken: z.string().min(1),
    executionArn: z.string().min(1),
  }),
  z.object({ action: z.literal("complete"), jobId, attempt }),
  z.object({
    action: z.literal("attempt-failed"),
    jobId,
    attempt,
    /** Set by the reconciler; the state machine leaves it to `outcomeOf(error)`. */
    outcome: z.enum(ATTEMPT_OUTCOMES).optional(),
    error: stepErrorSchema.default({}),
  }),
  z.object({ action: z.literal("requeue"), jobId }),
]);
export type LifecycleRequest = z.infer<typeof lifecycleRequestSchema>;

export type AwaitAdmissionInput = Omit<Extract<LifecycleRequest, { action: "await-admission" }>, "action">;
export type CompleteInput = Omit<Extract<LifecycleRequest, { action: "complete" }>, "action">;
/** A failed attempt as its recorder sees it: the kind of failure settled (`outcomeOf`). */
export type AttemptFailureInput = Omit<
  Extract<LifecycleRequest, { action: "attempt-failed" }>,
  "action" | "outcome"
> & {
  readonly outcome: AttemptOutcome;
};
export type RequeueInput = Omit<Extract<LifecycleRequest, { action: "requeue" }>, "action">;

/**
 * What AttemptFailed hands the RetryOrEnd choice: wait `delaySeconds` and go back to admission,
 * or end the execution. Both fields always present: the state's ResultSelector reads both.
 */
export interface RetryDecision {
  readonly next: "retry" | "end";
  readonly delaySeconds: number;
}

const END: RetryDecision = { next: "end", delaySeconds: 0 };

/**
 * Settles a task token of a waiting state. An interface so the local stack and tests can see
 * what the lifecycle tells Step Functions.
 */
export interface TaskTokens {
  /** SendTaskSuccess; false when no state waits on the token any more (ended, timed out, superseded). */
  succeed(token: string, output: unknown): Promise<boolean>;
  /** SendTaskFailure; false when no state waits on the token any more. */
  fail(token: string, error: string, cause: string): Promise<boolean>;
}

export class StepFunctionsTaskTokens implements TaskTokens {
  constructor(private readonly client: SFNClient) {}

  succeed(token: string, output: unknown): Promise<boolean> {
    return this.answer(() =>
      this.client.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(output) })),
    );
  }

  fail(token: string, error: string, cause: string): Promise<boolean> {
    return this.answer(() =>
      this.client.send(new SendTaskFailureCommand({ taskToken: token, error, cause })),
    );
  }

  private async answer(send: () => Promise<unknown>): Promise<boolean> {
    try {
      await send();
      return true;
    } catch (error) {
      if (
        error instanceof TaskDoesNotExist ||
        error instanceof TaskTimedOut ||
        error instanceof InvalidToken
      ) {
        return false;
      }
      throw error;
    }
  }
}

export type LifecycleContext = Pick<
  AppContext,
  "repo" | "clock" | "nodesTable" | "executions" | "events" | "pools" | "taskTypes" | "usage"
> & { readonly tokens: TaskTokens };

let cached: LifecycleContext | undefined;

/** The lifecycle functions' context (the steps' Lambda and the dependents' stream consumer), built once. */
export function lifecycleContext(): LifecycleContext {
  if (!cached) {
    const c = config();
    cached = {
      ...appContext(),
      tokens: new StepFunctionsTaskTokens(createSfnClient({ region: c.region, endpoint: c.sfnEndpoint })),
    };
  }
  return cached;
}

/** Runs the step the state machine asked for. */
export async function runLifecycleStep(ctx: LifecycleContext, request: LifecycleRequest): Promise<unknown> {
  switch (request.action) {
    case "await-admission":
      return dismissLegacyExecution(ctx, request);
    case "complete":
      return completeAttempt(ctx, request);
    case "attempt-failed":
      return recordAttemptFailure(ctx, { ...request, outcome: request.outcome ?? outcomeOf(request.error) });
    case "requeue":
      return requeueJob(ctx, request);
  }
}

// ---------------------------------------------------------------------------------------------
// Outcomes and executions of the lifecycle before this one
// ---------------------------------------------------------------------------------------------

/**
 * The kind of failure a Dispatch error names. A heartbeat lapse is matched before the timeout
 * because AWS documents States.HeartbeatTimeout as matching States.Timeout too; the worker
 * reports its own timeout as `timeout`, and the scheduler a dead node's attempts as `lost`.
 */
export function outcomeOf(error: StepError): AttemptOutcome {
  switch (error.Error) {
    case "States.HeartbeatTimeout":
    case "lost":
      return "lost";
    case "States.Timeout":
    case "timeout":
      return "timed_out";
    default:
      return "failed";
  }
}

/**
 * An execution of the previous lifecycle definition (started at submit, parked at
 * AwaitAdmission) after the stack moved to executions started at admission: it is told "not
 * admitted" at once and ends; the scheduler admits the job as any other and starts its new
 * execution. Step Functions finishes running executions on the definition they started with.
 */
async function dismissLegacyExecution(
  ctx: LifecycleContext,
  input: AwaitAdmissionInput,
): Promise<{ readonly waiting: false; readonly reason: string }> {
  const reason = `job ${input.jobId}: executions now start at admission; this one is no longer needed`;
  const output: NotAdmittedOutput = { admitted: false, reason };
  await ctx.tokens.succeed(input.taskToken, output);
  return { waiting: false, reason };
}

// ---------------------------------------------------------------------------------------------
// Complete
// ---------------------------------------------------------------------------------------------

/** What the worker hands over when its task returned: the result as stored (JSON text). */
export interface CompletedRun {
  readonly jobId: string;
  readonly attempt: number;
  readonly resultJson: string;
}

export type CompletionContext = Pick<LifecycleContext, "repo" | "clock" | "nodesTable" | "events" | "usage">;

/**
 * The worker's own end of a successful attempt, before it answers the run token: in one
 * transaction conditional on the job still running this attempt, the job becomes `completed`,
 * its attempt `succeeded`, its result item is written and its reservation goes back to the node.
 * So a successful job costs its execution one state transition (Dispatch) and no Lambda step.
 * Dependents are released from the Jobs table's change stream (`releaseDependentsOf`).
 *
 * `abandoned` when the job no longer runs this attempt (cancelled, paused, preempted, or already
 * completed by a replay of this call): the result is not stored and nothing changes.
 */
export async function completeRun(
  ctx: CompletionContext,
  run: CompletedRun,
): Promise<{ readonly outcome: "completed" | "abandoned"; readonly reason?: string }> {
  const bytes = Buffer.byteLength(run.resultJson, "utf8");
  return retryOnRace(async () => {
    const item = await readJob(ctx, run.jobId);
    if (item?.status !== "running" || item.attempts !== run.attempt) {
      return {
        outcome: "abandoned" as const,
        reason: item
          ? `job ${item.id} is ${item.status} at attempt ${item.attempts}, not running attempt ${run.attempt}`
          : `job ${run.jobId} does not exist`,
      };
    }
    const now = ctx.clock().toISOString();
    const { items, next, durationMs } = completionItems(ctx, item, run.attempt, now, (expiresAt) => [
      resultItem(ctx.repo.tableName, item.id, run, bytes, now, expiresAt),
    ]);
    await ctx.repo.transact(items);
    recordMetrics({ pool: metricPool(item) }, { jobsCompleted: 1, runTime: durationMs ?? undefined });
    if (durationMs !== null) await ctx.usage.recordRunTime(item.type, now, durationMs);
    await ctx.events.publish([stateChange(item.status, next)]);
    return { outcome: "completed" as const };
  });
}

/**
 * One transaction's items that complete a running attempt: the job `completed` (with its
 * transition), the attempt `succeeded`, its GPU-seconds to the owner's usage, the reservation
 * back to its node, and what the caller adds (the worker: the result item, kept as long as the
 * history, `expiresAt`).
 */
function completionItems(
  ctx: CompletionContext,
  item: JobItem,
  attempt: number,
  now: string,
  also: (expiresAt: number) => TransactItem[],
): { readonly items: TransactItem[]; readonly next: JobItem; readonly durationMs: number | null } {
  const { items, next, historyExpiresAt } = ctx.repo.statusChangeItems(
    item,
    {
      to: transition(item.status, "completed"),
      reason: `completed on attempt ${attempt}`,
      triggeredBy: null,
      set: { finishedAt: now, nextAttemptAt: null },
      remove: ["admissionToken"],
    },
    now,
  );
  const durationMs = durationSince(item.attemptStartedAt, now);
  return {
    items: [
      ...items,
      ...also(historyExpiresAt),
      endAttemptItem(ctx.repo.tableName, item.id, attempt, {
        status: "succeeded",
        finishedAt: now,
        durationMs,
        error: null,
        expiresAt: historyExpiresAt,
      }),
      ...attemptUsageItems(ctx, item, now),
      ...(item.reservation ? [releaseCapacityItem(ctx.nodesTable, item.reservation)] : []),
    ],
    next,
    durationMs,
  };
}

/** The job's result item (`JOB#RESULT`), written once, by the transaction that completes the job. */
function resultItem(
  tableName: string,
  jobId: string,
  run: CompletedRun,
  bytes: number,
  writtenAt: string,
  expiresAt: number,
): TransactItem {
  return {
    Put: {
      TableName: tableName,
      Item: {
        pk: jobPk(jobId),
        sk: RESULT_SK,
        entity: "result",
        // Text, like payloads (store/job-items.ts): DynamoDB's types refuse some valid JSON.
        resultJson: run.resultJson,
        attempt: run.attempt,
        bytes,
        writtenAt,
        expiresAt,
      },
    },
  };
}

/**
 * The previous lifecycle's Complete step (executions started before the move to executions
 * started at admission), and a replay of it:
 * the worker reported success: in one transaction the job becomes `completed`, its attempt
 * `succeeded`, and its reservation goes back to the node. Then every dependent's edge is marked
 * met; dependents with nothing left to wait on move to `queued` (or `scheduled`).
 * A replay for a completed job only finishes releasing the dependents, which is idempotent.
 */
export async function completeAttempt(
  ctx: LifecycleContext,
  input: CompleteInput,
): Promise<{ readonly status: JobStatus | null; readonly released: number }> {
  const outcome = await retryOnRace(async () => {
    const item = await readJob(ctx, input.jobId);
    if (!item) return { item: null, next: null, ran: null };
    if (item.status === "completed") return { item, next: null, ran: null };
    if (item.status !== "running" || item.attempts !== input.attempt) {
      logger.warn("completion of an attempt that is not running; ignored", {
        jobId: item.id,
        status: item.status,
        attempts: item.attempts,
        attempt: input.attempt,
      });
      return { item, next: null, ran: null };
    }
    const now = ctx.clock().toISOString();
    const { items, next, durationMs } = completionItems(ctx, item, input.attempt, now, () => []);
    await ctx.repo.transact(items);
    recordMetrics({ pool: metricPool(item) }, { jobsCompleted: 1, runTime: durationMs ?? undefined });
    return { item, next, ran: durationMs === null ? null : { durationMs, finishedAt: now } };
  });

  const { item, next, ran } = outcome;
  if (!item) return { status: null, released: 0 };
  if (next) {
    if (ran) await ctx.usage.recordRunTime(item.type, ran.finishedAt, ran.durationMs);
    await ctx.events.publish([stateChange(item.status, next)]);
    await releaseStrayAdmission(ctx, item, "job completed");
  }
  if ((next ?? item).status !== "completed") return { status: item.status, released: 0 };
  const released = await releaseDependents(ctx, item.id);
  return { status: "completed", released };
}

/**
 * Marks this parent's edge met on each dependent and moves the dependents that wait on nothing
 * more. Returns how many left `blocked`. The Jobs table's change stream calls it for every job
 * that became `completed` (functions/dependents-stream.ts); a redelivered record finds each edge
 * met already and changes nothing.
 */
export async function releaseDependents(ctx: LifecycleContext, parentId: string): Promise<number> {
  const childIds = await ctx.repo.listDependentIds(parentId);
  const changes: JobStateChange[] = [];
  await forEachConcurrent(childIds, DEPENDENT_CONCURRENCY, async (childId) => {
    await markEdgeMet(ctx, parentId, childId);
    const change = await settleBlocked(ctx, childId);
    if (change) changes.push(change);
  });
  await ctx.events.publish(changes);
  return changes.length;
}

/**
 * Flips the child's `DEP#<parent>` edge to met and decrements its `unmet` in one transaction.
 * Only the write that flips the edge decrements, so a replay can never count a parent twice.
 * The decrement bumps the child's version: a concurrent resume that read the old count loses
 * its race and decides again.
 */
async function markEdgeMet(ctx: LifecycleContext, parentId: string, childId: string): Promise<boolean> {
  for (let round = 1; ; round++) {
    try {
      await ctx.repo.transact(ctx.repo.edgeMetItems(parentId, childId, ctx.clock().toISOString()));
      return true;
    } catch (error) {
      if (!(error instanceof ConcurrentUpdateError)) throw error;
      const [edge, child] = reasonsOf(error);
      // Already met (a replay), or the edge moved to an escalation's job meanwhile.
      if (edge === "ConditionalCheckFailed") return false;
      if (child === "ConditionalCheckFailed") {
        logger.warn("dependent missing or already counted as released", { parentId, childId });
        return false;
      }
      // A conflict with another transaction on the same items: try again.
      if (round >= MAX_ROUNDS) throw error;
      await pause(round);
    }
  }
}

/**
 * A blocked job's next status from its unmet count: still blocked (with a reason that counts
 * what is left), or queued/scheduled by core's rule once nothing is left.
 */
async function settleBlocked(ctx: LifecycleContext, id: string): Promise<JobStateChange | null> {
  return retryOnRace(async () => {
    const child = await readJob(ctx, id, true);
    if (child?.status !== "blocked") return null;
    const now = ctx.clock();
    const at = now.toISOString();
    const applies = applicableStatus({
      now,
      runAt: child.runAt,
      unmet: Math.max(0, child.unmet),
      total: Math.max(child.unmet, child.dependsOn.length),
      doomedBy: null,
    });
    if (applies.status === "blocked") {
      if (child.statusReason === applies.reason) return null;
      // Conditional on the version the count was read at, so a stale count never wins.
      const updated = await ctx.repo.updateIf(
        { pk: child.pk, sk: JOB_SK },
        "SET statusReason = :reason",
        "#status = :blocked AND #version = :version",
        {
          names: { "#status": "status", "#version": "version" },
          values: { ":reason": applies.reason, ":blocked": "blocked", ":version": child.version },
        },
      );
      if (!updated) throw new ConcurrentUpdateError("the dependent changed while its reason was updated");
      return null;
    }
    const next = await ctx.repo.changeStatus(
      child,
      // The status machine refuses the change here if it is not a legal transition.
      { ...applicableChange(applies, at, null), to: transition(child.status, applies.status) },
      at,
    );
    return child.staged ? null : stateChange(child.status, next);
  });
}

// ---------------------------------------------------------------------------------------------
// AttemptFailed
// ---------------------------------------------------------------------------------------------

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
  const result = await retryOnRace(async (): Promise<EndedAttempt | { item: JobItem | undefined }> => {
    const item = await readJob(ctx, input.jobId);
    if (!item) return { item };
    if (item.attempts !== input.attempt || (item.status !== "dispatched" && item.status !== "running")) {
      return { item };
    }
    return endFailedAttempt(ctx, item, input, async () => {
      escalation ??= (await submitEscalation(ctx, item)) ?? undefined;
      return escalation ?? null;
    });
  });
  if (escalation && !("next" in result && result.next.escalatedTo === escalation)) {
    // The job moved on (cancelled, paused) before it could be marked escalated: the job made
    // for it must not run on its own.
    await withdrawEscalation(ctx, escalation, input.jobId);
  }

  if (!("next" in result)) return result.item ? replayDecision(ctx, result.item, input.attempt) : END;
  const { item, next, decision } = result;

  await ctx.events.publish([stateChange(item.status, next)]);
  if (next.status === "failed" || next.status === "escalated") {
    await releaseStrayAdmission(ctx, item, `job ${next.status}`);
  }
  if (next.status === "failed") await cascadeCancel(ctx, next.id, "failed");
  if (next.status === "escalated") await finishEscalation(ctx, next);
  return decision;
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
async function endFailedAttempt(
  ctx: LifecycleContext,
  item: JobItem,
  input: AttemptFailureInput,
  escalate: () => Promise<string | null>,
): Promise<EndedAttempt> {
  const now = ctx.clock();
  const at = now.toISOString();
  const job = fromJobItem(item);
  const error = attemptError(input.outcome, input.error, job);
  const what = `attempt ${input.attempt} ${describeOutcome(input.outcome, error)}`;
  // A worker that stopped the attempt because it was shutting down (scale-in, a deploy) did not
  // fail the job: like a preemption, the attempt is recorded `preempted`, does not count against
  // maxAttempts, and the job goes straight back in line.
  const evictedByWorker = input.outcome === "failed" && error.type === WORKER_SHUTDOWN;
  const failures = (item.failures ?? 0) + (evictedByWorker ? 0 : 1);

  let change: StatusChange;
  let decision: RetryDecision;
  if (evictedByWorker) {
    change = {
      to: transition(item.status, "retrying"),
      reason: `attempt ${input.attempt} was stopped by its worker shutting down; not counted, retrying now`,
      triggeredBy: null,
      set: { nextAttemptAt: at },
      remove: ["admissionToken"],
    };
    decision = { next: "retry", delaySeconds: 0 };
  } else if (failures < item.retry.maxAttempts) {
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
    const escalateTo = job.onFailure?.escalateTo;
    const blocker = escalateTo ? escalationBlocker(ctx, job, escalateTo.type) : null;
    const escalatedTo = escalateTo !== undefined && blocker === null ? await escalate() : null;
    const tail = escalatedTo
      ? `escalated to ${escalatedTo}`
      : escalateTo
        ? `no attempts left; cannot escalate to ${escalateTo.type}: ${blocker}`
        : "no attempts left";
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
      endAttemptItem(ctx.repo.tableName, item.id, input.attempt, {
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
function countAttemptEnd(item: JobItem, next: JobItem, outcome: AttemptOutcome, at: string): void {
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
function unstartedAttemptItem(
  ctx: LifecycleContext,
  item: JobItem,
  attempt: number,
  outcome: AttemptOutcome,
  error: JobError,
  at: string,
  expiresAt: number,
): TransactItem {
  return {
    Put: {
      TableName: ctx.repo.tableName,
      Item: {
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
      },
      // A worker's start writes the same key in a transaction conditional on `dispatched`: only
      // one of the two can win the job's version, so this never overwrites a started attempt.
      ConditionExpression: "attribute_not_exists(pk)",
    },
  };
}

/**
 * The decision for an attempt that was already ended, by this step before (a replay) or by
 * someone else (cancel, pause, preemption, the reconciler). Follow-ups a crash may have cut
 * short (cascade, escalation) are finished here; each is idempotent.
 */
async function replayDecision(ctx: LifecycleContext, item: JobItem, attempt: number): Promise<RetryDecision> {
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
const WORKER_SHUTDOWN = "worker_shutdown";

/** Longest error message kept on the job and the attempt; causes can be whole stack traces. */
const MAX_ERROR_MESSAGE = 2048;

function attemptError(outcome: AttemptOutcome, error: StepError, job: Job): JobError {
  const cause = error.Cause?.trim() ?? "";
  switch (outcome) {
    case "timed_out":
      return { type: "timeout", message: `timed out after ${job.timeoutSeconds} s` };
    case "lost":
      return {
        type: "lost",
        message: clip(cause || "the worker stopped heartbeating and is presumed dead", MAX_ERROR_MESSAGE),
      };
    case "failed":
      return {
        type: error.Error?.trim() || "error",
        message: clip(cause || error.Error?.trim() || "the attempt failed", MAX_ERROR_MESSAGE),
      };
  }
}

function describeOutcome(outcome: AttemptOutcome, error: JobError): string {
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

// ---------------------------------------------------------------------------------------------
// Escalation
// ---------------------------------------------------------------------------------------------

/**
 * After a job ended `escalated`: creates the escalation job (once, whatever the replays: the
 * submission carries an Idempotency-Key derived from the job), records it in `escalatedTo`, and
 * rewires the dependents to it. Recording `escalatedTo` bumps the version before the dependents
 * are listed, so a submission racing with us either is listed or reads `escalatedTo` and
 * depends on the new job itself.
 */
async function finishEscalation(ctx: LifecycleContext, escalated: JobItem): Promise<string | null> {
  let newId = escalated.escalatedTo;
  if (!newId) {
    // Escalated before escalatedTo was written with the status (older items): create, record.
    newId = await submitEscalation(ctx, escalated);
    if (!newId) return null;
    await recordEscalatedTo(ctx, escalated.id, newId);
  }
  await rewireDependents(ctx, escalated.id, newId);
  return newId;
}

/** Cancels an escalation job whose job was not escalated after all. */
async function withdrawEscalation(ctx: LifecycleContext, id: string, jobId: string): Promise<void> {
  try {
    await cancelJob(ctx, { id: SYSTEM_PRINCIPAL, admin: true }, id);
    logger.warn("escalation job withdrawn: its job moved on before it was marked escalated", { id, jobId });
  } catch (error) {
    // Already ended: nothing runs on its own any more.
    if (!(error instanceof InvalidTransitionError)) throw error;
  }
}

/** Who the system acts as when it must use a principal's action (a withdrawn escalation). */
const SYSTEM_PRINCIPAL = "jobq";

/**
 * Creates the escalation job of a job whose attempts ran out, once whatever the replays: the
 * submission carries an Idempotency-Key derived from the job, so a second call returns the first
 * call's job.
 */
async function submitEscalation(ctx: LifecycleContext, escalated: JobItem): Promise<string | null> {
  const job = fromJobItem(escalated);
  const escalateTo = job.onFailure?.escalateTo;
  if (!escalateTo) return null;
  const request: BatchJobRequest = {
    type: escalateTo.type,
    ...(job.name !== null ? { name: job.name } : {}),
    payload: job.payload,
    priority: escalateTo.priority ?? job.priority,
    resources: job.resources,
    ...(job.pool !== null ? { pool: job.pool } : {}),
    constraints: job.constraints,
    dependsOn: [],
    retry: job.retry,
    timeoutSeconds: job.timeoutSeconds,
    offPeakOnly: job.offPeakOnly,
    tags: job.tags,
  };
  const result = await submitJobs(ctx, {
    principal: { id: job.owner, admin: false },
    jobs: [request],
    // A manually retried job escalates again in a later round: each round has its own job.
    idempotency: {
      key: `jobq-escalation:${job.id}${escalated.retries ? `#${escalated.retries}` : ""}`,
      requestHash: requestHash("escalation", request),
    },
    // It replaces a job that ran: a 429 here would lose the escalation, not slow a submitter.
    exemptFromQueueLimit: true,
    // Created by the system at the priority onFailure names: maxPriority governs what a
    // principal asks for, not the escalations jobq makes on its behalf.
    exemptFromMaxPriority: true,
  });
  const created = result.jobs[0];
  if (!created) throw new RangeError(`escalation of ${job.id} created no job`);
  return created.id;
}

async function recordEscalatedTo(ctx: LifecycleContext, id: string, newId: string): Promise<void> {
  await retryOnRace(async () => {
    const item = await readJob(ctx, id);
    if (item?.status !== "escalated" || item.escalatedTo) return;
    const reason = item.statusReason.replace(/escalated to a new \S+ job$/, `escalated to ${newId}`);
    const stored = await ctx.repo.updateIf(
      { pk: item.pk, sk: JOB_SK },
      "SET escalatedTo = :to, statusReason = :reason, #version = :next, updatedAt = :at",
      "#status = :escalated AND #version = :version",
      {
        names: { "#status": "status", "#version": "version" },
        values: {
          ":to": newId,
          ":reason": reason,
          ":next": item.version + 1,
          ":at": ctx.clock().toISOString(),
          ":escalated": "escalated",
          ":version": item.version,
        },
      },
    );
    if (!stored) throw new ConcurrentUpdateError("the escalated job changed while escalatedTo was recorded");
  });
}

/**
 * Moves every dependent of `oldId` to wait on `newId` instead: per dependent, one transaction
 * swaps its `DEP#` edge and the parents' `DPT#` edges and renames the dependency in its
 * dependsOn, insisting the new job is unchanged since read. The unmet count stays, unless the new
 * job already completed (then the edge is met at once); if it already failed or was cancelled,
 * the rewired dependents are cancelled like its own.
 */
async function rewireDependents(ctx: LifecycleContext, oldId: string, newId: string): Promise<void> {
  const childIds = await ctx.repo.listDependentIds(oldId);
  const released: JobStateChange[] = [];
  await forEachConcurrent(childIds, DEPENDENT_CONCURRENCY, async (childId) => {
    if (await rewireDependent(ctx, oldId, newId, childId)) {
      const change = await settleBlocked(ctx, childId);
      if (change) released.push(change);
    }
  });
  await ctx.events.publish(released);
  const replacement = await readJob(ctx, newId, true);
  if (replacement && dependencyOutcome(replacement.status) === "doomed") {
    await cascadeCancel(ctx, newId, replacement.status === "failed" ? "failed" : "was cancelled");
  }
}

/** Returns whether the rewired edge was met at once (the new job had already completed). */
async function rewireDependent(
  ctx: LifecycleContext,
  oldId: string,
  newId: string,
  childId: string,
): Promise<boolean> {
  const table = ctx.repo.tableName;
  return retryOnRace(async () => {
    const jobs = await ctx.repo.getJobItems([childId, newId]);
    const child = jobs.get(childId);
    const parent = jobs.get(newId);
    const edge = await ctx.repo.getItem({ pk: jobPk(childId), sk: dependsOnSk(oldId) });
    if (!child || !parent || !edge) {
      // Nothing left to move; drop the parent's dangling edge so no walk meets it again.
      await ctx.repo.deleteIf({ pk: jobPk(oldId), sk: dependentSk(childId) }, "attribute_exists(pk)");
      return false;
    }
    const wasMet = edge.met === true;
    const met = parent.status === "completed";
    const decrement = met && !wasMet;
    const at = ctx.clock().toISOString();
    const values: Record<string, unknown> = {
      ":deps": child.dependsOn.map((id) => (id === oldId ? newId : id)),
      ":at": at,
      ":next": child.version + 1,
      ":version": child.version,
    };
    if (decrement) values[":minusOne"] = -1;
    await ctx.repo.transact([
      {
        Delete: {
          TableName: table,
          Key: { pk: jobPk(childId), sk: dependsOnSk(oldId) },
          ConditionExpression: "attribute_exists(pk)",
        },
      },
      {
        Put: {
          TableName: table,
          Item: {
            pk: jobPk(childId),
            sk: dependsOnSk(newId),
            entity: "dependency",
            parentId: newId,
            met: met || wasMet,
          },
        },
      },
      {
        Put: {
          TableName: table,
          Item: { pk: jobPk(newId), sk: dependentSk(childId), entity: "dependent", childId },
        },
      },
      { Delete: { TableName: table, Key: { pk: jobPk(oldId), sk: dependentSk(childId) } } },
      {
        Update: {
          TableName: table,
          Key: { pk: jobPk(childId), sk: JOB_SK },
          UpdateExpression: `SET dependsOn = :deps, updatedAt = :at, #version = :next${decrement ? " ADD unmet :minusOne" : ""}`,
          ConditionExpression: "#version = :version",
          ExpressionAttributeNames: { "#version": "version" },
          ExpressionAttributeValues: values,
        },
      },
      {
        ConditionCheck: {
          TableName: table,
          Key: { pk: jobPk(newId), sk: JOB_SK },
          ConditionExpression: "#version = :version",
          ExpressionAttributeNames: { "#version": "version" },
          ExpressionAttributeValues: { ":version": parent.version },
        },
      },
    ]);
    return decrement;
  });
}

// ---------------------------------------------------------------------------------------------
// Requeue
// ---------------------------------------------------------------------------------------------

/**
 * The backoff is over: `retrying` → whatever status now applies (queued, by core's rule), so
 * the execution can wait for admission again. A replay finds the job moved on and does nothing.
 */
export async function requeueJob(
  ctx: LifecycleContext,
  input: RequeueInput,
): Promise<{ readonly status: JobStatus | null }> {
  return retryOnRace(async () => {
    const item = await readJob(ctx, input.jobId);
    if (item?.status !== "retrying") return { status: item?.status ?? null };
    const next = await requeueItem(ctx, item);
    await ctx.events.publish([stateChange(item.status, next)]);
    return { status: next.status };
  });
}

/**
 * retrying → the status that now applies (queued, or blocked): the Requeue step after the
 * backoff, and the scheduler's sweep for a retrying job whose backoff ended without its
 * execution coming back for it.
 */
export async function requeueItem(
  ctx: Pick<LifecycleContext, "repo" | "clock">,
  item: JobItem,
): Promise<JobItem> {
  const now = ctx.clock();
  const at = now.toISOString();
  const applies = applicableStatus({
    now,
    runAt: item.runAt,
    unmet: Math.max(0, item.unmet),
    total: Math.max(item.unmet, item.dependsOn.length),
    doomedBy: null,
  });
  // A job that already ran had its runAt pass: `scheduled` cannot apply, and the table refuses it.
  const fits = applies.status !== "cancelled" && canTransition(item.status, applies.status);
  const to = fits ? applies.status : "queued";
  return ctx.repo.changeStatus(
    item,
    {
      to: transition(item.status, to),
      reason: fits ? applies.reason : "waiting for admission",
      reasonCode: fits ? applies.code : "pending",
      triggeredBy: null,
      set: { nextAttemptAt: null, ...(to === "queued" ? { queuedAt: at } : {}) },
    },
    at,
  );
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const MAX_ROUNDS = 8;
/** Dependents handled at once: enough to hide latency, few enough not to throttle a partition. */
const DEPENDENT_CONCURRENCY = 8;

/** Runs `work` again on a lost race (it re-reads first); the last loss is rethrown. */
async function retryOnRace<T>(work: () => Promise<T>): Promise<T> {
  for (let round = 1; ; round++) {
    try {
      return await work();
    } catch (error) {
      if (!(error instanceof ConcurrentUpdateError) || round >= MAX_ROUNDS) throw error;
      await pause(round);
    }
  }
}

/** A short, jittered pause so racing writers stop colliding in lockstep. */
async function pause(round: number): Promise<void> {
  const ms = Math.random() * Math.min(200, 10 * 2 ** round);
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** The job item, strongly consistent; staged jobs only when asked (dependents may be staged). */
async function readJob(
  ctx: Pick<LifecycleContext, "repo">,
  id: string,
  includeStaged = false,
): Promise<JobItem | undefined> {
  const item = (await ctx.repo.getJobItems([id])).get(id);
  return item && (includeStaged || !item.staged) ? item : undefined;
}

function reasonsOf(error: ConcurrentUpdateError): string[] {
  const details = error.details as { reasons?: unknown } | undefined;
  return Array.isArray(details?.reasons) ? details.reasons.map(String) : [];
}

/**
 * The GPU-seconds a running attempt used, added to its owner's usage in the transaction that
 * ends it (exactly once: that transaction is conditional on the job's version).
 */
function attemptUsageItems(
  ctx: Pick<LifecycleContext, "usage">,
  item: JobItem,
  finishedAt: string,
): TransactItem[] {
  const gpu = item.reservation?.gpu ?? item.resources.gpu;
  return gpuUsageItems(ctx.usage.tableName, item.owner, gpu, item.attemptStartedAt, finishedAt);
}

function durationSince(startedAt: string | undefined | null, now: string): number | null {
  const start = startedAt ? Date.parse(startedAt) : Number.NaN;
  return Number.isNaN(start) ? null : Math.max(0, Date.parse(now) - start);
}

/**
 * A token parked on the job by another execution (one that took over after this one was
 * presumed dead) waits for an admission that will never come once the job ended: end it.
 */
async function releaseStrayAdmission(ctx: LifecycleContext, item: JobItem, reason: string): Promise<void> {
  if (!item.admissionToken) return;
  const output: NotAdmittedOutput = { admitted: false, reason };
  await ctx.tokens.succeed(item.admissionToken, output);
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
