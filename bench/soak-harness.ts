import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isDeepStrictEqual } from "node:util";
import {
  GetQueueAttributesCommand,
  ListQueuesCommand,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { LAUNCHER_CLASS } from "../local/dynamo";
import { awsClientOptions } from "../store/aws";
import { seededRandom } from "../store/faults";

/**
 * The soak harness (`npm run soak`, and the short run in test/reliability/): the local stack as
 * `npm start` runs it, in a child process of its own (fresh JOBQ_DATA_DIR, a free loopback port),
 * loaded over HTTP with a mix of jobs while worker processes are SIGKILLed, the whole stack is
 * hard-killed and restarted on the same data, and the AWS SDK clients are throttled
 * (JOBQ_FAULT_THROTTLE_RATE, store/faults.ts). At the end it checks what must hold whatever
 * happened — every job terminal with the status its type and dependencies imply, no attempt
 * after a success, one attempt record per counted attempt, no capacity in use, no unexplained
 * dead letter, one job per submission, no 5xx — and prints them with figures.
 *
 * Talks to 127.0.0.1 only; every wait has a deadline; it stops the stack it started.
 */

export interface SoakOptions {
  /** Jobs to submit (DAG members included). */
  readonly jobs: number;
  /** Worker processes SIGKILLed during the run, spread over it. */
  readonly workerKills: number;
  /** Hard kills (SIGKILL of the stack, its workers and DynamoDB Local) each followed by a restart on the same data. */
  readonly restarts: number;
  /** JOBQ_FAULT_THROTTLE_RATE: share of AWS SDK requests throttled, 0..1. */
  readonly throttleRate: number;
  /** Submissions in flight. */
  readonly inFlight: number;
  /** Seeds the job mix, the kill choices and nothing else. */
  readonly seed: number;
  /** How long the jobs may take to end after the last submission before the run counts as failed. */
  readonly drainTimeoutSeconds: number;
  /**
   * Wall-clock budget of the whole load (start, submissions, drain), checks excluded: past it no
   * new submission starts and the drain stops, so a slow machine ends in a report rather than a
   * killed run. undefined: none.
   */
  readonly deadlineSeconds?: number | undefined;
  /** Keep the data directory and the stack's log even when every invariant holds. */
  readonly keep: boolean;
  /** Progress lines. */
  readonly progress: (line: string) => void;
}

export const DEFAULT_SOAK_OPTIONS: SoakOptions = {
  jobs: 2_000,
  workerKills: 4,
  restarts: 1,
  throttleRate: 0.05,
  inFlight: 16,
  seed: 1,
  drainTimeoutSeconds: 600,
  keep: false,
  progress: (line) => process.stdout.write(`${line}\n`),
};

export interface BrokenJob {
  readonly id: string;
  readonly kind: JobKind;
  readonly problem: string;
  /** Filled in for the first few of each invariant. */
  transitions?: string[];
}

export interface InvariantResult {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
  readonly broken: BrokenJob[];
}

export interface SoakReport {
  readonly ok: boolean;
  readonly invariants: readonly InvariantResult[];
  /** The printed summary. */
  readonly summary: string;
  readonly logFile: string;
}

type JobKind = "echo" | "flaky" | "fail" | "dag-echo" | "dag-fail" | "probe";

interface JobSpec {
  readonly ref?: string;
  readonly type: string;
  readonly payload: Record<string, unknown>;
  readonly priority: string;
  readonly retry: Record<string, unknown>;
  readonly dependsOn?: readonly string[];
}

interface PlannedJob {
  readonly kind: JobKind;
  readonly spec: JobSpec;
  /** Refs (within the unit) this job depends on. */
  readonly deps: readonly string[];
}

interface Unit {
  readonly index: number;
  readonly jobs: readonly PlannedJob[];
  readonly batch: boolean;
}

interface Tracked {
  readonly id: string;
  readonly kind: JobKind;
  readonly spec: JobSpec;
  readonly deps: readonly string[];
}

interface ApiJob {
  readonly id: string;
  readonly status: string;
  readonly statusReason: string;
  readonly result: unknown;
  readonly attempts: number;
  readonly finishedAt: string | null;
}

interface ApiAttempt {
  readonly attempt: number;
  readonly status: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly workerId: string | null;
  readonly nodeId: string | null;
  readonly error: { readonly type?: string } | null;
}

interface ApiTransition {
  readonly from: string | null;
  readonly to: string;
  readonly at: string;
  readonly reason: string;
}

interface ApiPool {
  readonly name: string;
  readonly used: Capacity;
  readonly nodes: readonly { id: string; used: Capacity; status: string }[];
}

interface Capacity {
  readonly cpu: number;
  readonly memoryMb: number;
  readonly gpu: number;
}

interface HttpAnswer<T> {
  readonly status: number;
  readonly json: T;
  readonly text: string;
}

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const TOKEN = "soak-admin-token";
const TERMINAL = new Set(["completed", "failed", "cancelled", "escalated"]);
const HEALTH_TIMEOUT_MS = 180_000;
const SUBMIT_GIVE_UP_MS = 300_000;
const SAMPLES_PER_INVARIANT = 5;
/** 5xx answers to one submission before the harness stops retrying it (a broken build, not a blip). */
const MAX_ERROR_ANSWERS = 5;

// ---------------------------------------------------------------------------------------------
// The job mix
// ---------------------------------------------------------------------------------------------

/**
 * ~70 % echo, ~10 % flaky that must complete, ~10 % fail that must end failed, ~10 % of the jobs
 * in small DAGs (3..5 jobs) submitted as one batch, whose root fails in a third of them. Retries
 * wait 1..2 s so a run is about the system, not its backoff. Budgets leave room for attempts
 * lost to worker kills: a healthy job that still ends failed is a finding, not bad luck.
 */
export function planUnits(total: number, random: () => number): Unit[] {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const priority = () => pick(["normal", "normal", "normal", "normal", "high", "low", "critical"]);
  const retry = (maxAttempts: number) => ({ maxAttempts, initialDelaySeconds: 1, maxDelaySeconds: 2 });
  const units: PlannedJob[][] = [];
  let dagJobs = Math.round(total * 0.1);
  while (dagJobs >= 3) {
    const size = Math.min(dagJobs, 3 + Math.floor(random() * 3));
    dagJobs -= size;
    const rootFails = random() < 1 / 3;
    const jobs: PlannedJob[] = [];
    for (let i = 0; i < size; i++) {
      const ref = `n${i}`;
      // n0 is the root; n1.. depend on the root, and every second one also on its predecessor.
      const deps = i === 0 ? [] : i % 2 === 0 && i > 1 ? ["n0", `n${i - 1}`] : ["n0"];
      const fails = i === 0 && rootFails;
      jobs.push({
        kind: fails ? "dag-fail" : "dag-echo",
        deps,
        spec: {
          ref,
          type: fails ? "fail" : "echo",
          payload: fails ? { message: "soak: a DAG root that fails" } : { dag: units.length, ref },
          priority: priority(),
          retry: retry(fails ? 1 : 3),
          ...(deps.length > 0 ? { dependsOn: deps } : {}),
        },
      });
    }
    units.push(jobs);
  }
  const singles = total - units.reduce((n, u) => n + u.length, 0);
  const flaky = Math.round(total * 0.1);
  const fail = Math.round(total * 0.1);
  for (let i = 0; i < singles; i++) {
    if (i < flaky) {
      const failTimes = 1 + Math.floor(random() * 2);
      units.push([
        {
          kind: "flaky",
          deps: [],
          spec: {
            type: "flaky",
            payload: { failTimes, seconds: 0 },
            priority: priority(),
            retry: retry(failTimes + 3),
          },
        },
      ]);
    } else if (i < flaky + fail) {
      units.push([
        {
          kind: "fail",
          deps: [],
          spec: {
            type: "fail",
            payload: { message: "soak: meant to fail" },
            priority: priority(),
            retry: retry(1 + Math.floor(random() * 3)),
          },
        },
      ]);
    } else {
      units.push([
        {
          kind: "echo",
          deps: [],
          spec: { type: "echo", payload: { i }, priority: priority(), retry: retry(3) },
        },
      ]);
    }
  }
  // Fisher-Yates with the seeded draw: the same seed submits the same sequence.
  for (let i = units.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [units[i], units[j]] = [units[j] as PlannedJob[], units[i] as PlannedJob[]];
  }
  return units.map((jobs, index) => ({ index, jobs, batch: jobs.length > 1 }));
}

// ---------------------------------------------------------------------------------------------
// The stack as a child process
// ---------------------------------------------------------------------------------------------

interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly args: string;
}

