import { z } from "zod";
import { type ArraySummary, arraySchema } from "./arrays";
import { JOB_STATUSES, type JobStatus } from "./job-statuses";
import type { ReasonCode } from "./reasons";

/**
 * The job model of API.md: statuses, priorities, the submit schemas with their defaults and
 * limits, and the stored job shape. Pure: no AWS, no I/O.
 */

// The status list lives in a zod-free module so the dashboard can bundle it; re-exported here.
export { isTerminal, JOB_STATUSES, type JobStatus, TERMINAL_STATUSES } from "./job-statuses";

export const PRIORITY_NAMES = { critical: 10, high: 5, normal: 0, low: -5, background: -10 } as const;
export type PriorityName = keyof typeof PRIORITY_NAMES;
export const MIN_PRIORITY = -10;
export const MAX_PRIORITY = 10;

/** The tier a priority belongs to: one SQS queue per pool and tier. */
export function priorityTier(priority: number): PriorityName {
  if (priority >= 10) return "critical";
  if (priority >= 5) return "high";
  if (priority > -5) return "normal";
  if (priority > -10) return "low";
  return "background";
}

export const MAX_PAYLOAD_BYTES = 256 * 1024;
export const MAX_DEPENDENCIES = 1000;
export const MAX_BATCH_JOBS = 500;
export const MAX_TIMEOUT_SECONDS = 604_800;

export const jobTypeSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "must match ^[a-z0-9][a-z0-9._-]{0,63}$");

/**
 * A project's name (issue 13): a lowercase slug of at most 64 characters. Like a type name, but
 * without dots: the local token spelling `token=principal@project` must not read the domain of an
 * e-mail-like principal (`alice@example.com`) as a project, and quota keys `project:<name>`
 * never collide with a principal, which cannot contain ":".
 */
export const projectNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "must match ^[a-z0-9][a-z0-9_-]{0,63}$");

export const prioritySchema = z
  .union([
    z.enum(Object.keys(PRIORITY_NAMES) as [PriorityName, ...PriorityName[]]),
    z.number().int().min(MIN_PRIORITY).max(MAX_PRIORITY),
  ])
  .transform((p) => (typeof p === "number" ? p : PRIORITY_NAMES[p]));

/**
 * A string → string map (tags, constraints). Built with Object.fromEntries so that any key,
 * "__proto__" included, stays an ordinary own property and is kept as the user gave it.
 */
const labelMap = z
  .custom<Record<string, unknown>>(
    (v) => v !== null && typeof v === "object" && !Array.isArray(v),
    "must be an object",
  )
  .superRefine((map, ctx) => {
    const entries = Object.entries(map);
    if (entries.length > MAX_LABELS)
      ctx.addIssue({ code: "custom", message: `at most ${MAX_LABELS} entries` });
    for (const [key, value] of entries) {
      if (key.length < 1 || key.length > 128) {
        ctx.addIssue({ code: "custom", path: [key], message: "keys must be 1..128 characters" });
      }
      if (typeof value !== "string" || value.length > 256) {
        ctx.addIssue({ code: "custom", path: [key], message: "must be a string of at most 256 characters" });
      }
    }
  })
  .transform((map) => Object.fromEntries(Object.entries(map)) as Record<string, string>);
const MAX_LABELS = 64;
// What JSON Schema cannot say about z.custom, for the OpenAPI document (functions/openapi.ts).
labelMap.in.register(z.globalRegistry, {
  type: "object",
  maxProperties: MAX_LABELS,
  propertyNames: { minLength: 1, maxLength: 128 },
  additionalProperties: { type: "string", maxLength: 256 },
});

/** An ISO-8601 timestamp that names a real instant (the format alone allows "2026-02-31"). */
const isoTimestamp = z.iso
  .datetime({ offset: true })
  .pipe(z.string().refine((s) => Number.isFinite(Date.parse(s)), "is not a real date and time"))
  .transform((s) => new Date(s).toISOString());

/**
 * Fractions are kept to a thousandth: a millisecond of delay, a thousandth of a vCPU. Finer
 * values mean nothing to a scheduler, and DynamoDB cannot store numbers like 5e-324.
 */
const thousandths = (n: number): number => Math.round(n * 1000) / 1000;

export const resourcesSchema = z.strictObject({
  cpu: z.number().min(0.001).max(1024).transform(thousandths).default(1),
  memoryMb: z.number().int().positive().max(4_194_304).default(512),
  gpu: z.number().int().min(0).max(64).default(0),
});
export type Resources = z.infer<typeof resourcesSchema>;

