import { z } from "zod";
import { PRIORITY_NAMES, type PriorityName } from "../core/job";
import { DEFAULT_POLICY, type Policy, policySchema } from "../core/policy";
import { DEFAULT_POOLS, type PoolConfig, poolsSchema } from "../core/pools";
import { DEFAULT_RETENTION_DAYS, type Retention } from "../core/retention";
import { RUNTIME_LIMITS, type RuntimeLimit } from "../core/runtime-limits";

/**
 * The handlers' and workers' configuration, read once at cold start; a bad value fails the cold
 * start loudly instead of a request quietly. With worker/config.ts (the worker's own variables)
 * the only place outside local/ that reads process.env.
 *
 * It lives in app/, below the adapters, because the use cases' composition roots (app/runtime.ts
 * and its siblings) build their clients from it and imports point down only (functions → app →
 * store/core; test/unit/layering.test.ts). The handlers import it through functions/config.ts.
 */
/** A whole number from the environment within its bounds (core/runtime-limits.ts). */
function limited(limit: RuntimeLimit) {
  return z.coerce.number().int().min(limit.min).max(limit.max);
}

const envSchema = z.object({
  JOBQ_JOBS_TABLE: z.string().min(1).default("jobq-Jobs"),
  JOBQ_TOKENS_TABLE: z.string().min(1).default("jobq-Tokens"),
  JOBQ_NODES_TABLE: z.string().min(1).default("jobq-Nodes"),
  JOBQ_POLICY_TABLE: z.string().min(1).default("jobq-Policy"),
  JOBQ_CONNECTIONS_TABLE: z.string().min(1).default("jobq-Connections"),
  /**
   * JSON policy (core/policy.ts) in force until an admin PUTs one to /admin/policy; unset: the
   * defaults. The local stack sets it from JOBQ_CONFIG's `policy`.
   */
  JOBQ_POLICY: z.string().optional(),
  /** Set by the local stack and the tests: the emulators on loopback. Unset in AWS. */
  JOBQ_DYNAMODB_ENDPOINT: z.url().optional(),
  JOBQ_SFN_ENDPOINT: z.url().optional(),
  JOBQ_SQS_ENDPOINT: z.url().optional(),
  JOBQ_EVENTS_ENDPOINT: z.url().optional(),
  AWS_REGION: z.string().min(1).default("us-east-1"),
  /** JSON array of pools (core/pools.ts); defaults to API.md's local pools. */
  JOBQ_POOLS: z.string().optional(),
  /** JSON array of allowed job types; unset or empty means any type is accepted. */
  JOBQ_TASK_TYPES: z.string().optional(),
  /**
   * The job lifecycle state machine. Unset: jobs are stored but no execution is started (the
   * API-only tests); the reconciler starts the missing executions once it is set.
   */
  JOBQ_STATE_MACHINE_ARN: z.string().min(1).optional(),
  /**
   * EventBridge bus that carries "Job State Change" events. Unset: events are not published (an
   * API-only setup, like the API tests); the scheduler's sweep still finds every job.
   */
  JOBQ_EVENT_BUS: z.string().min(1).optional(),
  /**
   * Which "Job State Change" events are published (`jobq:stateChangeEvents`): `all` (every status
   * change, docs/deploy.md) or `terminal` (completed, failed, cancelled, escalated). jobq's own
   * wake-ups ride the Jobs table's stream, so neither setting changes how jobs move.
   */
  JOBQ_STATE_CHANGE_EVENTS: z.enum(["all", "terminal"]).default("all"),
  /** JSON `{"<pool>": {"<tier>": "<queue url>"}}`: the SQS queue of each pool and priority tier. */
  JOBQ_QUEUES: z.string().optional(),
  /** How often a worker heartbeats a running attempt: every third of this. */
  JOBQ_HEARTBEAT_SECONDS: limited(RUNTIME_LIMITS.heartbeatSeconds).default(30),
  /**
   * Step Functions' backstop for an attempt: declared lost after this long without a heartbeat.
   * It covers the time a dispatched attempt waits in its queue for a worker, so it is about
   * queueing, not heartbeats; a worker that dies while running is found sooner, by its node
   * going silent (JOBQ_NODE_LOST_SECONDS, app/lost-attempts.ts).
   */
  JOBQ_LOST_AFTER_SECONDS: limited(RUNTIME_LIMITS.lostAfterSeconds).default(300),
  /** A node silent for this long is lost and its capacity leaves the pool. */
  JOBQ_NODE_LOST_SECONDS: limited(RUNTIME_LIMITS.nodeLostSeconds).default(30),
  /**
   * The web dashboard's origin in AWS (`https://<CloudFront domain>`): API answers carry
   * Access-Control-Allow-Origin for it. Unset locally, where the page and the API share an origin.
   */
  // A path or a trailing slash would never match the browser's Origin header, silently.
  JOBQ_CORS_ORIGIN: z
    .string()
    .regex(/^https?:\/\/[^/\s]+$/, "must be an origin: scheme and host, no path or trailing slash")
    .optional(),
  /** Days an ended job's transitions, logs, attempts and result are kept (docs/data-model.md#retention). */
  JOBQ_RETENTION_DAYS: limited(RUNTIME_LIMITS.retentionDays).default(DEFAULT_RETENTION_DAYS),
  /** Days an ended job itself is kept; unset: for good. */
  JOBQ_JOB_RETENTION_DAYS: limited(RUNTIME_LIMITS.jobRetentionDays).optional(),
});

