import { type JobStatus, TERMINAL_STATUSES } from "./job";

/**
 * The statistics behind GET /stats, pure: a log-bucketed histogram with a stated relative error
 * (DDSketch's idea), and the fold of job changes — an old and a new image of a job item, as the
 * Jobs table's change stream delivers them — into additive deltas: per-minute figures (ended
 * jobs, queue-wait and run-time histograms) for the whole system, each pool and each type, and
 * gauges (jobs per status, per pool and status, per owner running and queued).
 *
 * Everything here is a sum, so deltas of any batches can be added in any order and added to
 * stored aggregates with DynamoDB's ADD; that is what keeps the writes per batch, not per job.
 */

// ---------------------------------------------------------------------------------------------
// Histogram
// ---------------------------------------------------------------------------------------------

/**
 * Every percentile this histogram answers is within this fraction of the exact one (of the
 * sample at the same rank). Bucket k ≥ 1 holds values in (γ^(k−2), γ^(k−1)] with
 * γ = (1 + α)/(1 − α) and is read as 2γ^(k−1)/(γ + 1), which is within α of every value in
 * the bucket; bucket 0 holds exactly 0. At α = 2 % a week in milliseconds spans ~510 buckets.
 */
export const RELATIVE_ACCURACY = 0.02;
const GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY);
const LOG_GAMMA = Math.log(GAMMA);

/** Bucket index → count. Only buckets that hold something are present. */
export type Histogram = Map<number, number>;

/** The bucket of a duration in ms; negative durations (clock skew between writers) count as 0. */
export function bucketOf(ms: number): number {
  if (!(ms > 0)) return 0;
  return 1 + Math.ceil(Math.log(ms) / LOG_GAMMA);
}

/** The value a bucket stands for: within RELATIVE_ACCURACY of everything it holds. */
export function bucketValue(bucket: number): number {
  if (bucket <= 0) return 0;
  return (2 * GAMMA ** (bucket - 1)) / (GAMMA + 1);
}

export function addSample(histogram: Histogram, ms: number, count = 1): void {
  addToBucket(histogram, bucketOf(ms), count);
}

export function addToBucket(histogram: Histogram, bucket: number, count: number): void {
  const next = (histogram.get(bucket) ?? 0) + count;
  if (next === 0) histogram.delete(bucket);
  else histogram.set(bucket, next);
}

export function mergeHistogram(target: Histogram, source: ReadonlyMap<number, number>): void {
  for (const [bucket, count] of source) addToBucket(target, bucket, count);
}

export function histogramCount(histogram: ReadonlyMap<number, number>): number {
  let n = 0;
  for (const count of histogram.values()) n += count;
  return n;
}

/**
 * The q-quantile (0 < q ≤ 1) by nearest rank: the value of the ⌈q·n⌉-th smallest sample, as
 * its bucket stands for it; null without samples. Exactly that sample's bucket is found (buckets
 * are ordered as values are), so the answer is within RELATIVE_ACCURACY of that sample.
 */
export function percentile(histogram: ReadonlyMap<number, number>, q: number): number | null {
  const n = histogramCount(histogram);
  if (n <= 0) return null;
  const rank = Math.max(1, Math.ceil(q * n));
  let seen = 0;
  for (const bucket of [...histogram.keys()].sort((a, b) => a - b)) {
    seen += histogram.get(bucket) ?? 0;
    if (seen >= rank) return bucketValue(bucket);
  }
  return null;
}

export interface Percentiles {
  readonly p50: number | null;
  readonly p95: number | null;
  readonly p99: number | null;
}

