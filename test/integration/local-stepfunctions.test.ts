import { join } from "node:path";
import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  ExecutionAlreadyExists,
  ExecutionDoesNotExist,
  InvalidToken,
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
  TaskTimedOut,
} from "@aws-sdk/client-sfn";
import { DeleteMessageCommand, ReceiveMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LambdaHandler } from "../../local/lambda";
import { type LocalSqs, startLocalSqs } from "../../local/sqs";
import {
  type LocalStepFunctions,
  LocalStepFunctionsError,
  loadStateMachineDefinition,
  startLocalStepFunctions,
  substituteDefinition,
} from "../../local/stepfunctions";

/**
 * The local Step Functions endpoint through the SDK's SFNClient, with small fixture state
 * machines: what the library does not do (task tokens, heartbeats, timeout paths) is emulated by
 * local/stepfunctions.ts, and these tests hold it to AWS's behaviour.
 */

const FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:fixture";
const credentials = { accessKeyId: "local", secretAccessKey: "local" };

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Calls of the fixture Lambda, in order; `reply` decides each answer. */
interface FixtureFunction {
  readonly calls: Record<string, unknown>[];
  reply: (event: Record<string, unknown>) => unknown;
}

const fixture: FixtureFunction = { calls: [], reply: () => ({ ok: true }) };
const fixtureHandler: LambdaHandler = async (event) => {
  const e = event as Record<string, unknown>;
  fixture.calls.push(e);
  return fixture.reply(e);
};

/** A Task that calls the fixture function with a token and waits for it. */
function tokenTask(tag: string, extra: Record<string, Json> = {}): Record<string, Json> {
  return {
    Type: "Task",
    Resource: "arn:aws:states:::lambda:invoke.waitForTaskToken",
    Parameters: {
      FunctionName: FUNCTION_ARN,
      Payload: { tag, "token.$": "$$.Task.Token", "execution.$": "$$.Execution.Id" },
    },
    ...extra,
  };
}

const MACHINES: Record<string, Record<string, Json>> = {
  pass: {
    StartAt: "Hello",
    States: { Hello: { Type: "Pass", Result: { said: "hello" }, ResultPath: "$.greeting", End: true } },
  },
  token: {
    StartAt: "Wait",
    States: {
      Wait: tokenTask("wait", {
        ResultPath: "$.report",
        Catch: [{ ErrorEquals: ["Job.Boom"], ResultPath: "$.failure", Next: "Failed" }],
        End: true,
      }),
      Failed: { Type: "Pass", Result: "caught", ResultPath: "$.outcome", End: true },
    },
  },
  twoSteps: {
    StartAt: "First",
    States: {
      First: tokenTask("first", { ResultPath: "$.first", Next: "Second" }),
      Second: tokenTask("second", { ResultPath: "$.second", End: true }),
    },
  },
  dispatch: {
    StartAt: "Dispatch",
    States: {
      Dispatch: {
        Type: "Task",
        Resource: "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        Parameters: {
          "QueueUrl.$": "$.queueUrl",
          MessageBody: { "jobId.$": "$.jobId", "runToken.$": "$$.Task.Token" },
        },
        TimeoutSecondsPath: "$.timeoutSeconds",
        HeartbeatSecondsPath: "$.heartbeatSeconds",
        ResultPath: "$.run",
        Catch: [
          { ErrorEquals: ["States.HeartbeatTimeout"], ResultPath: "$.failure", Next: "Lost" },
          { ErrorEquals: ["States.Timeout"], ResultPath: "$.failure", Next: "TimedOut" },
        ],
        End: true,
      },
      Lost: { Type: "Pass", Result: "lost", ResultPath: "$.outcome", End: true },
      TimedOut: { Type: "Pass", Result: "timed_out", ResultPath: "$.outcome", End: true },
    },
  },
  invoke: {
    StartAt: "Step",
    States: {
      Step: {
        Type: "Task",
        Resource: "arn:aws:states:::lambda:invoke",
        Parameters: { FunctionName: FUNCTION_ARN, Payload: { tag: "step", "n.$": "$.n" } },
        ResultSelector: { "value.$": "$.Payload" },
        ResultPath: "$.step",
        Catch: [{ ErrorEquals: ["NopeError"], ResultPath: "$.failure", Next: "Refused" }],
        End: true,
      },
      Refused: { Type: "Pass", Result: "refused", ResultPath: "$.outcome", End: true },
    },
  },
};