const TIERS = Object.keys(PRIORITY_NAMES) as PriorityName[];
const queuesSchema = z.record(
  z.string(),
  z.partialRecord(z.enum(TIERS as [PriorityName, ...PriorityName[]]), z.string().min(1)),
);
export type QueueUrls = z.infer<typeof queuesSchema>;

export interface HandlerConfig {
  readonly jobsTable: string;
  readonly tokensTable: string;
  readonly nodesTable: string;
  readonly policyTable: string;
  /** Open connections of the job stream (WS /jobs/stream). */
  readonly connectionsTable: string;
  /** The policy in force while none is stored. */
  readonly defaultPolicy: Policy;
  readonly region: string;
  readonly dynamoEndpoint: string | undefined;
  readonly sfnEndpoint: string | undefined;
  readonly sqsEndpoint: string | undefined;
  readonly eventsEndpoint: string | undefined;
  readonly pools: readonly PoolConfig[];
  /** null: any job type is accepted. */
  readonly taskTypes: ReadonlySet<string> | null;
  readonly stateMachineArn: string | undefined;
  readonly eventBus: string | undefined;
  readonly stateChangeEvents: "all" | "terminal";
  readonly queues: QueueUrls;
  readonly heartbeatSeconds: number;
  readonly lostAfterSeconds: number;
  readonly nodeLostSeconds: number;
  /** The only cross-origin page allowed to read API answers; undefined: none (same origin only). */
  readonly corsOrigin: string | undefined;
  /** How long ended jobs and their history are kept. */
  readonly retention: Retention;
}

/**
 * A variable of the process configuration is malformed: thrown at cold start (a handler module's
 * import, the worker's start), never per request, and its message names every bad variable so
 * the function's init failure in CloudWatch says what to fix.
 */
export class ConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/** `name: problem` for each issue, the variable (and the path inside its JSON) first. */
function problemsOf(error: z.ZodError, variable?: string): string[] {
  return error.issues.map((issue) => {
    const path = [variable, ...issue.path.map(String)].filter((p) => p !== undefined && p !== "");
    return `${path.join(".") || "(environment)"}: ${issue.message}`;
  });
}

