import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { inject } from "vitest";
import { startAttempt } from "../../app/attempts";
import type { JobEventPublisher, JobStateChange } from "../../app/events";
import {
  createSfnClient,
  executionArnOf,
  executionName,
  type LifecycleExecutions,
} from "../../app/executions";
import { awaitAdmission, StepFunctionsTaskTokens, type TaskTokens } from "../../app/lifecycle";
import type { ReconcilerContext } from "../../app/reconciler";
import type { SchedulerContext, SchedulerTuning } from "../../app/scheduler";
import { submitJobs } from "../../app/submit";
import { forEachConcurrent } from "../../core/concurrency";
import type { BatchJobRequest } from "../../core/job";
import { DEFAULT_POLICY, type PolicyInput, policySchema } from "../../core/policy";
import type { PoolConfig } from "../../core/pools";
import { LOCAL_REGION } from "../../local/config";
import { ensureTables } from "../../local/tables";
import { createDocumentClient } from "../../store/dynamo";
import type { JobItem } from "../../store/job-items";
import { JobRepository } from "../../store/job-repository";
import { NodeRepository } from "../../store/nodes";
import { PolicyRepository } from "../../store/policy";
import { UsageRepository } from "../../store/usage";

/**
 * Helpers for the scheduler and reconciler integration tests: tables of their own in the shared
 * DynamoDB Local (a scheduling pass and the reconciler read whole partitions and indexes, so they
 * must not meet other files' jobs), a clock the test moves, recording events and executions, and
 * a real loopback HTTP peer speaking Step Functions' JSON protocol that records what it is sent.
 */

export function suffix(): string {
  return randomBytes(4).toString("hex");
}

/** The run's shared Nodes table (the default pools the local API front reads), as a repository. */
export function sharedNodes(): NodeRepository {
  return new NodeRepository(
    createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") }),
    inject("tables").Nodes ?? "",
  );
}

