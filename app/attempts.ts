import { ConcurrentUpdateError } from "../core/errors";
import { newAttemptItem } from "../store/attempts";
import { type NodeCapacity, rebookItem, releaseCapacityItem, reserveCapacityItem } from "../store/capacity";
import type { JobItem, Reservation } from "../store/job-items";
import type { TransactItem, TransactionOutcome } from "../store/job-repository";
import { attemptSk, jobPk } from "../store/keys";
import { stateChange } from "./events";
import { supersededBy } from "./lifecycle-steps";
import { logger } from "./logger";
import { metricPool, millisBetween, recordMetrics } from "./metrics";
import type { AppContext } from "./runtime";

/**
 * A worker starting the attempt it received: one transaction moves the job dispatched → running,
 * records the attempt, and — when the scheduler reserved another node of the pool — moves the
 * reservation to the worker's node. A duplicate delivery, a cancelled or paused job, or a job
 * already past this attempt is "stale": the worker drops the message.
 *
 * A pool's nodes share its queues, so a node often receives a job booked on another node while
 * its own bookings wait in the queue behind it. Refusing would bounce messages between nodes
 * until each finds the node it was booked on; instead, when the job does not fit on top of this
 * node's bookings, the start swaps it with one of them: a job booked here and not yet started,
 * no larger than this one, moves its booking to the other node in the same transaction. Both
 * nodes' books stay within their capacity and each message is taken by the first node free.
 */

export type AttemptContext = Pick<AppContext, "repo" | "clock" | "nodesTable" | "events">;

export interface WorkerNode {
  readonly pool: string;
  readonly nodeId: string;
  readonly workerId: string;
  /** The node's capacity, for the condition that a moved reservation still fits. */
  readonly capacity: NodeCapacity;
}

export interface StartAttemptRequest {
  readonly jobId: string;
  readonly attempt: number;
  readonly node: WorkerNode;
  /**
   * The Dispatch state's task token, kept on the attempt record: when the node goes silent,
   * the scheduler reports the attempt lost on it (app/lost-attempts.ts).
   */
  readonly runToken?: string | undefined;
  /**
   * The execution that sent the message (`$$.Execution.Id`, in messages of the current
   * definition): the attempt starts only for the execution the job's admission wrote.
   */
  readonly executionArn?: string | undefined;
}

export type StartAttemptOutcome =
  | {
      readonly outcome: "started";
      readonly job: JobItem;
      readonly replayed: boolean;
      /**
       * Whether the attempt record (`ATT#n`, running) is known to be stored: then the completion
       * leaves it as it is (app/completion.ts); otherwise the attempt's end writes it whole.
       */
      readonly attemptRecorded: boolean;
    }
  /**
   * The message no longer describes work to do: drop it. `dismiss`: nothing is left for the
   * message's execution to do either (the job names another execution, or ended or paused under
   * this one before it started: a cancel that came before StartExecution), so its run token is
   * to be answered, or the execution waits for its heartbeat timeout. Never set for a duplicate
   * of an attempt that runs (its execution waits for that attempt's report) nor for a message
   * that names no execution (an earlier definition's: it is dropped as before).
   */
  | { readonly outcome: "stale"; readonly reason: string; readonly dismiss?: boolean }
  /** Reserved on another node and does not fit on this one: leave it to another worker. */
  | { readonly outcome: "no_capacity"; readonly reason: string };

/** The attempt item `ATT#n` as GET /jobs/{id}/attempts reads it (app/queries.ts#toAttempt). */
export function attemptItem(
  jobId: string,
  attempt: number,
  node: WorkerNode,
  startedAt: string,
  runToken?: string,
): Record<string, unknown> {
  return {
    ...(runToken ? { runToken } : {}),
    pk: jobPk(jobId),
    sk: attemptSk(attempt),
    entity: "attempt",
    attempt,
    status: "running",
    startedAt,
    finishedAt: null,
    durationMs: null,
    workerId: node.workerId,
    nodeId: node.nodeId,
    pool: node.pool,
    error: null,
  };
}

