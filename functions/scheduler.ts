import middy from "@middy/core";
import type { DynamoDBRecord } from "aws-lambda";
import { type PoolPassSummary, poolsToSchedule, runScheduler, schedulerContext } from "../app/scheduler";
import { fireDueSchedules, scheduleContext, type TickSummary } from "../app/schedules";
import { schedulerWakeOf } from "../store/job-stream";
import { observability } from "./observability";

/** The minutely tick (locally: the sweep), as EventBridge delivers a rule's schedule. */
function isTick(event: unknown): boolean {
  return (
    typeof event === "object" &&
    event !== null &&
    (event as Record<string, unknown>)["detail-type"] === "Scheduled Event"
  );
}

/** The records of a Jobs table stream batch, or null for any other event. */
function streamRecords(event: unknown): readonly DynamoDBRecord[] | null {
  if (typeof event !== "object" || event === null) return null;
  const records = (event as Record<string, unknown>).Records;
  return Array.isArray(records) ? (records as DynamoDBRecord[]) : null;
}

/** The pools a stream batch asks passes of: every pool a record woke (all of them for a job of none). */
function poolsWoken(records: readonly DynamoDBRecord[], pools: readonly string[]): string[] {
  const woken = new Set<string>();
  for (const record of records) {
    const wake = schedulerWakeOf(record);
    if (!wake) continue;
    if (wake.pool === null || !pools.includes(wake.pool)) return [...pools];
    woken.add(wake.pool);
  }
  return pools.filter((p) => woken.has(p));
}

// Built at import, Lambda's init: a bad variable fails the cold start, not every pass.
const schedules = scheduleContext();
const ctx = schedulerContext();

/**
 * The scheduler Lambda. EventBridge invokes it every minute (a Scheduled Event: every pool), and
 * the Jobs table's stream with the writes that add work or free capacity (a job became queued, or
 * gave up its reservation: the job's pool, or every pool for a job that named none). A "Job State
 * Change" event, should a rule still deliver one, wakes the event's pool. Errors are thrown: the next event or sweep runs a fresh pass.
 * The tick first fires the recurring schedules that are due (app/schedules.ts), so their jobs
 * meet the pass that follows; job events do not look at schedules. The passes write their own
 * metrics (app/scheduler.ts recordPassMetrics), QueuedJobs among them: what the worker pools
 * scale on (lib/worker-pools.ts QUEUED_JOBS_METRIC).
 */
export const handler = middy<unknown, { pools: PoolPassSummary[]; schedules?: TickSummary }>()
  .use(observability())
  .handler(async (event) => {
    const fired = isTick(event) ? await fireDueSchedules(schedules) : undefined;
    const records = streamRecords(event);
    const pools = records
      ? poolsWoken(
          records,
          ctx.pools.map((p) => p.name),
        )
      : poolsToSchedule(event, ctx.pools);
    const summaries = await runScheduler(ctx, pools);
    // The waiting list can be long: the invocation answers with its head.
    return {
      pools: summaries.map((s) => ({ ...s, waiting: s.waiting.slice(0, 20) })),
      ...(fired ? { schedules: fired } : {}),
    };
  });
