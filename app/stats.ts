import { overheadCost } from "../core/cost";
import type { JobStatus } from "../core/job";
import { PRIORITY_NAMES } from "../core/job";
import type { PoolConfig } from "../core/pools";
import type { Principal } from "../core/principal";
import type { CostTotals } from "../core/quota";
import {
  ALL,
  type CostSums,
  compareSequence,
  dayOf,
  emptyDelta,
  emptyFigures,
  foldChanges,
  isEmptyDelta,
  type JobChange,
  lastMinutes,
  mergeDelta,
  mergeFigures,
  ownerDimension,
  type Percentiles,
  type PeriodFigures,
  percentile,
  percentiles,
  poolDimension,
  projectDimension,
  RELATIVE_ACCURACY,
  type StatsDelta,
  type StatsWindow,
  typeDimension,
  windowPlan,
} from "../core/stats";
import type { NodeCapacity } from "../store/capacity";
import { createDocumentClient } from "../store/dynamo";
import { NodeRepository } from "../store/nodes";
import { MAX_ATTRIBUTES_PER_UPDATE, MAX_UPDATES_PER_WRITE, StatsRepository, writeSize } from "../store/stats";
import { UsageRepository } from "../store/usage";
import { config } from "./config";
import { logger } from "./logger";
import { type Clock, systemClock } from "./runtime";

/**
 * GET /stats and the stream consumer that keeps its aggregates (docs/stats.md): the consumer
 * folds each batch of Jobs-table changes into one additive delta per chunk and writes it with a
 * receipt in one transaction, so a batch costs a handful of writes and a redelivered one counts
 * once; GET /stats reads a fixed number of items whatever the number of jobs.
 */

export interface StatsContext {
  readonly stats: StatsRepository;
  readonly nodes: NodeRepository;
  readonly usage: UsageRepository;
  readonly pools: readonly PoolConfig[];
  readonly clock: Clock;
  /** How often a node refreshes its item (overhead estimate); 30 s when not given. */
  readonly heartbeatSeconds?: number;
}

let cached: StatsContext | undefined;

export function statsContext(): StatsContext {
  if (!cached) {
    const c = config();
    const db = createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint });
    cached = {
      stats: new StatsRepository(db, c.policyTable),
      nodes: new NodeRepository(db, c.nodesTable),
      usage: new UsageRepository(db, c.policyTable),
      pools: c.pools,
      clock: systemClock,
      // The workers' node heartbeat default (worker/config.ts): a third of the lost-node time.
      heartbeatSeconds: Math.max(1, Math.floor(c.nodeLostSeconds / 3)),
    };
  }
  return cached;
}

// ---------------------------------------------------------------------------------------------
// The stream consumer
// ---------------------------------------------------------------------------------------------

/** A job change and its stream record's sequence number. */
export interface SequencedChange extends JobChange {
  readonly sequence: string;
}

export interface ApplyResult {
  /** The sequence number to resume from (nothing from it on was applied); null when all were. */
  readonly failedAt: string | null;
  /** Transactions written. */
  readonly writes: number;
  /** Items those transactions wrote, receipts included. */
  readonly itemsWritten: number;
  /** Records skipped because a receipt showed them applied already. */
  readonly replayed: number;
}

/**
 * Applies one shard's records, in order. Records are cut into chunks that fit one transaction
 * (≤ 99 aggregate items, ≤ 250 ADDs per item); a chunk that moves no figure is not written at
 * all. Each chunk's receipt is keyed by its first record, so a batch delivered again — whole,
 * longer or shorter, as long as it starts at a chunk's first record, which is where Lambda
 * resumes after a reported failure — skips exactly what was applied.
 */
