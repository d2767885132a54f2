import type { z } from "zod";
import type {
  attemptSchema,
  auditRecordSchema,
  batchResponseSchema,
  bulkResultSchema,
  circuitListSchema,
  circuitViewSchema,
  createdTokenSchema,
  dependentSchema,
  healthSchema,
  jobSchema,
  jobViewSchema,
  logLineSchema,
  nodeViewSchema,
  policyViewSchema,
  poolViewSchema,
  queueSnapshotSchema,
  quotaViewSchema,
  scheduleFireSchema,
  scheduleViewSchema,
  statsViewSchema,
  tokenViewSchema,
  transitionSchema,
} from "../core/api-schemas";
import type { AuditKind } from "../core/audit";
import type { ErrorCode } from "../core/errors";
import type { ExportLine, importSummarySchema } from "../core/export";
import type {
  bulkCancelSchema,
  bulkRetrySchema,
  JobStatus,
  LogLevel,
  PriorityName,
  retryJobSchema,
  submitBatchSchema,
  submitJobSchema,
  updateJobSchema,
} from "../core/job";
import type { PolicyInput } from "../core/policy";
import type { QuotaLimitsInput } from "../core/quota";
import type { createScheduleSchema, updateScheduleSchema } from "../core/schedule";
import type { StatsWindow } from "../core/stats";
import type { createTokenSchema } from "../core/tokens";

/**
 * A small typed client for the jobq HTTP API: one method per route. The types are the zod
 * schemas' own (core/api-schemas.ts for answers, core/job.ts for requests), the same schemas the
 * OpenAPI document is generated from, so there is no generation step to forget and the compiler
 * sees a change to the contract at once. Imports are type-only: at run time this is fetch alone.
 * The stream (WebSocket) client is client/stream.ts.
 */

export type Job = z.output<typeof jobSchema>;
export type JobView = z.output<typeof jobViewSchema>;
export type Transition = z.output<typeof transitionSchema>;
export type Attempt = z.output<typeof attemptSchema>;
export type LogLine = z.output<typeof logLineSchema>;
export type BatchResponse = z.output<typeof batchResponseSchema>;
export type Pool = z.output<typeof poolViewSchema>;
export type PoolNode = z.output<typeof nodeViewSchema>;
export type QueueSnapshot = z.output<typeof queueSnapshotSchema>;
export type PolicyView = z.output<typeof policyViewSchema>;
export type QuotaView = z.output<typeof quotaViewSchema>;
export type Health = z.output<typeof healthSchema>;
export type SubmitJobRequest = z.input<typeof submitJobSchema>;
export type SubmitBatchRequest = z.input<typeof submitBatchSchema>;
export type UpdateJobRequest = z.input<typeof updateJobSchema>;
export type Stats = z.output<typeof statsViewSchema>;
export type BulkResult = z.output<typeof bulkResultSchema>;
export type Schedule = z.output<typeof scheduleViewSchema>;
export type ScheduleFire = z.output<typeof scheduleFireSchema>;
export type RetryJobRequest = z.input<typeof retryJobSchema>;
export type BulkCancelRequest = z.input<typeof bulkCancelSchema>;
export type BulkRetryRequest = z.input<typeof bulkRetrySchema>;
export type CreateScheduleRequest = z.input<typeof createScheduleSchema>;
export type UpdateScheduleRequest = z.input<typeof updateScheduleSchema>;
export type Token = z.output<typeof tokenViewSchema>;
export type CreatedToken = z.output<typeof createdTokenSchema>;
export type CreateTokenRequest = z.input<typeof createTokenSchema>;
export type Dependent = z.output<typeof dependentSchema>;
export type AuditRecord = z.output<typeof auditRecordSchema>;
export type Circuit = z.output<typeof circuitViewSchema>;
export type CircuitList = z.output<typeof circuitListSchema>;

export interface ListCircuitsParams {
  /** Include the breakers' changes of state, newest first. */
  readonly history?: boolean;
  readonly type?: string;
  readonly owner?: string;
  readonly limit?: number;
}

