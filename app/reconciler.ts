import { DescribeExecutionCommand, ExecutionDoesNotExist, type SFNClient } from "@aws-sdk/client-sfn";
import { ulid } from "ulid";
import { forEachConcurrent } from "../core/concurrency";
import { isTerminal } from "../core/job";
import type { NodeCapacity } from "../store/capacity";
import { createDocumentClient } from "../store/dynamo";
import { activeInPool, type PageRequest, retryDueJobIds } from "../store/job-indexes";
import type { JobItem, Reservation } from "../store/job-items";
import { type NodeItem, NodeRepository } from "../store/nodes";
import { config } from "./config";
import { createSfnClient } from "./executions";
import { keepLease } from "./lease";
import {
  type LifecycleContext,
  recordAttemptFailure,
  requeueJob,
  StepFunctionsTaskTokens,
} from "./lifecycle";
import { logger } from "./logger";
import { recordMetrics } from "./metrics";
import { appContext } from "./runtime";

/**
 * The reconciler: after any crash — a Lambda that died mid-step, a lost execution, the local
 * stack restarted with its executions gone — it puts every job back on a path that moves it,
 * from the job's stored state alone, and proves each node's `used` against the reservations
 * that jobs hold. It runs at local-stack start and every 5 minutes in AWS; running it twice, or
 * alongside everything else, is harmless (every write is conditional).
 *
 * Jobs: only a job with an attempt under way needs an execution, so only those are walked: per
 * pool, the `active` index (dispatched and running jobs) and the `retrying` jobs of the `due`
 * index whose backoff is over. A dispatched or running job whose execution is missing or no
 * longer RUNNING has its attempt recorded as `lost` (app/lifecycle.ts, the same path as a
 * heartbeat lapse) and, if it retries, is requeued; a retrying job left behind is requeued. A
 * waiting job (queued, blocked, scheduled) needs nothing: the scheduler starts an execution when
 * it admits it. Paused jobs have none on purpose.
 *
 * Capacity: per pool, under the pool's scheduling lease (so no admission lands meanwhile), the
 * reservations of the `active` index are added up per node and compared with the node's `used`;
 * a mismatch seen twice, a moment apart, is repaired with a write conditional on `used` being
 * unchanged since it was read, and, where it lowers `used`, on no pass having booked the node in
 * the last `bookingGraceSeconds` (its jobs' writes may still be landing).
 */

export type ReconcilerContext = LifecycleContext & {
  readonly nodes: NodeRepository;
  /** DescribeExecution: is a job's execution still running? */
  readonly sfn: SFNClient;
  readonly tuning?: Partial<ReconcilerTuning>;
};

export interface ReconcilerTuning {
  /**
   * A job changed this recently is left alone: its execution may be starting (the scheduler
   * writes the admission, with the execution's ARN, before it starts the execution).
   */
  readonly graceSeconds: number;
  /** Jobs reconciled at once. */
  readonly concurrency: number;
  /** Items read per page of an index. */
  readonly pageSize: number;
  /** How long to wait before re-reading the reservations that disagree with a node. */
  readonly confirmDelayMs: number;
  /**
   * A node a pass booked admissions on this recently keeps an excess over its reservations: the
   * pass books a node before it writes the jobs (app/admissions.ts, admitApart), so until they
   * land the node counts more than the `active` index shows. Longer than a pass can live (the
   * scheduler function's 60-second timeout), so no write of a pass lands after it; a shortfall
   * is repaired at once, as before.
   */
  readonly bookingGraceSeconds: number;
  /** Lost nodes with nothing reserved are deleted this long after they were lost. */
  readonly lostNodeRetentionSeconds: number;
  /** The pool lease's time to live while capacity is checked; renewed every third of it (app/lease.ts). */
  readonly leaseSeconds: number;
}

export const DEFAULT_RECONCILER_TUNING: ReconcilerTuning = {
  graceSeconds: 60,
  concurrency: 8,
  pageSize: 100,
  confirmDelayMs: 1500,
  bookingGraceSeconds: 90,
  lostNodeRetentionSeconds: 3600,
  leaseSeconds: 15,
};

