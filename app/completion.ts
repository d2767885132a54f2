import { forEachConcurrent } from "../core/concurrency";
import { ConcurrentUpdateError } from "../core/errors";
import type { JobStatus } from "../core/job";
import { transition } from "../core/status";
import { endAttemptItem, releaseCapacityItem } from "../store/capacity";
import type { JobItem, Reservation } from "../store/job-items";
import { applicableChange, type TransactItem } from "../store/job-repository";
import type { NodeRepository } from "../store/nodes";
import { arrayParentSettlement, isArrayParent } from "./arrays";
import { type JobStateChange, stateChange } from "./events";
import type { CompleteInput, LifecycleContext } from "./lifecycle";
import {
  applicableNow,
  attemptUsageItems,
  DEPENDENT_CONCURRENCY,
  durationSince,
  MAX_ROUNDS,
  pause,
  readJob,
  releaseStrayAdmission,
  retryOnRace,
} from "./lifecycle-steps";
import { logger } from "./logger";
import { metricPool, recordMetrics } from "./metrics";

/**
 * The end of a successful attempt: the worker's own completion transaction (`completeRun`), the
 * previous lifecycle's Complete step (`completeAttempt`), and the release of a completed job's
 * dependents, which the Jobs table's stream asks for (docs/lifecycle.md).
 */

/** What the worker hands over when its task returned: the result as stored (JSON text). */
export interface CompletedRun {
  readonly jobId: string;
  readonly attempt: number;
  readonly resultJson: string;
  /**
   * The job as the worker's start left it. The completion is written against it first, without a
   * read: the transaction is conditional on the job's status and version, so a job that changed
   * meanwhile refuses it, and only then is the job read again. One request fewer per job.
   */
  readonly started?: JobItem;
  /**
   * Whether the start stored the attempt's record (StartAttemptOutcome#attemptRecorded). Then the
   * completion does not end it: the record stays as the start wrote it, and every read shows the
   * attempt a completion ended as succeeded, from the job (store/attempts.ts#endedByCompletion, the
   * export too). One write unit and one request fewer per job. Otherwise the completion writes the
   * record whole, as before.
   */
  readonly attemptRecorded?: boolean;
}

export type CompletionContext = Pick<
  LifecycleContext,
  "repo" | "clock" | "nodesTable" | "events" | "usage"
> & {
  /** The node's repair count, read before the job's write, and the release guarded by it. */
  readonly nodes: Pick<NodeRepository, "repairsOf" | "releaseOnce">;
};

/**
 * The worker's own end of a successful attempt, before it answers the run token. Its result item
 * is put, then the job becomes `completed` in one conditional UpdateItem on its own (status
 * running, this attempt, the version the start left), then side by side its attempt record is
 * ended and its reservation given back to the node (releaseAfterCompletion). Its transition is
 * not written: every read of a job's history derives the row into `completed` from the completed
 * job (app/queries.ts#unrecordedCompletion), which says all the record would. So a successful job costs its execution one state
 * transition (Dispatch) and no Lambda step, and no write of it pays DynamoDB's transaction price
 * for the job's index entries (docs/data-model.md). Dependents are released from the Jobs table's
 * change stream (`releaseDependents`).
 *
 * Why the release may come after the job's write: the task has exited, so nothing runs on that
 * capacity any more, and once the job is `completed` no other path releases it (every other
 * release is conditional on the job being dispatched or running). Held a moment longer, it only
 * keeps a job out of the node for that moment. What could give it twice is the reconciler, which
 * repairs `used` to what the `active` index holds: so the node's repair count is read before the
 * job's write, and the release is conditional on it (store/capacity.ts releaseCapacityItem). A
 * repair in between refuses it, and a worker that dies before it leaves it booked: either way the
 * next proof gives it back, and neither can give it twice.
 *
 * `abandoned` when the job no longer runs this attempt (cancelled, paused, preempted, or already
 * completed by a replay of this call): the job does not change, and the result put for it is
 * taken back (should the worker die first, it is never shown: a job shows its result only while
 * completed); or when a later attempt's result is stored already: then nothing is written.
 */
