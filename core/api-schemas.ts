import { z } from "zod";
import { AUDIT_ACTIONS, AUDIT_KINDS } from "./audit";
import { CIRCUIT_CHANGES, CIRCUIT_STATES } from "./circuit";
import type { ErrorCode } from "./errors";
import {
  ATTEMPT_STATUSES,
  type Attempt,
  BACKOFF_STRATEGIES,
  JOB_STATUSES,
  type Job,
  type JobError,
  LOG_LEVELS,
  type LogLine,
  MAX_PRIORITY,
  MIN_PRIORITY,
  type Resources,
  type RetryPolicy,
  type Transition,
} from "./job";
import { policySchema, typeRulesSchema } from "./policy";
import { ROLES } from "./principal";
import type { QuotaView } from "./quota";
import { REASON_CODES } from "./reasons";
import { OVERLAP_POLICIES, type Schedule, type ScheduleFire } from "./schedule";
import { STATS_WINDOWS } from "./stats";
import type { CreatedToken, Dependent, TokenView } from "./tokens";

/**
 * The API's responses as zod schemas: what the OpenAPI document (functions/openapi.ts) publishes,
 * what the contract tests validate every answer against, and where the typed client (client/)
 * takes its types from. The compile-time checks at the end tie each schema to the interface the
 * code returns, so the document cannot drift from the code. Pure: zod only.
 *
 * Every schema a route answers with is registered in `apiResponses` under a stable id: the
 * document's components/schemas name. Objects are not strict: a client must accept fields added
 * later (the contract may be extended, never broken).
 */

export const apiResponses = z.registry<{ id: string }>();

const timestamp = z.string().describe("ISO-8601 UTC");
const nullableTimestamp = timestamp.nullable();

export const ERROR_CODES = [
  "validation_failed",
  "unknown_dependency",
  "dependency_cycle",
  "unknown_type",
  "unsatisfiable_resources",
  "unauthorized",
  "forbidden",
  "not_found",
  "invalid_transition",
  "idempotency_key_reused",
  "payload_too_large",
  "too_many_requests",
  "internal",
] as const satisfies readonly ErrorCode[];

export const errorResponseSchema = z
  .object({
    error: z.object({
      code: z.enum(ERROR_CODES),
      message: z.string(),
      details: z
        .unknown()
        .optional()
        .describe(
          "validation_failed: [{path, message}] for every field problem; dependency_cycle: {cycle}; " +
            "unknown_dependency: {missing}; too_many_requests: {retryAfterSeconds}",
        ),
    }),
  })
  .describe("API.md's error format")
  .register(apiResponses, { id: "Error" });
export type ErrorResponse = z.output<typeof errorResponseSchema>;

export const jobErrorSchema = z.object({ type: z.string(), message: z.string() });

export const resourcesViewSchema = z.object({ cpu: z.number(), memoryMb: z.number(), gpu: z.number() });

export const retryViewSchema = z.object({
  maxAttempts: z.number().int(),
  strategy: z.enum(BACKOFF_STRATEGIES),
  initialDelaySeconds: z.number(),
  backoffMultiplier: z.number(),
  maxDelaySeconds: z.number(),
});

/** onFailure (and a type's onFailure/onTimeout) as stored: the priority is its integer. */
export const escalationViewSchema = z.object({
  escalateTo: z.object({ type: z.string(), priority: z.number().int().optional() }),
});

const stringMap = z.record(z.string(), z.string());

