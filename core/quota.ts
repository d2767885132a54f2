import { z } from "zod";
import { ForbiddenError } from "./errors";
import { prioritySchema } from "./job";
import type { Principal } from "./principal";
import type { Reason } from "./reasons";

/**
 * Per-principal quotas of API.md (PUT/GET /quotas/{principal}): GPU-seconds per UTC day and per
 * week (weeks start Monday 00:00 UTC), and how many not-yet-started jobs a principal may have.
 * A limit left out (or null) is no limit.
 */

export const quotaLimitsSchema = z.strictObject({
  dailyGpuSeconds: z.number().int().min(0).nullable().default(null),
  weeklyGpuSeconds: z.number().int().min(0).nullable().default(null),
  maxQueuedJobs: z.number().int().min(0).nullable().default(null),
  /**
   * The highest priority the principal may give its jobs (submit, schedule fires, PATCH): a
   * name or an integer, stored as the integer. Admins are not held to it.
   */
  maxPriority: prioritySchema.nullable().default(null),
});
export type QuotaLimits = z.infer<typeof quotaLimitsSchema>;
export type QuotaLimitsInput = z.input<typeof quotaLimitsSchema>;

export const NO_QUOTA: QuotaLimits = {
  dailyGpuSeconds: null,
  weeklyGpuSeconds: null,
  maxQueuedJobs: null,
  maxPriority: null,
};

/** Usage against the limits: what GET /quotas reports and what the scheduler's gate checks. */
export interface QuotaUsage {
  readonly todayGpuSeconds: number;
  readonly weekGpuSeconds: number;
  readonly queuedJobs: number;
}

const DAY_MS = 86_400_000;

/** The usage windows an instant falls in: its UTC day and the Monday its week starts on (yyyy-mm-dd). */
export function usageWindows(now: Date): { readonly day: string; readonly week: string } {
  const day = dayStart(now.getTime());
  return { day: isoDay(day), week: isoDay(weekStart(day)) };
}

/** An attempt's GPU-seconds within one UTC day, and the week that day belongs to. */
export interface GpuSpan {
  readonly day: string;
  readonly week: string;
  readonly gpuSeconds: number;
}

/**
 * An attempt's GPU-seconds (GPUs × duration) split at UTC midnights, one span per day it touched,
 * so an attempt that runs across midnight (or across Monday 00:00) counts in both windows.
 */
export function gpuSecondsByWindow(gpu: number, startedAt: Date, finishedAt: Date): GpuSpan[] {
  const from = startedAt.getTime();
  const to = finishedAt.getTime();
  if (!(gpu > 0) || !(to > from)) return [];
  const spans: GpuSpan[] = [];
  for (let day = dayStart(from); day < to; day += DAY_MS) {
    const ms = Math.min(to, day + DAY_MS) - Math.max(from, day);
    spans.push({ day: isoDay(day), week: isoDay(weekStart(day)), gpuSeconds: (gpu * ms) / 1000 });
  }
  return spans;
}

/** The GPU-seconds a still-running attempt has used so far in the current day and week. */
export function currentGpuSeconds(
  gpu: number,
  startedAt: Date,
  now: Date,
): { readonly todayGpuSeconds: number; readonly weekGpuSeconds: number } {
  const from = startedAt.getTime();
  const to = now.getTime();
  const today = dayStart(to);
  const within = (windowStart: number) =>
    gpu > 0 ? (gpu * Math.max(0, to - Math.max(from, windowStart))) / 1000 : 0;
  return { todayGpuSeconds: within(today), weekGpuSeconds: within(weekStart(today)) };
}

/** GET /quotas/{principal}: limits, usage, what is left, and whether any limit is 80 % used. */
export interface QuotaView {
  readonly principal: string;
  readonly limits: QuotaLimits;
  readonly used: QuotaUsage;
  readonly remaining: {
    readonly todayGpuSeconds: number | null;
    readonly weekGpuSeconds: number | null;
    readonly queuedJobs: number | null;
  };
  readonly warning: boolean;
  /** The cost of the principal's jobs that ended today and this week (docs/cost.md). */
  readonly cost?: { readonly today: CostTotals; readonly week: CostTotals };
}