export const BACKOFF_STRATEGIES = ["exponential", "linear", "fibonacci", "immediate"] as const;
export type BackoffStrategy = (typeof BACKOFF_STRATEGIES)[number];

export const retrySchema = z.strictObject({
  maxAttempts: z.number().int().min(1).max(100).default(3),
  strategy: z.enum(BACKOFF_STRATEGIES).default("exponential"),
  initialDelaySeconds: z.number().min(0).max(MAX_TIMEOUT_SECONDS).transform(thousandths).default(1),
  backoffMultiplier: z.number().min(1).max(100).transform(thousandths).default(2),
  maxDelaySeconds: z.number().min(0).max(MAX_TIMEOUT_SECONDS).transform(thousandths).default(3600),
});
export type RetryPolicy = z.infer<typeof retrySchema>;

/** The retry a job gets when neither it nor its type's rules (policy.types) name one. */
export const BUILT_IN_RETRY: RetryPolicy = {
  maxAttempts: 3,
  strategy: "exponential",
  initialDelaySeconds: 1,
  backoffMultiplier: 2,
  maxDelaySeconds: 3600,
};
/** The timeoutSeconds a job gets when neither it nor its type's rules name one. */
export const BUILT_IN_TIMEOUT_SECONDS = 3600;

/** Where a job that ends failed (or timed out) goes next: a new job of this type (API.md onFailure). */
export const escalationSchema = z.strictObject({
  escalateTo: z.strictObject({ type: jobTypeSchema, priority: prioritySchema.optional() }),
});
export type Escalation = z.infer<typeof escalationSchema>;

/** JSON value check and size limit; the size is of the serialized payload, as API.md says. */
const payloadSchema = z.unknown().superRefine((value, ctx) => {
  if (value === undefined) return;
  const bytes = Buffer.byteLength(JSON.stringify(value) ?? "", "utf8");
  if (bytes > MAX_PAYLOAD_BYTES) {
    ctx.addIssue({
      code: "custom",
      message: `payload is ${bytes} bytes serialized; the limit is ${MAX_PAYLOAD_BYTES}`,
    });
  }
});

const jobFields = {
  type: jobTypeSchema,
  name: z.string().min(1).max(256).optional(),
  // .optional() outside the refinement: zod 4 treats a refined unknown as required.
  payload: payloadSchema.optional(),
  priority: prioritySchema.default(0),
  resources: resourcesSchema.default({ cpu: 1, memoryMb: 512, gpu: 0 }),
  pool: z.string().min(1).max(64).optional(),
  constraints: labelMap.optional(),
  dependsOn: z.array(z.string().min(1).max(128)).max(MAX_DEPENDENCIES).default([]),
  // retry, timeoutSeconds, onFailure and onTimeout have no default here: one left out takes its
  // type's default from the policy (policy.types) at submit, then the built-in one
  // (core/type-rules.ts#resolveJobSettings), so the submit path must know what the caller gave.
  retry: retrySchema
    .optional()
    .describe(`default: the type's (policy.types), else ${JSON.stringify(BUILT_IN_RETRY)}`),
  timeoutSeconds: z
    .number()
    .int()
    .min(1)
    .max(MAX_TIMEOUT_SECONDS)
    .optional()
    .describe(`default: the type's (policy.types), else ${BUILT_IN_TIMEOUT_SECONDS}`),
  runAt: isoTimestamp.optional(),
  deadline: isoTimestamp.optional(),
  offPeakOnly: z.boolean().default(false),
  onFailure: escalationSchema.optional(),
  tags: labelMap.optional(),
  /** Where a job whose last attempt timed out goes; absent: onFailure (issue 13). */
  onTimeout: escalationSchema.optional(),
  /** The project the job counts against (its quota); a project-bound token sets it itself. */
  project: projectNameSchema.optional(),
};

export const submitJobSchema = z.strictObject({
  ...jobFields,
  /** An array job (core/arrays.ts): a parent and `size` children sharing this definition. */
  array: arraySchema.optional(),
});
export type SubmitJobRequest = z.infer<typeof submitJobSchema>;

export const batchJobSchema = z.strictObject({
  ...jobFields,
  /** A name other jobs of the same batch use in dependsOn. */
  ref: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, "must be 1..64 letters, digits, . _ : -")
    .optional(),
});
export type BatchJobRequest = z.infer<typeof batchJobSchema>;

