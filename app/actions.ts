import { arrayFailedReason } from "../core/arrays";
import { applicableStatus } from "../core/dependencies";
import { ConcurrentUpdateError, InvalidTransitionError } from "../core/errors";
import { isTerminal, type Job, type JobError, type JobStatus } from "../core/job";
import type { Principal } from "../core/principal";
import { assertProjectPriorityAllowed, projectQuotaKey } from "../core/projects";
import { assertPriorityAllowed, type QuotaLimits } from "../core/quota";
import { canTransition } from "../core/status";
import { endAttemptItem, releaseCapacityItem } from "../store/capacity";
import { fromJobItem, type JobItem } from "../store/job-items";
import {
  applicableChange,
  type StatusChange,
  type StoredJob,
  type TransactItem,
} from "../store/job-repository";
import { gpuUsageItems } from "../store/usage";
import { cancelArrayChildren, isArrayParent, refuseOnArrayParent } from "./arrays";
import { stateChange } from "./events";
import { metricPool, recordMetrics } from "./metrics";
import type { AppContext } from "./runtime";
import { loadVisibleJob } from "./visibility";

/**
 * What a user does to a job: cancel (cascading to dependents), pause, resume, reprioritize.
 * Each is a conditional write retried on a lost race against a fresh read, so two actions at
 * once both see the truth and at most one wins.
 */

export type ActionContext = Pick<
  AppContext,
  "repo" | "clock" | "nodesTable" | "executions" | "events" | "usage"
>;

const MAX_ROUNDS = 8;

/** Re-reads and retries `act` while it loses races; the last loss is rethrown as a 409. */
async function withFreshRead<T>(
  read: () => Promise<StoredJob>,
  act: (stored: StoredJob) => Promise<T>,
): Promise<T> {
  for (let round = 1; ; round++) {
    const stored = await read();
    try {
      return await act(stored);
    } catch (error) {
      if (error instanceof ConcurrentUpdateError && round < MAX_ROUNDS) continue;
      throw error;
    }
  }
}

function refuse(item: JobItem, to: JobStatus, action: string): never {
  throw new InvalidTransitionError(
    item.status,
    to,
    `job ${item.id} is ${item.status}; a ${item.status} job cannot be ${action}`,
  );
}

export async function cancelJob(ctx: ActionContext, principal: Principal, id: string): Promise<Job> {
  const cancelled = await withFreshRead(
    () => loadVisibleJob(ctx.repo, principal, id),
    async ({ item, result }) => {
      if (!canTransition(item.status, "cancelled")) refuse(item, "cancelled", "cancelled");
      await cancelChildrenFirst(ctx, principal, item);
      const change: StatusChange = {
        to: "cancelled",
        reason: `cancelled by ${principal.id}`,
        triggeredBy: principal.id,
        set: { finishedAt: ctx.clock().toISOString() },
      };
      return fromJobItem(await stopWith(ctx, item, change, "cancelled"), result);
    },
  );
  await cascadeCancel(ctx, id, "was cancelled");
  return cancelled;
}

/**
 * An array job's parent is cancelled after its children (app/arrays.ts): each child with the
 * cascade to its own dependents, never back to the parent, so a cancel cut short (a large array,
 * a timeout) is finished by sending it again while the parent is still not terminal.
 */
async function cancelChildrenFirst(ctx: ActionContext, principal: Principal, item: JobItem): Promise<void> {
  if (!isArrayParent(item)) return;
  await cancelArrayChildren(ctx, item, async (child) => {
    const ended = await cancelDependent(
      ctx,
      child.id,
      `array ${item.id} was cancelled by ${principal.id}`,
      "",
    );
    if (ended) await cascadeCancel(ctx, child.id, "was cancelled", [item.id]);
    return ended !== null;
  });
}

/**
 * Cancels every job that waits, directly or transitively, on a job that can no longer complete,
 * each with a reason naming the dependency it waited on. Breadth-first over the dependents
 * edges; a job already terminal stops the walk there (its dependents were handled when it ended).
 */
