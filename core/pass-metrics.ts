import type { Waiting } from "./admission";
import { PRIORITY_NAMES, type PriorityName, priorityTier, type Resources } from "./job";
import type { ReasonCode } from "./reasons";

/**
 * The figures a scheduler pass reports for its pool (core/metrics.ts: QueuedJobs, WaitingJobs,
 * OldestCapacityWaitAge, CapacityInUse), worked out from what the pass read: its waiting jobs
 * and the pool's nodes. Pure, so the arithmetic is tested without a pass.
 */

/**
 * Reasons that mean "more capacity (or a turn) would start it": what the queue-age alarm pages
 * on. Jobs held by a window, a quota, a type limit or a deadline wait by design, not for lack of
 * nodes, and must not page anyone.
 */
export const CAPACITY_WAIT_CODES: ReadonlySet<ReasonCode> = new Set(["resources", "priority", "no_nodes"]);

/** What a pass knows of a waiting job besides its reason. */
export interface WaitingJobFacts {
  readonly priority: number;
  /** When it last entered `queued`; its creation time when it never left. */
  readonly queuedAt: string;
}

/** A live node's capacity and what is booked on it. */
export interface NodeLoad {
  readonly capacity: Resources;
  readonly used: Resources;
}

export interface PoolGaugeInput {
  readonly waiting: readonly Waiting[];
  readonly jobs: ReadonlyMap<string, WaitingJobFacts>;
  /** The pool's live nodes (up or draining: both hold bookings). */
  readonly nodes: readonly NodeLoad[];
  /** What the pass booked after it read the nodes. */
  readonly admitted: readonly Resources[];
  /** Whether the pool's nodes have GPUs (its configured node size): a CPU pool reports no gpu figure. */
  readonly gpuPool: boolean;
  readonly now: Date;
}

export type CapacityResource = "cpu" | "memory" | "gpu";

export interface PoolGauges {
  /** Jobs waiting for capacity or behind a held node: what the worker pools scale on. */
  readonly queuedJobs: number;
  /** Every tier, zero included, so a tier that empties reports 0 rather than going silent. */
  readonly waitingByTier: Readonly<Record<PriorityName, number>>;
  /** Seconds; 0 when no job waits for capacity or priority. */
  readonly oldestCapacityWaitSeconds: number;
  /** Booked ÷ total, 0..1 (0 for a pool with no live nodes); gpu only for a GPU pool. */
  readonly capacityInUse: Readonly<Partial<Record<CapacityResource, number>>>;
}

export function poolGauges(input: PoolGaugeInput): PoolGauges {
  const waitingByTier = Object.fromEntries(
    (Object.keys(PRIORITY_NAMES) as PriorityName[]).map((tier) => [tier, 0]),
  ) as Record<PriorityName, number>;
  let queuedJobs = 0;
  let oldest = 0;
  for (const w of input.waiting) {
    if (w.kind === "ineligible") continue;
    if (w.kind === "capacity" || w.kind === "held") queuedJobs++;
    const job = input.jobs.get(w.jobId);
    if (!job) continue;
    waitingByTier[priorityTier(job.priority)]++;
    if (CAPACITY_WAIT_CODES.has(w.code)) {
      const since = Date.parse(job.queuedAt);
      if (!Number.isNaN(since)) oldest = Math.max(oldest, (input.now.getTime() - since) / 1000);
    }
  }
  return {
    queuedJobs,
    waitingByTier,
    oldestCapacityWaitSeconds: Math.round(oldest),
    capacityInUse: capacityInUse(input.nodes, input.admitted, input.gpuPool),
  };
}

function capacityInUse(
  nodes: readonly NodeLoad[],
  admitted: readonly Resources[],
  gpuPool: boolean,
): Partial<Record<CapacityResource, number>> {
  const total = sum(nodes.map((n) => n.capacity));
  const used = sum([...nodes.map((n) => n.used), ...admitted]);
  const fraction = (part: number, whole: number) => (whole > 0 ? Math.min(1, Math.max(0, part / whole)) : 0);
  return {
    cpu: fraction(used.cpu, total.cpu),
    memory: fraction(used.memoryMb, total.memoryMb),
    ...(gpuPool ? { gpu: fraction(used.gpu, total.gpu) } : {}),
  };
}

function sum(all: readonly Resources[]): Resources {
  return all.reduce(
    (acc, r) => ({ cpu: acc.cpu + r.cpu, memoryMb: acc.memoryMb + r.memoryMb, gpu: acc.gpu + r.gpu }),
    { cpu: 0, memoryMb: 0, gpu: 0 },
  );
}
