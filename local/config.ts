import { readFileSync } from "node:fs";
import { z } from "zod";
import { jobTypeSchema, projectNameSchema } from "../core/job";
import { type Policy, policySchema } from "../core/policy";
import { DEFAULT_POOLS, type PoolConfig, poolsSchema } from "../core/pools";
import { DEFAULT_RETENTION, type Retention } from "../core/retention";
import { fieldProblems } from "../core/validation";
import type { QueueUrls } from "../functions/config";
import type { Role } from "../functions/routes";
import { TABLES } from "../store/tables";
import { installInvocationStore } from "./lambda";

/**
 * The local stack's configuration (API.md, "The local stack"), read once at start and failing
 * fast with a message that names the variable. The only place in local/ that touches process.env:
 * it reads the stack's variables and writes the handlers' (see applyHandlerEnvironment).
 */

export interface ApiPrincipal {
  readonly principal: string;
  readonly role: Role;
  /** The project the token is bound to (`…@project`); absent: unbound. */
  readonly project?: string;
}

/** Bearer token → who it acts as: what the tokens table and the authorizer are in AWS. */
export type ApiTokens = ReadonlyMap<string, ApiPrincipal>;

export interface LocalConfig {
  readonly port: number;
  readonly host: string;
  /** Where state persists; relative paths are relative to the working directory. */
  readonly dataDir: string;
  readonly tokens: ApiTokens;
  readonly pools: readonly PoolConfig[];
  /**
   * JOBQ_CONFIG's policy, validated at start and with core's defaults filled in: the policy in
   * force until an admin PUTs one to /admin/policy. undefined: core's defaults.
   */
  readonly policy: Policy | undefined;
  /** Job types JOBQ_CONFIG allows besides the examples; undefined: any type is accepted. */
  readonly taskTypes: readonly string[] | undefined;
  /** JOBQ_SWEEP_SECONDS: how often the scheduler sweeps every pool (AWS: every minute). */
  readonly sweepSeconds: number;
  /**
   * JOBQ_FAULT_THROTTLE_RATE (0..1, default 0): the share of the control plane's and the workers'
   * AWS SDK requests answered with an injected throttling error (store/faults.ts), for the soak
   * harness (bench/soak.ts). A local-stack variable only: nothing in AWS reads or sets it.
   */
  readonly faultThrottleRate: number;
  /**
   * JOBQ_RETENTION_DAYS (default 90) and JOBQ_JOB_RETENTION_DAYS (default unset): how long ended
   * jobs' history and the jobs themselves are kept (docs/data-model.md#retention).
   */
  readonly retention: Retention;
}

/** The example task types the local workers always run (API.md). */
export const EXAMPLE_TASK_TYPES = ["echo", "sleep", "flaky", "fail", "log"] as const;

export const DEFAULT_API_TOKEN = "local-dev-token";
export const DEFAULT_PORT = 3000;
export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_DATA_DIR = ".jobq/";
/**
 * The scheduler's sweep: every minute in AWS, where events do most of the waking; locally every
 * few seconds, so that a scheduled job's runAt or a retry's backoff is noticed promptly even when
 * nothing else happens.
 */
export const DEFAULT_SWEEP_SECONDS = 5;
/** DynamoDB Local ignores the region (it runs with -sharedDb); the SDK still needs one. */
export const LOCAL_REGION = "us-east-1";

/** A variable or JOBQ_CONFIG is malformed; the message says which and how. */
export class LocalConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LocalConfigError";
  }
}

/** Same rule as store/tokens.ts, so a local principal is one POST /admin/tokens accepts too. */
const PRINCIPAL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
/** Anything visible but the list separator: tokens are opaque (and may end in base64's "="). */
const TOKEN_PATTERN = /^[\x21-\x2b\x2d-\x7e]+$/;

const retentionDays = z
  .string()
  .regex(/^\d{1,5}$/, "must be a whole number of days")
  .transform(Number)
  .refine((days) => days >= 1, "must be at least 1");

