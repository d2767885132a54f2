import { EventBridgeClient, PutEventsCommand } from "@aws-sdk/client-eventbridge";
import {
  ExecutionAlreadyExists,
  ExecutionDoesNotExist,
  InvalidName,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
} from "@aws-sdk/client-sfn";
import { mockClient } from "aws-sdk-client-mock";
import { afterEach, describe, expect, it } from "vitest";
import { EventBridgePublisher, type JobStateChange, refusedEntries } from "../../app/events";
import { createSfnClient, StepFunctionsExecutions } from "../../app/executions";
import { DISPATCH_INPUT, STATE_MACHINE } from "../support/executions";

/**
 * The Step Functions and EventBridge adapters' answers to errors the local emulators never give:
 * a name taken by an earlier start, a stopped execution that is gone, PutEvents refusing some
 * entries of a call, throttling. aws-sdk-client-mock stands in for the service only here.
 */

function change(jobId: string, status: JobStateChange["status"]): JobStateChange {
  return {
    jobId,
    owner: "alice",
    type: "echo",
    pool: "cpu",
    priority: 0,
    previousStatus: null,
    status,
    statusReason: "",
    at: "2026-12-06T12:00:00.000Z",
    version: 1,
  };
}

function sentJobIds(entries: readonly { Resources?: string[] | undefined }[] | undefined): string[] {
  return (entries ?? []).flatMap((e) => e.Resources ?? []);
}

describe("StepFunctionsExecutions", () => {
  const sfn = mockClient(SFNClient);
  afterEach(() => sfn.reset());

  it("starts the attempt's execution named by the job and the version its admission wrote", async () => {
    // Prepare
    const arn = `${STATE_MACHINE.replace(":stateMachine:", ":execution:")}:01JOB-7`;
    sfn.on(StartExecutionCommand).resolves({ executionArn: arn, startDate: new Date() });
    const executions = new StepFunctionsExecutions(new SFNClient({}), STATE_MACHINE);

    // Act
    const started = await executions.start("01JOB", 7, DISPATCH_INPUT);

    // Assess
    expect(started).toBe(arn);
    const call = sfn.commandCalls(StartExecutionCommand)[0];
    expect(call?.args[0].input).toMatchObject({ stateMachineArn: STATE_MACHINE, name: "01JOB-7" });
    expect(JSON.parse(call?.args[0].input.input ?? "null")).toEqual(DISPATCH_INPUT);
    expect(executions.arnOf("01JOB", 7)).toBe(arn);
  });

  it("takes ExecutionAlreadyExists as the earlier start of the same admission and answers its ARN", async () => {
    // Prepare: an at-least-once caller starting the same admission again.
    sfn
      .on(StartExecutionCommand)
      .rejects(new ExecutionAlreadyExists({ message: "Execution Already Exists", $metadata: {} }));
    const executions = new StepFunctionsExecutions(new SFNClient({}), STATE_MACHINE);

    // Act
    const started = await executions.start("01JOB", 3, DISPATCH_INPUT);

    // Assess
    expect(started).toBe(executions.arnOf("01JOB", 3));
  });

  it("answers null for any other refusal, so the scheduler undoes the admission", async () => {
    // Prepare
    sfn.on(StartExecutionCommand).rejects(new InvalidName({ message: "bad name", $metadata: {} }));
    const executions = new StepFunctionsExecutions(new SFNClient({}), STATE_MACHINE);

    // Act
    const started = await executions.start("01JOB", 3, DISPATCH_INPUT);

    // Assess
    expect(started).toBeNull();
  });

  it("starts nothing without a state machine (an API-only set-up)", async () => {
    // Prepare
    const executions = new StepFunctionsExecutions(new SFNClient({}), undefined);

    // Act
    const started = await executions.start("01JOB", 1, DISPATCH_INPUT);

    // Assess
    expect(started).toBeNull();
    expect(executions.arnOf("01JOB", 1)).toBeNull();
    expect(sfn.calls()).toHaveLength(0);
  });

  it("stops an execution; one that is gone, or a refusal, does not fail the cancel that asked", async () => {
    // Prepare
    const executions = new StepFunctionsExecutions(new SFNClient({}), STATE_MACHINE);
    const gone = executions.arnOf("01GONE", 1) ?? "";
    const other = executions.arnOf("01OTHER", 1) ?? "";
    sfn
      .on(StopExecutionCommand, { executionArn: gone })
      .rejects(new ExecutionDoesNotExist({ message: "does not exist", $metadata: {} }))
      .on(StopExecutionCommand, { executionArn: other })
      .rejects(new Error("socket hang up"));

    // Act
    await executions.stop(gone, "cancelled");
    await executions.stop(other, "cancelled");

    // Assess
    expect(sfn.commandCalls(StopExecutionCommand).map((c) => c.args[0].input.executionArn)).toEqual([
      gone,
      other,
    ]);
  });

  it("retries a throttled StartExecution in the SDK rather than undoing the admission", async () => {
    // Prepare: the real client and its retry strategy, with a transport that throttles twice.
    // (aws-sdk-client-mock replaces send and so skips retries; a request handler keeps them.)
    sfn.restore();
    const client = createSfnClient({ region: "us-east-1", endpoint: "http://127.0.0.1:1" });
    const arn = `${STATE_MACHINE.replace(":stateMachine:", ":execution:")}:01JOB-2`;
    let requests = 0;
    client.config.requestHandler = {
      handle: async () => {
        requests++;
        const throttled = requests <= 2;
        const body = throttled
          ? { __type: "com.amazonaws.swf.service.v2.model#ThrottlingException", message: "Rate exceeded" }
          : { executionArn: arn, startDate: 1_765_000_000 };
        return {
          // An HTTP response as the SDK's transport hands it on (it checks the shape, not the class).
          response: {
            statusCode: throttled ? 400 : 200,
            headers: { "content-type": "application/x-amz-json-1.0" },
            body: new Uint8Array(Buffer.from(JSON.stringify(body))),
          },
        };
      },
    };
    const executions = new StepFunctionsExecutions(client, STATE_MACHINE);

    // Act
    const started = await executions.start("01JOB", 2, DISPATCH_INPUT);

    // Assess
    expect(started).toBe(arn);
    expect(requests).toBe(3);
    client.destroy();
    sfn.restore();
  });
});