export async function applyJobChanges(
  ctx: Pick<StatsContext, "stats" | "clock">,
  records: readonly SequencedChange[],
): Promise<ApplyResult> {
  let writes = 0;
  let itemsWritten = 0;
  let replayed = 0;
  let start = 0;
  while (start < records.length) {
    const { end, delta } = nextChunk(records, start);
    const first = records[start]?.sequence ?? "";
    const last = records[end - 1]?.sequence ?? first;
    if (isEmptyDelta(delta)) {
      start = end;
      continue;
    }
    let outcome: Awaited<ReturnType<StatsRepository["apply"]>>;
    try {
      outcome = await ctx.stats.apply(delta, first, last, ctx.clock());
    } catch (error) {
      logger.error("stats chunk not applied; the batch resumes from its first record", {
        firstSequence: first,
        error: error as Error,
      });
      return { failedAt: first, writes, itemsWritten, replayed };
    }
    if (outcome.applied) {
      writes++;
      itemsWritten += outcome.items;
      await pruneIdleOwners(ctx.stats, delta);
      start = end;
      continue;
    }
    let next = start;
    while (
      next < records.length &&
      compareSequence(records[next]?.sequence ?? "", outcome.appliedThrough) <= 0
    ) {
      next++;
    }
    replayed += Math.max(1, next - start);
    start = Math.max(next, start + 1);
  }
  return { failedAt: null, writes, itemsWritten, replayed };
}

/**
 * The longest run of records from `start` whose delta fits one transaction (`end` exclusive).
 * It depends only on the records from `start` on, so every delivery that starts there cuts the
 * same chunk: what keying receipts by a chunk's first record relies on.
 */
export function nextChunk(records: readonly JobChange[], start: number): { end: number; delta: StatsDelta } {
  let delta = emptyDelta();
  let end = start;
  while (end < records.length) {
    const record = records[end];
    const one = record ? foldChanges([record]) : emptyDelta();
    if (!isEmptyDelta(one)) {
      const trial = emptyDelta();
      mergeDelta(trial, delta);
      mergeDelta(trial, one);
      const size = writeSize(trial);
      const fits = size.items <= MAX_UPDATES_PER_WRITE && size.attributes <= MAX_ATTRIBUTES_PER_UPDATE;
      if (!fits && end > start) break;
      delta = trial;
    }
    end++;
  }
  return { end, delta };
}

async function pruneIdleOwners(stats: StatsRepository, delta: StatsDelta): Promise<void> {
  const falling = [...delta.owners].filter(([, g]) => g.running < 0 || g.queued < 0).map(([owner]) => owner);
  try {
    await stats.pruneIdleOwners(falling);
  } catch (error) {
    logger.warn("idle owners not pruned", { error: error as Error });
  }
}

// ---------------------------------------------------------------------------------------------
// GET /stats
// ---------------------------------------------------------------------------------------------

/** Owners an admin's answer lists (the bound on what one request reads). */
export const MAX_OWNERS = 25;

export interface Utilization {
  /** Used over capacity of the pool's nodes that are up, 0..1; null without capacity. */
  readonly cpu: number | null;
  readonly memoryMb: number | null;
  readonly gpu: number | null;
}

export interface FiguresView {
  readonly completed: number;
  readonly failed: number;
  readonly queueWaitMs: Percentiles;
  readonly runMs: Percentiles;
}

export interface PoolStatsView extends FiguresView {
  readonly utilization: Utilization;
}

export interface OwnerRow {
  readonly owner: string;
  readonly running: number;
  readonly queued: number;
  readonly gpuSecondsToday: number;
  /** Filled by the job-cost issue; null until then. */
  readonly costUsdToday: number | null;
}

export interface SeriesPoint {
  /** The start of the period (a minute, or an hour for the 6 h and 24 h windows). */
  readonly minute: string;
  readonly completed: number;
  readonly failed: number;
  readonly queueWaitP50Ms: number | null;
  readonly runP50Ms: number | null;
}

/** Ended jobs' cost over a period (`week`: since Monday 00:00 UTC). */
export interface CostView {
  readonly jobs: number;
  readonly totalUsd: number;
  readonly requestsUsd: number;
  readonly computeUsd: number;
  readonly byOwner: Record<
    string,
    { jobs: number; totalUsd: number; requestsUsd: number; computeUsd: number }
  >;
  /** Admins: each project's jobs (jobs without a project are in no entry); a user: none. */
  readonly byProject: CostView["byOwner"];
}