/** p50, p95 and p99 in whole milliseconds (null without samples), as GET /stats shows them. */
export function percentiles(histogram: ReadonlyMap<number, number>): Percentiles {
  const at = (q: number): number | null => {
    const value = percentile(histogram, q);
    return value === null ? null : Math.round(value);
  };
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

// ---------------------------------------------------------------------------------------------
// Job changes and their fold
// ---------------------------------------------------------------------------------------------

/** What the fold needs of a job item image. */
export interface JobImage {
  readonly id: string;
  readonly status: JobStatus;
  readonly owner: string;
  /** The project it counts against (issue 13), or null. */
  readonly project?: string | null;
  readonly type: string;
  /** The pool the job asked for; null: any pool. */
  readonly pool: string | null;
  /** The pool its capacity is reserved in while dispatched or running. */
  readonly reservationPool: string | null;
  readonly createdAt: string;
  /** The time of the write that produced this image: a status change's time. */
  readonly updatedAt: string;
  /** When it last entered `queued`. */
  readonly queuedAt: string | null;
  /** When its current attempt started running. */
  readonly attemptStartedAt: string | null;
  /** Staged jobs (a large batch being written) are invisible to every read: not counted. */
  readonly staged: boolean;
  /** The job's cost as of this image (core/cost.ts); set on images of ended jobs only. */
  readonly cost?: ImageCost | null;
}

/** What the stats fold sums of an ended job's cost. */
export interface ImageCost {
  readonly requestsUsd: number;
  readonly computeUsd: number;
}

/** Ended jobs' cost summed for one day and one dimension. */
export interface CostSums {
  jobs: number;
  requestsUsd: number;
  computeUsd: number;
}

export const ownerDimension = (owner: string): string => `owner:${owner}`;
/** A project's cost dimension: its quota key (core/projects.ts#projectQuotaKey). */
export const projectDimension = (project: string): string => `project:${project}`;

/**
 * The dimensions an ended job's cost is summed under: everyone's, its owner's, and its project's
 * when it has one (the same `project:<name>` key its project's quota has).
 */
export function costDimensions(image: JobImage): string[] {
  const dims = [ALL, ownerDimension(image.owner)];
  if (image.project) dims.push(projectDimension(image.project));
  return dims;
}

/** The UTC day (`yyyy-mm-dd`) a timestamp falls in. */
export function dayOf(iso: string): string {
  return new Date(iso).toISOString().slice(0, 10);
}

/** One change of a job item: an insert (old null), a modify, or a removal (new null). */
export interface JobChange {
  readonly old: JobImage | null;
  readonly new: JobImage | null;
}

/** The pool a waiting job without one is counted under, as the queue index keys it (`Q#*`). */
export const ANY_POOL = "*";
/** The dimension of figures for the whole system. */
export const ALL = "*";
export const poolDimension = (pool: string): string => `pool:${pool}`;
export const typeDimension = (type: string): string => `type:${type}`;

/** What ended in one period (a minute or an hour), for one dimension. */
export interface PeriodFigures {
  completed: number;
  failed: number;
  /** Queue wait of each admission: from entering `queued` to `dispatched`. */
  readonly queueWait: Histogram;
  /** Run time of each attempt that ended completed, failed, retrying or escalated. */
  readonly run: Histogram;
}

export interface OwnerGauges {
  running: number;
  queued: number;
}

/** Additive changes to the stored aggregates. Zero entries are left out. */
export interface StatsDelta {
  /** Minute (`yyyy-mm-ddThh:mm`) → dimension (ALL, pool:…, type:…) → figures. */
  readonly minutes: Map<string, Map<string, PeriodFigures>>;
  readonly byStatus: Map<JobStatus, number>;
  /** Pool → status → jobs; non-terminal statuses only (where jobs are now, not history). */
  readonly byPool: Map<string, Map<JobStatus, number>>;
  readonly owners: Map<string, OwnerGauges>;
  /** Day (`yyyy-mm-dd`) → dimension (ALL, owner:…) → the cost of the jobs that ended that day. */
  readonly costs: Map<string, Map<string, CostSums>>;
  /**
   * Day → job type → the successful attempts that ended that day and their run time: what
   * estimatedStartAt's mean run time per type is read from (core/estimate.ts).
   */
  readonly runTimes: Map<string, Map<string, RunTimeSums>>;
}

export interface RunTimeSums {
  count: number;
  totalMs: number;
}

export function emptyDelta(): StatsDelta {
  return {
    minutes: new Map(),
    byStatus: new Map(),
    byPool: new Map(),
    owners: new Map(),
    costs: new Map(),
    runTimes: new Map(),
  };
}

export function isEmptyDelta(delta: StatsDelta): boolean {
  return (
    delta.minutes.size === 0 &&
    delta.byStatus.size === 0 &&
    delta.byPool.size === 0 &&
    delta.owners.size === 0 &&
    delta.costs.size === 0 &&
    delta.runTimes.size === 0
  );
}

/** The minute a timestamp falls in, `yyyy-mm-ddThh:mm` (UTC). */
export function minuteOf(iso: string): string {
  return new Date(iso).toISOString().slice(0, 16);
}

/** The hour a minute falls in, `yyyy-mm-ddThh`. */
export function hourOfMinute(minute: string): string {
  return minute.slice(0, 13);
}

/** The pool a job is counted in: where it holds capacity, else the one it asked for, else ANY_POOL. */
export function gaugePool(image: JobImage): string {
  return image.reservationPool ?? image.pool ?? ANY_POOL;
}

const SAMPLED_RUN_ENDS: ReadonlySet<JobStatus> = new Set(["completed", "failed", "retrying", "escalated"]);

/** Adds one change's effect to `delta` (mutated). Changes that move nothing add nothing. */
export function foldChange(delta: StatsDelta, change: JobChange): void {
  const before = change.old && !change.old.staged ? change.old : null;
  const after = change.new && !change.new.staged ? change.new : null;
  if (before) countGauges(delta, before, -1);
  if (after) countGauges(delta, after, +1);
  if (!after || before?.status === after.status) return;

  const minute = minuteOf(after.updatedAt);
  const attemptPool = before?.reservationPool ?? after.reservationPool ?? after.pool ?? ANY_POOL;
  const dims = [ALL, poolDimension(attemptPool), typeDimension(after.type)];
  const each = (apply: (figures: PeriodFigures) => void): void => {
    for (const dim of dims) apply(figuresOf(delta, minute, dim));
  };

  if (
    after.cost &&
    TERMINAL_STATUSES.has(after.status) &&
    !(before && TERMINAL_STATUSES.has(before.status))
  ) {
    const day = dayOf(after.updatedAt);
    for (const dim of costDimensions(after)) addCost(delta, day, dim, { jobs: 1, ...after.cost });
  }
  if (after.status === "completed") each((f) => void f.completed++);
  if (after.status === "failed") each((f) => void f.failed++);
  if (before?.status === "queued" && after.status === "dispatched") {
    const wait = elapsedMs(after.queuedAt ?? before.queuedAt ?? before.createdAt, after.updatedAt);
    if (wait !== null) each((f) => addSample(f.queueWait, wait));
  }
  if (before?.status === "running" && SAMPLED_RUN_ENDS.has(after.status)) {
    const run = elapsedMs(before.attemptStartedAt, after.updatedAt);
    if (run !== null) each((f) => addSample(f.run, run));
    // Only successful attempts say how long a type takes to run to its end.
    if (run !== null && after.status === "completed")
      addRunTime(delta, dayOf(after.updatedAt), after.type, { count: 1, totalMs: run });
  }
  pruneMinute(delta, minute);
}

export function foldChanges(changes: readonly JobChange[]): StatsDelta {
  const delta = emptyDelta();
  for (const change of changes) foldChange(delta, change);
  return delta;
}

/** Adds `source` into `target` (mutated). */
export function mergeDelta(target: StatsDelta, source: StatsDelta): void {
  for (const [minute, dims] of source.minutes) {
    for (const [dim, figures] of dims) mergeFigures(figuresOf(target, minute, dim), figures);
  }
  for (const [status, n] of source.byStatus) addCount(target.byStatus, status, n);
  for (const [pool, statuses] of source.byPool) {
    const into = target.byPool.get(pool) ?? new Map<JobStatus, number>();
    for (const [status, n] of statuses) addCount(into, status, n);
    if (into.size > 0) target.byPool.set(pool, into);
    else target.byPool.delete(pool);
  }
  for (const [owner, gauges] of source.owners) addOwner(target, owner, gauges.running, gauges.queued);
  for (const [day, dims] of source.costs) for (const [dim, sums] of dims) addCost(target, day, dim, sums);
  for (const [day, types] of source.runTimes) {
    for (const [type, sums] of types) addRunTime(target, day, type, sums);
  }
}

function addRunTime(delta: StatsDelta, day: string, type: string, sums: RunTimeSums): void {
  const types = delta.runTimes.get(day) ?? new Map<string, RunTimeSums>();
  delta.runTimes.set(day, types);
  const into = types.get(type) ?? { count: 0, totalMs: 0 };
  into.count += sums.count;
  into.totalMs += sums.totalMs;
  types.set(type, into);
}

function addCost(delta: StatsDelta, day: string, dim: string, sums: CostSums): void {
  const dims = delta.costs.get(day) ?? new Map<string, CostSums>();
  delta.costs.set(day, dims);
  const into = dims.get(dim) ?? { jobs: 0, requestsUsd: 0, computeUsd: 0 };
  into.jobs += sums.jobs;
  into.requestsUsd += sums.requestsUsd;
  into.computeUsd += sums.computeUsd;
  dims.set(dim, into);
}

export function emptyFigures(): PeriodFigures {
  return { completed: 0, failed: 0, queueWait: new Map(), run: new Map() };
}

export function mergeFigures(target: PeriodFigures, source: PeriodFigures): void {
  target.completed += source.completed;
  target.failed += source.failed;
  mergeHistogram(target.queueWait, source.queueWait);
  mergeHistogram(target.run, source.run);
}

/**
 * Per-minute figures rolled up into hours (`yyyy-mm-ddThh`): what the 6 h and 24 h windows
 * read, so a day is 25 items rather than 1,440.
 */
export function rollUpHours(
  minutes: ReadonlyMap<string, ReadonlyMap<string, PeriodFigures>>,
): Map<string, Map<string, PeriodFigures>> {
  const hours = new Map<string, Map<string, PeriodFigures>>();
  for (const [minute, dims] of minutes) {
    const hour = hourOfMinute(minute);
    const into = hours.get(hour) ?? new Map<string, PeriodFigures>();
    hours.set(hour, into);
    for (const [dim, figures] of dims) {
      const target = into.get(dim) ?? emptyFigures();
      into.set(dim, target);
      mergeFigures(target, figures);
    }
  }
  return hours;
}

function countGauges(delta: StatsDelta, image: JobImage, sign: 1 | -1): void {
  addCount(delta.byStatus, image.status, sign);
  if (!TERMINAL_STATUSES.has(image.status)) {
    const pool = gaugePool(image);
    const statuses = delta.byPool.get(pool) ?? new Map<JobStatus, number>();
    addCount(statuses, image.status, sign);
    if (statuses.size > 0) delta.byPool.set(pool, statuses);
    else delta.byPool.delete(pool);
  }
  if (image.status === "running") addOwner(delta, image.owner, sign, 0);
  if (image.status === "queued") addOwner(delta, image.owner, 0, sign);
}

function addOwner(delta: StatsDelta, owner: string, running: number, queued: number): void {
  const gauges = delta.owners.get(owner) ?? { running: 0, queued: 0 };
  gauges.running += running;
  gauges.queued += queued;
  if (gauges.running === 0 && gauges.queued === 0) delta.owners.delete(owner);
  else delta.owners.set(owner, gauges);
}

function addCount<K>(map: Map<K, number>, key: K, n: number): void {
  const next = (map.get(key) ?? 0) + n;
  if (next === 0) map.delete(key);
  else map.set(key, next);
}

function figuresOf(delta: StatsDelta, minute: string, dim: string): PeriodFigures {
  let dims = delta.minutes.get(minute);
  if (!dims) {
    dims = new Map();
    delta.minutes.set(minute, dims);
  }
  let figures = dims.get(dim);
  if (!figures) {
    figures = emptyFigures();
    dims.set(dim, figures);
  }
  return figures;
}

/** Drops figures a change created but left empty (a status change that ends nothing). */
function pruneMinute(delta: StatsDelta, minute: string): void {
  const dims = delta.minutes.get(minute);
  if (!dims) return;
  for (const [dim, f] of dims) {
    if (f.completed === 0 && f.failed === 0 && f.queueWait.size === 0 && f.run.size === 0) dims.delete(dim);
  }
  if (dims.size === 0) delta.minutes.delete(minute);
}

function elapsedMs(from: string | null | undefined, to: string): number | null {
  if (!from) return null;
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) ? Math.max(0, ms) : null;
}

