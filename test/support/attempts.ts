import { expect } from "vitest";
import { type AttemptContext, startAttempt, type WorkerNode } from "../../app/attempts";
import { reservationFor, reserveCapacityItem } from "../../store/capacity";

/**
 * A job's next attempt played without a scheduler or a worker, for tests of what happens after:
 * the scheduler's admission write (queued → dispatched with the reservation on `node`, attempts
 * + 1, the node's `used` up, in one transaction) and the worker's start (app/attempts.ts).
 */

/** The admission write; returns the attempt number. */
export async function admitOnNode(ctx: AttemptContext, jobId: string, node: WorkerNode): Promise<number> {
  const item = (await ctx.repo.getJobItems([jobId])).get(jobId);
  if (!item) throw new Error(`job ${jobId} not found`);
  expect(item.status).toBe("queued");
  const attempt = item.attempts + 1;
  const reservation = reservationFor(node.pool, node.nodeId, item.resources);
  const { items } = ctx.repo.statusChangeItems(
    item,
    {
      to: "dispatched",
      reason: `dispatched to node ${node.nodeId} in pool ${node.pool}`,
      triggeredBy: null,
      set: { reservation, attempts: attempt },
      remove: ["admissionToken"],
    },
    ctx.clock().toISOString(),
  );
  await ctx.repo.transact([...items, reserveCapacityItem(ctx.nodesTable, reservation, node.capacity)]);
  return attempt;
}

/** Admission, then the worker's start: the job running its next attempt from now. */
export async function runOnNode(ctx: AttemptContext, jobId: string, node: WorkerNode): Promise<number> {
  const attempt = await admitOnNode(ctx, jobId, node);
  const started = await startAttempt(ctx, { jobId, attempt, node });
  expect(started.outcome).toBe("started");
  return attempt;
}
