import { z } from "zod";
import { jobTypeSchema } from "./job";

/**
 * The scheduling policy of API.md (GET/PUT /admin/policy): which algorithm orders the queue,
 * the off-peak window, preemption, per-type concurrency limits and aging. Stored in DynamoDB and
 * read by every scheduling pass, so a PUT takes effect at the next pass without a deploy.
 * A PUT replaces the whole policy; fields it leaves out take the defaults below.
 */

export const ALGORITHMS = ["priority", "fair-share", "round-robin"] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

const clockTime = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, "must be HH:MM, 24-hour (00:00..23:59)");

/** An IANA time zone the runtime knows (Intl), e.g. "UTC", "Europe/Berlin". */
export const timeZoneSchema = z
  .string()
  .min(1)
  .max(64)
  .refine((zone) => {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: zone });
      return true;
    } catch {
      return false;
    }
  }, "is not a known IANA time zone");

export const offPeakSchema = z
  .strictObject({
    /** Local time the window opens; a window whose end is before its start spans midnight. */
    start: clockTime,
    end: clockTime,
    timezone: timeZoneSchema.default("UTC"),
  })
  .refine((w) => w.start !== w.end, { message: "start and end must differ", path: ["end"] });
export type OffPeakWindow = z.infer<typeof offPeakSchema>;

export const preemptionSchema = z.strictObject({
  enabled: z.boolean().default(false),
  /** A job preempted this recently is not preempted again: no ping-pong. */
  cooldownSeconds: z.number().int().min(0).max(86_400).default(300),
});

export const policySchema = z.strictObject({
  algorithm: z.enum(ALGORITHMS).default("priority"),
  offPeak: offPeakSchema.default({ start: "22:00", end: "08:00", timezone: "UTC" }),
  preemption: preemptionSchema.default({ enabled: false, cooldownSeconds: 300 }),
  /** At most this many jobs of a type dispatched or running at once, across all pools. */
  typeConcurrency: z.record(jobTypeSchema, z.number().int().min(0).max(1_000_000)).default({}),
  /** A waiting job gains one priority step per this many seconds; 0 turns aging off. */
  agingSecondsPerStep: z.number().int().min(0).max(31_536_000).default(300),
  /** fair-share: an owner's dominant share is divided by its weight (default 1). */
  weights: z.record(z.string().min(1).max(128), z.number().positive().max(1000)).default({}),
});
export type Policy = z.infer<typeof policySchema>;
export type PolicyInput = z.input<typeof policySchema>;

export const DEFAULT_POLICY: Policy = policySchema.parse({});
