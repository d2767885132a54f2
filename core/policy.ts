import { z } from "zod";
import { escalationSchema, jobTypeSchema, MAX_TIMEOUT_SECONDS, retrySchema } from "./job";

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

/**
 * A circuit breaker per task type (issue 13): after `failures` attempts of a type end failed or
 * timed out within `windowSeconds`, no job of the type is admitted for `openSeconds`; then one
 * probe is. `type+owner` keeps one tenant's bad payloads from blocking everyone else's jobs.
 */
export const circuitBreakerSchema = z.strictObject({
  failures: z.number().int().min(1).max(10_000),
  windowSeconds: z.number().int().min(1).max(604_800),
  openSeconds: z.number().int().min(1).max(604_800),
  scope: z.enum(["type", "type+owner"]).default("type"),
});
export type CircuitBreakerPolicy = z.infer<typeof circuitBreakerSchema>;

/** At most `starts` jobs of a type start per `perSeconds` (BullMQ's limiter). */
export const rateLimitSchema = z.strictObject({
  starts: z.number().int().min(1).max(1_000_000),
  perSeconds: z.number().int().min(1).max(86_400),
});
export type RateLimit = z.infer<typeof rateLimitSchema>;

/**
 * Rules for the jobs of one type. retry/timeoutSeconds/onFailure/onTimeout are defaults applied
 * at submit to the fields the caller left out (a job's settings never change under it);
 * maxRunning, rateLimit and circuitBreaker are read by every scheduling pass.
 */
export const typeRulesSchema = z.strictObject({
  retry: retrySchema.optional(),
  timeoutSeconds: z.number().int().min(1).max(MAX_TIMEOUT_SECONDS).optional(),
  onFailure: escalationSchema.optional(),
  onTimeout: escalationSchema.optional(),
  /** The same limit as typeConcurrency[type]; the smaller of the two wins. */
  maxRunning: z.number().int().min(0).max(1_000_000).optional(),
  rateLimit: rateLimitSchema.optional(),
  circuitBreaker: circuitBreakerSchema.optional(),
});
export type TypeRules = z.infer<typeof typeRulesSchema>;

const runningCount = z.number().int().min(0).max(1_000_000);

/** Dispatched plus running jobs allowed at once: the whole system, or per pool. */
export const maxRunningSchema = z.union([
  runningCount,
  z.strictObject({
    total: runningCount.optional(),
    pools: z.record(z.string().min(1).max(64), runningCount).default({}),
  }),
]);
export type MaxRunning = z.infer<typeof maxRunningSchema>;

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
  /** Per-type defaults and limits; see typeRulesSchema. */
  types: z.record(jobTypeSchema, typeRulesSchema).default({}),
  /** Running caps (reason running_cap); absent: no cap beyond capacity. */
  maxRunning: maxRunningSchema.optional(),
  /** The breaker every type gets unless its `types` entry sets its own; absent: off. */
  circuitBreaker: circuitBreakerSchema.optional(),
});
export type Policy = z.infer<typeof policySchema>;
export type PolicyInput = z.input<typeof policySchema>;

export const DEFAULT_POLICY: Policy = policySchema.parse({});
