import { readFileSync } from "node:fs";
import { appendFile, readFile, writeFile } from "node:fs/promises";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import {
  type BulkCancelRequest,
  type CreatedToken,
  type CreateScheduleRequest,
  type Job,
  JobqApiError,
  JobqClient,
  JobqUnreachableError,
  type JobView,
  type PolicyInput,
  type QuotaLimitsInput,
  type Stats,
  type StatsWindow,
  type SubmitBatchRequest,
  type SubmitJobRequest,
  type Token,
  type UpdateScheduleRequest,
} from "../client";
import {
  ConfigError,
  type Connection,
  configPath,
  DEFAULT_PROFILE,
  resolveConnection,
  saveProfile,
} from "./config";
import {
  arraySummary,
  CIRCUIT_HEADERS,
  circuitRows,
  colorEnabled,
  costPairs,
  costRows,
  costSum,
  drainState,
  formatDuration,
  formatUsd,
  keyValues,
  logLine,
  NODE_HEADERS,
  nodeRows,
  paint,
  paintStatus,
  relative,
  table,
  truncate,
  usageBar,
} from "./format";
import { exportState, importState } from "./transfer";
import { followLogs, type Output, watchJobs } from "./watch";

/**
 * The `jobq` program (commander). `run` is the whole CLI as a function of its arguments, its
 * environment and its two output streams, and answers the exit code:
 * 0 ok, 1 a watched job ended failed or cancelled, 2 usage error, 3 the API refused, 4 unreachable.
 */

export const EXIT = { ok: 0, jobFailed: 1, usage: 2, refused: 3, unreachable: 4 } as const;

export interface Io {
  readonly out: Output;
  readonly err: Output;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Bad input the CLI itself catches (a file that is not JSON, conflicting flags): exit 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

interface GlobalOptions {
  readonly profile?: string;
  readonly json?: boolean;
}

export async function run(argv: readonly string[], io: Io): Promise<number> {
  let exitCode: number = EXIT.ok;
  const program = buildProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv], { from: "user" });
    return exitCode;
  } catch (error) {
    return report(error, io.err);
  }
}

function report(error: unknown, err: Output): number {
  if (error instanceof CommanderError) {
    // Commander has printed its own message (or the help) already.
    // Help and --version exit 0; help shown for a missing subcommand, like any parse error, is usage.
    return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (error instanceof UsageError || error instanceof ConfigError) {
    err.write(`error: ${error.message}\n`);
    return EXIT.usage;
  }
  if (error instanceof JobqApiError) {
    err.write(`error: ${error.code}: ${error.message}\n`);
    if (error.details !== undefined && error.details !== null)
      err.write(`${JSON.stringify(error.details, null, 2)}\n`);
    if (error.retryAfterSeconds !== undefined) err.write(`retry after ${error.retryAfterSeconds} s\n`);
    return EXIT.refused;
  }
  if (error instanceof JobqUnreachableError) {
    err.write(`error: ${error.message}\n`);
    return EXIT.unreachable;
  }
  err.write(`error: ${(error as Error)?.message ?? String(error)}\n`);
  return 1;
}

function integer(value: string): number {
  if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError("not an integer");
  return Number(value);
}

function number(value: string): number {
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isFinite(parsed)) throw new InvalidArgumentError("not a number");
  return parsed;
}

/** A priority name or an integer; the API checks the range. */
function priority(value: string): string | number {
  return /^-?\d+$/.test(value) ? Number(value) : value;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function keyValue(pairs: readonly string[] | undefined, flag: string): Record<string, string> | undefined {
  if (!pairs || pairs.length === 0) return undefined;
  const map: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new UsageError(`${flag} takes key=value, got "${pair}"`);
    map[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return map;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${what} is not JSON: ${(error as Error).message}`);
  }
}

/** A JSON file, or standard input for `-`. */
async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = path === "-" ? await readStdin() : await readFile(path, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as Error).message}`);
  }
  return parseJson(text, path);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version?: string;
  };
  return manifest.version ?? "unknown";
}