const MAX_ROUNDS = 6;

export async function startAttempt(
  ctx: AttemptContext,
  request: StartAttemptRequest,
): Promise<StartAttemptOutcome> {
  const { jobId, attempt, node } = request;
  // Set when the previous node's item is gone (deregistered): its books can no longer be released.
  let oldNodeGone = false;
  let swapTried = false;
  for (let round = 1; ; round++) {
    const stored = await ctx.repo.getJob(jobId);
    if (!stored)
      return {
        outcome: "stale",
        reason: `job ${jobId} does not exist`,
        ...(request.executionArn !== undefined ? { dismiss: true } : {}),
      };
    const job = stored.item;
    const superseded = supersededBy(job, request.executionArn);
    if (superseded) return { outcome: "stale", reason: superseded, dismiss: true };
    if (job.status !== "dispatched" || job.attempts !== attempt) {
      return {
        outcome: "stale",
        reason: `job ${jobId} is ${job.status} at attempt ${job.attempts}, not dispatched for attempt ${attempt}`,
        // Under its own execution, only a job still on its attempt keeps that execution busy.
        ...(request.executionArn !== undefined && job.status !== "dispatched" && job.status !== "running"
          ? { dismiss: true }
          : {}),
      };
    }
    const held = job.reservation;
    if (held && held.pool !== node.pool) {
      return { outcome: "stale", reason: `job ${jobId} is reserved in pool ${held.pool}, not ${node.pool}` };
    }
    const now = ctx.clock().toISOString();
    const moved: Reservation | undefined =
      held && held.nodeId !== node.nodeId ? { ...held, nodeId: node.nodeId } : undefined;
    const { items, next, historyExpiresAt } = ctx.repo.statusChangeItems(
      job,
      {
        to: "running",
        reason: `running on node ${node.nodeId}`,
        triggeredBy: null,
        set: {
          attemptStartedAt: now,
          attemptWorkerId: node.workerId,
          ...(job.startedAt ? {} : { startedAt: now }),
          ...(moved ? { reservation: moved } : {}),
        },
      },
      now,
    );
    const attemptPut = newAttemptItem(ctx.repo.tableName, {
      ...attemptItem(jobId, attempt, node, now, request.runToken),
      expiresAt: historyExpiresAt,
    });
    if (!moved) {
      // The common start: the job is booked on this very node, so only the job changes. Its
      // conditional UpdateItem alone, then its transition and attempt record as plain puts
      // (JobRepository#changeAlone): about half the write units of one transaction.
      let alone: Awaited<ReturnType<typeof ctx.repo.changeAlone>>;
      try {
        alone = await ctx.repo.changeAlone(items, [attemptPut]);
      } catch (error) {
        const replayed = await startLanded(ctx, jobId, attempt, node, [...items, attemptPut]);
        if (!replayed) throw error;
        countStarted(replayed.job, now);
        await ctx.events.publish([stateChange(job.status, replayed.job)]);
        return { outcome: "started", job: replayed.job, replayed: true, attemptRecorded: replayed.recorded };
      }
      if (alone.outcome === "changed") {
        // The job changed under us (a priority change, a cancel): read it again and decide anew.
        if (round < MAX_ROUNDS) continue;
        throw new ConcurrentUpdateError(`job ${jobId} kept changing while attempt ${attempt} started`);
      }
      const attemptRecorded = alone.recordsUnwritten === undefined;
      if (!attemptRecorded) recordsUnwritten(jobId, attempt, alone.recordsUnwritten);
      countStarted(next, now);
      await ctx.events.publish([stateChange(job.status, next)]);
      return { outcome: "started", job: next, replayed: false, attemptRecorded };
    }
    const release: TransactItem[] =
      held && moved && !oldNodeGone ? [releaseCapacityItem(ctx.nodesTable, held)] : [];
    const reserve: TransactItem[] = moved ? [reserveCapacityItem(ctx.nodesTable, moved, node.capacity)] : [];
    let written: TransactionOutcome<"job" | "attempt" | "release" | "reserve">;
    try {
      written = await ctx.repo.transactParts({ job: items, attempt: [attemptPut], release, reserve });
    } catch (error) {
      // No answer (a timeout, a dropped connection): the write may have landed. Only a read
      // tells; a later redelivery would otherwise find the attempt started and drop it. The
      // records were in the transaction, so there is nothing more to put.
      const replayed = await startLanded(ctx, jobId, attempt, node, []);
      if (!replayed) throw error;
      // Ours landed (startedBy): this call made the change, so it counts it.
      countStarted(replayed.job, now);
      await ctx.events.publish([stateChange(job.status, replayed.job)]);
      return { outcome: "started", job: replayed.job, replayed: true, attemptRecorded: true };
    }
    if (!written.ok) {
      const failed = (part: "job" | "attempt" | "release" | "reserve") => written.refused.has(part);
      if (failed("attempt") && !failed("job")) {
        return { outcome: "stale", reason: `attempt ${attempt} of job ${jobId} was already started` };
      }
      if (failed("reserve") && !failed("job") && held && moved && !swapTried) {
        swapTried = true;
        const swapped = await startBySwap(ctx, { job, held, node, items, attemptPut });
        if (swapped) {
          countStarted(next, now);
          await ctx.events.publish([stateChange(job.status, next)]);
          return { outcome: "started", job: next, replayed: false, attemptRecorded: true };
        }
      }
      if (failed("reserve") && !failed("job")) {
        return {
          outcome: "no_capacity",
          reason: `job ${jobId} does not fit on node ${node.nodeId} (or the node is not up)`,
        };
      }
      if (failed("release") && !failed("job")) oldNodeGone = true;
      // The job changed under us (a priority change, a cancel): read it again and decide anew.
      if (round < MAX_ROUNDS) continue;
      throw written.error;
    }
    // The attempt record was a part of the transaction.
    countStarted(next, now);
    await ctx.events.publish([stateChange(job.status, next)]);
    return { outcome: "started", job: next, replayed: false, attemptRecorded: true };
  }
}