/**
 * A job request with its settings resolved (core/type-rules.ts): what the submit path stores.
 * Escalations and schedules build these, or leave fields out for the type's rules to fill.
 */
export type ResolvedJobRequest = BatchJobRequest & {
  readonly retry: RetryPolicy;
  readonly timeoutSeconds: number;
};

export const submitBatchSchema = z.strictObject({
  jobs: z.array(batchJobSchema).min(1).max(MAX_BATCH_JOBS),
});
export type SubmitBatchRequest = z.infer<typeof submitBatchSchema>;

/**
 * PATCH /jobs/{id}: a new priority, or (admins) `before`: move a queued job just ahead of another
 * queued job of the same queue. One of the two, never both.
 */
export const updateJobSchema = z
  .strictObject({ priority: prioritySchema.optional(), before: z.string().min(1).max(128).optional() })
  .superRefine((body, ctx) => {
    if (body.priority !== undefined && body.before !== undefined) {
      ctx.addIssue({ code: "custom", path: ["before"], message: "give either priority or before, not both" });
    }
    if (body.priority === undefined && body.before === undefined) {
      ctx.addIssue({ code: "custom", path: ["priority"], message: "give priority or before" });
    }
  });
export type UpdateJobRequest = z.infer<typeof updateJobSchema>;

const csvStatuses = z
  .string()
  .transform((s) =>
    s
      .split(",")
      .map((part) => part.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.enum(JOB_STATUSES)).min(1));

export const listLimitSchema = z.coerce.number().int().min(1).max(200).default(50);

export const listJobsQuerySchema = z.strictObject({
  limit: listLimitSchema,
  cursor: z.string().min(1).max(2048).optional(),
  status: csvStatuses.optional(),
  type: jobTypeSchema.optional(),
  owner: z.string().min(1).max(128).optional(),
  priority: z
    .string()
    .transform((p, ctx) => {
      // hasOwn, not `in`: `in` also matches inherited names like "constructor".
      if (Object.hasOwn(PRIORITY_NAMES, p)) return PRIORITY_NAMES[p as PriorityName];
      // Number() alone would read "", " 5 " and "0x5" as priorities.
      const n = /^-?\d{1,2}$/.test(p) ? Number(p) : Number.NaN;
      if (!Number.isInteger(n) || n < MIN_PRIORITY || n > MAX_PRIORITY) {
        ctx.addIssue({ code: "custom", message: "must be a priority name or an integer -10..10" });
        return z.NEVER;
      }
      return n;
    })
    .optional(),
  tag: z
    .string()
    .regex(/^[^:]+:.*$/, "must be key:value")
    .transform((t) => {
      const i = t.indexOf(":");
      return { key: t.slice(0, i), value: t.slice(i + 1) };
    })
    .optional(),
  createdAfter: isoTimestamp.optional(),
  createdBefore: isoTimestamp.optional(),
  /** Jobs a recurring schedule fired (core/schedule.ts's `sch_` + ULID ids). */
  scheduleId: z
    .string()
    .regex(/^sch_[0-9A-HJKMNP-TV-Z]{26}$/, "is not a schedule id (sch_ followed by 26 characters)")
    .optional(),
  /** Jobs changed after this time, oldest change first (a stream client's resync). */
  updatedSince: isoTimestamp.optional(),
  /** A project's jobs (issue 13), from the sparse byProject index. */
  project: projectNameSchema.optional(),
});
export type ListJobsQuery = z.infer<typeof listJobsQuerySchema>;

/** POST /jobs/{id}/retry: a new attempt budget, optionally a new deadline and the dependents too. */
export const retryJobSchema = z.strictObject({
  /** Attempts the retry may use (attempt numbers continue); default the job's retry.maxAttempts. */
  maxAttempts: z.number().int().min(1).max(100).optional(),
  /** Also revive the dependents this job's cascade cancelled, transitively. */
  dependents: z.boolean().default(false),
  /** Replaces a deadline that has passed (a passed one refuses the retry). */
  deadline: isoTimestamp.optional(),
});
export type RetryJobRequest = z.infer<typeof retryJobSchema>;

/**
 * The filter of a bulk action: GET /jobs's filters, in the same string forms as its query
 * string, reused by reference so a filter added to the list is a bulk filter too.
 */
const bulkFilterSchema = listJobsQuerySchema.omit({ limit: true, cursor: true });

