import middy from "@middy/core";
import { createSfnClient } from "../app/executions";
import {
  type LifecycleContext,
  lifecycleRequestSchema,
  runLifecycleStep,
  StepFunctionsTaskTokens,
} from "../app/lifecycle";
import { logger } from "../app/logger";
import { appContext } from "../app/runtime";
import { parseRequest } from "../core/validation";
import { config } from "./config";
import { observability } from "./observability";

/**
 * The lifecycle Lambda: every Task of state-machines/job-lifecycle.asl.json invokes it with
 * `{"action": ..., ...}`. Errors are thrown, not mapped: the state machine retries the step
 * (every step is idempotent) and, past its retries, the execution fails for the reconciler.
 */

let context: LifecycleContext | undefined;

function lifecycleContext(): LifecycleContext {
  if (!context) {
    const c = config();
    context = {
      ...appContext(),
      tokens: new StepFunctionsTaskTokens(createSfnClient({ region: c.region, endpoint: c.sfnEndpoint })),
    };
  }
  return context;
}

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
    return runLifecycleStep(lifecycleContext(), request);
  });