/** JobsStarted and QueueWaitTime (from when it last entered queued), once per committed start. */
function countStarted(job: JobItem, startedAt: string): void {
  recordMetrics(
    { pool: metricPool(job) },
    { jobsStarted: 1, queueWaitTime: millisBetween(job.queuedAt ?? job.createdAt, startedAt) },
  );
}

/** Bookings on this node looked at for a swap, at most. */
const SWAP_CANDIDATES = 3;

/** A job booked on a node, from the `active` index. */
interface Booked {
  readonly id: string;
  readonly attempts: number;
  readonly reservation: Reservation;
}

interface SwapRequest {
  /** The job as read, booked on `held.nodeId`. */
  readonly job: JobItem;
  readonly held: Reservation;
  readonly node: WorkerNode;
  /** The job's status change and attempt record, as the plain start would write them. */
  readonly items: readonly TransactItem[];
  readonly attemptPut: TransactItem;
}

/**
 * Starts the job here by trading bookings with a job booked here that no worker has started:
 * that job's booking goes to the node this one was booked on. The swapped job must be no larger
 * in any resource, so the other node's book only shrinks; this node's grows by the difference,
 * on condition that it still fits. True when the swap was written.
 */
async function startBySwap(ctx: AttemptContext, swap: SwapRequest): Promise<boolean> {
  const { job, held, node } = swap;
  const candidates = (await ctx.repo.activeOnNode(node.pool, node.nodeId))
    .flatMap((other): Booked[] =>
      other.status === "dispatched" &&
      typeof other.id === "string" &&
      other.id !== job.id &&
      typeof other.attempts === "number" &&
      other.reservation?.nodeId === node.nodeId &&
      within(other.reservation, held)
        ? [{ id: other.id, attempts: other.attempts, reservation: other.reservation }]
        : [],
    )
    // The closest in size first: the smaller the difference, the likelier this node fits it.
    .sort((a, b) => size(b.reservation) - size(a.reservation))
    .slice(0, SWAP_CANDIDATES);
  for (const other of candidates) {
    const otherBooking = other.reservation;
    const delta: Reservation = {
      pool: node.pool,
      nodeId: node.nodeId,
      // In thousandths, as capacity is counted: no float residue left on the nodes' books.
      cpu: Math.round((held.cpu - otherBooking.cpu) * 1000) / 1000,
      memoryMb: held.memoryMb - otherBooking.memoryMb,
      gpu: held.gpu - otherBooking.gpu,
    };
    const books: TransactItem[] =
      delta.cpu === 0 && delta.memoryMb === 0 && delta.gpu === 0
        ? []
        : [
            reserveCapacityItem(ctx.nodesTable, delta, node.capacity),
            releaseCapacityItem(ctx.nodesTable, { ...delta, nodeId: held.nodeId }),
          ];
    const written = await ctx.repo.transactParts({
      job: swap.items,
      attempt: [swap.attemptPut],
      rebook: [
        rebookItem(ctx.repo.tableName, {
          jobId: other.id,
          attempts: other.attempts,
          from: node.nodeId,
          to: held.nodeId,
          at: ctx.clock().toISOString(),
        }),
      ],
      books,
    });
    if (written.ok) return true;
    // The other job started meanwhile, or this one changed: try the next, or give up.
    if (written.refused.has("job")) return false;
  }
  return false;
}

