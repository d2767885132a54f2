import { forEachConcurrent } from "../core/concurrency";
import { InvalidTransitionError, NotFoundError } from "../core/errors";
import type { BulkCancelRequest, BulkResult, BulkRetryRequest, Job } from "../core/job";
import type { Principal } from "../core/principal";
import { type ActionContext, cancelJob } from "./actions";
import { listJobs } from "./queries";
import { type RetryContext, retryJob } from "./retry";

/**
 * POST /jobs/cancel and POST /jobs/retry: act on one page of the caller's jobs that match GET
 * /jobs's filters (admins: anyone's) — Slurm's `scancel -u`, BullMQ's `retryJobs`. The page is
 * GET /jobs's own (same filters, same cursor), so a client walks the matches with `nextCursor`
 * exactly as it lists them. Each job is acted on alone, at least once safe: a job already
 * cancelled (or no longer retryable) is reported in `skipped` with the reason, never an error.
 */

/** Jobs acted on at once: enough to hide latency, few enough not to throttle a partition. */
const CONCURRENCY = 4;

export async function cancelJobs(
  ctx: ActionContext,
  principal: Principal,
  request: BulkCancelRequest,
): Promise<BulkResult> {
  return actOnPage(ctx, principal, request, (job) => cancelJob(ctx, principal, job.id));
}

export async function retryJobs(
  ctx: ActionContext & RetryContext,
  principal: Principal,
  request: BulkRetryRequest,
): Promise<BulkResult> {
  return actOnPage(ctx, principal, request, (job) =>
    retryJob(ctx, principal, job.id, {
      ...(request.maxAttempts !== undefined ? { maxAttempts: request.maxAttempts } : {}),
      dependents: request.dependents,
    }),
  );
}

async function actOnPage(
  ctx: ActionContext,
  principal: Principal,
  request: BulkCancelRequest,
  act: (job: Job) => Promise<unknown>,
): Promise<BulkResult> {
  const page = await listJobs(ctx, principal, {
    ...request.filter,
    limit: request.limit,
    ...(request.cursor !== undefined ? { cursor: request.cursor } : {}),
  });
  const outcomes = new Map<string, string | null>();
  await forEachConcurrent(page.items, CONCURRENCY, async (job) => {
    try {
      await act(job);
      outcomes.set(job.id, null);
    } catch (error) {
      // Refused (not in a status the action applies to) or gone since the list read it.
      if (!(error instanceof InvalidTransitionError || error instanceof NotFoundError)) throw error;
      outcomes.set(job.id, error.message);
    }
  });
  const acted: string[] = [];
  const skipped: { id: string; reason: string }[] = [];
  // In the list's order (newest first), whatever order the workers finished in.
  for (const job of page.items) {
    const reason = outcomes.get(job.id);
    if (reason === null) acted.push(job.id);
    else if (reason !== undefined) skipped.push({ id: job.id, reason });
  }
  return { acted, skipped, nextCursor: page.nextCursor };
}