export async function cascadeCancel(
  ctx: ActionContext,
  rootId: string,
  verb: "failed" | "was cancelled",
  /** Jobs the walk leaves alone (an array's parent while its children are cancelled first). */
  skip: readonly string[] = [],
): Promise<number> {
  const visited = new Set<string>([rootId, ...skip]);
  let frontier: { parentId: string; verb: string }[] = [{ parentId: rootId, verb }];
  let count = 0;
  while (frontier.length > 0) {
    const next: typeof frontier = [];
    for (const { parentId, verb: how } of frontier) {
      const childIds = (await ctx.repo.listDependentIds(parentId)).filter((child) => !visited.has(child));
      for (const childId of childIds) {
        visited.add(childId);
        const ended = await cancelDependent(
          ctx,
          childId,
          `dependency ${parentId} ${how}`,
          arrayFailedReason(parentId, how),
        );
        if (ended) {
          count++;
          next.push({ parentId: childId, verb: ended === "failed" ? "failed" : "was cancelled" });
        }
      }
    }
    frontier = next;
  }
  return count;
}

/**
 * Ends a job whose dependency can no longer complete: `cancelled` with `reason`, except an array
 * job's parent, which AWS Batch's rule fails (with `arrayReason`) when one of its children ends
 * failed or cancelled. Returns the status it ended in, or null when it had ended already.
 */
async function cancelDependent(
  ctx: ActionContext,
  id: string,
  reason: string,
  arrayReason: string,
): Promise<"cancelled" | "failed" | null> {
  for (let round = 1; ; round++) {
    // Staged jobs (a batch still being written) are cancelled too: the batch commits them as they are.
    const item = (await ctx.repo.getJobItems([id])).get(id);
    if (!item || isTerminal(item.status)) return null;
    try {
      const parent = isArrayParent(item);
      const change: StatusChange = {
        to: parent ? "failed" : "cancelled",
        reason: parent ? arrayReason : reason,
        triggeredBy: null,
        set: { finishedAt: ctx.clock().toISOString() },
      };
      await stopWith(ctx, item, change, "cancelled");
      return change.to === "failed" ? "failed" : "cancelled";
    } catch (error) {
      if (error instanceof ConcurrentUpdateError && round < MAX_ROUNDS) continue;
      throw error;
    }
  }
}

export async function pauseJob(ctx: ActionContext, principal: Principal, id: string): Promise<Job> {
  return withFreshRead(
    () => loadVisibleJob(ctx.repo, principal, id),
    async ({ item, result }) => {
      if (!canTransition(item.status, "paused")) refuse(item, "paused", "paused");
      refuseOnArrayParent(item, "pause", "paused");
      const change: StatusChange = {
        to: "paused",
        reason: `paused by ${principal.id}`,
        triggeredBy: principal.id,
        set: { pausedFrom: item.status },
      };
      // A paused attempt is recorded `cancelled` and does not count against maxAttempts.
      return fromJobItem(await stopWith(ctx, item, change, "cancelled"), result);
    },
  );
}

/** paused → whatever status now applies, by the same rule as at submit. */
export async function resumeJob(ctx: ActionContext, principal: Principal, id: string): Promise<Job> {
  return withFreshRead(
    () => loadVisibleJob(ctx.repo, principal, id),
    async ({ item, result }) => {
      if (item.status !== "paused") {
        throw new InvalidTransitionError(
          item.status,
          "queued",
          `job ${item.id} is ${item.status}; only a paused job can be resumed`,
        );
      }
      const now = ctx.clock();
      const at = now.toISOString();
      const applies = applicableStatus({
        now,
        runAt: item.runAt,
        unmet: item.unmet,
        total: Math.max(item.unmet, item.dependsOn.length),
        // A dependency that failed while this job was paused cancelled it through the cascade.
        doomedBy: null,
      });
      const change: StatusChange = {
        ...applicableChange(applies, at, principal.id),
        remove: ["pausedFrom", "admissionToken", "executionArn"],
      };
      const next = await ctx.repo.changeStatus(item, change, at);
      await ctx.events.publish([stateChange(item.status, next)]);
      // The paused job's execution was stopped; the scheduler starts one when it admits the job.
      return fromJobItem(next, result);
    },
  );
}

