import { Tracer } from "@aws-lambda-powertools/tracer";

/**
 * X-Ray tracing through Powertools Tracer, one per process, made on first use. Powertools turns
 * it on only where AWS_EXECUTION_ENV is set (a Lambda function) and POWERTOOLS_TRACE_ENABLED is
 * not false: locally and in the tests it is inert (no X-Ray daemon is called, nothing leaves
 * the machine) and the clients below are left as they are.
 */

let current: Tracer | undefined;

export function tracer(): Tracer {
  current ??= new Tracer({ serviceName: "jobq" });
  return current;
}

/**
 * For processes that are not Lambda functions: ECS sets AWS_EXECUTION_ENV too (AWS_ECS_FARGATE),
 * and a worker has no Lambda segment to hang subsegments on, so tracing it would only log
 * "missing segment" errors. Call before the first client is made.
 */
export function disableTracing(): void {
  current = new Tracer({ serviceName: "jobq", enabled: false });
}

/** The AWS SDK v3 client, its calls traced as subsegments when tracing is on. */
export function traced<C>(client: C): C {
  const t = tracer();
  return t.isTracingEnabled() ? t.captureAWSv3Client(client) : client;
}
