import type { NodeState } from "../core/admission";
import { ValidationError } from "../core/errors";
import { estimateStarts } from "../core/estimate";
import type { JobStatus } from "../core/job";
import { AdmissionOrder } from "../core/ordering";
import type { Policy } from "../core/policy";
import type { Principal } from "../core/principal";
import { queuedReason, type ReasonCode } from "../core/reasons";
import type { JobItem } from "../store/job-items";
import { countQueued, dueStatusPage } from "../store/job-queries";
import { queuePk } from "../store/keys";
import type { NodeRepository } from "../store/nodes";
import { JOB_INDEX } from "../store/tables";
import { listPools, type PoolView, poolsContext } from "./pools";
import {
  type ActiveItem,
  heldByOwner,
  MergedView,
  OwnerHeads,
  queuedJob,
  readActive,
  readsByOwner,
} from "./queue-reader";
import { type AppContext, appContext } from "./runtime";

/**
 * GET /queue (API.md): how many jobs wait in each status, the pools, and the first queued jobs
 * in the order the scheduler would admit them, each with its position and estimatedStartAt.
 * The order is the policy's own (core/ordering.ts) over the same reads a scheduling pass makes;
 * the estimate simulates the pools' nodes from the running jobs' expected ends and the queued
 * jobs' expected run times (recent completed attempts of their type, store/usage.ts): null
 * where jobq has no run time to go on, never a made-up figure.
 */

export type QueueContext = Pick<AppContext, "repo" | "clock" | "pools" | "policies" | "usage"> & {
  readonly nodes: NodeRepository;
  readonly defaultPolicy: Policy;
};

let cached: QueueContext | undefined;

/** The use cases' context and GET /pools' Nodes repository, created once. */
export function queueContext(): QueueContext {
  cached ??= { ...appContext(), nodes: poolsContext().nodes };
  return cached;
}

/** Queued jobs listed (API.md: the first 100). */
export const QUEUE_LIST_LIMIT = 100;
/** Index entries counted per partition at most: counting costs reads, so it stops here. */
export const COUNT_CAP = 10_000;

const WAITING_STATUSES = ["scheduled", "blocked", "queued", "retrying", "paused"] as const;
const ACTIVE_STATUSES = ["dispatched", "running"] as const;

export interface QueuedEntry {
  readonly id: string;
  readonly type: string;
  readonly priority: number;
  readonly owner: string;
  readonly pool: string | null;
  /** 1 = the next job the scheduler would admit. */
  readonly position: number;
  readonly estimatedStartAt: string | null;
  readonly statusReason: string;
  readonly reasonCode: ReasonCode | null;
}

export interface QueueSnapshot {
  readonly counts: Partial<Record<JobStatus, number>>;
  /** False when some count reached COUNT_CAP and stopped there. */
  readonly countsComplete: boolean;
  readonly pools: PoolView[];
  readonly queued: QueuedEntry[];
}

export async function getQueue(
  ctx: QueueContext,
  principal: Principal,
  pool: string | undefined,
): Promise<QueueSnapshot> {
  if (pool !== undefined && !ctx.pools.some((p) => p.name === pool)) {
    throw new ValidationError([{ path: "pool", message: `no pool named ${pool}` }]);
  }
  const pools = ctx.pools.filter((p) => pool === undefined || p.name === pool);
  const partitions = [...pools.map((p) => p.name), null];
  // Read once: the ranking (usage, estimates) and the dispatched/running counts both need it.
  const active = readActiveOf(ctx, pools);
  const [{ order, estimates, poolViews }, counts] = await Promise.all([
    rankQueue(ctx, pools, active),
    active.then((items) => countStatuses(ctx, partitions, items)),
  ]);
  const listed = order.slice(0, QUEUE_LIST_LIMIT);
  const queued = listed.map((item, i): QueuedEntry => {
    const reason = queuedReason(
      { code: item.reasonCode ?? null, message: item.statusReason },
      jobsAhead(listed, i),
    );
    return {
      id: item.id,
      type: item.type,
      priority: item.priority,
      owner: item.owner,
      pool: item.pool ?? null,
      position: i + 1,
      estimatedStartAt: estimates.get(item.id)?.toISOString() ?? null,
      statusReason: reason.message,
      reasonCode: reason.code,
    };
  });
  return {
    counts: counts.counts,
    countsComplete: counts.complete,
    pools: poolViews,
    // Positions count every owner's jobs; a user sees only their own entries.
    queued: principal.admin ? queued : queued.filter((q) => q.owner === principal.id),
  };
}