function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const tty = io.out.isTTY === true;
  const color = colorEnabled(io.out.isTTY, io.env);
  const write = (text: string): void => {
    io.out.write(text.endsWith("\n") ? text : `${text}\n`);
  };

  const program = new Command("jobq")
    .description("the jobq command line: submit, inspect, watch and manage jobs")
    .option(
      "--profile <name>",
      "a profile saved by `jobq login` (default: JOBQ_URL/JOBQ_TOKEN, then the default profile)",
    )
    .version(packageVersion(), "-V, --version")
    .option("--json", "print the API's JSON instead of tables")
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.out.write(text),
      writeErr: (text) => io.err.write(text),
    })
    .showHelpAfterError("(jobq --help lists the commands)");

  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  let connection: Connection | undefined;
  let client: JobqClient | undefined;
  const connect = async (): Promise<{ client: JobqClient; connection: Connection }> => {
    connection ??= await resolveConnection({ profile: globals().profile }, io.env);
    client ??= new JobqClient({ url: connection.url, token: connection.token });
    return { client, connection };
  };
  /** The API's JSON with --json, else the human rendering. */
  const show = (value: unknown, human: () => string): void => {
    write(globals().json ? JSON.stringify(value, null, 2) : human());
  };

  const watch = async (ids: readonly string[] | undefined): Promise<void> => {
    const { client, connection } = await connect();
    setExit(
      await watchJobs({
        client,
        token: connection.token,
        streamUrl: connection.streamUrl,
        ids,
        out: io.out,
        err: io.err,
        tty,
        color,
        json: globals().json === true,
      }),
    );
  };

  program
    .command("login")
    .description("save a URL and token as a profile in ~/.config/jobq/config.json (mode 0600)")
    .requiredOption("--url <url>", "the API's base URL")
    .requiredOption("--token <token>", "the bearer token")
    .option("--no-verify", "save without checking the token against the API")
    .action(async (options: { url: string; token: string; verify: boolean }) => {
      if (options.verify)
        await new JobqClient({ url: options.url, token: options.token }).listJobs({ limit: 1 });
      const name = globals().profile ?? DEFAULT_PROFILE;
      const path = configPath(io.env);
      await saveProfile(path, name, { url: options.url, token: options.token });
      show(
        { profile: name, url: options.url, path },
        () => `saved profile "${name}" (${options.url}) in ${path}`,
      );
    });

  program
    .command("submit")
    .description(
      'submit a job from flags, a job from -f job.json, or a DAG from -f dag.json ({"jobs": [...]})',
    )
    .argument("[type]", "the job's type (with flags)")
    .option("-f, --file <path>", "a job or a batch as JSON (- for standard input)")
    .option("--name <name>")
    .option("--payload <json>", "the payload, as JSON")
    .option("--priority <priority>", "critical, high, normal, low, background or -10..10", priority)
    .option("--cpu <n>", "CPUs", number)
    .option("--memory <mb>", "memory in MB", integer)
    .option("--gpu <n>", "GPUs", integer)
    .option("--pool <pool>")
    .option("--constraint <key=value>", "a label the pool must carry (repeatable)", collect)
    .option("--tag <key=value>", "a tag (repeatable)", collect)
    .option("--depends-on <ids>", "comma-separated job ids")
    .option("--max-attempts <n>", "attempts in all (1 = no retry)", integer)
    .option("--timeout <seconds>", "per attempt", integer)
    .option("--run-at <iso>", "not before this time")
    .option("--deadline <iso>", "fail if not started by then")
    .option("--off-peak", "only in the policy's off-peak window")
    .option("--project <project>")
    .option(
      "--array <n>",
      "an array job: a parent and n children (1..10000) sharing this definition",
      integer,
    )
    .option("--idempotency-key <key>", "the same key within 24 h answers the original job(s)")
    .option("-w, --watch", "watch the submitted job(s) until they end (exit code as `jobq watch`)")
    .action(async (type: string | undefined, options: SubmitFlags) => {
      const { client } = await connect();
      const submitOptions = { idempotencyKey: options.idempotencyKey };
      let ids: string[];
      if (options.file !== undefined) {
        if (type !== undefined) throw new UsageError("give either a type with flags or -f, not both");
        if (options.array !== undefined)
          throw new UsageError('--array goes with a type and flags; in a file, write "array": {"size": n}');
        const body = await readJsonFile(options.file);
        if (!isRecord(body)) throw new UsageError(`${options.file} must hold a JSON object`);
        if (Array.isArray(body.jobs)) {
          const batch = await client.submitBatch(body as SubmitBatchRequest, submitOptions);
          ids = batch.jobs.map((job) => job.id);
          show(batch, () =>
            table(
              ["REF", "ID", "TYPE", "STATUS"],
              Object.entries(batch.refs).map(([ref, id]) => {
                const job = batch.jobs.find((j) => j.id === id);
                return [ref, id, job?.type ?? "", paintStatus(job?.status ?? "", color)];
              }),
            ),
          );
        } else {
          const job = await client.submit(body as SubmitJobRequest, submitOptions);
          ids = [job.id];
          show(job, () => job.id);
        }
      } else {
        if (type === undefined) throw new UsageError("submit needs a type, or -f <file>");
        const job = await client.submit(jobFromFlags(type, options), submitOptions);
        ids = [job.id];
        show(job, () => job.id);
      }
      if (options.watch) await watch(ids);
    });

  program
    .command("get")
    .description("a job, with its place in the queue if queued, its cost, and an array's children")
    .argument("<id>")
    .action(async (id: string) => {
      const { client } = await connect();
      const job = await client.getJob(id);
      show(job, () => describeJob(job, new Date(), color));
    });

  program
    .command("list")
    .description("jobs, newest first, filtered as GET /jobs")
    .option("--status <statuses>", "comma-separated")
    .option("--type <type>")
    .option("--owner <owner>", "admins")
    .option("--priority <priority>", "a name or an integer", priority)
    .option("--tag <key:value>")
    .option("--project <project>")
    .option("--schedule-id <id>")
    .option("--created-after <iso>")
    .option("--created-before <iso>")
    .option("--updated-since <iso>")
    .option("--limit <n>", "1..200 (default 50)", integer)
    .option("--cursor <cursor>", "the nextCursor of a previous page")
    .action(async (options: ListFlags) => {
      const { client } = await connect();
      const page = await client.listJobs({
        status: options.status?.split(",") as Job["status"][] | undefined,
        type: options.type,
        owner: options.owner,
        priority: options.priority as never,
        tag: options.tag,
        project: options.project,
        scheduleId: options.scheduleId,
        createdAfter: options.createdAfter,
        createdBefore: options.createdBefore,
        updatedSince: options.updatedSince,
        limit: options.limit,
        cursor: options.cursor,
      });
      const now = new Date();
      show(page, () => {
        const rows = page.items.map((job) => [
          job.id,
          truncate(job.type, 20),
          paintStatus(job.status, color),
          String(job.priority),
          `${job.attempts}/${job.retry.maxAttempts}`,
          relative(job.createdAt, now),
          truncate(job.statusReason, 60),
        ]);
        const text = table(["ID", "TYPE", "STATUS", "PRI", "ATTEMPTS", "CREATED", "REASON"], rows);
        return page.nextCursor
          ? `${text}\n${paint(`more: --cursor ${page.nextCursor}`, "dim", color)}`
          : text;
      });
    });

  program
    .command("logs")
    .description("a job's log: the lines its task wrote and its lifecycle lines")
    .argument("<id>")
    .option("--follow", "keep printing new lines until the job has ended")
    .option("--attempt <n>", "only this attempt's lines", integer)
    .option("--level <level>", "debug, info, warn or error")
    .action(async (id: string, options: { follow?: boolean; attempt?: number; level?: string }) => {
      const { client } = await connect();
      const json = globals().json === true;
      if (options.follow) {
        if (options.attempt !== undefined || options.level !== undefined)
          throw new UsageError("--follow reads the whole log: leave out --attempt and --level");
        await followLogs({ client, id, out: io.out, color, json });
        return;
      }
      let cursor: string | undefined;
      do {
        const page = await client.logs(id, {
          cursor,
          limit: 200,
          attempt: options.attempt,
          level: options.level as never,
        });
        // One JSON object a line: a log is read in pages and may be long.
        for (const line of page.items) write(json ? JSON.stringify(line) : logLine(line, color));
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
    });

  program
    .command("attempts")
    .description("a job's attempts")
    .argument("<id>")
    .action(async (id: string) => {
      const { client } = await connect();
      const page = await client.attempts(id, { limit: 200 });
      show(page, () =>
        table(
          ["ATTEMPT", "STATUS", "STARTED", "DURATION", "NODE", "POOL", "ERROR"],
          page.items.map((a) => [
            String(a.attempt),
            a.status,
            a.startedAt ?? "-",
            a.durationMs === null ? "-" : formatDuration(a.durationMs),
            a.nodeId ?? "-",
            a.pool ?? "-",
            a.error ? truncate(`${a.error.type}: ${a.error.message}`, 60) : "",
          ]),
        ),
      );
    });

  program
    .command("transitions")
    .description("every status change of a job")
    .argument("<id>")
    .action(async (id: string) => {
      const { client } = await connect();
      const page = await client.transitions(id, { limit: 200 });
      show(page, () =>
        table(
          ["AT", "FROM", "TO", "BY", "REASON"],
          page.items.map((t) => [
            t.at,
            t.from ?? "-",
            paintStatus(t.to, color),
            t.triggeredBy ?? "system",
            t.reason,
          ]),
        ),
      );
    });

  const act = (
    name: string,
    description: string,
    call: (client: JobqClient, id: string) => Promise<Job>,
  ): void => {
    program
      .command(name)
      .description(description)
      .argument("<ids...>")
      .action(async (ids: string[]) => {
        const { client } = await connect();
        const jobs: Job[] = [];
        // One at a time, stopping at the first refusal: its error says which job and why.
        for (const id of ids) {
          const job = await call(client, id);
          jobs.push(job);
          if (!globals().json) write(`${job.id} ${paintStatus(job.status, color)}`);
        }
        if (globals().json) write(JSON.stringify(ids.length === 1 ? jobs[0] : jobs, null, 2));
      });
  };
  act("cancel", "cancel jobs (a running attempt is aborted; dependents are cancelled)", (c, id) =>
    c.cancel(id),
  );
  act("pause", "pause jobs (a running attempt stops and does not count)", (c, id) => c.pause(id));
  act("resume", "resume paused jobs", (c, id) => c.resume(id));

  program
    .command("retry")
    .description("give a failed, cancelled or escalated job a new attempt budget")
    .argument("<id>")
    .option("--max-attempts <n>", "attempts the retry may use", integer)
    .option("--dependents", "bring back the dependents its cascade cancelled")
    .option("--deadline <iso>", "a new deadline, replacing one that has passed")
    .option("-w, --watch", "watch the job until it ends")
    .action(
      async (
        id: string,
        options: { maxAttempts?: number; dependents?: boolean; deadline?: string; watch?: boolean },
      ) => {
        const { client } = await connect();
        const job = await client.retry(id, {
          maxAttempts: options.maxAttempts,
          dependents: options.dependents,
          deadline: options.deadline,
        });
        show(job, () => `${job.id} ${paintStatus(job.status, color)}`);
        if (options.watch) await watch([job.id]);
      },
    );

  const bulk = program
    .command("bulk")
    .description("cancel or retry, in one call, a page of the jobs GET /jobs's filters match");
  for (const action of ["cancel", "retry"] as const) {
    const command = bulk
      .command(action)
      .description(`POST /jobs/${action}: your matching jobs (admins: anyone's), --limit at a time`)
      .option("--status <statuses>", "comma-separated")
      .option("--type <type>")
      .option("--owner <owner>", "admins")
      .option("--priority <priority>", "a name or an integer")
      .option("--tag <key:value>")
      .option("--project <project>")
      .option("--schedule-id <id>")
      .option("--created-after <iso>")
      .option("--created-before <iso>")
      .option("--limit <n>", "1..200 (default 50)", integer)
      .option("--cursor <cursor>", "the nextCursor of a previous call");
    if (action === "retry")
      command
        .option("--max-attempts <n>", "attempts each retry may use", integer)
        .option("--dependents", "bring back the dependents their cascades cancelled");
    command.action(async (options: ListFlags & { maxAttempts?: number; dependents?: boolean }) => {
      const { limit, cursor, maxAttempts, dependents, ...filters } = options;
      const filter = Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== undefined));
      const { client } = await connect();
      const request = { filter: filter as BulkCancelRequest["filter"], limit, cursor };
      const result =
        action === "cancel"
          ? await client.cancelJobs(request)
          : await client.retryJobs({ ...request, maxAttempts, dependents });
      show(result, () => {
        const rows = [
          ...result.acted.map((id) => [id, action === "cancel" ? "cancelled" : "retried", ""]),
          ...result.skipped.map((s) => [s.id, "skipped", s.reason]),
        ];
        const text = rows.length > 0 ? table(["ID", "OUTCOME", "REASON"], rows) : "no matching jobs";
        return result.nextCursor
          ? `${text}\n${paint(`more: --cursor ${result.nextCursor}`, "dim", color)}`
          : text;
      });
    });
  }

  program
    .command("priority")
    .description("change a job's priority, or (admins) put it just ahead of a queued job")
    .argument("<id>")
    .argument("[priority]", "critical, high, normal, low, background or -10..10")
    .option("--before <jobId>", "admins: take that queued job's priority and go just ahead of it")
    .action(async (id: string, value: string | undefined, options: { before?: string }) => {
      if ((value === undefined) === (options.before === undefined))
        throw new UsageError("give a priority or --before <jobId> (one of them)");
      const { client } = await connect();
      const job = await client.updateJob(
        id,
        (value !== undefined ? { priority: priority(value) } : { before: options.before }) as never,
      );
      show(job, () => `${job.id} priority ${job.priority}`);
    });

  program
    .command("watch")
    .description(
      "follow jobs live until all have ended: the given ids, a DAG from its batch file, or all of yours",
    )
    .argument("[ids...]", "job ids (none: every unfinished job you can see, and new ones)")
    .option("-f, --file <path>", "the JSON answer of `jobq submit -f dag.json --json`: watch its jobs")
    .action(async (ids: string[], options: { file?: string }) => {
      const all = [...ids];
      if (options.file !== undefined) {
        const answer = await readJsonFile(options.file);
        const jobs = isRecord(answer) && Array.isArray(answer.jobs) ? answer.jobs : undefined;
        if (!jobs)
          throw new UsageError(`${options.file} holds no "jobs" list (submit -f dag.json --json writes one)`);
        for (const job of jobs) if (isRecord(job) && typeof job.id === "string") all.push(job.id);
      }
      await watch(all.length > 0 ? all : undefined);
    });

  program
    .command("queue")
    .description("the queued jobs in the order the scheduler would admit them")
    .option("--pool <pool>")
    .action(async (options: { pool?: string }) => {
      const { client } = await connect();
      const queue = await client.queue({ pool: options.pool });
      const now = new Date();
      show(queue, () => {
        const counts = Object.entries(queue.counts)
          .map(([status, n]) => `${n} ${paintStatus(status, color)}`)
          .join(" · ");
        const rows = queue.queued.map((q) => [
          String(q.position),
          q.id,
          truncate(q.type, 20),
          String(q.priority),
          q.owner,
          q.pool ?? "*",
          q.estimatedStartAt ? relative(q.estimatedStartAt, now) : "?",
          truncate(q.statusReason, 60),
        ]);
        return `${counts || "no jobs"}${queue.countsComplete ? "" : " (capped)"}\n${table(
          ["POS", "ID", "TYPE", "PRI", "OWNER", "POOL", "ETA", "REASON"],
          rows,
        )}`;
      });
    });

  program
    .command("pools")
    .description("each pool's nodes and what they have in use")
    .option("--lost", "list nodes marked lost too")
    .action(async (options: { lost?: boolean }) => {
      const { client } = await connect();
      const pools = await client.pools({ lost: options.lost });
      show(pools, () =>
        pools
          .map((pool) => {
            const head = `${paint(pool.name, "bold", color)}  cpu ${usageBar(pool.used.cpu, pool.capacity.cpu, 10)}  mem ${usageBar(pool.used.memoryMb, pool.capacity.memoryMb, 10)}  gpu ${usageBar(pool.used.gpu, pool.capacity.gpu, 10)}`;
            const nodes = pool.nodes.map(
              (node) =>
                `  ${node.id} ${node.status === "up" ? node.status : paint(node.status, "yellow", color)}  cpu ${usageBar(node.used.cpu, node.capacity.cpu)}  mem ${usageBar(node.used.memoryMb, node.capacity.memoryMb)}  gpu ${usageBar(node.used.gpu, node.capacity.gpu)}`,
            );
            return [head, ...nodes].join("\n");
          })
          .join("\n\n"),
      );
    });

  const nodes = program.command("nodes").description("worker nodes");
  nodes
    .command("list")
    .description("every node of every pool (from GET /pools)")
    .option("--pool <pool>")
    .option("--lost", "nodes marked lost too")
    .action(async (options: { pool?: string; lost?: boolean }) => {
      const { client } = await connect();
      const pools = (await client.pools({ lost: options.lost })).filter(
        (p) => !options.pool || p.name === options.pool,
      );
      const rows = pools.flatMap((pool) => pool.nodes.map((node) => ({ pool: pool.name, ...node })));
      show(rows, () => table(NODE_HEADERS, nodeRows(pools, new Date())));
    });
  nodes
    .command("drain")
    .description(
      "drain a node (admins): it takes no new work, finishes what it runs, then leaves; " +
        "--wait follows it until it is gone (exit 0)",
    )
    .argument("<pool>")
    .argument("<nodeId>")
    .option("--wait", "follow GET /pools until the node has left (gone, or lost once its worker exited)")
    .action(async (pool: string, nodeId: string, options: { wait?: boolean }) => {
      const { client } = await connect();
      const { started, node } = await client.drainNode(pool, nodeId);
      show({ pool, ...node }, () =>
        started
          ? `node ${node.id} of pool ${pool}: draining (drained by ${node.drainedBy ?? "?"})`
          : `node ${node.id} of pool ${pool}: already draining${node.drainedBy ? ` (drained by ${node.drainedBy})` : ""}`,
      );
      if (!options.wait) return;
      // A worker notices the drain on its next node heartbeat and leaves once its attempts end,
      // which can take as long as they run: poll, print each change, no deadline of our own.
      let last = "";
      for (;;) {
        const state = drainState(await client.pools({ lost: true }), pool, nodeId);
        if (state.line !== last) {
          last = state.line;
          if (!globals().json) write(state.line);
        }
        if (state.done) {
          if (globals().json) write(JSON.stringify({ pool, id: nodeId, status: state.status }));
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
      }
    });

  program
    .command("stats")
    .description("counts, throughput, queue-wait and run-time percentiles, utilization")
    .option("--window <window>", "5m, 15m, 1h, 6h or 24h (default 1h)")
    .action(async (options: { window?: string }) => {
      const { client } = await connect();
      const stats = await client.stats(options.window as StatsWindow | undefined);
      show(stats, () => describeStats(stats, color));
    });

  const schedules = program.command("schedules").description("recurring schedules");
  schedules
    .command("list")
    .option("--owner <owner>", "admins")
    .option("--limit <n>", "1..200", integer)
    .option("--cursor <cursor>")
    .action(async (options: { owner?: string; limit?: number; cursor?: string }) => {
      const { client } = await connect();
      const page = await client.listSchedules(options);
      const now = new Date();
      show(page, () =>
        table(
          ["ID", "NAME", "CRON", "TIMEZONE", "ENABLED", "NEXT", "LAST JOB"],
          page.items.map((s) => [
            s.id,
            truncate(s.name, 30),
            s.cron,
            s.timezone,
            s.enabled ? "yes" : "no",
            relative(s.nextRunAt, now),
            s.lastJobId ?? "-",
          ]),
        ),
      );
    });
  schedules
    .command("get")
    .argument("<id>")
    .action(async (id: string) => {
      const { client } = await connect();
      const schedule = await client.getSchedule(id);
      show(schedule, () => JSON.stringify(schedule, null, 2));
    });
  schedules
    .command("create")
    .description("from -f schedule.json, or --name/--cron/--job")
    .option("-f, --file <path>", "the schedule as JSON (- for standard input)")
    .option("--name <name>")
    .option("--cron <cron>")
    .option("--timezone <tz>")
    .option("--job <json>", "the job template, as JSON")
    .option("--overlap <overlap>", "allow or skip")
    .option("--disabled", "create it disabled")
    .action(async (options: ScheduleFlags) => {
      const { client } = await connect();
      const body = options.file !== undefined ? await readJsonFile(options.file) : scheduleFromFlags(options);
      if (!isRecord(body)) throw new UsageError("a schedule is a JSON object");
      const schedule = await client.createSchedule(body as CreateScheduleRequest);
      show(schedule, () => schedule.id);
    });
  schedules
    .command("update")
    .argument("<id>")
    .option("-f, --file <path>", "the change as JSON")
    .option("--name <name>")
    .option("--cron <cron>")
    .option("--timezone <tz>")
    .option("--job <json>", "the job template, as JSON")
    .option("--overlap <overlap>", "allow or skip")
    .option("--enable")
    .option("--disable")
    .action(async (id: string, options: ScheduleFlags & { enable?: boolean; disable?: boolean }) => {
      if (options.enable && options.disable) throw new UsageError("--enable or --disable, not both");
      const { client } = await connect();
      const change =
        options.file !== undefined
          ? await readJsonFile(options.file)
          : {
              ...scheduleFromFlags(options),
              enabled: options.enable ? true : options.disable ? false : undefined,
            };
      if (!isRecord(change)) throw new UsageError("a change is a JSON object");
      const schedule = await client.updateSchedule(id, change as UpdateScheduleRequest);
      show(schedule, () => `${schedule.id} updated`);
    });
  schedules
    .command("delete")
    .argument("<id>")
    .action(async (id: string) => {
      const { client } = await connect();
      await client.deleteSchedule(id);
      show({ id, deleted: true }, () => `${id} deleted`);
    });
  schedules
    .command("trigger")
    .description("fire once now")
    .argument("<id>")
    .action(async (id: string) => {
      const { client } = await connect();
      const fired = await client.triggerSchedule(id);
      if (fired.outcome === "skipped")
        show(fired.fire, () => ("skipped" in fired.fire ? `skipped: ${fired.fire.skipped}` : "skipped"));
      else show(fired.job, () => fired.job.id);
    });

  const policy = program.command("policy").description("the scheduling policy (admins)");
  policy.command("get").action(async () => {
    const { client } = await connect();
    const view = await client.getPolicy();
    show(view, () => JSON.stringify(view, null, 2));
  });
  policy
    .command("set")
    .description("replace the whole policy (fields left out take their defaults)")
    .argument("[json]", "the policy as JSON")
    .option("-f, --file <path>", "the policy as a JSON file (- for standard input)")
    .action(async (json: string | undefined, options: { file?: string }) => {
      if ((json === undefined) === (options.file === undefined))
        throw new UsageError("give the policy as JSON or -f <file>");
      const body =
        options.file !== undefined ? await readJsonFile(options.file) : parseJson(json ?? "", "the policy");
      const { client } = await connect();
      const view = await client.putPolicy(body as PolicyInput);
      show(view, () => JSON.stringify(view, null, 2));
    });

  const quota = program.command("quota").description("a principal's quota");
  quota
    .command("get")
    .argument("<principal>", "a principal, or project:<name>")
    .action(async (principal: string) => {
      const { client } = await connect();
      const view = await client.getQuota(principal);
      show(view, () =>
        keyValues([
          ["principal", view.principal],
          ["limits", JSON.stringify(view.limits)],
          ["used", JSON.stringify(view.used)],
          ["remaining", JSON.stringify(view.remaining)],
          ["warning", view.warning ? paint("yes (80 % used)", "yellow", color) : "no"],
          ...(view.cost === undefined
            ? []
            : ([
                ["cost today", costSum(view.cost.today)],
                ["cost this week", costSum(view.cost.week)],
              ] as [string, string][])),
        ]),
      );
    });
  quota
    .command("set")
    .description("replace a principal's limits (admins)")
    .argument("<principal>")
    .option("-f, --file <path>", "the limits as JSON")
    .option("--daily-gpu-seconds <n>", "", integer)
    .option("--weekly-gpu-seconds <n>", "", integer)
    .option("--max-queued-jobs <n>", "", integer)
    .option("--max-priority <priority>", "", priority)
    .action(async (principal: string, options: QuotaFlags) => {
      const body =
        options.file !== undefined
          ? await readJsonFile(options.file)
          : {
              dailyGpuSeconds: options.dailyGpuSeconds,
              weeklyGpuSeconds: options.weeklyGpuSeconds,
              maxQueuedJobs: options.maxQueuedJobs,
              maxPriority: options.maxPriority,
            };
      const { client } = await connect();
      const view = await client.putQuota(principal, body as QuotaLimitsInput);
      show(view, () => `${view.principal}: ${JSON.stringify(view.limits)}`);
    });

  const tokens = program
    .command("tokens")
    .description("API tokens (admins): create, list, revoke; bootstrap the first one with AWS credentials");
  tokens
    .command("create")
    .description("POST /admin/tokens: prints the new token, shown only this once")
    .requiredOption("--principal <id>", "the user id the token acts as")
    .option("--admin", "give the token the admin role")
    .option("--reader", "read-only: reads what the principal (with --admin: an admin) sees, changes nothing")
    .action(async (options: { principal: string; admin?: boolean; reader?: boolean }) => {
      const { client } = await connect();
      const admin = options.admin === true;
      const created = await client.createToken({
        principal: options.principal,
        role: options.reader === true ? (admin ? "auditor" : "reader") : admin ? "admin" : "user",
      });
      announceToken(created);
    });
  tokens
    .command("list")
    .description("GET /admin/tokens: ids, principals, roles, when made and revoked; never a token")
    .action(async () => {
      const { client } = await connect();
      const all: Token[] = [];
      for await (const token of client.tokens({ limit: 200 })) all.push(token);
      show(all, () =>
        table(
          ["ID", "PRINCIPAL", "ROLE", "CREATED", "REVOKED"],
          all.map((t) => [
            t.id,
            t.principal,
            t.role,
            t.createdAt,
            t.revokedAt ? paint(t.revokedAt, "dim", color) : "-",
          ]),
        ),
      );
    });
  tokens
    .command("revoke")
    .description(
      "DELETE /admin/tokens/{id}: refused from its next request (AWS: within the 5 min authorizer cache)",
    )
    .argument("<id>", "the token's id, as `tokens list` shows it")
    .action(async (id: string) => {
      const { client } = await connect();
      const token = await client.revokeToken(id);
      show(token, () => `revoked ${token.id} (${token.principal}) at ${token.revokedAt ?? "?"}`);
    });
  tokens
    .command("bootstrap")
    .description(
      "the first admin token of a deployed stack, written to its Tokens table with your AWS credentials",
    )
    .requiredOption("--principal <id>", "the admin's user id")
    .option("--table <name>", "the stack output TokensTableName (default: $JOBQ_TOKENS_TABLE)")
    .option("--region <region>", "AWS region (default: $AWS_REGION, else your profile's)")
    .option("--force", "issue one even though a working admin token exists")
    .action(async (options: { principal: string; table?: string; region?: string; force?: boolean }) => {
      const table = options.table ?? io.env.JOBQ_TOKENS_TABLE;
      if (!table)
        throw new UsageError(
          "no tokens table: pass --table or set JOBQ_TOKENS_TABLE (stack output TokensTableName)",
        );
      const { AdminTokenExistsError, bootstrapAdminToken } = await import("./bootstrap");
      const { TokenRecordError } = await import("../store/tokens");
      try {
        const { token, record } = await bootstrapAdminToken({
          table,
          principal: options.principal,
          region: options.region ?? io.env.AWS_REGION,
          endpoint: io.env.JOBQ_DYNAMODB_ENDPOINT,
          force: options.force === true,
        });
        announceToken({
          id: record.tokenId,
          principal: record.principal,
          role: record.role,
          createdAt: record.createdAt,
          revokedAt: null,
          project: record.project ?? null,
          token,
        });
      } catch (error) {
        if (error instanceof AdminTokenExistsError || error instanceof TokenRecordError)
          throw new UsageError(error.message);
        throw error;
      }
    });

  program
    .command("export")
    .description("GET /admin/export (admins): every page of jobq's state as NDJSON, to a file or stdout")
    .option("--out <file>", "write to this file (default: stdout)")
    .option("--cursor <cursor>", "resume where an interrupted export stopped (appends to --out)")
    .option("--limit <n>", "items scanned per page, 1..1000 (default 200)", integer)
    .action(async (options: { out?: string; cursor?: string; limit?: number }) => {
      const { client } = await connect();
      const out = options.out;
      if (out && options.cursor === undefined) await writeFile(out, "");
      const lines = await exportState(client, {
        cursor: options.cursor,
        limit: options.limit,
        write: async (text) => {
          if (out) await appendFile(out, text);
          else io.out.write(text);
        },
        err: io.err,
      });
      io.err.write(`exported ${lines} lines${out ? ` to ${out}` : ""}\n`);
    });
  program
    .command("import")
    .description("POST /admin/import (admins): an export file's lines, in chunks; prints the counts per kind")
    .argument("<file>", "an NDJSON file of `jobq export`, or - for stdin")
    .action(async (file: string) => {
      const { client } = await connect();
      let text: string;
      try {
        text = file === "-" ? await readStdin() : await readFile(file, "utf8");
      } catch (error) {
        throw new UsageError(`cannot read ${file}: ${(error as Error).message}`);
      }
      const summary = await importState(client, text, file);
      show(
        summary,
        () =>
          `${table(
            ["KIND", "IMPORTED", "SKIPPED"],
            Object.entries(summary.imported).map(([kind, n]) => [
              kind,
              String(n),
              String(summary.skipped[kind as keyof typeof summary.skipped]),
            ]),
          )}\nrequeued ${summary.requeued} jobs that were dispatched or running`,
      );
    });

  /** The secret alone on stdout (or the JSON answer), so `TOKEN=$(jobq tokens create …)` captures it. */
  const announceToken = (created: CreatedToken): void => {
    show(created, () => created.token);
    io.err.write(
      `created token ${created.id} for ${created.principal} (${created.role}); ` +
        "store it now: it is shown only this once and cannot be read back\n",
    );
  };

  program
    .command("dependents")
    .description("GET /jobs/{id}/dependents: the jobs that wait on this one, and whether each wait is over")
    .argument("<id>")
    .option("--limit <n>", "1..200 (default 200)", integer)
    .option("--cursor <cursor>", "the nextCursor of a previous page")
    .action(async (id: string, options: { limit?: number; cursor?: string }) => {
      const { client } = await connect();
      const page = await client.dependents(id, { limit: options.limit ?? 200, cursor: options.cursor });
      show(page, () => {
        const text =
          page.items.length === 0
            ? "no dependents"
            : table(
                ["ID", "TYPE", "NAME", "STATUS", "OWNER", "EDGE"],
                page.items.map((d) => [
                  d.id,
                  truncate(d.type, 20),
                  truncate(d.name ?? "", 30),
                  paintStatus(d.status, color),
                  d.owner,
                  d.met ? "met" : "waiting",
                ]),
              );
        return page.nextCursor
          ? `${text}\n${paint(`more: --cursor ${page.nextCursor}`, "dim", color)}`
          : text;
      });
    });

  program
    .command("children")
    .description("GET /jobs/{id}/children: an array job's children, in index order, paged like `list`")
    .argument("<id>", "the array's parent")
    .option("--limit <n>", "1..200 (default 50)", integer)
    .option("--cursor <cursor>", "the nextCursor of a previous page")
    .action(async (id: string, options: { limit?: number; cursor?: string }) => {
      const { client } = await connect();
      const page = await client.children(id, { limit: options.limit, cursor: options.cursor });
      const now = new Date();
      show(page, () => {
        const text =
          page.items.length === 0
            ? "no children (not an array job's parent)"
            : table(
                ["ID", "INDEX", "STATUS", "ATTEMPTS", "CREATED", "REASON"],
                page.items.map((job) => [
                  job.id,
                  String(job.arrayIndex ?? "-"),
                  paintStatus(job.status, color),
                  `${job.attempts}/${job.retry.maxAttempts}`,
                  relative(job.createdAt, now),
                  truncate(job.statusReason, 60),
                ]),
              );
        return page.nextCursor
          ? `${text}\n${paint(`more: --cursor ${page.nextCursor}`, "dim", color)}`
          : text;
      });
    });

  const circuits = program
    .command("circuits")
    .description(
      "GET /admin/circuits (admins): the circuit breakers per task type; `circuits reset` closes one",
    )
    .option("--history", "their changes of state too, newest first")
    .option("--type <type>", "with --history: one type's changes")
    .option("--owner <owner>", "with --history: one owner's (scope type+owner)")
    .option("--limit <n>", "with --history: 1..500 changes (default 100)", integer)
    .action(async (options: { history?: boolean; type?: string; owner?: string; limit?: number }) => {
      if (!options.history && (options.type ?? options.owner ?? options.limit) !== undefined)
        throw new UsageError("--type, --owner and --limit filter the history: add --history");
      const { client } = await connect();
      const list = await client.listCircuits(
        options.history
          ? { history: true, type: options.type, owner: options.owner, limit: options.limit }
          : {},
      );
      const now = new Date();
      show(list, () => {
        const text =
          list.items.length === 0
            ? "no circuit breakers (none has counted a failure yet)"
            : table(CIRCUIT_HEADERS, circuitRows(list.items, now, color));
        if (!options.history) return text;
        const history = list.history ?? [];
        const changes =
          history.length === 0
            ? "no changes of state"
            : table(
                ["AT", "TYPE", "OWNER", "CHANGE", "FROM → TO", "BY", "JOB", "REASON"],
                history.map((h) => [
                  h.at,
                  h.type,
                  h.owner ?? "-",
                  h.change,
                  `${h.from} → ${h.to}`,
                  h.by ?? "system",
                  h.jobId ?? "-",
                  truncate(h.reason, 60),
                ]),
              );
        return `${text}\n\n${changes}`;
      });
    });
  circuits
    .command("reset")
    .description("POST /admin/circuits/{type}/reset (admins): close a breaker; its waiting jobs start")
    .argument("<type>")
    .option("--owner <owner>", "the owner of a type+owner breaker")
    .action(async (type: string, options: { owner?: string }) => {
      // Commander gives an option both commands define to the parent (`circuits --owner`) when it
      // follows the subcommand, so the parent's value counts too.
      const owner = options.owner ?? circuits.opts<{ owner?: string }>().owner;
      const { client } = await connect();
      const circuit = await client.resetCircuit(type, owner);
      show(
        circuit,
        () => `circuit ${circuit.type}${circuit.owner ? ` (${circuit.owner})` : ""}: ${circuit.state}`,
      );
    });

  return program;
}

