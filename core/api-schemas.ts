import { z } from "zod";
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
  type Resources,
  type RetryPolicy,
  type Transition,
} from "./job";
import { policySchema } from "./policy";
import { type QuotaView, quotaLimitsSchema } from "./quota";
import { REASON_CODES } from "./reasons";

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
  onFailure: z
    .object({ escalateTo: z.object({ type: z.string(), priority: z.number().int().optional() }) })
    .nullable(),
  tags: stringMap,
  escalatedTo: z.string().nullable(),
  scheduleId: z.string().nullable(),
  createdAt: timestamp,
  updatedAt: timestamp,
  startedAt: nullableTimestamp,
  finishedAt: nullableTimestamp,
  nextAttemptAt: nullableTimestamp,
  version: z.number().int().describe("increases with every change of the job"),
};

export const jobSchema = z.object(jobShape).register(apiResponses, { id: "Job" });

export const jobViewSchema = z
  .object({
    ...jobShape,
    queuePosition: z.number().int().nullable().optional().describe("queued jobs: 1 = admitted next"),
    estimatedStartAt: nullableTimestamp.optional().describe("queued jobs, when recent run times allow"),
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

export const nodeViewSchema = z.object({
  id: z.string(),
  capacity: capacitySchema,
  used: capacitySchema,
  status: z.enum(["up", "draining", "lost"]),
  lastHeartbeatAt: timestamp,
});

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

export const policyViewSchema = policySchema
  .extend({ updatedAt: nullableTimestamp, updatedBy: z.string().nullable() })
  .register(apiResponses, { id: "PolicyView" });

const remainingSchema = z.number().nullable().describe("null: no limit");

export const quotaViewSchema = z
  .object({
    principal: z.string(),
    limits: quotaLimitsSchema,
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
] = [true, true, true, true, true, true, true, true, true, true];
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