/** Every process of this user, from /proc (Linux): what `ps -e` shows, without parsing ps. */
/** How long DynamoDB Local outlives the stack's other processes at a hard kill (hardKill). */
const DATABASE_GRACE_MS = 500;

async function processTable(): Promise<ProcessInfo[]> {
  const entries = await readdir("/proc");
  const table: ProcessInfo[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, "utf8");
      // The command name is in parentheses and may itself contain spaces or parentheses.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const args = (await readFile(`/proc/${entry}/cmdline`, "utf8")).replaceAll("\0", " ").trim();
      table.push({ pid: Number(entry), ppid: Number(fields[1]), args });
    } catch {
      // Gone between readdir and read, or not ours to read.
    }
  }
  return table;
}

function descendants(table: readonly ProcessInfo[], root: number): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const parent = queue.shift();
    for (const p of table) {
      if (p.ppid === parent) {
        out.push(p);
        queue.push(p.pid);
      }
    }
  }
  return out;
}

async function nodeNameOf(pid: number): Promise<string | undefined> {
  try {
    const environ = await readFile(`/proc/${pid}/environ`, "utf8");
    const entry = environ.split("\0").find((e) => e.startsWith("JOBQ_NODE_NAME="));
    return entry?.slice("JOBQ_NODE_NAME=".length);
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function tsxLoader(): string {
  const require = createRequire(import.meta.url);
  return pathToFileURL(join(dirname(require.resolve("tsx/package.json")), "dist", "loader.mjs")).href;
}

interface StackSettings {
  readonly dataDir: string;
  readonly port: number;
  readonly throttleRate: number;
  readonly log: WriteStream;
}

/** One `npm start` (local/main.ts) in its own process group, its output in the run's log. */
class StackProcess {
  sqsEndpoint: string | undefined;
  readonly faults: Record<string, number>[] = [];
  private readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly generation: number,
    log: WriteStream,
  ) {
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) => {
        log.write(`[stack ${generation}] ${line}\n`);
        const sqs = /SQS (http:\/\/[^\s,]+)/.exec(line);
        if (sqs && this.sqsEndpoint === undefined) this.sqsEndpoint = sqs[1];
        const faults = /(?:faults injected: |"faults":)(\{[^{}]*\})/.exec(line);
        if (faults?.[1]) {
          try {
            this.faults.push(JSON.parse(faults[1]) as Record<string, number>);
          } catch {
            // A torn line: the count is a figure, not an invariant.
          }
        }
      });
    }
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  static async start(settings: StackSettings, generation: number): Promise<StackProcess> {
    const url = `http://127.0.0.1:${settings.port}`;
    const child = spawn(process.execPath, ["--import", tsxLoader(), "local/main.ts"], {
      cwd: REPO_ROOT,
      // The stack's own configuration variables; PATH and the rest pass through (java, HOME).
      env: {
        ...process.env,
        PORT: String(settings.port),
        HOST: "127.0.0.1",
        JOBQ_DATA_DIR: settings.dataDir,
        JOBQ_API_TOKENS: `${TOKEN}=soak:admin`,
        JOBQ_FAULT_THROTTLE_RATE: settings.throttleRate > 0 ? String(settings.throttleRate) : undefined,
        JOBQ_CONFIG: undefined,
        AWS_EC2_METADATA_DISABLED: "true",
      },
      // Its own process group: a hard kill reaches the stack and nothing of the harness.
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const stack = new StackProcess(child, url, generation, settings.log);
    const deadline = Date.now() + HEALTH_TIMEOUT_MS;
    for (;;) {
      if (!stack.running) throw new Error(`the stack (start ${generation}) exited before /health answered`);
      try {
        const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
        if (response.ok && stack.sqsEndpoint !== undefined) return stack;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) {
        await stack.hardKill();
        throw new Error(
          `the stack (start ${generation}) did not answer /health within ${HEALTH_TIMEOUT_MS} ms`,
        );
      }
      await sleep(200);
    }
  }

  /** The worker processes (`[worker cpu-1]` …) with their node names. */
  async workers(): Promise<{ pid: number; node: string }[]> {
    const table = await processTable();
    const found = descendants(table, this.pid).filter((p) => p.args.includes("worker/main.ts"));
    return Promise.all(found.map(async (p) => ({ pid: p.pid, node: (await nodeNameOf(p.pid)) ?? "?" })));
  }

  /**
   * SIGKILL to the stack's process group and to every process below it (the workers and DynamoDB
   * Local run in process groups of their own): a machine that lost power, nothing drains.
   * DynamoDB Local dies DATABASE_GRACE_MS after the processes that talk to it, not with them: it
   * answers a transaction before that transaction is safe on disk, and SIGKILLed within moments
   * of the answer it can lose it (2026-12-08, DynamoDB Local 3.3.0: the last of 600 acknowledged
   * transactions lost in 2 of 7 runs killed right after it, none in 5 runs killed 200 ms after
   * the writers stopped; a soak run lost a submission answered 201 a few milliseconds before the
   * kill). DynamoDB itself never loses an acknowledged write, and the invariants hold jobq to
   * what DynamoDB promises, so the database outlives its clients by that moment.
   */
  async hardKill(): Promise<void> {
    const below = descendants(await processTable(), this.pid);
    const database = below.filter((p) => p.args.includes(LAUNCHER_CLASS)).map((p) => p.pid);
    const clients = below.filter((p) => !database.includes(p.pid)).map((p) => p.pid);
    const kill = (pids: readonly number[]) => {
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      }
    };
    kill([-this.pid, this.pid, ...clients]);
    await sleep(DATABASE_GRACE_MS);
    kill(database);
    const deadline = Date.now() + 15_000;
    while ([this.pid, ...clients, ...database].some(alive) && Date.now() < deadline) await sleep(100);
    await this.exited;
  }

  /** SIGTERM: the stack drains its workers and stops; a hard kill if it has not within 60 s. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const stopped = await Promise.race([this.exited.then(() => true), sleep(60_000).then(() => false)]);
    if (!stopped) await this.hardKill();
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

async function call<T>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpAnswer<T>> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${TOKEN}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
  const text = await response.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: response.status, json: json as T, text };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function inParallel<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const item = items[next++] as T;
        await fn(item);
      }
    }),
  );
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

interface ChaosEvent {
  readonly kind: "kill" | "restart";
  /** Fires when progress (submitted + ended, over twice the jobs) reaches it. */
  readonly at: number;
  fired: boolean;
}

