import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { TestProject } from "vitest/node";
import { LOCAL_REGION } from "../../local/config";
import { startDynamoLocal } from "../../local/dynamo";
import { ensureTables } from "../../local/tables";
import { ensureWebBuild } from "../../scripts/build-web";

/**
 * One in-memory DynamoDB Local for the whole integration run (a JVM start costs seconds), with
 * the tables under the `jobq-test-` prefix. Test files reach it through inject(); setup-env.ts
 * turns that into the handlers' environment. Tests isolate themselves by their own principals and
 * ids, never by wiping tables.
 */

declare module "vitest" {
  export interface ProvidedContext {
    /** DynamoDB Local's endpoint, `http://127.0.0.1:<port>`. */
    dynamoEndpoint: string;
    /** def.id (store/tables.ts) → table name. */
    tables: Record<string, string>;
    /** The dashboard's built files (web/dist), for the browser tests. */
    webDir: string;
  }
}

const TEST_TABLE_PREFIX = "jobq-test-";

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Cached by a hash of its sources: a run after the first builds nothing.
  project.provide("webDir", await ensureWebBuild());
  const dynamo = await startDynamoLocal();
  try {
    const client = new DynamoDBClient({
      endpoint: dynamo.endpoint,
      region: LOCAL_REGION,
      credentials: { accessKeyId: "local", secretAccessKey: "local" },
    });
    try {
      project.provide("tables", await ensureTables(client, TEST_TABLE_PREFIX));
    } finally {
      client.destroy();
    }
    project.provide("dynamoEndpoint", dynamo.endpoint);
  } catch (error) {
    await dynamo.stop();
    throw error;
  }
  return () => dynamo.stop();
}
