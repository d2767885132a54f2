import { marshall } from "@aws-sdk/util-dynamodb";
import type { DynamoDBRecord } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { cancelJob } from "../../app/actions";
import { startAttempt, type WorkerNode } from "../../app/attempts";
import { completeAttempt, recordAttemptFailure } from "../../app/lifecycle";
import { reconcile } from "../../app/reconciler";
import { runScheduler } from "../../app/scheduler";
import { broadcast, openConnection } from "../../app/stream";
import type { BatchJobRequest } from "../../core/job";
import { LOCAL_REGION } from "../../local/config";
import { ConnectionRepository } from "../../store/connections";
import { createDocumentClient } from "../../store/dynamo";
import type { ConnectionSender, SendOutcome } from "../../store/stream-sender";
import { captureEmf, catalogueProblems, type EmfFigure } from "../support/emf";
import {
  type Harness,
  jobItem,
  NODE_LOST_SECONDS,
  ownTables,
  startHarness,
  submitWaiting,
  suffix,
} from "../support/scheduling";

/**
 * The metrics of core/metrics.ts as the code writes them: the real EMF lines (Powertools
 * Metrics on stdout) captured while a job is driven, with the real use cases against DynamoDB
 * Local, through completed, failed with its retries spent, timed out, lost and cancelled, and
 * while a scheduler pass runs. Each figure must be the catalogued metric (name, namespace, unit,
 * dimensions), and a replayed step (at-least-once delivery) must not count again.
 */