function within(a: Reservation, b: Reservation): boolean {
  return a.cpu <= b.cpu && a.memoryMb <= b.memoryMb && a.gpu <= b.gpu;
}

/** An order of bookings by size: GPUs outweigh CPUs, which outweigh memory. */
function size(r: Reservation): number {
  return r.gpu * 1e12 + r.cpu * 1e6 + r.memoryMb;
}

async function startedBy(ctx: AttemptContext, job: JobItem, node: WorkerNode): Promise<boolean> {
  if (job.attemptWorkerId !== undefined) {
    return job.attemptWorkerId === node.workerId && job.reservation?.nodeId === node.nodeId;
  }
  // Started before the job named its attempt's worker: the attempt record does.
  const item = await ctx.repo.getItem({ pk: jobPk(job.id), sk: attemptSk(job.attempts) });
  return item?.workerId === node.workerId && item?.nodeId === node.nodeId;
}

/**
 * After a start whose write had no answer (a timeout, a dropped connection): the job as this
 * start left it when its write landed after all (`startedBy`), with `writes`' history records put
 * now, only where absent, and whether they are stored; else undefined.
 */
async function startLanded(
  ctx: AttemptContext,
  jobId: string,
  attempt: number,
  node: WorkerNode,
  writes: readonly TransactItem[],
): Promise<{ readonly job: JobItem; readonly recorded: boolean } | undefined> {
  const after = (await ctx.repo.getJob(jobId))?.item;
  if (after?.status !== "running" || after.attempts !== attempt || !(await startedBy(ctx, after, node))) {
    return undefined;
  }
  const records = writes.filter((write) => write.Put);
  if (records.length === 0) return { job: after, recorded: true };
  try {
    await ctx.repo.putRecords(records);
  } catch (error) {
    recordsUnwritten(jobId, attempt, error);
    return { job: after, recorded: false };
  }
  return { job: after, recorded: true };
}

/**
 * The attempt started, but its transition or attempt record could not be put: it runs all the
 * same (the attempt's end writes its record whole); only that `running` row of /transitions is
 * missing. Said at warn level, for the operator.
 */
function recordsUnwritten(jobId: string, attempt: number, error: unknown): void {
  logger.warn("attempt started without its transition or attempt record", {
    jobId,
    attempt,
    error: error as Error,
  });
}
