import { z } from "zod";

/**
 * Per-principal quotas of API.md (PUT/GET /quotas/{principal}): GPU-seconds per UTC day and per
 * week (weeks start Monday 00:00 UTC), and how many not-yet-started jobs a principal may have.
 * A limit left out (or null) is no limit.
 */

export const quotaLimitsSchema = z.strictObject({
  dailyGpuSeconds: z.number().int().min(0).nullable().default(null),
  weeklyGpuSeconds: z.number().int().min(0).nullable().default(null),
  maxQueuedJobs: z.number().int().min(0).nullable().default(null),
});
export type QuotaLimits = z.infer<typeof quotaLimitsSchema>;
export type QuotaLimitsInput = z.input<typeof quotaLimitsSchema>;

export const NO_QUOTA: QuotaLimits = { dailyGpuSeconds: null, weeklyGpuSeconds: null, maxQueuedJobs: null };

/** Usage against the limits: what GET /quotas reports and what the scheduler's gate checks. */
export interface QuotaUsage {
  readonly todayGpuSeconds: number;
  readonly weekGpuSeconds: number;
  readonly queuedJobs: number;
}
