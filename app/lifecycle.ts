import { SendTaskFailureCommand, SendTaskSuccessCommand, type SFNClient } from "@aws-sdk/client-sfn";
import { z } from "zod";
import { recordAttemptFailure } from "./attempt-failure";
import { type CircuitBreakers, circuitBreakers } from "./circuits";
import { completeAttempt } from "./completion";
import { config } from "./config";
import { createSfnClient, isTaskTokenGone } from "./executions";
import { requeueJob } from "./requeue";
import { type AppContext, appContext } from "./runtime";

/**
 * The steps of the job lifecycle state machine (state-machines/job-lifecycle.asl.json), one
 * function per `action` of the lifecycle Lambda: wait for admission, complete an attempt,
 * record a failed attempt, requeue after the backoff. docs/lifecycle.md is the design.
 *
 * Step Functions delivers every step at least once (a Lambda retried after a lost response, a
 * reconciler that replays a dead execution's step), so each step reads the job, decides from
 * what it finds, and writes conditionally: a replay finds its work done and does nothing more
 * than finish what a crash may have left half done (dependents, escalation).
 */

// ---------------------------------------------------------------------------------------------
// Contracts with the scheduler and the state machine
// ---------------------------------------------------------------------------------------------

/**
 * A lifecycle execution's input: the admission. The scheduler starts the execution (named
 * `<jobId>-<version>` by the version its admission wrote) once it has reserved capacity and moved
 * the job to `dispatched`; the Dispatch state reads these fields.
 */
export const dispatchInputSchema = z
  .object({
    jobId: z.string().min(1),
    /** The pool and node holding the reservation. */
    pool: z.string().min(1),
    nodeId: z.string().min(1),
    /** The pool's SQS queue for the job's priority tier (JOBQ_QUEUES). */
    queueUrl: z.string().min(1),
    /** The attempt being started: the job's `attempts` after admission (1 for the first). */
    attempt: z.number().int().min(1),
    /**
     * The Dispatch state's TimeoutSeconds: the job's timeoutSeconds plus the queue wait the
     * scheduler allows (lostAfterSeconds) and a grace. Step Functions wants it above the
     * state's HeartbeatSeconds (lostAfterSeconds).
     */
    timeoutSeconds: z.number().int().min(2),
    /** The worker heartbeats the attempt every third of this (the dispatch message carries it). */
    heartbeatSeconds: z.number().int().min(1),
    /**
     * The Dispatch state's HeartbeatSeconds: the backstop that declares an attempt lost when no
     * heartbeat came for this long. It spans the queue wait before a worker takes the attempt;
     * a worker that dies while running is found sooner, by its node going silent.
     */
    lostAfterSeconds: z.number().int().min(1),
  })
  .refine((a) => a.heartbeatSeconds <= a.lostAfterSeconds, {
    message: "heartbeatSeconds must not exceed lostAfterSeconds",
    path: ["heartbeatSeconds"],
  })
  .refine((a) => a.lostAfterSeconds < a.timeoutSeconds, {
    message: "lostAfterSeconds must be smaller than timeoutSeconds",
    path: ["lostAfterSeconds"],
  });
export type DispatchInput = z.infer<typeof dispatchInputSchema>;

/**
 * The answer to an AwaitAdmission token of the lifecycle before executions started at admission
 * (docs/lifecycle.md, "Moving a deployed stack"): it ends that execution without running anything.
 */
export const notAdmittedSchema = z.object({
  admitted: z.literal(false),
  reason: z.string().min(1),
});
export type NotAdmittedOutput = z.infer<typeof notAdmittedSchema>;

/** How an attempt ended without success: from the error the Dispatch state caught (`outcomeOf`). */
export const ATTEMPT_OUTCOMES = ["failed", "timed_out", "lost"] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

/** A Step Functions error as a Catch puts it: `Error` is the type, `Cause` the message. */
export const stepErrorSchema = z.object({
  Error: z.string().nullish(),
  Cause: z.string().nullish(),
});
export type StepError = z.infer<typeof stepErrorSchema>;

const jobId = z.string().min(1).max(128);
const attempt = z.number().int().min(1);
/**
 * The calling execution (`$$.Execution.Id`): a step acts only on a job whose `executionArn` is
 * this one (`supersededBy`). Absent from executions started by an earlier definition and from
 * the reconciler's calls, which keep the checks on status and attempt alone.
 */
const callerExecution = z.string().min(1).optional();

/** The lifecycle Lambda's input: the state machine's Payload for each action. */
export const lifecycleRequestSchema = z.discriminatedUnion("action", [
  z.object({
    action: z.literal("await-admission"),
    jobId,
    taskToken: z.string().min(1),
    executionArn: z.string().min(1),
  }),
  z.object({ action: z.literal("complete"), jobId, attempt }),
  z.object({
    action: z.literal("attempt-failed"),
    jobId,
    attempt,
    /** Set by the reconciler; the state machine leaves it to `outcomeOf(error)`. */
    outcome: z.enum(ATTEMPT_OUTCOMES).optional(),
    error: stepErrorSchema.default({}),
    executionArn: callerExecution,
  }),
  z.object({ action: z.literal("requeue"), jobId, executionArn: callerExecution }),
]);
export type LifecycleRequest = z.infer<typeof lifecycleRequestSchema>;

