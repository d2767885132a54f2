import { z } from "zod";
import type { CircuitListView, CircuitView } from "../app/circuits";
import type { PolicyView } from "../app/policy";
import type { NodeView, PoolView } from "../app/pools";
import type { JobView, ListPage } from "../app/queries";
import type { QueuedEntry, QueueSnapshot } from "../app/queue";
import type { ScheduleView } from "../app/schedules";
import type { FiguresView, OwnerRow, PoolStatsView, SeriesPoint, StatsView } from "../app/stats";
import {
  attemptPageSchema,
  auditPageSchema,
  batchResponseSchema,
  bulkResultSchema,
  type Conforms,
  circuitListSchema,
  circuitViewSchema,
  createdTokenSchema,
  dependentPageSchema,
  type figuresViewSchema,
  healthSchema,
  jobPageSchema,
  jobSchema,
  jobViewSchema,
  logPageSchema,
  nodeViewSchema,
  openApiDocumentSchema,
  type ownerRowSchema,
  policyViewSchema,
  poolPageSchema,
  type poolStatsViewSchema,
  poolsQuerySchema,
  type poolViewSchema,
  type queuedEntrySchema,
  queueQuerySchema,
  queueSnapshotSchema,
  quotaViewSchema,
  schedulePageSchema,
  scheduleViewSchema,
  type seriesPointSchema,
  statsQuerySchema,
  statsViewSchema,
  tokenPageSchema,
  tokenViewSchema,
  transitionPageSchema,
  triggerAnswerSchema,
} from "../core/api-schemas";
import { listAuditQuerySchema } from "../core/audit";
import { listCircuitsQuerySchema, resetCircuitQuerySchema } from "../core/circuit";
import type { ErrorCode } from "../core/errors";
import { exportLineSchema, importSummarySchema } from "../core/export";
import {
  type BulkResult,
  bulkCancelSchema,
  bulkRetrySchema,
  listJobsQuerySchema,
  listLogsQuerySchema,
  pageQuerySchema,
  retryJobSchema,
  submitBatchSchema,
  submitJobSchema,
  updateJobSchema,
} from "../core/job";
import { policySchema } from "../core/policy";
import { quotaLimitsSchema } from "../core/quota";
import { createScheduleSchema, listSchedulesQuerySchema, updateScheduleSchema } from "../core/schedule";
import { createTokenSchema } from "../core/tokens";

/**
 * The documentation of every route of functions/routes.ts, keyed by route id: what the OpenAPI
 * document (functions/openapi.ts) says about it and what the contract tests hold its answers to.
 * A new route adds one entry here beside its RouteSpec; the contract test fails until it does.
 * Schemas are the ones the handlers parse with (requests) and the ones in core/api-schemas.ts
 * (responses), so the document is the code's own description of itself.
 */

/** Request bodies by their components/schemas name; converted as the client sends them (zod input). */
export const apiRequests = z.registry<{ id: string }>();

submitJobSchema.register(apiRequests, { id: "SubmitJobRequest" });
submitBatchSchema.register(apiRequests, { id: "SubmitBatchRequest" });
updateJobSchema.register(apiRequests, { id: "UpdateJobRequest" });
policySchema.register(apiRequests, { id: "Policy" });
quotaLimitsSchema.register(apiRequests, { id: "QuotaLimits" });
retryJobSchema.register(apiRequests, { id: "RetryJobRequest" });
bulkCancelSchema.register(apiRequests, { id: "BulkCancelRequest" });
bulkRetrySchema.register(apiRequests, { id: "BulkRetryRequest" });
createScheduleSchema.register(apiRequests, { id: "CreateScheduleRequest" });
updateScheduleSchema.register(apiRequests, { id: "UpdateScheduleRequest" });
createTokenSchema.register(apiRequests, { id: "CreateTokenRequest" });
exportLineSchema.register(apiRequests, { id: "ImportLine" });

