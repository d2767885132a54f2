import type { JobStatus } from "../core/job";
import { canTransition, transition } from "../core/status";
import type { JobItem } from "../store/job-items";
import { stateChange } from "./events";
import type { LifecycleContext, RequeueInput } from "./lifecycle";
import { applicableNow, readJob, retryOnRace, supersededBy } from "./lifecycle-steps";
import { logger } from "./logger";

/** The Requeue step: a retrying job back in line once its backoff is over. */

/**
 * The backoff is over: `retrying` → whatever status now applies (queued, by core's rule), and
 * the execution ends: the scheduler starts the next attempt's when it admits the job. A replay
 * finds the job moved on and does nothing.
 */
export async function requeueJob(
  ctx: LifecycleContext,
  input: RequeueInput,
): Promise<{ readonly status: JobStatus | null }> {
  return retryOnRace(async () => {
    const item = await readJob(ctx, input.jobId);
    // A stale execution's Requeue would cut a newer attempt's backoff short.
    const superseded = item ? supersededBy(item, input.executionArn) : null;
    if (superseded) {
      logger.info("requeue from a superseded execution: nothing to do", {
        jobId: input.jobId,
        reason: superseded,
      });
      return { status: item?.status ?? null };
    }
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
  const applies = applicableNow(item, now);
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