/** How often `nodes drain --wait` reads GET /pools: one Query per pool each time. */
const DRAIN_POLL_MS = 1000;

interface SubmitFlags {
  readonly file?: string;
  readonly name?: string;
  readonly payload?: string;
  readonly priority?: string | number;
  readonly cpu?: number;
  readonly memory?: number;
  readonly gpu?: number;
  readonly pool?: string;
  readonly constraint?: string[];
  readonly tag?: string[];
  readonly dependsOn?: string;
  readonly maxAttempts?: number;
  readonly timeout?: number;
  readonly runAt?: string;
  readonly deadline?: string;
  readonly offPeak?: boolean;
  readonly project?: string;
  readonly array?: number;
  readonly idempotencyKey?: string;
  readonly watch?: boolean;
}

interface ListFlags {
  readonly status?: string;
  readonly type?: string;
  readonly owner?: string;
  readonly priority?: string | number;
  readonly tag?: string;
  readonly project?: string;
  readonly scheduleId?: string;
  readonly createdAfter?: string;
  readonly createdBefore?: string;
  readonly updatedSince?: string;
  readonly limit?: number;
  readonly cursor?: string;
}

interface ScheduleFlags {
  readonly file?: string;
  readonly name?: string;
  readonly cron?: string;
  readonly timezone?: string;
  readonly job?: string;
  readonly overlap?: string;
  readonly disabled?: boolean;
}