export interface ListAuditParams extends PageParams {
  readonly kind?: AuditKind;
  /** ISO-8601: changes at or after this time. */
  readonly since?: string;
}
export type { ErrorCode, JobStatus, PolicyInput, QuotaLimitsInput, StatsWindow };

export interface Page<T> {
  readonly items: T[];
  readonly nextCursor: string | null;
}

type QueryValue = string | number | boolean | Date | readonly string[];

/** Filters of GET /jobs; a name the server does not know is sent as given (and refused with a 400). */
export interface ListJobsParams {
  readonly status?: JobStatus | readonly JobStatus[];
  readonly type?: string;
  /** Admins only. */
  readonly owner?: string;
  readonly priority?: PriorityName | number;
  /** `key:value` */
  readonly tag?: string;
  readonly createdAfter?: string | Date;
  readonly createdBefore?: string | Date;
  /** Jobs changed after this instant: how a stream client catches up after a reconnect. */
  readonly updatedSince?: string | Date;
  readonly limit?: number;
  readonly cursor?: string;
  readonly [filter: string]: QueryValue | undefined;
}

export interface PageParams {
  readonly limit?: number;
  readonly cursor?: string;
}

export interface ListLogsParams extends PageParams {
  readonly attempt?: number;
  readonly level?: LogLevel;
}

export interface ListSchedulesParams extends PageParams {
  /** Admins only. */
  readonly owner?: string;
}

/**
 * What POST /schedules/{id}/trigger did: `submitted` (201) or `replayed` (200, an earlier trigger
 * with the same Idempotency-Key) with the job, or `skipped` (200) with the fire overlap=skip held
 * back. A refused submission is a JobqApiError, as from POST /jobs.
 */
export type TriggerOutcome =
  | { readonly outcome: "submitted" | "replayed"; readonly job: Job }
  | { readonly outcome: "skipped"; readonly fire: ScheduleFire };

export interface SubmitOptions {
  /** Sent as `Idempotency-Key`: the same key within 24 h answers the original job(s). */
  readonly idempotencyKey?: string;
}

export interface JobqClientOptions {
  /** The API's base URL, e.g. `http://127.0.0.1:3000` or the stage URL in AWS (`https://…/v1/`). */
  readonly url: string;
  /** The bearer token; GET /health and GET /openapi.json need none. */
  readonly token?: string;
  /** @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}

/** The API answered with an error (API.md's error format). */
export class JobqApiError extends Error {
  override readonly name = "JobqApiError";
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details: unknown,
    /** From `Retry-After` (429): seconds to wait before sending again. */
    readonly retryAfterSeconds: number | undefined,
  ) {
    super(message);
  }
}

/** No answer at all: the API could not be reached (DNS, connection refused, reset, TLS). */
export class JobqUnreachableError extends Error {
  override readonly name = "JobqUnreachableError";
  constructor(
    readonly url: string,
    options: { cause: unknown },
  ) {
    super(
      `jobq API unreachable at ${url}: ${(options.cause as Error)?.message ?? String(options.cause)}`,
      options,
    );
  }
}

/** What a status means when the body is not the contract's error (a proxy's own page, say). */
const CODE_BY_STATUS: Readonly<Record<number, ErrorCode>> = {
  400: "validation_failed",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  409: "invalid_transition",
  413: "payload_too_large",
  429: "too_many_requests",
};

interface CallOptions {
  readonly query?: Readonly<Record<string, QueryValue | undefined>>;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface Answer<T> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: T;
}

export class JobqClient {
  readonly url: string;
  private readonly token: string | undefined;
  private readonly fetch: typeof fetch;

