import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { describe, expect, it } from "vitest";
import { handlerEnvironment } from "../../local/config";
import { TABLES } from "../../store/tables";
import { disableTracing, traced, tracer } from "../../store/tracing";

/**
 * Tracing must be inert off Lambda: no X-Ray daemon is tried and the SDK clients stay as built,
 * so nothing in the tests or the local stack is sent anywhere.
 */
describe("tracing off Lambda", () => {
  it("leaves the tracer off and the clients unwrapped outside a Lambda function", () => {
    // Prepare
    const client = new DynamoDBClient({
      region: "us-east-1",
      endpoint: "http://127.0.0.1:1",
      credentials: { accessKeyId: "local", secretAccessKey: "local" },
    });

    // Act
    const wrapped = traced(client);

    // Assess
    expect(tracer().isTracingEnabled()).toBe(false);
    expect(wrapped).toBe(client);
    client.destroy();
  });

  it("can be switched off for good (the workers: ECS sets AWS_EXECUTION_ENV too)", () => {
    disableTracing();

    expect(tracer().isTracingEnabled()).toBe(false);
  });

  it("is switched off in the local stack's handler environment, with metrics", () => {
    const tables = Object.fromEntries(TABLES.map((def) => [def.id, `jobq-${def.id}`]));

    const env = handlerEnvironment({ tables, dynamoEndpoint: "http://127.0.0.1:8000" });

    expect(env).toMatchObject({ POWERTOOLS_TRACE_ENABLED: "false", POWERTOOLS_METRICS_DISABLED: "true" });
  });
});
