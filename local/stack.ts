import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { Policy } from "../core/policy";
import { DEFAULT_POOLS, type PoolConfig } from "../core/pools";
import type { Retention } from "../core/retention";
import type { QueueUrls } from "../functions/config";
import { STATS_CONSUMER } from "../functions/stats-settings";
import { setFaultInjection } from "../store/faults";
import { asksDependentsConsumer, isJobItemRecord, schedulerWakeOf } from "../store/job-stream";
import { type ApiServer, startApiServer } from "./api-server";
import {
  type ApiTokens,
  applyHandlerEnvironment,
  applyStreamEnvironment,
  DEFAULT_SWEEP_SECONDS,
  type HandlerEnvironmentInput,
  handlerEnvironment,
  LOCAL_EVENT_BUS,
  LOCAL_REGION,
  LOCAL_STATE_MACHINE_NAME,
  parseApiTokens,
} from "./config";
import { type DynamoLocal, startDynamoLocal } from "./dynamo";
import { type StreamConsumer, type StreamPoller, startStreamPoller } from "./dynamo-streams";
import { type EventTarget, type LocalEventBridge, startLocalEventBridge } from "./eventbridge";
import { invokeHandler, type LambdaHandler, lambdaFunctionArn, loadHandlerExport } from "./lambda";
import { type LocalSqs, startLocalSqs } from "./sqs";
import {
  type LocalStepFunctions,
  loadStateMachineDefinition,
  type StepFunctionsMeter,
  startLocalStepFunctions,
} from "./stepfunctions";
import { ensureTables } from "./tables";
import { type LocalWorkerNode, type LocalWorkers, startLocalWorkers } from "./workers";

/**
 * The whole local system in one call, the same code as in AWS against emulators on loopback:
 * DynamoDB Local and its tables; SQS (fauxqs) with a queue per pool and tier; EventBridge with the
 * scheduler's rule, its sweep and the reconciler's schedule; Step Functions with the lifecycle
 * state machine calling functions/lifecycle.ts in process; the reconciler once, so that every
 * stored job that has not ended gets a live execution (executions are in memory: nothing is lost
 * across a restart); one worker process per configured node; and the HTTP front. `npm start`
 * (local/main.ts) runs it persisted; tests and benchmarks run it in memory on free ports, with
 * `execution: false` for the API alone.
 */

export interface LocalStackOptions {
  /** JOBQ_DATA_DIR: DynamoDB Local persists under `<dataDir>/dynamodb`. @default in memory */
  readonly dataDir?: string;
  /** @default 0 (a free port) */
  readonly port?: number;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** @default the one admin token `local-dev-token` for principal `local` */
  readonly tokens?: ApiTokens;
  /** @default DEFAULT_POOLS */
  readonly pools?: readonly PoolConfig[];
  /** Job types allowed besides the examples. @default any type */
  readonly taskTypes?: readonly string[];
  /** The policy in force until one is PUT to /admin/policy (JOBQ_POLICY). @default core's defaults */
  readonly policy?: Policy;
  /** @default "jobq-" */
  readonly tablePrefix?: string;
  /**
   * A DynamoDB (Local) already running, used instead of starting one (with `dataDir` unset); it
   * is left running by stop(). The integration tests share theirs this way, under their own
   * `tablePrefix`. @default start DynamoDB Local
   */
  readonly dynamoEndpoint?: string;
  /** Access log on stdout, failed executions and deliveries on stderr. @default false */
  readonly log?: boolean;
  /**
   * Run jobs: the emulators, the lifecycle executions, the scheduler, the reconciler and (see
   * `workers`) the workers. false: the API alone; jobs stay as submitted. @default true
   */
  readonly execution?: boolean;
  /** With execution, start one worker process per configured node. @default true */
  readonly workers?: boolean;
  /** The scheduler's sweep (a Scheduled Event). @default DEFAULT_SWEEP_SECONDS (5) */
  readonly sweepSeconds?: number;
  /** The reconciler's schedule, after its run at start. @default 60 */
  readonly reconcileSeconds?: number;
  /** JOBQ_HEARTBEAT_SECONDS. @default LOCAL_HEARTBEAT_SECONDS (10) */
  readonly heartbeatSeconds?: number;
  /** JOBQ_LOST_AFTER_SECONDS. @default LOCAL_LOST_AFTER_SECONDS (90) */
  readonly lostAfterSeconds?: number;
  /** JOBQ_NODE_LOST_SECONDS. @default LOCAL_NODE_LOST_SECONDS (15) */
  readonly nodeLostSeconds?: number;
  /** The workers' prefixed output lines. @default stdout and stderr */
  readonly workerOutput?: (line: string, stream: "stdout" | "stderr") => void;
  /** JOBQ_SHUTDOWN_GRACE_SECONDS of the workers. @default 5 */
  readonly workerShutdownGraceSeconds?: number;
  /** JOBQ_POLL_WAIT_SECONDS of the workers. @default the worker's own */
  readonly workerPollWaitSeconds?: number;
  /**
   * JOBQ_FAULT_THROTTLE_RATE: this share of the handlers' and the workers' AWS SDK requests fail
   * with an injected throttling error (store/faults.ts), for the soak harness. @default 0
   */
  readonly faultThrottleRate?: number;
  /** The dashboard's built files (scripts/build-web.ts), served at `/` and `/assets/*`. @default none */
  readonly webDir?: string;
  /** JOBQ_RETENTION_DAYS / JOBQ_JOB_RETENTION_DAYS (docs/data-model.md#retention). @default DEFAULT_RETENTION */
  readonly retention?: Retention;
}