const jobShape = {
  id: z.string(),
  name: z.string().nullable(),
  type: z.string(),
  status: z.enum(JOB_STATUSES),
  statusReason: z.string().describe("why the job is in this status, for people"),
  reasonCode: z.enum(REASON_CODES).nullable().describe("the reason's stable code, for programs"),
  priority: z.number().int().min(-10).max(10),
  owner: z.string(),
  payload: z.unknown(),
  result: z.unknown(),
  error: jobErrorSchema.nullable(),
  resources: resourcesViewSchema,
  pool: z.string().nullable(),
  constraints: stringMap,
  dependsOn: z.array(z.string()),
  retry: retryViewSchema,
  timeoutSeconds: z.number().int(),
  attempts: z.number().int().min(0).describe("how many attempts have started"),
  runAt: nullableTimestamp,
  deadline: nullableTimestamp,
  offPeakOnly: z.boolean(),
  onFailure: escalationViewSchema.nullable(),
  onTimeout: escalationViewSchema
    .nullable()
    .describe("where the job goes when its last attempt timed out; null: onFailure applies"),
  tags: stringMap,
  escalatedTo: z.string().nullable(),
  scheduleId: z.string().nullable(),
  createdAt: timestamp,
  updatedAt: timestamp,
  startedAt: nullableTimestamp,
  finishedAt: nullableTimestamp,
  nextAttemptAt: nullableTimestamp,
  version: z.number().int().describe("increases with every change of the job"),
  project: z.string().nullable().describe("the project the job counts against (its quota), or null"),
  array: z
    .object({
      size: z.number().int(),
      pending: z.number().int().describe("children not yet completed"),
      counts: z
        .record(z.enum(JOB_STATUSES), z.number().int())
        .nullable()
        .describe("children per status: on GET /jobs/{id} only, null in lists and the stream"),
    })
    .nullable()
    .optional()
    .describe("an array job's parent: its children's summary (docs/admin-api.md); null otherwise"),
  arrayIndex: z.number().int().nullable().optional().describe("an array job's child: its index"),
  arrayParentId: z.string().nullable().optional().describe("an array job's child: its parent"),
};

export const jobSchema = z.object(jobShape).register(apiResponses, { id: "Job" });

const usd = z.number().min(0);

/** Ended jobs' cost summed over a period. */
const costSumsSchema = z.object({
  jobs: z.number().int(),
  totalUsd: usd,
  requestsUsd: usd,
  computeUsd: usd,
});

/** A job's cost (core/cost.ts, docs/cost.md). */
export const jobCostSchema = z
  .object({
    totalUsd: usd,
    requestsUsd: usd.describe("AWS request charges of its own life, from per-step counts"),
    computeUsd: usd.describe("node time × the pool's hourlyUsd × its dominant share of a node"),
    breakdown: z.object({
      stepFunctions: z.object({ transitions: z.number(), usd }),
      dynamodb: z.object({ writeUnits: z.number(), readUnits: z.number(), usd }),
      sqs: z.object({ requests: z.number(), usd }),
      lambda: z.object({ invocations: z.number(), gbSeconds: z.number(), usd }),
      eventBridge: z.object({ entries: z.number(), usd }),
      api: z.object({ requests: z.number(), usd }),
      compute: z.object({ nodeSeconds: z.number(), share: z.number(), hourlyUsd: z.number(), usd }),
    }),
    priceTable: z.string().describe("the price table's date and region, e.g. 2026-11 us-east-1"),
  })
  .register(apiResponses, { id: "JobCost" });

export const jobViewSchema = z
  .object({
    ...jobShape,
    queuePosition: z.number().int().nullable().optional().describe("queued jobs: 1 = admitted next"),
    estimatedStartAt: nullableTimestamp.optional().describe("queued jobs, when recent run times allow"),
    cost: jobCostSchema.optional().describe("what the job's life has cost so far (docs/cost.md)"),
  })
  .describe("GET /jobs/{id}: the job, and its place if queued")
  .register(apiResponses, { id: "JobView" });

export const transitionSchema = z
  .object({
    from: z.enum(JOB_STATUSES).nullable(),
    to: z.enum(JOB_STATUSES),
    at: timestamp,
    reason: z.string(),
    triggeredBy: z.string().nullable().describe("the principal, or null for the system"),
    fromPriority: z
      .number()
      .int()
      .nullable()
      .describe("a priority change (from = to): the priority before; null otherwise"),
    toPriority: z.number().int().nullable().describe("a priority change: the priority after; null otherwise"),
  })
  .register(apiResponses, { id: "Transition" });

