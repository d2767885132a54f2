import { stripVTControlCharacters } from "node:util";
import type { JobCost } from "../core/cost";
import { isTerminal } from "../core/job-statuses";

/**
 * The CLI's pure formatting: colours, tables, bars, durations, ETAs and the watch view's lines.
 * No I/O and no clock: callers pass `now` and whether colour is on, so every function here is a
 * plain value-to-string map the unit tests pin down.
 */

export { isTerminal } from "../core/job-statuses";

/** Colour only on a terminal that has not asked for none (https://no-color.org). */
export function colorEnabled(
  isTTY: boolean | undefined,
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  return isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === "");
}

export type Tone = "red" | "green" | "yellow" | "blue" | "cyan" | "dim" | "bold";

const ANSI: Readonly<Record<Tone, string>> = {
  red: "31",
  green: "32",
  yellow: "33",
  blue: "34",
  cyan: "36",
  dim: "2",
  bold: "1",
};

export function paint(text: string, tone: Tone, color: boolean): string {
  return color ? `\u001b[${ANSI[tone]}m${text}\u001b[0m` : text;
}

/** The text without colour escapes. */
export function stripAnsi(text: string): string {
  return stripVTControlCharacters(text);
}

/** The width a string takes on screen: escapes take none. */
export function visibleLength(text: string): number {
  return stripAnsi(text).length;
}

const STATUS_TONE: Readonly<Record<string, Tone>> = {
  completed: "green",
  failed: "red",
  cancelled: "red",
  escalated: "yellow",
  running: "cyan",
  dispatched: "cyan",
  retrying: "yellow",
  paused: "yellow",
  queued: "blue",
  blocked: "dim",
  scheduled: "dim",
};

export function paintStatus(status: string, color: boolean): string {
  const tone = STATUS_TONE[status];
  return tone ? paint(status, tone, color) : status;
}

/** Left-aligned columns two spaces apart; cells with escapes line up by their visible width. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) =>
    Math.max(visibleLength(header), ...rows.map((row) => visibleLength(row[column] ?? ""))),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) =>
        column === cells.length - 1 ? cell : cell + " ".repeat((widths[column] ?? 0) - visibleLength(cell)),
      )
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** `key: value` lines, keys padded to one width. */
export function keyValues(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...pairs.map(([key]) => key.length));
  return pairs.map(([key, value]) => `${`${key}:`.padEnd(width + 1)} ${value}`).join("\n");
}

