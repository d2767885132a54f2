import { join } from "node:path";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { PoolConfig } from "../core/pools";
import { type ApiServer, startApiServer } from "./api-server";
import { type ApiTokens, applyHandlerEnvironment, LOCAL_REGION, parseApiTokens } from "./config";
import { type DynamoLocal, startDynamoLocal } from "./dynamo";
import { ensureTables } from "./tables";

/**
 * The whole local system in one call: DynamoDB Local, its tables, the handlers' environment and
 * the HTTP front. `npm start` (local/main.ts) runs it persisted; tests and benchmarks run it in
 * memory on free ports.
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
  /** @default "jobq-" */
  readonly tablePrefix?: string;
  /** Access log on stdout. @default false */
  readonly log?: boolean;
}

export interface LocalStack {
  readonly url: string;
  readonly tokens: ApiTokens;
  /** def.id (store/tables.ts) → table name. */
  readonly tables: Readonly<Record<string, string>>;
  readonly dynamoEndpoint: string;
  /** Closes the API, then stops DynamoDB Local. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts the stack. It sets the handlers' process.env (applyHandlerEnvironment), so run one stack
 * per process: handler modules read their configuration once, on first import.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const tokens = options.tokens ?? parseApiTokens(undefined);
  let dynamo: DynamoLocal | undefined;
  let api: ApiServer | undefined;
  const stop = async (): Promise<void> => {
    // API first: no request may reach a database that is already gone.
    await api?.close();
    await dynamo?.stop();
  };

  try {
    dynamo = await startDynamoLocal({
      dataDir: options.dataDir === undefined ? undefined : join(options.dataDir, "dynamodb"),
    });
    const client = new DynamoDBClient({
      endpoint: dynamo.endpoint,
      region: LOCAL_REGION,
      credentials: { accessKeyId: "local", secretAccessKey: "local" },
    });
    let tables: Record<string, string>;
    try {
      tables = await ensureTables(client, options.tablePrefix ?? "jobq-");
    } finally {
      client.destroy();
    }
    applyHandlerEnvironment({
      tables,
      dynamoEndpoint: dynamo.endpoint,
      pools: options.pools,
      taskTypes: options.taskTypes,
    });
    api = await startApiServer({ port: options.port ?? 0, host: options.host, tokens, log: options.log });

    let stopping: Promise<void> | undefined;
    return {
      url: api.url,
      tokens,
      tables,
      dynamoEndpoint: dynamo.endpoint,
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
