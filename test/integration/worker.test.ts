import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SFNClient } from "@aws-sdk/client-sfn";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  SendMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { PutCommand } from "@aws-sdk/lib-dynamodb";
import { type FauxqsServer, startFauxqs } from "fauxqs";
import { ulid } from "ulid";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { cancelJob } from "../../app/actions";
import type { JobEventPublisher, JobStateChange } from "../../app/events";
import { executionArnOf } from "../../app/executions";
import { type Job, PRIORITY_NAMES, type PriorityName, type Resources } from "../../core/job";
import { LOCAL_REGION } from "../../local/config";
import { endedByCompletion } from "../../store/attempts";
import { awsClientOptions } from "../../store/aws";
import { reservationFor, reserveCapacityItem } from "../../store/capacity";
import { createDocumentClient } from "../../store/dynamo";
import { indexAttributes, type Reservation, toJobItem } from "../../store/job-items";
import { JobRepository } from "../../store/job-repository";
import {
  ATTEMPT_PREFIX,
  attemptSk,
  JOB_SK,
  jobPk,
  LOG_PREFIX,
  RESULT_SK,
  TRANSITION_PREFIX,
} from "../../store/keys";
import { NodeRepository } from "../../store/nodes";
import { UsageRepository } from "../../store/usage";
import { defineTask, TaskRegistry } from "../../worker/registry";
import { Worker, type WorkerOptions } from "../../worker/runtime";
import { registerExampleTasks } from "../../worker/tasks/examples";

/**
 * The worker against real peers: DynamoDB Local (the shared integration instance), fauxqs as SQS
 * in process, and a loopback HTTP server speaking Step Functions' JSON protocol for the
 * SendTask* calls, which records them and refuses the tokens a test tells it to. Each test gets
 * its own pool (queues, nodes) and its own jobs. On success the worker completes the job itself
 * (app/lifecycle.ts#completeRun) before it answers the run token.
 */

// ---- a Step Functions peer for the task-token calls -----------------------------------------

interface SfnCall {
  readonly action: string;
  readonly body: Record<string, unknown>;
  /** What `observe` saw when the call arrived, before it was answered. */
  readonly seen?: unknown;
}

interface FakeStepFunctions {
  readonly endpoint: string;
  readonly calls: SfnCall[];
  /** From now on, answer every call for this token with this error (e.g. TaskTimedOut). */
  refuse(token: string, errorType: string): void;
  callsFor(token: string, action?: string): SfnCall[];
  /** Runs on every call before it is answered; its value is kept as the call's `seen`. */
  observe(probe: ((body: Record<string, unknown>) => Promise<unknown>) | null): void;
  close(): Promise<void>;
}