interface Figures {
  readonly submitLatenciesMs: number[];
  submitRequests: number;
  submitRetries: number;
  readonly fiveHundreds: string[];
  readonly kills: string[];
  readonly restarts: string[];
  firstSubmitAt: number;
  lastSubmitAt: number;
}

export async function runSoak(input: Partial<SoakOptions> = {}): Promise<SoakReport> {
  const options: SoakOptions = { ...DEFAULT_SOAK_OPTIONS, ...input };
  const random = seededRandom(options.seed);
  const say = options.progress;
  const dataDir = await mkdtemp(join(tmpdir(), "jobq-soak-"));
  const logFile = join(dataDir, "stack.log");
  const log = createWriteStream(logFile, { flags: "a" });
  const port = await freePort();
  const settings: StackSettings = { dataDir, port, throttleRate: options.throttleRate, log };
  const runId = `${Date.now().toString(36)}-${options.seed}`;
  const startedAt = Date.now();
  const overallDeadline =
    options.deadlineSeconds === undefined
      ? Number.POSITIVE_INFINITY
      : startedAt + options.deadlineSeconds * 1000;

  say(
    `soak: ${options.jobs} jobs, ${options.workerKills} worker kills, ${options.restarts} hard kill + restart, ` +
      `${(options.throttleRate * 100).toFixed(1)} % throttling, ${options.inFlight} submissions in flight, seed ${options.seed}`,
  );
  say(`soak: data ${dataDir}, stack log ${logFile}`);
  const stacks: StackProcess[] = [await StackProcess.start(settings, 1)];
  const current = (): StackProcess => stacks.at(-1) as StackProcess;
  // If the harness dies (Ctrl-C, a test timeout), its stack must not run on: SIGKILL ends it, and
  // its workers and DynamoDB Local follow by themselves (local/worker-guard.ts, the JVM's stdin).
  const onExit = () => {
    const stack = stacks.at(-1);
    if (stack?.running) {
      try {
        process.kill(-stack.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  };
  process.once("exit", onExit);
  let down = false;
  say(`soak: stack up at ${current().url} in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);

  const units = planUnits(options.jobs, random);
  const tracked = new Map<string, Tracked>();
  /** Idempotency-Key → every distinct job id set answered for it. */
  const answersByKey = new Map<string, Set<string>>();
  const figures: Figures = {
    submitLatenciesMs: [],
    submitRequests: 0,
    submitRetries: 0,
    fiveHundreds: [],
    kills: [],
    restarts: [],
    firstSubmitAt: 0,
    lastSubmitAt: 0,
  };
  let submittedJobs = 0;
  let endedJobs = 0;
  const unsubmitted: string[] = [];
  /** Units not sent at all: the run's deadline came first. */
  let notSubmitted = 0;

  // Chaos: kills spread over the run, the restart in its middle, by progress rather than time
  // (how long a run takes depends on the machine).
  const events: ChaosEvent[] = [];
  for (let i = 0; i < options.workerKills; i++) {
    events.push({ kind: "kill", at: 0.1 + (0.75 * (i + 0.5)) / options.workerKills, fired: false });
  }
  for (let i = 0; i < options.restarts; i++) {
    events.push({ kind: "restart", at: 0.2 + (0.5 * (i + 1)) / (options.restarts + 1), fired: false });
  }
  events.sort((a, b) => a.at - b.at);
  const progress = () => (submittedJobs + endedJobs) / (2 * options.jobs);

  const submitUnit = async (unit: Unit): Promise<void> => {
    const key = `soak-${runId}-${unit.index}`;
    const body = unit.batch ? { jobs: unit.jobs.map((j) => j.spec) } : (unit.jobs[0] as PlannedJob).spec;
    const path = unit.batch ? "/jobs/batch" : "/jobs";
    if (Date.now() > overallDeadline) {
      notSubmitted += 1;
      return;
    }
    const giveUpAt = Math.min(Date.now() + SUBMIT_GIVE_UP_MS, overallDeadline);
    let errorAnswers = 0;
    for (let tries = 0; ; tries++) {
      if (tries > 0) figures.submitRetries += 1;
      const sentAt = performance.now();
      figures.firstSubmitAt ||= Date.now();
      let answer: HttpAnswer<{ id?: string; jobs?: ApiJob[]; refs?: Record<string, string> }> | undefined;
      try {
        figures.submitRequests += 1;
        answer = await call(current().url, "POST", path, body, { "idempotency-key": key });
      } catch {
        answer = undefined; // refused or reset: the stack is down or restarting
      }
      if (answer && (answer.status === 201 || answer.status === 200)) {
        figures.submitLatenciesMs.push(performance.now() - sentAt);
        figures.lastSubmitAt = Date.now();
        const accepted = answer.json;
        const ids = unit.batch
          ? unit.jobs.map((j) => accepted.refs?.[j.spec.ref ?? ""] ?? "")
          : [accepted.id ?? ""];
        const seen = answersByKey.get(key) ?? new Set<string>();
        seen.add(ids.join(","));
        answersByKey.set(key, seen);
        if (!tracked.has(ids[0] ?? "")) {
          unit.jobs.forEach((job, i) => {
            const id = ids[i] ?? "";
            const deps = job.deps.map((ref) => ids[unit.jobs.findIndex((j) => j.spec.ref === ref)] ?? "");
            tracked.set(id, { id, kind: job.kind, spec: job.spec, deps });
          });
          submittedJobs += unit.jobs.length;
        }
        return;
      }
      if (answer && answer.status !== 429) {
        // A live API refused a valid submission (5xx, or a 4xx the contract does not allow).
        // Retried a few times with the same key, as a client would; each answer is recorded.
        figures.fiveHundreds.push(
          `POST ${path} (key ${key}) → ${answer.status} ${answer.text.slice(0, 200)}`,
        );
        errorAnswers += 1;
        if (answer.status < 500 || errorAnswers >= MAX_ERROR_ANSWERS) {
          unsubmitted.push(key);
          return;
        }
      }
      if (Date.now() > giveUpAt) {
        unsubmitted.push(key);
        return;
      }
      await sleep(Math.min(2_000, 100 * 2 ** Math.min(tries, 5)));
    }
  };

  const killWorker = async (): Promise<void> => {
    const stack = current();
    const workers = await stack.workers();
    if (workers.length === 0) {
      figures.kills.push("no worker process found to kill");
      return;
    }
    // A node with work on it, so that the kill loses something to recover.
    let busy: string[] = [];
    try {
      const { pools } = await readPools(stack.url);
      busy = pools.flatMap((p) =>
        p.nodes
          .filter((n) => n.status === "up" && n.used.cpu > 0)
          .map((n) => n.id.replace(/-[0-9a-f]{12}$/, "")),
      );
    } catch {
      busy = [];
    }
    const candidates = workers.filter((w) => busy.includes(w.node));
    const victim = (candidates.length > 0 ? candidates : workers)[
      Math.floor(random() * (candidates.length > 0 ? candidates.length : workers.length))
    ] as { pid: number; node: string };
    try {
      process.kill(victim.pid, "SIGKILL");
      figures.kills.push(
        `${victim.node} (pid ${victim.pid}, ${candidates.length > 0 ? "busy" : "idle"}) at ${((Date.now() - startedAt) / 1000).toFixed(0)} s`,
      );
      say(`soak: SIGKILL worker ${victim.node} (pid ${victim.pid})`);
    } catch (error) {
      figures.kills.push(`${victim.node}: kill failed (${(error as Error).message})`);
    }
  };

  const probes: Promise<void>[] = [];
  const restart = async (): Promise<void> => {
    const old = current();
    const killedAt = Date.now();
    down = true;
    say(`soak: hard kill of the stack (pid group ${old.pid}, its workers and DynamoDB Local)`);
    await old.hardKill();
    const next = await StackProcess.start(settings, stacks.length + 1);
    stacks.push(next);
    down = false;
    const healthyAfter = (Date.now() - killedAt) / 1000;
    say(`soak: restarted, /health green ${healthyAfter.toFixed(1)} s after the kill`);
    // How soon the restarted stack runs a new job: a probe echo (tracked like the others),
    // watched in the background so that the kills go on meanwhile.
    const generation = stacks.length - 1;
    probes.push(
      (async () => {
        // Critical priority: it measures how soon the pools admit again, not the backlog ahead.
        const probe = { type: "echo", payload: { probe: generation }, priority: "critical", retry: {} };
        const probeAt = Date.now();
        const answer = await call<{ id: string }>(next.url, "POST", "/jobs", probe).catch(() => ({
          status: 0,
          json: { id: "" },
          text: "",
        }));
        let probeLine = `probe submit answered ${answer.status}`;
        if (answer.status === 201) {
          tracked.set(answer.json.id, {
            id: answer.json.id,
            kind: "probe",
            spec: probe,
            deps: [],
          });
          const deadline = Date.now() + 300_000;
          probeLine = "a new critical echo job did not end within 300 s";
          while (Date.now() < deadline && next.running) {
            const job = await call<ApiJob>(next.url, "GET", `/jobs/${answer.json.id}`).catch(() => undefined);
            if (job && TERMINAL.has(job.json.status)) {
              probeLine = `a new critical echo job ${job.json.status} ${((Date.now() - probeAt) / 1000).toFixed(1)} s after /health`;
              break;
            }
            await sleep(250);
          }
        }
        figures.restarts.push(
          `restart ${generation}: /health green ${healthyAfter.toFixed(1)} s after the hard kill; ${probeLine}`,
        );
        say(`soak: ${probeLine}`);
      })(),
    );
  };

  // Progress: the oldest jobs not yet seen ended, a few per tick. Jobs end roughly in the order
  // they were submitted, so this tracks progress for a few GETs a second; GET /queue's counts
  // would page through the whole backlog every time and slow the system under test.
  const open: string[] = [];
  let opened = 0;
  const sampleEnded = async (): Promise<void> => {
    // A Map iterates in insertion order: the jobs tracked since the last tick join the end.
    open.push(...[...tracked.keys()].slice(opened));
    opened = tracked.size;
    // The oldest ones, and a random sample of the rest: ended jobs leave `open` as they are
    // seen, and the share of the random sample that has ended estimates the rest, so a few
    // stuck jobs at the head, or slow GETs, do not hold the estimate (and the kills) back.
    const head = open.slice(0, 8);
    const rest = open.length - head.length;
    const random = Array.from(
      { length: Math.min(16, rest) },
      () => open[head.length + Math.floor(Math.random() * rest)] as string,
    );
    const ended = new Set<string>();
    let randomEnded = 0;
    await inParallel([...head, ...random], 8, async (id) => {
      const job = await call<ApiJob>(current().url, "GET", `/jobs/${id}`).catch(() => undefined);
      if (job?.status === 200 && TERMINAL.has(job.json.status)) ended.add(id);
    });
    for (const id of random) if (ended.has(id)) randomEnded += 1;
    for (let i = open.length - 1; i >= 0; i--) if (ended.has(open[i] as string)) open.splice(i, 1);
    const share = random.length > 0 ? randomEnded / random.length : 0;
    endedJobs = Math.round(tracked.size - open.length + share * Math.max(0, open.length - head.length));
  };

  // Chaos: the kills and restarts fire as progress reaches them.
  let submissionDone = false;
  let monitorStop = false;
  const chaosDone = (async () => {
    let lastLine = 0;
    while (!monitorStop) {
      if (!down) await sampleEnded();
      const due = events.find((e) => !e.fired && e.at <= progress());
      if (due) {
        due.fired = true;
        if (due.kind === "kill") await killWorker();
        else await restart();
      }
      if (Date.now() - lastLine > 10_000) {
        lastLine = Date.now();
        say(
          `soak: ${((Date.now() - startedAt) / 1000).toFixed(0)} s: ${submittedJobs}/${options.jobs} submitted, ~${endedJobs} ended` +
            (figures.fiveHundreds.length > 0
              ? `, ${figures.fiveHundreds.length} error answers to submissions`
              : ""),
        );
      }
      if (submissionDone && events.every((e) => e.fired) && endedJobs >= submittedJobs) return;
      await sleep(1_000);
    }
  })();

  // Submissions, `inFlight` at a time.
  await inParallel(units, options.inFlight, submitUnit);
  submissionDone = true;
  say(`soak: all submitted (${submittedJobs} jobs) in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);

  // Drain: the chaos loop returns once every event fired and nothing waits; then every job is read.
  const drainDeadline = Math.min(Date.now() + options.drainTimeoutSeconds * 1000, overallDeadline);
  // Events not reached by progress (a run that ends faster than expected) fire now.
  await Promise.race([chaosDone, sleep(Math.max(0, drainDeadline - Date.now()))]);
  monitorStop = true;
  for (const event of events.filter((e) => !e.fired)) {
    event.fired = true;
    if (event.kind === "kill") await killWorker();
    else await restart();
  }

  await Promise.all(probes);
  const jobs = new Map<string, ApiJob>();
  const readJobs = async (ids: readonly string[]) =>
    inParallel(ids, 8, async (id) => {
      const answer = await call<ApiJob>(current().url, "GET", `/jobs/${id}`).catch(() => undefined);
      if (answer?.status === 200) jobs.set(id, answer.json);
    });
  await readJobs([...tracked.keys()]);
  for (;;) {
    const open = [...tracked.keys()].filter((id) => !TERMINAL.has(jobs.get(id)?.status ?? ""));
    if (open.length === 0 || Date.now() > drainDeadline) break;
    say(`soak: waiting for ${open.length} jobs to end`);
    await sleep(3_000);
    await readJobs(open);
  }
  const lastFinish = Math.max(
    ...[...jobs.values()].map((j) => (j.finishedAt ? Date.parse(j.finishedAt) : 0)),
  );

  // ---- the checks ----
  const stack = current();
  const attempts = new Map<string, ApiAttempt[]>();
  await inParallel([...tracked.keys()], 8, async (id) => {
    const items: ApiAttempt[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
      const answer = await call<{ items: ApiAttempt[]; nextCursor: string | null }>(
        stack.url,
        "GET",
        `/jobs/${id}/attempts${query}`,
      ).catch(() => undefined);
      if (answer?.status !== 200) break;
      items.push(...answer.json.items);
      cursor = answer.json.nextCursor;
    } while (cursor);
    attempts.set(
      id,
      items.sort((a, b) => a.attempt - b.attempt),
    );
  });

  const expected = expectedStatuses(tracked);
  const invariants: InvariantResult[] = [];
  const perJob = (name: string, check: (t: Tracked, job: ApiJob, list: ApiAttempt[]) => string | null) => {
    const broken: BrokenJob[] = [];
    for (const t of tracked.values()) {
      const job = jobs.get(t.id);
      const problem = job ? check(t, job, attempts.get(t.id) ?? []) : "GET /jobs/{id} did not answer 200";
      if (problem) broken.push({ id: t.id, kind: t.kind, problem });
    }
    invariants.push({
      name,
      ok: broken.length === 0,
      detail: broken.length === 0 ? `${tracked.size} jobs` : `${broken.length} of ${tracked.size} jobs`,
      broken,
    });
  };

  perJob("every job terminal", (_t, job) =>
    TERMINAL.has(job.status) ? null : `still ${job.status}: ${job.statusReason}`,
  );
  perJob("every job has the status its type and dependencies imply", (t, job) => {
    const want = expected.get(t.id);
    if (!TERMINAL.has(job.status)) return null; // counted above
    if (job.status !== want) return `${job.status} (${job.statusReason}), expected ${want}`;
    if (want === "completed" && t.spec.type === "echo" && !isDeepStrictEqual(job.result, t.spec.payload)) {
      return `completed with result ${JSON.stringify(job.result)}, expected ${JSON.stringify(t.spec.payload)}`;
    }
    return null;
  });
  perJob("no attempt ran again after a success", (_t, _job, list) => {
    const successes = list.filter((a) => a.status === "succeeded");
    if (successes.length > 1)
      return `${successes.length} succeeded attempts (${successes.map((a) => a.attempt).join(", ")})`;
    const success = successes[0];
    if (!success) return null;
    const later = list.filter(
      (a) =>
        a.attempt > success.attempt ||
        (a !== success &&
          a.startedAt !== null &&
          success.finishedAt !== null &&
          a.startedAt > success.finishedAt),
    );
    return later.length > 0
      ? `attempt ${later.map((a) => `${a.attempt} (${a.status})`).join(", ")} after attempt ${success.attempt} succeeded`
      : null;
  });
  perJob("one attempt record per counted attempt", (t, job, list) => {
    const numbers = list.map((a) => a.attempt);
    const contiguous = numbers.every((n, i) => n === i + 1);
    if (job.attempts !== list.length || !contiguous) {
      return `job.attempts ${job.attempts}, records [${list.map((a) => `${a.attempt}:${a.status}`).join(" ")}]`;
    }
    const stillRunning = list.filter((a) => a.status === "running");
    if (TERMINAL.has(job.status) && stillRunning.length > 0) {
      return `terminal ${job.status} with attempt ${stillRunning.map((a) => a.attempt).join(", ")} still running`;
    }
    if (job.status === "failed" && t.kind === "fail") {
      const counted = list.filter((a) => a.status !== "preempted").length;
      const max = Number(t.spec.retry.maxAttempts);
      if (counted !== max) return `failed after ${counted} counted attempts, maxAttempts ${max}`;
    }
    if (job.status === "cancelled" && list.length > 0)
      return `cancelled dependent has ${list.length} attempts`;
    return null;
  });

  // Capacity: every job has ended, so nothing may be reserved anywhere (pool totals and each node).
  let capacityProblems: string[] = [];
  for (let tries = 0; tries < 10; tries++) {
    capacityProblems = [];
    const answer = await readPools(stack.url).catch(() => undefined);
    const pools = answer?.pools ?? [];
    if (answer?.status !== 200) capacityProblems.push(`GET /pools answered ${answer?.status ?? "nothing"}`);
    for (const pool of pools) {
      if (inUse(pool.used)) capacityProblems.push(`pool ${pool.name} used ${JSON.stringify(pool.used)}`);
      for (const node of pool.nodes) {
        if (inUse(node.used))
          capacityProblems.push(`node ${node.id} (${node.status}) used ${JSON.stringify(node.used)}`);
      }
    }
    if (capacityProblems.length === 0) break;
    await sleep(2_000);
  }
  invariants.push({
    name: "no capacity in use",
    ok: capacityProblems.length === 0,
    detail: capacityProblems.length === 0 ? "every pool and node at 0" : capacityProblems.join("; "),
    broken: [],
  });

  // Dead letters: each must belong to a job that ended, with that attempt accounted for.
  const dlq = await deadLetters(stack.sqsEndpoint);
  const unexplained: string[] = [];
  for (const letter of dlq.messages) {
    const job = letter.jobId ? jobs.get(letter.jobId) : undefined;
    const list = letter.jobId ? (attempts.get(letter.jobId) ?? []) : [];
    const record = list.find((a) => a.attempt === letter.attempt);
    const explained =
      job !== undefined &&
      TERMINAL.has(job.status) &&
      (record ? record.status !== "running" : job.attempts >= (letter.attempt ?? 0));
    if (!explained) {
      unexplained.push(
        `${letter.queue}: job ${letter.jobId ?? "?"} attempt ${letter.attempt ?? "?"} (job ${job ? job.status : "unknown"})`,
      );
    }
  }
  invariants.push({
    name: "no message in a DLQ without a job explaining it",
    ok: unexplained.length === 0 && dlq.error === undefined,
    detail:
      dlq.error ??
      (unexplained.length === 0
        ? `${dlq.messages.length} dead letters, each of an ended job (DLQs of the last start only: fauxqs keeps nothing across a restart)`
        : `${unexplained.length} unexplained: ${unexplained.slice(0, 5).join("; ")}`),
    broken: [],
  });

  // One job per submission: no retry answered another job, no job exists that nobody was answered.
  const duplicateKeys = [...answersByKey].filter(([, ids]) => ids.size > 1);
  const listed = await listAllJobs(stack.url);
  const orphans = listed.ids.filter((id) => !tracked.has(id));
  const missing = [...tracked.keys()].filter((id) => !jobs.has(id));
  const submissionProblems = [
    ...duplicateKeys.map(([key, ids]) => `key ${key} answered ${[...ids].join(" and ")}`),
    ...orphans.map((id) => `job ${id} exists but no submission was answered with it`),
    ...missing.map((id) => `job ${id} was answered but GET /jobs/{id} does not find it`),
    ...unsubmitted.map((key) => `submission ${key} never accepted`),
    ...(listed.error ? [listed.error] : []),
  ];
  invariants.push({
    name: "one job per submission",
    ok: submissionProblems.length === 0,
    detail:
      submissionProblems.length === 0
        ? `${answersByKey.size} submissions, ${tracked.size} jobs, ${listed.ids.length} listed`
        : `${submissionProblems.length} problems: ${submissionProblems.slice(0, 5).join("; ")}`,
    broken: [],
  });
  invariants.push({
    name: "no 5xx (or other error) answer to a valid submission",
    ok: figures.fiveHundreds.length === 0,
    detail:
      figures.fiveHundreds.length === 0
        ? `${figures.submitRequests} requests`
        : `${figures.fiveHundreds.length}: ${figures.fiveHundreds.slice(0, 3).join("; ")}`,
    broken: [],
  });

  // Transitions of the first few broken jobs of each invariant.
  for (const invariant of invariants) {
    for (const b of invariant.broken.slice(0, SAMPLES_PER_INVARIANT)) {
      const answer = await call<{ items: ApiTransition[] }>(
        stack.url,
        "GET",
        `/jobs/${b.id}/transitions?limit=200`,
      ).catch(() => undefined);
      b.transitions =
        answer?.status === 200
          ? answer.json.items.map((t) => `${t.at} ${t.from ?? "∅"} → ${t.to}: ${t.reason}`)
          : [`GET /transitions answered ${answer?.status ?? "nothing"}`];
    }
  }

  // Figures.
  const allAttempts = [...attempts.values()].flat();
  const lost = allAttempts.filter((a) => a.status === "lost");
  const lostUnstarted = lost.filter((a) => !a.workerId);
  const jobsWithLost = [...attempts.values()].filter((list) => list.some((a) => a.status === "lost")).length;
  const failedByLost = [...tracked.values()].filter(
    (t) => jobs.get(t.id)?.status === "failed" && expected.get(t.id) === "completed",
  ).length;
  const latencies = [...figures.submitLatenciesMs].sort((a, b) => a - b);
  const elapsedJobs =
    lastFinish > figures.firstSubmitAt ? (lastFinish - figures.firstSubmitAt) / 1000 : Number.NaN;

  await current().stop();
  process.removeListener("exit", onExit);
  log.end();
  await new Promise<void>((resolve) => log.once("close", () => resolve()));
  const faults = sumFaults(stacks.flatMap((s) => s.faults));
  const logFindings = await scanLog(logFile);
  const ok = invariants.every((i) => i.ok);

  const lines: string[] = [];
  lines.push("", "=== soak summary ===");
  lines.push(
    `jobs: ${tracked.size} (${countBy(tracked, (t) => t.kind)}); statuses: ${countBy(tracked, (t) => jobs.get(t.id)?.status ?? "unread")}`,
  );
  lines.push(
    `submit latency: p50 ${percentile(latencies, 50).toFixed(0)} ms, p95 ${percentile(latencies, 95).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms over ${latencies.length} accepted requests (${figures.submitRetries} retries)`,
  );
  lines.push(
    `throughput: ${(tracked.size / elapsedJobs).toFixed(1)} jobs/s (first submission to last finishedAt, ${elapsedJobs.toFixed(0)} s); run ${((Date.now() - startedAt) / 1000).toFixed(0)} s`,
  );
  lines.push(
    `attempts: ${allAttempts.length}, lost ${lost.length} in ${jobsWithLost} jobs (${lostUnstarted.length} lost before any worker ran them); healthy jobs ended failed: ${failedByLost}`,
  );
  if (notSubmitted > 0) {
    lines.push(`load cut short: ${notSubmitted} submissions not sent, the run's deadline came first`);
  }
  lines.push(
    `worker kills: ${figures.kills.length}${figures.kills.length ? ` — ${figures.kills.join("; ")}` : ""}`,
  );
  for (const r of figures.restarts) lines.push(r);
  lines.push(
    `faults injected (processes that stopped cleanly): ${faults ? JSON.stringify(faults) : options.throttleRate > 0 ? "none reported" : "off"}`,
  );
  lines.push("invariants:");
  for (const invariant of invariants) {
    lines.push(`  ${invariant.ok ? "✓" : "✗"} ${invariant.name}: ${invariant.detail}`);
    for (const b of invariant.broken.slice(0, SAMPLES_PER_INVARIANT)) {
      lines.push(`      ${b.id} [${b.kind}] ${b.problem}`);
      for (const t of b.transitions ?? []) lines.push(`        ${t}`);
    }
    if (invariant.broken.length > SAMPLES_PER_INVARIANT) {
      lines.push(
        `      … and ${invariant.broken.length - SAMPLES_PER_INVARIANT} more: ${invariant.broken
          .slice(SAMPLES_PER_INVARIANT, 40)
          .map((b) => b.id)
          .join(" ")}`,
      );
    }
  }
  if (logFindings.length > 0) {
    lines.push("stack log (warnings, errors, throttling that got through, 5xx answers):");
    for (const finding of logFindings) lines.push(`  ${finding}`);
  }
  lines.push(ok ? "RESULT: every invariant holds" : "RESULT: invariants broken (see ✗ above)");
  const keep = options.keep || !ok;
  lines.push(keep ? `kept: ${dataDir} (stack log ${logFile})` : "data directory removed (--keep keeps it)");
  if (!keep) await rm(dataDir, { recursive: true, force: true });
  const summary = lines.join("\n");
  return { ok, invariants, summary, logFile };
}

/** Each job's expected end: its type's, unless a dependency's expected end is not `completed`. */
function expectedStatuses(tracked: ReadonlyMap<string, Tracked>): Map<string, string> {
  const out = new Map<string, string>();
  const resolve = (id: string): string => {
    const known = out.get(id);
    if (known) return known;
    const t = tracked.get(id);
    let status = "completed";
    if (!t) status = "unknown";
    else if (t.deps.some((d) => resolve(d) !== "completed")) status = "cancelled";
    else if (t.kind === "fail" || t.kind === "dag-fail") status = "failed";
    out.set(id, status);
    return status;
  };
  for (const id of tracked.keys()) resolve(id);
  return out;
}

/** GET /pools with the lost nodes too where the API offers `?lost=true`. */
async function readPools(base: string): Promise<{ status: number; pools: ApiPool[] }> {
  let answer = await call<{ items?: ApiPool[] }>(base, "GET", "/pools?lost=true");
  if (answer.status === 400) answer = await call<{ items?: ApiPool[] }>(base, "GET", "/pools");
  return { status: answer.status, pools: answer.json?.items ?? [] };
}

function inUse(c: Capacity): boolean {
  return c.cpu !== 0 || c.memoryMb !== 0 || c.gpu !== 0;
}

function countBy(tracked: ReadonlyMap<string, Tracked>, key: (t: Tracked) => string): string {
  const counts = new Map<string, number>();
  for (const t of tracked.values()) counts.set(key(t), (counts.get(key(t)) ?? 0) + 1);
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
}

function sumFaults(reports: readonly Record<string, number>[]): Record<string, number> | undefined {
  if (reports.length === 0) return undefined;
  const total: Record<string, number> = {};
  for (const report of reports) {
    for (const [service, n] of Object.entries(report)) total[service] = (total[service] ?? 0) + n;
  }
  return total;
}

interface DeadLetter {
  readonly queue: string;
  readonly jobId: string | undefined;
  readonly attempt: number | undefined;
}

/** Every message in the stack's DLQs, read (not deleted) through the local SQS endpoint. */
async function deadLetters(
  endpoint: string | undefined,
): Promise<{ messages: DeadLetter[]; error?: string }> {
  if (!endpoint) return { messages: [], error: "the stack printed no SQS endpoint" };
  const sqs = new SQSClient(awsClientOptions(endpoint, "us-east-1"));
  try {
    const listed = await sqs.send(new ListQueuesCommand({ QueueNamePrefix: "jobq-" }));
    const dlqs = (listed.QueueUrls ?? []).filter((url) => url.endsWith("-dlq"));
    const messages: DeadLetter[] = [];
    for (const url of dlqs) {
      const attributes = await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["ApproximateNumberOfMessages"] }),
      );
      let left = Number(attributes.Attributes?.ApproximateNumberOfMessages ?? 0);
      const name = url.slice(url.lastIndexOf("/") + 1);
      while (left > 0) {
        // A long visibility timeout: each message is read once, and stays in the DLQ.
        const out = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: url,
            MaxNumberOfMessages: 10,
            VisibilityTimeout: 300,
            WaitTimeSeconds: 0,
          }),
        );
        const batch = out.Messages ?? [];
        if (batch.length === 0) break;
        left -= batch.length;
        for (const message of batch) {
          let body: { jobId?: unknown; attempt?: unknown } = {};
          try {
            body = JSON.parse(message.Body ?? "{}") as typeof body;
          } catch {
            body = {};
          }
          messages.push({
            queue: name,
            jobId: typeof body.jobId === "string" ? body.jobId : undefined,
            attempt: typeof body.attempt === "number" ? body.attempt : undefined,
          });
        }
      }
    }
    return { messages };
  } catch (error) {
    return { messages: [], error: `reading the DLQs failed: ${(error as Error).message}` };
  } finally {
    sqs.destroy();
  }
}

