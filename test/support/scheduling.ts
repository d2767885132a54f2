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
  StepFunctionsExecutions,
} from "../../app/executions";
import {
  type DispatchInput,
  dispatchInputSchema,
  StepFunctionsTaskTokens,
  type TaskTokens,
} from "../../app/lifecycle";
import type { ReconcilerContext } from "../../app/reconciler";
import type { SchedulerContext, SchedulerTuning } from "../../app/scheduler";
import { submitJobs } from "../../app/submit";
import type { BatchJobRequest } from "../../core/job";
import { DEFAULT_POLICY, type PolicyInput, policySchema } from "../../core/policy";
import type { PoolConfig } from "../../core/pools";
import { LOCAL_REGION } from "../../local/config";
import { ensureTables } from "../../local/tables";
import { createDocumentClient } from "../../store/dynamo";
import type { JobItem } from "../../store/job-items";
import { JobRepository } from "../../store/job-repository";
import { JOB_SK } from "../../store/keys";
import { NodeRepository } from "../../store/nodes";
import { PolicyRepository } from "../../store/policy";
import { UsageRepository } from "../../store/usage";

/**
 * Helpers for the scheduler and reconciler integration tests: tables of their own in the shared
 * DynamoDB Local (a scheduling pass and the reconciler read whole partitions and indexes, so they
 * must not meet other files' jobs), a clock the test moves, recording events, and a real loopback
 * HTTP peer speaking Step Functions' JSON protocol that records what it is sent and keeps the
 * executions started on it; the contexts reach it through the real adapters
 * (StepFunctionsExecutions, StepFunctionsTaskTokens).
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
      arnOf: (jobId, version) => executionArnOf(stateMachineArn, executionName(jobId, version)),
      stop: async () => {},
    },
    events: { publish: async () => {} },
    tokens: { succeed: async () => true, fail: async () => true },
  };
}

export const STATE_MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:jobq-test";

export function executionArn(jobId: string, version: number): string {
  return executionArnOf(STATE_MACHINE_ARN, executionName(jobId, version));
}

export interface SfnCall {
  readonly operation: string;
  readonly body: Record<string, unknown>;
}

/** An execution as the peer keeps it: what StartExecution was given, and where it stands. */
export interface FakeExecution {
  readonly executionArn: string;
  readonly name: string;
  readonly input: string;
  status: "RUNNING" | "SUCCEEDED" | "FAILED" | "TIMED_OUT" | "ABORTED";
}

/** Operations `hold()` can keep the answers of. */
export type HeldOperation = "SendTaskSuccess" | "StartExecution";

/**
 * A loopback HTTP server that answers the Step Functions calls the scheduler and reconciler make
 * (AWS JSON 1.0: `POST /` with `x-amz-target: AWSStepFunctions.<Operation>`), and records them.
 * StartExecution keeps the execution, RUNNING, under `<stateMachine>:<name>`; as in AWS, the same
 * name with the same input while it runs answers the same ARN, and any other reuse of a name is
 * ExecutionAlreadyExists. StopExecution aborts it; DescribeExecution knows the executions started
 * here and those declared running (`runningExecutions`, for ARNs of executions started
 * elsewhere). SendTaskSuccess succeeds unless the token was declared dead; `hold()` keeps answers
 * back until released.
 */