export interface CapacityRepair {
  readonly pool: string;
  readonly nodeId: string;
  readonly from: NodeCapacity;
  readonly to: NodeCapacity;
}

export interface ReconcileSummary {
  /** Jobs with an attempt under way, or a retry whose backoff is over, that were looked at. */
  readonly jobsChecked: number;
  readonly attemptsLost: number;
  /** Retrying jobs whose backoff had run out with nobody left to requeue them. */
  readonly requeued: number;
  readonly capacityRepairs: CapacityRepair[];
  /** Reservations on nodes that no longer exist: they cannot be released, only reported. */
  readonly orphanReservations: number;
  readonly nodesPruned: number;
  /** Pools whose live nodes' capacity was not checked: a scheduling pass held the lease (lost nodes were). */
  readonly poolsSkipped: string[];
}

let cached: ReconcilerContext | undefined;

export function reconcilerContext(): ReconcilerContext {
  if (!cached) {
    const c = config();
    const sfn = createSfnClient({ region: c.region, endpoint: c.sfnEndpoint });
    cached = {
      ...appContext(),
      tokens: new StepFunctionsTaskTokens(sfn),
      sfn,
      nodes: new NodeRepository(
        createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint }),
        c.nodesTable,
      ),
    };
  }
  return cached;
}

interface Counters {
  jobsChecked: number;
  attemptsLost: number;
  requeued: number;
}

/**
 * `signal` ends the run early (a stopping process): the page under way is finished, the rest is
 * left to the next run, and the returned promise rejects with the signal's reason.
 */
export async function reconcile(
  ctx: ReconcilerContext,
  { signal }: { signal?: AbortSignal } = {},
): Promise<ReconcileSummary> {
  const tuning = { ...DEFAULT_RECONCILER_TUNING, ...ctx.tuning };
  const counters: Counters = { jobsChecked: 0, attemptsLost: 0, requeued: 0 };
  const now = ctx.clock().toISOString();
  const walks: ((page: PageRequest) => Promise<{ ids: string[]; lastKey: PageRequest["startKey"] }>)[] = [
    ...ctx.pools.map((pool) => async (page: PageRequest) => {
      const entries = await activeInPool(ctx.repo, pool.name, page);
      return {
        ids: entries.items.flatMap((e) => (typeof e.id === "string" ? [e.id] : [])),
        lastKey: entries.lastKey,
      };
    }),
    // The any-pool partition too: a job that named no pool retries there.
    ...[...ctx.pools.map((pool) => pool.name), null].map(
      (pool) => (page: PageRequest) => retryDueJobIds(ctx.repo, pool, now, page),
    ),
  ];
  for (const walk of walks) {
    let startKey: PageRequest["startKey"];
    do {
      signal?.throwIfAborted();
      const page = await walk({ limit: tuning.pageSize, startKey });
      const items = await ctx.repo.getJobItems(page.ids);
      await forEachConcurrent([...items.values()], tuning.concurrency, async (item) => {
        try {
          await reconcileJob(ctx, item, counters, tuning);
        } catch (error) {
          // One job's trouble must not stop the walk; the next run tries it again.
          logger.error("job not reconciled", {
            jobId: item.id,
            attempt: item.attempts,
            error: error as Error,
          });
        }
      });
      startKey = page.lastKey;
    } while (startKey);
  }

  const capacityRepairs: CapacityRepair[] = [];
  const poolsSkipped: string[] = [];
  let orphanReservations = 0;
  let nodesPruned = 0;
  for (const pool of ctx.pools) {
    signal?.throwIfAborted();
    const proof = await proveCapacity(ctx, pool.name, tuning);
    if (proof.liveSkipped) poolsSkipped.push(pool.name);
    capacityRepairs.push(...proof.repairs);
    orphanReservations += proof.orphans;
    nodesPruned += proof.pruned;
  }
  const summary: ReconcileSummary = {
    ...counters,
    capacityRepairs,
    orphanReservations,
    nodesPruned,
    poolsSkipped,
  };
  logger.info("reconciled", { ...summary, capacityRepairs: capacityRepairs.length });
  // Every run writes the figure, 0 included, so the alarm on it sees a steady series.
  recordMetrics(
    {},
    {
      reconcilerRepairs: counters.attemptsLost + counters.requeued + capacityRepairs.length,
    },
  );
  return summary;
}

