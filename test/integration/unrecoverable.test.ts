import { randomBytes } from "node:crypto";
import { afterAll, beforeEach, describe, expect, inject, it } from "vitest";
import type { JobEventPublisher, JobStateChange } from "../../app/events";
import { executionArnOf, executionName, type LifecycleExecutions } from "../../app/executions";
import {
  type DispatchInput,
  type LifecycleContext,
  lifecycleRequestSchema,
  runLifecycleStep,
  type TaskTokens,
} from "../../app/lifecycle";
import { submitJobs } from "../../app/submit";
import { batchJobSchema } from "../../core/job";
import type { PoolConfig } from "../../core/pools";
import { reportedErrorName } from "../../core/retry-rule";
import { LOCAL_REGION } from "../../local/config";
import type { NodeCapacity } from "../../store/capacity";
import { createDocumentClient } from "../../store/dynamo";
import type { JobItem } from "../../store/job-items";
import { JobRepository } from "../../store/job-repository";
import { attemptSk, jobPk } from "../../store/keys";
import { NodeRepository } from "../../store/nodes";
import { UsageRepository } from "../../store/usage";
import { runOnNode } from "../support/attempts";

/**
 * The AttemptFailed step (app/attempt-failure.ts) on a failure the worker marked unrecoverable,
 * against DynamoDB Local: the step is invoked with the payload the state machine builds from the
 * Dispatch state's Catch (`error` = the SendTaskFailure error and cause), through the lifecycle
 * Lambda's own schema, so the mark is read where AWS would deliver it. The worker's side (the
 * name it reports) is test/integration/worker.test.ts; the whole path, test/e2e/unrecoverable.
 */

const NODE_CAPACITY: NodeCapacity = { cpu: 4, memoryMb: 8192, gpu: 0 };
const POOL = `unrec-${randomBytes(4).toString("hex")}`;
const STATE_MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:jobq-lifecycle";

class RecordingEvents implements JobEventPublisher {
  changes: JobStateChange[] = [];
  async publish(changes: readonly JobStateChange[]): Promise<void> {
    this.changes.push(...changes);
  }
}

class RecordingExecutions implements LifecycleExecutions {
  async start(jobId: string, version: number, _input: DispatchInput): Promise<string | null> {
    return this.arnOf(jobId, version);
  }
  arnOf(jobId: string, version: number): string {
    return executionArnOf(STATE_MACHINE_ARN, executionName(jobId, version));
  }
  async stop(): Promise<void> {}
}

const tokens: TaskTokens = { succeed: async () => true, fail: async () => true };

const tables = inject("tables");
const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
const repo = new JobRepository(db, tables.Jobs ?? "");
const nodesTable = tables.Nodes ?? "";
const usage = new UsageRepository(db, tables.Policy ?? "");
const pools: PoolConfig[] = [{ name: POOL, labels: {}, nodes: 1, node: NODE_CAPACITY }];

let ctx: LifecycleContext;
let owner: string;
let nodeId: string;

beforeEach(async () => {
  const now = new Date("2026-12-06T10:00:00.000Z");
  ctx = {
    repo,
    clock: () => now,
    nodesTable,
    pools,
    taskTypes: null,
    executions: new RecordingExecutions(),
    events: new RecordingEvents(),
    tokens,
    usage,
  };
  owner = `unrec-${randomBytes(4).toString("hex")}`;
  nodeId = `node-${randomBytes(4).toString("hex")}`;
  await new NodeRepository(db, nodesTable).register(
    { pool: POOL, nodeId, workerId: `worker-${nodeId}`, capacity: NODE_CAPACITY },
    now,
  );
});

afterAll(() => db.destroy());

async function submit(jobs: readonly Record<string, unknown>[]): Promise<(ref: string) => string> {
  const result = await submitJobs(ctx, {
    principal: { id: owner, admin: false },
    jobs: jobs.map((job) => batchJobSchema.parse({ type: "work", pool: POOL, ...job })),
  });
  return (ref) => {
    const id = result.refs[ref];
    if (!id) throw new Error(`no job for ref ${ref}`);
    return id;
  };
}

async function job(id: string): Promise<JobItem> {
  const item = (await repo.getJobItems([id])).get(id);
  if (!item) throw new Error(`job ${id} not found`);
  return item;
}

/** The AttemptFailed step as the state machine invokes it after the worker's SendTaskFailure. */
function attemptFailed(jobId: string, attempt: number, error: string, cause: string) {
  return runLifecycleStep(
    ctx,
    lifecycleRequestSchema.parse({
      action: "attempt-failed",
      jobId,
      attempt,
      error: { Error: error, Cause: cause },
    }),
  );
}

const retry = { maxAttempts: 3, strategy: "linear", initialDelaySeconds: 5 };

