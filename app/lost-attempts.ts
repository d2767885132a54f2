import type { JobRepository } from "../store/job-repository";
import { attemptSk, jobPk } from "../store/keys";
import type { NodeItem } from "../store/nodes";
import type { TaskTokens } from "./lifecycle";
import { logger } from "./logger";

/**
 * Attempts whose worker died. A worker heartbeats its node item and each attempt's run token;
 * the node going silent (JOBQ_NODE_LOST_SECONDS) is how the scheduler learns that the worker is
 * gone, so it reports each attempt that was running there as `lost` on its run token (kept on the
 * attempt record when the worker started it). The execution then ends the attempt as it would
 * after a heartbeat timeout: counted, capacity released, retried or ended.
 *
 * Step Functions' own heartbeat timeout (lostAfterSeconds) stays as the backstop; it is long,
 * because it also spans the time a dispatched attempt waits in its queue, which says nothing
 * about any worker. Attempts booked on the lost node but not started are left alone: any other
 * node of the pool takes them and moves the booking (app/attempts.ts).
 *
 * Reporting is idempotent: a token already answered is refused by Step Functions and skipped,
 * so each pass may report a lost node's attempts again until they have ended.
 */
export async function reportLostAttempts(
  ctx: { readonly repo: JobRepository; readonly tokens: TaskTokens },
  node: Pick<NodeItem, "pool" | "nodeId" | "lastHeartbeatAt">,
): Promise<string[]> {
  const reported: string[] = [];
  for (const entry of await ctx.repo.activeOnNode(node.pool, node.nodeId)) {
    if (entry.status !== "running" || typeof entry.id !== "string" || typeof entry.attempts !== "number") {
      continue;
    }
    const attempt = await ctx.repo.getItem({ pk: jobPk(entry.id), sk: attemptSk(entry.attempts) });
    const runToken = attempt?.runToken;
    // Started before run tokens were kept: the heartbeat timeout ends it.
    if (typeof runToken !== "string" || attempt?.nodeId !== node.nodeId) continue;
    const cause = `its node ${node.nodeId} stopped heartbeating (last at ${node.lastHeartbeatAt}); the worker is presumed dead`;
    if (await ctx.tokens.fail(runToken, "lost", cause)) {
      reported.push(entry.id);
      logger.warn("attempt reported lost: its node is silent", {
        jobId: entry.id,
        attempt: entry.attempts,
        pool: node.pool,
        nodeId: node.nodeId,
      });
    }
  }
  return reported;
}