async function reconcileJob(
  ctx: ReconcilerContext,
  item: JobItem,
  counters: Counters,
  tuning: ReconcilerTuning,
): Promise<void> {
  if (item.staged || isTerminal(item.status)) return;
  counters.jobsChecked++;
  if (item.status === "paused") return;
  const now = ctx.clock();
  if (now.getTime() - Date.parse(item.updatedAt) < tuning.graceSeconds * 1000) return;

  // Waiting jobs need no execution: the scheduler starts one per attempt when it admits the job.
  let current: JobItem | undefined = item;
  if (item.status === "dispatched" || item.status === "running") {
    const execution = item.executionArn ? await executionStatus(ctx, item.executionArn) : "dead";
    if (execution !== "dead") return;
    const decision = await recordAttemptFailure(ctx, {
      jobId: item.id,
      attempt: item.attempts,
      outcome: "lost",
      error: {
        Error: "lost",
        Cause: item.executionArn
          ? `execution ${item.executionArn} is no longer running`
          : "the job's execution is gone",
      },
    });
    counters.attemptsLost++;
    logger.warn("attempt lost with its execution", {
      jobId: item.id,
      attempt: item.attempts,
      next: decision.next,
    });
    if (decision.next === "end") return;
    current = (await ctx.repo.getJobItems([item.id])).get(item.id);
  }
  // A retrying job whose backoff is over and whose execution did not requeue it (it died, or
  // the attempt was ended here): back in line. Requeue is idempotent, so racing a live
  // execution's own Requeue step is harmless.
  if (current?.status === "retrying" && backoffOver(current, ctx.clock())) {
    await requeueJob(ctx, { jobId: current.id });
    counters.requeued++;
  }
}

function backoffOver(item: JobItem, now: Date): boolean {
  return !item.nextAttemptAt || Date.parse(item.nextAttemptAt) <= now.getTime();
}

async function executionStatus(
  ctx: ReconcilerContext,
  executionArn: string,
): Promise<"running" | "dead" | "unknown"> {
  try {
    const out = await ctx.sfn.send(new DescribeExecutionCommand({ executionArn }));
    return out.status === "RUNNING" || out.status === "PENDING_REDRIVE" ? "running" : "dead";
  } catch (error) {
    if (error instanceof ExecutionDoesNotExist) return "dead";
    logger.warn("execution status unknown; job left for the next run", {
      executionArn,
      error: error as Error,
    });
    return "unknown";
  }
}

// ---------------------------------------------------------------------------------------------
// Capacity
// ---------------------------------------------------------------------------------------------

/** Thousandths of a CPU, MB, GPUs: integers, so sums are exact. */
interface Milli {
  cpu: number;
  memoryMb: number;
  gpu: number;
}

const toMilli = (c: NodeCapacity): Milli => ({
  cpu: Math.round(c.cpu * 1000),
  memoryMb: Math.round(c.memoryMb),
  gpu: Math.round(c.gpu),
});
const fromMilli = (m: Milli): NodeCapacity => ({ cpu: m.cpu / 1000, memoryMb: m.memoryMb, gpu: m.gpu });
const sameMilli = (a: Milli, b: Milli): boolean =>
  a.cpu === b.cpu && a.memoryMb === b.memoryMb && a.gpu === b.gpu;
const ZERO: Milli = { cpu: 0, memoryMb: 0, gpu: 0 };

/**
 * The pool's capacity proof. Its live nodes are proved under the pool's scheduling lease, so no
 * pass admits onto them meanwhile; when a pass holds it, they wait for the next run
 * (`liveSkipped`). Its lost nodes are proved either way: nothing is admitted onto a lost node,
 * and the releases that still reach one (its attempts reported lost, a worker that only seemed
 * dead) change `used`, which the repair's write is conditional on. So what a worker that died
 * between a completion's write and its release left booked there (app/completion.ts) goes back
 * at the next run even while the pool is busy.
 */