export class FakeStepFunctions {
  readonly calls: SfnCall[] = [];
  readonly deadTokens = new Set<string>();
  readonly runningExecutions = new Set<string>();
  /** Jobs whose executions StartExecution refuses (ExecutionLimitExceeded, which the SDK does not retry). */
  readonly refusedStarts = new Set<string>();
  private readonly executions = new Map<string, FakeExecution>();
  private held: {
    operations: ReadonlySet<string>;
    until: Promise<void>;
    arrived: () => void;
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
    this.releaseHeld?.();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  sfnClient() {
    return createSfnClient({ region: LOCAL_REGION, endpoint: this.endpoint });
  }

  private releaseHeld: (() => void) | undefined;

  /**
   * Holds every answer to the given operations (SendTaskSuccess and StartExecution unless told);
   * `arrived` resolves when the first held call is waiting.
   */
  hold(operations: readonly HeldOperation[] = ["SendTaskSuccess", "StartExecution"]): {
    arrived: Promise<void>;
    release: () => void;
  } {
    let release = () => {};
    let arrived = () => {};
    const until = new Promise<void>((resolve) => {
      release = resolve;
    });
    const arrival = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    this.held = { operations: new Set(operations), until, arrived };
    this.releaseHeld = () => {
      this.held = null;
      release();
    };
    return { arrived: arrival, release: this.releaseHeld };
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

  /** Every StartExecution request for the job's executions, refused ones included, in order. */
  startRequests(jobId: string): { name: string; input: unknown }[] {
    return this.calls
      .filter((c) => c.operation === "StartExecution" && jobOfExecution(String(c.body.name)) === jobId)
      .map((c) => ({ name: String(c.body.name), input: JSON.parse(String(c.body.input ?? "null")) }));
  }

  /** The admissions the job's executions were started with (their DispatchInput), in order. */
  admissions(jobId: string): DispatchInput[] {
    return this.startRequests(jobId).map((r) => dispatchInputSchema.parse(r.input));
  }

  /** The ARNs StopExecution was asked to stop, in order. */
  stops(): string[] {
    return this.calls.filter((c) => c.operation === "StopExecution").map((c) => String(c.body.executionArn));
  }

  /** The execution started under this ARN, if any. */
  execution(executionArn: string): FakeExecution | undefined {
    return this.executions.get(executionArn);
  }

  /** Ends a running execution without telling anyone: what a crash, a bug or a manual stop leaves. */
  endExecution(executionArn: string, status: Exclude<FakeExecution["status"], "RUNNING"> = "ABORTED"): void {
    const execution = this.executions.get(executionArn);
    if (!execution) throw new Error(`no execution ${executionArn} was started`);
    execution.status = status;
  }

  /** Drops the execution: DescribeExecution no longer knows it (its history expired, its state machine was deleted). */
  forgetExecution(executionArn: string): void {
    if (!this.executions.delete(executionArn)) throw new Error(`no execution ${executionArn} was started`);
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
    const held = this.held;
    if (held?.operations.has(operation)) {
      held.arrived();
      await held.until;
    }
    switch (operation) {
      case "StartExecution": {
        const name = String(body.name);
        const input = String(body.input ?? "{}");
        if (this.refusedStarts.has(jobOfExecution(name)))
          return error(
            "ExecutionLimitExceeded",
            "The maximum number of running executions has been reached.",
          );
        const executionArn = executionArnOf(String(body.stateMachineArn), name);
        const existing = this.executions.get(executionArn);
        if (existing && !(existing.status === "RUNNING" && existing.input === input))
          return error("ExecutionAlreadyExists", `Execution Already Exists: '${executionArn}'`);
        if (!existing) this.executions.set(executionArn, { executionArn, name, input, status: "RUNNING" });
        return answer(200, { executionArn, startDate: Date.now() / 1000 });
      }
      case "StopExecution": {
        const executionArn = String(body.executionArn);
        const execution = this.executions.get(executionArn);
        if (!execution && !this.runningExecutions.has(executionArn))
          return error("ExecutionDoesNotExist", `Execution Does Not Exist: '${executionArn}'`);
        if (execution?.status === "RUNNING") execution.status = "ABORTED";
        this.runningExecutions.delete(executionArn);
        return answer(200, { stopDate: Date.now() / 1000 });
      }
      case "SendTaskSuccess": {
        if (this.deadTokens.has(String(body.taskToken))) return error("TaskTimedOut", "Task Timed Out");
        return answer(200, {});
      }
      case "SendTaskFailure": {
        if (this.deadTokens.has(String(body.taskToken))) return error("TaskTimedOut", "Task Timed Out");
        return answer(200, {});
      }
      case "DescribeExecution": {
        const arn = String(body.executionArn);
        const status =
          this.executions.get(arn)?.status ?? (this.runningExecutions.has(arn) ? "RUNNING" : null);
        if (!status) return error("ExecutionDoesNotExist", `Execution Does Not Exist: '${arn}'`);
        return answer(200, {
          executionArn: arn,
          stateMachineArn: STATE_MACHINE_ARN,
          status,
          startDate: Date.now() / 1000,
        });
      }
      default:
        return error("UnknownOperationException", `not served here: ${operation}`);
    }
  }
}

/** Executions are named `<jobId>-<version>` (app/executions.ts). */
function jobOfExecution(name: string): string {
  return name.replace(/-\d+$/, "");
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
  /** The real adapter both contexts use, on the loopback peer (`sfn`), with STATE_MACHINE_ARN. */
  readonly executions: LifecycleExecutions;
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
  const sfn = new FakeStepFunctions();
  await sfn.start();
  const sfnClient = sfn.sfnClient();
  const executions = new StepFunctionsExecutions(sfnClient, STATE_MACHINE_ARN);
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
 * Submits jobs through the real submit path, one submission each; they wait for admission (no
 * execution runs for a waiting job: the scheduler starts one when it admits it). Returns the job
 * ids, in order.
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
    ids.push(id);
  }
  return ids;
}

/** The AwaitAdmission task token parkLegacyAdmission leaves on a job. */
export function tokenOf(jobId: string): string {
  return `token-${jobId}`;
}

/**
 * What an execution of the previous lifecycle definition (started at submit, parked at
 * AwaitAdmission) left on a waiting job before the stack moved to executions started at
 * admission: its task token and its ARN, the version moved as that step moved it. Returns the
 * legacy execution's ARN, which the peer knows as running.
 */
export async function parkLegacyAdmission(h: Harness, jobId: string): Promise<string> {
  const item = await jobItem(h, jobId);
  const legacyArn = executionArn(jobId, item.version);
  const parked = await h.repo.updateIf(
    { pk: item.pk, sk: JOB_SK },
    "SET admissionToken = :token, executionArn = :arn, #version = :next, updatedAt = :at",
    "#status = :status AND #version = :version",
    {
      names: { "#status": "status", "#version": "version" },
      values: {
        ":token": tokenOf(jobId),
        ":arn": legacyArn,
        ":next": item.version + 1,
        ":at": h.clock.read().toISOString(),
        ":status": item.status,
        ":version": item.version,
      },
    },
  );
  if (!parked) throw new Error(`job ${jobId} changed while its legacy token was parked`);
  h.sfn.runningExecutions.add(legacyArn);
  return legacyArn;
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
 * items a job). Ids made in the same millisecond are not in submission order: sort them where
 * FIFO order matters.
 */
export async function submitWaitingBatch(
  h: Harness,
  owner: string,
  jobs: readonly Partial<BatchJobRequest>[],
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < jobs.length; i += SUBMISSION_SIZE) {
    const { jobs: chunk } = await submitJobs(h.reconciler, {
      principal: { id: owner, admin: false },
      jobs: jobs.slice(i, i + SUBMISSION_SIZE).map(request),
    });
    ids.push(...chunk.map((j) => j.id));
  }
  return ids;
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
