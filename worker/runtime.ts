import {
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  type SFNClient,
} from "@aws-sdk/client-sfn";
import type { Message, SQSClient } from "@aws-sdk/client-sqs";
import { z } from "zod";
import { startAttempt, type WorkerNode } from "../app/attempts";
import type { JobEventPublisher } from "../app/events";
import { isTaskTokenGone } from "../app/executions";
import { completeRun } from "../app/lifecycle";
import { type Clock, systemClock } from "../app/runtime";
import { MAX_PAYLOAD_BYTES, PRIORITY_NAMES, type PriorityName } from "../core/job";
import { reportedErrorName } from "../core/retry-rule";
import { DispatchQueue, DispatchQueueMissingError } from "../store/dispatch-queue";
import { fromJobItem, type JobItem } from "../store/job-items";
import type { JobRepository } from "../store/job-repository";
import type { NodeRepository } from "../store/nodes";
import type { UsageRepository } from "../store/usage";
import type { NodeResources } from "./capacity";
import { freshNodeId } from "./config";
import { AttemptLog } from "./logs";
import {
  AttemptStoppedError,
  describeFailure,
  type TaskContext,
  type TaskRegistry,
  UnrecoverableTaskError,
} from "./registry";

/**
 * The worker runtime: one per node. It registers the node and keeps it alive, takes dispatch
 * messages from its pool's queues (highest tier first) while it has room, starts each attempt
 * with one transaction (app/attempts.ts), runs the task's handler, heartbeats the lifecycle
 * execution, writes the task's logs and result, and reports the outcome on the run token.
 * Nothing a task does (throw, hang, ignore its abort) can stop the worker itself.
 *
 * Polling. A round short-polls the tiers from critical down and takes the first message found,
 * so backlogs are served strictly by tier and no message is received only to be handed back
 * (every receive counts towards the queue's redrive limit). When every tier is empty, the worker
 * long-polls all of them at once: a message of any tier wakes it at once, and an idle worker costs
 * one request per tier per JOBQ_POLL_WAIT_SECONDS. A tier with a long poll outstanding is known to
 * be empty (a message would have ended the poll), so rounds skip it. Long polls are never
 * aborted: an emulator (and an abort racing SQS's answer) would keep the message it hands to a
 * caller that is gone invisible for the visibility timeout. A long poll that brings a message the
 * worker has no room for any more hands it straight back.
 */

/** What the worker needs of store/nodes.ts. */
export type NodeBook = Pick<
  NodeRepository,
  "register" | "beat" | "setStatus" | "deregister" | "repairsOf" | "releaseOnce"
>;

export interface WorkerLogger {
  debug(message: string, extra?: Record<string, unknown>): void;
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
}

export interface WorkerOptions {
  readonly pool: string;
  /** Readable prefix of the node ids this worker registers (config.ts). */
  readonly nodeName: string;
  readonly workerId: string;
  readonly capacity: NodeResources;
  /** The pool's queue URL per tier (config().queues[pool]). */
  readonly queues: Partial<Readonly<Record<PriorityName, string>>>;
  /** The attempt heartbeat period when a message does not carry its own. */
  readonly heartbeatSeconds: number;
  readonly nodeHeartbeatMs: number;
  /** SQS long-poll wait while idle, 1..20 s. */
  readonly pollWaitSeconds: number;
  readonly nodesTable: string;
  /** SIGTERM: how long running attempts may take to finish. @default 25 s */
  readonly shutdownGraceMs?: number;
  /** @default config.ts#freshNodeId */
  readonly newNodeId?: (nodeName: string) => string;
  /** How often task logs are written. @default 1000 ms */
  readonly logFlushMs?: number;
  /**
   * Called once when a node heartbeat finds the node `draining` while this worker still runs: an
   * admin drained it (POST /pools/{pool}/nodes/{id}/drain). The process calls stop() and exits
   * as on SIGTERM (worker/main.ts). @default stop() with no time limit
   */
  readonly onDrainRequested?: (drainedBy: string | undefined) => void;
}