async function startFakeStepFunctions(): Promise<FakeStepFunctions> {
  const calls: SfnCall[] = [];
  const refusals = new Map<string, string>();
  let probe: ((body: Record<string, unknown>) => Promise<unknown>) | null = null;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", async () => {
      const target = String(req.headers["x-amz-target"] ?? "");
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
      const action = target.replace(/^AWSStepFunctions\./, "");
      const seen = probe ? await probe(body).catch((error: unknown) => error) : undefined;
      calls.push({ action, body, seen });
      const refusal = refusals.get(String(body.taskToken));
      res.setHeader("content-type", "application/x-amz-json-1.0");
      if (req.method !== "POST" || !target.startsWith("AWSStepFunctions.")) {
        res.writeHead(400).end(JSON.stringify({ __type: "UnknownOperationException", message: target }));
      } else if (refusal) {
        res.writeHead(400).end(JSON.stringify({ __type: refusal, message: "the execution no longer waits" }));
      } else {
        res.writeHead(200).end("{}");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    calls,
    refuse: (token, errorType) => refusals.set(token, errorType),
    callsFor: (token, action) =>
      calls.filter((c) => c.body.taskToken === token && (action === undefined || c.action === action)),
    observe: (next) => {
      probe = next;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// ---- shared peers --------------------------------------------------------------------------

const tables = inject("tables");
const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
const jobsTable = tables.Jobs ?? "";
const nodesTable = tables.Nodes ?? "";
const repo = new JobRepository(db, jobsTable);
const nodes = new NodeRepository(db, nodesTable);
const usage = new UsageRepository(db, tables.Policy ?? "");

let fauxqs: FauxqsServer;
let sqs: SQSClient;
let stepFunctions: FakeStepFunctions;
let sfn: SFNClient;

beforeAll(async () => {
  fauxqs = await startFauxqs({ port: 0, logger: false });
  sqs = new SQSClient(awsClientOptions(fauxqs.address, LOCAL_REGION));
  stepFunctions = await startFakeStepFunctions();
  sfn = new SFNClient({ ...awsClientOptions(stepFunctions.endpoint, LOCAL_REGION), maxAttempts: 1 });
});

afterAll(async () => {
  db.destroy();
  sqs?.destroy();
  sfn?.destroy();
  await stepFunctions?.close();
  await fauxqs?.stop();
});

const started: Worker[] = [];
afterEach(async () => {
  stepFunctions.observe(null);
  await Promise.all(started.splice(0).map((w) => w.stop(200)));
});

// ---- building a pool, a worker, jobs and messages -------------------------------------------

const TIERS = Object.keys(PRIORITY_NAMES) as PriorityName[];

interface TestPool {
  readonly name: string;
  readonly queues: Record<PriorityName, string>;
}

async function createPool(): Promise<TestPool> {
  const name = `w${randomBytes(5).toString("hex")}`;
  const queues = {} as Record<PriorityName, string>;
  for (const tier of TIERS) {
    const out = await sqs.send(new CreateQueueCommand({ QueueName: `${name}-${tier}` }));
    queues[tier] = out.QueueUrl ?? "";
  }
  return { name, queues };
}

class RecordingEvents implements JobEventPublisher {
  readonly changes: JobStateChange[] = [];
  /** Runs as each change is published: right after the write that made it. */
  onPublish?: (change: JobStateChange) => Promise<void>;
  async publish(changes: readonly JobStateChange[]): Promise<void> {
    this.changes.push(...changes);
    for (const change of changes) await this.onPublish?.(change);
  }
}

interface TestWorker {
  readonly worker: Worker;
  readonly nodeId: string;
  readonly events: RecordingEvents;
}

function createWorker(
  pool: TestPool,
  options: Partial<WorkerOptions> = {},
  registry = registerExampleTasks(new TaskRegistry()),
): TestWorker {
  let registrations = 0;
  const events = new RecordingEvents();
  const worker = new Worker(
    {
      pool: pool.name,
      nodeName: `${pool.name}-n`,
      workerId: `${pool.name}-worker`,
      capacity: { cpu: 2, memoryMb: 4096, gpu: 0 },
      queues: pool.queues,
      heartbeatSeconds: 30,
      nodeHeartbeatMs: 300,
      pollWaitSeconds: 1,
      nodesTable,
      logFlushMs: 100,
      // Predictable ids, still fresh for every registration as store/nodes.ts requires.
      newNodeId: (name) => `${name}${++registrations}`,
      ...options,
    },
    { repo, nodes, sqs, sfn, events, usage, registry },
  );
  started.push(worker);
  return { worker, nodeId: worker.snapshot().nodeId, events };
}

async function startWorker(
  pool: TestPool,
  options: Partial<WorkerOptions> = {},
  registry = registerExampleTasks(new TaskRegistry()),
): Promise<TestWorker> {
  const created = createWorker(pool, options, registry);
  await created.worker.start();
  return created;
}

/** A job as the scheduler leaves it: dispatched, attempt counted, capacity reserved on a node. */
async function putDispatchedJob(
  pool: TestPool,
  nodeId: string,
  spec: {
    type: string;
    payload?: unknown;
    resources?: Partial<Resources>;
    timeoutSeconds?: number;
    status?: Job["status"];
    priority?: number;
    /** The execution the admission wrote (`executionArn` on the job item). */
    executionArn?: string;
  },
): Promise<{ job: Job; reservation: Reservation }> {
  const now = new Date().toISOString();
  const resources: Resources = { cpu: 1, memoryMb: 512, gpu: 0, ...spec.resources };
  const job: Job = {
    id: `job_${ulid()}`,
    name: null,
    type: spec.type,
    status: spec.status ?? "dispatched",
    statusReason: `dispatched to node ${nodeId}`,
    reasonCode: null,
    priority: spec.priority ?? 0,
    owner: "worker-test",
    payload: spec.payload ?? null,
    result: null,
    error: null,
    resources,
    pool: pool.name,
    constraints: {},
    dependsOn: [],
    retry: {
      maxAttempts: 3,
      strategy: "exponential",
      initialDelaySeconds: 1,
      backoffMultiplier: 2,
      maxDelaySeconds: 60,
    },
    timeoutSeconds: spec.timeoutSeconds ?? 60,
    attempts: 1,
    runAt: null,
    deadline: null,
    offPeakOnly: false,
    onFailure: null,
    onTimeout: null,
    tags: {},
    escalatedTo: null,
    scheduleId: null,
    project: null,
    createdAt: now,
    updatedAt: now,
    startedAt: null,
    finishedAt: null,
    nextAttemptAt: null,
    version: 3,
  };
  const reservation = reservationFor(pool.name, nodeId, resources);
  const holds = job.status === "dispatched" || job.status === "running";
  await db.send(
    new PutCommand({
      TableName: jobsTable,
      Item: {
        ...toJobItem(job, 0, false),
        ...(holds ? { reservation, ...indexAttributes({ ...job, reservation }, false) } : {}),
        ...(spec.executionArn ? { executionArn: spec.executionArn } : {}),
      },
    }),
  );
  return { job, reservation };
}

/** What the scheduler's admission transaction does to the node: used += the job's resources. */
async function bookOnNode(reservation: Reservation, capacity = { cpu: 2, memoryMb: 4096, gpu: 0 }) {
  await repo.transact([reserveCapacityItem(nodesTable, reservation, capacity)]);
}

async function sendDispatch(
  pool: TestPool,
  job: Job,
  runToken: string,
  tier: PriorityName = "normal",
  extra: Record<string, unknown> = {},
): Promise<void> {
  await sqs.send(
    new SendMessageCommand({
      QueueUrl: pool.queues[tier],
      MessageBody: JSON.stringify({
        jobId: job.id,
        attempt: 1,
        type: job.type,
        payload: job.payload,
        timeoutSeconds: job.timeoutSeconds,
        heartbeatSeconds: 30,
        runToken,
        ...extra,
      }),
    }),
  );
}

const token = (label: string) => `${label}-${randomBytes(6).toString("hex")}`;

async function eventually<T>(probe: () => Promise<T | undefined | null | false>, what: string, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const reported = (runToken: string, action: "SendTaskSuccess" | "SendTaskFailure") =>
  eventually(async () => stepFunctions.callsFor(runToken, action)[0], `${action} for ${runToken}`);

async function queueDepth(pool: TestPool): Promise<number> {
  let total = 0;
  for (const url of Object.values(pool.queues)) {
    const out = await sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: url,
        AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
      }),
    );
    total +=
      Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
      Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
  }
  return total;
}

async function partition(jobId: string, prefix: string) {
  return (await repo.queryJobPartition(jobId, prefix, { limit: 100 })).items;
}

// ---- the tests -----------------------------------------------------------------------------

describe("worker", () => {
  it("starts the attempt, runs echo, completes the job with its result, then reports success on the run token", async () => {
    const pool = await createPool();
    const { nodeId, events } = await startWorker(pool);
    const payload = { greeting: "hello", numbers: [1, 2.5, 5e-324] };
    const { job, reservation } = await putDispatchedJob(pool, nodeId, { type: "echo", payload });
    await bookOnNode(reservation);
    const runToken = token("echo");
    // The job as the run token's answer finds it: completed first, so the execution may end at once.
    stepFunctions.observe(async () => (await repo.getJob(job.id))?.item.status);

    await sendDispatch(pool, job, runToken);
    const success = await reported(runToken, "SendTaskSuccess");

    expect(JSON.parse(String(success.body.output))).toEqual({ ok: true });
    expect(success.seen).toBe("completed");
    const stored = await repo.getJob(job.id);
    expect(stored?.result).toEqual(payload);
    expect(stored?.item).toMatchObject({
      status: "completed",
      statusReason: "completed on attempt 1",
      version: job.version + 2,
    });
    expect(stored?.item.reservation).toBeUndefined();
    expect(stored?.item.finishedAt).toEqual(expect.any(String));
    expect(stored?.item.startedAt).toEqual(stored?.item.attemptStartedAt);
    expect((await nodes.getNode(pool.name, nodeId))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(await repo.getItem({ pk: jobPk(job.id), sk: RESULT_SK })).toMatchObject({ attempt: 1 });
    // The start stored the attempt's record, so the completion left it as the start wrote it;
    // reads show it ended by the completion (store/attempts.ts#endedByCompletion).
    const [attempt] = await partition(job.id, ATTEMPT_PREFIX);
    expect(attempt).toMatchObject({
      sk: attemptSk(1),
      attempt: 1,
      status: "running",
      workerId: `${pool.name}-worker`,
      nodeId,
      pool: pool.name,
      startedAt: stored?.item.attemptStartedAt,
      finishedAt: null,
    });
    if (!attempt || !stored) throw new Error("no attempt record, or no job");
    expect(endedByCompletion(attempt, stored.item)).toMatchObject({
      status: "succeeded",
      finishedAt: stored.item.finishedAt,
      error: null,
    });
    // The completion writes no record: reads derive its row from the job (lifecycle.test.ts).
    const transitions = await partition(job.id, TRANSITION_PREFIX);
    expect(transitions.map((t) => ({ from: t.from, to: t.to, reason: t.reason }))).toEqual([
      { from: "dispatched", to: "running", reason: `running on node ${nodeId}` },
    ]);
    expect(
      events.changes.filter((c) => c.jobId === job.id).map((c) => `${c.previousStatus}→${c.status}`),
    ).toEqual(["dispatched→running", "running→completed"]);
    expect(stepFunctions.callsFor(runToken, "SendTaskFailure")).toEqual([]);
    expect(await queueDepth(pool)).toBe(0);
  });

  it("stores nothing and reports nothing when its job ended while the task ran", async () => {
    const pool = await createPool();
    const { worker, nodeId } = await startWorker(pool);
    const { job, reservation } = await putDispatchedJob(pool, nodeId, {
      type: "sleep",
      payload: { seconds: 1 },
    });
    await bookOnNode(reservation);
    const runToken = token("ended");
    await sendDispatch(pool, job, runToken);
    await eventually(async () => worker.snapshot().running.length === 1, "the attempt to start");
    // What a cancel's transaction leaves behind (app/actions.ts): the job ended, capacity released.
    const running = (await repo.getJob(job.id))?.item;
    if (!running) throw new Error(`job ${job.id} not found`);
    await repo.changeStatus(
      running,
      { to: "cancelled", reason: "cancelled by the test", triggeredBy: null, remove: ["reservation"] },
      new Date().toISOString(),
    );
    const cancelled = await repo.getJob(job.id);

    await eventually(async () => worker.snapshot().running.length === 0, "the attempt to end");
    await eventually(async () => (await partition(job.id, LOG_PREFIX)).length > 0, "the end to be logged");

    expect(stepFunctions.callsFor(runToken, "SendTaskSuccess")).toEqual([]);
    expect(stepFunctions.callsFor(runToken, "SendTaskFailure")).toEqual([]);
    expect(await repo.getItem({ pk: jobPk(job.id), sk: RESULT_SK })).toBeUndefined();
    expect((await repo.getJob(job.id))?.item).toEqual(cancelled?.item);
    const [line] = await partition(job.id, LOG_PREFIX);
    expect(line).toMatchObject({
      level: "warn",
      message: expect.stringMatching(/^attempt 1 stopped: the job no longer runs this attempt/),
    });
  });

  it("writes the task's log lines under the job's partition, all of them before the job shows completed", async () => {
    const pool = await createPool();
    // No timed flush during the attempt: the lines are written at its end or not at all.
    const { nodeId, events } = await startWorker(pool, { logFlushMs: 60_000 });
    const { job } = await putDispatchedJob(pool, nodeId, { type: "log", payload: { lines: 3 } });
    const runToken = token("log");
    let storedWhenCompleted: number | undefined;
    events.onPublish = async (change) => {
      if (change.jobId === job.id && change.status === "completed")
        storedWhenCompleted = (await partition(job.id, LOG_PREFIX)).length;
    };

    await sendDispatch(pool, job, runToken);
    await reported(runToken, "SendTaskSuccess");

    // A reader that sees the job completed (`jobq logs --follow`) then reads its whole log.
    expect(storedWhenCompleted).toBe(3);
    const lines = await partition(job.id, LOG_PREFIX);
    expect(lines.map((l) => ({ level: l.level, message: l.message, attempt: l.attempt }))).toEqual([
      { level: "info", message: "log line 1 of 3", attempt: 1 },
      { level: "info", message: "log line 2 of 3", attempt: 1 },
      { level: "info", message: "log line 3 of 3", attempt: 1 },
    ]);
    expect(lines.every((l) => typeof l.timestamp === "string")).toBe(true);
  });

  it("moves a reservation made on another node of the pool to its own node", async () => {
    const pool = await createPool();
    const { nodeId } = await startWorker(pool);
    const otherId = `${pool.name}-other`;
    await nodes.register(
      {
        pool: pool.name,
        nodeId: otherId,
        workerId: "other-worker",
        capacity: { cpu: 2, memoryMb: 4096, gpu: 0 },
      },
      new Date(),
    );
    const { job, reservation } = await putDispatchedJob(pool, otherId, {
      type: "echo",
      payload: 1,
      resources: { cpu: 1.5, memoryMb: 1024 },
    });
    await bookOnNode(reservation);
    const runToken = token("move");

    await sendDispatch(pool, job, runToken);
    await reported(runToken, "SendTaskSuccess");

    // The booking moved with the start, so the completion gave it back to this node: both at 0.
    const [attempt] = await partition(job.id, ATTEMPT_PREFIX);
    // Stored by the start (in its transaction), left running by the completion: reads end it.
    expect(attempt).toMatchObject({ nodeId, status: "running" });
    expect((await repo.getJob(job.id))?.item.status).toBe("completed");
    expect((await nodes.getNode(pool.name, otherId))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect((await nodes.getNode(pool.name, nodeId))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
  });

  it("leaves a job reserved elsewhere that does not fit its node to another worker", async () => {
    const pool = await createPool();
    const { nodeId } = await startWorker(pool);
    const otherId = `${pool.name}-big`;
    await nodes.register(
      {
        pool: pool.name,
        nodeId: otherId,
        workerId: "big-worker",
        capacity: { cpu: 8, memoryMb: 16_384, gpu: 0 },
      },
      new Date(),
    );
    const { job, reservation } = await putDispatchedJob(pool, otherId, {
      type: "echo",
      resources: { cpu: 4 },
    });
    await bookOnNode(reservation, { cpu: 8, memoryMb: 16_384, gpu: 0 });
    const runToken = token("nofit");

    await sendDispatch(pool, job, runToken);
    // Received and handed back: invisible for a few seconds, still in the queue.
    await eventually(async () => {
      const out = await sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: pool.queues.normal,
          AttributeNames: ["ApproximateNumberOfMessagesNotVisible"],
        }),
      );
      return out.Attributes?.ApproximateNumberOfMessagesNotVisible === "1";
    }, "the worker to receive the message");
    await new Promise((resolve) => setTimeout(resolve, 300));

    const stored = await repo.getJob(job.id);
    expect(stored?.item).toMatchObject({ status: "dispatched", reservation });
    expect(await partition(job.id, ATTEMPT_PREFIX)).toEqual([]);
    expect((await nodes.getNode(pool.name, otherId))?.used).toEqual({ cpu: 4, memoryMb: 512, gpu: 0 });
    expect((await nodes.getNode(pool.name, nodeId))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(stepFunctions.callsFor(runToken)).toEqual([]);
    expect(await queueDepth(pool)).toBe(1);
  });

  it("reports a failing task with its error type and message, and logs the failure", async () => {
    const pool = await createPool();
    const { nodeId } = await startWorker(pool);
    const { job } = await putDispatchedJob(pool, nodeId, { type: "fail", payload: { message: "disk full" } });
    const runToken = token("fail");

    await sendDispatch(pool, job, runToken);
    const failure = await reported(runToken, "SendTaskFailure");

    expect(failure.body).toMatchObject({ error: "task_failed", cause: "disk full" });
    expect(stepFunctions.callsFor(runToken, "SendTaskSuccess")).toEqual([]);
    expect((await repo.getJob(job.id))?.result).toBeNull();
    const lines = await partition(job.id, LOG_PREFIX);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: "error",
        message: "attempt 1 failed: task_failed: disk full",
        attempt: 1,
      }),
    );
  });

  it("drops the message of a job that is no longer dispatched, without running it", async () => {
    const pool = await createPool();
    const { nodeId } = await startWorker(pool);
    const { job } = await putDispatchedJob(pool, nodeId, { type: "echo", status: "cancelled" });
    const runToken = token("cancelled");

    await sendDispatch(pool, job, runToken);
    await eventually(async () => (await queueDepth(pool)) === 0, "the message to be deleted");

    expect(await partition(job.id, ATTEMPT_PREFIX)).toEqual([]);
    expect((await repo.getJob(job.id))?.item.status).toBe("cancelled");
    expect(stepFunctions.callsFor(runToken)).toEqual([]);
  });

  it("runs an attempt once when its message is delivered twice", async () => {
    const pool = await createPool();
    const { nodeId } = await startWorker(pool);
    const { job } = await putDispatchedJob(pool, nodeId, { type: "echo", payload: "once" });
    const runToken = token("twice");

    await sendDispatch(pool, job, runToken);
    await sendDispatch(pool, job, runToken);
    await reported(runToken, "SendTaskSuccess");
    await eventually(async () => (await queueDepth(pool)) === 0, "both messages to be gone");

    expect(stepFunctions.callsFor(runToken, "SendTaskSuccess")).toHaveLength(1);
    expect(await partition(job.id, ATTEMPT_PREFIX)).toHaveLength(1);
  });

  it("aborts a task when the lifecycle refuses its heartbeat, and reports nothing", async () => {
    const pool = await createPool();
    const { worker, nodeId } = await startWorker(pool);
    const { job } = await putDispatchedJob(pool, nodeId, { type: "sleep", payload: { seconds: 600 } });
    const runToken = token("refused");
    stepFunctions.refuse(runToken, "TaskTimedOut");

    await sendDispatch(pool, job, runToken, "normal", { heartbeatSeconds: 1 });
    await eventually(async () => stepFunctions.callsFor(runToken, "SendTaskHeartbeat")[0], "a heartbeat");
    await eventually(async () => worker.snapshot().running.length === 0, "the attempt to stop");
    await eventually(async () => (await partition(job.id, LOG_PREFIX)).length > 0, "the stop to be logged");

    expect(worker.snapshot().used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(stepFunctions.callsFor(runToken, "SendTaskSuccess")).toEqual([]);
    expect(stepFunctions.callsFor(runToken, "SendTaskFailure")).toEqual([]);
    const [line] = await partition(job.id, LOG_PREFIX);
    expect(line).toMatchObject({
      level: "warn",
      message: expect.stringMatching(/^attempt 1 stopped: .*TaskTimedOut/),
    });
  });

  it("stops an attempt at its timeoutSeconds and reports it as a timeout", async () => {
    const pool = await createPool();
    const { nodeId } = await startWorker(pool);
    const { job } = await putDispatchedJob(pool, nodeId, {
      type: "sleep",
      payload: { seconds: 600 },
      timeoutSeconds: 1,
    });
    const runToken = token("timeout");

    await sendDispatch(pool, job, runToken);
    const failure = await reported(runToken, "SendTaskFailure");

    expect(failure.body).toMatchObject({ error: "timeout", cause: "timed out after 1 s" });
  });

  it("fails an attempt whose result is larger than 256 KiB and stores no result", async () => {
    const pool = await createPool();
    const registry = registerExampleTasks(new TaskRegistry()).register(
      defineTask("huge-result", async () => "x".repeat(300 * 1024)),
    );
    const { nodeId } = await startWorker(pool, {}, registry);
    const { job } = await putDispatchedJob(pool, nodeId, { type: "huge-result" });
    const runToken = token("huge");

    await sendDispatch(pool, job, runToken);
    const failure = await reported(runToken, "SendTaskFailure");

    expect(failure.body).toMatchObject({
      // Marked unrecoverable (core/retry-rule.ts): the same handler would make the same result.
      error: "Unrecoverable.result_too_large",
      cause: expect.stringMatching(/^result too large: \d+ bytes serialized; the limit is 262144$/),
    });
    expect((await repo.getJob(job.id))?.result).toBeNull();
  });

  it("fails an attempt of a type it has no handler for", async () => {
    const pool = await createPool();
    const { nodeId } = await startWorker(pool);
    const { job } = await putDispatchedJob(pool, nodeId, { type: "train-model" });
    const runToken = token("unknown");

    await sendDispatch(pool, job, runToken);
    const failure = await reported(runToken, "SendTaskFailure");

    expect(failure.body).toMatchObject({
      // Marked unrecoverable: a retry would come back to a worker of the same pool.
      error: "Unrecoverable.unknown_type",
      cause: expect.stringContaining("train-model"),
    });
  });

  it("survives a task that throws synchronously and a non-error, and runs the next job", async () => {
    const pool = await createPool();
    const registry = registerExampleTasks(new TaskRegistry()).register(
      defineTask("explode", (() => {
        throw "boom";
      }) as unknown as () => Promise<unknown>),
    );
    const { nodeId } = await startWorker(pool, {}, registry);
    const exploding = await putDispatchedJob(pool, nodeId, { type: "explode" });
    const next = await putDispatchedJob(pool, nodeId, { type: "echo", payload: "still here" });
    const [explodeToken, nextToken] = [token("explode"), token("next")];

    await sendDispatch(pool, exploding.job, explodeToken);
    const failure = await reported(explodeToken, "SendTaskFailure");
    await sendDispatch(pool, next.job, nextToken);
    await reported(nextToken, "SendTaskSuccess");

    expect(failure.body).toMatchObject({ error: "Error", cause: "boom" });
    expect((await repo.getJob(next.job.id))?.result).toBe("still here");
  });

  it("takes the highest tier first", async () => {
    const pool = await createPool();
    // The id startWorker's first registration gets: the scheduler booked the jobs on this node.
    const nodeId = `${pool.name}-n1`;
    const low = await putDispatchedJob(pool, nodeId, { type: "echo", payload: "low", priority: -5 });
    const critical = await putDispatchedJob(pool, nodeId, {
      type: "echo",
      payload: "critical",
      priority: 10,
    });
    const normal = await putDispatchedJob(pool, nodeId, { type: "echo", payload: "normal" });
    const tokens = { low: token("low"), critical: token("critical"), normal: token("normal") };
    await sendDispatch(pool, low.job, tokens.low, "low");
    await sendDispatch(pool, normal.job, tokens.normal, "normal");
    await sendDispatch(pool, critical.job, tokens.critical, "critical");

    // Room for one job at a time: the order of reports is the order of starts.
    await startWorker(pool, { capacity: { cpu: 1, memoryMb: 4096, gpu: 0 } });
    await reported(tokens.low, "SendTaskSuccess");

    const order = stepFunctions.calls
      .filter(
        (c) => c.action === "SendTaskSuccess" && Object.values(tokens).includes(String(c.body.taskToken)),
      )
      .map((c) => c.body.taskToken);
    expect(order).toEqual([tokens.critical, tokens.normal, tokens.low]);
  });

  it("drains on stop: a running attempt finishes and reports before the node leaves", async () => {
    const pool = await createPool();
    const { worker, nodeId } = await startWorker(pool);
    const { job, reservation } = await putDispatchedJob(pool, nodeId, {
      type: "sleep",
      payload: { seconds: 1 },
    });
    // Booked as the scheduler books it: the completion gives it back, and an empty node may leave.
    await bookOnNode(reservation);
    const runToken = token("drain");
    await sendDispatch(pool, job, runToken);
    await eventually(async () => worker.snapshot().running.length === 1, "the attempt to start");

    await worker.stop(20_000);

    expect(stepFunctions.callsFor(runToken, "SendTaskSuccess")).toHaveLength(1);
    expect((await repo.getJob(job.id))?.result).toEqual({ slept: 1 });
    expect(worker.snapshot().state).toBe("stopped");
    expect(await nodes.getNode(pool.name, nodeId)).toBeNull();
  });

  it("notices an admin's drain on its node heartbeat: lets the attempt outlast the stop grace, then leaves", async () => {
    // Prepare: a grace far shorter than the attempt, and fast node heartbeats
    const pool = await createPool();
    const { worker, nodeId } = await startWorker(pool, { nodeHeartbeatMs: 100, shutdownGraceMs: 100 });
    const { job, reservation } = await putDispatchedJob(pool, nodeId, {
      type: "sleep",
      payload: { seconds: 1 },
    });
    await bookOnNode(reservation);
    const runToken = token("admin-drain");
    await sendDispatch(pool, job, runToken);
    await eventually(async () => worker.snapshot().running.length === 1, "the attempt to start");

    // Act: what POST /pools/{pool}/nodes/{id}/drain writes
    const drained = await nodes.drain(pool.name, nodeId, "ops", new Date());
    await eventually(async () => worker.snapshot().state === "stopped", "the worker to stop");

    // Assess: the attempt finished and reported; the node is gone
    expect(drained.kind).toBe("drained");
    expect(stepFunctions.callsFor(runToken, "SendTaskSuccess")).toHaveLength(1);
    expect(stepFunctions.callsFor(runToken, "SendTaskFailure")).toHaveLength(0);
    expect((await repo.getJob(job.id))?.result).toEqual({ slept: 1 });
    expect(await nodes.getNode(pool.name, nodeId)).toBeNull();
  });

  it("cuts an admin's unhurried drain to the grace of a stop that comes during it", async () => {
    // Prepare: an admin's drain under way, its attempt far from done
    const pool = await createPool();
    const { worker, nodeId } = await startWorker(pool, { nodeHeartbeatMs: 100 });
    const { job } = await putDispatchedJob(pool, nodeId, { type: "sleep", payload: { seconds: 600 } });
    const runToken = token("admin-drain-cut");
    await sendDispatch(pool, job, runToken);
    await eventually(async () => worker.snapshot().running.length === 1, "the attempt to start");
    await nodes.drain(pool.name, nodeId, "ops", new Date());
    await eventually(async () => worker.snapshot().state === "stopping", "the worker to notice the drain");

    // Act: SIGTERM's stop
    await worker.stop(200);

    // Assess
    const [failure] = stepFunctions.callsFor(runToken, "SendTaskFailure");
    expect(failure?.body).toMatchObject({ error: "worker_shutdown" });
    expect(worker.snapshot().state).toBe("stopped");
  });

  it("on stop aborts what outlasts the grace and reports it failed so it retries elsewhere", async () => {
    const pool = await createPool();
    const { worker, nodeId } = await startWorker(pool);
    const { job, reservation } = await putDispatchedJob(pool, nodeId, {
      type: "sleep",
      payload: { seconds: 600 },
    });
    await bookOnNode(reservation);
    const runToken = token("shutdown");
    await sendDispatch(pool, job, runToken);
    await eventually(async () => worker.snapshot().running.length === 1, "the attempt to start");

    await worker.stop(200);

    const [failure] = stepFunctions.callsFor(runToken, "SendTaskFailure");
    expect(failure?.body).toMatchObject({ error: "worker_shutdown", cause: "worker shutting down" });
    // Its reservation is released by the lifecycle's attempt-failed step, not here: the node
    // stays, draining, until then.
    expect((await nodes.getNode(pool.name, nodeId))?.status).toBe("draining");
  });

  it("takes no message once stopped", async () => {
    const pool = await createPool();
    const { worker, nodeId } = await startWorker(pool);
    await worker.stop(1000);
    const { job } = await putDispatchedJob(pool, nodeId, { type: "echo" });

    await sendDispatch(pool, job, token("late"));
    await new Promise((resolve) => setTimeout(resolve, 1500));

    expect(await queueDepth(pool)).toBe(1);
    expect((await repo.getJob(job.id))?.item.status).toBe("dispatched");
  });

  it("stopped while it registers, it still leaves no node behind", async () => {
    const pool = await createPool();
    const { worker, nodeId } = createWorker(pool);

    const starting = worker.start();
    const stopping = worker.stop(1000);
    await starting;
    await stopping;

    expect(worker.snapshot().state).toBe("stopped");
    expect(await nodes.getNode(pool.name, nodeId)).toBeNull();
  });

  it("registers again under a fresh node id when its node was marked lost", async () => {
    const pool = await createPool();
    const { worker, nodeId } = await startWorker(pool);
    expect(await nodes.setStatus(pool.name, nodeId, "lost")).toBe(true);

    const fresh = await eventually(async () => {
      const id = worker.snapshot().nodeId;
      return id !== nodeId ? id : null;
    }, "a new registration");

    expect(await nodes.getNode(pool.name, fresh)).toMatchObject({
      status: "up",
      workerId: `${pool.name}-worker`,
    });
    const { job } = await putDispatchedJob(pool, fresh, { type: "echo", payload: "after" });
    const runToken = token("fresh");
    await sendDispatch(pool, job, runToken);
    await reported(runToken, "SendTaskSuccess");
    expect((await partition(job.id, ATTEMPT_PREFIX))[0]).toMatchObject({ nodeId: fresh });
  });

  it("keeps the job item's index keys in step with its status through the start and the completion", async () => {
    const pool = await createPool();
    const { nodeId } = await startWorker(pool);
    const { job } = await putDispatchedJob(pool, nodeId, { type: "sleep", payload: { seconds: 1 } });
    const runToken = token("keys");

    await sendDispatch(pool, job, runToken);
    const running = await eventually(async () => {
      const item = await repo.getItem({ pk: jobPk(job.id), sk: JOB_SK });
      return item?.status === "running" ? item : null;
    }, "the job to run");
    await reported(runToken, "SendTaskSuccess");

    expect(running).toMatchObject({ ownerStatusPk: "O#worker-test#running", activePk: `ACT#${pool.name}` });
    expect(running.queuePk).toBeUndefined();
    const completed = await repo.getItem({ pk: jobPk(job.id), sk: JOB_SK });
    expect(completed).toMatchObject({ status: "completed", ownerStatusPk: "O#worker-test#completed" });
    expect(completed?.activePk).toBeUndefined();
    expect(completed?.queuePk).toBeUndefined();
  });

  it("answers the run token of a job cancelled before its execution started, and runs nothing: that execution ends", async () => {
    // Prepare: the scheduler's admission (job dispatched, booked on the node, executionArn
    // written); a cancel before StartExecution (it had no execution to stop); then the late
    // execution's Dispatch sends the attempt.
    const pool = await createPool();
    const { nodeId } = await startWorker(pool);
    const arn = executionArnOf("arn:aws:states:us-east-1:000000000000:stateMachine:jobq", `late-${ulid()}`);
    const { job, reservation } = await putDispatchedJob(pool, nodeId, { type: "echo", executionArn: arn });
    await bookOnNode(reservation);
    const stops: string[] = [];
    await cancelJob(
      {
        repo,
        clock: () => new Date(),
        nodesTable,
        usage,
        events: new RecordingEvents(),
        executions: {
          start: async () => null,
          arnOf: () => null,
          stop: async (executionArn) => {
            stops.push(executionArn);
          },
        },
      },
      { id: "worker-test", admin: false },
      job.id,
    );
    const runToken = token("late");

    // Act
    await sendDispatch(pool, job, runToken, "normal", { executionArn: arn });
    const answer = await reported(runToken, "SendTaskSuccess");
    await eventually(async () => (await queueDepth(pool)) === 0, "the message to be deleted");

    // Assess: the answer ends the execution at Dispatch (End: true), no lifecycle step runs; the
    // job stays cancelled and the capacity the cancel released is not released again.
    expect(stops).toEqual([arn]);
    expect(JSON.parse(String(answer.body.output))).toEqual({
      ok: false,
      dismissed: `job ${job.id} is cancelled at attempt 1, not dispatched for attempt 1`,
    });
    expect(stepFunctions.callsFor(runToken)).toHaveLength(1);
    expect(await partition(job.id, ATTEMPT_PREFIX)).toEqual([]);
    expect((await repo.getJob(job.id))?.item.status).toBe("cancelled");
    expect((await nodes.getNode(pool.name, nodeId))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
  });

  it("starts an attempt only for the execution its job names: another execution's message is answered and dropped", async () => {
    const pool = await createPool();
    const { nodeId } = await startWorker(pool);
    const machine = "arn:aws:states:us-east-1:000000000000:stateMachine:jobq";
    const current = executionArnOf(machine, `current-${ulid()}`);
    const stale = executionArnOf(machine, `stale-${ulid()}`);
    const { job, reservation } = await putDispatchedJob(pool, nodeId, {
      type: "echo",
      payload: "mine",
      executionArn: current,
    });
    await bookOnNode(reservation);
    const staleToken = token("stale");
    const currentToken = token("current");

    await sendDispatch(pool, job, staleToken, "normal", { executionArn: stale });
    await reported(staleToken, "SendTaskSuccess");
    await sendDispatch(pool, job, currentToken, "normal", { executionArn: current });
    const done = await reported(currentToken, "SendTaskSuccess");

    expect(JSON.parse(String(done.body.output))).toEqual({ ok: true });
    expect((await repo.getJob(job.id))?.item.status).toBe("completed");
    expect(await partition(job.id, ATTEMPT_PREFIX)).toHaveLength(1);
    expect(stepFunctions.callsFor(staleToken)).toHaveLength(1);
    expect((await nodes.getNode(pool.name, nodeId))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
  });
});
