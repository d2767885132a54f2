import { applicableStatus, dependencyOutcome } from "../core/dependencies";
import { ConcurrentUpdateError, InvalidTransitionError } from "../core/errors";
import type { Job, RetryJobRequest } from "../core/job";
import type { Principal } from "../core/principal";
import { RETRYABLE, transition } from "../core/status";
import { fromJobItem, type JobItem } from "../store/job-items";
import { applicableChange, type StatusChange } from "../store/job-repository";
import { DEPENDS_ON_PREFIX } from "../store/keys";
import { refuseOnArrayParent } from "./arrays";
import { stateChange } from "./events";
import type { AppContext } from "./runtime";
import { canSee, loadVisibleJob } from "./visibility";

/**
 * POST /jobs/{id}/retry: the one way out of a terminal status (like Slurm's `scontrol requeue`
 * or BullMQ's `job.retry()`). A failed, cancelled or escalated job gets a new attempt budget —
 * `failures` back to 0, `retry.maxAttempts` the job's own or the request's; attempt numbers go on
 * from `attempts`, so attempt records never collide — and goes back to the status the dependency
 * rule gives it (queued, blocked, or scheduled while a runAt is still ahead), with a fresh
 * lifecycle execution as resume does. With `dependents`, the jobs its cascade cancelled come
 * back too, transitively, each to `blocked` on the job it waits for.
 */

export type RetryContext = Pick<AppContext, "repo" | "clock" | "executions" | "events">;

const MAX_ROUNDS = 8;

export async function retryJob(
  ctx: RetryContext,
  principal: Principal,
  id: string,
  request: Partial<RetryJobRequest>,
): Promise<Job> {
  let retried: Job | undefined;
  for (let round = 1; !retried; round++) {
    const { item, result } = await loadVisibleJob(ctx.repo, principal, id);
    try {
      retried = fromJobItem(await retryItem(ctx, principal, item, request), result);
    } catch (error) {
      if (!(error instanceof ConcurrentUpdateError) || round >= MAX_ROUNDS) throw error;
    }
  }
  if (request.dependents) await reviveDependents(ctx, principal, id);
  return retried;
}

async function retryItem(
  ctx: RetryContext,
  principal: Principal,
  item: JobItem,
  request: Partial<RetryJobRequest>,
): Promise<JobItem> {
  refuseOnArrayParent(item, "retry", "queued");
  if (!RETRYABLE.has(item.status)) {
    throw new InvalidTransitionError(
      item.status,
      "queued",
      `job ${item.id} is ${item.status}; only a failed, cancelled or escalated job can be retried`,
    );
  }
  const now = ctx.clock();
  await assertEscalationEnded(ctx, item);
  const unmet = await settleDependencies(ctx, item);
  const deadline = request.deadline ?? item.deadline;
  if (deadline !== null && Date.parse(deadline) <= now.getTime()) {
    throw new InvalidTransitionError(
      item.status,
      "queued",
      `job ${item.id}'s deadline ${deadline} has passed; retry it with a new "deadline"`,
    );
  }
  const change = revivalChange(item, now, unmet, principal, `retried by ${principal.id}`, {
    failures: 0,
    retries: (item.retries ?? 0) + 1,
    retry: { ...item.retry, maxAttempts: request.maxAttempts ?? item.retry.maxAttempts },
    error: null,
    escalatedTo: null,
    // The retried run starts afresh: its deadline ("not started by") applies to it again.
    startedAt: null,
    ...(request.deadline ? { deadline: request.deadline } : {}),
  });
  return revive(ctx, item, change);
}

/**
 * An escalated job's dependents wait on its escalation job now (rewired at escalation), so the
 * original may run again only once that job can no longer complete: otherwise two jobs would do
 * the same work for the same dependents.
 */
async function assertEscalationEnded(ctx: RetryContext, item: JobItem): Promise<void> {
  if (item.status !== "escalated" || !item.escalatedTo) return;
  const escalation = (await ctx.repo.getJobItems([item.escalatedTo])).get(item.escalatedTo);
  if (escalation && escalation.status !== "failed" && escalation.status !== "cancelled") {
    throw new InvalidTransitionError(
      item.status,
      "queued",
      `job ${item.id} was escalated to ${escalation.id}, which is ${escalation.status}; retry it once that job has failed or been cancelled`,
    );
  }
}

/**
 * Refuses a retry while a dependency can never complete (the message names it), and returns
 * how many dependencies have not completed. A dependency that completed after this job ended
 * but whose edge was never marked met (its release skipped a terminal child) is marked now, so
 * the edge flags and the job's `unmet` count agree before the job waits on them again.
 */
