import { forEachConcurrent } from "../core/concurrency";
import { dependencyOutcome } from "../core/dependencies";
import { ConcurrentUpdateError, InvalidTransitionError } from "../core/errors";
import type { BatchJobRequest } from "../core/job";
import { escalationFor } from "../core/type-rules";
import { fromJobItem, type JobItem } from "../store/job-items";
import { dependsOnSk, jobPk } from "../store/keys";
import { cancelJob, cascadeCancel } from "./actions";
import { settleBlocked } from "./completion";
import type { JobStateChange } from "./events";
import { requestHash } from "./idempotency";
import type { LifecycleContext } from "./lifecycle";
import { DEPENDENT_CONCURRENCY, readJob, retryOnRace } from "./lifecycle-steps";
import { logger } from "./logger";
import { submitJobs } from "./submit";

/**
 * Escalation: a job out of attempts hands its work to a new job of its `onFailure.escalateTo` type
 * (`onTimeout.escalateTo` when its last attempt timed out and it has one), and its dependents are
 * rewired to wait on that job instead.
 */

/**
 * After a job ended `escalated`: creates the escalation job (once, whatever the replays: the
 * submission carries an Idempotency-Key derived from the job), records it in `escalatedTo`, and
 * rewires the dependents to it. Recording `escalatedTo` bumps the version before the dependents
 * are listed, so a submission racing with us either is listed or reads `escalatedTo` and
 * depends on the new job itself.
 */
export async function finishEscalation(ctx: LifecycleContext, escalated: JobItem): Promise<string | null> {
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
export async function withdrawEscalation(ctx: LifecycleContext, id: string, jobId: string): Promise<void> {
  try {
    await cancelJob(ctx, { id: SYSTEM_PRINCIPAL, admin: true }, id);
    logger.warn("escalation job withdrawn: its job moved on before it was marked escalated", { id, jobId });
  } catch (error) {
    // Already ended: nothing runs on its own any more.
    if (!(error instanceof InvalidTransitionError)) throw error;
  }
}

/** Who the system acts as when it must use a principal's action (a withdrawn escalation). */
export const SYSTEM_PRINCIPAL = "jobq";

/**
 * Creates the escalation job of a job whose attempts ran out, once whatever the replays: the
 * submission carries an Idempotency-Key derived from the job, so a second call returns the first
 * call's job.
 */
export async function submitEscalation(
  ctx: LifecycleContext,
  escalated: JobItem,
  /** Whether the last attempt timed out (then onTimeout, if set, names the type). */
  timedOut: boolean = escalated.error?.type === "timeout",
): Promise<string | null> {
  const job = fromJobItem(escalated);
  const escalateTo = escalationFor(job, timedOut);
  if (!escalateTo) return null;
  const inherited = { retry: job.retry, timeoutSeconds: job.timeoutSeconds };
  // retry and timeoutSeconds are left out: the escalation type's rules (policy.types) set them
  // where they have them, else the job's own are inherited (as before per-type rules existed).
  const request: BatchJobRequest = {
    type: escalateTo.type,
    ...(job.name !== null ? { name: job.name } : {}),
    payload: job.payload,
    priority: escalateTo.priority ?? job.priority,
    resources: job.resources,
    ...(job.pool !== null ? { pool: job.pool } : {}),
    constraints: job.constraints,
    dependsOn: [],
    offPeakOnly: job.offPeakOnly,
    tags: job.tags,
    // The escalation is the same work under a new type: it counts against the same project.
    ...(job.project !== null ? { project: job.project } : {}),
  };
  const result = await submitJobs(ctx, {
    principal: { id: job.owner, admin: false },
    jobs: [request],
    fallback: inherited,
    escalation: true,
    // A manually retried job escalates again in a later round: each round has its own job.
    idempotency: {
      key: `jobq-escalation:${job.id}${escalated.retries ? `#${escalated.retries}` : ""}`,
      // Hashed with what it inherits, as before the type's rules could replace it: a replay
      // across an upgrade is still the same request.
      requestHash: requestHash("escalation", { ...request, ...inherited }),
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

export async function recordEscalatedTo(ctx: LifecycleContext, id: string, newId: string): Promise<void> {
  await retryOnRace(async () => {
    const item = await readJob(ctx, id);
    if (item?.status !== "escalated" || item.escalatedTo) return;
    const reason = item.statusReason.replace(/escalated to a new \S+ job$/, `escalated to ${newId}`);
    const stored = await ctx.repo.setEscalatedTo(item, newId, reason, ctx.clock().toISOString());
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
export async function rewireDependents(ctx: LifecycleContext, oldId: string, newId: string): Promise<void> {
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
export async function rewireDependent(
  ctx: LifecycleContext,
  oldId: string,
  newId: string,
  childId: string,
): Promise<boolean> {
  return retryOnRace(async () => {
    const jobs = await ctx.repo.getJobItems([childId, newId]);
    const child = jobs.get(childId);
    const parent = jobs.get(newId);
    const edge = await ctx.repo.getItem({ pk: jobPk(childId), sk: dependsOnSk(oldId) });
    if (!child || !parent || !edge) {
      // Nothing left to move; drop the parent's dangling edge so no walk meets it again.
      await ctx.repo.removeDependentEdge(oldId, childId);
      return false;
    }
    const wasMet = edge.met === true;
    const met = parent.status === "completed";
    const decrement = met && !wasMet;
    const at = ctx.clock().toISOString();
    await ctx.repo.transact(
      ctx.repo.rewireDependencyItems({
        child,
        oldParentId: oldId,
        newParent: parent,
        met: met || wasMet,
        decrement,
        at,
      }),
    );
    return decrement;
  });
}
