import {
  ExecutionAlreadyExists,
  InvalidToken,
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  SFNClient,
  SFNServiceException,
  StartExecutionCommand,
  TaskDoesNotExist,
  TaskTimedOut,
} from "@aws-sdk/client-sfn";
import { mockClient } from "aws-sdk-client-mock";
import { afterEach, describe, expect, it } from "vitest";
import { createSfnClient, isTaskTokenGone, StepFunctionsExecutions } from "../../app/executions";
import { StepFunctionsTaskTokens } from "../../app/lifecycle";
import { DISPATCH_INPUT, STATE_MACHINE } from "../support/executions";

/**
 * The Step Functions adapter's error paths that the local interpreter cannot be made to show on
 * demand: a task token refused as gone in each of its three ways, on each of the three task-token
 * calls; a start that finds its name taken; throttling. aws-sdk-client-mock stands in for the
 * service, except where the SDK's own retries are under test: there a transport answers like the
 * service, so the real client's error parsing and retry strategy run.
 */

/** The three ways Step Functions says no state waits on a token any more. */
const GONE = [
  ["TaskDoesNotExist", () => new TaskDoesNotExist({ message: "Task Does Not Exist", $metadata: {} })],
  ["TaskTimedOut", () => new TaskTimedOut({ message: "Task Timed Out", $metadata: {} })],
  ["InvalidToken", () => new InvalidToken({ message: "Invalid Token", $metadata: {} })],
] as const;

/** The client has no class for it: the SDK builds a plain service exception named so. */
function throttled(): SFNServiceException {
  return new SFNServiceException({
    name: "ThrottlingException",
    $fault: "client",
    message: "Rate exceeded",
    $metadata: {},
  });
}

/**
 * The mocked client: mocked by instance, not by class, so the real clients some tests build keep
 * their own transport and retry strategy.
 */
const mocked = new SFNClient({ region: "us-east-1", endpoint: "http://127.0.0.1:1" });
const sfn = mockClient(mocked);
afterEach(() => sfn.reset());

/**
 * A client built as the functions build theirs (createSfnClient: five attempts), whose transport
 * answers each request with the next of `answers` (an error's `__type`, or a body to succeed with).
 */
function clientAnswering(answers: readonly ({ readonly error: string } | Record<string, unknown>)[]): {
  client: SFNClient;
  requests: () => number;
} {
  const client = createSfnClient({ region: "us-east-1", endpoint: "http://127.0.0.1:1" });
  let requests = 0;
  client.config.requestHandler = {
    handle: async () => {
      const answer = answers[Math.min(requests, answers.length - 1)] ?? {};
      requests++;
      const failed = typeof answer.error === "string";
      const body = failed ? { __type: answer.error, message: `refused: ${answer.error}` } : answer;
      return {
        // An HTTP response as the SDK's transport hands it on (it checks the shape, not the class).
        response: {
          statusCode: failed ? 400 : 200,
          headers: { "content-type": "application/x-amz-json-1.0" },
          body: new Uint8Array(Buffer.from(JSON.stringify(body))),
        },
      };
    },
  };
  return { client, requests: () => requests };
}

describe("isTaskTokenGone", () => {
  it.each(GONE)(
    "recognises %s from SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat",
    async (_, gone) => {
      // Prepare
      sfn.on(SendTaskSuccessCommand).rejects(gone());
      sfn.on(SendTaskFailureCommand).rejects(gone());
      sfn.on(SendTaskHeartbeatCommand).rejects(gone());

      // Act
      const errors = await Promise.all([
        mocked.send(new SendTaskSuccessCommand({ taskToken: "t", output: "{}" })).catch((e: unknown) => e),
        mocked.send(new SendTaskFailureCommand({ taskToken: "t", error: "x" })).catch((e: unknown) => e),
        mocked.send(new SendTaskHeartbeatCommand({ taskToken: "t" })).catch((e: unknown) => e),
      ]);

      // Assess
      expect(errors.map(isTaskTokenGone)).toEqual([true, true, true]);
    },
  );

  it.each(GONE)("recognises %s as the real client parses it from the service's answer", async (name) => {
    // Prepare
    const { client, requests } = clientAnswering([{ error: name }]);

    // Act
    const error = await client
      .send(new SendTaskHeartbeatCommand({ taskToken: "t" }))
      .catch((e: unknown) => e);

    // Assess: a client error, not retried by the SDK, and recognised by its name.
    expect(isTaskTokenGone(error)).toBe(true);
    expect(requests()).toBe(1);
    client.destroy();
  });

  it("does not take throttling, a network failure or a non-error for a gone token", () => {
    expect(isTaskTokenGone(throttled())).toBe(false);
    expect(isTaskTokenGone(new Error("socket hang up"))).toBe(false);
    expect(isTaskTokenGone("TaskDoesNotExist")).toBe(false);
    expect(isTaskTokenGone(undefined)).toBe(false);
  });
});