export const attemptSchema = z
  .object({
    attempt: z.number().int().min(1),
    status: z.enum(ATTEMPT_STATUSES),
    startedAt: nullableTimestamp,
    finishedAt: nullableTimestamp,
    durationMs: z.number().nullable(),
    workerId: z.string().nullable(),
    nodeId: z.string().nullable(),
    pool: z.string().nullable(),
    error: jobErrorSchema.nullable(),
  })
  .register(apiResponses, { id: "Attempt" });

export const logLineSchema = z
  .object({
    timestamp,
    level: z.enum(LOG_LEVELS),
    message: z.string(),
    attempt: z.number().int().nullable(),
  })
  .register(apiResponses, { id: "LogLine" });

/** API.md's list shape: `{items, nextCursor}`; null when there is no further page. */
function page<T extends z.ZodType>(item: T, id: string) {
  return z.object({ items: z.array(item), nextCursor: z.string().nullable() }).register(apiResponses, { id });
}

export const jobPageSchema = page(jobSchema, "JobPage");
export const transitionPageSchema = page(transitionSchema, "TransitionPage");
export const attemptPageSchema = page(attemptSchema, "AttemptPage");
export const logPageSchema = page(logLineSchema, "LogPage");

export const batchResponseSchema = z
  .object({
    jobs: z.array(jobSchema),
    refs: z.record(z.string(), z.string()).describe("each ref of the batch → the id of its job"),
  })
  .register(apiResponses, { id: "BatchResponse" });

const capacitySchema = z.object({ cpu: z.number(), memoryMb: z.number(), gpu: z.number() });

export const nodeViewSchema = z
  .object({
    id: z.string(),
    capacity: capacitySchema,
    used: capacitySchema,
    status: z.enum(["up", "draining", "lost"]),
    lastHeartbeatAt: timestamp,
    drainedBy: z
      .string()
      .nullable()
      .describe("the admin who drained it (POST /pools/{pool}/nodes/{id}/drain); null otherwise"),
    drainedAt: timestamp.nullable(),
  })
  .register(apiResponses, { id: "Node" });

export const poolViewSchema = z
  .object({
    name: z.string(),
    labels: stringMap,
    capacity: capacitySchema.describe("the sum over the nodes that are up"),
    used: capacitySchema,
    nodes: z.array(nodeViewSchema),
  })
  .register(apiResponses, { id: "Pool" });

export const poolPageSchema = page(poolViewSchema, "PoolPage");

export const queuedEntrySchema = z.object({
  id: z.string(),
  type: z.string(),
  priority: z.number().int(),
  owner: z.string(),
  pool: z.string().nullable(),
  position: z.number().int().min(1).describe("1 = the next job the scheduler would admit"),
  estimatedStartAt: nullableTimestamp,
  statusReason: z.string(),
  reasonCode: z.enum(REASON_CODES).nullable(),
});

export const queueSnapshotSchema = z
  .object({
    counts: z.partialRecord(z.enum(JOB_STATUSES), z.number().int()),
    countsComplete: z.boolean().describe("false when a count stopped at its cap"),
    pools: z.array(poolViewSchema),
    queued: z.array(queuedEntrySchema).describe("the first 100, in admission order"),
  })
  .register(apiResponses, { id: "Queue" });

/** policy.types[type] as answered: retry and escalations in their stored (output) form. */
const typeRulesViewSchema = typeRulesSchema.extend({
  retry: retryViewSchema.optional(),
  onFailure: escalationViewSchema.optional(),
  onTimeout: escalationViewSchema.optional(),
});

