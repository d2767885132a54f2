import middy from "@middy/core";
import { type PoolPassSummary, poolsToSchedule, runScheduler, schedulerContext } from "../app/scheduler";
import { fireDueSchedules, scheduleContext, type TickSummary } from "../app/schedules";
import { observability } from "./observability";

/** The minutely tick (locally: the sweep), as EventBridge delivers a rule's schedule. */
function isTick(event: unknown): boolean {
  return (
    typeof event === "object" &&
    event !== null &&
    (event as Record<string, unknown>)["detail-type"] === "Scheduled Event"
  );
}

/**
 * The scheduler Lambda. EventBridge invokes it every minute (a Scheduled Event: every pool) and
 * on "Job State Change" events that add work or free capacity (the event's pool, or every pool
 * for a job that named none). Errors are thrown: the next event or sweep runs a fresh pass.
 * The tick first fires the recurring schedules that are due (app/schedules.ts), so their jobs
 * meet the pass that follows; job events do not look at schedules. The passes write their own
 * metrics (app/scheduler.ts recordPassMetrics), QueuedJobs among them: what the worker pools
 * scale on (lib/worker-pools.ts QUEUED_JOBS_METRIC).
 */
export const handler = middy<unknown, { pools: PoolPassSummary[]; schedules?: TickSummary }>()
  .use(observability())
  .handler(async (event) => {
    const schedules = isTick(event) ? await fireDueSchedules(scheduleContext()) : undefined;
    const ctx = schedulerContext();
    const summaries = await runScheduler(ctx, poolsToSchedule(event, ctx.pools));
    // The waiting list can be long: the invocation answers with its head.
    return {
      pools: summaries.map((s) => ({ ...s, waiting: s.waiting.slice(0, 20) })),
      ...(schedules ? { schedules } : {}),
    };
  });