export interface ResponseDoc {
  readonly description: string;
  /** Registered in core/api-schemas.ts#apiResponses; none for an answer without a body (204). */
  readonly schema?: z.ZodType;
  /** Response headers worth a client's attention. */
  readonly headers?: Readonly<Record<string, string>>;
  /** NDJSON: each line of the body is one `schema`. @default JSON, the body is one `schema` */
  readonly contentType?: "application/x-ndjson";
}

export interface RouteDoc {
  readonly summary: string;
  readonly description?: string;
  /** The group the route is listed under. */
  readonly tag: "jobs" | "queue" | "schedules" | "admin" | "service";
  /** Each property is a query parameter. */
  readonly query?: z.ZodObject;
  /** What a query parameter means, where its schema cannot say (a comma-separated list, a format). */
  readonly parameters?: Readonly<Record<string, string>>;
  /** Registered in apiRequests above. */
  readonly body?: z.ZodType;
  /** NDJSON: each line of the body is one `body`. @default JSON */
  readonly bodyContentType?: "application/x-ndjson";
  /** The body may be left out (the handler reads none as `{}`). @default false */
  readonly bodyOptional?: boolean;
  /** Request headers the route reads, with what they do. */
  readonly headers?: Readonly<Record<string, string>>;
  /** The successful answers, by status. */
  readonly responses: Readonly<Record<number, ResponseDoc>>;
  /**
   * The error codes the route answers besides those every route may: `internal` and
   * `too_many_requests` always, `unauthorized` on authorized routes, `validation_failed` with a
   * body, query or path parameter, `payload_too_large` with a body.
   */
  readonly errors?: readonly ErrorCode[];
}

const IDEMPOTENCY_KEY =
  "1..255 characters: the same principal sending the same key within 24 h gets the original answer " +
  "back (200, Idempotent-Replayed: true); the same key with a different body is a 409";
const REPLAYED = { "Idempotent-Replayed": "true when this answers an earlier request with the same key" };
const SUBMIT_ERRORS: readonly ErrorCode[] = [
  "unknown_dependency",
  "dependency_cycle",
  "unknown_type",
  "unsatisfiable_resources",
  "idempotency_key_reused",
  "forbidden",
];
const PAGE_PARAMETERS = {
  limit: "page size, 1..200",
  cursor: "the previous page's nextCursor",
};

/** A job action: the job by id, which may not exist (or be another user's), and a status rule. */
const JOB_ACTION_ERRORS: readonly ErrorCode[] = ["not_found", "invalid_transition"];