export async function completeRun(
  ctx: CompletionContext,
  run: CompletedRun,
): Promise<{ readonly outcome: "completed" | "abandoned"; readonly reason?: string }> {
  const bytes = Buffer.byteLength(run.resultJson, "utf8");
  const at = ctx.clock().toISOString();
  let started = run.started?.id === run.jobId ? run.started : undefined;
  // The result first, on its own (1 write unit; 2 in a transaction): a reader sees it only once
  // the job is completed. The node's repair count is read alongside, costing no time.
  const [put, firstRead] = await Promise.all([
    ctx.repo.putResult(run.jobId, {
      resultJson: run.resultJson,
      attempt: run.attempt,
      bytes,
      writtenAt: at,
      expiresAt: ctx.repo.historyExpiresAt(at, true),
    }),
    started?.reservation ? repairsRead(ctx, started.reservation) : undefined,
  ]);
  if (put === "later") {
    return {
      outcome: "abandoned",
      reason: `job ${run.jobId} has the result of an attempt after ${run.attempt}`,
    };
  }
  let repairs = firstRead;
  return retryOnRace(async () => {
    const item = started ?? (await readJob(ctx, run.jobId));
    // A refused write is retried against the job as it is now.
    started = undefined;
    if (item?.status !== "running" || item.attempts !== run.attempt) {
      // Not this attempt's job any more: its result goes (a replay's job, completed by this very
      // attempt, keeps the result it put again).
      if (!(item?.status === "completed" && item.attempts === run.attempt)) {
        await ctx.repo.deleteResult(run.jobId, run.attempt);
      }
      return {
        outcome: "abandoned" as const,
        reason: item
          ? `job ${item.id} is ${item.status} at attempt ${item.attempts}, not running attempt ${run.attempt}`
          : `job ${run.jobId} does not exist`,
      };
    }
    // Read before the job's write, always: a count read after it could miss a repair in between.
    if (item.reservation && !sameNode(repairs?.reservation, item.reservation)) {
      repairs = await repairsRead(ctx, item.reservation);
    }
    const now = ctx.clock().toISOString();
    // No transition record: the row into `completed` is the job's own, derived on read
    // (app/queries.ts#unrecordedCompletion), which saves its write.
    const { update, attempt, next, durationMs } = completionChange(ctx, item, run.attempt, now);
    const written = await ctx.repo.changeAlone([update], run.attemptRecorded === true ? [] : [attempt], () =>
      releaseAfterCompletion(ctx, item, repairs?.count ?? null, now),
    );
    if (written.outcome === "changed") {
      throw new ConcurrentUpdateError(`job ${item.id} changed while its completion was written`);
    }
    if (written.recordsUnwritten !== undefined) {
      logger.warn("completed; its attempt record could not be written", {
        jobId: item.id,
        attempt: run.attempt,
        error: String(written.recordsUnwritten),
      });
    }
    recordMetrics({ pool: metricPool(item) }, { jobsCompleted: 1, runTime: durationMs ?? undefined });
    await ctx.events.publish([stateChange(item.status, next)]);
    return { outcome: "completed" as const };
  });
}

interface RepairsRead {
  readonly reservation: Reservation;
  /** Null: the node is gone (deregistered), so nothing is left to release on it. */
  readonly count: number | null;
}

async function repairsRead(ctx: CompletionContext, reservation: Reservation): Promise<RepairsRead> {
  return { reservation, count: await ctx.nodes.repairsOf(reservation.pool, reservation.nodeId) };
}

const sameNode = (a: Reservation | undefined, b: Reservation): boolean =>
  a?.pool === b.pool && a.nodeId === b.nodeId;

/**
 * The completion's job write (`job`: its Update and its transition's Put; `update`: the Update
 * alone) and its attempt record's end.
 */
function completionChange(
  ctx: Pick<CompletionContext, "repo">,
  item: JobItem,
  attempt: number,
  now: string,
): {
  readonly job: TransactItem[];
  readonly update: TransactItem;
  readonly attempt: TransactItem;
  readonly next: JobItem;
  readonly durationMs: number | null;
} {
  const { items, update, next, historyExpiresAt } = ctx.repo.statusChangeItems(
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
    job: items,
    update,
    attempt: endAttemptItem(ctx.repo.tableName, item, attempt, {
      status: "succeeded",
      finishedAt: now,
      durationMs,
      error: null,
      expiresAt: historyExpiresAt,
    }),
    next,
    durationMs,
  };
}

/**
 * The completed job's reservation back to its node. Refused by the node when the reconciler
 * repaired it since `repairsSeen` was read, or when the node is gone; then the reservation is left
 * to the next proof. A release whose answer was lost is not sent again, for the same reason:
 * giving capacity back twice would let a node take more than it has, keeping it a little longer
 * only keeps it idle. A job without GPUs: one UpdateItem, sent at most once
 * (NodeRepository#releaseOnce, 1 write unit). A GPU job's GPU-seconds go to the owner's usage
 * with it, in one transaction whose client token makes the SDK's retries of it land once (usage
 * is counted by ADD, which a resend would count twice); refused, the usage is written alone.
 */