/**
 * Moves a job to a status that takes it out of the lifecycle (cancelled, paused) in one
 * transaction with everything its attempt held (`stopItems`). Then the lifecycle execution is
 * stopped, which also makes the worker's next heartbeat fail so it aborts the task.
 */
async function stopWith(
  ctx: ActionContext,
  item: JobItem,
  change: StatusChange,
  attemptStatus: "cancelled",
): Promise<JobItem> {
  const { items, next } = stopItems(ctx, item, change, { status: attemptStatus, error: null });
  await ctx.repo.transact(items);
  // After the conditional write that made it: a lost race re-reads and may find it terminal.
  recordMetrics({ pool: metricPool(item) }, { jobsCancelled: 1 });
  await ctx.events.publish([stateChange(item.status, next)]);
  if (item.executionArn) await ctx.executions.stop(item.executionArn, change.reason);
  return next;
}

/**
 * The transaction that takes a job off its attempt (cancel, pause, preemption): the status
 * change (its admission token dropped), the capacity reservation back to its node, and a running
 * attempt recorded as ended with the GPU-seconds it used until now — counted in this
 * transaction, and so exactly once.
 */
export function stopItems(
  ctx: Pick<ActionContext, "repo" | "clock" | "nodesTable" | "usage">,
  item: JobItem,
  change: StatusChange,
  ended: { readonly status: "cancelled" | "preempted"; readonly error: JobError | null },
): { items: TransactItem[]; next: JobItem } {
  const now = ctx.clock().toISOString();
  const { items, next, historyExpiresAt } = ctx.repo.statusChangeItems(
    item,
    { ...change, remove: [...(change.remove ?? []), "admissionToken"] },
    now,
  );
  if (item.reservation) items.push(releaseCapacityItem(ctx.nodesTable, item.reservation));
  if (item.status === "running" && item.attempts > 0) {
    const startedAt = item.attemptStartedAt ? Date.parse(item.attemptStartedAt) : Number.NaN;
    items.push(
      endAttemptItem(ctx.repo.tableName, item, item.attempts, {
        status: ended.status,
        finishedAt: now,
        durationMs: Number.isNaN(startedAt) ? null : Date.parse(now) - startedAt,
        error: ended.error,
        expiresAt: historyExpiresAt,
      }),
      ...gpuUsageItems(
        ctx.usage.tableName,
        item.owner,
        item.reservation?.gpu ?? item.resources.gpu,
        item.attemptStartedAt,
        now,
        item.project,
      ),
    );
  }
  return { items, next };
}

/**
 * PATCH /jobs/{id} {"priority"}: a non-terminal job's new priority, and its row in /transitions
 * in the same transaction. A non-admin may not raise a job above their quota's maxPriority.
 */
export async function reprioritizeJob(
  ctx: ActionContext & Pick<AppContext, "policies">,
  principal: Principal,
  id: string,
  priority: number,
): Promise<Job> {
  // Read once per request, before the loop: a quota changed meanwhile applies to the next one.
  const limits = principal.admin ? null : await ctx.policies.getQuota(principal.id);
  // A project job's project quota too (issue 13): read only when a non-admin raises one.
  let projectLimits: QuotaLimits | undefined;
  return withFreshRead(
    () => loadVisibleJob(ctx.repo, principal, id),
    async ({ item, result }) => {
      if (isTerminal(item.status)) {
        throw new InvalidTransitionError(
          item.status,
          item.status,
          `job ${item.id} is ${item.status}; its priority can no longer change`,
        );
      }
      if (limits) assertPriorityAllowed(limits, principal, priority, item.priority);
      if (limits && item.project && priority > item.priority) {
        projectLimits ??= await ctx.policies.getQuota(projectQuotaKey(item.project));
        assertProjectPriorityAllowed(projectLimits, item.project, priority);
      }
      if (priority === item.priority && !item.orderKey) return fromJobItem(item, result);
      const { items, next } = ctx.repo.priorityChangeItems(
        item,
        {
          priority,
          reason: `priority changed from ${item.priority} to ${priority} by ${principal.id}`,
          triggeredBy: principal.id,
        },
        ctx.clock().toISOString(),
      );
      await ctx.repo.transact(items);
      return fromJobItem(next, result);
    },
  );
}