export const policyViewSchema = policySchema
  .extend({
    types: z.record(z.string(), typeRulesViewSchema),
    updatedAt: nullableTimestamp,
    updatedBy: z.string().nullable(),
  })
  .register(apiResponses, { id: "PolicyView" });

const remainingSchema = z.number().nullable().describe("null: no limit");

/**
 * The limits as GET answers them: PUT's quotaLimitsSchema takes a priority name too, but
 * maxPriority is stored and answered as the integer (a transform has no output JSON Schema).
 */
export const quotaLimitsViewSchema = z.object({
  dailyGpuSeconds: z.number().int().min(0).nullable(),
  weeklyGpuSeconds: z.number().int().min(0).nullable(),
  maxQueuedJobs: z.number().int().min(0).nullable(),
  maxPriority: z
    .number()
    .int()
    .min(MIN_PRIORITY)
    .max(MAX_PRIORITY)
    .nullable()
    .describe("the highest priority the principal may give its jobs; admins are not held to it"),
});

export const quotaViewSchema = z
  .object({
    principal: z.string(),
    limits: quotaLimitsViewSchema,
    used: z.object({
      todayGpuSeconds: z.number(),
      weekGpuSeconds: z.number(),
      queuedJobs: z.number().int(),
    }),
    remaining: z.object({
      todayGpuSeconds: remainingSchema,
      weekGpuSeconds: remainingSchema,
      queuedJobs: remainingSchema,
    }),
    warning: z.boolean().describe("true once any limit is 80 % used"),
    cost: z
      .object({ today: costSumsSchema, week: costSumsSchema })
      .optional()
      .describe("the cost of the principal's jobs that ended today and this week (since Monday, UTC)"),
  })
  .register(apiResponses, { id: "QuotaView" });

export const healthSchema = z
  .object({
    status: z.literal("ok"),
    streamUrl: z
      .string()
      .optional()
      .describe("the WebSocket stream's URL (see x-websocket in this document), where the stack has one"),
  })
  .register(apiResponses, { id: "Health" });

// GET /stats (app/stats.ts's StatsView; docs/stats.md)

const percentilesSchema = z.object({
  p50: z.number().nullable(),
  p95: z.number().nullable(),
  p99: z.number().nullable(),
});

const utilizationSchema = z
  .object({ cpu: z.number().nullable(), memoryMb: z.number().nullable(), gpu: z.number().nullable() })
  .describe("used over capacity of the pool's nodes that are up, 0..1; null without capacity");

export const figuresViewSchema = z.object({
  completed: z.number().int(),
  failed: z.number().int(),
  queueWaitMs: percentilesSchema,
  runMs: percentilesSchema,
});

export const poolStatsViewSchema = figuresViewSchema.extend({ utilization: utilizationSchema });

export const ownerRowSchema = z.object({
  owner: z.string(),
  running: z.number().int(),
  queued: z.number().int(),
  gpuSecondsToday: z.number(),
  costUsdToday: z
    .number()
    .nullable()
    .describe("the cost of the owner's jobs that ended today (docs/cost.md)"),
});

export const seriesPointSchema = z.object({
  minute: timestamp.describe("the start of the period: a minute, or an hour for the 6h and 24h windows"),
  completed: z.number().int(),
  failed: z.number().int(),
  queueWaitP50Ms: z.number().nullable(),
  runP50Ms: z.number().nullable(),
});

export const costViewSchema = costSumsSchema
  .extend({
    byOwner: z.record(z.string(), costSumsSchema).describe("admins: every owner; a user: their own"),
    byProject: z
      .record(z.string(), costSumsSchema)
      .describe("admins: every project that had a job end; a user: empty"),
  })
  .describe("the cost of the jobs that ended in the period (week: since Monday 00:00 UTC)");

