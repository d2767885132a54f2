import middy from "@middy/core";
import { lifecycleContext, lifecycleRequestSchema, runLifecycleStep } from "../app/lifecycle";
import { logger } from "../app/logger";
import { parseRequest } from "../core/validation";
import { observability } from "./observability";

/**
 * The lifecycle Lambda: every Task of state-machines/job-lifecycle.asl.json invokes it with
 * `{"action": ..., ...}`. Errors are thrown, not mapped: the state machine retries the step
 * (every step is idempotent) and, past its retries, the execution fails for the reconciler.
 */

// Built at import, Lambda's init: a bad variable fails the cold start, not every step.
const ctx = lifecycleContext();

export const handler = middy<unknown, unknown>()
  .use(observability())
  .handler(async (event) => {
    const request = parseRequest(lifecycleRequestSchema, event);
    // Every line of the step names its job and attempt; admission and requeue come between
    // attempts, and say so with a null attempt.
    logger.appendKeys({
      jobId: request.jobId,
      attempt: "attempt" in request ? request.attempt : null,
      action: request.action,
    });
    return runLifecycleStep(ctx, request);
  });
