import { ConcurrentUpdateError } from "../core/errors";
import type { JobItem } from "../store/job-items";
import { type ActionContext, cascadeCancel } from "./actions";
import { type JobStateChange, stateChange } from "./events";
import type { NotAdmittedOutput, TaskTokens } from "./lifecycle";

/**
 * API.md: "deadline — if not started by then → failed, reason deadline_exceeded". The
 * scheduler's sweep finds such jobs on the `due` index (a waiting job with a deadline is due at
 * it) and ends them here: failed with error type `deadline_exceeded`, the execution waiting for
 * its admission told to end, and its dependents cancelled like after any failure.
 */

export type DeadlineContext = ActionContext & { readonly tokens: TaskTokens };

/** Statuses in which a job has not started: the deadline still applies. */
const NOT_STARTED = new Set(["scheduled", "blocked", "queued"]);

export function deadlinePassed(item: Pick<JobItem, "status" | "deadline" | "startedAt">, now: Date): boolean {
  return (
    NOT_STARTED.has(item.status) &&
    !item.startedAt &&
    item.deadline !== null &&
    Date.parse(item.deadline) <= now.getTime()
  );
}

/** Fails the job if its deadline passed before it started; the state change, or null. */
export async function expireDeadline(ctx: DeadlineContext, item: JobItem): Promise<JobStateChange | null> {
  const now = ctx.clock();
  if (!deadlinePassed(item, now)) return null;
  const at = now.toISOString();
  const message = `not started by its deadline ${item.deadline}`;
  let next: JobItem;
  try {
    next = await ctx.repo.changeStatus(
      item,
      {
        to: "failed",
        reason: `deadline_exceeded: ${message}`,
        reasonCode: "deadline_exceeded",
        triggeredBy: null,
        set: { finishedAt: at, nextAttemptAt: null, error: { type: "deadline_exceeded", message } },
        remove: ["admissionToken"],
      },
      at,
    );
  } catch (error) {
    if (error instanceof ConcurrentUpdateError) return null;
    throw error;
  }
  if (item.admissionToken) {
    const output: NotAdmittedOutput = { admitted: false, reason: `job ${item.id} failed: deadline_exceeded` };
    await ctx.tokens.succeed(item.admissionToken, output);
  }
  const change = stateChange(item.status, next);
  await ctx.events.publish([change]);
  await cascadeCancel(ctx, item.id, "failed");
  return change;
}