export const statsViewSchema = z
  .object({
    generatedAt: timestamp,
    window: z.enum(STATS_WINDOWS),
    counts: z.object({
      byStatus: z.record(z.enum(JOB_STATUSES), z.number().int()),
      byPool: z.record(z.string(), z.partialRecord(z.enum(JOB_STATUSES), z.number().int())),
    }),
    throughput: z.object({
      completedLastMinute: z.number().int(),
      failedLastMinute: z.number().int(),
      completedLastHour: z.number().int(),
      failedLastHour: z.number().int(),
    }),
    queueWaitMs: percentilesSchema,
    runMs: percentilesSchema,
    byPool: z.record(z.string(), poolStatsViewSchema),
    byType: z.record(z.string(), figuresViewSchema).describe("admins only; empty for a user"),
    owners: z.array(ownerRowSchema),
    ownersTruncated: z.boolean().describe("more owners have running or queued jobs than listed (admins)"),
    overheadUsd: z
      .number()
      .nullable()
      .describe("time-driven AWS requests over the window, attributed to no job: an estimate (docs/cost.md)"),
    cost: z
      .object({ today: costViewSchema, week: costViewSchema })
      .describe("ended jobs' cost: everyone's and per owner for an admin, a user's own"),
    series: z.array(seriesPointSchema),
    seriesStepSeconds: z.number().int(),
    percentileRelativeError: z.number().describe("each percentile is within this fraction of the exact one"),
  })
  .register(apiResponses, { id: "Stats" });

// Bulk actions (POST /jobs/cancel, POST /jobs/retry)

export const bulkResultSchema = z
  .object({
    acted: z.array(z.string()).describe("the ids of the jobs acted on"),
    skipped: z
      .array(z.object({ id: z.string(), reason: z.string() }))
      .describe("the jobs of the page left as they were (already cancelled, not retryable), and why"),
    nextCursor: z.string().nullable().describe("the next page of matches, as GET /jobs's; null at the end"),
  })
  .register(apiResponses, { id: "BulkResult" });

// Recurring schedules (core/schedule.ts; docs/schedules.md)

const fireExtras = {
  trigger: z.literal("manual").optional().describe("a POST /schedules/{id}/trigger, not the cron"),
  missed: z.number().int().optional().describe("earlier fire times passed over by this catch-up fire"),
};

export const scheduleFireSchema = z
  .union([
    z.object({ at: timestamp, jobId: z.string(), ...fireExtras }),
    z.object({ at: timestamp, skipped: z.string().describe("why the fire submitted no job"), ...fireExtras }),
  ])
  .register(apiResponses, { id: "ScheduleFire" });

const scheduleShape = {
  id: z.string(),
  name: z.string(),
  owner: z.string(),
  cron: z.string(),
  timezone: z.string().describe("IANA name"),
  enabled: z.boolean(),
  overlap: z.enum(OVERLAP_POLICIES),
  jitterSeconds: z.number().int(),
  job: z.record(z.string(), z.unknown()).describe("the job template, as sent (POST /jobs's body)"),
  nextRunAt: nullableTimestamp.describe("the cron time of the next fire; null while disabled"),
  lastFires: z.array(scheduleFireSchema).describe("newest first"),
  lastJobId: z.string().nullable().describe("the job of the last fire that submitted one"),
  createdAt: timestamp,
  updatedAt: timestamp,
  version: z.number().int(),
};

export const scheduleSchema = z.object(scheduleShape);

export const scheduleViewSchema = z
  .object({ ...scheduleShape, nextRuns: z.array(timestamp).describe("the next fire times") })
  .register(apiResponses, { id: "Schedule" });

export const schedulePageSchema = page(scheduleViewSchema, "SchedulePage");

/** POST /schedules/{id}/trigger's 200: a replayed trigger's job, or the fire overlap=skip held back. */
export const triggerAnswerSchema = z
  .union([jobSchema, scheduleFireSchema])
  .register(apiResponses, { id: "TriggerAnswer" });