let sfnEndpoint: LocalStepFunctions;
let sqs: LocalSqs;
let sfn: SFNClient;
let sqsClient: SQSClient;
let queueUrl: string;

beforeAll(async () => {
  sqs = await startLocalSqs({ pools: ["sfn-test"] });
  queueUrl = sqs.queues["sfn-test"]?.normal ?? "";
  sfnEndpoint = await startLocalStepFunctions({
    stateMachines: [
      ...Object.entries(MACHINES).map(([name, definition]) => ({ name, definition })),
      {
        name: "lifecycle",
        definition: loadStateMachineDefinition(
          join(import.meta.dirname, "../../state-machines/job-lifecycle.asl.json"),
          {
            LifecycleFunctionArn: FUNCTION_ARN,
          },
        ),
      },
    ],
    resolveFunction: (name) => {
      if (name !== "fixture") throw new Error(`no function ${name}`);
      return fixtureHandler;
    },
    sqsEndpoint: sqs.endpoint,
    log: false,
  });
  sfn = new SFNClient({ endpoint: sfnEndpoint.endpoint, region: "us-east-1", credentials });
  sqsClient = new SQSClient({ endpoint: sqs.endpoint, region: "us-east-1", credentials });
});

afterAll(async () => {
  sfn?.destroy();
  sqsClient?.destroy();
  await sfnEndpoint?.stop();
  await sqs?.stop();
});

let unique = 0;
async function start(machine: string, input: Record<string, Json>, name?: string): Promise<string> {
  unique += 1;
  const out = await sfn.send(
    new StartExecutionCommand({
      stateMachineArn: sfnEndpoint.stateMachineArn(machine),
      name: name ?? `${machine}-${Date.now()}-${unique}`,
      input: JSON.stringify(input),
    }),
  );
  expect(out.executionArn).toBeDefined();
  return out.executionArn ?? "";
}

async function describeExecution(executionArn: string): Promise<DescribeExecutionCommandOutput> {
  return sfn.send(new DescribeExecutionCommand({ executionArn }));
}

/** Polls until the execution has ended, or fails after the deadline. */
async function ended(executionArn: string, timeoutMs = 10_000): Promise<DescribeExecutionCommandOutput> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await describeExecution(executionArn);
    if (out.status !== "RUNNING") return out;
    if (Date.now() > deadline) throw new Error(`${executionArn} still RUNNING after ${timeoutMs} ms`);
    await sleep(25);
  }
}

/** The fixture calls of one execution, waiting until there are at least `count`. */
async function callsOf(
  executionArn: string,
  count: number,
  timeoutMs = 10_000,
): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const calls = fixture.calls.filter(
      (call) => call.execution === executionArn || call.executionArn === executionArn,
    );
    if (calls.length >= count) return calls;
    if (Date.now() > deadline)
      throw new Error(`${executionArn}: ${calls.length} of ${count} calls after ${timeoutMs} ms`);
    await sleep(10);
  }
}

function tokenOf(call: Record<string, unknown> | undefined): string {
  const token = call?.token ?? call?.taskToken;
  if (typeof token !== "string") throw new Error(`no token in ${JSON.stringify(call)}`);
  return token;
}

