import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { z } from "zod";
import { ConfigError, type HandlerConfig, readConfig } from "../app/config";

/**
 * The worker process's configuration, read once at start and failing fast with a message that
 * names the variable. With app/config.ts (tables, endpoints, region, queues, heartbeat and
 * node-lost periods, event bus: the same variables the handlers read) it is the only reader of
 * process.env in worker/.
 *
 * Variables of the worker itself:
 * - `JOBQ_POOL` (required): the pool this node serves; its queues come from `JOBQ_QUEUES[pool]`.
 * - `JOBQ_NODE_NAME`: a readable prefix for the node id (default: the host name). Every process
 *   start and every re-registration after the node was marked lost gets a fresh id
 *   `<name>-<random>` (store/nodes.ts: capacity of an old id may still be held by attempts that
 *   have not ended), so the local stack names its nodes `cpu-1`, `cpu-2`, … and gets
 *   `cpu-1-7f3a9c`, ….
 * - `JOBQ_WORKER_ID`: this process's id on attempts and node items (default `<host>:<pid>`).
 * - `JOBQ_NODE_CPU`, `JOBQ_NODE_MEMORY_MB`, `JOBQ_NODE_GPU`: the node's size, each replacing what
 *   would be detected (cgroup limits, the host, nvidia-smi; worker/capacity.ts). The local stack
 *   passes its configured node size here; in ECS they are left unset and the task's real limits
 *   are used. Setting `JOBQ_NODE_GPU` also skips running nvidia-smi.
 * - `JOBQ_TASK_MODULES`: comma-separated paths of modules whose exported task definitions
 *   (worker/registry.ts `defineTask`) are registered besides the example types.
 * - `JOBQ_POLL_WAIT_SECONDS` (1..20, default 10): SQS long-poll wait while idle. Shorter means a
 *   quicker shutdown when idle, longer means fewer requests.
 * - `JOBQ_SHUTDOWN_GRACE_SECONDS` (default 25): on SIGTERM, how long running attempts may take to
 *   finish before they are aborted (ECS waits 30 s by default before SIGKILL).
 * - `JOBQ_NODE_HEARTBEAT_SECONDS`: how often the node item is refreshed (default: a third of
 *   `JOBQ_NODE_LOST_SECONDS`, at least 1).
 * - `JOBQ_FAULT_THROTTLE_RATE` (0..1, default 0): set by the local stack for the soak harness:
 *   that share of this worker's AWS SDK requests fail with a throttling error (store/faults.ts;
 *   only clients with a loopback endpoint carry it, so it does nothing in ECS).
 *
 * The attempt heartbeat (SendTaskHeartbeat every third of `JOBQ_HEARTBEAT_SECONDS`, or of the
 * dispatch message's `heartbeatSeconds`) and the emulator endpoints (`JOBQ_SQS_ENDPOINT`,
 * `JOBQ_SFN_ENDPOINT`, `JOBQ_DYNAMODB_ENDPOINT`, `JOBQ_EVENTS_ENDPOINT`) are app/config.ts's.
 */

export interface CapacityOverride {
  readonly cpu?: number;
  readonly memoryMb?: number;
  readonly gpu?: number;
}

export interface WorkerConfig {
  readonly pool: string;
  readonly nodeName: string;
  readonly workerId: string;
  readonly capacityOverride: CapacityOverride;
  readonly taskModules: readonly string[];
  readonly pollWaitSeconds: number;
  readonly shutdownGraceMs: number;
  readonly nodeHeartbeatMs: number;
  /** JOBQ_FAULT_THROTTLE_RATE: injected throttling, for the soak harness (0: none). */
  readonly faultThrottleRate: number;
  /** What the worker shares with the handlers: tables, endpoints, queues, heartbeat periods. */
  readonly shared: HandlerConfig;
}

/** A variable is malformed or missing; the message says which and how. */
export class WorkerConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WorkerConfigError";
  }
}

