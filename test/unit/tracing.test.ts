import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { describe, expect, it } from "vitest";
import { handlerEnvironment } from "../../local/config";
import { TABLES } from "../../store/tables";
import { disableTracing, traced, tracer, tracingWanted } from "../../store/tracing";

/**
 * Tracing must be inert off Lambda: no X-Ray daemon is tried and the SDK clients stay as built,
 * so nothing in the tests or the local stack is sent anywhere. More than inert: the X-Ray SDK is
 * not even loaded there, since loading it enables an async hook that slows every promise of the
 * process (store/tracing.ts).
 */

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const LAMBDA = "AWS_Lambda_nodejs22.x";

/**
 * What a fresh process with only this environment does: whether importing the tracing module
 * and building the handlers' middleware loaded the X-Ray SDK, and whether tracing is on.
 */
function probe(env: Readonly<Record<string, string>>): Promise<{ xrayLoaded: boolean; enabled: boolean }> {
  const script = `
    import { createRequire } from "node:module";
    const { tracer } = await import("./store/tracing.ts");
    const { observability } = await import("./functions/observability.ts");
    observability();
    const xrayLoaded = Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes("aws-xray-sdk-core"));
    console.log(JSON.stringify({ xrayLoaded, enabled: tracer()?.isTracingEnabled() ?? false }));
  `;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", script],
      {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
        timeout: 50_000,
      },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${error.message}\n${stderr}`));
        else resolve(JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}"));
      },
    );
  });
}

describe("tracing off Lambda", () => {
  it("leaves the tracer out and the clients unwrapped outside a Lambda function", () => {
    // Prepare
    const client = new DynamoDBClient({
      region: "us-east-1",
      endpoint: "http://127.0.0.1:1",
      credentials: { accessKeyId: "local", secretAccessKey: "local" },
    });

    // Act
    const wrapped = traced(client);

    // Assess
    expect(tracer()).toBeNull();
    expect(wrapped).toBe(client);
    client.destroy();
  });

  it("can be switched off for good", () => {
    disableTracing();

    expect(tracer()).toBeNull();
  });

  it.each([
    [{}, false],
    [{ AWS_EXECUTION_ENV: LAMBDA }, true],
    [{ AWS_EXECUTION_ENV: LAMBDA, POWERTOOLS_TRACE_ENABLED: "false" }, false],
    [{ AWS_EXECUTION_ENV: LAMBDA, POWERTOOLS_TRACE_ENABLED: "FALSE" }, false],
    [{ AWS_EXECUTION_ENV: LAMBDA, AWS_SAM_LOCAL: "true" }, false],
    [{ AWS_EXECUTION_ENV: "AWS_Lambda_amplify-mock" }, false],
    // The workers: ECS sets AWS_EXECUTION_ENV too, and a worker has no Lambda segment.
    [{ AWS_EXECUTION_ENV: "AWS_ECS_FARGATE" }, false],
    [{ AWS_EXECUTION_ENV: "AWS_ECS_EC2" }, false],
  ])("is wanted with %j: %s", (env, wanted) => {
    expect(tracingWanted(env)).toBe(wanted);
  });

  it("is switched off in the local stack's handler environment, with metrics", () => {
    const tables = Object.fromEntries(TABLES.map((def) => [def.id, `jobq-${def.id}`]));

    const env = handlerEnvironment({ tables, dynamoEndpoint: "http://127.0.0.1:8000" });

    expect(env).toMatchObject({ POWERTOOLS_TRACE_ENABLED: "false", POWERTOOLS_METRICS_DISABLED: "true" });
  });

  it("does not load the X-Ray SDK in a process that traces nothing, and traces in a Lambda function", async () => {
    // Act
    const [local, worker, lambda] = await Promise.all([
      probe({}),
      probe({ AWS_EXECUTION_ENV: "AWS_ECS_FARGATE" }),
      probe({ AWS_EXECUTION_ENV: LAMBDA, AWS_REGION: "us-east-1" }),
    ]);

    // Assess
    expect(local).toEqual({ xrayLoaded: false, enabled: false });
    expect(worker).toEqual({ xrayLoaded: false, enabled: false });
    expect(lambda).toEqual({ xrayLoaded: true, enabled: true });
  }, 60_000);
});
