import { Duration, RemovalPolicy } from "aws-cdk-lib";
import type * as events from "aws-cdk-lib/aws-events";
import * as lambda from "aws-cdk-lib/aws-lambda";
import * as nodejs from "aws-cdk-lib/aws-lambda-nodejs";
import * as logs from "aws-cdk-lib/aws-logs";
import type { Construct } from "constructs";
import type { PoolConfig } from "../core/pools";
import { DEFAULT_RETENTION_DAYS } from "../core/retention";
import { RUNTIME_LIMITS } from "../core/runtime-limits";
import type { JobQueues } from "./job-queues";
import type { JobStore } from "./job-store";
import { corePool } from "./pool-settings";
import { checkNumber } from "./validate-props";

/**
 * Bundled here with the local esbuild (no Docker). ESM with a `require` shim because some
 * dependencies still `require` Node built-ins; the AWS SDK is bundled too, so what runs in Lambda
 * is the SDK version the tests ran, not whatever the runtime ships.
 */
export const BUNDLING: nodejs.BundlingOptions = {
  forceDockerBundling: false,
  format: nodejs.OutputFormat.ESM,
  target: "node22",
  minify: true,
  sourceMap: true,
  sourcesContent: false,
  mainFields: ["module", "main"],
  externalModules: [],
  banner:
    "import { createRequire as __jobqCreateRequire } from 'node:module'; const require = __jobqCreateRequire(import.meta.url);",
};

export interface JobqFunctionProps {
  /** The module exporting `handler`. */
  readonly entry: string;
  /** Added to the variables every jobq function gets (service name, source maps). */
  readonly environment?: Readonly<Record<string, string>>;
  /** @default 512 */
  readonly memorySize?: number;
  /** @default Duration.seconds(10) */
  readonly timeout?: Duration;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
  /**
   * Retries of an asynchronous invocation (EventBridge targets) after a failure.
   * @default - Lambda's default (2)
   */
  readonly retryAttempts?: number;
  readonly description?: string;
}

/**
 * A jobq Lambda function: nodejs22.x on arm64, active tracing, its own log group (`<id>Logs`,
 * beside the function) and the shared bundling. Every function of the stack is made here, so
 * they cannot drift apart.
 */
export function jobqFunction(scope: Construct, id: string, props: JobqFunctionProps): nodejs.NodejsFunction {
  // An explicit group: retention without the LogRetention custom resource (another Lambda).
  const logGroup = new logs.LogGroup(scope, `${id}Logs`, {
    retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
    removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
  });
  return new nodejs.NodejsFunction(scope, id, {
    entry: props.entry,
    handler: "handler",
    description: props.description,
    runtime: lambda.Runtime.NODEJS_22_X,
    architecture: lambda.Architecture.ARM_64,
    memorySize: props.memorySize ?? 512,
    timeout: props.timeout ?? Duration.seconds(10),
    tracing: lambda.Tracing.ACTIVE,
    retryAttempts: props.retryAttempts,
    logGroup,
    environment: {
      POWERTOOLS_SERVICE_NAME: "jobq",
      // Powertools Metrics' namespace (the scheduler's QueuedJobs, lib/worker-pools.ts).
      POWERTOOLS_METRICS_NAMESPACE: "jobq",
      // Powertools Tracer would otherwise copy every handler's response into its trace segment:
      // job payloads and results, and the secret POST /admin/tokens shows once. Errors still are.
      POWERTOOLS_TRACER_CAPTURE_RESPONSE: "false",
      NODE_OPTIONS: "--enable-source-maps",
      ...props.environment,
    },
    bundling: BUNDLING,
  });
}

