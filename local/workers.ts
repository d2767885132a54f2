import { type ChildProcess, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { PoolConfig } from "../core/pools";

/**
 * The local worker nodes: one child process per configured node (`tsx worker/main.ts`), as ECS
 * runs one task per node in AWS. Each gets the handlers' environment plus its pool and node size
 * (worker/config.ts); its output is prefixed `[worker cpu-1]`. A worker that dies unexpectedly is
 * restarted with backoff (it registers a fresh node id; the reconciler and the node-lost sweep
 * recover what the dead one held). A worker that exits 0 left on purpose — drained by an admin
 * (POST /pools/{pool}/nodes/{id}/drain) or by a SIGTERM of its own — and is not restarted: its
 * node stays gone until the stack restarts (the local pools are a fixed set of nodes; there is no
 * ECS service to replace it). stop() sends SIGTERM — the worker drains — and SIGKILL after
 * a grace; a worker whose stack died without stopping it drains and exits by itself
 * (worker-guard.ts).
 */

export interface LocalWorkerNode {
  /** `cpu-1`, `cpu-2`, `gpu-1`: JOBQ_NODE_NAME, the prefix of the node ids the worker registers. */
  readonly name: string;
  readonly pool: string;
  readonly size: PoolConfig["node"];
}

export interface LocalWorkersOptions {
  readonly pools: readonly PoolConfig[];
  /** The handlers' environment (local/config.ts handlerEnvironment); `undefined` values are unset. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** @default worker/main.ts */
  readonly entry?: string;
  /** Where prefixed output lines go. @default process.stdout / process.stderr */
  readonly output?: (line: string, stream: "stdout" | "stderr") => void;
  /** First restart delay, doubled per consecutive crash up to restartMaxMs. @default 1000 */
  readonly restartInitialMs?: number;
  /** @default 30_000 */
  readonly restartMaxMs?: number;
  /** JOBQ_SHUTDOWN_GRACE_SECONDS: how long running attempts may finish on stop. @default 5 */
  readonly shutdownGraceSeconds?: number;
  /** JOBQ_POLL_WAIT_SECONDS: idle long-poll wait. @default the worker's own (10) */
  readonly pollWaitSeconds?: number;
  /** After SIGTERM, how long before SIGKILL. @default shutdownGraceSeconds + 10 s */
  readonly killAfterMs?: number;
}

export interface LocalWorkers {
  readonly nodes: readonly LocalWorkerNode[];
  /** SIGTERM to every worker, SIGKILL to those still running after the grace; no restarts. Idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_ENTRY = fileURLToPath(new URL("../worker/main.ts", import.meta.url));
const GUARD = new URL("./worker-guard.ts", import.meta.url).href;
const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
/** A worker up this long has recovered: its next crash restarts after the initial delay again. */
const HEALTHY_AFTER_MS = 60_000;

/** One node per `nodes` of each pool, named `<pool>-<n>`. */
export function workerNodes(pools: readonly PoolConfig[]): LocalWorkerNode[] {
  return pools.flatMap((pool) =>
    Array.from({ length: pool.nodes }, (_, i) => ({
      name: `${pool.name}-${i + 1}`,
      pool: pool.name,
      size: pool.node,
    })),
  );
}

export function startLocalWorkers(options: LocalWorkersOptions): LocalWorkers {
  const nodes = workerNodes(options.pools);
  const shutdownGraceSeconds = options.shutdownGraceSeconds ?? 5;
  const supervisors = nodes.map(
    (node) =>
      new WorkerSupervisor(node, {
        entry: options.entry ?? DEFAULT_ENTRY,
        env: workerEnvironment(node, options, shutdownGraceSeconds),
        output: options.output ?? defaultOutput,
        restartInitialMs: options.restartInitialMs ?? 1_000,
        restartMaxMs: options.restartMaxMs ?? 30_000,
        killAfterMs: options.killAfterMs ?? shutdownGraceSeconds * 1000 + 10_000,
      }),
  );
  for (const supervisor of supervisors) supervisor.start();
  let stopping: Promise<void> | undefined;
  return {
    nodes,
    stop: () => {
      stopping ??= Promise.all(supervisors.map((s) => s.stop())).then(() => undefined);
      return stopping;
    },
  };
}

function workerEnvironment(
  node: LocalWorkerNode,
  options: LocalWorkersOptions,
  shutdownGraceSeconds: number,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  const own: Record<string, string | undefined> = {
    ...options.env,
    JOBQ_POOL: node.pool,
    JOBQ_NODE_NAME: node.name,
    JOBQ_NODE_CPU: String(node.size.cpu),
    JOBQ_NODE_MEMORY_MB: String(node.size.memoryMb),
    JOBQ_NODE_GPU: String(node.size.gpu),
    JOBQ_SHUTDOWN_GRACE_SECONDS: String(shutdownGraceSeconds),
    JOBQ_POLL_WAIT_SECONDS:
      options.pollWaitSeconds === undefined ? undefined : String(options.pollWaitSeconds),
  };
  for (const [name, value] of Object.entries(own)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

function defaultOutput(line: string, stream: "stdout" | "stderr"): void {
  (stream === "stdout" ? process.stdout : process.stderr).write(`${line}\n`);
}

/** tsx's ESM loader as a file URL, so the child resolves it whatever its working directory. */
function tsxLoader(): string {
  const require = createRequire(import.meta.url);
  return pathToFileURL(join(dirname(require.resolve("tsx/package.json")), "dist", "loader.mjs")).href;
}

interface SupervisorSettings {
  readonly entry: string;
  readonly env: NodeJS.ProcessEnv;
  readonly output: (line: string, stream: "stdout" | "stderr") => void;
  readonly restartInitialMs: number;
  readonly restartMaxMs: number;
  readonly killAfterMs: number;
}

/** Keeps one worker process running until stopped. */
class WorkerSupervisor {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private restartTimer: NodeJS.Timeout | undefined;
  private restartDelayMs: number;
  private stopping = false;
  private readonly prefix: string;

  constructor(
    node: LocalWorkerNode,
    private readonly settings: SupervisorSettings,
  ) {
    this.restartDelayMs = settings.restartInitialMs;
    this.prefix = `[worker ${node.name}]`;
  }

  start(): void {
    if (this.stopping) return;
    const startedAt = Date.now();
    // Its own process group (detached): a terminal's Ctrl-C reaches only the stack, which then
    // sends the one SIGTERM that drains the worker (a second signal would make it exit at once).
    // The IPC channel is how worker-guard.ts notices the stack's death.
    const child = spawn(process.execPath, ["--import", tsxLoader(), "--import", GUARD, this.settings.entry], {
      cwd: REPO_ROOT,
      env: this.settings.env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    this.child = child;
    for (const stream of ["stdout", "stderr"] as const) {
      const source = child[stream];
      if (!source) continue;
      createInterface({ input: source, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) =>
        this.settings.output(`${this.prefix} ${line}`, stream),
      );
    }
    this.exited = new Promise<void>((resolve) => {
      let ended = false;
      const end = (reason: string, drained = false) => {
        if (ended) return;
        ended = true;
        if (this.child === child) this.child = undefined;
        if (drained && !this.stopping) {
          this.settings.output(
            `${this.prefix} ${reason}: drained, not restarted until the stack restarts`,
            "stdout",
          );
        } else if (!this.stopping) {
          this.settings.output(`${this.prefix} ${reason}`, "stderr");
          this.scheduleRestart(startedAt);
        }
        resolve();
      };
      // A spawn that failed emits error, and maybe no exit.
      child.once("error", (error) => end(`could not run: ${error.message}`));
      child.once("exit", (code, signal) => end(`exited (${signal ?? `code ${code}`})`, code === 0));
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    let killTimer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      killTimer = setTimeout(() => {
        this.settings.output(
          `${this.prefix} did not stop within ${this.settings.killAfterMs} ms: SIGKILL`,
          "stderr",
        );
        child.kill("SIGKILL");
        resolve();
      }, this.settings.killAfterMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(killTimer);
    await this.exited;
  }

  private scheduleRestart(startedAt: number): void {
    if (this.stopping) return;
    if (Date.now() - startedAt >= HEALTHY_AFTER_MS) this.restartDelayMs = this.settings.restartInitialMs;
    const delay = this.restartDelayMs;
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, this.settings.restartMaxMs);
    this.settings.output(`${this.prefix} restarting in ${delay} ms`, "stderr");
    this.restartTimer = setTimeout(() => this.start(), delay);
  }
}