describe("StepFunctionsTaskTokens", () => {
  it("answers true when Step Functions takes the answer", async () => {
    // Prepare
    sfn.on(SendTaskSuccessCommand).resolves({});
    sfn.on(SendTaskFailureCommand).resolves({});
    const tokens = new StepFunctionsTaskTokens(mocked);

    // Act
    const succeeded = await tokens.succeed("t1", { admitted: false, reason: "r" });
    const failed = await tokens.fail("t2", "lost", "node n1 went silent");

    // Assess
    expect([succeeded, failed]).toEqual([true, true]);
    expect(sfn.commandCalls(SendTaskSuccessCommand)[0]?.args[0].input).toEqual({
      taskToken: "t1",
      output: JSON.stringify({ admitted: false, reason: "r" }),
    });
    expect(sfn.commandCalls(SendTaskFailureCommand)[0]?.args[0].input).toEqual({
      taskToken: "t2",
      error: "lost",
      cause: "node n1 went silent",
    });
  });

  it.each(GONE)("answers false, without throwing, when the token is gone (%s)", async (_, gone) => {
    // Prepare
    sfn.on(SendTaskSuccessCommand).rejects(gone());
    sfn.on(SendTaskFailureCommand).rejects(gone());
    const tokens = new StepFunctionsTaskTokens(mocked);

    // Act
    const succeeded = await tokens.succeed("t", { ok: true });
    const failed = await tokens.fail("t", "lost", "gone");

    // Assess
    expect([succeeded, failed]).toEqual([false, false]);
  });

  it("surfaces throttling that outlasts the SDK's retries, so the caller's step fails and is retried", async () => {
    // Prepare: aws-sdk-client-mock answers send() directly, as the SDK does once its retries ran out.
    sfn.on(SendTaskFailureCommand).rejects(throttled());
    sfn.on(SendTaskSuccessCommand).rejects(new Error("connect ECONNREFUSED"));
    const tokens = new StepFunctionsTaskTokens(mocked);

    // Act
    const failed = tokens.fail("t", "lost", "node n1 went silent");
    const succeeded = tokens.succeed("t", { ok: true });

    // Assess
    await expect(failed).rejects.toMatchObject({ name: "ThrottlingException" });
    await expect(succeeded).rejects.toThrow("connect ECONNREFUSED");
  });

  it("rides out throttling in the SDK: the client the functions build retries it", async () => {
    // Prepare
    const { client, requests } = clientAnswering([
      { error: "ThrottlingException" },
      { error: "ThrottlingException" },
      {},
    ]);
    const tokens = new StepFunctionsTaskTokens(client);

    // Act
    const answered = await tokens.fail("t", "lost", "node n1 went silent");

    // Assess
    expect(answered).toBe(true);
    expect(requests()).toBe(3);
    client.destroy();
  });
});

describe("StepFunctionsExecutions#start", () => {
  it("answers the ARN of the execution an earlier try started when the name is taken (ExecutionAlreadyExists)", async () => {
    // Prepare
    sfn
      .on(StartExecutionCommand)
      .rejects(new ExecutionAlreadyExists({ message: "Execution Already Exists", $metadata: {} }));
    const executions = new StepFunctionsExecutions(mocked, STATE_MACHINE);

    // Act
    const started = await executions.start("01JOB", 4, DISPATCH_INPUT);

    // Assess
    expect(started).toBe(`${STATE_MACHINE.replace(":stateMachine:", ":execution:")}:01JOB-4`);
  });

  it("answers null for throttling that outlasts the SDK's retries: the scheduler undoes the admission", async () => {
    // Prepare
    sfn.on(StartExecutionCommand).rejects(throttled());
    const executions = new StepFunctionsExecutions(mocked, STATE_MACHINE);

    // Act
    const started = await executions.start("01JOB", 4, DISPATCH_INPUT);

    // Assess
    expect(started).toBeNull();
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(1);
  });
});
