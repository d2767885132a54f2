import {
  DynamoDBClient,
  GetItemCommand,
  ProvisionedThroughputExceededException,
} from "@aws-sdk/client-dynamodb";
import { SendTaskHeartbeatCommand, SFNClient, SFNServiceException } from "@aws-sdk/client-sfn";
import { afterEach, describe, expect, it } from "vitest";
import {
  type FaultService,
  type FaultSettings,
  injectedFaults,
  installFaultInjection,
  isLoopback,
  seededRandom,
  setFaultInjection,
  throttleMiddleware,
  throttlingError,
} from "../../store/faults";

/**
 * The soak harness's fault injection (store/faults.ts): the right throttling error per service,
 * thrown at about the configured rate, inside the SDK's retry loop, and nothing at rate 0 or on a
 * client built for AWS.
 */

const LOCAL = "http://127.0.0.1:9";
const credentials = { accessKeyId: "local", secretAccessKey: "local" };

afterEach(() => setFaultInjection(undefined));

/** Runs the middleware `draws` times against a handler that answers; counts the throttles. */
async function throttledShare(service: FaultService, settings: FaultSettings, draws: number) {
  let passed = 0;
  const errors: unknown[] = [];
  const handler = throttleMiddleware<object, { $metadata: object }>(service, () => settings)(
    async () => {
      passed += 1;
      return { output: { $metadata: {} }, response: {} };
    },
    { commandName: "GetItemCommand" },
  );
  for (let i = 0; i < draws; i++) {
    await handler({ input: {}, request: {} }).catch((error: unknown) => errors.push(error));
  }
  return { passed, errors };
}

describe("throttling injection", () => {
  it("throws DynamoDB's ProvisionedThroughputExceededException at about the rate", async () => {
    // Prepare: a seeded draw, so the count is the same on every run
    const settings = { throttleRate: 0.05, random: seededRandom(42) };

    // Act
    const { passed, errors } = await throttledShare("dynamodb", settings, 10_000);

    // Assess: ~5 % (binomial: σ ≈ 22 of 10,000), every one the service's own throttling error
    expect(errors.length).toBeGreaterThan(400);
    expect(errors.length).toBeLessThan(600);
    expect(passed + errors.length).toBe(10_000);
    for (const error of errors) {
      expect(error).toBeInstanceOf(ProvisionedThroughputExceededException);
      expect(error).toMatchObject({
        name: "ProvisionedThroughputExceededException",
        $fault: "client",
        $retryable: { throttling: true },
        $metadata: { httpStatusCode: 400 },
      });
    }
  });

  it("throws ThrottlingException for Step Functions, SQS and EventBridge", () => {
    for (const service of ["sfn", "sqs", "eventbridge"] as const) {
      const error = throttlingError(service, "SendMessageCommand");
      expect(error.name).toBe("ThrottlingException");
      expect(error).toMatchObject({ $fault: "client", $retryable: { throttling: true } });
    }
    expect(throttlingError("sfn", "StartExecutionCommand")).toBeInstanceOf(SFNServiceException);
  });

  it("passes every request through at rate 0", async () => {
    const { passed, errors } = await throttledShare("sqs", { throttleRate: 0, random: () => 0 }, 1_000);

    expect(errors).toEqual([]);
    expect(passed).toBe(1_000);
  });

  it("draws again on every retry of the SDK's retry strategy, and counts what it injected", async () => {
    // Prepare: every request throttled; the client never reaches the network
    setFaultInjection({ throttleRate: 1 });
    const client = new SFNClient({ endpoint: LOCAL, region: "us-east-1", credentials, maxAttempts: 2 });
    installFaultInjection(client.middlewareStack, "sfn", LOCAL);
    const before = injectedFaults().sfn;

    // Act
    const error = await client
      .send(new SendTaskHeartbeatCommand({ taskToken: "t" }))
      .catch((e: unknown) => e);

    // Assess: thrown after the SDK's own retry (2 attempts), both injected
    expect(error).toMatchObject({ name: "ThrottlingException", $metadata: { attempts: 2 } });
    expect(injectedFaults().sfn - before).toBe(2);
    client.destroy();
  });

  it("leaves a client alone while injection is off, and one built for AWS always", async () => {
    // Prepare: a stand-in for the network below the fault middleware
    const answer = (client: DynamoDBClient) =>
      client.middlewareStack.add(
        () => async () => ({ output: { $metadata: {}, Item: { pk: { S: "x" } } }, response: {} }),
        { step: "finalizeRequest", priority: "low", name: "answer" },
      );
    const local = new DynamoDBClient({ endpoint: LOCAL, region: "us-east-1", credentials, maxAttempts: 1 });
    installFaultInjection(local.middlewareStack, "dynamodb", LOCAL);
    answer(local);
    const aws = new DynamoDBClient({ region: "us-east-1", credentials, maxAttempts: 1 });
    installFaultInjection(aws.middlewareStack, "dynamodb", undefined);
    answer(aws);
    const get = new GetItemCommand({ TableName: "t", Key: { pk: { S: "x" } } });

    // Act / Assess: off → answered; on → the loopback client throttled, the AWS one not
    await expect(local.send(get)).resolves.toMatchObject({ Item: { pk: { S: "x" } } });
    setFaultInjection({ throttleRate: 1 });
    await expect(local.send(get)).rejects.toBeInstanceOf(ProvisionedThroughputExceededException);
    await expect(aws.send(get)).resolves.toMatchObject({ Item: { pk: { S: "x" } } });
    expect(aws.middlewareStack.identify().some((name) => name.startsWith("jobqFaultInjection"))).toBe(false);
  });

  it("knows loopback endpoints from others", () => {
    expect(isLoopback("http://127.0.0.1:8000")).toBe(true);
    expect(isLoopback("http://localhost:8000")).toBe(true);
    expect(isLoopback("http://[::1]:8000")).toBe(true);
    expect(isLoopback("https://dynamodb.us-east-1.amazonaws.com")).toBe(false);
    expect(isLoopback(undefined)).toBe(false);
    expect(() => setFaultInjection({ throttleRate: 1.5 })).toThrow(RangeError);
  });
});