interface QuotaFlags {
  readonly file?: string;
  readonly dailyGpuSeconds?: number;
  readonly weeklyGpuSeconds?: number;
  readonly maxQueuedJobs?: number;
  readonly maxPriority?: string | number;
}

/** A POST /jobs body from flags; only the flags given are sent, so the API's defaults apply. */
export function jobFromFlags(type: string, flags: SubmitFlags): SubmitJobRequest {
  const resources =
    flags.cpu === undefined && flags.memory === undefined && flags.gpu === undefined
      ? undefined
      : { cpu: flags.cpu, memoryMb: flags.memory, gpu: flags.gpu };
  const body: Record<string, unknown> = {
    type,
    name: flags.name,
    payload: flags.payload === undefined ? undefined : parseJson(flags.payload, "--payload"),
    priority: flags.priority,
    resources,
    pool: flags.pool,
    constraints: keyValue(flags.constraint, "--constraint"),
    tags: keyValue(flags.tag, "--tag"),
    dependsOn: flags.dependsOn
      ?.split(",")
      .map((id) => id.trim())
      .filter(Boolean),
    retry: flags.maxAttempts === undefined ? undefined : { maxAttempts: flags.maxAttempts },
    timeoutSeconds: flags.timeout,
    runAt: flags.runAt,
    deadline: flags.deadline,
    offPeakOnly: flags.offPeak,
    project: flags.project,
    array: flags.array === undefined ? undefined : { size: flags.array },
  };
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined)) as SubmitJobRequest;
}

