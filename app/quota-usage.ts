import type { JobStatus } from "../core/job";
import { projectOfQuotaKey } from "../core/projects";
import { currentGpuSeconds, type QuotaUsage } from "../core/quota";
import { countOwnerStatus, runningInPoolFor } from "../store/job-indexes";
import type { AppContext } from "./runtime";

/**
 * A principal's usage against its quota (GET /quotas, the scheduler's GPU gate, the submit
 * check) without a read-the-world scan: finished attempts from the usage items their ending
 * transactions wrote (store/usage.ts), running attempts from the `active` index of the GPU
 * pools, and not-started jobs counted on the byOwnerStatus index.
 */

/** The statuses API.md counts against maxQueuedJobs: non-terminal jobs that have not started. */
export const NOT_STARTED_STATUSES: readonly JobStatus[] = [
  "scheduled",
  "blocked",
  "queued",
  "retrying",
  "paused",
];

/**
 * `principal` may be a project's quota key (`project:<name>`, core/projects.ts): its finished
 * attempts are in usage items of that key, its running ones are the GPU pools' active jobs of the
 * project. A project's not-started jobs are not counted (no index keys them by project and status:
 * docs/scheduling.md#projects), so its queuedJobs reads 0.
 */
export async function principalUsage(
  ctx: Pick<AppContext, "repo" | "usage" | "pools" | "clock">,
  principal: string,
): Promise<QuotaUsage> {
  const now = ctx.clock();
  const project = projectOfQuotaKey(principal);
  const [finished, running, queuedJobs] = await Promise.all([
    ctx.usage.readGpuUsage([principal], now),
    runningGpuSeconds(ctx, project === null ? { owner: principal } : { project }, now),
    project === null ? countNotStarted(ctx, principal) : Promise.resolve(0),
  ]);
  const done = finished.get(principal) ?? { todayGpuSeconds: 0, weekGpuSeconds: 0 };
  return {
    todayGpuSeconds: done.todayGpuSeconds + running.today,
    weekGpuSeconds: done.weekGpuSeconds + running.week,
    queuedJobs,
  };
}

/**
 * The GPU-seconds a principal's running attempts have used so far in today's and this week's
 * windows: one query per GPU pool's `active` partition (what holds capacity there now, never
 * more than the pool's nodes can run), filtered to the principal. A dispatched job has not
 * started its attempt: it uses nothing yet.
 */
async function runningGpuSeconds(
  ctx: Pick<AppContext, "repo" | "pools">,
  whose: { readonly owner: string } | { readonly project: string },
  now: Date,
): Promise<{ today: number; week: number }> {
  const gpuPools = ctx.pools.filter((pool) => pool.node.gpu > 0);
  const perPool = await Promise.all(
    gpuPools.map(async (pool) => {
      const total = { today: 0, week: 0 };
      let startKey: Record<string, unknown> | undefined;
      do {
        const page = await runningInPoolFor(ctx.repo, pool.name, whose, { startKey });
        for (const item of page.items) {
          const gpu = Number((item.reservation as { gpu?: unknown } | undefined)?.gpu ?? 0);
          const startedAt = typeof item.attemptStartedAt === "string" ? item.attemptStartedAt : null;
          if (!(gpu > 0) || startedAt === null || Number.isNaN(Date.parse(startedAt))) continue;
          const used = currentGpuSeconds(gpu, new Date(startedAt), now);
          total.today += used.todayGpuSeconds;
          total.week += used.weekGpuSeconds;
        }
        startKey = page.lastKey;
      } while (startKey);
      return total;
    }),
  );
  return perPool.reduce((sum, p) => ({ today: sum.today + p.today, week: sum.week + p.week }), {
    today: 0,
    week: 0,
  });
}

/**
 * How many of a principal's jobs have not started (API.md's maxQueuedJobs: scheduled, blocked,
 * queued, retrying, paused): COUNT queries on the byOwnerStatus index, one per status, in
 * parallel. With a `cap` the count stops once it reaches it (the submit check passes
 * maxQueuedJobs + 1), so its cost is bounded by the limit, not by the backlog: exact below the
 * cap, `cap` at or above it.
 */
export async function countNotStarted(
  ctx: Pick<AppContext, "repo">,
  principal: string,
  cap?: number,
): Promise<number> {
  let total = 0;
  const reached = () => cap !== undefined && total >= cap;
  await Promise.all(
    NOT_STARTED_STATUSES.map(async (status) => {
      let startKey: Record<string, unknown> | undefined;
      do {
        if (reached()) return;
        const page = await countOwnerStatus(ctx.repo, principal, status, {
          startKey,
          // Each page evaluates no more than the cap: what one status can add before we stop.
          limit: cap !== undefined ? Math.max(1, cap - total) : undefined,
        });
        total += page.count;
        startKey = page.lastKey;
      } while (startKey);
    }),
  );
  return cap !== undefined ? Math.min(total, cap) : total;
}