/** Receives the dispatch message of one job from the fixture queue. */
async function dispatchMessage(jobId: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const out = await sqsClient.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1, MaxNumberOfMessages: 10 }),
    );
    for (const message of out.Messages ?? []) {
      await sqsClient.send(
        new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle }),
      );
      const body = JSON.parse(message.Body ?? "{}") as Record<string, unknown>;
      if (body.jobId === jobId) return body;
    }
  }
  throw new Error(`no dispatch message for ${jobId} within ${timeoutMs} ms`);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe("executions", () => {
  it("runs an execution to SUCCEEDED and describes it with its input and output", async () => {
    // Prepare / Act
    const arn = await start("pass", { n: 1 });
    const out = await ended(arn);

    // Assess
    expect(out.status).toBe("SUCCEEDED");
    expect(out.stateMachineArn).toBe(sfnEndpoint.stateMachineArn("pass"));
    expect(JSON.parse(out.input ?? "null")).toEqual({ n: 1 });
    expect(JSON.parse(out.output ?? "null")).toEqual({ n: 1, greeting: { said: "hello" } });
    expect(out.startDate).toBeInstanceOf(Date);
    expect(out.stopDate).toBeInstanceOf(Date);
  });

  it("answers a repeated start of a running execution with its ARN, and refuses other input or an ended one", async () => {
    // Prepare
    const name = `dup-${Date.now()}`;
    const arn = await start("token", { n: 1 }, name);

    // Act / Assess: same name and input while running is the same execution
    expect(await start("token", { n: 1 }, name)).toBe(arn);
    await expect(start("token", { n: 2 }, name)).rejects.toBeInstanceOf(ExecutionAlreadyExists);

    // Act / Assess: once ended, the name stays taken
    await sfn.send(new StopExecutionCommand({ executionArn: arn }));
    await expect(start("token", { n: 1 }, name)).rejects.toBeInstanceOf(ExecutionAlreadyExists);
  });

  it("stops an execution that waits on a task token: ABORTED, and the token is released", async () => {
    // Prepare
    const arn = await start("token", { n: 1 });
    const [call] = await callsOf(arn, 1);
    const token = tokenOf(call);

    // Act
    await sfn.send(
      new StopExecutionCommand({ executionArn: arn, error: "Job.Cancelled", cause: "cancelled by alice" }),
    );

    // Assess
    const out = await describeExecution(arn);
    expect(out.status).toBe("ABORTED");
    expect(out.error).toBe("Job.Cancelled");
    expect(out.cause).toBe("cancelled by alice");
    await expect(
      sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: "{}" })),
    ).rejects.toBeInstanceOf(TaskTimedOut);
    // Stopping twice is harmless.
    await sfn.send(new StopExecutionCommand({ executionArn: arn }));
  });

  it("refuses unknown executions and malformed tokens with the SDK's exception classes", async () => {
    const missing = sfnEndpoint
      .stateMachineArn("pass")
      .replace(":stateMachine:", ":execution:")
      .concat(":nope");
    await expect(describeExecution(missing)).rejects.toBeInstanceOf(ExecutionDoesNotExist);
    await expect(sfn.send(new StopExecutionCommand({ executionArn: missing }))).rejects.toBeInstanceOf(
      ExecutionDoesNotExist,
    );
    await expect(
      sfn.send(new SendTaskSuccessCommand({ taskToken: "forged", output: "{}" })),
    ).rejects.toBeInstanceOf(InvalidToken);
  });
});

