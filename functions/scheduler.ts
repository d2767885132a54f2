import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import { logger } from "../app/logger";
import { type PoolPassSummary, poolsToSchedule, runScheduler, schedulerContext } from "../app/scheduler";

/**
 * The scheduler Lambda. EventBridge invokes it every minute (a Scheduled Event: every pool) and
 * on "Job State Change" events that add work or free capacity (the event's pool, or every pool
 * for a job that named none). Errors are thrown: the next event or sweep runs a fresh pass.
 */
export const handler = middy<unknown, { pools: PoolPassSummary[] }>()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .handler(async (event) => {
    const ctx = schedulerContext();
    const summaries = await runScheduler(ctx, poolsToSchedule(event, ctx.pools));
    // The waiting list can be long: the invocation answers with its head.
    return { pools: summaries.map((s) => ({ ...s, waiting: s.waiting.slice(0, 20) })) };
  });