export interface WorkerDeps {
  readonly repo: JobRepository;
  readonly nodes: NodeBook;
  readonly sqs: SQSClient;
  readonly sfn: SFNClient;
  readonly events: JobEventPublisher;
  /** Run-time statistics per job type and GPU-seconds per owner, written as an attempt ends. */
  readonly usage: UsageRepository;
  readonly registry: TaskRegistry;
  readonly clock?: Clock;
  readonly log?: WorkerLogger;
}

/** The dispatch message (docs/lifecycle.md); the job item is read for everything else. */
const dispatchMessageSchema = z.object({
  jobId: z.string().min(1),
  attempt: z.number().int().min(1),
  runToken: z.string().min(1),
  heartbeatSeconds: z.number().positive().optional(),
  /** The execution that sent it; absent from messages of the lifecycle's earlier definition. */
  executionArn: z.string().min(1).optional(),
});

/** Results are stored apart from the job, up to the same size as a payload. */
export const MAX_RESULT_BYTES = MAX_PAYLOAD_BYTES;
/**
 * A message booked on another node that fits neither here nor by a swap (app/attempts.ts)
 * reappears after this long: soon, for the node it was booked on, but not at once, so this
 * node does not receive it straight back.
 */
const NO_FIT_DELAY_SECONDS = 1;
/** Step Functions' limits on SendTaskFailure. */
const MAX_ERROR_CHARS = 256;
const MAX_CAUSE_CHARS = 32_768;
/** After the grace, aborted attempts get this long to report before the node is deregistered. */
const REPORT_GRACE_MS = 10_000;
/** How long an admin's drain waits for the node's last reservations to be released before leaving. */
const DEREGISTER_PATIENCE_MS = 30_000;
const DEREGISTER_RETRY_MS = 500;
/** The loop re-checks at least this often, whatever it waits for. */
const IDLE_CHECK_MS = 5000;
const RECEIVE_ERROR_BACKOFF_MS = 2000;

const TIERS = Object.keys(PRIORITY_NAMES) as PriorityName[];

interface Received {
  readonly tier: PriorityName;
  readonly message: Message;
}

interface RunningAttempt {
  readonly job: JobItem;
  /** Whether the start stored the attempt's record: the completion then leaves it as it is. */
  readonly attemptRecorded: boolean;
  readonly attempt: number;
  readonly runToken: string;
  readonly nodeId: string;
  readonly heartbeatSeconds: number;
  readonly controller: AbortController;
  done: Promise<void>;
}

type Outcome =
  | { readonly kind: "succeeded"; readonly result: unknown }
  | {
      readonly kind: "failed";
      readonly type: string;
      readonly message: string;
      /** No retry can succeed (UnrecoverableTaskError): reported so the lifecycle ends the job. */
      readonly unrecoverable?: boolean;
    }
  /** The execution no longer waits for this attempt: nothing to report. */
  | { readonly kind: "abandoned"; readonly message: string };

export interface WorkerSnapshot {
  readonly state: "new" | "running" | "stopping" | "stopped";
  readonly pool: string;
  readonly nodeId: string;
  readonly workerId: string;
  readonly capacity: NodeResources;
  readonly used: NodeResources;
  readonly running: readonly { readonly jobId: string; readonly attempt: number; readonly type: string }[];
}

const silentLogger: WorkerLogger = { debug() {}, info() {}, warn() {}, error() {} };

export class Worker {
  private state: WorkerSnapshot["state"] = "new";
  private nodeId: string;
  private readonly tiers: PriorityName[];
  private readonly clock: Clock;
  private readonly log: WorkerLogger;
  private readonly running = new Map<string, RunningAttempt>();
  private readonly longPolls = new Map<PriorityName, Promise<void>>();
  private arrivals: Received[] = [];
  private loop: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private nodeTimer: NodeJS.Timeout | undefined;
  private nodeBeat: Promise<void> | undefined;
  private woken = false;
  private waiter: (() => void) | undefined;
  private drainRequested = false;
  /** When running attempts are aborted during a drain; a later stop() may bring it forward. */
  private drainDeadline = Number.POSITIVE_INFINITY;
  private deadlineChanged: (() => void) | undefined;
  private readonly dispatch: DispatchQueue;

