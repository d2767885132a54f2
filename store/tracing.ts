import type { Tracer } from "@aws-lambda-powertools/tracer";

/**
 * X-Ray tracing through Powertools Tracer, one per process, made on first use, and only in a
 * Lambda function with tracing on.
 *
 * Anywhere else the tracer's module is never loaded, not only left off: loading it loads the
 * X-Ray SDK, whose context store (cls-hooked) enables an async hook that tracks every promise of
 * the process until it is collected, whether or not anything is traced. Measured with Node 20,
 * 1,000,000 awaited promises took 59 ms without it and 676 ms with it; the local stack, the tests
 * and the ECS workers are promise-heavy SDK callers that trace nothing.
 */
const powertools = tracingWanted(process.env) ? await import("@aws-lambda-powertools/tracer") : null;

let current: Tracer | null | undefined;

/**
 * Powertools' own rule (Tracer#setTracingEnabled), narrowed to Lambda: on in a Lambda execution
 * environment unless POWERTOOLS_TRACE_ENABLED is false or it is SAM or Amplify's local mock. ECS
 * sets AWS_EXECUTION_ENV too (AWS_ECS_FARGATE, AWS_ECS_EC2), and a worker has no Lambda segment
 * to hang subsegments on: tracing it would only log "missing segment" errors.
 */
export function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  const executionEnv = env.AWS_EXECUTION_ENV ?? "";
  return (
    executionEnv.startsWith("AWS_Lambda_") &&
    executionEnv !== "AWS_Lambda_amplify-mock" &&
    !env.AWS_SAM_LOCAL &&
    env.POWERTOOLS_TRACE_ENABLED?.toLowerCase() !== "false"
  );
}

/** The process's tracer, or null where nothing is traced (see tracingWanted). */
export function tracer(): Tracer | null {
  if (current === undefined) current = powertools ? new powertools.Tracer({ serviceName: "jobq" }) : null;
  return current;
}

/** Switches tracing off for good in this process. Call before the first client is made. */
export function disableTracing(): void {
  current = null;
}

/** The AWS SDK v3 client, its calls traced as subsegments when tracing is on. */
export function traced<C>(client: C): C {
  const t = tracer();
  return t?.isTracingEnabled() ? t.captureAWSv3Client(client) : client;
}