const envSchema = z.object({
  PORT: z
    .string()
    .regex(/^\d{1,5}$/, "must be a port number")
    .transform(Number)
    .refine((port) => port <= 65_535, "must be at most 65535")
    .optional(),
  HOST: z.string().min(1, "must not be empty").optional(),
  JOBQ_DATA_DIR: z.string().min(1, "must not be empty").optional(),
  JOBQ_API_TOKENS: z.string().optional(),
  JOBQ_CONFIG: z.string().min(1, "must not be empty").optional(),
  JOBQ_SWEEP_SECONDS: z
    .string()
    .regex(/^\d{1,4}$/, "must be a whole number of seconds")
    .transform(Number)
    .refine((seconds) => seconds >= 1 && seconds <= 3600, "must be 1 to 3600")
    .optional(),
  JOBQ_FAULT_THROTTLE_RATE: z
    .string()
    .regex(/^(0(\.\d+)?|1(\.0+)?)$/, "must be a rate from 0 to 1, e.g. 0.05")
    .transform(Number)
    .optional(),
  JOBQ_RETENTION_DAYS: retentionDays.optional(),
  JOBQ_JOB_RETENTION_DAYS: retentionDays.optional(),
});

const configFileSchema = z.strictObject({
  pools: poolsSchema.optional(),
  policy: policySchema.optional(),
  taskTypes: z.array(jobTypeSchema).optional(),
});
export type LocalConfigFile = z.infer<typeof configFileSchema>;

export function readLocalConfig(env: NodeJS.ProcessEnv = process.env): LocalConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new LocalConfigError(`invalid environment:\n${problemList(parsed.error)}`);
  }
  const e = parsed.data;
  const file = e.JOBQ_CONFIG === undefined ? {} : readConfigFile(e.JOBQ_CONFIG);
  return {
    port: e.PORT ?? DEFAULT_PORT,
    host: e.HOST ?? DEFAULT_HOST,
    dataDir: e.JOBQ_DATA_DIR ?? DEFAULT_DATA_DIR,
    tokens: parseApiTokens(e.JOBQ_API_TOKENS),
    pools: file.pools ?? DEFAULT_POOLS,
    policy: file.policy,
    taskTypes: file.taskTypes,
    sweepSeconds: e.JOBQ_SWEEP_SECONDS ?? DEFAULT_SWEEP_SECONDS,
    faultThrottleRate: e.JOBQ_FAULT_THROTTLE_RATE ?? 0,
    retention: {
      historyDays: e.JOBQ_RETENTION_DAYS ?? DEFAULT_RETENTION.historyDays,
      jobDays: e.JOBQ_JOB_RETENTION_DAYS ?? DEFAULT_RETENTION.jobDays,
    },
  };
}

/**
 * JOBQ_API_TOKENS: `token=principal[:admin|:reader|:auditor][@project],…` (`:admin:reader` is
 * `:auditor`: what an admin reads, read-only; core/principal.ts; `@project` binds the token to a
 * project, issue 13). Unset: one admin token for principal `local`.
 * Errors name the entry by position and never echo a token: it is a secret.
 */
/** The role the suffixes after a local token's principal name; undefined for any other spelling. */
function localRole(parts: readonly string[]): Role | undefined {
  if (parts.length === 0) return "user";
  switch (parts.join(":")) {
    // Spelled out, it lets a principal containing "@" be named unbound: `t=bob@corp:user`.
    case "user":
      return "user";
    case "admin":
      return "admin";
    case "reader":
      return "reader";
    case "auditor":
    case "admin:reader":
      return "auditor";
    default:
      return undefined;
  }
}

/**
 * A token's `@project` suffix, split off the principal-and-role part. Principals may contain "@"
 * (e-mail addresses), so only a last "@" followed by a project name counts: project names have no
 * "." nor ":", so `alice@example.com` stays a principal and `alice:admin@ml` is admin alice bound
 * to ml. A principal like `bob@corp` reads as bob bound to corp; `bob@corp:user` keeps it whole.
 */
function splitProject(value: string): { rest: string; project: string | undefined } {
  const at = value.lastIndexOf("@");
  const candidate = at > 0 ? value.slice(at + 1) : "";
  return projectNameSchema.safeParse(candidate).success
    ? { rest: value.slice(0, at), project: candidate }
    : { rest: value, project: undefined };
}

