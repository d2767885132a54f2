import { dominantShare, type EventsPublished, type JobCost, jobCost } from "../core/cost";
import type { JobStatus, Resources } from "../core/job";
import { type PoolConfig, poolHourlyUsd } from "../core/pools";
import type { ImageCost } from "../core/stats";
import { config } from "./config";

/**
 * A job's `cost` (core/cost.ts, docs/cost.md), computed when the job is read from what its item
 * already records — no write, no read of its own.
 */

/** What of the deployment a job's cost depends on. */
export interface CostSettings {
  readonly pools: readonly PoolConfig[];
  readonly events: EventsPublished;
}

export function costSettings(): CostSettings {
  const c = config();
  return { pools: c.pools, events: c.eventBus ? c.stateChangeEvents : "none" };
}

/** The fields of a job item (or a stream image of one) its cost is computed from. */
export interface CostedItem {
  readonly status: JobStatus;
  readonly version: number;
  readonly attempts: number;
  readonly failures?: number | undefined;
  readonly retries?: number | undefined;
  readonly runMs?: number | undefined;
  readonly runPool?: string | undefined;
  readonly pool: string | null;
  readonly resources: Resources;
  readonly reservation?: { readonly pool: string } | undefined;
  readonly attemptStartedAt?: string | undefined;
}

/**
 * The job's cost so far: its ended attempts' run time, and a running attempt's up to `now`. Its
 * compute is a share of a node of the pool it ran in (else the pool it asked for, else the first).
 */
export function costOfItem(item: CostedItem, settings: CostSettings, now?: Date): JobCost {
  const poolName = item.reservation?.pool ?? item.runPool ?? item.pool;
  const pool = settings.pools.find((p) => p.name === poolName) ?? settings.pools[0];
  const running =
    item.status === "running" && item.attemptStartedAt && now
      ? Math.max(0, now.getTime() - Date.parse(item.attemptStartedAt))
      : 0;
  return jobCost({
    status: item.status,
    version: item.version,
    attempts: item.attempts,
    failures: item.failures ?? 0,
    retries: item.retries ?? 0,
    runMs: (item.runMs ?? 0) + (Number.isFinite(running) ? running : 0),
    share: pool ? dominantShare(item.resources, pool.node) : 0,
    hourlyUsd: pool ? poolHourlyUsd(pool) : 0,
    events: settings.events,
  });
}

/**
 * The cost of a job item as the Jobs table's stream shows it (a plain item), for the /stats
 * consumer's sums: read from the item's own fields, defaulting what an old item lacks.
 */
export function costOfStreamItem(item: Record<string, unknown>, settings: CostSettings): ImageCost {
  const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  const text = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
  const resources = (item.resources ?? {}) as Record<string, unknown>;
  const cost = costOfItem(
    {
      status: item.status as JobStatus,
      version: num(item.version),
      attempts: num(item.attempts),
      failures: num(item.failures),
      retries: num(item.retries),
      runMs: num(item.runMs),
      runPool: text(item.runPool),
      pool: text(item.pool) ?? null,
      resources: { cpu: num(resources.cpu), memoryMb: num(resources.memoryMb), gpu: num(resources.gpu) },
    },
    settings,
  );
  return { requestsUsd: cost.requestsUsd, computeUsd: cost.computeUsd };
}