describe("attempt-failed on an unrecoverable failure", () => {
  it("ends the job failed after one attempt, with attempts left, saying no retry was made and why", async () => {
    // Prepare
    const id = await submit([
      { ref: "a", retry: { ...retry, strategy: "exponential" } },
      { ref: "b", dependsOn: ["a"] },
    ]);
    const [a, b] = [id("a"), id("b")];
    const attempt = await runOnNode(ctx, a, {
      pool: POOL,
      nodeId,
      workerId: `worker-${nodeId}`,
      capacity: NODE_CAPACITY,
    });
    const error = reportedErrorName({ type: "invalid_payload", unrecoverable: true });

    // Act
    const decision = await attemptFailed(a, attempt, error, "payload is not an image reference");

    // Assess
    expect(decision).toEqual({ next: "end", delaySeconds: 0 });
    expect(await job(a)).toMatchObject({
      status: "failed",
      attempts: 1,
      failures: 1,
      statusReason:
        "attempt 1 failed (invalid_payload: payload is not an image reference); unrecoverable: not retried (2 attempts left)",
      error: {
        type: "invalid_payload",
        message: "unrecoverable: payload is not an image reference; not retried",
      },
    });
    expect(await repo.getItem({ pk: jobPk(a), sk: attemptSk(1) })).toMatchObject({
      status: "failed",
      error: {
        type: "invalid_payload",
        message: "unrecoverable: payload is not an image reference; not retried",
      },
    });
    // Ended like any failed job: its dependent is cancelled by the cascade.
    expect(await job(b)).toMatchObject({ status: "cancelled", statusReason: `dependency ${a} failed` });
  });

  it("escalates at once when onFailure says so, the reason saying it was not retried", async () => {
    // Prepare
    const id = await submit([
      { ref: "a", type: "small-model", retry, onFailure: { escalateTo: { type: "big-model" } } },
    ]);
    const a = id("a");
    const attempt = await runOnNode(ctx, a, {
      pool: POOL,
      nodeId,
      workerId: `worker-${nodeId}`,
      capacity: NODE_CAPACITY,
    });
    const error = reportedErrorName({ type: "unknown_type", unrecoverable: true });

    // Act
    const decision = await attemptFailed(
      a,
      attempt,
      error,
      "no handler for job type small-model on this worker",
    );

    // Assess
    expect(decision).toEqual({ next: "end", delaySeconds: 0 });
    const escalated = await job(a);
    expect(escalated).toMatchObject({
      status: "escalated",
      attempts: 1,
      error: { type: "unknown_type" },
      statusReason: `attempt 1 failed (unknown_type: no handler for job type small-model on this worker); unrecoverable: not retried (2 attempts left); escalated to ${escalated.escalatedTo}`,
    });
    expect(await job(String(escalated.escalatedTo))).toMatchObject({ type: "big-model", status: "queued" });
  });

  it("still retries the same failure when it is not marked unrecoverable", async () => {
    // Prepare
    const a = (await submit([{ ref: "a", retry }]))("a");
    const attempt = await runOnNode(ctx, a, {
      pool: POOL,
      nodeId,
      workerId: `worker-${nodeId}`,
      capacity: NODE_CAPACITY,
    });

    // Act
    const decision = await attemptFailed(a, attempt, "invalid_payload", "payload is not an image reference");

    // Assess
    expect(decision).toEqual({ next: "retry", delaySeconds: 5 });
    expect(await job(a)).toMatchObject({ status: "retrying", failures: 1 });
  });

  // The rule's other branches, unchanged by the move to core/retry-rule.ts.
  it("ends a job out of attempts as before: no attempts left", async () => {
    // Prepare
    const a = (await submit([{ ref: "a", retry: { maxAttempts: 1 } }]))("a");
    const attempt = await runOnNode(ctx, a, {
      pool: POOL,
      nodeId,
      workerId: `worker-${nodeId}`,
      capacity: NODE_CAPACITY,
    });

    // Act
    const decision = await attemptFailed(a, attempt, "ValueError", "boom");

    // Assess
    expect(decision).toEqual({ next: "end", delaySeconds: 0 });
    expect(await job(a)).toMatchObject({
      status: "failed",
      statusReason: "attempt 1 failed (ValueError: boom); no attempts left",
      error: { type: "ValueError", message: "boom" },
    });
  });

  it("does not count an attempt its worker stopped while shutting down, as before", async () => {
    // Prepare
    const a = (await submit([{ ref: "a", retry: { maxAttempts: 1 } }]))("a");
    const attempt = await runOnNode(ctx, a, {
      pool: POOL,
      nodeId,
      workerId: `worker-${nodeId}`,
      capacity: NODE_CAPACITY,
    });

    // Act
    const decision = await attemptFailed(a, attempt, "worker_shutdown", "worker shutting down");

    // Assess
    expect(decision).toEqual({ next: "retry", delaySeconds: 0 });
    const after = await job(a);
    expect(after.status).toBe("retrying");
    expect(after.failures ?? 0).toBe(0);
    expect(await repo.getItem({ pk: jobPk(a), sk: attemptSk(1) })).toMatchObject({ status: "preempted" });
  });
});