// ---------------------------------------------------------------------------------------------
// Stream positions
// ---------------------------------------------------------------------------------------------

/**
 * Orders two stream sequence numbers (decimal strings of up to 40 digits, beyond a double's
 * precision): by length, then as text.
 */
export function compareSequence(a: string, b: string): number {
  const x = a.replace(/^0+(?=\d)/, "");
  const y = b.replace(/^0+(?=\d)/, "");
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Windows
// ---------------------------------------------------------------------------------------------

export const STATS_WINDOWS = ["5m", "15m", "1h", "6h", "24h"] as const;
export type StatsWindow = (typeof STATS_WINDOWS)[number];

export interface WindowPlan {
  /** Periods the window's figures are merged from, oldest first (the last is the current, partial one). */
  readonly periods: readonly string[];
  readonly resolution: "minute" | "hour";
}

const WINDOW_MINUTES: Readonly<Record<StatsWindow, number>> = {
  "5m": 5,
  "15m": 15,
  "1h": 60,
  "6h": 360,
  "24h": 1440,
};

/**
 * The periods a window reads: up to an hour, the current minute and the window's minutes before
 * it; longer, the current hour and the window's whole hours before it (so up to an hour more
 * than asked, and 25 items for a day instead of 1,441).
 */
export function windowPlan(window: StatsWindow, now: Date): WindowPlan {
  const minutes = WINDOW_MINUTES[window];
  if (minutes <= 60) return { periods: lastMinutes(now, minutes + 1), resolution: "minute" };
  const hours = minutes / 60 + 1;
  const currentHour = Math.floor(now.getTime() / 3_600_000) * 3_600_000;
  const periods = Array.from({ length: hours }, (_, i) =>
    new Date(currentHour - (hours - 1 - i) * 3_600_000).toISOString().slice(0, 13),
  );
  return { periods, resolution: "hour" };
}

/** The `count` minutes ending with the current one, oldest first. */
export function lastMinutes(now: Date, count: number): string[] {
  const current = Math.floor(now.getTime() / 60_000) * 60_000;
  return Array.from({ length: count }, (_, i) =>
    new Date(current - (count - 1 - i) * 60_000).toISOString().slice(0, 16),
  );
}