function scheduleFromFlags(flags: ScheduleFlags): Record<string, unknown> {
  const body: Record<string, unknown> = {
    name: flags.name,
    cron: flags.cron,
    timezone: flags.timezone,
    overlap: flags.overlap,
    enabled: flags.disabled ? false : undefined,
    job: flags.job === undefined ? undefined : parseJson(flags.job, "--job"),
  };
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
}

function describeJob(job: JobView, now: Date, color: boolean): string {
  const pairs: [string, string][] = [
    ["id", job.id],
    ["type", job.type],
    ["status", `${paintStatus(job.status, color)} — ${job.statusReason}`],
    ["priority", String(job.priority)],
    ["owner", job.owner],
    ["attempts", `${job.attempts}/${job.retry.maxAttempts}`],
    ["resources", `cpu ${job.resources.cpu} · mem ${job.resources.memoryMb} MB · gpu ${job.resources.gpu}`],
    ["pool", job.pool ?? "any"],
    ["created", `${job.createdAt} (${relative(job.createdAt, now)})`],
  ];
  if (job.name) pairs.splice(1, 0, ["name", job.name]);
  if (job.startedAt) pairs.push(["started", job.startedAt]);
  if (job.finishedAt) pairs.push(["finished", job.finishedAt]);
  if (job.queuePosition !== undefined && job.queuePosition !== null)
    pairs.push(["queue position", String(job.queuePosition)]);
  if (job.estimatedStartAt)
    pairs.push(["estimated start", `${job.estimatedStartAt} (${relative(job.estimatedStartAt, now)})`]);
  if (job.dependsOn.length > 0) pairs.push(["depends on", job.dependsOn.join(", ")]);
  if (job.escalatedTo) pairs.push(["escalated to", job.escalatedTo]);
  if (job.scheduleId) pairs.push(["schedule", job.scheduleId]);
  if (Object.keys(job.tags).length > 0)
    pairs.push([
      "tags",
      Object.entries(job.tags)
        .map(([k, v]) => `${k}=${v}`)
        .join(", "),
    ]);
  if (job.error) pairs.push(["error", `${job.error.type}: ${job.error.message}`]);
  if (job.result !== null && job.result !== undefined)
    pairs.push(["result", truncate(JSON.stringify(job.result), 200)]);
  if (job.project) pairs.push(["project", job.project]);
  if (job.array) pairs.push(["array", arraySummary(job.array, color)]);
  if (job.arrayParentId)
    pairs.push(["array parent", `${job.arrayParentId} (index ${job.arrayIndex ?? "?"})`]);
  if (job.cost) pairs.push(...costPairs(job.cost));
  return keyValues(pairs);
}