/** A JSON variable parsed and checked, or a ConfigError naming it. */
function jsonVariable<T>(name: string, raw: string, schema: z.ZodType<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    throw new ConfigError(`invalid environment: ${name} is not valid JSON (${(error as Error).message})`, {
      cause: error,
    });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new ConfigError(`invalid environment: ${problemsOf(parsed.error, name).join("; ")}`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}

export function readConfig(env: NodeJS.ProcessEnv = process.env): HandlerConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(`invalid environment: ${problemsOf(parsed.error).join("; ")}`, {
      cause: parsed.error,
    });
  }
  const e = parsed.data;
  const pools = e.JOBQ_POOLS ? jsonVariable("JOBQ_POOLS", e.JOBQ_POOLS, poolsSchema) : [...DEFAULT_POOLS];
  const types = e.JOBQ_TASK_TYPES
    ? jsonVariable("JOBQ_TASK_TYPES", e.JOBQ_TASK_TYPES, z.array(z.string()))
    : [];
  return {
    jobsTable: e.JOBQ_JOBS_TABLE,
    tokensTable: e.JOBQ_TOKENS_TABLE,
    nodesTable: e.JOBQ_NODES_TABLE,
    policyTable: e.JOBQ_POLICY_TABLE,
    connectionsTable: e.JOBQ_CONNECTIONS_TABLE,
    defaultPolicy: e.JOBQ_POLICY ? jsonVariable("JOBQ_POLICY", e.JOBQ_POLICY, policySchema) : DEFAULT_POLICY,
    region: e.AWS_REGION,
    dynamoEndpoint: e.JOBQ_DYNAMODB_ENDPOINT,
    sfnEndpoint: e.JOBQ_SFN_ENDPOINT,
    sqsEndpoint: e.JOBQ_SQS_ENDPOINT,
    eventsEndpoint: e.JOBQ_EVENTS_ENDPOINT,
    pools,
    taskTypes: types.length > 0 ? new Set(types) : null,
    stateMachineArn: e.JOBQ_STATE_MACHINE_ARN,
    eventBus: e.JOBQ_EVENT_BUS,
    stateChangeEvents: e.JOBQ_STATE_CHANGE_EVENTS,
    queues: e.JOBQ_QUEUES ? jsonVariable("JOBQ_QUEUES", e.JOBQ_QUEUES, queuesSchema) : {},
    heartbeatSeconds: e.JOBQ_HEARTBEAT_SECONDS,
    // Never below a heartbeat period: a live worker must always beat in time.
    lostAfterSeconds: Math.max(e.JOBQ_LOST_AFTER_SECONDS, e.JOBQ_HEARTBEAT_SECONDS),
    nodeLostSeconds: e.JOBQ_NODE_LOST_SECONDS,
    corsOrigin: e.JOBQ_CORS_ORIGIN,
    retention: { historyDays: e.JOBQ_RETENTION_DAYS, jobDays: e.JOBQ_JOB_RETENTION_DAYS ?? null },
  };
}

let cached: HandlerConfig | undefined;
/**
 * The process's configuration, parsed once. Every handler module asks for it (through its
 * context factory) at module scope, so in Lambda that first use is the init and a ConfigError
 * fails it; the local stack and the tests set the variables before they import a handler.
 */
export function config(): HandlerConfig {
  cached ??= readConfig();
  return cached;
}

/**
 * Where the job stream is: apart from config() because locally both URLs are known only once the
 * API server listens (on a free port in the tests), after other handlers have read config().
 * Read on first use by GET /health and the broadcaster, which run only after that.
 */
const streamEnvSchema = z.object({
  /** What clients connect to: the WebSocket API's stage URL (wss://…), locally ws://…/jobs/stream. */
  JOBQ_STREAM_URL: z.string().min(1).optional(),
  /** The `@connections` management API: the stage's callback URL (https://…), locally the API server. */
  JOBQ_STREAM_ENDPOINT: z.url().optional(),
});

export interface StreamConfig {
  readonly streamUrl: string | null;
  readonly managementEndpoint: string | undefined;
}

export function readStreamConfig(env: NodeJS.ProcessEnv = process.env): StreamConfig {
  const parsed = streamEnvSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(`invalid environment: ${problemsOf(parsed.error).join("; ")}`, {
      cause: parsed.error,
    });
  }
  const e = parsed.data;
  return { streamUrl: e.JOBQ_STREAM_URL ?? null, managementEndpoint: e.JOBQ_STREAM_ENDPOINT };
}

let cachedStream: StreamConfig | undefined;
export function streamConfig(): StreamConfig {
  cachedStream ??= readStreamConfig();
  return cachedStream;
}
