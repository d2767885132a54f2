import { ConcurrentUpdateError } from "../core/errors";
import { type NodeCapacity, releaseCapacityItem, reserveCapacityItem } from "../store/capacity";
import type { JobItem, Reservation } from "../store/job-items";
import type { TransactItem } from "../store/job-repository";
import { attemptSk, jobPk } from "../store/keys";
import { stateChange } from "./events";
import type { AppContext } from "./runtime";

/**
 * A worker starting the attempt it received: one transaction moves the job dispatched → running,
 * records the attempt, and — when the scheduler reserved another node of the pool — moves the
 * reservation to the worker's node. A duplicate delivery, a cancelled or paused job, or a job
 * already past this attempt is "stale": the worker drops the message.
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
}

export type StartAttemptOutcome =
  | { readonly outcome: "started"; readonly job: JobItem; readonly replayed: boolean }
  /** The message no longer describes work to do: drop it. */
  | { readonly outcome: "stale"; readonly reason: string }
  /** Reserved on another node and does not fit on this one: leave it to another worker. */
  | { readonly outcome: "no_capacity"; readonly reason: string };

/** The attempt item `ATT#n` as GET /jobs/{id}/attempts reads it (app/queries.ts#toAttempt). */
export function attemptItem(
  jobId: string,
  attempt: number,
  node: WorkerNode,
  startedAt: string,
): Record<string, unknown> {
  return {
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
  for (let round = 1; ; round++) {
    const stored = await ctx.repo.getJob(jobId);
    if (!stored) return { outcome: "stale", reason: `job ${jobId} does not exist` };
    const job = stored.item;
    if (job.status !== "dispatched" || job.attempts !== attempt) {
      return {
        outcome: "stale",
        reason: `job ${jobId} is ${job.status} at attempt ${job.attempts}, not dispatched for attempt ${attempt}`,
      };
    }
    const held = job.reservation;
    if (held && held.pool !== node.pool) {
      return { outcome: "stale", reason: `job ${jobId} is reserved in pool ${held.pool}, not ${node.pool}` };
    }
    const now = ctx.clock().toISOString();
    const moved: Reservation | undefined =
      held && held.nodeId !== node.nodeId ? { ...held, nodeId: node.nodeId } : undefined;
    const { items, next } = ctx.repo.statusChangeItems(
      job,
      {
        to: "running",
        reason: `running on node ${node.nodeId}`,
        triggeredBy: null,
        set: {
          attemptStartedAt: now,
          ...(job.startedAt ? {} : { startedAt: now }),
          ...(moved ? { reservation: moved } : {}),
        },
      },
      now,
    );
    const attemptPut: TransactItem = {
      Put: {
        TableName: ctx.repo.tableName,
        Item: attemptItem(jobId, attempt, node, now),
        ConditionExpression: "attribute_not_exists(pk)",
      },
    };
    const capacity: TransactItem[] = [];
    if (held && moved) {
      if (!oldNodeGone) capacity.push(releaseCapacityItem(ctx.nodesTable, held));
      capacity.push(reserveCapacityItem(ctx.nodesTable, moved, node.capacity));
    }
    try {
      await ctx.repo.transact([...items, attemptPut, ...capacity]);
    } catch (error) {
      if (!(error instanceof ConcurrentUpdateError)) {
        // No answer (a timeout, a dropped connection): the write may have landed. Only a read
        // tells; a later redelivery would otherwise find the attempt started and drop it.
        const after = (await ctx.repo.getJob(jobId))?.item;
        if (
          after?.status === "running" &&
          after.attempts === attempt &&
          (await startedBy(ctx, after, node))
        ) {
          await ctx.events.publish([stateChange(job.status, after)]);
          return { outcome: "started", job: after, replayed: true };
        }
        throw error;
      }
      const reasons = reasonsOf(error);
      const failed = (i: number) => reasons[i] !== undefined && reasons[i] !== "None";
      const [jobIndex, , attemptIndex] = [0, 1, 2];
      const releaseIndex = moved && !oldNodeGone ? 3 : -1;
      const reserveIndex = moved ? 3 + (oldNodeGone ? 0 : 1) : -1;
      if (failed(attemptIndex) && !failed(jobIndex)) {
        return { outcome: "stale", reason: `attempt ${attempt} of job ${jobId} was already started` };
      }
      if (failed(reserveIndex) && !failed(jobIndex)) {
        return {
          outcome: "no_capacity",
          reason: `job ${jobId} does not fit on node ${node.nodeId} (or the node is not up)`,
        };
      }
      if (failed(releaseIndex) && !failed(jobIndex)) oldNodeGone = true;
      // The job changed under us (a priority change, a cancel): read it again and decide anew.
      if (round < MAX_ROUNDS) continue;
      throw error;
    }
    await ctx.events.publish([stateChange(job.status, next)]);
    return { outcome: "started", job: next, replayed: false };
  }
}

async function startedBy(ctx: AttemptContext, job: JobItem, node: WorkerNode): Promise<boolean> {
  const item = await ctx.repo.getItem({ pk: jobPk(job.id), sk: attemptSk(job.attempts) });
  return item?.workerId === node.workerId && item?.nodeId === node.nodeId;
}

function reasonsOf(error: ConcurrentUpdateError): readonly string[] {
  const details = error.details as { reasons?: unknown } | undefined;
  return Array.isArray(details?.reasons) ? details.reasons.map(String) : [];
}