function ms(value: number | null): string {
  return value === null ? "-" : formatDuration(value);
}

function describeStats(stats: Stats, color: boolean): string {
  const counts = Object.entries(stats.counts.byStatus)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${n} ${paintStatus(status, color)}`)
    .join(" · ");
  const t = stats.throughput;
  const lines = [
    `window ${stats.window} · generated ${stats.generatedAt}`,
    `jobs: ${counts || "none"}`,
    `throughput: ${t.completedLastMinute} completed / ${t.failedLastMinute} failed last minute · ${t.completedLastHour} / ${t.failedLastHour} last hour`,
    `queue wait: p50 ${ms(stats.queueWaitMs.p50)} · p95 ${ms(stats.queueWaitMs.p95)} · p99 ${ms(stats.queueWaitMs.p99)}`,
    `run time:   p50 ${ms(stats.runMs.p50)} · p95 ${ms(stats.runMs.p95)} · p99 ${ms(stats.runMs.p99)}`,
  ];
  const pools = Object.entries(stats.byPool);
  if (pools.length > 0) {
    lines.push(
      "",
      table(
        ["POOL", "CPU", "MEMORY", "GPU", "DONE", "FAILED", "RUN P50"],
        pools.map(([name, pool]) => [
          name,
          usageBar(pool.utilization.cpu ?? 0, 1, 10),
          usageBar(pool.utilization.memoryMb ?? 0, 1, 10),
          usageBar(pool.utilization.gpu ?? 0, 1, 10),
          String(pool.completed),
          String(pool.failed),
          ms(pool.runMs.p50),
        ]),
      ),
    );
  }
  if (stats.owners.length > 0) {
    lines.push(
      "",
      table(
        ["OWNER", "RUNNING", "QUEUED", "GPU-S TODAY"],
        stats.owners.map((o) => [o.owner, String(o.running), String(o.queued), String(o.gpuSecondsToday)]),
      ),
    );
  }
  const { today, week } = stats.cost;
  lines.push(
    "",
    `cost of ended jobs: today ${costSum(today)} · this week ${costSum(week)} · overhead over ${stats.window} ${formatUsd(stats.overheadUsd)}`,
  );
  const owners = costRows(today.byOwner, week.byOwner);
  if (owners.length > 0) lines.push("", table(["OWNER", "COST TODAY", "COST THIS WEEK"], owners));
  const projects = costRows(today.byProject, week.byProject);
  if (projects.length > 0) lines.push("", table(["PROJECT", "COST TODAY", "COST THIS WEEK"], projects));
  return lines.join("\n");
}
