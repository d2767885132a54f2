import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import { logger } from "../app/logger";
import { type ReconcileSummary, reconcile, reconcilerContext } from "../app/reconciler";

/**
 * The reconciler Lambda, every 5 minutes (EventBridge rule): gives every job that lost its
 * execution a new one and proves each node's capacity. Errors are thrown for the alarm; the
 * next run starts over (it is idempotent).
 */
export const handler = middy<unknown, ReconcileSummary>()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .handler(async () => reconcile(reconcilerContext()));