  constructor(options: JobqClientOptions) {
    this.url = options.url.replace(/\/+$/, "");
    this.token = options.token;
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** GET /health (no auth). */
  async health(): Promise<Health> {
    return (await this.call<Health>("GET", "/health")).body;
  }

  /** GET /openapi.json (no auth): the OpenAPI 3.1 document. */
  async openapi(): Promise<Record<string, unknown>> {
    return (await this.call<Record<string, unknown>>("GET", "/openapi.json")).body;
  }

  /** POST /jobs */
  async submit(job: SubmitJobRequest, options: SubmitOptions = {}): Promise<Job> {
    return (await this.submitAnswer(job, options)).body;
  }

  /** POST /jobs, with the status: 201 created, 200 an Idempotency-Key replay. */
  submitAnswer(job: SubmitJobRequest, options: SubmitOptions = {}): Promise<Answer<Job>> {
    return this.call<Job>("POST", "/jobs", { body: job, headers: idempotency(options) });
  }

  /** POST /jobs/batch: a DAG, all or none. */
  async submitBatch(batch: SubmitBatchRequest, options: SubmitOptions = {}): Promise<BatchResponse> {
    return (
      await this.call<BatchResponse>("POST", "/jobs/batch", { body: batch, headers: idempotency(options) })
    ).body;
  }

  /** GET /jobs/{id} */
  async getJob(id: string): Promise<JobView> {
    return (await this.call<JobView>("GET", `/jobs/${segment(id)}`)).body;
  }

  /** GET /jobs: one page, newest first. */
  async listJobs(params: ListJobsParams = {}): Promise<Page<Job>> {
    return (await this.call<Page<Job>>("GET", "/jobs", { query: params })).body;
  }

  /** Every page of GET /jobs, following nextCursor. */
  jobPages(params: ListJobsParams = {}): AsyncGenerator<Page<Job>> {
    return pages((cursor) => this.listJobs({ ...params, cursor }), params.cursor);
  }

  /** Every job GET /jobs lists, across pages. */
  async *jobs(params: ListJobsParams = {}): AsyncGenerator<Job> {
    for await (const page of this.jobPages(params)) yield* page.items;
  }

  /** PATCH /jobs/{id}/cancel: the job and, transitively, its dependents. */
  async cancel(id: string): Promise<Job> {
    return (await this.call<Job>("PATCH", `/jobs/${segment(id)}/cancel`)).body;
  }

  /** POST /jobs/{id}/pause */
  async pause(id: string): Promise<Job> {
    return (await this.call<Job>("POST", `/jobs/${segment(id)}/pause`)).body;
  }

  /** POST /jobs/{id}/resume */
  async resume(id: string): Promise<Job> {
    return (await this.call<Job>("POST", `/jobs/${segment(id)}/resume`)).body;
  }

  /** PATCH /jobs/{id} */
  async updateJob(id: string, change: UpdateJobRequest): Promise<Job> {
    return (await this.call<Job>("PATCH", `/jobs/${segment(id)}`, { body: change })).body;
  }

  /** PATCH /jobs/{id} `{priority}` */
  setPriority(id: string, priority: PriorityName | number): Promise<Job> {
    return this.updateJob(id, { priority });
  }

  /** PATCH /jobs/{id} `{before}` (admins): a queued job just ahead of another queued job. */
  moveBefore(id: string, before: string): Promise<Job> {
    return this.updateJob(id, { before });
  }

  /** POST /jobs/{id}/retry: a failed, cancelled or escalated job back with a new attempt budget. */
  async retry(id: string, options?: RetryJobRequest): Promise<Job> {
    return (await this.call<Job>("POST", `/jobs/${segment(id)}/retry`, { body: options })).body;
  }

  /** POST /jobs/cancel: one page of the matching jobs cancelled; go on with `cursor: nextCursor`. */
  async cancelJobs(request: BulkCancelRequest = {}): Promise<BulkResult> {
    return (await this.call<BulkResult>("POST", "/jobs/cancel", { body: request })).body;
  }

  /** POST /jobs/retry: one page of the matching jobs retried; go on with `cursor: nextCursor`. */
  async retryJobs(request: BulkRetryRequest = {}): Promise<BulkResult> {
    return (await this.call<BulkResult>("POST", "/jobs/retry", { body: request })).body;
  }

  /** GET /stats over a window (the server's default: 1h). */
  async stats(window?: StatsWindow): Promise<Stats> {
    return (await this.call<Stats>("GET", "/stats", { query: { window } })).body;
  }

  /** POST /schedules */
  async createSchedule(schedule: CreateScheduleRequest): Promise<Schedule> {
    return (await this.call<Schedule>("POST", "/schedules", { body: schedule })).body;
  }

  /** GET /schedules: one page. */
  async listSchedules(params: ListSchedulesParams = {}): Promise<Page<Schedule>> {
    return (await this.call<Page<Schedule>>("GET", "/schedules", { query: { ...params } })).body;
  }

  /** Every page of GET /schedules, following nextCursor. */
  schedulePages(params: ListSchedulesParams = {}): AsyncGenerator<Page<Schedule>> {
    return pages((cursor) => this.listSchedules({ ...params, cursor }), params.cursor);
  }

  /** Every schedule GET /schedules lists, across pages. */
  async *schedules(params: ListSchedulesParams = {}): AsyncGenerator<Schedule> {
    for await (const page of this.schedulePages(params)) yield* page.items;
  }

  /** GET /schedules/{id} */
  async getSchedule(id: string): Promise<Schedule> {
    return (await this.call<Schedule>("GET", `/schedules/${segment(id)}`)).body;
  }

  /** PATCH /schedules/{id}: the fields given change. */
  async updateSchedule(id: string, patch: UpdateScheduleRequest): Promise<Schedule> {
    return (await this.call<Schedule>("PATCH", `/schedules/${segment(id)}`, { body: patch })).body;
  }

  /** DELETE /schedules/{id}: the jobs it fired stay. */
  async deleteSchedule(id: string): Promise<void> {
    await this.call<null>("DELETE", `/schedules/${segment(id)}`);
  }

  /** POST /schedules/{id}/trigger: fire once now. */
  async triggerSchedule(id: string, options: SubmitOptions = {}): Promise<TriggerOutcome> {
    const answer = await this.call<Job | ScheduleFire>("POST", `/schedules/${segment(id)}/trigger`, {
      headers: idempotency(options),
    });
    const body = answer.body;
    if ("skipped" in body) return { outcome: "skipped", fire: body };
    if ("id" in body) return { outcome: answer.status === 201 ? "submitted" : "replayed", job: body };
    throw new Error(`POST /schedules/${id}/trigger answered ${answer.status} with neither a job nor a fire`);
  }

  /** GET /jobs/{id}/logs */
  async logs(id: string, params: ListLogsParams = {}): Promise<Page<LogLine>> {
    return (await this.call<Page<LogLine>>("GET", `/jobs/${segment(id)}/logs`, { query: { ...params } }))
      .body;
  }

  /** GET /jobs/{id}/attempts */
  async attempts(id: string, params: PageParams = {}): Promise<Page<Attempt>> {
    return (await this.call<Page<Attempt>>("GET", `/jobs/${segment(id)}/attempts`, { query: { ...params } }))
      .body;
  }

  /** GET /jobs/{id}/transitions */
  async transitions(id: string, params: PageParams = {}): Promise<Page<Transition>> {
    return (
      await this.call<Page<Transition>>("GET", `/jobs/${segment(id)}/transitions`, { query: { ...params } })
    ).body;
  }

  /** GET /queue */
  async queue(params: { readonly pool?: string } = {}): Promise<QueueSnapshot> {
    return (await this.call<QueueSnapshot>("GET", "/queue", { query: params })).body;
  }

  /** GET /pools; `lost: true` lists nodes marked lost too. */
  async pools(params: { readonly lost?: boolean } = {}): Promise<Pool[]> {
    return (await this.call<Page<Pool>>("GET", "/pools", { query: params })).body.items;
  }

  /** GET /admin/policy (admin) */
  async getPolicy(): Promise<PolicyView> {
    return (await this.call<PolicyView>("GET", "/admin/policy")).body;
  }

  /** PUT /admin/policy (admin): replaces the whole policy. */
  async putPolicy(policy: PolicyInput): Promise<PolicyView> {
    return (await this.call<PolicyView>("PUT", "/admin/policy", { body: policy })).body;
  }

  /** GET /quotas/{principal} (self or admin) */
  async getQuota(principal: string): Promise<QuotaView> {
    return (await this.call<QuotaView>("GET", `/quotas/${segment(principal)}`)).body;
  }

  /** PUT /quotas/{principal} (admin): replaces the limits. */
  async putQuota(principal: string, limits: QuotaLimitsInput): Promise<QuotaView> {
    return (await this.call<QuotaView>("PUT", `/quotas/${segment(principal)}`, { body: limits })).body;
  }

  /** POST /admin/tokens (admin): the answer's `token` is the secret, shown this once. */
  async createToken(request: CreateTokenRequest): Promise<CreatedToken> {
    return (await this.call<CreatedToken>("POST", "/admin/tokens", { body: request })).body;
  }

  /** GET /admin/tokens (admin): one page, oldest first; never a secret. */
  async listTokens(params: PageParams = {}): Promise<Page<Token>> {
    return (await this.call<Page<Token>>("GET", "/admin/tokens", { query: { ...params } })).body;
  }

  /** Every token GET /admin/tokens lists, across pages. */
  async *tokens(params: PageParams = {}): AsyncGenerator<Token> {
    for await (const page of pages((cursor) => this.listTokens({ ...params, cursor }), params.cursor))
      yield* page.items;
  }

  /** DELETE /admin/tokens/{id} (admin): idempotent; the token with its revokedAt. */
  async revokeToken(id: string): Promise<Token> {
    return (await this.call<Token>("DELETE", `/admin/tokens/${segment(id)}`)).body;
  }

  /**
   * GET /admin/export (admin): one page of the export as NDJSON text (its lines end in "\n"; the
   * last is the cursor line) and the next page's cursor, null at the end.
   */
  async exportPage(params: PageParams = {}): Promise<{ text: string; nextCursor: string | null }> {
    const text = await this.callText("GET", "/admin/export", { query: { ...params } });
    const last = text.trimEnd().split("\n").at(-1) ?? "";
    const trailer = JSON.parse(last) as Partial<Extract<ExportLine, { kind: "cursor" }>>;
    if (trailer.kind !== "cursor") throw new Error("the export page does not end in its cursor line");
    return { text, nextCursor: trailer.nextCursor ?? null };
  }

  /** POST /admin/import (admin): NDJSON lines of an export (at most 2,000); the counts per kind. */
  async importLines(ndjson: string): Promise<z.output<typeof importSummarySchema>> {
    const text = await this.callText("POST", "/admin/import", {
      body: ndjson,
      headers: { "content-type": "application/x-ndjson" },
    });
    return JSON.parse(text) as z.output<typeof importSummarySchema>;
  }

  /** A route whose body is not JSON (NDJSON): the answer's text of a 2xx, a JobqApiError otherwise. */
  private async callText(
    method: string,
    path: string,
    options: { query?: CallOptions["query"]; body?: string; headers?: Record<string, string> },
  ): Promise<string> {
    const url = `${this.url}${path}${queryString(options.query)}`;
    const headers: Record<string, string> = {
      accept: "application/x-ndjson, application/json",
      ...options.headers,
    };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    let response: Response;
    let text: string;
    try {
      response = await this.fetch(url, { method, headers, body: options.body });
      text = await response.text();
    } catch (error) {
      throw new JobqUnreachableError(url, { cause: error });
    }
    if (!response.ok) throw apiError(response, text);
    return text;
  }

  /** GET /admin/audit (admin, auditor): one page of changes, newest first. */
  async listAudit(params: ListAuditParams = {}): Promise<Page<AuditRecord>> {
    return (await this.call<Page<AuditRecord>>("GET", "/admin/audit", { query: { ...params } })).body;
  }

  /** GET /jobs/{id}/dependents: one page of the jobs waiting on this one, each edge's `met`. */
  async dependents(id: string, params: PageParams = {}): Promise<Page<Dependent>> {
    return (
      await this.call<Page<Dependent>>("GET", `/jobs/${segment(id)}/dependents`, { query: { ...params } })
    ).body;
  }

  /** GET /jobs/{id}/children: one page of an array job's children, in index order. */
  async children(id: string, params: PageParams = {}): Promise<Page<Job>> {
    return (await this.call<Page<Job>>("GET", `/jobs/${segment(id)}/children`, { query: { ...params } }))
      .body;
  }

  /** GET /admin/circuits (admin): the circuit breakers per task type, and their history if asked. */
  async listCircuits(params: ListCircuitsParams = {}): Promise<CircuitList> {
    return (await this.call<CircuitList>("GET", "/admin/circuits", { query: { ...params } })).body;
  }

  /** POST /admin/circuits/{type}/reset (admin): closes the type's breaker (or the owner's). */
  async resetCircuit(type: string, owner?: string): Promise<Circuit> {
    return (
      await this.call<Circuit>("POST", `/admin/circuits/${segment(type)}/reset`, {
        query: owner === undefined ? {} : { owner },
      })
    ).body;
  }

  /**
   * POST /pools/{pool}/nodes/{id}/drain (admin): the node takes no new work, finishes what it
   * runs, then leaves. `started` is false when it was already draining.
   */
  async drainNode(pool: string, nodeId: string): Promise<{ started: boolean; node: PoolNode }> {
    const answer = await this.call<PoolNode>(
      "POST",
      `/pools/${segment(pool)}/nodes/${segment(nodeId)}/drain`,
    );
    return { started: answer.status === 202, node: answer.body };
  }

  /**
   * Any route, for those this client has no method for yet: the parsed JSON answer of a 2xx, a
   * JobqApiError otherwise.
   */
  async call<T>(method: string, path: string, options: CallOptions = {}): Promise<Answer<T>> {
    const url = `${this.url}${path}${queryString(options.query)}`;
    const headers: Record<string, string> = { accept: "application/json", ...options.headers };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers["content-type"] = "application/json";
    }
    let response: Response;
    let text: string;
    try {
      response = await this.fetch(url, { method, headers, body });
      text = await response.text();
    } catch (error) {
      throw new JobqUnreachableError(url, { cause: error });
    }
    if (!response.ok) throw apiError(response, text);
    return {
      status: response.status,
      headers: response.headers,
      body: (text === "" ? null : JSON.parse(text)) as T,
    };
  }
}