export const ROUTE_DOCS: Readonly<Record<string, RouteDoc>> = {
  Health: {
    summary: "Say the API answers",
    description: "No auth, no I/O. `streamUrl` names the WebSocket stream where the stack has one.",
    tag: "service",
    responses: { 200: { description: "the API answers", schema: healthSchema } },
  },
  OpenApi: {
    summary: "This document",
    description: "No auth. The OpenAPI 3.1 document of every route, generated from the code's zod schemas.",
    tag: "service",
    responses: { 200: { description: "the OpenAPI document", schema: openApiDocumentSchema } },
  },
  SubmitJob: {
    summary: "Submit a job",
    tag: "jobs",
    body: submitJobSchema,
    headers: { "Idempotency-Key": IDEMPOTENCY_KEY },
    responses: {
      201: { description: "the job, created", schema: jobSchema },
      200: {
        description: "the job an earlier request with this key created",
        schema: jobSchema,
        headers: REPLAYED,
      },
    },
    errors: SUBMIT_ERRORS,
  },
  SubmitBatch: {
    summary: "Submit a DAG of jobs, all or none",
    tag: "jobs",
    body: submitBatchSchema,
    headers: { "Idempotency-Key": IDEMPOTENCY_KEY },
    responses: {
      201: { description: "the jobs, created, and each ref's job id", schema: batchResponseSchema },
      200: {
        description: "what an earlier request with this key created",
        schema: batchResponseSchema,
        headers: REPLAYED,
      },
    },
    errors: SUBMIT_ERRORS,
  },
  ListJobs: {
    summary: "List jobs, newest first",
    description: "A user sees their own jobs; an admin sees everyone's (and may filter by owner).",
    tag: "jobs",
    query: listJobsQuerySchema,
    parameters: {
      ...PAGE_PARAMETERS,
      status: "comma-separated statuses, e.g. queued,running",
      owner: "admins: only this principal's jobs",
      priority: "a priority name (critical, high, normal, low, background) or an integer -10..10",
      tag: "key:value",
      createdAfter: "ISO-8601 instant",
      createdBefore: "ISO-8601 instant",
    },
    responses: { 200: { description: "a page of jobs", schema: jobPageSchema } },
  },
  GetJob: {
    summary: "Get a job",
    description: "A queued job also carries queuePosition and estimatedStartAt.",
    tag: "jobs",
    responses: { 200: { description: "the job", schema: jobViewSchema } },
    errors: ["not_found"],
  },
  GetQueue: {
    summary: "The queue: counts, pools and the first 100 queued jobs in admission order",
    tag: "queue",
    query: queueQuerySchema,
    responses: { 200: { description: "the queue", schema: queueSnapshotSchema } },
  },
  UpdateJob: {
    summary: "Change a job's priority, or move a queued job ahead of another",
    description:
      "`priority`: of a job that has not ended; takes effect at the next scheduling pass; above the " +
      "caller's quota maxPriority is a 403 (lowering stays allowed). `before` (admins): moves a queued " +
      "job just ahead of another queued job of the same queue, taking its priority; the transition " +
      "records fromPriority/toPriority. One of the two, never both.",
    tag: "jobs",
    body: updateJobSchema,
    responses: { 200: { description: "the job", schema: jobSchema } },
    errors: [...JOB_ACTION_ERRORS, "forbidden"],
  },
  CancelJob: {
    summary: "Cancel a job and, transitively, its dependents",
    tag: "jobs",
    responses: { 200: { description: "the job, cancelled", schema: jobSchema } },
    errors: JOB_ACTION_ERRORS,
  },
  PauseJob: {
    summary: "Pause a job",
    description: "A running attempt is stopped and does not count against maxAttempts.",
    tag: "jobs",
    responses: { 200: { description: "the job, paused", schema: jobSchema } },
    errors: JOB_ACTION_ERRORS,
  },
  ResumeJob: {
    summary: "Resume a paused job",
    tag: "jobs",
    responses: { 200: { description: "the job, in whatever status now applies", schema: jobSchema } },
    errors: JOB_ACTION_ERRORS,
  },
  ListLogs: {
    summary: "A job's log: the lines its tasks wrote and its lifecycle lines",
    tag: "jobs",
    query: listLogsQuerySchema,
    parameters: {
      ...PAGE_PARAMETERS,
      attempt: "only this attempt's lines",
      level: "only lines of this level",
    },
    responses: { 200: { description: "a page of log lines, in time order", schema: logPageSchema } },
    errors: ["not_found"],
  },
  ListAttempts: {
    summary: "A job's attempts",
    tag: "jobs",
    query: pageQuerySchema,
    parameters: PAGE_PARAMETERS,
    responses: { 200: { description: "a page of attempts", schema: attemptPageSchema } },
    errors: ["not_found"],
  },
  ListTransitions: {
    summary: "Every status change of a job",
    tag: "jobs",
    query: pageQuerySchema,
    parameters: PAGE_PARAMETERS,
    responses: { 200: { description: "a page of transitions", schema: transitionPageSchema } },
    errors: ["not_found"],
  },
  ListPools: {
    summary: "The pools, their capacity and nodes",
    tag: "queue",
    query: poolsQuerySchema,
    responses: { 200: { description: "every pool (one page)", schema: poolPageSchema } },
  },
  GetPolicy: {
    summary: "The scheduling policy (admin)",
    tag: "admin",
    responses: { 200: { description: "the policy in force", schema: policyViewSchema } },
    errors: ["forbidden"],
  },
  PutPolicy: {
    summary: "Replace the scheduling policy (admin)",
    description: "Takes effect at the next scheduling pass.",
    tag: "admin",
    body: policySchema,
    responses: { 200: { description: "the policy now in force", schema: policyViewSchema } },
    errors: ["forbidden"],
  },
  GetQuota: {
    summary: "A principal's quota: limits, usage, what remains (self or admin)",
    tag: "admin",
    responses: { 200: { description: "the quota", schema: quotaViewSchema } },
    errors: ["forbidden"],
  },
  PutQuota: {
    summary: "Replace a principal's quota limits (admin)",
    tag: "admin",
    body: quotaLimitsSchema,
    responses: { 200: { description: "the quota with its new limits", schema: quotaViewSchema } },
    errors: ["forbidden"],
  },
  GetStats: {
    summary: "System statistics: counts, throughput, wait and run percentiles, per pool, type and owner",
    description:
      "Read from pre-aggregated items, whatever the number of jobs (docs/stats.md). A user sees the " +
      "whole system's counts and their own owner row; byType and the other owners are for admins.",
    tag: "queue",
    query: statsQuerySchema,
    parameters: { window: "5m, 15m, 1h (default), 6h or 24h" },
    responses: { 200: { description: "the statistics over the window", schema: statsViewSchema } },
  },
  RetryJob: {
    summary: "Retry a failed, cancelled or escalated job",
    description:
      "The job gets a new attempt budget (attempt numbers go on) and goes back to queued, blocked or " +
      "scheduled as its dependencies and runAt say. The body is optional. 409 when the job is not " +
      "failed, cancelled or escalated; when its deadline has passed (send a new `deadline`); when the " +
      "job it escalated to has not ended; or when a dependency is itself cancelled or failed (retry " +
      'that one with `"dependents": true`). `dependents` also revives the jobs its cancellation ' +
      "cascaded to, transitively.",
    tag: "jobs",
    body: retryJobSchema,
    bodyOptional: true,
    responses: { 200: { description: "the job, retried", schema: jobSchema } },
    errors: JOB_ACTION_ERRORS,
  },
  CancelJobs: {
    summary: "Cancel one page of the jobs matching GET /jobs's filters",
    description:
      "The caller's jobs (admins: anyone's, or `filter.owner`'s), a page of `limit` at a time: send " +
      "the answer's nextCursor as `cursor` for the next page, as with GET /jobs. Each job is cancelled " +
      "alone (and, transitively, its dependents); one that cannot be is listed in `skipped` with the " +
      "reason, never an error.",
    tag: "jobs",
    body: bulkCancelSchema,
    responses: {
      200: { description: "the jobs acted on and skipped, and where to go on", schema: bulkResultSchema },
    },
    errors: ["forbidden"],
  },
  RetryJobs: {
    summary: "Retry one page of the jobs matching GET /jobs's filters",
    description:
      "As POST /jobs/cancel, with POST /jobs/{id}/retry's maxAttempts and dependents applied to each " +
      "job; a job that cannot be retried is listed in `skipped` with the reason (the 409's message).",
    tag: "jobs",
    body: bulkRetrySchema,
    responses: {
      200: { description: "the jobs acted on and skipped, and where to go on", schema: bulkResultSchema },
    },
    errors: ["forbidden"],
  },
  CreateSchedule: {
    summary: "Create a recurring schedule",
    description:
      "`job` is POST /jobs's body without dependsOn, runAt or deadline, checked now (a 400, never a " +
      "failure at fire time). The schedule fires at each cron time in `timezone`, as its owner.",
    tag: "schedules",
    body: createScheduleSchema,
    responses: { 201: { description: "the schedule, created", schema: scheduleViewSchema } },
    errors: ["unknown_type", "unsatisfiable_resources"],
  },
  ListSchedules: {
    summary: "List schedules",
    description: "The caller's schedules; an admin sees everyone's (and may filter by owner).",
    tag: "schedules",
    query: listSchedulesQuerySchema,
    parameters: { ...PAGE_PARAMETERS, owner: "admins: only this principal's schedules" },
    responses: { 200: { description: "a page of schedules", schema: schedulePageSchema } },
    errors: ["forbidden"],
  },
  GetSchedule: {
    summary: "Get a schedule, its next fire times and its last fires",
    tag: "schedules",
    responses: { 200: { description: "the schedule", schema: scheduleViewSchema } },
    errors: ["not_found"],
  },
  UpdateSchedule: {
    summary: "Change a schedule",
    description:
      "Any of its fields. A new cron, timezone or enabled starts it afresh from now (re-enabling does " +
      "not catch up); other changes keep its next fire. 409 when it kept changing under the write.",
    tag: "schedules",
    body: updateScheduleSchema,
    responses: { 200: { description: "the schedule, changed", schema: scheduleViewSchema } },
    errors: ["not_found", "invalid_transition", "unknown_type", "unsatisfiable_resources"],
  },
  DeleteSchedule: {
    summary: "Delete a schedule",
    description: "204 with no body. The jobs it fired stay.",
    tag: "schedules",
    responses: { 204: { description: "deleted" } },
    errors: ["not_found", "invalid_transition"],
  },
  TriggerSchedule: {
    summary: "Fire a schedule once, now",
    description:
      "Whatever the cron says and whether or not the schedule is enabled; its next cron fire is " +
      'unchanged, and the fire is recorded in lastFires with `trigger: "manual"`. 201 with the job ' +
      "submitted; 200 with the skipped fire when overlap=skip holds it back; a refused submission " +
      "(maxQueuedJobs: 429, a type or pool gone: 400, a priority above maxPriority: 403) answers its " +
      "error after the refused fire is recorded. With an Idempotency-Key, a retry answers the first " +
      "trigger's job with 200 and Idempotent-Replayed: true.",
    tag: "schedules",
    headers: { "Idempotency-Key": IDEMPOTENCY_KEY },
    responses: {
      201: { description: "the job the fire submitted", schema: jobSchema },
      200: {
        description:
          "the job an earlier trigger with this key submitted (Idempotent-Replayed: true), or the " +
          "fire overlap=skip held back",
        schema: triggerAnswerSchema,
        headers: REPLAYED,
      },
    },
    errors: ["not_found", "invalid_transition", "unknown_type", "unsatisfiable_resources", "forbidden"],
  },
  DrainNode: {
    summary: "Drain a worker node (admin): it takes no new work, finishes what it runs, then leaves",
    description:
      "The node becomes `draining` at once, with `drainedBy` and `drainedAt`; the scheduler books " +
      "nothing more on it, and its worker notices on its next node heartbeat, stops taking messages, " +
      "lets its running attempts finish and deregisters (the node then leaves GET /pools). Jobs booked " +
      "on it but not started are taken by the pool's other nodes. In AWS the ECS service replaces the " +
      "exited task, which registers as a new node. Draining a node that already drains answers 200 and " +
      "changes nothing; a lost node answers 409 `invalid_transition`.",
    tag: "admin",
    responses: {
      202: { description: "the node, now draining", schema: nodeViewSchema },
      200: { description: "the node, which was already draining", schema: nodeViewSchema },
    },
    errors: ["forbidden", "not_found", "invalid_transition"],
  },
  CreateToken: {
    summary: "Create an API token (admin)",
    description:
      "201 with the token's id and metadata and `token`, the secret itself: shown in this answer " +
      "only (the server keeps its SHA-256 hash), so store it now. A user's request is a 403.",
    tag: "admin",
    body: createTokenSchema,
    responses: { 201: { description: "the token, created, with its secret", schema: createdTokenSchema } },
    errors: ["forbidden"],
  },
  ListTokens: {
    summary: "List API tokens (admin)",
    description:
      "Every token ever issued, oldest first, revoked ones included (revokedAt set). Never a " +
      "secret nor its hash.",
    tag: "admin",
    query: pageQuerySchema,
    parameters: PAGE_PARAMETERS,
    responses: { 200: { description: "a page of tokens", schema: tokenPageSchema } },
    errors: ["forbidden"],
  },
  RevokeToken: {
    summary: "Revoke an API token (admin)",
    description:
      "The token is refused from its next request on (in AWS once API Gateway's cached decision " +
      "for it expires: up to the authorizer cache TTL, 5 min by default). Idempotent: revoking a " +
      "revoked token answers 200 with its first revokedAt. An unknown id is a 404.",
    tag: "admin",
    responses: { 200: { description: "the token, revoked", schema: tokenViewSchema } },
    errors: ["forbidden", "not_found"],
  },
  ListDependents: {
    summary: "The jobs that depend on a job, with each edge's state",
    description:
      "The reverse of dependsOn, oldest dependent first: each one's id, type, name, status, owner " +
      "and `met` (the job it waits on has completed). Visible as GET /jobs/{id} is; a dependent the " +
      "caller cannot see is left out of the page.",
    tag: "jobs",
    query: pageQuerySchema,
    parameters: PAGE_PARAMETERS,
    responses: { 200: { description: "a page of dependents", schema: dependentPageSchema } },
    errors: ["not_found"],
  },
  ListChildren: {
    summary: "An array job's children, in index order",
    description:
      'The children of a job submitted with `array` (docs/admin-api.md, "Array jobs"), each a ' +
      "job with `arrayIndex` and `arrayParentId`; their ids are `<parent id>-<index>`. Any other " +
      "job has none: an empty page. Visible as GET /jobs/{id} is.",
    tag: "jobs",
    query: pageQuerySchema,
    parameters: PAGE_PARAMETERS,
    responses: { 200: { description: "a page of child jobs", schema: jobPageSchema } },
    errors: ["not_found"],
  },
  ExportState: {
    summary: "Export jobq's state, a page at a time (admin)",
    description:
      "NDJSON (application/x-ndjson), one object per line with a `kind`: a `header` line (format " +
      "and version) first on the first page, then `job` (the job as stored, payload included), " +
      "`result`, `attempt`, `transition`, `log`, `dependency`, `dependent`, and after the jobs " +
      '`schedule`, `policy`, `quota` and `audit` lines; the page\'s last line is `{"kind":"cursor",' +
      '"nextCursor":...}` (also the x-jobq-next-cursor header), null at the end. API tokens are ' +
      "not exported. `limit` bounds the items scanned per page, not the lines answered (items " +
      "that are not exported, such as idempotency claims, are read and dropped). A user's " +
      "request is a 403; a cursor this server did not write is a 400.",
    tag: "admin",
    query: z.strictObject({
      cursor: z.string().optional(),
      limit: z.number().int().min(1).max(1000).optional(),
    }),
    parameters: { limit: "items scanned per page, 1..1000 (default 200)", cursor: PAGE_PARAMETERS.cursor },
    responses: {
      200: {
        description: "one page of the export",
        schema: exportLineSchema,
        contentType: "application/x-ndjson",
        headers: { "x-jobq-next-cursor": "the next page's cursor; absent on the last page" },
      },
    },
    errors: ["forbidden"],
  },
  ImportState: {
    summary: "Import lines of an export (admin)",
    description:
      "NDJSON lines of GET /admin/export, at most 2,000 per request, in any order (header and " +
      "cursor lines are ignored). Ids are kept; each record is written only where nothing with " +
      "its key exists, so importing the same lines again changes nothing and counts them as " +
      "`skipped`. Every line is checked first: any bad line is a 400 naming its line number, and " +
      "nothing of the request is written. Jobs the old stack had dispatched or running come back " +
      "`queued` (their running attempt `lost`, not counted against maxAttempts) with a transition " +
      "saying so; every unfinished job but a paused one gets a lifecycle execution.",
    tag: "admin",
    body: exportLineSchema,
    bodyContentType: "application/x-ndjson",
    responses: { 200: { description: "the counts per kind", schema: importSummarySchema } },
    errors: ["forbidden"],
  },
  ListAudit: {
    summary: "The audit trail: changes to policy, quotas, tokens, schedules, node drains (admin, auditor)",
    description:
      "Newest first: who changed what, when, and the thing before and after (never a secret nor a " +
      "token hash). `kind` keeps one kind of change; `since` the changes at or after a time. Records " +
      "are kept 400 days. Users and readers get 403.",
    tag: "admin",
    query: listAuditQuerySchema,
    parameters: {
      ...PAGE_PARAMETERS,
      kind: "policy | quota | token | schedule | node | circuit",
      since: "ISO-8601 time",
    },
    responses: { 200: { description: "a page of audit records", schema: auditPageSchema } },
    errors: ["forbidden"],
  },
  ListCircuits: {
    summary: "Circuit breakers per task type and their state (admin)",
    description:
      "Every breaker written so far (one per type, or per type and owner with scope `type+owner`), " +
      "by key: `closed`, `open` (no job of the type is admitted until `halfOpensAt`) or `half_open` " +
      "(one probe job is admitted; its success closes the breaker, its failure opens it again). " +
      "`history=true` adds the breakers' changes of state, newest first (kept 30 days); `type` and " +
      "`owner` keep one breaker's. Users get 403.",
    tag: "admin",
    query: listCircuitsQuerySchema,
    parameters: {
      history: "true: include the history",
      type: "with history: one breaker's changes",
      owner: "with history and type: the breaker of that type and owner",
      limit: "history records, 1..500 (default 100)",
    },
    responses: {
      200: { description: "the breakers, and their history when asked", schema: circuitListSchema },
    },
    errors: ["forbidden"],
  },
  ResetCircuit: {
    summary: "Close a circuit breaker (admin)",
    description:
      "Closes the breaker of `type` (with `?owner=` the one of that type and owner, scope `type+owner`) " +
      "whatever its state, and empties its failure window; its jobs are admitted from the next pass. " +
      "Recorded as a `reset` in its history and published as a Circuit State Change event. 404 when " +
      "no such breaker was ever written. Users get 403.",
    tag: "admin",
    query: resetCircuitQuerySchema,
    parameters: { owner: "the owner of a `type+owner` breaker" },
    responses: { 200: { description: "the breaker, closed", schema: circuitViewSchema } },
    errors: ["forbidden", "not_found"],
  },
};

