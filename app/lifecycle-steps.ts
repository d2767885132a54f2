import { applicableStatus } from "../core/dependencies";
import { ConcurrentUpdateError } from "../core/errors";
import type { JobItem } from "../store/job-items";
import type { TransactItem } from "../store/job-repository";
import { gpuUsageItems } from "../store/usage";
import type { LifecycleContext, NotAdmittedOutput } from "./lifecycle";
/** Helpers the lifecycle steps share: retries on lost races, reads, usage items. */

export const MAX_ROUNDS = 8;
/** Dependents handled at once: enough to hide latency, few enough not to throttle a partition. */
export const DEPENDENT_CONCURRENCY = 8;

/** Runs `work` again on a lost race (it re-reads first); the last loss is rethrown. */
export async function retryOnRace<T>(work: () => Promise<T>): Promise<T> {
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
export async function pause(round: number): Promise<void> {
  const ms = Math.random() * Math.min(200, 10 * 2 ** round);
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** The job item, strongly consistent; staged jobs only when asked (dependents may be staged). */
export async function readJob(
  ctx: Pick<LifecycleContext, "repo">,
  id: string,
  includeStaged = false,
): Promise<JobItem | undefined> {
  const item = (await ctx.repo.getJobItems([id])).get(id);
  return item && (includeStaged || !item.staged) ? item : undefined;
}

/**
 * The GPU-seconds a running attempt used, added to its owner's usage in the transaction that
 * ends it (exactly once: that transaction is conditional on the job's version).
 */
export function attemptUsageItems(
  ctx: Pick<LifecycleContext, "usage">,
  item: JobItem,
  finishedAt: string,
): TransactItem[] {
  const gpu = item.reservation?.gpu ?? item.resources.gpu;
  return gpuUsageItems(ctx.usage.tableName, item.owner, gpu, item.attemptStartedAt, finishedAt, item.project);
}

export function durationSince(startedAt: string | undefined | null, now: string): number | null {
  const start = startedAt ? Date.parse(startedAt) : Number.NaN;
  return Number.isNaN(start) ? null : Math.max(0, Date.parse(now) - start);
}

/**
 * A token parked on the job by another execution (one that took over after this one was
 * presumed dead) waits for an admission that will never come once the job ended: end it.
 */
export async function releaseStrayAdmission(
  ctx: LifecycleContext,
  item: JobItem,
  reason: string,
): Promise<void> {
  if (!item.admissionToken) return;
  const output: NotAdmittedOutput = { admitted: false, reason };
  await ctx.tokens.succeed(item.admissionToken, output);
}

export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * The status core's dependency rule gives a waiting job now (scheduled, blocked or queued), from
 * its own runAt and unmet count: for a blocked job whose count moved, a retrying job whose backoff
 * ended, a scheduled job whose time came.
 */
export function applicableNow(item: JobItem, now: Date): ReturnType<typeof applicableStatus> {
  return applicableStatus({
    now,
    runAt: item.runAt,
    unmet: Math.max(0, item.unmet),
    total: Math.max(item.unmet, item.dependsOn.length),
    doomedBy: null,
  });
}

/**
 * Why a step called by `executionArn` must leave the job alone, or null when it may act: the job
 * names another execution (a newer admission's; or none, after a retry, resume, preemption or an
 * undone admission), so whatever this execution ran is over and another one, or none, drives the
 * job now. A caller that names no execution (an earlier definition's, the reconciler) may act.
 */
export function supersededBy(
  item: Pick<JobItem, "id" | "executionArn">,
  executionArn: string | undefined,
): string | null {
  if (executionArn === undefined || item.executionArn === executionArn) return null;
  return item.executionArn
    ? `job ${item.id} is driven by execution ${item.executionArn}, not ${executionArn}`
    : `job ${item.id} names no execution any more, not ${executionArn}`;
}