  constructor(
    private readonly options: WorkerOptions,
    private readonly deps: WorkerDeps,
  ) {
    this.tiers = TIERS.filter((tier) => options.queues[tier] !== undefined);
    if (this.tiers.length === 0) throw new Error(`pool ${options.pool} has no queue to poll`);
    this.clock = deps.clock ?? systemClock;
    this.log = deps.log ?? silentLogger;
    this.nodeId = this.newNodeId();
    this.dispatch = new DispatchQueue(deps.sqs, options.queues);
  }

  /** Registers the node, starts its heartbeat and the polling loop. */
  start(): Promise<void> {
    if (this.starting || this.state !== "new") throw new Error(`worker is ${this.state}; start it once`);
    this.starting = this.begin();
    return this.starting;
  }

  private async begin(): Promise<void> {
    await this.deps.nodes.register(this.registration(this.nodeId), this.clock());
    this.state = "running";
    this.nodeTimer = setInterval(() => {
      this.nodeBeat ??= this.beatNode().finally(() => {
        this.nodeBeat = undefined;
      });
    }, this.options.nodeHeartbeatMs);
    this.loop = this.pollLoop();
    this.log.info("worker started", {
      pool: this.options.pool,
      nodeId: this.nodeId,
      workerId: this.options.workerId,
      capacity: this.options.capacity,
      tiers: this.tiers,
      taskTypes: this.deps.registry.types(),
    });
  }

  /**
   * Drains the node: marks it draining, stops taking messages, lets running attempts finish
   * within `graceMs` (Infinity: however long they take; each still ends at its own timeout),
   * aborts the rest (reported as failed "worker shutting down", so they retry elsewhere), then
   * deregisters. Calling it again returns the same drain, whose grace ends at the earlier of the
   * two deadlines: a SIGTERM during an admin's unhurried drain makes it keep ECS's stop timeout.
   */
  stop(graceMs = this.options.shutdownGraceMs ?? 25_000): Promise<void> {
    const deadline = Date.now() + graceMs;
    if (deadline < this.drainDeadline) {
      this.drainDeadline = deadline;
      this.deadlineChanged?.();
    }
    this.stopping ??= this.drain();
    return this.stopping;
  }

  snapshot(): WorkerSnapshot {
    return {
      state: this.state,
      pool: this.options.pool,
      nodeId: this.nodeId,
      workerId: this.options.workerId,
      capacity: this.options.capacity,
      used: this.used(),
      running: [...this.running.values()].map((r) => ({
        jobId: r.job.id,
        attempt: r.attempt,
        type: r.job.type,
      })),
    };
  }

  // ---- polling -------------------------------------------------------------------------------

  private async pollLoop(): Promise<void> {
    while (this.state === "running") {
      try {
        if (this.arrivals.length > 0) {
          await this.takeArrivals();
        } else if (!this.hasRoom()) {
          await this.idle();
        } else {
          const found = await this.shortPollRound();
          if (found) {
            await this.handleMessage(found);
          } else {
            this.startLongPolls();
            await this.idle();
          }
        }
      } catch (error) {
        this.log.error("poll loop error; going on", { error: errorInfo(error) });
        await delay(1000);
      }
    }
  }

  /** Short polls from the highest tier down; the first message wins. */
  private async shortPollRound(): Promise<Received | null> {
    for (const tier of this.tiers) {
      if (this.longPolls.has(tier)) continue;
      try {
        const [message] = await this.receive(tier, 0);
        if (message) return { tier, message };
      } catch (error) {
        // A missing queue is a deployment fault, not a passing one: said at error level.
        const level = error instanceof DispatchQueueMissingError ? "error" : "warn";
        this.log[level]("receive failed", { tier, error: errorInfo(error) });
      }
      if (this.state !== "running") return null;
    }
    return null;
  }

