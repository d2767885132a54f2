import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import middy from "@middy/core";
import { logger } from "../app/logger";
import { type PoolPassSummary, poolsToSchedule, runScheduler, schedulerContext } from "../app/scheduler";
import { fireDueSchedules, scheduleContext, type TickSummary } from "../app/schedules";

/**
 * Per pool, what the worker pools scale on (lib/worker-pools.ts QUEUED_JOBS_METRIC): jobs are
 * sent to a queue only once a node has room, so queue depth alone could never start a pool
 * that is at zero nodes. Jobs a pass found waiting for capacity are that signal.
 */
const metrics = new Metrics({ namespace: "jobq", serviceName: "jobq" });

function recordPoolMetrics(summary: PoolPassSummary): void {
  if (summary.outcome !== "ran") return;
  const waitingForCapacity = summary.waiting.filter((w) => w.kind === "capacity" || w.kind === "held").length;
  // A single metric is flushed by its addMetric, dimensions and all: one per figure.
  for (const [name, value] of [
    ["QueuedJobs", waitingForCapacity],
    ["AdmittedJobs", summary.admitted.length],
  ] as const) {
    const metric = metrics.singleMetric();
    metric.addDimension("pool", summary.pool);
    metric.addMetric(name, MetricUnit.Count, value);
  }
}

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
 * meet the pass that follows; job events do not look at schedules.
 */
export const handler = middy<unknown, { pools: PoolPassSummary[]; schedules?: TickSummary }>()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .handler(async (event) => {
    const schedules = isTick(event) ? await fireDueSchedules(scheduleContext()) : undefined;
    const ctx = schedulerContext();
    const summaries = await runScheduler(ctx, poolsToSchedule(event, ctx.pools));
    for (const summary of summaries) recordPoolMetrics(summary);
    // The waiting list can be long: the invocation answers with its head.
    return {
      pools: summaries.map((s) => ({ ...s, waiting: s.waiting.slice(0, 20) })),
      ...(schedules ? { schedules } : {}),
    };
  });