export interface StatsView {
  readonly generatedAt: string;
  readonly window: StatsWindow;
  readonly counts: {
    readonly byStatus: Record<JobStatus, number>;
    readonly byPool: Record<string, Partial<Record<JobStatus, number>>>;
  };
  readonly throughput: {
    readonly completedLastMinute: number;
    readonly failedLastMinute: number;
    readonly completedLastHour: number;
    readonly failedLastHour: number;
  };
  readonly queueWaitMs: Percentiles;
  readonly runMs: Percentiles;
  readonly byPool: Record<string, PoolStatsView>;
  /** Admins only: type names are other principals' business. */
  readonly byType: Record<string, FiguresView>;
  readonly owners: OwnerRow[];
  /** More owners have running or queued jobs than the answer lists (admins). */
  readonly ownersTruncated: boolean;
  /**
   * Time-driven AWS requests over the window, attributed to no job (core/cost.ts#overheadCost):
   * an estimate from the configuration, not a count.
   */
  readonly overheadUsd: number | null;
  /** Ended jobs' cost (docs/cost.md): everyone's and per owner for an admin, a user's own else. */
  readonly cost: { readonly today: CostView; readonly week: CostView };
  readonly series: SeriesPoint[];
  readonly seriesStepSeconds: number;
  /** The percentiles' stated bound: each is within this fraction of the exact one. */
  readonly percentileRelativeError: number;
}

/**
 * The system's figures over a window. Reads, whatever the number of jobs: one BatchGetItem of
 * the 61 minute items of the last hour, the window's hour items (7 or 25, for 6 h and 24 h) and
 * the gauge item; the owner items (one for a user, a Query of at most 26 for an admin) and their
 * usage items of today (BatchGetItem); and each configured pool's node items, as GET /pools.
 */
