import type { Stats } from "../../../client/index";

/**
 * The stats view's time series. GET /stats answers a per-period `series` (completed, failed and the
 * p50s of the whole system), which is history the page can draw at once. p95/p99 and the per-pool
 * figures are only answered for the window as a whole, so the page keeps its own series of those by
 * polling (a sample per poll, kept in memory while the page is open). Pure, unit-tested.
 */

/** How often the view polls GET /stats (the server's figures move at most once a minute, the gauges sooner). */
export const STATS_POLL_MS = 5_000;
/** Samples kept per series: an hour of 5 s polls. */
export const MAX_SAMPLES = 720;

export interface Percentiles {
  readonly p50: number | null;
  readonly p95: number | null;
  readonly p99: number | null;
}

export interface PoolSample {
  readonly queueWaitMs: Percentiles;
  readonly runMs: Percentiles;
  readonly utilization: {
    readonly cpu: number | null;
    readonly memoryMb: number | null;
    readonly gpu: number | null;
  };
}

/** One poll's figures, at the server's `generatedAt`. */
export interface Sample {
  /** Unix seconds (uPlot's x unit). */
  readonly t: number;
  readonly window: string;
  readonly queueWaitMs: Percentiles;
  readonly runMs: Percentiles;
  readonly byPool: Readonly<Record<string, PoolSample>>;
}

export function sampleOf(stats: Stats): Sample {
  const byPool: Record<string, PoolSample> = {};
  for (const [pool, figures] of Object.entries(stats.byPool)) {
    byPool[pool] = {
      queueWaitMs: figures.queueWaitMs,
      runMs: figures.runMs,
      utilization: figures.utilization,
    };
  }
  return {
    t: Math.floor(Date.parse(stats.generatedAt) / 1000),
    window: stats.window,
    queueWaitMs: stats.queueWaitMs,
    runMs: stats.runMs,
    byPool,
  };
}

/**
 * The samples with this one added: oldest first, at most `max`. A sample of another window starts
 * the series afresh (figures over 5 min and over 24 h are not one line), and one not newer than the
 * last (a replayed or reordered answer) is dropped.
 */
export function appendSample(samples: readonly Sample[], sample: Sample, max = MAX_SAMPLES): Sample[] {
  const last = samples[samples.length - 1];
  if (last !== undefined && last.window !== sample.window) return [sample];
  if (last !== undefined && sample.t <= last.t) return [...samples];
  const next = [...samples, sample];
  return next.length > max ? next.slice(next.length - max) : next;
}

/** uPlot's data: the x values first, then one array per series (null: no value there). */
export type Columns = [number[], ...(number | null)[][]];

/** The server's series as columns: x, completed, failed. */
export function throughputColumns(stats: Stats): Columns {
  const points = [...stats.series].sort((a, b) => Date.parse(a.minute) - Date.parse(b.minute));
  return [
    points.map((p) => Math.floor(Date.parse(p.minute) / 1000)),
    points.map((p) => p.completed),
    points.map((p) => p.failed),
  ];
}

/** The server's series as columns: x, queue-wait p50, run-time p50 (ms). */
export function medianColumns(stats: Stats): Columns {
  const points = [...stats.series].sort((a, b) => Date.parse(a.minute) - Date.parse(b.minute));
  return [
    points.map((p) => Math.floor(Date.parse(p.minute) / 1000)),
    points.map((p) => p.queueWaitP50Ms),
    points.map((p) => p.runP50Ms),
  ];
}

type Measure = "queueWaitMs" | "runMs";

/** The sampled p50/p95/p99 of one measure, for the whole system or one pool (absent: null). */
export function percentileColumns(samples: readonly Sample[], measure: Measure, pool?: string): Columns {
  const pick = (s: Sample): Percentiles | undefined =>
    pool === undefined ? s[measure] : s.byPool[pool]?.[measure];
  return [
    samples.map((s) => s.t),
    samples.map((s) => pick(s)?.p50 ?? null),
    samples.map((s) => pick(s)?.p95 ?? null),
    samples.map((s) => pick(s)?.p99 ?? null),
  ];
}

/** The sampled utilization of one pool, as percentages: x, cpu, memory, gpu. */
export function utilizationColumns(samples: readonly Sample[], pool: string): Columns {
  const pct = (v: number | null | undefined): number | null =>
    v === null || v === undefined ? null : Math.round(v * 1000) / 10;
  return [
    samples.map((s) => s.t),
    samples.map((s) => pct(s.byPool[pool]?.utilization.cpu)),
    samples.map((s) => pct(s.byPool[pool]?.utilization.memoryMb)),
    samples.map((s) => pct(s.byPool[pool]?.utilization.gpu)),
  ];
}

/** Pools in a stable order (the answer is a record), so charts and tables do not jump around. */
export function poolNames(stats: Stats): string[] {
  return Object.keys(stats.byPool)
    .filter((name) => name !== "*")
    .sort((a, b) => a.localeCompare(b));
}

/** A duration for people: "—" for none, "850 ms", "12.4 s", "3.5 min", "2.1 h". */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  // Up to 2 min in seconds and up to 2 h in minutes: an axis reads "100 s", not "1.7 min".
  if (ms < 120_000) return `${oneDecimal(ms / 1000)} s`;
  if (ms < 7_200_000) return `${oneDecimal(ms / 60_000)} min`;
  return `${oneDecimal(ms / 3_600_000)} h`;
}

/** A 0..1 share as "42 %", "—" for none. */
export function formatShare(v: number | null | undefined): string {
  return v === null || v === undefined ? "—" : `${Math.round(v * 100)}\u00a0%`;
}

function oneDecimal(n: number): string {
  return n.toFixed(1).replace(/\.0$/, "");
}