export interface LocalExecution {
  readonly sqsEndpoint: string;
  readonly sfnEndpoint: string;
  readonly eventsEndpoint: string;
  readonly stateMachineArn: string;
  readonly queues: QueueUrls;
  /** The worker nodes started (none with `workers: false`). */
  readonly workers: readonly LocalWorkerNode[];
  /** What the emulators counted since start, for the benchmark (bench/run.ts). */
  readonly meters: {
    stepFunctions(): StepFunctionsMeter;
    sqsRequests(): Readonly<Record<string, number>>;
    events(): { readonly putEventsCalls: number; readonly entries: number };
  };
}

export interface LocalStack {
  readonly url: string;
  /** WS /jobs/stream on the API's port. */
  readonly streamUrl: string;
  readonly tokens: ApiTokens;
  /** def.id (store/tables.ts) → table name. */
  readonly tables: Readonly<Record<string, string>>;
  readonly dynamoEndpoint: string;
  /** Where jobs run; undefined with `execution: false`. */
  readonly execution: LocalExecution | undefined;
  /**
   * The recovery pass over the jobs a previous run left unfinished, which runs after the API is
   * up; settles when it is done (it never rejects: a failure is logged and the scheduled
   * reconciler tries again).
   */
  readonly recovered: Promise<void>;
  /** Closes the API, stops the workers and the emulators, then DynamoDB Local. Idempotent. */
  stop(): Promise<void>;
}

/** The lifecycle Lambda's name: `${LifecycleFunctionArn}` in the ASL becomes its local ARN. */
export const LIFECYCLE_FUNCTION = "jobq-lifecycle";
const LIFECYCLE_ASL = fileURLToPath(new URL("../state-machines/job-lifecycle.asl.json", import.meta.url));
const DEFAULT_RECONCILE_SECONDS = 60;

/**
 * The consumers of the Jobs table's change stream, as Lambda event source mappings are in AWS:
 * each gets every batch, in order, and retries its own failures (local/dynamo-streams.ts).
 */
export const JOB_STREAM_CONSUMERS: readonly StreamConsumer[] = [
  {
    name: "jobq-stream-broadcaster",
    load: () =>
      loadHandlerExport(() => import("../functions/stream/broadcaster"), "functions/stream/broadcaster.ts"),
    // Job items only, as every consumer's event source in AWS (lib/job-stream-source.ts).
    filter: isJobItemRecord,
  },
  {
    // As its event source in AWS (lib/job-lifecycle.ts), which invokes it only for completions.
    name: "jobq-release-dependents",
    load: () =>
      loadHandlerExport(() => import("../functions/dependents-stream"), "functions/dependents-stream.ts"),
    filter: asksDependentsConsumer,
  },
  {
    name: "jobq-stats",
    load: () => loadHandlerExport(() => import("../functions/stats-stream"), "functions/stats-stream.ts"),
    filter: isJobItemRecord,
    // As its event source in AWS (lib/job-stats.ts): a few transactions per batch, not per job.
    batchSize: STATS_CONSUMER.eventSource.batchSize,
    batchWindowMs: STATS_CONSUMER.eventSource.maxBatchingWindowSeconds * 1000,
  },
];