export async function getStats(
  ctx: StatsContext,
  principal: Principal,
  window: StatsWindow,
): Promise<StatsView> {
  const now = ctx.clock();
  const plan = windowPlan(window, now);
  // The current minute and the 60 complete ones before it: throughput, and the windows to 1 h.
  const hourOfMinutes = lastMinutes(now, 61);
  const days = weekDays(now);
  const costDims = principal.admin ? undefined : [ownerDimension(principal.id)];
  const [read, owners, utilization, today, week] = await Promise.all([
    ctx.stats.readPeriods(hourOfMinutes, plan.resolution === "hour" ? plan.periods : []),
    ownerRows(ctx, principal, now),
    poolUtilization(ctx),
    ctx.stats.readCosts(days.slice(-1), costDims),
    ctx.stats.readCosts(days, costDims),
  ]);
  const periods = plan.resolution === "minute" ? read.minutes : read.hours;
  const windowDims = new Map<string, PeriodFigures>();
  for (const period of plan.periods) {
    for (const [dim, figures] of periods.get(period) ?? []) {
      const into = windowDims.get(dim) ?? emptyFigures();
      windowDims.set(dim, into);
      mergeFigures(into, figures);
    }
  }
  const completeMinutes = hourOfMinutes.slice(0, -1);
  const sum = (minutes: readonly string[], pick: (f: PeriodFigures) => number): number =>
    minutes.reduce((total, m) => total + pick(read.minutes.get(m)?.get(ALL) ?? emptyFigures()), 0);
  const lastMinute = completeMinutes.slice(-1);

  const pools = new Set<string>(ctx.pools.map((p) => p.name));
  for (const dim of windowDims.keys()) if (dim.startsWith(poolDimension(""))) pools.add(dim.slice(5));
  for (const pool of read.gauges.byPool.keys()) pools.add(pool);
  const types = [...windowDims.keys()]
    .filter((dim) => dim.startsWith(typeDimension("")))
    .map((dim) => dim.slice(5))
    .sort();

  return {
    generatedAt: now.toISOString(),
    window,
    counts: {
      byStatus: read.gauges.byStatus,
      byPool: Object.fromEntries(
        [...read.gauges.byPool]
          .map(([pool, statuses]) => [pool, nonZero(statuses)] as const)
          .filter(([, statuses]) => Object.keys(statuses).length > 0)
          .sort(([a], [b]) => a.localeCompare(b)),
      ),
    },
    throughput: {
      completedLastMinute: sum(lastMinute, (f) => f.completed),
      failedLastMinute: sum(lastMinute, (f) => f.failed),
      completedLastHour: sum(completeMinutes, (f) => f.completed),
      failedLastHour: sum(completeMinutes, (f) => f.failed),
    },
    queueWaitMs: percentiles(windowDims.get(ALL)?.queueWait ?? new Map()),
    runMs: percentiles(windowDims.get(ALL)?.run ?? new Map()),
    byPool: Object.fromEntries(
      [...pools].sort().map((pool) => [
        pool,
        {
          ...figuresView(windowDims.get(poolDimension(pool))),
          utilization: utilization.get(pool) ?? { cpu: null, memoryMb: null, gpu: null },
        },
      ]),
    ),
    byType: principal.admin
      ? Object.fromEntries(types.map((type) => [type, figuresView(windowDims.get(typeDimension(type)))]))
      : {},
    owners: owners.rows.map((row) => ({
      ...row,
      costUsdToday: usdOf(today.get(ownerDimension(row.owner))),
    })),
    ownersTruncated: owners.truncated,
    overheadUsd: overheadCost({
      seconds: WINDOW_SECONDS[window],
      pools: ctx.pools.length,
      nodes: ctx.pools.reduce((n, p) => n + p.nodes, 0),
      tiers: Object.keys(PRIORITY_NAMES).length,
      pollSeconds: WORKER_POLL_SECONDS,
      heartbeatSeconds: ctx.heartbeatSeconds ?? 30,
    }).usd,
    cost: { today: costView(today, principal), week: costView(week, principal) },
    series: plan.periods.map((period) => {
      const all = periods.get(period)?.get(ALL) ?? emptyFigures();
      const p50 = (h: ReadonlyMap<number, number>): number | null => {
        const value = percentile(h, 0.5);
        return value === null ? null : Math.round(value);
      };
      return {
        minute: plan.resolution === "minute" ? `${period}:00.000Z` : `${period}:00:00.000Z`,
        completed: all.completed,
        failed: all.failed,
        queueWaitP50Ms: p50(all.queueWait),
        runP50Ms: p50(all.run),
      };
    }),
    seriesStepSeconds: plan.resolution === "minute" ? 60 : 3600,
    percentileRelativeError: RELATIVE_ACCURACY,
  };
}

function figuresView(figures: PeriodFigures | undefined): FiguresView {
  const f = figures ?? emptyFigures();
  return {
    completed: f.completed,
    failed: f.failed,
    queueWaitMs: percentiles(f.queueWait),
    runMs: percentiles(f.run),
  };
}

function nonZero(statuses: Partial<Record<JobStatus, number>>): Partial<Record<JobStatus, number>> {
  return Object.fromEntries(Object.entries(statuses).filter(([, n]) => n !== 0));
}

/** A user's own row (always, zeros included); an admin's: owners with work, by name, bounded. */
async function ownerRows(
  ctx: StatsContext,
  principal: Principal,
  now: Date,
): Promise<{ rows: OwnerRow[]; truncated: boolean }> {
  const { owners, truncated } = principal.admin
    ? await ctx.stats.readOwners(MAX_OWNERS)
    : { owners: [await ctx.stats.readOwner(principal.id)], truncated: false };
  const listed = principal.admin ? owners.filter((o) => o.running !== 0 || o.queued !== 0) : owners;
  const gpu =
    listed.length > 0
      ? await ctx.usage.readGpuSecondsToday(
          listed.map((o) => o.owner),
          now,
        )
      : new Map();
  return {
    rows: listed.map((o) => ({
      owner: o.owner,
      running: o.running,
      queued: o.queued,
      gpuSecondsToday: gpu.get(o.owner) ?? 0,
      costUsdToday: null,
    })),
    truncated,
  };
}