async function releaseAfterCompletion(
  ctx: CompletionContext,
  item: JobItem,
  repairsSeen: number | null,
  now: string,
): Promise<void> {
  const usage = attemptUsageItems(ctx, item, now);
  const reservation = repairsSeen === null ? undefined : item.reservation;
  const context = { jobId: item.id, attempt: item.attempts, reservation: item.reservation };
  const leftToReconciler = (why: string) =>
    logger.warn(`capacity of a completed job left to the reconciler: ${why}`, context);
  if (item.reservation && !reservation) leftToReconciler("its node is gone");
  try {
    if (usage.length === 0) {
      if (!reservation || repairsSeen === null) return;
      const released = await ctx.nodes.releaseOnce(reservation, repairsSeen);
      if (released === "refused")
        leftToReconciler("its node was repaired since its count was read, or is gone");
      if (released === "unknown") leftToReconciler("the release's answer was lost");
      return;
    }
    const release =
      reservation && repairsSeen !== null
        ? [releaseCapacityItem(ctx.nodesTable, reservation, repairsSeen)]
        : [];
    for (let round = 1; ; round++) {
      const written = await ctx.repo.transactParts({ release, usage });
      if (written.ok) return;
      if (written.conditionFailed.has("release")) {
        leftToReconciler("its node was repaired since its count was read, or is gone");
        await retryOnRace(() => ctx.repo.transact(usage));
        return;
      }
      // Another transaction on the same node or usage item at that instant: nothing was written.
      if (round >= MAX_ROUNDS) throw written.error;
      await pause(round);
    }
  } catch (error) {
    logger.error("capacity or GPU usage of a completed job not written; the reconciler gives capacity back", {
      ...context,
      error: String(error),
    });
  }
}

/**
 * One transaction's items that complete a running attempt: the job `completed` (with its
 * transition), the attempt `succeeded`, its GPU-seconds to the owner's usage and the reservation
 * back to its node. The previous lifecycle's Complete step writes them.
 */
export function completionItems(
  ctx: Pick<CompletionContext, "repo" | "nodesTable" | "usage">,
  item: JobItem,
  attempt: number,
  now: string,
): { readonly items: TransactItem[]; readonly next: JobItem; readonly durationMs: number | null } {
  const change = completionChange(ctx, item, attempt, now);
  return {
    items: [
      ...change.job,
      change.attempt,
      ...attemptUsageItems(ctx, item, now),
      ...(item.reservation ? [releaseCapacityItem(ctx.nodesTable, item.reservation)] : []),
    ],
    next: change.next,
    durationMs: change.durationMs,
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
    if (!item) return { item: null, next: null };
    if (item.status === "completed") return { item, next: null };
    if (item.status !== "running" || item.attempts !== input.attempt) {
      logger.warn("completion of an attempt that is not running; ignored", {
        jobId: item.id,
        status: item.status,
        attempts: item.attempts,
        attempt: input.attempt,
      });
      return { item, next: null };
    }
    const now = ctx.clock().toISOString();
    const { items, next, durationMs } = completionItems(ctx, item, input.attempt, now);
    await ctx.repo.transact(items);
    recordMetrics({ pool: metricPool(item) }, { jobsCompleted: 1, runTime: durationMs ?? undefined });
    return { item, next };
  });

  const { item, next } = outcome;
  if (!item) return { status: null, released: 0 };
  if (next) {
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
export async function markEdgeMet(
  ctx: LifecycleContext,
  parentId: string,
  childId: string,
): Promise<boolean> {
  for (let round = 1; ; round++) {
    try {
      const marked = await ctx.repo.markDependencyMet(parentId, childId, ctx.clock().toISOString());
      if (marked.ok) return true;
      // Already met (a replay), or the edge moved to an escalation's job meanwhile.
      if (marked.reason === "already_met") return false;
      logger.warn("dependent missing or already counted as released", { parentId, childId });
      return false;
    } catch (error) {
      if (!(error instanceof ConcurrentUpdateError)) throw error;
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
export async function settleBlocked(ctx: LifecycleContext, id: string): Promise<JobStateChange | null> {
  return retryOnRace(async () => {
    const child = await readJob(ctx, id, true);
    if (child?.status !== "blocked") return null;
    const now = ctx.clock();
    const at = now.toISOString();
    if (isArrayParent(child)) {
      // An array's parent never queues: it completes with its last child (app/arrays.ts).
      const settled = arrayParentSettlement(child, at);
      if (!settled) return null;
      const next = await ctx.repo.changeStatus(
        child,
        { ...settled, to: transition(child.status, settled.to) },
        at,
      );
      return child.staged ? null : stateChange(child.status, next);
    }
    const applies = applicableNow(child, now);
    if (applies.status === "blocked") {
      if (child.statusReason === applies.reason) return null;
      // Conditional on the version the count was read at, so a stale count never wins.
      const updated = await ctx.repo.setBlockedReason(child, applies.reason);
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