const optionalNumber = (schema: z.ZodNumber) =>
  z
    .string()
    .trim()
    .optional()
    .refine((s) => s === undefined || s === "" || Number.isFinite(Number(s)), "must be a number")
    .transform((s) => (s === undefined || s === "" ? undefined : Number(s)))
    .pipe(schema.optional());

const envSchema = z.object({
  JOBQ_POOL: z
    .string({ error: "is required: the pool this node serves" })
    .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, "must name a pool (^[a-z0-9][a-z0-9-]{0,31}$)"),
  JOBQ_NODE_NAME: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be 1..64 letters, digits, . _ -")
    .optional(),
  JOBQ_WORKER_ID: z.string().min(1).max(128).optional(),
  JOBQ_NODE_CPU: optionalNumber(z.number().min(0.001).max(1024)),
  JOBQ_NODE_MEMORY_MB: optionalNumber(z.number().int().positive().max(4_194_304)),
  JOBQ_NODE_GPU: optionalNumber(z.number().int().min(0).max(64)),
  JOBQ_TASK_MODULES: z.string().optional(),
  JOBQ_POLL_WAIT_SECONDS: optionalNumber(z.number().int().min(1).max(20)),
  JOBQ_SHUTDOWN_GRACE_SECONDS: optionalNumber(z.number().min(0).max(3600)),
  JOBQ_NODE_HEARTBEAT_SECONDS: optionalNumber(z.number().min(0.1).max(3600)),
  JOBQ_FAULT_THROTTLE_RATE: optionalNumber(z.number().min(0).max(1)),
});

export function readWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  - ${i.path.join(".")}: ${i.message}`).join("\n");
    throw new WorkerConfigError(`invalid worker environment:\n${problems}`);
  }
  const e = parsed.data;
  let shared: HandlerConfig;
  try {
    shared = readConfig(env);
  } catch (error) {
    // A ConfigError already names the variable and says the environment is invalid.
    const message = error instanceof ConfigError ? error.message : `invalid environment: ${String(error)}`;
    throw new WorkerConfigError(message, { cause: error });
  }
  const queues = shared.queues[e.JOBQ_POOL];
  if (!queues || Object.keys(queues).length === 0) {
    throw new WorkerConfigError(
      `JOBQ_QUEUES names no queue for pool ${e.JOBQ_POOL}: a worker needs at least one tier's queue URL`,
    );
  }
  const host = sanitize(hostname());
  const override: { cpu?: number; memoryMb?: number; gpu?: number } = {};
  if (e.JOBQ_NODE_CPU !== undefined) override.cpu = e.JOBQ_NODE_CPU;
  if (e.JOBQ_NODE_MEMORY_MB !== undefined) override.memoryMb = e.JOBQ_NODE_MEMORY_MB;
  if (e.JOBQ_NODE_GPU !== undefined) override.gpu = e.JOBQ_NODE_GPU;
  return {
    pool: e.JOBQ_POOL,
    nodeName: e.JOBQ_NODE_NAME ?? host,
    workerId: e.JOBQ_WORKER_ID ?? `${host}:${process.pid}`,
    capacityOverride: override,
    taskModules: (e.JOBQ_TASK_MODULES ?? "")
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean),
    pollWaitSeconds: e.JOBQ_POLL_WAIT_SECONDS ?? 10,
    shutdownGraceMs: (e.JOBQ_SHUTDOWN_GRACE_SECONDS ?? 25) * 1000,
    nodeHeartbeatMs:
      (e.JOBQ_NODE_HEARTBEAT_SECONDS ?? Math.max(1, Math.floor(shared.nodeLostSeconds / 3))) * 1000,
    faultThrottleRate: e.JOBQ_FAULT_THROTTLE_RATE ?? 0,
    shared,
  };
}

/** A fresh node id for each registration: `<name>-<12 hex digits>`. */
export function freshNodeId(nodeName: string): string {
  return `${nodeName}-${randomBytes(6).toString("hex")}`;
}

function sanitize(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return (cleaned || "node").slice(0, 48);
}