describe("task tokens", () => {
  it("completes a waiting task with SendTaskSuccess's output", async () => {
    // Prepare
    const arn = await start("token", { n: 1 });
    const [call] = await callsOf(arn, 1);

    // Act
    await sfn.send(
      new SendTaskSuccessCommand({ taskToken: tokenOf(call), output: JSON.stringify({ ok: true }) }),
    );

    // Assess
    const out = await ended(arn);
    expect(out.status).toBe("SUCCEEDED");
    expect(JSON.parse(out.output ?? "null")).toEqual({ n: 1, report: { ok: true } });
    expect(call?.execution).toBe(arn);
  });

  it("fails a waiting task with SendTaskFailure, caught by the Catch that names the error", async () => {
    // Prepare
    const arn = await start("token", { n: 1 });
    const [call] = await callsOf(arn, 1);

    // Act
    await sfn.send(
      new SendTaskFailureCommand({ taskToken: tokenOf(call), error: "Job.Boom", cause: "it broke" }),
    );

    // Assess
    const out = await ended(arn);
    expect(out.status).toBe("SUCCEEDED");
    expect(JSON.parse(out.output ?? "null")).toEqual({
      n: 1,
      failure: { Error: "Job.Boom", Cause: "it broke" },
      outcome: "caught",
    });
  });

  it("fails the execution when no Catch names the error", async () => {
    const arn = await start("token", { n: 1 });
    const [call] = await callsOf(arn, 1);

    await sfn.send(
      new SendTaskFailureCommand({ taskToken: tokenOf(call), error: "Job.Other", cause: "unexpected" }),
    );

    const out = await ended(arn);
    expect(out.status).toBe("FAILED");
    expect(out.error).toBe("Job.Other");
    expect(out.cause).toBe("unexpected");
  });

  it("refuses a late SendTaskSuccess for an earlier state's token: it never completes the next state", async () => {
    // Prepare: First is done, Second waits
    const arn = await start("twoSteps", { n: 1 });
    const [first] = await callsOf(arn, 1);
    const firstToken = tokenOf(first);
    await sfn.send(
      new SendTaskSuccessCommand({ taskToken: firstToken, output: JSON.stringify({ step: 1 }) }),
    );
    const [, second] = await callsOf(arn, 2);
    const secondToken = tokenOf(second);

    // Act: a duplicate report of the first task arrives
    const duplicate = sfn.send(
      new SendTaskSuccessCommand({ taskToken: firstToken, output: JSON.stringify({ step: 99 }) }),
    );

    // Assess
    await expect(duplicate).rejects.toBeInstanceOf(TaskTimedOut);
    expect(secondToken).not.toBe(firstToken);
    expect((await describeExecution(arn)).status).toBe("RUNNING");
    await sfn.send(
      new SendTaskSuccessCommand({ taskToken: secondToken, output: JSON.stringify({ step: 2 }) }),
    );
    const out = await ended(arn);
    expect(JSON.parse(out.output ?? "null")).toEqual({ n: 1, first: { step: 1 }, second: { step: 2 } });
  });
});

describe("sqs:sendMessage.waitForTaskToken with heartbeat and timeout paths", () => {
  it("fails the task with States.HeartbeatTimeout when no heartbeat comes", async () => {
    // Prepare
    const jobId = `job-hb-${Date.now()}`;
    const arn = await start("dispatch", { jobId, queueUrl, timeoutSeconds: 60, heartbeatSeconds: 1 });
    const message = await dispatchMessage(jobId);

    // Act: nothing; the heartbeat lapses
    const out = await ended(arn);

    // Assess
    expect(JSON.parse(out.output ?? "null")).toMatchObject({
      outcome: "lost",
      failure: { Error: "States.HeartbeatTimeout" },
    });
    await expect(
      sfn.send(new SendTaskSuccessCommand({ taskToken: String(message.runToken), output: "{}" })),
    ).rejects.toBeInstanceOf(TaskTimedOut);
  });

  it("keeps a task alive while heartbeats come, longer than the heartbeat period", async () => {
    // Prepare
    const jobId = `job-alive-${Date.now()}`;
    const arn = await start("dispatch", { jobId, queueUrl, timeoutSeconds: 60, heartbeatSeconds: 1 });
    const { runToken } = await dispatchMessage(jobId);
    const taskToken = String(runToken);

    // Act: heartbeat for three heartbeat periods, then report success
    for (let i = 0; i < 10; i++) {
      await sfn.send(new SendTaskHeartbeatCommand({ taskToken }));
      await sleep(300);
    }
    await sfn.send(new SendTaskSuccessCommand({ taskToken, output: JSON.stringify({ ok: true }) }));

    // Assess
    const out = await ended(arn);
    expect(out.status).toBe("SUCCEEDED");
    expect(JSON.parse(out.output ?? "null")).toMatchObject({ jobId, run: { ok: true } });
  });

  it("fails the task with States.Timeout after TimeoutSecondsPath, heartbeats notwithstanding", async () => {
    // Prepare
    const jobId = `job-timeout-${Date.now()}`;
    const arn = await start("dispatch", { jobId, queueUrl, timeoutSeconds: 1, heartbeatSeconds: 30 });
    const { runToken } = await dispatchMessage(jobId);
    await sfn.send(new SendTaskHeartbeatCommand({ taskToken: String(runToken) }));

    // Act
    const out = await ended(arn);

    // Assess
    expect(JSON.parse(out.output ?? "null")).toMatchObject({
      outcome: "timed_out",
      failure: { Error: "States.Timeout" },
    });
  });

  it("fails the task when the queue does not exist", async () => {
    const jobId = `job-noqueue-${Date.now()}`;
    const arn = await start("dispatch", {
      jobId,
      queueUrl: `${queueUrl}-missing`,
      timeoutSeconds: 60,
      heartbeatSeconds: 30,
    });

    const out = await ended(arn);

    expect(out.status).toBe("FAILED");
    expect(out.error).toMatch(/^SQS\./);
  });
});