function idempotency(options: SubmitOptions): Record<string, string> {
  return options.idempotencyKey === undefined ? {} : { "Idempotency-Key": options.idempotencyKey };
}

/** An id as one path segment, whatever it holds. */
function segment(value: string): string {
  return encodeURIComponent(value);
}

function queryString(query: Readonly<Record<string, QueryValue | undefined>> | undefined): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value === undefined) continue;
    if (value instanceof Date) search.set(name, value.toISOString());
    else if (Array.isArray(value)) search.set(name, value.join(","));
    else search.set(name, String(value));
  }
  const text = search.toString();
  return text === "" ? "" : `?${text}`;
}

function apiError(response: Response, text: string): JobqApiError {
  let error: { code?: unknown; message?: unknown; details?: unknown } | undefined;
  try {
    const parsed = JSON.parse(text) as { error?: typeof error };
    error = typeof parsed?.error === "object" && parsed.error !== null ? parsed.error : undefined;
  } catch {
    error = undefined;
  }
  const code =
    typeof error?.code === "string"
      ? (error.code as ErrorCode)
      : (CODE_BY_STATUS[response.status] ?? (response.status >= 500 ? "internal" : "validation_failed"));
  const message =
    typeof error?.message === "string"
      ? error.message
      : `HTTP ${response.status} ${response.statusText}`.trim();
  const retryAfter = Number.parseInt(response.headers.get("retry-after") ?? "", 10);
  return new JobqApiError(
    response.status,
    code,
    message,
    error?.details,
    Number.isFinite(retryAfter) ? retryAfter : undefined,
  );
}

async function* pages<T>(
  read: (cursor: string | undefined) => Promise<Page<T>>,
  first: string | undefined,
): AsyncGenerator<Page<T>> {
  let cursor = first;
  do {
    const page = await read(cursor);
    yield page;
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
}