/** GET /openapi.json answers this document itself; described, not modelled. */
export const openApiDocumentSchema = z
  .object({ openapi: z.string(), info: z.object({ title: z.string(), version: z.string() }) })
  .describe("this OpenAPI 3.1 document")
  .register(apiResponses, { id: "OpenApiDocument" });

// The stream (WebSocket /jobs/stream): what a client sends and what the server sends back.

/** A job as the stream sends it: without payload and result (they can be large). */
export const streamJobSchema = jobSchema.omit({ payload: true, result: true });
export type StreamJob = z.output<typeof streamJobSchema>;

export const streamClientMessageSchema = z.union([
  z.object({ action: z.literal("ping") }),
  z.object({ action: z.literal("subscribe"), jobIds: z.array(z.string()).min(1) }),
  z.object({ action: z.literal("subscribe"), all: z.literal(true) }),
]);
export type StreamClientMessage = z.output<typeof streamClientMessageSchema>;

export const streamServerMessageSchema = z.union([
  z.object({ type: z.literal("job"), job: streamJobSchema }),
  z.object({ type: z.literal("pong") }),
]);
export type StreamServerMessage = z.output<typeof streamServerMessageSchema>;

/**
 * `Conforms<Schema, Interface>` is true when the schema's output is assignable to the interface
 * and both name the same fields: a field added to an interface and not to its schema (or the
 * reverse), or a type that differs, fails `npx tsc`.
 */
export type Conforms<S, I> = [S] extends [I]
  ? [Exclude<keyof S, keyof I> | Exclude<keyof I, keyof S>] extends [never]
    ? true
    : false
  : false;

const conformance: [
  Conforms<z.output<typeof jobSchema>, Job>,
  Conforms<z.output<typeof jobErrorSchema>, JobError>,
  Conforms<z.output<typeof resourcesViewSchema>, Resources>,
  Conforms<z.output<typeof retryViewSchema>, RetryPolicy>,
  Conforms<z.output<typeof transitionSchema>, Transition>,
  Conforms<z.output<typeof attemptSchema>, Attempt>,
  Conforms<z.output<typeof logLineSchema>, LogLine>,
  Conforms<z.output<typeof quotaViewSchema>, QuotaView>,
  Conforms<z.output<typeof quotaViewSchema.shape.used>, QuotaView["used"]>,
  Conforms<z.output<typeof quotaViewSchema.shape.remaining>, QuotaView["remaining"]>,
  Conforms<z.output<typeof quotaViewSchema.shape.limits>, QuotaView["limits"]>,
  Conforms<z.output<typeof scheduleSchema>, Schedule>,
  Conforms<z.output<typeof scheduleFireSchema>, ScheduleFire>,
] = [true, true, true, true, true, true, true, true, true, true, true, true, true];
void conformance;

// Query strings of routes whose handlers need no job schema (the others are in core/job.ts).

export const queueQuerySchema = z.strictObject({
  pool: z.string().min(1).max(32).optional().describe("only this pool's counts, nodes and queue"),
});

/**
 * `?lost=true` adds the nodes marked lost, which stay in the table until the reconciler prunes
 * them (up to an hour) and would otherwise crowd out the live ones.
 */
export const poolsQuerySchema = z.strictObject({
  lost: z.enum(["true", "false"]).default("false").describe("also list nodes marked lost"),
});

/** GET /stats's window: how far back the figures look (docs/stats.md). */
export const statsQuerySchema = z.strictObject({
  window: z.enum(STATS_WINDOWS).default("1h").describe("the period the figures cover"),
});

// The admin token routes (POST/GET /admin/tokens, DELETE /admin/tokens/{id}) and GET
// /jobs/{id}/dependents; their types are core/tokens.ts's.

