import { ForbiddenError, ProjectForbiddenError } from "./errors";
import type { Principal } from "./principal";
import type { QuotaLimits } from "./quota";
import type { Reason } from "./reasons";

/**
 * Projects (issue 13): an optional label on a job that its project's quota counts against. A
 * token may be bound to one project; its jobs get it and may not name another. An unbound
 * principal may tag any project, so a project quota binds for certain only the callers whose
 * tokens are bound to it (docs/scheduling.md#projects).
 */

/** Quotas are keyed by principal and by project: `project:<name>` (a principal has no ":"). */
export const PROJECT_QUOTA_PREFIX = "project:";

/** The quota key of a project: where its limits and GPU usage are stored. */
export function projectQuotaKey(project: string): string {
  return `${PROJECT_QUOTA_PREFIX}${project}`;
}

/** The project a quota key names, or null for a principal's key. */
export function projectOfQuotaKey(key: string): string | null {
  return key.startsWith(PROJECT_QUOTA_PREFIX) ? key.slice(PROJECT_QUOTA_PREFIX.length) : null;
}

/**
 * The project a job submitted by `principal` gets: the token's binding, whether or not the job
 * names it; what the job names when the token is unbound; else none. A bound token naming another
 * project is refused (403): it would spend a quota that is not its own.
 */
export function jobProject(principal: Principal, requested: string | undefined): string | null {
  const bound = principal.project;
  if (bound === undefined) return requested ?? null;
  if (requested !== undefined && requested !== bound) throw new ProjectForbiddenError(requested, bound);
  return bound;
}

/**
 * Whether the caller may read a project's quota (GET /quotas/project:<name>): admins, and tokens
 * bound to that project. An unbound user may tag a project but not read its usage: the project's
 * other members' use is not theirs to see.
 */
export function mayReadProjectQuota(principal: Principal, project: string): boolean {
  return principal.admin || principal.project === project;
}

/**
 * Refuses (403 `forbidden`) a job above its project quota's maxPriority. The caller skips admins,
 * as a principal's maxPriority does (core/quota.ts#assertPriorityAllowed).
 */
export function assertProjectPriorityAllowed(
  limits: Pick<QuotaLimits, "maxPriority">,
  project: string,
  priority: number,
): void {
  const max = limits.maxPriority;
  if (max === null || priority <= max) return;
  throw new ForbiddenError(
    `priority ${priority} is above the maxPriority quota of project ${project} (${max}); an admin may set it`,
  );
}

/**
 * Why a project's GPU jobs must wait, or null: as a principal's (core/quota.ts#gpuQuotaRefusal,
 * daily first), in words that name the project, so a member sees whose quota holds the job.
 */
export function projectGpuQuotaRefusal(
  project: string,
  limits: QuotaLimits,
  used: { readonly todayGpuSeconds: number; readonly weekGpuSeconds: number },
): Reason | null {
  const over = (limit: number | null, amount: number, which: string, window: string): Reason | null =>
    limit !== null && amount >= limit
      ? {
          code: "quota",
          message: `project ${project} is over its ${which} GPU quota: ${Math.floor(amount)} of ${limit} GPU-seconds used ${window}`,
        }
      : null;
  return (
    over(limits.dailyGpuSeconds, used.todayGpuSeconds, "daily", "today") ??
    over(limits.weeklyGpuSeconds, used.weekGpuSeconds, "weekly", "this week")
  );
}