/**
 * The jobs listed before the one at `index` that it waits behind: those of its pool and those
 * that may run in any pool (a job that may run in any pool waits behind every one before it).
 */
function jobsAhead(listed: readonly JobItem[], index: number): number {
  const pool = listed[index]?.pool ?? null;
  let ahead = 0;
  for (const other of listed.slice(0, index)) {
    if (pool === null || (other.pool ?? null) === null || other.pool === pool) ahead++;
  }
  return ahead;
}

/** Position and estimate of one queued job, for GET /jobs/{id}; null when it is past the list. */
export async function queuedPlace(
  ctx: QueueContext,
  job: Pick<JobItem, "id" | "pool">,
): Promise<{ position: number; estimatedStartAt: string | null } | null> {
  const pools = ctx.pools.filter((p) => job.pool === null || p.name === job.pool);
  const { order, estimates } = await rankQueue(ctx, pools, readActiveOf(ctx, pools));
  const index = order.slice(0, QUEUE_LIST_LIMIT).findIndex((item) => item.id === job.id);
  if (index < 0) return null;
  return { position: index + 1, estimatedStartAt: estimates.get(job.id)?.toISOString() ?? null };
}

/** The pools' queue in admission order, with the estimates of its first QUEUE_LIST_LIMIT jobs. */
async function rankQueue(
  ctx: QueueContext,
  pools: QueueContext["pools"],
  activeRead: Promise<ActiveItem[]>,
): Promise<{ order: JobItem[]; estimates: Map<string, Date | null>; poolViews: PoolView[] }> {
  const now = ctx.clock();
  const [{ policy }, poolViews, active] = await Promise.all([
    ctx.policies.getPolicy(ctx.defaultPolicy),
    // As GET /pools shows them by default: a lost node has no room to estimate with.
    listPools({ pools, nodes: ctx.nodes }, { lost: false }),
    activeRead,
  ]);
  const partitions = [...pools.map((p) => p.name), null];
  const order = await admissionOrder(ctx, policy, partitions, active, poolViews, now);
  const estimates = await estimate(ctx, order, active, poolViews, now);
  return { order, estimates, poolViews };
}

async function readActiveOf(ctx: QueueContext, pools: QueueContext["pools"]): Promise<ActiveItem[]> {
  return (await Promise.all(pools.map((p) => readActive(ctx.repo, p.name)))).flat();
}

/** The queued jobs of the partitions in the policy's admission order, as far as a pass would read. */
async function admissionOrder(
  ctx: QueueContext,
  policy: Policy,
  partitions: readonly (string | null)[],
  active: readonly ActiveItem[],
  pools: readonly PoolView[],
  now: Date,
): Promise<JobItem[]> {
  const pks = partitions.map(queuePk);
  const reads: Promise<JobItem[]>[] = [
    readsByOwner(policy.algorithm)
      ? new OwnerHeads(ctx.repo, pks, { perOwner: QUEUE_LIST_LIMIT, maxOwners: 200 }).first()
      : new MergedView(ctx.repo, JOB_INDEX.queue, "queueSk", pks, QUEUE_LIST_LIMIT).next(QUEUE_LIST_LIMIT),
  ];
  if (policy.agingSecondsPerStep > 0) {
    reads.push(
      new MergedView(ctx.repo, JOB_INDEX.queueByAge, "queueAgeSk", pks, QUEUE_LIST_LIMIT).next(
        QUEUE_LIST_LIMIT,
      ),
    );
  }
  const items = (await Promise.all(reads)).flat().filter((i) => i.status === "queued");
  const byId = new Map(items.map((i) => [i.id, i]));
  const capacity = pools.reduce(
    (sum, p) => ({
      cpu: sum.cpu + p.capacity.cpu,
      memoryMb: sum.memoryMb + p.capacity.memoryMb,
      gpu: sum.gpu + p.capacity.gpu,
    }),
    { cpu: 0, memoryMb: 0, gpu: 0 },
  );
  const lease = partitions.length === 2 && partitions[0] ? await ctx.nodes.getLease(partitions[0]) : null;
  const order = new AdmissionOrder({
    algorithm: policy.algorithm,
    agingSecondsPerStep: policy.agingSecondsPerStep,
    weights: policy.weights,
    now,
    jobs: items.map(queuedJob),
    usage: heldByOwner(active),
    capacity,
    lastOwner: lease?.lastOwner ?? null,
  });
  const ordered: JobItem[] = [];
  // As if each were admitted in turn: the order the scheduler would go through with room for all.
  for (let job = order.next(); job; job = order.next()) {
    order.admitted(job);
    const item = byId.get(job.id);
    if (item) ordered.push(item);
  }
  return ordered;
}