describe("EventBridgePublisher", () => {
  const events = mockClient(EventBridgeClient);
  afterEach(() => events.reset());

  it("publishes every change, ten entries a call", async () => {
    // Prepare
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [] });
    const publisher = new EventBridgePublisher(new EventBridgeClient({}), "jobq-bus");
    const changes = Array.from({ length: 12 }, (_, i) => change(`01JOB${i}`, "queued"));

    // Act
    await publisher.publish(changes);

    // Assess
    const calls = events.commandCalls(PutEventsCommand).map((c) => c.args[0].input.Entries);
    expect(calls.map((entries) => entries?.length).sort()).toEqual([10, 2]);
    expect(calls.flatMap((entries) => sentJobIds(entries)).sort()).toEqual(
      changes.map((c) => c.jobId).sort(),
    );
    expect(calls[0]?.[0]).toMatchObject({
      Source: "jobq",
      DetailType: "Job State Change",
      EventBusName: "jobq-bus",
    });
  });

  it("sends again only the entries PutEvents refused, until they are taken", async () => {
    // Prepare: the first call throttles the second entry of three.
    events
      .on(PutEventsCommand)
      .resolvesOnce({
        FailedEntryCount: 1,
        Entries: [
          { EventId: "e1" },
          { ErrorCode: "ThrottlingException", ErrorMessage: "Rate exceeded" },
          { EventId: "e3" },
        ],
      })
      .resolves({ FailedEntryCount: 0, Entries: [{ EventId: "e2" }] });
    const publisher = new EventBridgePublisher(new EventBridgeClient({}), "jobq-bus");

    // Act
    await publisher.publish([change("01A", "running"), change("01B", "running"), change("01C", "running")]);

    // Assess
    const calls = events.commandCalls(PutEventsCommand).map((c) => sentJobIds(c.args[0].input.Entries));
    expect(calls).toEqual([["01A", "01B", "01C"], ["01B"]]);
  });

  it("gives up after three tries without failing the caller: events are best effort", async () => {
    // Prepare
    events
      .on(PutEventsCommand)
      .resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: "InternalFailure" }] });
    const publisher = new EventBridgePublisher(new EventBridgeClient({}), "jobq-bus");

    // Act
    await publisher.publish([change("01A", "completed")]);

    // Assess
    expect(events.commandCalls(PutEventsCommand)).toHaveLength(3);
  });

  it("does not fail the caller when PutEvents itself fails", async () => {
    // Prepare
    events.on(PutEventsCommand).rejects(new Error("connect ECONNREFUSED"));
    const publisher = new EventBridgePublisher(new EventBridgeClient({}), "jobq-bus");

    // Act
    const published = publisher.publish([change("01A", "failed")]);

    // Assess
    await expect(published).resolves.toBeUndefined();
  });

  it("with `terminal`, publishes only the changes that end a job, and nothing without a bus", async () => {
    // Prepare
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [] });
    const terminal = new EventBridgePublisher(new EventBridgeClient({}), "jobq-bus", "terminal");
    const unset = new EventBridgePublisher(new EventBridgeClient({}), undefined);
    const changes = [
      change("01A", "queued"),
      change("01B", "running"),
      change("01C", "completed"),
      change("01D", "cancelled"),
    ];

    // Act
    await terminal.publish(changes);
    await unset.publish(changes);

    // Assess
    const calls = events.commandCalls(PutEventsCommand).map((c) => sentJobIds(c.args[0].input.Entries));
    expect(calls).toEqual([["01C", "01D"]]);
  });
});

describe("refusedEntries", () => {
  it("keeps the entries whose result has an ErrorCode, and any the result leaves out", () => {
    expect(refusedEntries(["a", "b", "c", "d"], [{}, { ErrorCode: "ThrottlingException" }, {}])).toEqual([
      "b",
      "d",
    ]);
  });
});