/** POST /jobs/cancel: the caller's jobs matching `filter` (admins: anyone's), a page at a time. */
export const bulkCancelSchema = z.strictObject({
  filter: bulkFilterSchema.default({}),
  limit: z.number().int().min(1).max(200).default(50),
  cursor: z.string().min(1).max(2048).optional(),
});
export type BulkCancelRequest = z.infer<typeof bulkCancelSchema>;

/** POST /jobs/retry: as POST /jobs/cancel, with the single retry's options applied to each job. */
export const bulkRetrySchema = bulkCancelSchema.extend({
  maxAttempts: retryJobSchema.shape.maxAttempts,
  dependents: retryJobSchema.shape.dependents,
});
export type BulkRetryRequest = z.infer<typeof bulkRetrySchema>;

/** A bulk action's answer: the ids acted on, those skipped and why, and where to continue. */
export interface BulkResult {
  readonly acted: string[];
  readonly skipped: { readonly id: string; readonly reason: string }[];
  readonly nextCursor: string | null;
}

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const listLogsQuerySchema = z.strictObject({
  limit: listLimitSchema,
  cursor: z.string().min(1).max(2048).optional(),
  attempt: z.coerce.number().int().min(1).optional(),
  level: z.enum(LOG_LEVELS).optional(),
});

export const pageQuerySchema = z.strictObject({
  limit: listLimitSchema,
  cursor: z.string().min(1).max(2048).optional(),
});

export const ATTEMPT_STATUSES = [
  "running",
  "succeeded",
  "failed",
  "timed_out",
  "lost",
  "cancelled",
  "preempted",
] as const;
export type AttemptStatus = (typeof ATTEMPT_STATUSES)[number];

export interface JobError {
  readonly type: string;
  readonly message: string;
}

/** The job as API.md shows it. Nullable fields are null, never absent, in responses. */
export interface Job {
  readonly id: string;
  readonly name: string | null;
  readonly type: string;
  readonly status: JobStatus;
  readonly statusReason: string;
  /** The reason's stable code (core/reasons.ts), like Slurm's job reason codes; an extension. */
  readonly reasonCode: ReasonCode | null;
  readonly priority: number;
  readonly owner: string;
  readonly payload: unknown;
  readonly result: unknown;
  readonly error: JobError | null;
  readonly resources: Resources;
  readonly pool: string | null;
  readonly constraints: Record<string, string>;
  readonly dependsOn: readonly string[];
  readonly retry: RetryPolicy;
  readonly timeoutSeconds: number;
  /** How many attempts have started. */
  readonly attempts: number;
  readonly runAt: string | null;
  readonly deadline: string | null;
  readonly offPeakOnly: boolean;
  readonly onFailure: { escalateTo: { type: string; priority?: number } } | null;
  /** Where the job goes when its last attempt timed out; null: onFailure applies (issue 13). */
  readonly onTimeout: { escalateTo: { type: string; priority?: number } } | null;
  readonly tags: Record<string, string>;
  readonly escalatedTo: string | null;
  readonly scheduleId: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly nextAttemptAt: string | null;
  /** Optimistic-concurrency version: every status change is conditional on it. */
  readonly version: number;
  /** The project it belongs to (issue 13), or null; fixed at submission. */
  readonly project: string | null;
  /** An array job's parent: its size and children's statuses (core/arrays.ts); null otherwise. */
  readonly array?: ArraySummary | null;
  /** An array job's child: its index 0..size-1 and its parent; null otherwise. */
  readonly arrayIndex?: number | null;
  readonly arrayParentId?: string | null;
}

export interface Transition {
  readonly from: JobStatus | null;
  readonly to: JobStatus;
  readonly at: string;
  readonly reason: string;
  /** The principal who caused it, or null for the system. */
  readonly triggeredBy: string | null;
  /** A priority change (from = to): the priority before and after; null otherwise. */
  readonly fromPriority: number | null;
  readonly toPriority: number | null;
}

export interface Attempt {
  readonly attempt: number;
  readonly status: AttemptStatus;
  /** Null for an attempt that was dispatched but never taken by a worker (it ended `lost`). */
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly durationMs: number | null;
  readonly workerId: string | null;
  readonly nodeId: string | null;
  readonly pool: string | null;
  readonly error: JobError | null;
}

export interface LogLine {
  readonly timestamp: string;
  readonly level: LogLevel;
  readonly message: string;
  readonly attempt: number | null;
}