async function estimate(
  ctx: QueueContext,
  order: readonly JobItem[],
  active: readonly ActiveItem[],
  pools: readonly PoolView[],
  now: Date,
): Promise<Map<string, Date | null>> {
  const listed = order.slice(0, QUEUE_LIST_LIMIT);
  const types = [...new Set([...listed.map((i) => i.type), ...active.map((a) => a.type)])];
  const runTimes = types.length > 0 ? await ctx.usage.readRunTimes(types, now) : new Map<string, number>();
  const nodes: NodeState[] = pools.flatMap((p) =>
    p.nodes
      .filter((n) => n.status === "up")
      .map((n) => ({ nodeId: n.id, pool: p.name, capacity: n.capacity, used: n.used })),
  );
  const running = active.map((a) => {
    const mean = runTimes.get(a.type);
    const startedAt = a.attemptStartedAt ? Date.parse(a.attemptStartedAt) : now.getTime();
    return {
      nodeId: a.reservation.nodeId,
      resources: { cpu: a.reservation.cpu, memoryMb: a.reservation.memoryMb, gpu: a.reservation.gpu },
      expectedEndAt: mean === undefined ? null : new Date(startedAt + mean),
    };
  });
  return estimateStarts({
    now,
    nodes,
    running,
    queued: listed.map((item) => ({
      id: item.id,
      resources: item.resources,
      expectedDurationMs: runTimes.get(item.type) ?? null,
      pools: item.pool ? [item.pool] : null,
    })),
  });
}

/**
 * Jobs per waiting and active status in the partitions: queued from the `queue` index (a
 * COUNT), the other waiting statuses from the `due` index (which projects the status), the
 * active ones from the jobs holding capacity. Each partition stops at COUNT_CAP.
 */
async function countStatuses(
  ctx: QueueContext,
  partitions: readonly (string | null)[],
  active: readonly ActiveItem[],
): Promise<{ counts: Partial<Record<JobStatus, number>>; complete: boolean }> {
  const counts: Partial<Record<JobStatus, number>> = {};
  for (const status of [...WAITING_STATUSES, ...ACTIVE_STATUSES]) counts[status] = 0;
  for (const a of active) {
    const status = a.status as JobStatus;
    if (status in counts) counts[status] = (counts[status] ?? 0) + 1;
  }
  let complete = true;
  await Promise.all(
    partitions.map(async (pool) => {
      const queued = await countQueued(ctx.repo, pool, COUNT_CAP);
      if (!queued.complete) complete = false;
      counts.queued = (counts.queued ?? 0) + queued.count;

      let seen = 0;
      let startKey: Record<string, unknown> | undefined;
      do {
        const page = await dueStatusPage(ctx.repo, pool, {
          limit: Math.min(1000, COUNT_CAP - seen),
          startKey,
        });
        for (const item of page.items) {
          const status = item.status as JobStatus;
          // A queued job with a deadline is in `due` too; it was counted from the queue.
          if (status !== "queued" && status in counts) counts[status] = (counts[status] ?? 0) + 1;
        }
        seen += page.items.length;
        startKey = page.lastKey;
      } while (startKey && seen < COUNT_CAP);
      if (startKey) complete = false;
    }),
  );
  return { counts, complete };
}
