import type { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { captureLambdaHandler } from "@aws-lambda-powertools/tracer/middleware";
import { logger as appLogger } from "../app/logger";
import { tracer } from "../store/tracing";

/**
 * The middy middleware every jobq Lambda handler runs in, so each gets the same observability:
 * the X-Ray segment of the invocation (Powertools Tracer; not even loaded outside Lambda, see
 * store/tracing.ts), then the Lambda context on every log line with the keys of the previous
 * invocation dropped. Metrics need no flush here: app/metrics.ts writes each EMF line at once.
 */
export function observability(log: Logger = appLogger) {
  const traces = tracer();
  return [...(traces ? [captureLambdaHandler(traces)] : []), injectLambdaContext(log, { resetKeys: true })];
}