/** Every job id the admin sees, newest first, page by page. */
async function listAllJobs(base: string): Promise<{ ids: string[]; error?: string }> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const query: string = `?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const answer = await call<{ items: { id: string }[]; nextCursor: string | null }>(
      base,
      "GET",
      `/jobs${query}`,
    ).catch((error: unknown) => ({ status: 0, json: { items: [], nextCursor: null }, text: String(error) }));
    if (answer.status !== 200) return { ids, error: `GET /jobs${query} answered ${answer.status}` };
    ids.push(...answer.json.items.map((j) => j.id));
    cursor = answer.json.nextCursor;
  } while (cursor);
  return { ids };
}

/**
 * What the stack's output says went wrong: warning and error lines grouped by message, throttling
 * errors that outlived the SDK's retries, and 5xx answers by route. Each with a count and a sample.
 */
async function scanLog(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8").catch(() => "");
  const groups = new Map<string, { count: number; sample: string }>();
  const add = (key: string, line: string) => {
    const group = groups.get(key) ?? { count: 0, sample: line.slice(0, 400) };
    group.count += 1;
    groups.set(key, group);
  };
  for (const line of text.split("\n")) {
    const access = /\] \S+ (GET|POST|PUT|PATCH|DELETE) (\S+) (5\d\d) [\d.]+ms$/.exec(line);
    if (access) {
      add(
        `HTTP ${access[3]} ${access[1]} ${(access[2] ?? "").replace(/job_[0-9A-Z]+/g, "{id}").replace(/\?.*$/, "")}`,
        line,
      );
      continue;
    }
    const level = /"level":"(WARN|ERROR|CRITICAL)"/.exec(line)?.[1];
    const throttled = /Throttling|ProvisionedThroughputExceeded|injected by JOBQ_FAULT_THROTTLE_RATE/.test(
      line,
    );
    // Plain lines (console.error of the local front, crashes) count when they say something failed.
    const plainFailure = !line.includes('"level":"') && /\bfailed\b|Error\b/.test(line);
    if (level || throttled || plainFailure) {
      const message =
        /"message":"([^"]{0,120})/.exec(line)?.[1] ??
        line.replace(/^\[stack \d+\] (\[worker [^\]]+\] )?/, "").slice(0, 120);
      add(`${level ?? "line"}${throttled ? " (throttling)" : ""}: ${message}`, line);
    }
  }
  return [...groups]
    .sort((a, b) => b[1].count - a[1].count)
    .slice(0, 25)
    .map(([key, { count, sample }]) => `${count} × ${key}\n      e.g. ${sample}`);
}
