import { resolve } from "node:path";
import { type LocalConfig, LocalConfigError, readLocalConfig } from "./config";
import { DynamoLocalStartError } from "./dynamo";
import { type LocalStack, startLocalStack } from "./stack";
import { TableSchemaMismatchError } from "./tables";

/**
 * `npm start`: the whole of jobq on this machine, state persisted under JOBQ_DATA_DIR.
 * Ctrl-C (or SIGTERM) closes the API, stops DynamoDB Local and exits 0; a second one forces exit.
 */

async function main(): Promise<void> {
  const config = readLocalConfig();
  const dataDir = resolve(config.dataDir);
  const stack = await startLocalStack({
    dataDir,
    port: config.port,
    host: config.host,
    tokens: config.tokens,
    pools: config.pools,
    taskTypes: config.taskTypes,
    log: true,
  });
  stopOnSignals(stack);
  process.stdout.write(banner(stack, config, dataDir));
}

function stopOnSignals(stack: LocalStack): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`${signal} again: exiting without waiting\n`);
      process.exit(1);
    }
    stopping = true;
    process.stdout.write(`\n${signal}: stopping the API and DynamoDB Local…\n`);
    stack.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error("jobq: stopping failed", error);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

function banner(stack: LocalStack, config: LocalConfig, dataDir: string): string {
  // A wildcard bind is reachable on loopback; print an address curl can use.
  const url = stack.url.replace(/\/\/(0\.0\.0\.0|\[::\])(?=:)/, "//127.0.0.1");
  const [exampleToken] = stack.tokens.keys();
  const tokenLines = [...stack.tokens].map(
    ([token, { principal, role }]) => `    ${token}  →  ${principal}${role === "admin" ? " (admin)" : ""}`,
  );
  const lines = [
    "",
    `jobq is running at ${url}`,
    `  data:    ${dataDir} (DynamoDB Local at ${stack.dynamoEndpoint})`,
    `  pools:   ${config.pools.map((pool) => `${pool.name} (${pool.nodes} × ${pool.node.cpu} CPU, ${pool.node.memoryMb} MB, ${pool.node.gpu} GPU)`).join(", ")}`,
    `  types:   ${config.taskTypes === undefined ? "any" : "the configured ones plus echo, sleep, flaky, fail, log"}`,
    "  tokens (Authorization: Bearer <token>):",
    ...tokenLines,
    "",
    "Try:",
    `  curl -s ${url}/health`,
    ...(exampleToken === undefined
      ? []
      : [
          `  curl -s -X POST ${url}/jobs -H 'Authorization: Bearer ${exampleToken}' \\`,
          `    -H 'Content-Type: application/json' -d '{"type": "echo", "payload": {"hello": "world"}}'`,
        ]),
    "",
    "Ctrl-C stops it; the data stays.",
    "",
  ];
  return `${lines.join("\n")}\n`;
}

main().catch((error: unknown) => {
  if (
    error instanceof LocalConfigError ||
    error instanceof DynamoLocalStartError ||
    error instanceof TableSchemaMismatchError
  ) {
    process.stderr.write(`jobq: ${error.message}\n`);
  } else {
    console.error("jobq: could not start", error);
  }
  process.exit(1);
});
