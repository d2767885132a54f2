import { join } from "node:path";
import { DescribeExecutionCommand, SFNClient } from "@aws-sdk/client-sfn";
import { SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelJob } from "../../app/actions";
import { startAttempt } from "../../app/attempts";
import { type LifecycleExecutions, StepFunctionsExecutions } from "../../app/executions";
import { type LifecycleContext, lifecycleRequestSchema, runLifecycleStep } from "../../app/lifecycle";
import { retryJob } from "../../app/retry";
import { schedulePool } from "../../app/scheduler";
import { LOCAL_REGION } from "../../local/config";
import { startLocalSqs } from "../../local/sqs";
import { loadStateMachineDefinition, startLocalStepFunctions } from "../../local/stepfunctions";
import { awsClientOptions } from "../../store/aws";
import { attemptSk, jobPk } from "../../store/keys";
import { TaskRegistry } from "../../worker/registry";
import { Worker } from "../../worker/runtime";
import { registerExampleTasks } from "../../worker/tasks/examples";
import {
  executionArn,
  type Harness,
  jobItem,
  ownTables,
  startHarness,
  startOnReservedNode,
  submitWaiting,
  suffix,
} from "../support/scheduling";

/**
 * The lifecycle's guards against executions that are no longer the job's (docs/lifecycle.md,
 * "Stale executions"), on DynamoDB Local with the real scheduler, cancel and retry, and the
 * lifecycle steps driven as the state machine calls them: with `executionArn` =
 * `$$.Execution.Id`. The Step Functions peer is the harness's loopback one; the interleavings
 * are made deterministic by holding its StartExecution answer or refusing a start.
 */