async function settleDependencies(ctx: RetryContext, item: JobItem): Promise<number> {
  if (item.dependsOn.length === 0) return 0;
  const parents = await ctx.repo.getJobItems(item.dependsOn);
  for (const parentId of item.dependsOn) {
    const parent = parents.get(parentId);
    if (parent && dependencyOutcome(parent.status) === "doomed") {
      throw new InvalidTransitionError(
        item.status,
        "queued",
        `dependency ${parentId} is ${parent.status}; retry that one with "dependents": true`,
      );
    }
  }
  let startKey: Record<string, unknown> | undefined;
  const unmetEdges = new Set<string>();
  do {
    const page = await ctx.repo.queryJobPartition(item.id, DEPENDS_ON_PREFIX, { limit: 1000, startKey });
    for (const edge of page.items) {
      if (edge.met !== true) unmetEdges.add(String(edge.sk).slice(DEPENDS_ON_PREFIX.length));
    }
    startKey = page.lastKey;
  } while (startKey);
  let counted = unmetEdges.size;
  for (const parentId of unmetEdges) {
    if (parents.get(parentId)?.status !== "completed") continue;
    // Flipped by someone else meanwhile: ConcurrentUpdateError, and the caller re-reads.
    const met = await ctx.repo.markDependencyMet(parentId, item.id, ctx.clock().toISOString());
    if (!met.ok) {
      throw new ConcurrentUpdateError(
        `dependency ${parentId} of ${item.id} changed meanwhile (${met.reason})`,
      );
    }
    counted--;
  }
  // The edges are the truth: the revival writes this count with the status (a decrement above
  // moved the job's version, so that write loses its race and the caller re-reads first).
  return counted;
}

/**
 * The change that takes a terminal job back to waiting: the status core's rule gives it, a
 * reason that says who revived it, and everything its end left on it cleared. `expiresAt` is
 * removed too: a retention rule that lets ended jobs expire must not collect a live one.
 */
function revivalChange(
  item: JobItem,
  now: Date,
  unmet: number,
  principal: Principal,
  why: string,
  set: Readonly<Record<string, unknown>>,
): StatusChange {
  const at = now.toISOString();
  const applies = applicableStatus({
    now,
    runAt: item.runAt,
    unmet,
    total: Math.max(unmet, item.dependsOn.length),
    doomedBy: null,
  });
  const change = applicableChange(applies, at, principal.id);
  return {
    ...change,
    to: transition(item.status, applies.status, "retry"),
    reason: `${why}; ${applies.reason}`,
    set: { ...change.set, ...set, unmet, finishedAt: null, nextAttemptAt: null },
    remove: ["admissionToken", "executionArn", "pausedFrom", "expiresAt", "orderKey"],
  };
}

async function revive(ctx: RetryContext, item: JobItem, change: StatusChange): Promise<JobItem> {
  const at = ctx.clock().toISOString();
  // Its end set its history to expire (docs/data-model.md#retention): renewed first, as a live
  // job's, so a crash between the two leaves an ended job with a longer-kept history, never a
  // revived one whose history is about to go. A write per history item, on manual retries only.
  await ctx.repo.renewHistory(item.id, at);
  const next = await ctx.repo.changeStatus(item, change, at);
  await ctx.events.publish([stateChange(item.status, next)]);
  // No execution to start: the scheduler starts the next attempt's when it admits the job.
  return next;
}

/**
 * Revives, breadth-first, the dependents that a cascade cancelled because of this job (their
 * statusReason is cascadeCancel's "dependency <id> failed|was cancelled"), and theirs in turn.
 * Each goes to `blocked`: the job it waits on has not completed (its edge was never met, so
 * `unmet` already counts it). A dependent the caller cannot see, one cancelled for another reason
 * (by a person), or one that also waits on another failed or cancelled job stays as it is.
 * Reviving twice is harmless: the second walk finds them no longer cancelled.
 */
async function reviveDependents(ctx: RetryContext, principal: Principal, rootId: string): Promise<number> {
  const visited = new Set<string>([rootId]);
  let frontier = [rootId];
  let count = 0;
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const parentId of frontier) {
      const childIds = (await ctx.repo.listDependentIds(parentId)).filter((child) => !visited.has(child));
      const children = await ctx.repo.getJobItems(childIds);
      for (const childId of childIds) {
        visited.add(childId);
        const child = children.get(childId);
        if (!child || child.staged || !canSee(principal, child) || !cancelledBy(child, parentId)) continue;
        if (await reviveDependent(ctx, principal, childId, parentId)) {
          count++;
          next.push(childId);
        }
      }
    }
    frontier = next;
  }
  return count;
}

function cancelledBy(child: Pick<JobItem, "status" | "statusReason">, parentId: string): boolean {
  const reason: string = child.statusReason;
  return (
    child.status === "cancelled" &&
    (reason === `dependency ${parentId} failed` || reason === `dependency ${parentId} was cancelled`)
  );
}

async function reviveDependent(
  ctx: RetryContext,
  principal: Principal,
  id: string,
  parentId: string,
): Promise<boolean> {
  for (let round = 1; ; round++) {
    const item = (await ctx.repo.getJobItems([id])).get(id);
    if (!item || !cancelledBy(item, parentId)) return false;
    try {
      const unmet = await settleDependencies(ctx, item);
      const change = revivalChange(
        item,
        ctx.clock(),
        unmet,
        principal,
        `revived by ${principal.id} with ${parentId}`,
        {},
      );
      await revive(ctx, item, change);
      return true;
    } catch (error) {
      // Another dependency failed or was cancelled: this one stays cancelled.
      if (error instanceof InvalidTransitionError) return false;
      if (error instanceof ConcurrentUpdateError && round < MAX_ROUNDS) continue;
      throw error;
    }
  }
}
