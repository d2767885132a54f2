import { SQSClient } from "@aws-sdk/client-sqs";
import { createEventBridgeClient, EventBridgePublisher } from "../app/events";
import { createSfnClient } from "../app/executions";
import { logger } from "../app/logger";
import { awsClientOptions } from "../store/aws";
import { capacityMeter, createDocumentClient } from "../store/dynamo";
import { injectedFaults, installFaultInjection, setFaultInjection } from "../store/faults";
import { JobRepository } from "../store/job-repository";
import { NodeRepository } from "../store/nodes";
import { disableTracing } from "../store/tracing";
import { UsageRepository } from "../store/usage";
import { detectCapacity } from "./capacity";
import { readWorkerConfig } from "./config";
import { loadTaskModules, TaskRegistry } from "./registry";
import { Worker, type WorkerLogger } from "./runtime";
import { registerExampleTasks } from "./tasks/examples";

/**
 * The worker process: an ECS task in AWS (worker/Dockerfile), a child process per configured
 * node locally (environment in worker/config.ts). SIGTERM or SIGINT drains the node and exits 0;
 * a second signal exits at once. An admin's drain (POST /pools/{pool}/nodes/{id}/drain, noticed on
 * a node heartbeat) takes the same path without a time limit: running attempts finish, each by
 * its own timeout at the latest, then the node deregisters and the process exits 0. A signal
 * during that drain cuts it to the usual grace. Locally, spawn `node_modules/.bin/tsx worker/main.ts` (or
 * `node --import tsx worker/main.ts`), not `npx tsx …`: npx does not pass SIGTERM on, so the
 * worker would neither drain nor exit with its parent.
 */

async function main(): Promise<void> {
  // A worker is no Lambda function: no segment to trace into (store/tracing.ts).
  disableTracing();
  const config = readWorkerConfig();
  const shared = config.shared;
  const log = logger.createChild({ serviceName: "jobq-worker" });
  log.appendKeys({ pool: config.pool, workerId: config.workerId });
  const workerLog: WorkerLogger = {
    debug: (message, extra) => log.debug(message, extra ?? {}),
    info: (message, extra) => log.info(message, extra ?? {}),
    warn: (message, extra) => log.warn(message, extra ?? {}),
    error: (message, extra) => log.error(message, extra ?? {}),
  };

  const capacity = await detectCapacity(config.capacityOverride);
  log.info("node capacity", { capacity });
  const registry = registerExampleTasks(new TaskRegistry());
  const loaded = await loadTaskModules(registry, config.taskModules);
  if (loaded.length > 0) log.info("task modules loaded", { types: loaded });

  // Before the first request: the soak harness's throttling (store/faults.ts), 0 unless the local
  // stack was started with JOBQ_FAULT_THROTTLE_RATE.
  if (config.faultThrottleRate > 0) setFaultInjection({ throttleRate: config.faultThrottleRate });
  const db = createDocumentClient({ region: shared.region, endpoint: shared.dynamoEndpoint });
  const sqs = new SQSClient(awsClientOptions(shared.sqsEndpoint, shared.region));
  installFaultInjection(sqs.middlewareStack, "sqs", shared.sqsEndpoint);
  const sfn = createSfnClient({ region: shared.region, endpoint: shared.sfnEndpoint });
  const eventBridge = createEventBridgeClient({ region: shared.region, endpoint: shared.eventsEndpoint });
  const worker = new Worker(
    {
      pool: config.pool,
      nodeName: config.nodeName,
      workerId: config.workerId,
      capacity,
      queues: shared.queues[config.pool] ?? {},
      heartbeatSeconds: shared.heartbeatSeconds,
      nodeHeartbeatMs: config.nodeHeartbeatMs,
      pollWaitSeconds: config.pollWaitSeconds,
      nodesTable: shared.nodesTable,
      shutdownGraceMs: config.shutdownGraceMs,
      onDrainRequested: () => {
        log.info("draining: the node was drained through the API");
        exitAfter(worker.stop(Number.POSITIVE_INFINITY));
      },
    },
    {
      repo: new JobRepository(db, shared.jobsTable, shared.retention),
      nodes: new NodeRepository(db, shared.nodesTable),
      sqs,
      sfn,
      events: new EventBridgePublisher(eventBridge, shared.eventBus, shared.stateChangeEvents),
      usage: new UsageRepository(db, shared.policyTable),
      registry,
      log: workerLog,
    },
  );

  let exiting = false;
  // One exit for every drain, whoever started it: the worker's stop() answers the same drain.
  const exitAfter = (drained: Promise<void>) => {
    if (exiting) return;
    exiting = true;
    drained
      .then(() => {
        // What this node cost in DynamoDB over its life; bench/run.ts adds it to the control plane's.
        log.info("capacity consumed", { capacity: capacityMeter.snapshot() });
        // What the soak harness sums up from every process's output.
        if (config.faultThrottleRate > 0) log.info("faults injected", { faults: injectedFaults() });
        for (const client of [db, sqs, sfn, eventBridge]) client.destroy();
        process.exit(0);
      })
      .catch((error: unknown) => {
        log.error("drain failed", { error: error as Error });
        process.exit(1);
      });
  };
  let signalled = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn("second signal: exiting without draining", { signal });
      process.exit(1);
    }
    signalled = true;
    log.info("draining on signal", { signal });
    exitAfter(worker.stop(config.shutdownGraceMs));
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  // A bug in a task that escapes its promise (a timer callback throwing) must not kill the node.
  process.on("uncaughtException", (error) => log.error("uncaught exception in a task", { error }));
  process.on("unhandledRejection", (reason) =>
    log.error("unhandled rejection in a task", { error: reason instanceof Error ? reason : String(reason) }),
  );

  await worker.start();
}

main().catch((error: unknown) => {
  // Start-up failures (configuration, capacity, task modules, registration) say why and exit 1.
  console.error(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
  process.exit(1);
});