export const tokenViewSchema = z
  .object({
    id: z.string().describe("the token's id: the first 12 hex characters of its SHA-256"),
    principal: z.string(),
    role: z.enum(ROLES),
    createdAt: timestamp,
    revokedAt: nullableTimestamp.describe("when it was revoked; null while it works"),
    project: z.string().nullable().describe("the project the token is bound to; null: unbound"),
  })
  .register(apiResponses, { id: "Token" });

export const createdTokenSchema = tokenViewSchema
  .extend({ token: z.string().describe("the bearer token itself: shown this once, never stored") })
  .register(apiResponses, { id: "CreatedToken" });

export const tokenPageSchema = page(tokenViewSchema, "TokenPage");

/** One change in the audit trail (GET /admin/audit; core/audit.ts). */
export const auditRecordSchema = z
  .object({
    id: z.string().describe("opaque, unique: the change's time, kind and subject"),
    at: timestamp.describe("when the change took effect"),
    principal: z.string().describe("who made it"),
    kind: z.enum(AUDIT_KINDS),
    subject: z
      .string()
      .describe("which one: `policy`, the quota's principal, the token id, the schedule id, `<pool>/<node>`"),
    action: z.enum(AUDIT_ACTIONS),
    before: z.unknown().describe("the thing before the change; null when it did not exist"),
    after: z.unknown().describe("the thing after it; null when deleted. Never a secret nor a token hash"),
  })
  .register(apiResponses, { id: "AuditRecord" });

export const auditPageSchema = page(auditRecordSchema, "AuditPage");

export const dependentSchema = z
  .object({
    id: z.string(),
    type: z.string(),
    name: z.string().nullable(),
    status: z.enum(JOB_STATUSES),
    owner: z.string(),
    met: z.boolean().describe("whether this edge is met: the job depended on has completed"),
  })
  .register(apiResponses, { id: "Dependent" });

export const dependentPageSchema = page(dependentSchema, "DependentPage");

const tokenConformance: [
  Conforms<z.output<typeof tokenViewSchema>, TokenView>,
  Conforms<z.output<typeof createdTokenSchema>, CreatedToken>,
  Conforms<z.output<typeof dependentSchema>, Dependent>,
] = [true, true, true];
void tokenConformance;

/** A circuit breaker (GET /admin/circuits; core/circuit.ts, app/circuits.ts). */
export const circuitViewSchema = z
  .object({
    type: z.string(),
    owner: z.string().nullable().describe("set for a breaker of scope `type+owner`"),
    state: z.enum(CIRCUIT_STATES),
    failures: z.number().int().describe("attempts that failed or timed out within the window, as counted"),
    openedAt: nullableTimestamp.describe("when it last opened; null when closed"),
    halfOpensAt: nullableTimestamp.describe(
      "when it half-opens (open) or half-opened (half_open); null when closed",
    ),
    probeJobId: z
      .string()
      .nullable()
      .describe("the job admitted as the half-open probe; null when none is out"),
    changedAt: timestamp,
    configured: z.boolean().describe("whether the policy in force still gives this key a breaker"),
  })
  .register(apiResponses, { id: "Circuit" });

/** One change of a breaker (GET /admin/circuits?history=true). */
export const circuitTransitionSchema = z
  .object({
    key: z.string().describe("`<type>` or `<type>#<owner>`"),
    type: z.string(),
    owner: z.string().nullable(),
    change: z.enum(CIRCUIT_CHANGES),
    from: z.enum(CIRCUIT_STATES),
    to: z.enum(CIRCUIT_STATES),
    at: timestamp,
    reason: z.string(),
    jobId: z.string().nullable().describe("the job that caused it: the failure that opened it, the probe"),
    by: z.string().nullable().describe("the admin who reset it; null for the breaker's own changes"),
  })
  .register(apiResponses, { id: "CircuitTransition" });

export const circuitListSchema = z
  .object({
    items: z.array(circuitViewSchema),
    history: z.array(circuitTransitionSchema).optional().describe("newest first; only with `history=true`"),
  })
  .register(apiResponses, { id: "CircuitList" });