const RUN = suffix();
const ALICE = { id: "alice", admin: false };
const CPU_NODE = { cpu: 2, memoryMb: 4096, gpu: 0 };
let h: Harness;

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-guard-${RUN}-`));
});
afterAll(() => h?.close());

async function newPoolWithNode(): Promise<{ pool: string; nodeId: string }> {
  const pool = `g${suffix()}`;
  h.addPool({ name: pool, labels: {}, nodes: 1, node: CPU_NODE });
  const nodeId = `node-${suffix()}`;
  await h.nodes.register({ pool, nodeId, workerId: `worker-${nodeId}`, capacity: CPU_NODE }, h.clock.read());
  return { pool, nodeId };
}

const nodeUsed = async (pool: string, nodeId: string) => (await h.nodes.getNode(pool, nodeId))?.used;

/** A lifecycle step exactly as the state machine's Payload makes it (the Lambda parses it so). */
function step(payload: Record<string, unknown>) {
  return runLifecycleStep(h.reconciler, lifecycleRequestSchema.parse(payload));
}

const attemptRecord = (id: string, attempt: number) =>
  h.repo.getItem({ pk: jobPk(id), sk: attemptSk(attempt) });

describe("a stale execution's AttemptFailed and Requeue", () => {
  it("leave alone an attempt of a newer admission with the same attempt number", async () => {
    // Prepare: the first admission's StartExecution is answered with an error although AWS
    // started it (as a timeout after acceptance can do); the scheduler undoes the admission
    // (attempts back to 0) and a later pass admits the job again: attempt 1 once more, under
    // another execution, and a worker starts it.
    const { pool, nodeId } = await newPoolWithNode();
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    h.sfn.refusedStarts.add(id);
    const undone = await schedulePool(h.scheduler, pool);
    expect(undone.undone).toEqual([id]);
    const [staleStart] = h.sfn.startRequests(id);
    const staleArn = executionArn(id, Number(staleStart?.name.split("-").pop()));
    h.sfn.refusedStarts.delete(id);
    await schedulePool(h.scheduler, pool);
    const admitted = await jobItem(h, id);
    expect(admitted).toMatchObject({ status: "dispatched", attempts: 1 });
    expect(admitted.executionArn).not.toBe(staleArn);
    await startOnReservedNode(h, id, "run-token-of-the-current-execution");
    const running = await jobItem(h, id);

    // Act: the stale execution's Dispatch times out (nobody heartbeats its token): AttemptFailed
    // for attempt 1, then its Requeue.
    const decision = await step({
      action: "attempt-failed",
      jobId: id,
      attempt: 1,
      error: { Error: "States.HeartbeatTimeout", Cause: "" },
      executionArn: staleArn,
    });
    const requeued = await step({ action: "requeue", jobId: id, executionArn: staleArn });

    // Assess: nothing changed; the stale execution ends.
    expect(decision).toEqual({ next: "end", delaySeconds: 0 });
    expect(requeued).toEqual({ status: "running" });
    expect(await jobItem(h, id)).toEqual(running);
    expect(await attemptRecord(id, 1)).toMatchObject({ status: "running" });
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 1, memoryMb: 512, gpu: 0 });
  });

  it("still act for the execution the job names, and for callers that name none (earlier definition, reconciler)", async () => {
    // Prepare: two jobs running their first attempt under the execution their admission wrote.
    const { pool, nodeId } = await newPoolWithNode();
    const [current = "", legacy = ""] = await submitWaiting(h, "alice", [{ pool }, { pool }]);
    await schedulePool(h.scheduler, pool);
    await startOnReservedNode(h, current, "run-current");
    await startOnReservedNode(h, legacy, "run-legacy");
    const currentArn = (await jobItem(h, current)).executionArn;

    // Act: the current execution's step names itself; an earlier definition's names none.
    const named = await step({
      action: "attempt-failed",
      jobId: current,
      attempt: 1,
      error: { Error: "ValueError", Cause: "boom" },
      executionArn: currentArn,
    });
    const unnamed = await step({
      action: "attempt-failed",
      jobId: legacy,
      attempt: 1,
      error: { Error: "ValueError", Cause: "boom" },
    });

    // Assess: both attempts ended, once each; capacity released.
    expect(named).toMatchObject({ next: "retry" });
    expect(unnamed).toMatchObject({ next: "retry" });
    expect((await jobItem(h, current)).status).toBe("retrying");
    expect((await jobItem(h, legacy)).status).toBe("retrying");
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(await step({ action: "requeue", jobId: current, executionArn: currentArn })).toEqual({
      status: "queued",
    });
    expect(await step({ action: "requeue", jobId: legacy })).toEqual({ status: "queued" });
  });

  it("a Requeue of an execution ended by a cancel does not cut short the backoff of the retried job's next attempt", async () => {
    // Prepare: attempt 1 runs under its execution; a person cancels (its StopExecution is lost
    // here: the execution goes on to its steps) and retries the job; attempt 2 runs under a new
    // execution, fails, and waits out its backoff.
    const { pool } = await newPoolWithNode();
    const [id = ""] = await submitWaiting(h, "alice", [
      {
        pool,
        retry: {
          maxAttempts: 3,
          strategy: "exponential",
          initialDelaySeconds: 600,
          backoffMultiplier: 2,
          maxDelaySeconds: 3600,
        },
      },
    ]);
    await schedulePool(h.scheduler, pool);
    await startOnReservedNode(h, id, "run-1");
    const firstArn = (await jobItem(h, id)).executionArn;
    await cancelJob(h.reconciler, ALICE, id);
    await retryJob(h.reconciler, ALICE, id, {});
    await schedulePool(h.scheduler, pool);
    await startOnReservedNode(h, id, "run-2");
    const secondArn = (await jobItem(h, id)).executionArn;
    expect(secondArn).not.toBe(firstArn);
    await step({
      action: "attempt-failed",
      jobId: id,
      attempt: 2,
      error: { Error: "ValueError", Cause: "boom" },
      executionArn: secondArn,
    });
    const waiting = await jobItem(h, id);
    expect(waiting).toMatchObject({ status: "retrying", attempts: 2 });

    // Act: the first execution's late steps, as if its Dispatch failed only now.
    const decision = await step({
      action: "attempt-failed",
      jobId: id,
      attempt: 1,
      error: { Error: "States.Timeout", Cause: "" },
      executionArn: firstArn,
    });
    const requeued = await step({ action: "requeue", jobId: id, executionArn: firstArn });

    // Assess: the job still waits out attempt 2's backoff; attempt 2's own Requeue moves it.
    expect(decision).toEqual({ next: "end", delaySeconds: 0 });
    expect(requeued).toEqual({ status: "retrying" });
    expect(await jobItem(h, id)).toEqual(waiting);
    expect(await step({ action: "requeue", jobId: id, executionArn: secondArn })).toEqual({
      status: "queued",
    });
  });
});

describe("a cancel that comes between the admission and its StartExecution", () => {
  it("keeps the job cancelled, its capacity released once, and has the late execution's message dismissed", async () => {
    // Prepare: the pass stops inside StartExecution, after the admission's transaction.
    const { pool, nodeId } = await newPoolWithNode();
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    const hold = h.sfn.hold(["StartExecution"]);
    const pass = schedulePool(h.scheduler, pool);
    await hold.arrived;
    const dispatched = await jobItem(h, id);
    const arn = dispatched.executionArn ?? "";

    // Act: the cancel finds no execution to stop; then StartExecution starts it, and its
    // Dispatch state sends the attempt, which a worker of the pool receives.
    await cancelJob(h.reconciler, ALICE, id);
    hold.release();
    const summary = await pass;
    const node = await h.nodes.getNode(pool, nodeId);
    if (!node) throw new Error("node gone");
    const start = await startAttempt(
      { repo: h.repo, clock: h.clock.read, nodesTable: h.scheduler.nodesTable, events: h.events },
      {
        jobId: id,
        attempt: dispatched.attempts,
        node: { pool, nodeId, workerId: node.workerId, capacity: node.capacity },
        runToken: "run-of-the-late-execution",
        executionArn: arn,
      },
    );

    // Assess: the cancel asked to stop an execution that did not exist yet; the late one was
    // started; the worker starts nothing and is told to answer its run token (worker.test.ts
    // shows the answer: SendTaskSuccess, which ends the execution at Dispatch).
    expect(h.sfn.stops()).toContain(arn);
    expect(h.sfn.execution(arn)?.status).toBe("RUNNING");
    expect(summary.admitted).toEqual([{ jobId: id, nodeId }]);
    expect(start).toEqual({
      outcome: "stale",
      reason: `job ${id} is cancelled at attempt 1, not dispatched for attempt 1`,
      dismiss: true,
    });
    const job = await jobItem(h, id);
    expect(job.status).toBe("cancelled");
    expect(job.reservation).toBeUndefined();
    expect(await attemptRecord(id, 1)).toBeUndefined();
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    // Were the execution's Dispatch to fail anyway (its heartbeat timeout), its steps change nothing.
    expect(
      await step({
        action: "attempt-failed",
        jobId: id,
        attempt: 1,
        error: { Error: "States.HeartbeatTimeout", Cause: "" },
        executionArn: arn,
      }),
    ).toEqual({ next: "end", delaySeconds: 0 });
    expect(await jobItem(h, id)).toEqual(job);
    expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
  });

  it("does not dismiss the execution of an attempt that runs: a duplicate message is only dropped", async () => {
    const { pool, nodeId } = await newPoolWithNode();
    const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
    await schedulePool(h.scheduler, pool);
    const arn = (await jobItem(h, id)).executionArn;
    await startOnReservedNode(h, id, "run-1");
    const node = await h.nodes.getNode(pool, nodeId);
    if (!node) throw new Error("node gone");
    const worker = { pool, nodeId, workerId: node.workerId, capacity: node.capacity };
    const ctx = { repo: h.repo, clock: h.clock.read, nodesTable: h.scheduler.nodesTable, events: h.events };

    const duplicate = await startAttempt(ctx, {
      jobId: id,
      attempt: 1,
      node: worker,
      runToken: "run-1",
      executionArn: arn,
    });
    const otherExecution = await startAttempt(ctx, {
      jobId: id,
      attempt: 1,
      node: worker,
      runToken: "run-x",
      executionArn: executionArn(id, 1),
    });
    const earlierDefinition = await startAttempt(ctx, {
      jobId: id,
      attempt: 1,
      node: worker,
      runToken: "run-1",
    });

    expect(duplicate).toMatchObject({ outcome: "stale" });
    expect(duplicate).not.toHaveProperty("dismiss");
    expect(otherExecution).toMatchObject({ outcome: "stale", dismiss: true });
    expect(earlierDefinition).toMatchObject({ outcome: "stale" });
    expect(earlierDefinition).not.toHaveProperty("dismiss");
  });
});

describe("the same interleaving on the local stack's pieces: real ASL, local Step Functions and SQS, a worker", () => {
  it("ends the late execution at Dispatch as soon as a worker receives its attempt: one state transition, no lifecycle step", async () => {
    // Prepare: a pool whose only node is a real worker's, its queues on the local SQS, and the
    // lifecycle definition on the local Step Functions, whose steps run app/lifecycle.ts.
    const pool = `e${suffix()}`;
    h.addPool({ name: pool, labels: {}, nodes: 1, node: CPU_NODE });
    const sqs = await startLocalSqs({ pools: [pool], region: LOCAL_REGION, queuePrefix: `guard-${RUN}-` });
    const steps: unknown[] = [];
    let lifecycle: LifecycleContext = h.reconciler;
    const sfn = await startLocalStepFunctions({
      region: LOCAL_REGION,
      log: false,
      sqsEndpoint: sqs.endpoint,
      stateMachines: [
        {
          name: "jobq-lifecycle",
          definition: loadStateMachineDefinition(
            join(import.meta.dirname, "../../state-machines/job-lifecycle.asl.json"),
            { LifecycleFunctionArn: `arn:aws:lambda:${LOCAL_REGION}:000000000000:function:jobq-lifecycle` },
          ),
        },
      ],
      resolveFunction: () => async (event: unknown) => {
        steps.push(event);
        return runLifecycleStep(lifecycle, lifecycleRequestSchema.parse(event));
      },
    });
    const sfnClient = new SFNClient({ ...awsClientOptions(sfn.endpoint, LOCAL_REGION), maxAttempts: 1 });
    const sqsClient = new SQSClient(awsClientOptions(sqs.endpoint, LOCAL_REGION));
    const real = new StepFunctionsExecutions(sfnClient, sfn.stateMachineArn("jobq-lifecycle"));
    lifecycle = { ...h.reconciler, executions: real };
    // The cancel arrives after the admission's transaction, before its StartExecution.
    const cancelFirst: LifecycleExecutions = {
      arnOf: (jobId, version) => real.arnOf(jobId, version),
      stop: (arn, cause) => real.stop(arn, cause),
      start: async (jobId, version, input) => {
        await cancelJob(lifecycle, ALICE, jobId);
        return real.start(jobId, version, input);
      },
    };
    const worker = new Worker(
      {
        pool,
        nodeName: `${pool}-n`,
        workerId: `${pool}-worker`,
        capacity: CPU_NODE,
        queues: sqs.queues[pool] ?? {},
        heartbeatSeconds: 30,
        nodeHeartbeatMs: 300,
        pollWaitSeconds: 1,
        nodesTable: h.scheduler.nodesTable,
        logFlushMs: 100,
      },
      {
        repo: h.repo,
        nodes: h.nodes,
        sqs: sqsClient,
        sfn: sfnClient,
        events: h.events,
        usage: lifecycle.usage,
        registry: registerExampleTasks(new TaskRegistry()),
      },
    );
    try {
      await worker.start();
      const nodeId = worker.snapshot().nodeId;
      const [id = ""] = await submitWaiting(h, "alice", [{ pool }]);
      h.clock.now = new Date();

      // Act
      const summary = await schedulePool(
        { ...h.scheduler, executions: cancelFirst, queues: sqs.queues },
        pool,
      );
      const arn = (await jobItem(h, id)).executionArn ?? "";
      let status: string | undefined;
      for (;;) {
        status = (await sfnClient.send(new DescribeExecutionCommand({ executionArn: arn }))).status;
        if (status !== "RUNNING") break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }

      // Assess: admitted, cancelled, and the execution over long before its heartbeat backstop
      // (lostAfterSeconds = 300 s): it entered Dispatch only and invoked no lifecycle step.
      expect(summary.admitted).toEqual([{ jobId: id, nodeId }]);
      expect(status).toBe("SUCCEEDED");
      expect(sfn.meter()).toEqual({ executions: 1, stateTransitions: 1 });
      expect(steps).toEqual([]);
      const job = await jobItem(h, id);
      expect(job.status).toBe("cancelled");
      expect(job.reservation).toBeUndefined();
      expect(await attemptRecord(id, 1)).toBeUndefined();
      expect(await nodeUsed(pool, nodeId)).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
      expect(worker.snapshot().running).toEqual([]);

      // And a job nobody cancels runs: `$$.Execution.Id` is the ARN its admission wrote.
      const [next = ""] = await submitWaiting(h, "alice", [{ pool, type: "echo" }]);
      await schedulePool({ ...h.scheduler, executions: real, queues: sqs.queues }, pool);
      const nextArn = (await jobItem(h, next)).executionArn ?? "";
      for (;;) {
        status = (await sfnClient.send(new DescribeExecutionCommand({ executionArn: nextArn }))).status;
        if (status !== "RUNNING") break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(status).toBe("SUCCEEDED");
      expect((await jobItem(h, next)).status).toBe("completed");
      expect(steps).toEqual([]);
    } finally {
      await worker.stop(200);
      sfnClient.destroy();
      sqsClient.destroy();
      await sfn.stop();
      await sqs.stop();
    }
  });
});