  private startLongPolls(): void {
    for (const tier of this.tiers) {
      if (this.longPolls.has(tier)) continue;
      const poll = this.receive(tier, this.options.pollWaitSeconds)
        .then(async (messages) => {
          const received = messages.map((message) => ({ tier, message }));
          if (this.state === "running") this.arrivals.push(...received);
          else await Promise.all(received.map((r) => this.changeVisibility(r, 0)));
        })
        .catch(async (error: unknown) => {
          if (this.state !== "running") return;
          const level = error instanceof DispatchQueueMissingError ? "error" : "warn";
          this.log[level]("long poll failed", { tier, error: errorInfo(error) });
          await delay(RECEIVE_ERROR_BACKOFF_MS);
        })
        .finally(() => {
          this.longPolls.delete(tier);
          this.wake();
        });
      this.longPolls.set(tier, poll);
    }
  }

  /** Messages long polls brought: highest tier first while there is room, the rest handed back. */
  private async takeArrivals(): Promise<void> {
    const batch = this.arrivals.splice(0).sort((a, b) => TIERS.indexOf(a.tier) - TIERS.indexOf(b.tier));
    for (const received of batch) {
      if (this.state === "running" && this.hasRoom()) await this.handleMessage(received);
      else await this.changeVisibility(received, 0);
    }
  }

  private receive(tier: PriorityName, waitSeconds: number): Promise<Message[]> {
    return this.dispatch.receive(tier, waitSeconds);
  }