describe("lambda:invoke", () => {
  it("returns the handler's result as Payload", async () => {
    fixture.reply = (event) => (event.tag === "step" ? { doubled: Number(event.n) * 2 } : { ok: true });
    const arn = await start("invoke", { n: 21 });

    const out = await ended(arn);

    expect(out.status).toBe("SUCCEEDED");
    expect(JSON.parse(out.output ?? "null")).toEqual({ n: 21, step: { value: { doubled: 42 } } });
  });

  it("fails the task with the handler's error name, which Catch matches", async () => {
    fixture.reply = (event) => {
      if (event.tag !== "step") return { ok: true };
      const error = new Error("not today");
      error.name = "NopeError";
      throw error;
    };
    const arn = await start("invoke", { n: 1 });

    const out = await ended(arn);

    fixture.reply = () => ({ ok: true });
    const output = JSON.parse(out.output ?? "null") as {
      outcome: string;
      failure: { Error: string; Cause: string };
    };
    expect(output.outcome).toBe("refused");
    expect(output.failure.Error).toBe("NopeError");
    expect(JSON.parse(output.failure.Cause)).toMatchObject({
      errorType: "NopeError",
      errorMessage: "not today",
    });
  });
});

describe("the job lifecycle definition", () => {
  /** The scheduler's admission: the input it starts an attempt's execution with (app/lifecycle.ts#DispatchInput). */
  const dispatchInput = (jobId: string): Record<string, Json> => ({
    jobId,
    pool: "sfn-test",
    nodeId: "n1",
    queueUrl,
    attempt: 1,
    timeoutSeconds: 60,
    heartbeatSeconds: 10,
    lostAfterSeconds: 30,
  });

  it("runs a successful attempt through the real ASL: Dispatch only, no lifecycle step", async () => {
    // Prepare: the scheduler starts the attempt's execution at admission
    const jobId = `job-lifecycle-${Date.now()}`;
    const arn = await start("lifecycle", dispatchInput(jobId), `${jobId}-3`);
    const message = await dispatchMessage(jobId);
    expect(message).toMatchObject({
      jobId,
      attempt: 1,
      timeoutSeconds: 60,
      heartbeatSeconds: 10,
      executionArn: arn,
    });

    // Act: the worker, having completed the job itself, reports success
    await sfn.send(
      new SendTaskSuccessCommand({ taskToken: String(message.runToken), output: '{"ok":true}' }),
    );

    // Assess: the execution ended at Dispatch without invoking the lifecycle function
    const out = await ended(arn);
    expect(out.status).toBe("SUCCEEDED");
    expect(fixture.calls.filter((call) => call.jobId === jobId)).toEqual([]);
  });

  it("runs a failed attempt through AttemptFailed, BackoffWait and Requeue, handing over the error", async () => {
    // Prepare: the lifecycle steps answer like app/lifecycle.ts for a job with attempts left
    const jobId = `job-lifecycle-failed-${Date.now()}`;
    fixture.reply = (event) =>
      event.action === "attempt-failed" ? { next: "retry", delaySeconds: 0 } : { status: "queued" };
    const arn = await start("lifecycle", dispatchInput(jobId), `${jobId}-3`);
    const message = await dispatchMessage(jobId);

    // Act: the worker reports a failure
    await sfn.send(
      new SendTaskFailureCommand({ taskToken: String(message.runToken), error: "ValueError", cause: "boom" }),
    );

    // Assess
    const out = await ended(arn);
    fixture.reply = () => ({ ok: true });
    expect(out.status).toBe("SUCCEEDED");
    expect(fixture.calls.filter((call) => call.jobId === jobId)).toEqual([
      // No outcome: AttemptFailed reads the kind of failure from the error's name (outcomeOf).
      // Each step names its execution ($$.Execution.Id): a job naming another one is left alone.
      {
        action: "attempt-failed",
        jobId,
        attempt: 1,
        error: { Error: "ValueError", Cause: "boom" },
        executionArn: arn,
      },
      { action: "requeue", jobId, executionArn: arn },
    ]);
  });
});