export type AwaitAdmissionInput = Omit<Extract<LifecycleRequest, { action: "await-admission" }>, "action">;
export type CompleteInput = Omit<Extract<LifecycleRequest, { action: "complete" }>, "action">;
/** A failed attempt as its recorder sees it: the kind of failure settled (`outcomeOf`). */
export type AttemptFailureInput = Omit<
  Extract<LifecycleRequest, { action: "attempt-failed" }>,
  "action" | "outcome"
> & {
  readonly outcome: AttemptOutcome;
};
export type RequeueInput = Omit<Extract<LifecycleRequest, { action: "requeue" }>, "action">;

/**
 * What AttemptFailed hands the RetryOrEnd choice: wait `delaySeconds` and go back to admission,
 * or end the execution. Both fields always present: the state's ResultSelector reads both.
 */
export interface RetryDecision {
  readonly next: "retry" | "end";
  readonly delaySeconds: number;
}

/**
 * Settles a task token of a waiting state. An interface so the local stack and tests can see
 * what the lifecycle tells Step Functions.
 */
export interface TaskTokens {
  /** SendTaskSuccess; false when no state waits on the token any more (ended, timed out, superseded). */
  succeed(token: string, output: unknown): Promise<boolean>;
  /** SendTaskFailure; false when no state waits on the token any more. */
  fail(token: string, error: string, cause: string): Promise<boolean>;
}

export class StepFunctionsTaskTokens implements TaskTokens {
  constructor(private readonly client: SFNClient) {}

  succeed(token: string, output: unknown): Promise<boolean> {
    return this.answer(() =>
      this.client.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify(output) })),
    );
  }

  fail(token: string, error: string, cause: string): Promise<boolean> {
    return this.answer(() =>
      this.client.send(new SendTaskFailureCommand({ taskToken: token, error, cause })),
    );
  }

  private async answer(send: () => Promise<unknown>): Promise<boolean> {
    try {
      await send();
      return true;
    } catch (error) {
      if (isTaskTokenGone(error)) return false;
      throw error;
    }
  }
}

export type LifecycleContext = Pick<
  AppContext,
  "repo" | "clock" | "nodesTable" | "executions" | "events" | "pools" | "taskTypes" | "usage"
> & {
  readonly tokens: TaskTokens;
  /** Circuit breakers (app/circuits.ts): absent, attempts count against none (tests of other things). */
  readonly circuits?: CircuitBreakers;
};

let cached: LifecycleContext | undefined;

/** The lifecycle functions' context (the steps' Lambda and the dependents' stream consumer), built once. */
export function lifecycleContext(): LifecycleContext {
  if (!cached) {
    const c = config();
    const app = appContext();
    cached = {
      ...app,
      circuits: circuitBreakers(app),
      tokens: new StepFunctionsTaskTokens(createSfnClient({ region: c.region, endpoint: c.sfnEndpoint })),
    };
  }
  return cached;
}

/** Runs the step the state machine asked for. */
export async function runLifecycleStep(ctx: LifecycleContext, request: LifecycleRequest): Promise<unknown> {
  switch (request.action) {
    case "await-admission":
      return dismissLegacyExecution(ctx, request);
    case "complete":
      return completeAttempt(ctx, request);
    case "attempt-failed":
      return recordAttemptFailure(ctx, { ...request, outcome: request.outcome ?? outcomeOf(request.error) });
    case "requeue":
      return requeueJob(ctx, request);
  }
}

// ---------------------------------------------------------------------------------------------
// Outcomes and executions of the lifecycle before this one
// ---------------------------------------------------------------------------------------------

/**
 * The kind of failure a Dispatch error names. A heartbeat lapse is matched before the timeout
 * because AWS documents States.HeartbeatTimeout as matching States.Timeout too; the worker
 * reports its own timeout as `timeout`, and the scheduler a dead node's attempts as `lost`.
 */
export function outcomeOf(error: StepError): AttemptOutcome {
  switch (error.Error) {
    case "States.HeartbeatTimeout":
    case "lost":
      return "lost";
    case "States.Timeout":
    case "timeout":
      return "timed_out";
    default:
      return "failed";
  }
}

/**
 * An execution of the previous lifecycle definition (started at submit, parked at
 * AwaitAdmission) after the stack moved to executions started at admission: it is told "not
 * admitted" at once and ends; the scheduler admits the job as any other and starts its new
 * execution. Step Functions finishes running executions on the definition they started with.
 */
async function dismissLegacyExecution(
  ctx: LifecycleContext,
  input: AwaitAdmissionInput,
): Promise<{ readonly waiting: false; readonly reason: string }> {
  const reason = `job ${input.jobId}: executions now start at admission; this one is no longer needed`;
  const output: NotAdmittedOutput = { admitted: false, reason };
  await ctx.tokens.succeed(input.taskToken, output);
  return { waiting: false, reason };
}

// The steps and what the worker and the stream consumer call, by concern: completion (the
// worker's success, the previous lifecycle's Complete, dependents), attempt failures and
// escalation, requeue; the helpers they share in lifecycle-steps.ts.
export { recordAttemptFailure } from "./attempt-failure";
export {
  type CompletedRun,
  type CompletionContext,
  completeAttempt,
  completeRun,
  releaseDependents,
} from "./completion";
export { requeueItem, requeueJob } from "./requeue";
