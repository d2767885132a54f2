import middy from "@middy/core";
import { type ReconcileSummary, reconcile, reconcilerContext } from "../app/reconciler";
import { observability } from "./observability";

/**
 * The reconciler Lambda, every 5 minutes (EventBridge rule): gives every job that lost its
 * execution a new one and proves each node's capacity. Errors are thrown for the alarm; the
 * next run starts over (it is idempotent).
 */
export const handler = middy<unknown, ReconcileSummary>()
  .use(observability())
  .handler(async () => reconcile(reconcilerContext()));