/** `[#####-----]`: a fraction (clamped to 0..1) of `width` cells. */
export function bar(fraction: number, width = 20): string {
  const clamped = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const filled = Math.round(clamped * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}

/** `used/capacity` as a bar and a percentage; no capacity reads as an empty bar. */
export function usageBar(used: number, capacity: number, width = 20): string {
  const fraction = capacity > 0 ? used / capacity : 0;
  return `${bar(fraction, width)} ${String(Math.round(fraction * 100)).padStart(3)}%`;
}

/** A duration as people read it: `850ms`, `42s`, `3m05s`, `2h07m`, `3d04h`; negative as 0. */
export function formatDuration(ms: number): string {
  const safe = Math.max(0, Math.floor(ms));
  if (safe < 1000) return `${safe}ms`;
  const seconds = Math.floor(safe / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(seconds % 60).padStart(2, "0")}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h${String(minutes % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, "0")}h`;
}

/** How long ago an instant was (`5s ago`), or how far ahead (`in 5s`); `-` for none. */
export function relative(at: string | null | undefined, now: Date): string {
  if (!at) return "-";
  const delta = Date.parse(at) - now.getTime();
  if (Number.isNaN(delta)) return at;
  return delta >= 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`;
}

/** Cuts a string to `width` characters, marking the cut. */
export function truncate(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, Math.max(0, width - 1))}…`;
}

/** The job fields the watch view reads (a stream message or GET /jobs/{id}). */
export interface WatchedJob {
  readonly id: string;
  readonly type: string;
  readonly status: string;
  readonly statusReason: string;
  readonly attempts: number;
  readonly retry: { readonly maxAttempts: number };
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly escalatedTo: string | null;
  readonly estimatedStartAt?: string | null;
}

/** Since the job was created; a terminal job's elapsed time stops at its end. */
export function elapsedMs(job: WatchedJob, now: Date): number {
  const end = isTerminal(job.status) && job.finishedAt ? Date.parse(job.finishedAt) : now.getTime();
  return Math.max(0, end - Date.parse(job.createdAt));
}

/**
 * When the job should be done, from what is known: a running job's start plus the typical run
 * time of its type (p50 from GET /stats), a queued job's estimated start plus that run time.
 * `done` once terminal; `?` when nothing is known; `overdue` past the typical run time.
 */
export function eta(job: WatchedJob, now: Date, typicalRunMs: number | null | undefined): string {
  if (isTerminal(job.status)) return "done";
  if (typicalRunMs === null || typicalRunMs === undefined) {
    if (job.estimatedStartAt) return `starts ${relative(job.estimatedStartAt, now)}`;
    return "?";
  }
  let start: number | undefined;
  if ((job.status === "running" || job.status === "dispatched") && job.startedAt)
    start = Date.parse(job.startedAt);
  else if (job.estimatedStartAt) start = Date.parse(job.estimatedStartAt);
  else if (job.status === "running" || job.status === "dispatched") start = now.getTime();
  if (start === undefined) return "?";
  const left = start + typicalRunMs - now.getTime();
  return left > 0 ? `~${formatDuration(left)}` : "overdue";
}

/** One job's line in the watch view: id, type, status, attempt, elapsed, ETA, reason. */
export function progressLine(
  job: WatchedJob,
  now: Date,
  options: { readonly color: boolean; readonly typicalRunMs?: number | null; readonly width?: number },
): string {
  const attempt = `attempt ${job.attempts}/${job.retry.maxAttempts}`;
  const escalated = job.status === "escalated" && job.escalatedTo ? ` → ${job.escalatedTo}` : "";
  const parts = [
    job.id,
    truncate(job.type, 16).padEnd(16),
    paintStatus(job.status, options.color) + " ".repeat(Math.max(0, 10 - job.status.length)),
    attempt.padEnd(13),
    `elapsed ${formatDuration(elapsedMs(job, now))}`.padEnd(16),
    `eta ${eta(job, now, options.typicalRunMs)}`.padEnd(14),
  ];
  const head = `${parts.join(" ")}${escalated}`;
  const reason = job.statusReason ? ` ${paint(job.statusReason, "dim", options.color)}` : "";
  const line = `${head}${reason}`;
  if (options.width === undefined || visibleLength(line) <= options.width) return line;
  // Only the reason is cut: the figures before it are what the view is for.
  const room = options.width - visibleLength(head) - 1;
  return room > 3 ? `${head} ${paint(truncate(job.statusReason, room), "dim", options.color)}` : head;
}

/** Counts by status and a bar of the share that is terminal: `[####------] 2/5 done · 1 running …`. */
export function summaryBar(
  jobs: readonly WatchedJob[],
  options: { readonly color: boolean; readonly width?: number },
): string {
  const counts = new Map<string, number>();
  for (const job of jobs) counts.set(job.status, (counts.get(job.status) ?? 0) + 1);
  const done = jobs.filter((job) => isTerminal(job.status)).length;
  const fraction = jobs.length === 0 ? 0 : done / jobs.length;
  const byStatus = [...counts.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([status, n]) => `${n} ${paintStatus(status, options.color)}`)
    .join(" · ");
  return `${bar(fraction, options.width ?? 30)} ${done}/${jobs.length} done${byStatus ? ` · ${byStatus}` : ""}`;
}

/** A log line as `time level [attempt] message`. */
export function logLine(
  line: {
    readonly timestamp: string;
    readonly level: string;
    readonly message: string;
    readonly attempt: number | null;
  },
  color: boolean,
): string {
  const tone: Tone | undefined =
    line.level === "error"
      ? "red"
      : line.level === "warn"
        ? "yellow"
        : line.level === "debug"
          ? "dim"
          : undefined;
  const level = line.level.padEnd(5);
  const attempt = line.attempt === null ? "[-]" : `[${line.attempt}]`;
  return `${paint(line.timestamp, "dim", color)} ${tone ? paint(level, tone, color) : level} ${attempt} ${line.message}`;
}

/** What `jobq nodes list` and `nodes drain --wait` read of GET /pools. */
export interface NodesOfPool {
  readonly name: string;
  readonly nodes: readonly {
    readonly id: string;
    readonly status: string;
    readonly capacity: { readonly cpu: number; readonly memoryMb: number; readonly gpu: number };
    readonly used: { readonly cpu: number; readonly memoryMb: number; readonly gpu: number };
    readonly lastHeartbeatAt: string;
    readonly drainedBy?: string | null;
  }[];
}

export const NODE_HEADERS = ["POOL", "NODE", "STATUS", "CPU", "MEMORY MB", "GPU", "HEARTBEAT", "DRAINED BY"];

/** One row per node of the pools (only `pool`'s with a pool given), in the order GET /pools lists them. */
export function nodeRows(pools: readonly NodesOfPool[], now: Date, pool?: string): string[][] {
  return pools
    .filter((p) => pool === undefined || p.name === pool)
    .flatMap((p) =>
      p.nodes.map((n) => [
        p.name,
        n.id,
        n.status,
        `${n.used.cpu}/${n.capacity.cpu}`,
        `${n.used.memoryMb}/${n.capacity.memoryMb}`,
        `${n.used.gpu}/${n.capacity.gpu}`,
        relative(n.lastHeartbeatAt, now),
        n.drainedBy ?? "-",
      ]),
    );
}

/**
 * Where a drain stands, from GET /pools?lost=true: `gone` once the node deregistered, `lost` once
 * it stopped heartbeating with bookings left (its worker has exited all the same), else its
 * status and what it still runs or holds booked.
 */
export function drainState(
  pools: readonly NodesOfPool[],
  pool: string,
  nodeId: string,
): { readonly done: boolean; readonly status: string; readonly line: string } {
  const node = pools.find((p) => p.name === pool)?.nodes.find((n) => n.id === nodeId);
  if (!node) return { done: true, status: "gone", line: `node ${nodeId} of pool ${pool}: gone` };
  if (node.status === "lost") {
    return {
      done: true,
      status: "lost",
      line: `node ${nodeId} of pool ${pool}: lost (its worker stopped heartbeating; what it held is released)`,
    };
  }
  const { cpu, memoryMb, gpu } = node.used;
  return {
    done: false,
    status: node.status,
    line: `node ${nodeId} of pool ${pool}: ${node.status}, in use cpu ${cpu} mem ${memoryMb} MB gpu ${gpu}`,
  };
}

/**
 * An amount in USD as people read a bill: a job's request charges are millionths of a dollar, so
 * small amounts keep six decimals instead of rounding to `$0.00`.
 */
export function formatUsd(usd: number | null | undefined): string {
  if (usd === null || usd === undefined || !Number.isFinite(usd)) return "-";
  if (usd === 0) return "$0";
  if (usd < 0.000001) return "<$0.000001";
  if (usd < 0.01) return `$${usd.toFixed(6)}`;
  if (usd < 1) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

/** What `jobq get` reads of GET /jobs/{id}'s `cost` (docs/admin-api.md, "Job cost"): core's own shape. */
export type CostOfJob = JobCost;

/** Up to 3 decimals, without trailing zeros: counts of units and seconds. */
function amount(value: number): string {
  return String(Math.round(value * 1000) / 1000);
}

/** The cost's total, then one `key: value` pair per part of the breakdown, in the bill's order. */
export function costPairs(cost: CostOfJob): [string, string][] {
  const b = cost.breakdown;
  return [
    [
      "cost",
      `${formatUsd(cost.totalUsd)} (requests ${formatUsd(cost.requestsUsd)} · compute ${formatUsd(cost.computeUsd)}; prices ${cost.priceTable})`,
    ],
    [
      "  step functions",
      `${formatUsd(b.stepFunctions.usd)} · ${amount(b.stepFunctions.transitions)} transitions`,
    ],
    [
      "  dynamodb",
      `${formatUsd(b.dynamodb.usd)} · ${amount(b.dynamodb.writeUnits)} WRU · ${amount(b.dynamodb.readUnits)} RRU`,
    ],
    ["  sqs", `${formatUsd(b.sqs.usd)} · ${amount(b.sqs.requests)} requests`],
    [
      "  lambda",
      `${formatUsd(b.lambda.usd)} · ${amount(b.lambda.invocations)} invocations · ${amount(b.lambda.gbSeconds)} GB-s`,
    ],
    ["  eventbridge", `${formatUsd(b.eventBridge.usd)} · ${amount(b.eventBridge.entries)} entries`],
    ["  api", `${formatUsd(b.api.usd)} · ${amount(b.api.requests)} requests`],
    [
      "  compute",
      `${formatUsd(b.compute.usd)} · ${amount(b.compute.nodeSeconds)} node-s × ${formatUsd(b.compute.hourlyUsd)}/h × share ${amount(b.compute.share)}`,
    ],
  ];
}

/** An array parent's children as one line: `100 children · 40 pending · 60 completed · 40 queued`. */
export function arraySummary(
  array: {
    readonly size: number;
    readonly pending: number;
    readonly counts?: Readonly<Record<string, number | undefined>> | null;
  },
  color: boolean,
): string {
  const counts = Object.entries(array.counts ?? {})
    .filter((entry): entry is [string, number] => (entry[1] ?? 0) > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([status, n]) => `${n} ${paintStatus(status, color)}`);
  return [`${array.size} children`, `${array.pending} pending`, ...counts].join(" · ");
}

/** What `jobq circuits` reads of GET /admin/circuits. */
export interface CircuitRow {
  readonly type: string;
  readonly owner: string | null;
  readonly state: string;
  readonly failures: number;
  readonly halfOpensAt: string | null;
  readonly probeJobId: string | null;
  readonly configured: boolean;
}

export const CIRCUIT_HEADERS = ["TYPE", "OWNER", "STATE", "FAILURES", "HALF-OPENS AT", "PROBE"];

const CIRCUIT_TONE: Readonly<Record<string, Tone>> = { closed: "green", open: "red", half_open: "yellow" };

/** One row per breaker; a breaker the policy no longer configures says so beside its state. */
export function circuitRows(circuits: readonly CircuitRow[], now: Date, color: boolean): string[][] {
  return circuits.map((c) => {
    const tone = CIRCUIT_TONE[c.state];
    const state = tone ? paint(c.state, tone, color) : c.state;
    return [
      c.type,
      c.owner ?? "-",
      c.configured ? state : `${state} ${paint("(not configured)", "dim", color)}`,
      String(c.failures),
      c.halfOpensAt ? `${c.halfOpensAt} (${relative(c.halfOpensAt, now)})` : "-",
      c.probeJobId ?? "-",
    ];
  });
}

/** Ended jobs' cost summed over a period (GET /stats `cost`, GET /quotas/{principal} `cost`). */
export interface CostSums {
  readonly jobs: number;
  readonly totalUsd: number;
}

/** `$0.001234 (12 jobs)` */
export function costSum(sums: CostSums | undefined): string {
  return sums === undefined
    ? "-"
    : `${formatUsd(sums.totalUsd)} (${sums.jobs} job${sums.jobs === 1 ? "" : "s"})`;
}

/**
 * The rows of a by-owner or by-project cost table: every key of today's or this week's sums,
 * sorted by name, with each period's cost and job count (`-` where the key had none that period).
 */
export function costRows(
  today: Readonly<Record<string, CostSums>>,
  week: Readonly<Record<string, CostSums>>,
): string[][] {
  const keys = [...new Set([...Object.keys(today), ...Object.keys(week)])].sort((a, b) => a.localeCompare(b));
  return keys.map((key) => [key, costSum(today[key]), costSum(week[key])]);
}