/** Ended jobs' cost over a period. */
export interface CostTotals {
  readonly jobs: number;
  readonly totalUsd: number;
  readonly requestsUsd: number;
  readonly computeUsd: number;
}

/** At this share of a limit used, GET /quotas warns (API.md: true at ≥ 80 %). */
const WARNING_NUMERATOR = 4;
const WARNING_DENOMINATOR = 5;

export function quotaView(principal: string, limits: QuotaLimits, used: QuotaUsage): QuotaView {
  // Whole seconds: the view shows what a person reads; remaining + used add up to the limit.
  const shown: QuotaUsage = {
    todayGpuSeconds: Math.floor(used.todayGpuSeconds),
    weekGpuSeconds: Math.floor(used.weekGpuSeconds),
    queuedJobs: used.queuedJobs,
  };
  const left = (limit: number | null, amount: number) =>
    limit === null ? null : Math.max(0, limit - amount);
  // Compared in integers (used × 5 ≥ limit × 4) so 80 % of a limit is not lost to float rounding.
  const near = (limit: number | null, amount: number) =>
    limit !== null && amount * WARNING_DENOMINATOR >= limit * WARNING_NUMERATOR;
  return {
    principal,
    limits,
    used: shown,
    remaining: {
      todayGpuSeconds: left(limits.dailyGpuSeconds, shown.todayGpuSeconds),
      weekGpuSeconds: left(limits.weeklyGpuSeconds, shown.weekGpuSeconds),
      queuedJobs: left(limits.maxQueuedJobs, shown.queuedJobs),
    },
    warning:
      near(limits.dailyGpuSeconds, shown.todayGpuSeconds) ||
      near(limits.weeklyGpuSeconds, shown.weekGpuSeconds) ||
      near(limits.maxQueuedJobs, shown.queuedJobs),
  };
}

/**
 * Why the principal's GPU jobs must wait, or null: a limit is over once used reaches it. The
 * daily limit is named first, as it is the one that resets sooner.
 */
export function gpuQuotaRefusal(
  limits: QuotaLimits,
  used: { readonly todayGpuSeconds: number; readonly weekGpuSeconds: number },
): Reason | null {
  const over = (limit: number | null, amount: number, window: string): Reason | null =>
    limit !== null && amount >= limit
      ? {
          code: "quota",
          message: `quota exceeded: ${Math.floor(amount)} of ${limit} GPU-seconds used ${window}`,
        }
      : null;
  return (
    over(limits.dailyGpuSeconds, used.todayGpuSeconds, "today") ??
    over(limits.weeklyGpuSeconds, used.weekGpuSeconds, "this week")
  );
}

/**
 * Why a submission of `adding` jobs is refused (429), or null: maxQueuedJobs bounds the
 * principal's jobs not yet started (scheduled, blocked, queued, retrying, paused).
 */
export function queuedJobsRefusal(
  limits: QuotaLimits,
  queuedJobs: number,
  adding: number,
  principal = "this principal",
): string | null {
  const max = limits.maxQueuedJobs;
  if (max === null || queuedJobs + adding <= max) return null;
  const jobs = queuedJobs === 1 ? "job" : "jobs";
  return `maxQueuedJobs is ${max} and ${principal} has ${queuedJobs} ${jobs} not yet started; ${adding} more would exceed it`;
}

/**
 * Refuses (403 `forbidden`) a non-admin giving a job a priority above its quota's maxPriority:
 * at submit (every job of the submission), on a schedule's fire, and when raising a job's
 * priority. `from` is the job's priority before a change: lowering a job that is above the limit
 * (set before the limit was) stays allowed.
 */
export function assertPriorityAllowed(
  limits: Pick<QuotaLimits, "maxPriority">,
  principal: Principal,
  priority: number,
  from: number | null = null,
): void {
  const max = limits.maxPriority;
  if (principal.admin || max === null || priority <= max) return;
  if (from !== null && priority <= from) return;
  throw new ForbiddenError(
    `priority ${priority} is above the maxPriority quota of ${principal.id} (${max}); an admin may set it`,
  );
}

function dayStart(ms: number): number {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

/** The Monday 00:00 UTC on or before a UTC midnight. */
function weekStart(day: number): number {
  const sinceMonday = (new Date(day).getUTCDay() + 6) % 7;
  return day - sinceMonday * DAY_MS;
}

function isoDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
