import { resolve } from "node:path";
import { ensureWebBuild } from "../scripts/build-web";
import { injectedFaults } from "../store/faults";
import { type LocalConfig, LocalConfigError, readLocalConfig } from "./config";
import { DynamoLocalStartError } from "./dynamo";
import { type LocalStack, startLocalStack } from "./stack";
import { LocalStepFunctionsError } from "./stepfunctions";
import { TableSchemaMismatchError } from "./tables";

/**
 * `npm start`: the whole of jobq on this machine, state persisted under JOBQ_DATA_DIR: the API,
 * the emulators, the lifecycle executions, the scheduler, the reconciler and one worker process
 * per configured node. Ctrl-C (or SIGTERM) closes the API, drains the workers, stops the
 * emulators and DynamoDB Local and exits 0; a second one forces exit.
 */

async function main(): Promise<void> {
  const config = readLocalConfig();
  const dataDir = resolve(config.dataDir);
  // Cached: only the first start (or one after the dashboard's sources changed) builds it.
  const webDir = await ensureWebBuild({ log: true });
  const stack = await startLocalStack({
    dataDir,
    port: config.port,
    host: config.host,
    tokens: config.tokens,
    pools: config.pools,
    taskTypes: config.taskTypes,
    policy: config.policy,
    sweepSeconds: config.sweepSeconds,
    faultThrottleRate: config.faultThrottleRate,
    retention: config.retention,
    log: true,
    webDir,
  });
  stopOnSignals(stack, config.faultThrottleRate > 0);
  process.stdout.write(banner(stack, config, dataDir));
}

function stopOnSignals(stack: LocalStack, faults: boolean): void {
  let stoppingSince: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppingSince !== undefined) {
      // Under `npm start` one Ctrl-C can arrive twice: from the terminal to the whole process
      // group, and relayed by tsx's wrapper when it does not see this process take it in time.
      if (Date.now() - stoppingSince < 1_000) return;
      process.stderr.write(`${signal} again: exiting without waiting\n`);
      process.exit(1);
    }
    stoppingSince = Date.now();
    process.stdout.write(`\n${signal}: stopping the API, the workers, the emulators and DynamoDB Local…\n`);
    stack.stop().then(
      () => {
        // The soak harness adds this line to the workers' own to report the faults injected.
        if (faults) process.stdout.write(`faults injected: ${JSON.stringify(injectedFaults())}\n`);
        process.exit(0);
      },
      (error: unknown) => {
        console.error("jobq: stopping failed", error);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // A closed terminal: the workers, in their own process groups, would not hear of it.
  process.on("SIGHUP", onSignal);
}

function banner(stack: LocalStack, config: LocalConfig, dataDir: string): string {
  // A wildcard bind is reachable on loopback; print an address curl can use.
  const url = stack.url.replace(/\/\/(0\.0\.0\.0|\[::\])(?=:)/, "//127.0.0.1");
  const [exampleToken] = stack.tokens.keys();
  const tokenLines = [...stack.tokens].map(
    ([token, { principal, role }]) => `    ${token}  →  ${principal}${role === "user" ? "" : ` (${role})`}`,
  );
  const execution = stack.execution;
  const workerLines = execution
    ? config.pools.map((pool) => {
        const names = execution.workers.filter((w) => w.pool === pool.name).map((w) => w.name);
        return `    ${pool.name}: ${names.length > 0 ? names.join(", ") : "no nodes"} (each ${pool.node.cpu} CPU, ${pool.node.memoryMb} MB, ${pool.node.gpu} GPU)`;
      })
    : [];
  const lines = [
    "",
    `jobq is running at ${url}  (the dashboard: ${url}/)`,
    `  data:    ${dataDir} (DynamoDB Local at ${stack.dynamoEndpoint})`,
    `  stream:  ${stack.streamUrl.replace(/\/\/(0\.0\.0\.0|\[::\])(?=:)/, "//127.0.0.1")} (WS /jobs/stream, docs/stream.md)`,
    ...(execution
      ? [
          `  jobs run: Step Functions ${execution.sfnEndpoint}, SQS ${execution.sqsEndpoint}, EventBridge ${execution.eventsEndpoint}`,
          `           scheduler sweep every ${config.sweepSeconds} s (JOBQ_SWEEP_SECONDS) and on every job event`,
          "  workers (one process per node, output prefixed [worker <node>]):",
          ...workerLines,
        ]
      : []),
    ...(config.faultThrottleRate > 0
      ? [
          `  faults:  ${config.faultThrottleRate * 100} % of AWS SDK requests throttled (JOBQ_FAULT_THROTTLE_RATE)`,
        ]
      : []),
    `  types:   ${config.taskTypes === undefined ? "any" : "the configured ones plus echo, sleep, flaky, fail, log"}`,
    "  tokens (Authorization: Bearer <token>):",
    ...tokenLines,
    "",
    "Try:",
    `  curl -s ${url}/health`,
    ...(exampleToken === undefined
      ? []
      : [
          `  export JOBQ=${url} AUTH='Authorization: Bearer ${exampleToken}'`,
          `  curl -s -X POST $JOBQ/jobs -H "$AUTH" -H 'Content-Type: application/json' \\`,
          `    -d '{"type": "echo", "payload": {"hello": "world"}}'`,
          "  # a DAG: b and c wait on a, d waits on both",
          `  curl -s -X POST $JOBQ/jobs/batch -H "$AUTH" -H 'Content-Type: application/json' -d '{"jobs": [`,
          `    {"ref": "a", "type": "echo"},`,
          `    {"ref": "b", "type": "sleep", "payload": {"seconds": 1}, "dependsOn": ["a"]},`,
          `    {"ref": "c", "type": "log", "payload": {"lines": 3}, "dependsOn": ["a"]},`,
          `    {"ref": "d", "type": "echo", "dependsOn": ["b", "c"]}]}'`,
          `  curl -s "$JOBQ/jobs?limit=10" -H "$AUTH"`,
        ]),
    "",
    "Ctrl-C stops it; the data stays, and every job that had not ended goes on at the next start.",
    "",
  ];
  return `${lines.join("\n")}\n`;
}

main().catch((error: unknown) => {
  if (
    error instanceof LocalConfigError ||
    error instanceof DynamoLocalStartError ||
    error instanceof LocalStepFunctionsError ||
    error instanceof TableSchemaMismatchError
  ) {
    process.stderr.write(`jobq: ${error.message}\n`);
  } else {
    console.error("jobq: could not start", error);
  }
  process.exit(1);
});