/**
 * Starts the stack. It sets the handlers' process.env (applyHandlerEnvironment), so run one stack
 * per process: handler modules read their configuration once, on first import.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  // Every job the previous run left was last changed before this instant (see the recovery pass).
  const startedAt = Date.now();
  const tokens = options.tokens ?? parseApiTokens(undefined);
  const runJobs = options.execution ?? true;
  let dynamo: DynamoLocal | undefined;
  let sqs: LocalSqs | undefined;
  let events: LocalEventBridge | undefined;
  let sfn: LocalStepFunctions | undefined;
  let workers: LocalWorkers | undefined;
  let api: ApiServer | undefined;
  let jobStream: StreamPoller | undefined;
  let schedulerWake: StreamConsumer | undefined;
  let recoveryPass: (() => Promise<unknown>) | undefined;
  let recovered: Promise<void> | undefined;
  // A stop ends the recovery pass at its next page: with a shared DynamoDB (the tests, two
  // starts on one data directory) it would otherwise go on writing, and hold a pool's lease,
  // after this stack has stopped.
  const recoveryStop = new AbortController();
  let stopRequested = false;
  const stop = async (): Promise<void> => {
    stopRequested = true;
    // API first: no request may reach a system that is going. Then the recovery pass, which
    // needs Step Functions and DynamoDB. Workers next: they drain and report through Step
    // Functions, whose lifecycle steps need DynamoDB.
    await api?.close();
    recoveryStop.abort();
    await recovered;
    await jobStream?.stop();
    await workers?.stop();
    await events?.stop();
    await sfn?.stop();
    await sqs?.stop();
    await dynamo?.stop();
  };

  try {
    let dynamoEndpoint = options.dynamoEndpoint;
    if (dynamoEndpoint === undefined) {
      dynamo = await startDynamoLocal({
        dataDir: options.dataDir === undefined ? undefined : join(options.dataDir, "dynamodb"),
      });
      dynamoEndpoint = dynamo.endpoint;
    } else if (options.dataDir !== undefined) {
      throw new Error("startLocalStack: give dataDir or dynamoEndpoint, not both");
    }
    const client = new DynamoDBClient({
      endpoint: dynamoEndpoint,
      region: LOCAL_REGION,
      credentials: { accessKeyId: "local", secretAccessKey: "local" },
    });
    let tables: Record<string, string>;
    try {
      tables = await ensureTables(client, options.tablePrefix ?? "jobq-");
    } finally {
      client.destroy();
    }
    const environment: HandlerEnvironmentInput = {
      tables,
      dynamoEndpoint,
      pools: options.pools,
      taskTypes: options.taskTypes,
      policy: options.policy,
      faultThrottleRate: options.faultThrottleRate,
      retention: options.retention,
    };
    // The handlers of this process; the workers get the same rate through their environment.
    if (options.faultThrottleRate) setFaultInjection({ throttleRate: options.faultThrottleRate });

    let execution: LocalExecution | undefined;
    if (runJobs) {
      const pools = environment.pools ?? DEFAULT_POOLS;
      // Handler modules read process.env once, when first imported: no target may import one
      // before applyHandlerEnvironment below has run.
      let environmentApplied: () => void = () => undefined;
      const handlersMayLoad = new Promise<void>((resolve) => {
        environmentApplied = resolve;
      });
      const handler = (
        name: string,
        load: () => Promise<Record<string, unknown>>,
      ): (() => Promise<LambdaHandler>) => {
        let loaded: Promise<LambdaHandler> | undefined;
        return () => {
          loaded ??= handlersMayLoad.then(() => loadHandlerExport(load, name));
          return loaded;
        };
      };
      const lifecycle = handler("functions/lifecycle.ts", () => import("../functions/lifecycle"));
      const scheduler = handler("functions/scheduler.ts", () => import("../functions/scheduler"));
      const reconciler = handler("functions/reconciler.ts", () => import("../functions/reconciler"));
      const target =
        (name: string, load: () => Promise<LambdaHandler>): EventTarget =>
        async (event) =>
          invokeHandler(await load(), name, event, LOCAL_REGION);

      // As the scheduler's event source on the Jobs table's stream in AWS (lib/scheduler.ts).
      schedulerWake = {
        name: "jobq-scheduler",
        load: scheduler,
        filter: (record) => schedulerWakeOf(record) !== null,
      };
      sqs = await startLocalSqs({ pools: pools.map((pool) => pool.name), region: LOCAL_REGION });
      const sweepSeconds = options.sweepSeconds ?? DEFAULT_SWEEP_SECONDS;
      events = await startLocalEventBridge({
        region: LOCAL_REGION,
        log: options.log,
        // jobq's bus, with no rule of jobq's on it: the scheduler's wake-ups ride the Jobs table's
        // stream (schedulerWake), as in AWS; "Job State Change" events are for users' rules.
        buses: [LOCAL_EVENT_BUS],
        rules: [],
        schedules: [
          {
            name: "scheduler-sweep",
            intervalMs: sweepSeconds * 1000,
            target: target("jobq-scheduler", scheduler),
          },
          {
            name: "reconcile",
            intervalMs: (options.reconcileSeconds ?? DEFAULT_RECONCILE_SECONDS) * 1000,
            target: target("jobq-reconciler", reconciler),
          },
        ],
      });
      sfn = await startLocalStepFunctions({
        region: LOCAL_REGION,
        log: options.log,
        sqsEndpoint: sqs.endpoint,
        stateMachines: [
          {
            name: LOCAL_STATE_MACHINE_NAME,
            definition: loadStateMachineDefinition(LIFECYCLE_ASL, {
              LifecycleFunctionArn: lambdaFunctionArn(LIFECYCLE_FUNCTION, LOCAL_REGION),
            }),
          },
        ],
        resolveFunction: (name) => {
          if (name !== LIFECYCLE_FUNCTION) throw new Error(`no local Lambda function named ${name}`);
          return lifecycle();
        },
      });
      const stateMachineArn = sfn.stateMachineArn(LOCAL_STATE_MACHINE_NAME);
      const withExecution: HandlerEnvironmentInput = {
        ...environment,
        execution: {
          sfnEndpoint: sfn.endpoint,
          sqsEndpoint: sqs.endpoint,
          eventsEndpoint: events.endpoint,
          stateMachineArn,
          eventBus: LOCAL_EVENT_BUS,
          queues: sqs.queues,
          heartbeatSeconds: options.heartbeatSeconds,
          lostAfterSeconds: options.lostAfterSeconds,
          nodeLostSeconds: options.nodeLostSeconds,
        },
      };
      applyHandlerEnvironment(withExecution);
      environmentApplied();

      try {
        await handlersMayLoad;
        const { reconcile, reconcilerContext } = await import("../app/reconciler");
        const reconciler = reconcilerContext();
        // Whoever held a pool's lease was this stack's previous process, now gone (a hard kill
        // leaves its leases behind): the pools are this process's to schedule at once.
        await Promise.all(pools.map((pool) => reconciler.nodes.breakLease(pool.name)));
        // Every job that has not ended gets a live execution: at start every execution is gone
        // (they lived in the last process's memory). The use case itself rather than the Lambda,
        // run once the API is up: it restarts one execution per unfinished job, minutes for a few
        // thousand (a restart with 2,460 queued jobs took 5 minutes to answer /health when the
        // API waited for it), and new submissions do not depend on it. The grace period is the
        // time since this process started: every job the last run left is at least that old, so
        // none waits for the reconciler's next run, while a job submitted since, whose execution
        // may be just starting, is left to it.
        recoveryPass = () =>
          reconcile(
            { ...reconciler, tuning: { graceSeconds: (Date.now() - startedAt) / 1000 } },
            { signal: recoveryStop.signal },
          );
      } catch (error) {
        console.error("jobq: the reconciler failed at start; it runs again on its schedule", error);
      }
      if (options.workers ?? true) {
        workers = startLocalWorkers({
          pools,
          env: handlerEnvironment(withExecution),
          output: options.workerOutput,
          shutdownGraceSeconds: options.workerShutdownGraceSeconds,
          pollWaitSeconds: options.workerPollWaitSeconds,
        });
      }
      execution = {
        sqsEndpoint: sqs.endpoint,
        sfnEndpoint: sfn.endpoint,
        eventsEndpoint: events.endpoint,
        stateMachineArn,
        queues: sqs.queues,
        workers: workers?.nodes ?? [],
        meters: {
          stepFunctions: sfn.meter,
          sqsRequests: sqs.requests,
          events: events.meter,
        },
      };
    } else {
      applyHandlerEnvironment(environment);
    }
    api = await startApiServer({
      port: options.port ?? 0,
      host: options.host,
      tokens,
      log: options.log,
      webDir: options.webDir,
      // A submission's wake-up then reaches the scheduler without waiting out the idle poll.
      onWrite: () => jobStream?.poll(),
    });
    // No await between the server listening and this: no request can read the variables before.
    applyStreamEnvironment({ streamUrl: api.streamUrl, managementEndpoint: api.managementUrl });
    jobStream = await startStreamPoller({
      endpoint: dynamoEndpoint,
      region: LOCAL_REGION,
      tableName: tables.Jobs ?? "",
      consumers: schedulerWake ? [...JOB_STREAM_CONSUMERS, schedulerWake] : JOB_STREAM_CONSUMERS,
    });
    recovered = (recoveryPass?.() ?? Promise.resolve()).then(
      () => undefined,
      (error: unknown) => {
        // A stop ends the pass (or takes DynamoDB away under it); the next start runs it again.
        if (!stopRequested) {
          console.error("jobq: the reconciler failed at start; it runs again on its schedule", error);
        }
      },
    );

    let stopping: Promise<void> | undefined;
    return {
      url: api.url,
      streamUrl: api.streamUrl,
      tokens,
      tables,
      dynamoEndpoint,
      execution,
      recovered,
      stop: () => {
        stopping ??= stop();
        return stopping;
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
