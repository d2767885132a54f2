import middy from "@middy/core";
import { type ReconcileSummary, reconcile, reconcilerContext } from "../app/reconciler";
import { observability } from "./observability";

// Built at import, Lambda's init: a bad variable fails the cold start, not every run.
const ctx = reconcilerContext();

/**
 * The reconciler Lambda, every 5 minutes (EventBridge rule): gives every job that lost its
 * execution a new one and proves each node's capacity. Errors are thrown for the alarm; the
 * next run starts over (it is idempotent).
 */
export const handler = middy<unknown, ReconcileSummary>()
  .use(observability())
  .handler(async () => reconcile(ctx));
