import {
  ConcurrentUpdateError,
  ForbiddenError,
  InvalidTransitionError,
  ValidationError,
} from "../core/errors";
import type { Job } from "../core/job";
import { positionBetween, queuePosition } from "../core/ordering";
import type { Principal } from "../core/principal";
import { fromJobItem, type JobItem } from "../store/job-items";
import { queuedBetween } from "../store/job-queries";
import { positionOfQueueSk, queueRankPrefix } from "../store/keys";
import type { AppContext } from "./runtime";
import { loadVisibleJob } from "./visibility";

/**
 * PATCH /jobs/{id} {"before": "<jobId>"} (admins, PRD-008): move a queued job just ahead of
 * another queued job of the same queue — the dashboard's drag and drop. The job takes the
 * target's priority and a place (`orderKey`) between the target and the job now ahead of it
 * among that priority's jobs, so nothing else in the queue is rewritten; fair-share and
 * round-robin still choose between owners, and within an owner the new place holds.
 */

export type ReorderContext = Pick<AppContext, "repo" | "clock">;

const MAX_ROUNDS = 8;

export async function moveJobBefore(
  ctx: ReorderContext,
  principal: Principal,
  id: string,
  targetId: string,
): Promise<Job> {
  if (!principal.admin) throw new ForbiddenError("only an admin may reorder the queue (before)");
  if (targetId === id) {
    throw new ValidationError([{ path: "before", message: "a job cannot be moved before itself" }]);
  }
  for (let round = 1; ; round++) {
    const { item, result } = await loadVisibleJob(ctx.repo, principal, id);
    const target = await loadVisibleJob(ctx.repo, principal, targetId);
    for (const job of [item, target.item]) {
      if (job.status !== "queued") {
        throw new InvalidTransitionError(
          job.status,
          job.status,
          `job ${job.id} is ${job.status}; only queued jobs can be reordered`,
        );
      }
    }
    if ((item.pool ?? null) !== (target.item.pool ?? null)) {
      throw new ValidationError([
        {
          path: "before",
          message: `job ${targetId} waits in queue ${target.item.pool ?? "*"}, job ${id} in ${item.pool ?? "*"}`,
        },
      ]);
    }
    try {
      return await move(ctx, principal, item, target.item, result);
    } catch (error) {
      if (error instanceof ConcurrentUpdateError && round < MAX_ROUNDS) continue;
      throw error;
    }
  }
}

async function move(
  ctx: ReorderContext,
  principal: Principal,
  item: JobItem,
  target: JobItem,
  result: unknown,
): Promise<Job> {
  const hi = queuePosition(target);
  const lo = await positionAhead(ctx, target, [item.id, target.id]);
  const orderKey = positionBetween(lo, hi);
  // With aging on, bands are by effective priority: the moved job waits at least as long as
  // the target, so it ages with it and stays in the target's band.
  const queuedAt =
    target.queuedAt && (!item.queuedAt || target.queuedAt < item.queuedAt) ? target.queuedAt : item.queuedAt;
  const { items, next } = ctx.repo.priorityChangeItems(
    item,
    {
      priority: target.priority,
      orderKey,
      ...(queuedAt ? { queuedAt } : {}),
      reason: `moved before ${target.id} by ${principal.id}: priority ${item.priority} → ${target.priority}`,
      triggeredBy: principal.id,
    },
    ctx.clock().toISOString(),
  );
  // The place was chosen against the target as read: it must not have moved meanwhile.
  items.push(ctx.repo.jobUnchangedItem(target));
  await ctx.repo.transact(items);
  return fromJobItem(next, result);
}

/**
 * The position of the job just ahead of the target among its priority's queued jobs ("" when
 * the target heads its priority): one Query of the `queue` index, newest first from the target,
 * skipping the target and the moving job. The index trails the table by a moment: a job queued
 * in that moment may end up on either side, which a second move settles.
 */
async function positionAhead(ctx: ReorderContext, target: JobItem, skip: readonly string[]): Promise<string> {
  const prefix = queueRankPrefix(target.priority);
  const page = await queuedBetween(
    ctx.repo,
    target.pool ?? null,
    { lo: prefix, hi: target.queueSk ?? `${prefix}${queuePosition(target)}` },
    skip.length + 1,
  );
  const hi = queuePosition(target);
  for (const entry of page.items) {
    if (skip.includes(String(entry.id))) continue;
    const position = positionOfQueueSk(String(entry.queueSk));
    if (position < hi) return position;
  }
  return "";
}