// The views app/ returns, tied to the schemas the document publishes (core/api-schemas.ts has
// the ones for core's types): a field added on one side only fails `npx tsc`.
const conformance: [
  Conforms<z.output<typeof jobViewSchema>, JobView>,
  Conforms<z.output<typeof nodeViewSchema>, NodeView>,
  Conforms<z.output<typeof poolViewSchema>, PoolView>,
  Conforms<z.output<typeof poolPageSchema>, ListPage<PoolView>>,
  Conforms<z.output<typeof queuedEntrySchema>, QueuedEntry>,
  Conforms<z.output<typeof queueSnapshotSchema>, QueueSnapshot>,
  Conforms<z.output<typeof policyViewSchema>, PolicyView>,
  Conforms<z.output<typeof statsViewSchema>, StatsView>,
  Conforms<z.output<typeof statsViewSchema.shape.counts>, StatsView["counts"]>,
  Conforms<z.output<typeof statsViewSchema.shape.throughput>, StatsView["throughput"]>,
  Conforms<z.output<typeof figuresViewSchema>, FiguresView>,
  Conforms<z.output<typeof poolStatsViewSchema>, PoolStatsView>,
  Conforms<z.output<typeof poolStatsViewSchema.shape.utilization>, PoolStatsView["utilization"]>,
  Conforms<z.output<typeof ownerRowSchema>, OwnerRow>,
  Conforms<z.output<typeof seriesPointSchema>, SeriesPoint>,
  Conforms<z.output<typeof bulkResultSchema>, BulkResult>,
  Conforms<z.output<typeof bulkResultSchema.shape.skipped.element>, BulkResult["skipped"][number]>,
  Conforms<z.output<typeof scheduleViewSchema>, ScheduleView>,
  Conforms<z.output<typeof schedulePageSchema>, ListPage<ScheduleView>>,
  Conforms<z.output<typeof circuitViewSchema>, CircuitView>,
  Conforms<z.output<typeof circuitListSchema>, CircuitListView>,
] = [
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
  true,
];
void conformance;