  /** Waits for a wake-up (a poll ended, an attempt ended, stop) or the periodic re-check. */
  private async idle(): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.waiter = resolve;
      timer = setTimeout(resolve, IDLE_CHECK_MS);
    });
    clearTimeout(timer);
    this.waiter = undefined;
    this.woken = false;
  }

  private wake(): void {
    this.woken = true;
    this.waiter?.();
  }

  private used(): NodeResources {
    let cpu = 0;
    let memoryMb = 0;
    let gpu = 0;
    for (const { job } of this.running.values()) {
      cpu += job.resources.cpu;
      memoryMb += job.resources.memoryMb;
      gpu += job.resources.gpu;
    }
    return { cpu: Math.round(cpu * 1000) / 1000, memoryMb, gpu };
  }

  /**
   * Whether to take another message. A job's size is known only once its message is read, so
   * this asks for any room at all; the reservation decides whether the job really fits (the
   * scheduler booked it on some node; moving it here is conditional on this node's room).
   */
  private hasRoom(): boolean {
    const used = this.used();
    return used.cpu < this.options.capacity.cpu && used.memoryMb < this.options.capacity.memoryMb;
  }

  // ---- starting an attempt -------------------------------------------------------------------

  private async handleMessage(received: Received): Promise<void> {
    const { message } = received;
    let body: z.infer<typeof dispatchMessageSchema>;
    try {
      body = dispatchMessageSchema.parse(JSON.parse(message.Body ?? ""));
    } catch (error) {
      this.log.error("dropping a message that is not a dispatch message", {
        tier: received.tier,
        messageId: message.MessageId,
        error: errorInfo(error),
      });
      await this.deleteMessage(received);
      return;
    }
    const key = attemptKey(body.jobId, body.attempt);
    if (this.running.has(key)) {
      // A duplicate delivery of an attempt this worker already runs.
      await this.deleteMessage(received);
      return;
    }
    const node = this.workerNode();
    let outcome: Awaited<ReturnType<typeof startAttempt>>;
    try {
      outcome = await startAttempt(
        {
          repo: this.deps.repo,
          clock: this.clock,
          nodesTable: this.options.nodesTable,
          events: this.deps.events,
        },
        {
          jobId: body.jobId,
          attempt: body.attempt,
          node,
          runToken: body.runToken,
          executionArn: body.executionArn,
        },
      );
    } catch (error) {
      // DynamoDB trouble: the message reappears after its visibility timeout and is tried again.
      this.log.error("could not start an attempt; the message will be retried", {
        jobId: body.jobId,
        attempt: body.attempt,
        error: errorInfo(error),
      });
      return;
    }
    if (outcome.outcome === "stale") {
      this.log.info("dropping a stale dispatch message", {
        jobId: body.jobId,
        attempt: body.attempt,
        reason: outcome.reason,
      });
      // Unanswered, the message's execution would wait for its heartbeat timeout and then run
      // AttemptFailed for an attempt that is not its own. Kept for redelivery if not answered.
      if (
        outcome.dismiss &&
        !(await this.dismissRun(body.runToken, body.jobId, body.attempt, outcome.reason))
      )
        return;
      await this.deleteMessage(received);
      return;
    }
    if (outcome.outcome === "no_capacity") {
      this.log.info("leaving a job to another node", {
        jobId: body.jobId,
        attempt: body.attempt,
        reason: outcome.reason,
      });
      await this.changeVisibility(received, NO_FIT_DELAY_SECONDS);
      return;
    }
    const attempt: RunningAttempt = {
      job: outcome.job,
      attemptRecorded: outcome.attemptRecorded,
      attempt: body.attempt,
      runToken: body.runToken,
      nodeId: node.nodeId,
      heartbeatSeconds: body.heartbeatSeconds ?? this.options.heartbeatSeconds,
      controller: new AbortController(),
      done: Promise.resolve(),
    };
    this.running.set(key, attempt);
    this.log.info("attempt started", { jobId: body.jobId, attempt: body.attempt, nodeId: node.nodeId });
    await this.deleteMessage(received);
    attempt.done = this.runAttempt(attempt)
      .catch((error: unknown) => {
        this.log.error("attempt bookkeeping failed", {
          jobId: attempt.job.id,
          attempt: attempt.attempt,
          error: errorInfo(error),
        });
      })
      .finally(() => {
        this.running.delete(key);
        this.wake();
      });
  }

  // ---- running an attempt --------------------------------------------------------------------

  private async runAttempt(run: RunningAttempt): Promise<void> {
    const { job, attempt, controller } = run;
    const logs = new AttemptLog(
      this.deps.repo,
      job.id,
      attempt,
      this.clock,
      (error) =>
        this.log.warn("task log lines not written yet", { jobId: job.id, attempt, error: errorInfo(error) }),
      this.options.logFlushMs,
    );
    const heartbeat = setInterval(
      () => void this.heartbeat(run).catch(() => undefined),
      Math.max(250, (run.heartbeatSeconds * 1000) / 3),
    );
    const startedAt = Date.parse(job.attemptStartedAt ?? "") || this.clock().getTime();
    const timeout = setTimeout(
      () => controller.abort(new AttemptStoppedError("timeout", `timed out after ${job.timeoutSeconds} s`)),
      Math.max(0, startedAt + job.timeoutSeconds * 1000 - this.clock().getTime()),
    );
    const ctx: TaskContext = {
      jobId: job.id,
      attempt,
      arrayIndex: job.arrayIndex ?? null,
      arraySize: job.arrayParentId === undefined ? null : (job.arraySize ?? null),
      signal: controller.signal,
      log: (level, message) => logs.add(level, message),
      heartbeat: () => this.heartbeat(run),
    };

    let outcome: Outcome;
    try {
      const handler = this.deps.registry.get(job.type);
      if (!handler) {
        // Another attempt would come back to a worker of the same pool, and so the same image.
        throw new UnrecoverableTaskError(
          `no handler for job type ${job.type} on this worker (it runs ${this.deps.registry.types().join(", ")})`,
          "unknown_type",
        );
      }
      // A handler that throws before returning a promise is a failed attempt like any other.
      const { payload } = fromJobItem(job);
      const work = Promise.resolve().then(() => handler(payload, ctx));
      outcome = { kind: "succeeded", result: await untilAborted(work, controller.signal) };
    } catch (error) {
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : error;
      const failure = describeFailure(reason);
      outcome =
        reason instanceof AttemptStoppedError && reason.type === "execution_stopped"
          ? { kind: "abandoned", message: failure.message }
          : { kind: "failed", ...failure };
    } finally {
      clearInterval(heartbeat);
      clearTimeout(timeout);
    }

    if (outcome.kind === "succeeded") {
      // The task's lines are stored before its job can show completed: a reader who sees the end
      // (`jobq logs --follow`, GET /logs after a wait) reads the whole log. Empty buffer, no write.
      await logs.flush();
      outcome = await this.storeResult(run, outcome.result);
    }
    if (outcome.kind === "failed")
      logs.add(
        "error",
        `attempt ${attempt} failed: ${outcome.type}: ${outcome.message}${outcome.unrecoverable ? " (unrecoverable: not retried)" : ""}`,
      );
    if (outcome.kind === "abandoned") logs.add("warn", `attempt ${attempt} stopped: ${outcome.message}`);
    await logs.close();
    await this.report(run, outcome);
  }

  /**
   * Ends the successful attempt (app/completion.ts#completeRun): the result item, then the job
   * completed in a write conditional on the job still running this attempt, so a late attempt
   * never overwrites what a later one produced, then its capacity released. Only then is the run
   * token answered, which ends the execution at its one state.
   */
  private async storeResult(run: RunningAttempt, result: unknown): Promise<Outcome> {
    const { job, attempt, attemptRecorded } = run;
    let json: string;
    try {
      json = JSON.stringify(result ?? null) ?? "null";
    } catch (error) {
      // The same handler on the same payload makes the same result: a retry cannot mend it.
      return {
        kind: "failed",
        unrecoverable: true,
        type: "result_not_serializable",
        message: `result is not JSON: ${(error as Error).message}`,
      };
    }
    const bytes = Buffer.byteLength(json, "utf8");
    if (bytes > MAX_RESULT_BYTES) {
      return {
        kind: "failed",
        unrecoverable: true,
        type: "result_too_large",
        message: `result too large: ${bytes} bytes serialized; the limit is ${MAX_RESULT_BYTES}`,
      };
    }
    try {
      const done = await completeRun(
        {
          repo: this.deps.repo,
          clock: this.clock,
          nodesTable: this.options.nodesTable,
          nodes: this.deps.nodes,
          events: this.deps.events,
          usage: this.deps.usage,
        },
        { jobId: job.id, attempt, resultJson: json, started: job, attemptRecorded },
      );
      if (done.outcome === "abandoned") {
        return {
          kind: "abandoned",
          message: `the job no longer runs this attempt; its result was not stored (${done.reason})`,
        };
      }
      return { kind: "succeeded", result };
    } catch (error) {
      return {
        kind: "failed",
        type: "result_not_stored",
        message: `the result could not be stored: ${(error as Error).message}`,
      };
    }
  }

  /** SendTaskHeartbeat; a refusal means the execution moved on, so the attempt is aborted. */
  private async heartbeat(run: RunningAttempt): Promise<void> {
    if (run.controller.signal.aborted) throw run.controller.signal.reason;
    try {
      await this.deps.sfn.send(new SendTaskHeartbeatCommand({ taskToken: run.runToken }));
    } catch (error) {
      if (isTaskTokenGone(error)) {
        const stopped = new AttemptStoppedError(
          "execution_stopped",
          `the lifecycle no longer waits for this attempt (${(error as Error).name}): cancelled, paused or timed out`,
        );
        run.controller.abort(stopped);
        throw stopped;
      }
      // A missed heartbeat is not fatal: the next one may land well within heartbeatSeconds.
      this.log.warn("heartbeat not sent", {
        jobId: run.job.id,
        attempt: run.attempt,
        error: errorInfo(error),
      });
    }
  }

  /**
   * Ends the execution of a run token nothing is left to do for (app/attempts.ts `dismiss`):
   * success, so its Dispatch state ends it at once (End) and no lifecycle step runs. Whoever
   * took the job off this attempt (a cancel that came before StartExecution, a newer admission)
   * already released its capacity. True when answered, or when nothing waits on the token.
   */
  private async dismissRun(
    runToken: string,
    jobId: string,
    attempt: number,
    reason: string,
  ): Promise<boolean> {
    try {
      await this.deps.sfn.send(
        new SendTaskSuccessCommand({
          taskToken: runToken,
          output: JSON.stringify({ ok: false, dismissed: reason }),
        }),
      );
      this.log.info("dismissed the execution of a stale dispatch message", { jobId, attempt });
      return true;
    } catch (error) {
      if (isTaskTokenGone(error)) return true;
      this.log.warn("could not dismiss the execution of a stale dispatch message; it comes back", {
        jobId,
        attempt,
        error: errorInfo(error),
      });
      return false;
    }
  }

  private async report(run: RunningAttempt, outcome: Outcome): Promise<void> {
    const { job, attempt, runToken } = run;
    if (outcome.kind === "abandoned") {
      this.log.info("attempt abandoned", { jobId: job.id, attempt, reason: outcome.message });
      return;
    }
    const send = async (): Promise<void> => {
      if (outcome.kind === "succeeded") {
        await this.deps.sfn.send(
          new SendTaskSuccessCommand({ taskToken: runToken, output: JSON.stringify({ ok: true }) }),
        );
      } else {
        await this.deps.sfn.send(
          new SendTaskFailureCommand({
            taskToken: runToken,
            error: reportedErrorName({
              type: outcome.type,
              unrecoverable: outcome.unrecoverable === true,
            }).slice(0, MAX_ERROR_CHARS),
            cause: outcome.message.slice(0, MAX_CAUSE_CHARS),
          }),
        );
      }
    };
    for (let round = 1; ; round++) {
      try {
        await send();
        this.log.info(outcome.kind === "succeeded" ? "attempt succeeded" : "attempt failed", {
          jobId: job.id,
          attempt,
          ...(outcome.kind === "failed"
            ? { errorType: outcome.type, unrecoverable: outcome.unrecoverable === true }
            : {}),
        });
        return;
      } catch (error) {
        if (isTaskTokenGone(error)) {
          this.log.info("the lifecycle no longer waits for this attempt's report", {
            jobId: job.id,
            attempt,
          });
          return;
        }
        if (round >= 4) {
          // The execution's heartbeat timeout will call the attempt lost.
          this.log.error("attempt outcome not reported", { jobId: job.id, attempt, error: errorInfo(error) });
          return;
        }
        await delay(500 * 2 ** round);
      }
    }
  }

  // ---- node ----------------------------------------------------------------------------------

  private async beatNode(): Promise<void> {
    try {
      const node = await this.deps.nodes.beat(this.options.pool, this.nodeId, this.clock());
      if (node?.status === "draining" && this.state === "running" && !this.drainRequested) {
        // Only an admin's drain makes a running worker's node draining: this worker sets it
        // itself only once it is stopping. The beat answers the item anyway, so noticing costs
        // no request of its own.
        this.drainRequested = true;
        this.log.info("node drained by an admin; stopping", {
          nodeId: this.nodeId,
          drainedBy: node.drainedBy,
          drainedAt: node.drainedAt,
        });
        const requested = this.options.onDrainRequested;
        if (requested) requested(node.drainedBy);
        else void this.stop(Number.POSITIVE_INFINITY);
        return;
      }
      if (node || this.state !== "running") return;
      // Marked lost (this process stalled longer than the lost period): its capacity left the
      // pool's books; come back as a fresh node, the old id's reservations are released on it.
      const nodeId = this.newNodeId();
      await this.deps.nodes.register(this.registration(nodeId), this.clock());
      this.log.warn("node was marked lost; registered again", { lostNodeId: this.nodeId, nodeId });
      this.nodeId = nodeId;
    } catch (error) {
      this.log.warn("node heartbeat failed", { nodeId: this.nodeId, error: errorInfo(error) });
    }
  }

  private registration(nodeId: string) {
    const { cpu, memoryMb, gpu } = this.options.capacity;
    return {
      pool: this.options.pool,
      nodeId,
      workerId: this.options.workerId,
      capacity: { cpu, memoryMb, gpu },
    };
  }

  private workerNode(): WorkerNode {
    return this.registration(this.nodeId);
  }

  private newNodeId(): string {
    return (this.options.newNodeId ?? freshNodeId)(this.options.nodeName);
  }

  private async drain(): Promise<void> {
    // A signal can come while the node is still registering: let that finish, then drain it.
    const registered = await this.starting?.then(
      () => true,
      () => false,
    );
    if (!registered) {
      this.state = "stopped";
      return;
    }
    this.state = "stopping";
    this.wake();
    this.log.info("draining", {
      nodeId: this.nodeId,
      running: this.running.size,
      graceMs: Number.isFinite(this.drainDeadline) ? this.drainDeadline - Date.now() : "unlimited",
    });
    try {
      await this.deps.nodes.setStatus(this.options.pool, this.nodeId, "draining");
    } catch (error) {
      this.log.warn("node not marked draining", { error: errorInfo(error) });
    }
    await this.loop;
    await Promise.all(this.arrivals.splice(0).map((r) => this.changeVisibility(r, 0)));

    const runs = () => Promise.all([...this.running.values()].map((r) => r.done));
    await this.untilDrainDeadline(runs());
    for (const run of this.running.values()) {
      run.controller.abort(new AttemptStoppedError("worker_shutdown", "worker shutting down"));
    }
    await withDeadline(runs(), REPORT_GRACE_MS);
    // Messages a long poll still brings are handed back rather than left invisible.
    await this.untilDrainDeadline(Promise.all(this.longPolls.values()));

    // An attempt's capacity is released by its lifecycle execution after the worker reports, a
    // moment later, and a job booked here but not started is released when another node takes
    // it: an unhurried drain (an admin's) keeps the node beating and tries again for a while, so
    // that the node leaves rather than going silent and being found lost.
    const patient = !Number.isFinite(this.drainDeadline);
    const until = Date.now() + (patient ? DEREGISTER_PATIENCE_MS : 0);
    let gone = false;
    for (;;) {
      try {
        gone = await this.deps.nodes.deregister(this.options.pool, this.nodeId);
      } catch (error) {
        this.log.warn("node not deregistered", { error: errorInfo(error) });
      }
      if (gone || Date.now() >= until) break;
      await delay(DEREGISTER_RETRY_MS);
    }
    if (!gone) this.log.warn("node still holds reservations; left draining", { nodeId: this.nodeId });
    clearInterval(this.nodeTimer);
    await this.nodeBeat;
    this.state = "stopped";
    this.log.info("worker stopped", { nodeId: this.nodeId });
  }

  /** The work, or the drain's deadline, whichever comes first; the deadline may move earlier. */
  private async untilDrainDeadline(work: Promise<unknown>): Promise<void> {
    let settled = false;
    const done = work.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    while (!settled && Date.now() < this.drainDeadline) {
      let timer: NodeJS.Timeout | undefined;
      const left = this.drainDeadline - Date.now();
      await Promise.race([
        done,
        new Promise<void>((resolve) => {
          this.deadlineChanged = resolve;
          if (Number.isFinite(left)) timer = setTimeout(resolve, left);
        }),
      ]);
      clearTimeout(timer);
      this.deadlineChanged = undefined;
    }
  }

  // ---- SQS -----------------------------------------------------------------------------------

  private async deleteMessage(received: Received): Promise<void> {
    try {
      const deleted = await this.dispatch.delete(received.tier, received.message.ReceiptHandle);
      // Received again by another since (its visibility lapsed): that receiver finds it stale.
      if (deleted === "gone")
        this.log.info("message already gone", { messageId: received.message.MessageId });
    } catch (error) {
      // It comes back after its visibility timeout and is then found stale.
      this.log.warn("message not deleted", {
        messageId: received.message.MessageId,
        error: errorInfo(error),
      });
    }
  }

  private async changeVisibility(received: Received, seconds: number): Promise<void> {
    try {
      // "gone": visible again already, or another receiver's now; either way handed back.
      await this.dispatch.handBack(received.tier, received.message.ReceiptHandle, seconds);
    } catch (error) {
      this.log.warn("message visibility not changed", {
        messageId: received.message.MessageId,
        error: errorInfo(error),
      });
    }
  }
}

function attemptKey(jobId: string, attempt: number): string {
  return `${jobId}#${attempt}`;
}

/** The work's outcome, or the signal's reason as soon as it aborts (the work is left to itself). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function withDeadline(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work, new Promise((resolve) => (timer = setTimeout(resolve, Math.max(0, ms))))]);
  clearTimeout(timer);
}

function errorInfo(error: unknown): Record<string, unknown> {
  return error instanceof Error ? { name: error.name, message: error.message } : { message: String(error) };
}