/** Each configured pool's used over capacity, of its nodes that are up (as GET /pools sums them). */
async function poolUtilization(ctx: StatsContext): Promise<Map<string, Utilization>> {
  const entries = await Promise.all(
    ctx.pools.map(async (pool) => {
      const up = (await ctx.nodes.listNodes(pool.name)).filter((n) => n.status === "up");
      const total = (pick: (c: NodeCapacity) => number, of: "capacity" | "used"): number =>
        up.reduce((sum, n) => sum + pick(n[of]), 0);
      const ratio = (pick: (c: NodeCapacity) => number): number | null => {
        const capacity = total(pick, "capacity");
        return capacity > 0 ? Math.round((total(pick, "used") / capacity) * 1000) / 1000 : null;
      };
      return [
        pool.name,
        { cpu: ratio((c) => c.cpu), memoryMb: ratio((c) => c.memoryMb), gpu: ratio((c) => c.gpu) },
      ] as const;
    }),
  );
  return new Map(entries);
}

const WINDOW_SECONDS: Record<StatsWindow, number> = {
  "5m": 300,
  "15m": 900,
  "1h": 3600,
  "6h": 21_600,
  "24h": 86_400,
};
/** A worker's long poll (worker/runtime.ts): an idle node's receives per tier per this many seconds. */
const WORKER_POLL_SECONDS = 20;

/** The days of the week so far (Monday 00:00 UTC on), oldest first; the last is today. */
export function weekDays(now: Date): string[] {
  const sinceMonday = (now.getUTCDay() + 6) % 7;
  const days: string[] = [];
  for (let back = sinceMonday; back >= 0; back--)
    days.push(dayOf(new Date(now.getTime() - back * 86_400_000).toISOString()));
  return days;
}

/**
 * The cost of the jobs that ended today and this week under one dimension (an owner's, or a
 * project's): the /stats consumer's day items, one BatchGetItem of at most 7.
 */
export async function costTotals(
  stats: StatsRepository,
  dim: string,
  now: Date,
): Promise<{ today: CostTotals; week: CostTotals }> {
  const days = weekDays(now);
  const [today, week] = await Promise.all([
    stats.readCosts(days.slice(-1), [dim]),
    stats.readCosts(days, [dim]),
  ]);
  const totals = (sums: ReadonlyMap<string, CostSums>): CostTotals => {
    const s = sums.get(dim);
    return {
      jobs: s?.jobs ?? 0,
      totalUsd: usdOf(s),
      requestsUsd: s?.requestsUsd ?? 0,
      computeUsd: s?.computeUsd ?? 0,
    };
  };
  return { today: totals(today), week: totals(week) };
}

function usdOf(sums: CostSums | undefined): number {
  return sums ? sums.requestsUsd + sums.computeUsd : 0;
}

function costView(sums: ReadonlyMap<string, CostSums>, principal: Principal): CostView {
  const mine = principal.admin ? sums.get(ALL) : sums.get(ownerDimension(principal.id));
  const byOwner: CostView["byOwner"] = {};
  for (const [dim, s] of [...sums].sort(([a], [b]) => a.localeCompare(b))) {
    if (!dim.startsWith(ownerDimension(""))) continue;
    byOwner[dim.slice(ownerDimension("").length)] = { ...s, totalUsd: usdOf(s) };
  }
  const byProject: CostView["byProject"] = {};
  for (const [dim, s] of [...sums].sort(([a], [b]) => a.localeCompare(b))) {
    if (!dim.startsWith(projectDimension(""))) continue;
    byProject[dim.slice(projectDimension("").length)] = { ...s, totalUsd: usdOf(s) };
  }
  return {
    jobs: mine?.jobs ?? 0,
    totalUsd: usdOf(mine),
    requestsUsd: mine?.requestsUsd ?? 0,
    computeUsd: mine?.computeUsd ?? 0,
    byOwner,
    byProject,
  };
}