export function parseApiTokens(spec: string | undefined): Map<string, ApiPrincipal> {
  if (spec === undefined) return new Map([[DEFAULT_API_TOKEN, { principal: "local", role: "admin" }]]);
  if (spec.trim() === "") {
    throw new LocalConfigError(
      "JOBQ_API_TOKENS is set but empty: nobody could call the API. Unset it for the default token, " +
        "or give token=principal[:admin],…",
    );
  }
  const tokens = new Map<string, ApiPrincipal>();
  const problems: string[] = [];
  spec.split(",").forEach((rawEntry, index) => {
    const entry = rawEntry.trim();
    const where = `entry ${index + 1}`;
    // The last "=" splits: a principal cannot contain one, a base64 token can.
    const split = entry.lastIndexOf("=");
    if (split < 0) {
      problems.push(`${where}: missing "=" (expected token=principal or token=principal:admin)`);
      return;
    }
    const token = entry.slice(0, split);
    const { rest, project } = splitProject(entry.slice(split + 1));
    const [principal = "", ...roleParts] = rest.split(":");
    const role = localRole(roleParts);
    if (!TOKEN_PATTERN.test(token)) {
      problems.push(`${where}: the token is empty or contains whitespace`);
    } else if (!PRINCIPAL_PATTERN.test(principal)) {
      problems.push(
        `${where}: principal ${JSON.stringify(principal)} must match ${PRINCIPAL_PATTERN.source}`,
      );
    } else if (role === undefined) {
      problems.push(
        `${where}: after the principal only ":admin", ":reader", ":auditor" or ":admin:reader" may follow`,
      );
    } else if (tokens.has(token)) {
      problems.push(`${where}: the same token is listed twice`);
    } else {
      tokens.set(token, project === undefined ? { principal, role } : { principal, role, project });
    }
  });
  if (problems.length > 0) {
    throw new LocalConfigError(
      `JOBQ_API_TOKENS is malformed:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  }
  return tokens;
}

/** JOBQ_CONFIG's contents; `source` (the path) only labels the errors. */
export function parseConfigFile(text: string, source: string): LocalConfigFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new LocalConfigError(`JOBQ_CONFIG ${source} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const parsed = configFileSchema.safeParse(json);
  if (!parsed.success) {
    throw new LocalConfigError(`JOBQ_CONFIG ${source} is invalid:\n${problemList(parsed.error)}`);
  }
  return parsed.data;
}

function readConfigFile(path: string): LocalConfigFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new LocalConfigError(`JOBQ_CONFIG ${path} cannot be read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return parseConfigFile(text, path);
}

function problemList(error: z.ZodError): string {
  return fieldProblems(error)
    .map((problem) => `  - ${problem.path || "(root)"}: ${problem.message}`)
    .join("\n");
}

export interface HandlerEnvironmentInput {
  /** def.id → table name for every table of store/tables.ts, as ensureTables returns it. */
  readonly tables: Readonly<Record<string, string>>;
  readonly dynamoEndpoint: string;
  /** @default DEFAULT_POOLS */
  readonly pools?: readonly PoolConfig[];
  /** Configured job types; undefined: any type (JOBQ_TASK_TYPES left unset). */
  readonly taskTypes?: readonly string[] | undefined;
  /** JOBQ_CONFIG's policy (JOBQ_POLICY); undefined: core's defaults. */
  readonly policy?: Policy | undefined;
  /**
   * Where jobs run: the emulators' endpoints, the lifecycle state machine, the event bus and the
   * queues. Undefined: an API-only setup (the API tests): jobs are stored, no execution is
   * started, no event is published, and every such variable is unset.
   */
  readonly execution?: ExecutionEnvironment | undefined;
  /** JOBQ_FAULT_THROTTLE_RATE for the workers (the stack's own process is set directly). @default 0 */
  readonly faultThrottleRate?: number | undefined;
  /** JOBQ_RETENTION_DAYS and JOBQ_JOB_RETENTION_DAYS. @default DEFAULT_RETENTION */
  readonly retention?: Retention | undefined;
}

export interface ExecutionEnvironment {
  readonly sfnEndpoint: string;
  readonly sqsEndpoint: string;
  readonly eventsEndpoint: string;
  /** The local lifecycle state machine, e.g. LOCAL_STATE_MACHINE_ARN. */
  readonly stateMachineArn: string;
  /** @default "jobq" */
  readonly eventBus?: string;
  /** `{pool: {tier: url}}`, as local/sqs.ts creates them. */
  readonly queues: QueueUrls;
  /** @default LOCAL_HEARTBEAT_SECONDS */
  readonly heartbeatSeconds?: number;
  /** @default LOCAL_LOST_AFTER_SECONDS */
  readonly lostAfterSeconds?: number;
  /** @default LOCAL_NODE_LOST_SECONDS */
  readonly nodeLostSeconds?: number;
}

/** The lifecycle state machine's name and ARN in the local Step Functions. */
export const LOCAL_STATE_MACHINE_NAME = "jobq-lifecycle";
export const LOCAL_STATE_MACHINE_ARN = `arn:aws:states:${LOCAL_REGION}:000000000000:stateMachine:${LOCAL_STATE_MACHINE_NAME}`;
export const LOCAL_EVENT_BUS = "jobq";
/**
 * Shorter than AWS's 30 s: locally a worker that died is noticed, and its attempt retried, within
 * seconds, which is what someone trying jobq on a laptop wants to see.
 */
export const LOCAL_HEARTBEAT_SECONDS = 10;
export const LOCAL_NODE_LOST_SECONDS = 15;
/**
 * Step Functions' backstop (AWS: 300 s). Longer than SQS's visibility timeout, so a message a
 * killed worker had received but not started reappears and is taken before the backstop fires.
 */
export const LOCAL_LOST_AFTER_SECONDS = 90;

/**
 * The variables functions/config.ts reads, as the local stack sets them: what the JobApi
 * construct sets as each Lambda function's environment in AWS, plus what AWS itself provides
 * there (region, credentials) as loopback-only dummies. `undefined` means "must be unset".
 */
export function handlerEnvironment(input: HandlerEnvironmentInput): Record<string, string | undefined> {
  const missing = TABLES.filter((def) => input.tables[def.id] === undefined).map((def) => def.id);
  if (missing.length > 0) {
    throw new LocalConfigError(`tables lacks ${missing.join(", ")} (store/tables.ts)`);
  }
  return {
    ...Object.fromEntries(TABLES.map((def) => [tableVariable(def.id), input.tables[def.id]])),
    JOBQ_DYNAMODB_ENDPOINT: input.dynamoEndpoint,
    JOBQ_POOLS: JSON.stringify(input.pools ?? DEFAULT_POOLS),
    // The examples run in every local stack, so a configured list always admits them.
    JOBQ_TASK_TYPES:
      input.taskTypes === undefined
        ? undefined
        : JSON.stringify([...new Set([...input.taskTypes, ...EXAMPLE_TASK_TYPES])]),
    JOBQ_POLICY: input.policy === undefined ? undefined : JSON.stringify(input.policy),
    ...executionVariables(input.execution),
    JOBQ_FAULT_THROTTLE_RATE: input.faultThrottleRate ? String(input.faultThrottleRate) : undefined,
    JOBQ_RETENTION_DAYS: String((input.retention ?? DEFAULT_RETENTION).historyDays),
    JOBQ_JOB_RETENTION_DAYS:
      input.retention?.jobDays === null || input.retention?.jobDays === undefined
        ? undefined
        : String(input.retention.jobDays),
    AWS_REGION: LOCAL_REGION,
    // Explicit dummies: without them the SDK's default chain ends at the EC2 metadata address
    // (169.254.169.254), and real credentials from the shell must never be sent anywhere.
    AWS_ACCESS_KEY_ID: "local",
    AWS_SECRET_ACCESS_KEY: "local",
    AWS_SESSION_TOKEN: undefined,
    AWS_EC2_METADATA_DISABLED: "true",
    // Metrics are CloudWatch embedded-metric JSON on stdout: in AWS, CloudWatch reads them;
    // here nothing does, and a sweep every few seconds would bury the useful lines.
    POWERTOOLS_METRICS_DISABLED: "true",
    // Tracing is off outside Lambda anyway (store/tracing.ts); said outright so no X-Ray daemon
    // address is ever tried, whatever AWS_EXECUTION_ENV the user's shell carries.
    POWERTOOLS_TRACE_ENABLED: "false",
    // Every worker process would print the SDK's notice that its releases after January 2027
    // need Node 22; the README says so once instead.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
    // Unset for the worker processes, which get this environment: only the stack's own process
    // runs invocations in an invocation store (applyHandlerEnvironment sets it there).
    AWS_LAMBDA_MAX_CONCURRENCY: undefined,
  };
}

function executionVariables(execution: ExecutionEnvironment | undefined): Record<string, string | undefined> {
  return {
    JOBQ_SFN_ENDPOINT: execution?.sfnEndpoint,
    JOBQ_SQS_ENDPOINT: execution?.sqsEndpoint,
    JOBQ_EVENTS_ENDPOINT: execution?.eventsEndpoint,
    JOBQ_STATE_MACHINE_ARN: execution?.stateMachineArn,
    JOBQ_EVENT_BUS: execution ? (execution.eventBus ?? LOCAL_EVENT_BUS) : undefined,
    JOBQ_QUEUES: execution ? JSON.stringify(execution.queues) : undefined,
    JOBQ_HEARTBEAT_SECONDS: execution
      ? String(execution.heartbeatSeconds ?? LOCAL_HEARTBEAT_SECONDS)
      : undefined,
    JOBQ_LOST_AFTER_SECONDS: execution
      ? String(execution.lostAfterSeconds ?? LOCAL_LOST_AFTER_SECONDS)
      : undefined,
    JOBQ_NODE_LOST_SECONDS: execution
      ? String(execution.nodeLostSeconds ?? LOCAL_NODE_LOST_SECONDS)
      : undefined,
  };
}

/** A table's variable in functions/config.ts: Jobs → JOBQ_JOBS_TABLE, JobEvents → JOBQ_JOB_EVENTS_TABLE. */
export function tableVariable(tableId: string): string {
  return `JOBQ_${tableId.replace(/(?<=[a-z0-9])(?=[A-Z])/g, "_").toUpperCase()}_TABLE`;
}

/**
 * Sets handlerEnvironment(input) on process.env. Call it before the first handler module is
 * imported: handlers read their configuration once at cold start (functions/config.ts), so the
 * variables must be in place first, as Lambda's are before the module loads. One local stack per
 * process: a second call does not reach handler modules already loaded.
 */
export function applyHandlerEnvironment(
  input: HandlerEnvironmentInput,
  env: NodeJS.ProcessEnv = process.env,
): void {
  for (const [name, value] of Object.entries(handlerEnvironment(input))) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  // This process runs every function's invocations side by side, as Lambda Managed Instances run
  // one function's: with this variable Powertools keeps each invocation's log context (function
  // name, request id) apart, in the store that local/lambda.ts runs each invocation in. The store
  // goes in first: Powertools fails every log call where the variable is set without one.
  installInvocationStore();
  env.AWS_LAMBDA_MAX_CONCURRENCY = String(LOCAL_MAX_CONCURRENCY);
}

/** AWS_LAMBDA_MAX_CONCURRENCY in the stack's own process; any value turns the store on, none is enforced. */
const LOCAL_MAX_CONCURRENCY = 1000;

/**
 * The job stream's variables (functions/config.ts streamConfig): known only once the API server
 * listens, so set after it, and read by GET /health and the broadcaster on first use.
 */
export function applyStreamEnvironment(
  stream: { readonly streamUrl: string; readonly managementEndpoint: string },
  env: NodeJS.ProcessEnv = process.env,
): void {
  env.JOBQ_STREAM_URL = stream.streamUrl;
  env.JOBQ_STREAM_ENDPOINT = stream.managementEndpoint;
}