describe("releasing", () => {
  const timers = () => process.getActiveResourcesInfo().filter((resource) => resource === "Timeout").length;

  it("leaves no timer behind when an execution waiting on a token is stopped", async () => {
    // Prepare: a Dispatch task with a heartbeat and a timeout pending
    const before = timers();
    const jobId = `job-release-${Date.now()}`;
    const arn = await start("dispatch", { jobId, queueUrl, timeoutSeconds: 600, heartbeatSeconds: 300 });
    await dispatchMessage(jobId);
    expect(timers()).toBeGreaterThan(before);

    // Act
    await sfn.send(new StopExecutionCommand({ executionArn: arn }));
    await sleep(50);

    // Assess
    expect(timers()).toBeLessThanOrEqual(before);
  });

  it("aborts every execution when the endpoint stops: no timer is left", async () => {
    // Prepare: a second endpoint with one execution in a long Wait and one on a token
    const before = timers();
    const endpoint = await startLocalStepFunctions({
      stateMachines: [
        { name: "token", definition: MACHINES.token ?? {} },
        {
          name: "wait",
          definition: { StartAt: "W", States: { W: { Type: "Wait", Seconds: 3600, End: true } } },
        },
      ],
      resolveFunction: () => fixtureHandler,
      log: false,
    });
    const client = new SFNClient({ endpoint: endpoint.endpoint, region: "us-east-1", credentials });
    const started = await Promise.all(
      ["token", "wait"].map((machine) =>
        client.send(
          new StartExecutionCommand({ stateMachineArn: endpoint.stateMachineArn(machine), input: "{}" }),
        ),
      ),
    );
    const tokenArn = started[0]?.executionArn ?? "";
    await callsOf(tokenArn, 1);
    client.destroy();

    // Act
    await endpoint.stop();
    await sleep(50);

    // Assess
    expect(timers()).toBeLessThanOrEqual(before);
  });
});

describe("definitions", () => {
  /** `${name}`, written so that no linter mistakes it for a template. */
  const placeholder = (name: string) => "$".concat("{", name, "}");

  it("substitutes placeholders as CDK does, JSON-escaped, and refuses a missing one", () => {
    const text = `{"a": "${placeholder("X")}", "b": "${placeholder("X")}-${placeholder("Y")}"}`;
    expect(substituteDefinition(text, { X: 'q"1', Y: "2" })).toBe('{"a": "q\\"1", "b": "q\\"1-2"}');
    expect(() => substituteDefinition(`{"a": "${placeholder("Missing")}"}`, {})).toThrow(/Missing/);
  });

  it("refuses a state machine with a resource it does not emulate", async () => {
    await expect(
      startLocalStepFunctions({
        stateMachines: [
          {
            name: "glue",
            definition: {
              StartAt: "G",
              States: { G: { Type: "Task", Resource: "arn:aws:states:::glue:startJobRun.sync", End: true } },
            },
          },
        ],
        resolveFunction: () => fixtureHandler,
      }),
    ).rejects.toBeInstanceOf(LocalStepFunctionsError);
  });
});