/** What every jobq process (function or worker) is configured with: functions/config.ts's variables. */
export interface JobqRuntime {
  /** The tables; each construct grants its functions exactly their actions on them (grantJobs, …). */
  readonly store: JobStore;
  /** Carries the "Job State Change" events. */
  readonly eventBus: events.IEventBus;
  readonly queues: JobQueues;
  readonly pools: readonly PoolConfig[];
  /** @default - any job type is accepted */
  readonly taskTypes?: readonly string[];
  /**
   * Workers heartbeat a running attempt every third of this (JOBQ_HEARTBEAT_SECONDS); 2 to 3,600.
   * @default 30
   */
  readonly heartbeatSeconds?: number;
  /**
   * Step Functions declares an attempt lost after this long without a heartbeat, queue wait
   * included (JOBQ_LOST_AFTER_SECONDS); a dead worker is found sooner, by its node going silent.
   * 10 to 86,400.
   * @default 300
   */
  readonly lostAfterSeconds?: number;
  /**
   * A node silent for this long is lost (JOBQ_NODE_LOST_SECONDS); 2 to 3,600.
   * @default 30
   */
  readonly nodeLostSeconds?: number;
  /**
   * Days an ended job's transitions, logs, attempts and result are kept (JOBQ_RETENTION_DAYS);
   * 1 to 36,500.
   * @default 90
   */
  readonly retentionDays?: number;
  /**
   * Days an ended job itself is kept (JOBQ_JOB_RETENTION_DAYS); 1 to 36,500.
   * @default - kept for good
   */
  readonly jobRetentionDays?: number;
  /**
   * Which "Job State Change" events are published (JOBQ_STATE_CHANGE_EVENTS): every status
   * change, or only changes into completed, failed, cancelled and escalated.
   * @default "all"
   */
  readonly stateChangeEvents?: "all" | "terminal";
}

/**
 * The variables of functions/config.ts for one deployment. Every process gets the same set, so
 * the scheduler, the lifecycle, the API and the workers agree on tables, queues and timings; IAM,
 * not the environment, limits what each may do with them.
 */
export function runtimeEnvironment(runtime: JobqRuntime, stateMachineArn: string): Record<string, string> {
  return {
    JOBQ_JOBS_TABLE: runtime.store.jobsTable.tableName,
    JOBQ_NODES_TABLE: runtime.store.nodesTable.tableName,
    JOBQ_POLICY_TABLE: runtime.store.policyTable.tableName,
    // Without the CDK-only `ecs` settings: core's pool schema is strict and would refuse them.
    JOBQ_POOLS: JSON.stringify(runtime.pools.map(corePool)),
    JOBQ_TASK_TYPES: JSON.stringify(runtime.taskTypes ?? []),
    JOBQ_EVENT_BUS: runtime.eventBus.eventBusName,
    JOBQ_QUEUES: runtime.queues.queueUrlsJson(),
    JOBQ_STATE_MACHINE_ARN: stateMachineArn,
    JOBQ_HEARTBEAT_SECONDS: String(runtime.heartbeatSeconds ?? 30),
    JOBQ_LOST_AFTER_SECONDS: String(runtime.lostAfterSeconds ?? 300),
    JOBQ_NODE_LOST_SECONDS: String(runtime.nodeLostSeconds ?? 30),
    JOBQ_RETENTION_DAYS: String(runtime.retentionDays ?? DEFAULT_RETENTION_DAYS),
    ...(runtime.jobRetentionDays === undefined
      ? {}
      : { JOBQ_JOB_RETENTION_DAYS: String(runtime.jobRetentionDays) }),
    JOBQ_STATE_CHANGE_EVENTS: runtime.stateChangeEvents ?? "all",
  };
}

/** The runtime settings that have limits (all optional: their defaults are within them). */
export type RuntimeSettings = Pick<
  JobqRuntime,
  "heartbeatSeconds" | "lostAfterSeconds" | "nodeLostSeconds" | "retentionDays" | "jobRetentionDays"
>;

/**
 * The documented limits of the runtime settings, checked at synth: core/runtime-limits.ts, the
 * bounds the processes' configuration (app/config.ts) enforces at cold start, where a bad value
 * would fail every function's init after the deploy instead of the synth before it.
 */
export function validateRuntimeProps(scope: Construct, runtime: RuntimeSettings): void {
  for (const prop of Object.keys(RUNTIME_LIMITS) as (keyof typeof RUNTIME_LIMITS)[]) {
    const days = prop.endsWith("Days");
    checkNumber(scope, prop, runtime[prop], {
      ...RUNTIME_LIMITS[prop],
      integer: true,
      unit: days ? " days" : " s",
      why: days
        ? "DynamoDB's TTL counts whole days here; app/config.ts accepts no other"
        : "what app/config.ts accepts",
    });
  }
}