const RUN = suffix();
const NODE = { cpu: 4, memoryMb: 8192, gpu: 0 };
let h: Harness;

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-emf-${RUN}-`));
});
afterAll(() => h?.close());

interface Scene {
  readonly pool: string;
  readonly type: string;
  readonly node: WorkerNode;
}

/** A pool of its own with one registered node, so each test's figures are its own. */
async function scene(): Promise<Scene> {
  const pool = `m${suffix()}`;
  h.addPool({ name: pool, labels: {}, nodes: 1, node: NODE });
  const nodeId = `node-${suffix()}`;
  const node = { pool, nodeId, workerId: `worker-${nodeId}`, capacity: NODE };
  await h.nodes.register(node, h.clock.read());
  return { pool, type: `emf-${suffix()}`, node };
}

/** Submitted, admitted by a scheduler pass and started by the scene's worker: attempt 1 runs. */
async function runningJob(s: Scene, job: Partial<BatchJobRequest> = {}): Promise<string> {
  const [id = ""] = await submitWaiting(h, "metrics", [{ pool: s.pool, type: s.type, ...job }]);
  const [summary] = await runScheduler(h.scheduler, [s.pool]);
  expect(summary?.admitted.map((a) => a.jobId)).toEqual([id]);
  const started = await startAttempt(h.reconciler, { jobId: id, attempt: 1, node: s.node });
  expect(started.outcome).toBe("started");
  return id;
}

function named(figures: readonly EmfFigure[], name: string): EmfFigure[] {
  return figures.filter((f) => f.name === name);
}

/** name → [value, dimensions without service] for the figures of one job's path. */
function summarize(figures: readonly EmfFigure[], names: readonly string[]) {
  return names.flatMap((name) =>
    named(figures, name).map((f) => {
      const { service: _service, ...dims } = f.dimensions;
      return { name, value: f.value, unit: f.unit, dims };
    }),
  );
}

const JOB_METRICS = [
  "JobsSubmitted",
  "JobsStarted",
  "QueueWaitTime",
  "JobsCompleted",
  "RunTime",
  "JobsFailed",
  "JobsFailedByType",
  "JobsTimedOut",
  "AttemptsLost",
  "JobsCancelled",
] as const;

const failing = (maxAttempts: number): Partial<BatchJobRequest> => ({
  retry: {
    maxAttempts,
    strategy: "exponential",
    initialDelaySeconds: 1,
    backoffMultiplier: 2,
    maxDelaySeconds: 60,
  },
});

describe("EMF metrics of a job's path", () => {
  it("counts a completed job once: submitted, started with its queue wait, completed with its run time", async () => {
    const s = await scene();
    let id = "";
    const figures = await captureEmf(async () => {
      const [submitted = ""] = await submitWaiting(h, "metrics", [{ pool: s.pool, type: s.type }]);
      id = submitted;
      h.clock.advance(7);
      await runScheduler(h.scheduler, [s.pool]);
      await startAttempt(h.reconciler, { jobId: id, attempt: 1, node: s.node });
      h.clock.advance(12);
      await completeAttempt(h.reconciler, { jobId: id, attempt: 1 });
      // At-least-once: the state machine may run the step again.
      await completeAttempt(h.reconciler, { jobId: id, attempt: 1 });
      await startAttempt(h.reconciler, { jobId: id, attempt: 1, node: s.node });
    });

    expect(figures.flatMap(catalogueProblems)).toEqual([]);
    expect(summarize(figures, JOB_METRICS)).toEqual([
      { name: "JobsSubmitted", value: 1, unit: "Count", dims: { pool: s.pool } },
      { name: "JobsStarted", value: 1, unit: "Count", dims: { pool: s.pool } },
      { name: "QueueWaitTime", value: 7000, unit: "Milliseconds", dims: { pool: s.pool } },
      { name: "JobsCompleted", value: 1, unit: "Count", dims: { pool: s.pool } },
      { name: "RunTime", value: 12_000, unit: "Milliseconds", dims: { pool: s.pool } },
    ]);
  });

  it("counts a job failed with its retries spent as JobsFailed and by type, once", async () => {
    const s = await scene();
    const id = await runningJob(s, failing(1));
    h.clock.advance(3);
    const boom = {
      jobId: id,
      attempt: 1,
      outcome: "failed" as const,
      error: { Error: "ValueError", Cause: "boom" },
    };

    const figures = await captureEmf(async () => {
      await recordAttemptFailure(h.reconciler, boom);
      await recordAttemptFailure(h.reconciler, boom);
    });

    expect(figures.flatMap(catalogueProblems)).toEqual([]);
    expect(summarize(figures, JOB_METRICS)).toEqual([
      { name: "RunTime", value: 3000, unit: "Milliseconds", dims: { pool: s.pool } },
      { name: "JobsFailed", value: 1, unit: "Count", dims: { pool: s.pool } },
      { name: "JobsFailedByType", value: 1, unit: "Count", dims: { type: s.type } },
    ]);
  });

  it("does not count a failure the job retries as a failed job", async () => {
    const s = await scene();
    const id = await runningJob(s, failing(2));

    const figures = await captureEmf(() =>
      recordAttemptFailure(h.reconciler, { jobId: id, attempt: 1, outcome: "failed", error: { Error: "E" } }),
    );

    expect(named(figures, "JobsFailed")).toEqual([]);
    expect(named(figures, "JobsFailedByType")).toEqual([]);
    expect(named(figures, "RunTime")).toHaveLength(1);
  });

  it("counts a job whose last attempt timed out as JobsTimedOut (and by type), not JobsFailed", async () => {
    const s = await scene();
    const id = await runningJob(s, failing(1));

    const figures = await captureEmf(() =>
      recordAttemptFailure(h.reconciler, { jobId: id, attempt: 1, outcome: "timed_out", error: {} }),
    );

    expect(figures.flatMap(catalogueProblems)).toEqual([]);
    expect(summarize(figures, ["JobsTimedOut", "JobsFailed", "JobsFailedByType"])).toEqual([
      { name: "JobsTimedOut", value: 1, unit: "Count", dims: { pool: s.pool } },
      { name: "JobsFailedByType", value: 1, unit: "Count", dims: { type: s.type } },
    ]);
  });

  it("counts a lost attempt once", async () => {
    const s = await scene();
    const id = await runningJob(s, failing(3));
    const lost = { jobId: id, attempt: 1, outcome: "lost" as const, error: { Error: "lost" } };

    const figures = await captureEmf(async () => {
      await recordAttemptFailure(h.reconciler, lost);
      await recordAttemptFailure(h.reconciler, lost);
    });

    expect(summarize(figures, ["AttemptsLost", "JobsFailed"])).toEqual([
      { name: "AttemptsLost", value: 1, unit: "Count", dims: { pool: s.pool } },
    ]);
  });

  it("counts a cancelled job once, under the pool it was booked in", async () => {
    const s = await scene();
    const id = await runningJob(s);

    const figures = await captureEmf(async () => {
      await cancelJob(h.reconciler, { id: "metrics", admin: false }, id);
      await expect(cancelJob(h.reconciler, { id: "metrics", admin: false }, id)).rejects.toThrow();
    });

    expect(figures.flatMap(catalogueProblems)).toEqual([]);
    expect(summarize(figures, JOB_METRICS)).toEqual([
      { name: "JobsCancelled", value: 1, unit: "Count", dims: { pool: s.pool } },
    ]);
  });
});

describe("EMF metrics of a scheduler pass", () => {
  it("reports the pool's queue, oldest capacity wait, capacity in use and duration, and one heartbeat", async () => {
    const s = await scene();
    // 2 CPUs each on a 4-CPU node: two fit, the third waits for resources.
    const big = { pool: s.pool, type: s.type, resources: { cpu: 2, memoryMb: 1024, gpu: 0 } };
    await submitWaiting(h, "metrics", [big, big, { ...big, priority: 5 }]);
    h.clock.advance(30);

    const figures = await captureEmf(() => runScheduler(h.scheduler, [s.pool]));

    expect(figures.flatMap(catalogueProblems)).toEqual([]);
    const value = (name: string, dims: Record<string, string> = {}) =>
      figures
        .filter((f) => f.name === name && Object.entries(dims).every(([k, v]) => f.dimensions[k] === v))
        .map((f) => f.value);
    expect(value("SchedulerPasses")).toEqual([1]);
    expect(value("AdmittedJobs", { pool: s.pool })).toEqual([2]);
    expect(value("QueuedJobs", { pool: s.pool })).toEqual([1]);
    expect(value("OldestCapacityWaitAge", { pool: s.pool })).toEqual([30]);
    expect(value("LostNodes", { pool: s.pool })).toEqual([0]);
    expect(value("SchedulerPassDuration", { pool: s.pool })).toHaveLength(1);
    // The high-priority job went first; one normal job waits.
    expect(
      Object.fromEntries(named(figures, "WaitingJobs").map((f) => [f.dimensions.tier, f.value])),
    ).toEqual({ critical: 0, high: 0, normal: 1, low: 0, background: 0 });
    // A CPU pool: cpu and memory, no gpu.
    expect(
      Object.fromEntries(named(figures, "CapacityInUse").map((f) => [f.dimensions.resource, f.value])),
    ).toEqual({ cpu: 1, memory: 0.25 });
  });

  it("reports an idle pool as zeros, so its alarms see data", async () => {
    const s = await scene();

    const figures = await captureEmf(() => runScheduler(h.scheduler, [s.pool]));

    const ofPool = figures.filter((f) => f.dimensions.pool === s.pool);
    expect(ofPool.find((f) => f.name === "OldestCapacityWaitAge")?.value).toBe(0);
    expect(ofPool.find((f) => f.name === "QueuedJobs")?.value).toBe(0);
    expect(ofPool.filter((f) => f.name === "CapacityInUse").map((f) => f.value)).toEqual([0, 0]);
  });
});

describe("EMF metrics of repairs, losses and the stream", () => {
  it("counts a node the pass marks lost, once", async () => {
    const s = await scene();
    h.clock.advance(NODE_LOST_SECONDS + 1);

    const first = await captureEmf(() => runScheduler(h.scheduler, [s.pool]));
    const second = await captureEmf(() => runScheduler(h.scheduler, [s.pool]));

    const lost = (figures: EmfFigure[]) =>
      figures.filter((f) => f.name === "LostNodes" && f.dimensions.pool === s.pool).map((f) => f.value);
    expect(first.flatMap(catalogueProblems)).toEqual([]);
    expect(lost(first)).toEqual([1]);
    expect(lost(second)).toEqual([0]);
  });

  it("counts the reconciler's repairs: an attempt whose execution died", async () => {
    const s = await scene();
    const id = await runningJob(s);
    // Its execution ended with nobody told; past the reconciler's grace.
    h.sfn.endExecution((await jobItem(h, id)).executionArn ?? "");
    h.clock.advance(600);

    const figures = await captureEmf(() => reconcile(h.reconciler));

    expect(figures.flatMap(catalogueProblems)).toEqual([]);
    const repairs = named(figures, "ReconcilerRepairs");
    expect(repairs).toHaveLength(1);
    expect(repairs[0]?.value).toBeGreaterThanOrEqual(1);
    expect(summarize(figures, ["AttemptsLost"]).filter((f) => f.dims.pool === s.pool)).toEqual([
      { name: "AttemptsLost", value: 1, unit: "Count", dims: { pool: s.pool } },
    ]);
  });

  it("counts the messages a broadcast posted", async () => {
    const s = await scene();
    const owner = `stream-${suffix()}`;
    const [id = ""] = await submitWaiting(h, owner, [{ pool: s.pool }]);
    const item = (await h.repo.getJobItems([id])).get(id);
    const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
    const connections = new ConnectionRepository(db, inject("tables").Connections ?? "");
    // Stands in for API Gateway's management API, which no emulator here serves to this process.
    const posted: string[] = [];
    const sender: ConnectionSender = {
      send: async (connectionId): Promise<SendOutcome> => {
        posted.push(connectionId);
        return "sent";
      },
    };
    const record: DynamoDBRecord = {
      eventName: "INSERT",
      dynamodb: {
        SequenceNumber: "1",
        NewImage: marshall(item, { removeUndefinedValues: true }) as NonNullable<
          DynamoDBRecord["dynamodb"]
        >["NewImage"],
      },
    };
    try {
      await openConnection({ connections, clock: h.clock.read }, `conn-${suffix()}`, {
        id: owner,
        admin: false,
      });

      const figures = await captureEmf(() =>
        broadcast({ connections, clock: h.clock.read, sender }, [record]),
      );

      expect(posted.length).toBeGreaterThanOrEqual(1);
      expect(figures.flatMap(catalogueProblems)).toEqual([]);
      expect(summarize(figures, ["StreamPosts"])).toEqual([
        { name: "StreamPosts", value: posted.length, unit: "Count", dims: {} },
      ]);
    } finally {
      db.destroy();
    }
  });

  it("counts a stream connection opened", async () => {
    const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
    const connections = new ConnectionRepository(db, inject("tables").Connections ?? "");
    try {
      const figures = await captureEmf(() =>
        openConnection({ connections, clock: h.clock.read }, `conn-${suffix()}`, {
          id: "metrics",
          admin: false,
        }),
      );

      expect(figures.flatMap(catalogueProblems)).toEqual([]);
      expect(summarize(figures, ["StreamConnections"])).toEqual([
        { name: "StreamConnections", value: 1, unit: "Count", dims: {} },
      ]);
    } finally {
      db.destroy();
    }
  });
});
