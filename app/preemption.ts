import { ConcurrentUpdateError } from "../core/errors";
import { stopItems } from "./actions";
import { type JobStateChange, stateChange } from "./events";
import { logger } from "./logger";
import type { AppContext } from "./runtime";

/**
 * Eviction of a running (or dispatched) job for a higher-priority one (API.md, preemption).
 * In one transaction the victim goes back to `queued` ("preempted by job_x"), its reservation
 * returns to its node, its running attempt ends `preempted` (and its GPU time is counted), and
 * its `failures` — what maxAttempts compares — stay as they were. Then its execution is stopped,
 * which makes the worker's next heartbeat fail so it aborts the task, and a fresh execution
 * takes the job back to admission. `preemptedAt` starts the cool-down during which the job is
 * not preempted again.
 */

export type PreemptionContext = Pick<
  AppContext,
  "repo" | "clock" | "nodesTable" | "usage" | "executions" | "events"
>;

/** The victim as the pass read it: evicted only if its attempt is still the one read. */
export interface Victim {
  readonly id: string;
  readonly attempts: number;
}

/** True when the victim was evicted; false when it had moved on (ended, or another attempt). */
export async function evict(ctx: PreemptionContext, victim: Victim, preemptorId: string): Promise<boolean> {
  const item = (await ctx.repo.getJobItems([victim.id])).get(victim.id);
  if (!item || item.attempts !== victim.attempts) return false;
  if (item.status !== "running" && item.status !== "dispatched") return false;
  const at = ctx.clock().toISOString();
  const reason = `preempted by ${preemptorId}`;
  const { items, next } = stopItems(
    ctx,
    item,
    {
      to: "queued",
      reason,
      reasonCode: "preempted",
      triggeredBy: null,
      set: { queuedAt: at, preemptedAt: at },
      remove: ["executionArn"],
    },
    { status: "preempted", error: { type: "preempted", message: reason } },
  );
  try {
    await ctx.repo.transact(items);
  } catch (error) {
    if (error instanceof ConcurrentUpdateError) return false;
    throw error;
  }
  const events: JobStateChange[] = [stateChange(item.status, next)];
  await ctx.events.publish(events);
  if (item.executionArn) {
    try {
      await ctx.executions.stop(item.executionArn, reason);
    } catch (error) {
      // The attempt is already ended in the store; a worker that keeps heartbeating on a live
      // execution only finds, when it reports, that its attempt is no longer the job's.
      logger.error("could not stop a preempted job's execution", {
        jobId: item.id,
        executionArn: item.executionArn,
        error: error as Error,
      });
    }
  }
  logger.info("job preempted", { jobId: item.id, preemptor: preemptorId, attempt: item.attempts });
  return true;
}