/** Everything DynamoDB-side: fresh tables under a prefix of the test file's own. */
export async function ownTables(prefix: string): Promise<{ jobs: string; nodes: string; policy: string }> {
  const client = new DynamoDBClient({
    endpoint: inject("dynamoEndpoint"),
    region: LOCAL_REGION,
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  try {
    const tables = await ensureTables(client, prefix);
    const jobs = tables.Jobs;
    const nodes = tables.Nodes;
    const policy = tables.Policy;
    if (!jobs || !nodes || !policy) throw new Error("ensureTables made no Jobs, Nodes or Policy table");
    return { jobs, nodes, policy };
  } finally {
    client.destroy();
  }
}

export class RecordingEvents implements JobEventPublisher {
  readonly published: JobStateChange[] = [];
  async publish(changes: readonly JobStateChange[]): Promise<void> {
    this.published.push(...changes);
  }
}

/**
 * Lifecycle ports that accept everything and record nothing, for tests about what the steps
 * write: executions are named as the real adapter names them, every token call succeeds.
 */
export function silentLifecyclePorts(stateMachineArn: string): {
  readonly executions: LifecycleExecutions;
  readonly events: JobEventPublisher;
  readonly tokens: TaskTokens;
} {
  return {
    executions: {
      start: async (jobId, version) => executionArnOf(stateMachineArn, executionName(jobId, version)),
      stop: async () => {},
    },
    events: { publish: async () => {} },
    tokens: { succeed: async () => true, fail: async () => true },
  };
}

export const STATE_MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:jobq-test";

export function executionArn(jobId: string, version: number): string {
  return `arn:aws:states:us-east-1:000000000000:execution:jobq-test:${jobId}-${version}`;
}

export class RecordingExecutions implements LifecycleExecutions {
  readonly started: { jobId: string; version: number }[] = [];
  readonly stopped: string[] = [];
  /** Off: start answers null, as with no state machine configured (the job waits for the reconciler). */
  startsExecutions = false;

  async start(jobId: string, version: number): Promise<string | null> {
    this.started.push({ jobId, version });
    return this.startsExecutions ? executionArn(jobId, version) : null;
  }
  async stop(arn: string): Promise<void> {
    this.stopped.push(arn);
  }
}

export interface SfnCall {
  readonly operation: string;
  readonly body: Record<string, unknown>;
}

/**
 * A loopback HTTP server that answers the Step Functions calls the scheduler and reconciler make
 * (AWS JSON 1.0: `POST /` with `x-amz-target: AWSStepFunctions.<Operation>`), and records them.
 * SendTaskSuccess succeeds unless the token was declared dead; DescribeExecution knows the
 * executions declared running; `hold()` keeps SendTaskSuccess answers back until released.
 */
export class FakeStepFunctions {
  readonly calls: SfnCall[] = [];
  readonly deadTokens = new Set<string>();
  readonly runningExecutions = new Set<string>();
  private held: {
    until: Promise<void>;
    release: () => void;
    arrived: () => void;
    arrival: Promise<void>;
  } | null = null;
  private server: Server | undefined;
  endpoint = "";

  async start(): Promise<void> {
    this.server = createServer((request, response) => {
      this.serve(request, response).catch((error: unknown) => {
        response.writeHead(500).end(String(error));
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    const address = this.server.address() as AddressInfo;
    this.endpoint = `http://127.0.0.1:${address.port}`;
  }

  async close(): Promise<void> {
    this.held?.release();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  sfnClient() {
    return createSfnClient({ region: LOCAL_REGION, endpoint: this.endpoint });
  }

  /** Holds every SendTaskSuccess answer; `arrived` resolves when the first one is waiting. */
  hold(): { arrived: Promise<void>; release: () => void } {
    let release = () => {};
    let arrived = () => {};
    const until = new Promise<void>((resolve) => {
      release = resolve;
    });
    const arrival = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    this.held = { until, release, arrived, arrival };
    return {
      arrived: arrival,
      release: () => {
        this.held = null;
        release();
      },
    };
  }

  successes(): { taskToken: string; output: unknown }[] {
    return this.calls
      .filter((c) => c.operation === "SendTaskSuccess")
      .map((c) => ({ taskToken: String(c.body.taskToken), output: JSON.parse(String(c.body.output)) }));
  }

  failures(): { taskToken: string; error: string; cause: string }[] {
    return this.calls
      .filter((c) => c.operation === "SendTaskFailure")
      .map((c) => ({
        taskToken: String(c.body.taskToken),
        error: String(c.body.error),
        cause: String(c.body.cause),
      }));
  }

  private async serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const target = String(request.headers["x-amz-target"] ?? "");
    const operation = target.startsWith("AWSStepFunctions.")
      ? target.slice("AWSStepFunctions.".length)
      : target;
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
    this.calls.push({ operation, body });
    const answer = (status: number, payload: unknown) => {
      response.writeHead(status, { "content-type": "application/x-amz-json-1.0" });
      response.end(JSON.stringify(payload));
    };
    const error = (type: string, message: string) => answer(400, { __type: type, message });
    switch (operation) {
      case "SendTaskSuccess": {
        const held = this.held;
        if (held) {
          held.arrived();
          await held.until;
        }
        if (this.deadTokens.has(String(body.taskToken))) return error("TaskTimedOut", "Task Timed Out");
        return answer(200, {});
      }
      case "SendTaskFailure": {
        if (this.deadTokens.has(String(body.taskToken))) return error("TaskTimedOut", "Task Timed Out");
        return answer(200, {});
      }
      case "DescribeExecution": {
        const arn = String(body.executionArn);
        if (!this.runningExecutions.has(arn))
          return error("ExecutionDoesNotExist", `Execution Does Not Exist: '${arn}'`);
        return answer(200, {
          executionArn: arn,
          stateMachineArn: STATE_MACHINE_ARN,
          status: "RUNNING",
          startDate: Date.now() / 1000,
        });
      }
      default:
        return error("UnknownOperationException", `not served here: ${operation}`);
    }
  }
}

/** A clock the test sets; it starts at the real time. */
export class TestClock {
  now = new Date();
  readonly read = (): Date => new Date(this.now.getTime());
  advance(seconds: number): void {
    this.now = new Date(this.now.getTime() + seconds * 1000);
  }
}

export interface Harness {
  readonly scheduler: SchedulerContext;
  readonly reconciler: ReconcilerContext;
  readonly repo: JobRepository;
  readonly nodes: NodeRepository;
  readonly events: RecordingEvents;
  readonly executions: RecordingExecutions;
  readonly sfn: FakeStepFunctions;
  readonly clock: TestClock;
  readonly queueUrl: (pool: string, tier: string) => string;
  /** The pools both contexts are configured with; addPool adds one (and its queues). */
  readonly pools: PoolConfig[];
  addPool(pool: PoolConfig): void;
  close(): Promise<void>;
}

export const HEARTBEAT_SECONDS = 30;
export const NODE_LOST_SECONDS = 60;
export const LOST_AFTER_SECONDS = 300;

/** Contexts for the scheduler and the reconciler over the given tables and pools. */
export async function startHarness(tables: {
  jobs: string;
  nodes: string;
  policy: string;
}): Promise<Harness> {
  const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
  const repo = new JobRepository(db, tables.jobs);
  const nodes = new NodeRepository(db, tables.nodes);
  const events = new RecordingEvents();
  const executions = new RecordingExecutions();
  const sfn = new FakeStepFunctions();
  await sfn.start();
  const sfnClient = sfn.sfnClient();
  const clock = new TestClock();
  const queueUrl = (pool: string, tier: string) => `http://127.0.0.1:1/000000000000/jobq-${pool}-${tier}`;
  const tiers = ["critical", "high", "normal", "low", "background"] as const;
  const pools: PoolConfig[] = [];
  const queues: Record<string, Record<string, string>> = {};
  const addPool = (pool: PoolConfig) => {
    pools.push(pool);
    queues[pool.name] = Object.fromEntries(tiers.map((t) => [t, queueUrl(pool.name, t)]));
  };
  const base = {
    repo,
    clock: clock.read,
    pools,
    taskTypes: null,
    nodesTable: tables.nodes,
    policies: new PolicyRepository(db, tables.policy),
    usage: new UsageRepository(db, tables.policy),
    defaultPolicy: DEFAULT_POLICY,
    executions,
    events,
  };
  return {
    scheduler: {
      ...base,
      nodes,
      tokens: new StepFunctionsTaskTokens(sfnClient),
      queues,
      heartbeatSeconds: HEARTBEAT_SECONDS,
      lostAfterSeconds: LOST_AFTER_SECONDS,
      nodeLostSeconds: NODE_LOST_SECONDS,
    },
    reconciler: {
      ...base,
      tokens: new StepFunctionsTaskTokens(sfnClient),
      sfn: sfnClient,
      nodes,
      tuning: { confirmDelayMs: 20 },
    },
    repo,
    nodes,
    events,
    executions,
    sfn,
    clock,
    queueUrl,
    pools,
    addPool,
    close: async () => {
      sfnClient.destroy();
      await sfn.close();
    },
  };
}

/**
 * Submits jobs through the real submit path, then plays each one's AwaitAdmission step (the
 * real lifecycle code): the job carries a task token and its execution ARN, as when its
 * execution is waiting for admission. Returns the job ids, in order.
 */
export async function submitWaiting(
  h: Harness,
  owner: string,
  jobs: readonly Partial<BatchJobRequest>[],
): Promise<string[]> {
  const ids: string[] = [];
  for (const job of jobs) {
    const { jobs: created } = await submitJobs(h.reconciler, {
      principal: { id: owner, admin: false },
      jobs: [request(job)],
    });
    const id = created[0]?.id;
    if (!id) throw new Error("submit created no job");
    const version = created[0]?.version ?? 1;
    await awaitAdmission(h.reconciler, {
      jobId: id,
      taskToken: tokenOf(id),
      executionArn: executionArn(id, version),
    });
    ids.push(id);
  }
  return ids;
}

/** The task token the tests park for a job. */
export function tokenOf(jobId: string): string {
  return `token-${jobId}`;
}

function request(job: Partial<BatchJobRequest>): BatchJobRequest {
  return {
    type: "echo",
    priority: 0,
    resources: { cpu: 1, memoryMb: 512, gpu: 0 },
    dependsOn: [],
    retry: {
      maxAttempts: 3,
      strategy: "exponential",
      initialDelaySeconds: 1,
      backoffMultiplier: 2,
      maxDelaySeconds: 3600,
    },
    timeoutSeconds: 60,
    offPeakOnly: false,
    ...job,
  };
}

export async function jobItem(h: Harness, id: string): Promise<JobItem> {
  const item = (await h.repo.getJobItems([id])).get(id);
  if (!item) throw new Error(`job ${id} not found`);
  return item;
}

// ---------------------------------------------------------------------------------------------
// Policy tests (test/integration/scheduler-*.test.ts)
// ---------------------------------------------------------------------------------------------

/**
 * The scheduler as one test sees it: only the named pools (so other tests' nodes and running
 * jobs stay out of placement, usage and type counts), the given policy in force (as the
 * deployment's default: no policy is stored in the test's tables), and optional tuning.
 */
export function schedulerFor(
  h: Harness,
  pools: readonly string[],
  policy: PolicyInput = {},
  tuning?: Partial<SchedulerTuning>,
): SchedulerContext {
  const configured = h.pools.filter((p) => pools.includes(p.name));
  if (configured.length !== pools.length) throw new Error(`not every pool of ${pools.join(", ")} was added`);
  return {
    ...h.scheduler,
    pools: configured,
    defaultPolicy: policySchema.parse(policy),
    ...(tuning ? { tuning } : {}),
  };
}

/** Registers a node now (by the test clock, which a pass judges heartbeats by); its id. */
export async function registerNode(
  h: Harness,
  pool: string,
  capacity: { cpu: number; memoryMb: number; gpu: number },
): Promise<string> {
  const nodeId = `node-${suffix()}`;
  await h.nodes.register({ pool, nodeId, workerId: `worker-${nodeId}`, capacity }, h.clock.read());
  return nodeId;
}

/** Heartbeats nodes at the test clock's time: after the clock moved, so the next pass does not find them lost. */
export async function heartbeatNodes(h: Harness, pool: string, nodeIds: readonly string[]): Promise<void> {
  for (const nodeId of nodeIds) {
    if (!(await h.nodes.heartbeat(pool, nodeId, h.clock.read()))) throw new Error(`node ${nodeId} was lost`);
  }
}

/**
 * Like submitWaiting, for many jobs of one owner: submissions of 50 (each one transaction, two
 * items a job), then each job's AwaitAdmission step, a few at a time. Ids made in the same
 * millisecond are not in submission order: sort them where FIFO order matters.
 */
export async function submitWaitingBatch(
  h: Harness,
  owner: string,
  jobs: readonly Partial<BatchJobRequest>[],
): Promise<string[]> {
  const created: { id: string; version: number }[] = [];
  for (let i = 0; i < jobs.length; i += SUBMISSION_SIZE) {
    const { jobs: chunk } = await submitJobs(h.reconciler, {
      principal: { id: owner, admin: false },
      jobs: jobs.slice(i, i + SUBMISSION_SIZE).map(request),
    });
    created.push(...chunk);
  }
  await forEachConcurrent(created, 16, async (job) => {
    await awaitAdmission(h.reconciler, {
      jobId: job.id,
      taskToken: tokenOf(job.id),
      executionArn: executionArn(job.id, job.version),
    });
  });
  return created.map((j) => j.id);
}

/** Jobs per submission in submitWaitingBatch: what fits one transaction (a job and its transition each). */
const SUBMISSION_SIZE = 50;

/** Plays the worker taking a dispatched job's attempt on the node it was reserved on: now running. */
export async function startOnReservedNode(h: Harness, jobId: string, runToken?: string): Promise<JobItem> {
  const job = await jobItem(h, jobId);
  const reservation = job.reservation;
  if (job.status !== "dispatched" || !reservation)
    throw new Error(`job ${jobId} is ${job.status}, not dispatched`);
  const node = await h.nodes.getNode(reservation.pool, reservation.nodeId);
  if (!node) throw new Error(`node ${reservation.nodeId} is not registered`);
  const started = await startAttempt(
    { repo: h.repo, clock: h.clock.read, nodesTable: h.scheduler.nodesTable, events: h.events },
    {
      jobId,
      attempt: job.attempts,
      node: { pool: node.pool, nodeId: node.nodeId, workerId: node.workerId, capacity: node.capacity },
      runToken,
    },
  );
  if (started.outcome !== "started") throw new Error(`job ${jobId} did not start: ${started.reason}`);
  return started.job;
}