async function proveCapacity(
  ctx: ReconcilerContext,
  pool: string,
  tuning: ReconcilerTuning,
): Promise<{ repairs: CapacityRepair[]; orphans: number; pruned: number; liveSkipped: boolean }> {
  const holder = `reconciler-${ulid()}`;
  const leased = (await ctx.nodes.acquireLease(pool, holder, ctx.clock(), tuning.leaseSeconds)) !== null;
  const lease = leased ? keepLease(ctx.nodes, pool, holder, tuning.leaseSeconds, ctx.clock) : null;
  try {
    const listed = await ctx.nodes.listNodes(pool);
    const nodes = leased ? listed : listed.filter((n) => n.status === "lost");
    const first = await reservationSums(ctx, pool, tuning.pageSize);
    const known = new Set(listed.map((n) => n.nodeId));
    const orphans = [...first.keys()].filter((nodeId) => !known.has(nodeId));
    for (const nodeId of orphans) {
      logger.error("reservations on a node that does not exist", {
        pool,
        nodeId,
        reserved: first.get(nodeId),
      });
    }
    const suspects = nodes.filter((n) => !sameMilli(toMilli(n.used), first.get(n.nodeId) ?? ZERO));
    const repairs: CapacityRepair[] = [];
    if (suspects.length > 0) {
      // The active index trails the table by a moment: a mismatch must survive a second look.
      await new Promise((resolve) => setTimeout(resolve, tuning.confirmDelayMs));
      const second = await reservationSums(ctx, pool, tuning.pageSize);
      for (const node of suspects) {
        const sum = second.get(node.nodeId) ?? ZERO;
        if (!sameMilli(sum, first.get(node.nodeId) ?? ZERO)) continue;
        const to = fromMilli(sum);
        const bookedSince = new Date(ctx.clock().getTime() - tuning.bookingGraceSeconds * 1000);
        if (await ctx.nodes.repairUsed(pool, node.nodeId, node.used, to, bookedSince)) {
          logger.warn("node capacity repaired: used disagreed with the reservations", {
            pool,
            nodeId: node.nodeId,
            from: node.used,
            to,
          });
          repairs.push({ pool, nodeId: node.nodeId, from: node.used, to });
        }
      }
    }
    const pruned = leased ? await pruneLostNodes(ctx, nodes, first, tuning) : 0;
    return { repairs, orphans: orphans.length, pruned, liveSkipped: !leased };
  } finally {
    if (lease) {
      lease.stop();
      await ctx.nodes.releaseLease(pool, holder);
    }
  }
}

/** Per node, what the dispatched and running jobs of the pool hold there (the `active` index). */
async function reservationSums(
  ctx: ReconcilerContext,
  pool: string,
  pageSize: number,
): Promise<Map<string, Milli>> {
  const sums = new Map<string, Milli>();
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await activeInPool(ctx.repo, pool, { limit: pageSize * 10, startKey });
    for (const entry of page.items) {
      const reservation = entry.reservation as Reservation | undefined;
      if (!reservation) continue;
      const add = toMilli(reservation);
      const sum = sums.get(reservation.nodeId) ?? { ...ZERO };
      sum.cpu += add.cpu;
      sum.memoryMb += add.memoryMb;
      sum.gpu += add.gpu;
      sums.set(reservation.nodeId, sum);
    }
    startKey = page.lastKey;
  } while (startKey);
  return sums;
}

/** Lost nodes nobody holds anything on, lost long enough ago that GET /pools need not show them. */
async function pruneLostNodes(
  ctx: ReconcilerContext,
  nodes: readonly NodeItem[],
  sums: ReadonlyMap<string, Milli>,
  tuning: ReconcilerTuning,
): Promise<number> {
  const cutoff = ctx.clock().getTime() - tuning.lostNodeRetentionSeconds * 1000;
  let pruned = 0;
  for (const node of nodes) {
    if (node.status !== "lost" || sums.has(node.nodeId)) continue;
    if (Date.parse(node.lostAt ?? node.lastHeartbeatAt) > cutoff) continue;
    if (await ctx.nodes.deregister(node.pool, node.nodeId)) pruned++;
  }
  return pruned;
}
