import {
  ExecutionAlreadyExists,
  ExecutionDoesNotExist,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
} from "@aws-sdk/client-sfn";
import { awsClientOptions } from "../store/aws";
import { installFaultInjection } from "../store/faults";
import { traced } from "../store/tracing";
import type { DispatchInput } from "./lifecycle";
import { logger } from "./logger";

/**
 * The job lifecycle executions (state-machines/job-lifecycle.asl.json): one Standard execution
 * per attempt, started by the scheduler when it admits the job, with the admission as its input.
 * Named `<jobId>-<version>` by the version the admission wrote, so starting the same one twice
 * (at-least-once callers) is harmless and every admission gets a fresh one.
 */
export interface LifecycleExecutions {
  /**
   * Starts the attempt's execution; returns its ARN, or null when none could be started now
   * (Step Functions unreachable, or no state machine configured).
   */
  start(jobId: string, version: number, input: DispatchInput): Promise<string | null>;
  /** The ARN `start(jobId, version, …)` gives its execution; null when no state machine is configured. */
  arnOf(jobId: string, version: number): string | null;
  /** Stops an execution (cancel, pause); an execution that already ended is fine. */
  stop(executionArn: string, cause: string): Promise<void>;
}

export function executionName(jobId: string, version: number): string {
  return `${jobId}-${version}`;
}

export class StepFunctionsExecutions implements LifecycleExecutions {
  constructor(
    private readonly client: SFNClient,
    /** Unset: executions are not started here (an API-only setup); the reconciler starts them later. */
    private readonly stateMachineArn: string | undefined,
  ) {}

  async start(jobId: string, version: number, input: DispatchInput): Promise<string | null> {
    if (!this.stateMachineArn) return null;
    const name = executionName(jobId, version);
    try {
      const out = await this.client.send(
        new StartExecutionCommand({
          stateMachineArn: this.stateMachineArn,
          name,
          input: JSON.stringify(input),
        }),
      );
      return out.executionArn ?? null;
    } catch (error) {
      // Started before by an earlier try of this admission: the version names one admission only.
      if (error instanceof ExecutionAlreadyExists) return executionArnOf(this.stateMachineArn, name);
      // The scheduler undoes the admission; the job is admitted again on a later pass.
      logger.warn("lifecycle execution not started", { jobId, error: error as Error });
      return null;
    }
  }

  arnOf(jobId: string, version: number): string | null {
    return this.stateMachineArn ? executionArnOf(this.stateMachineArn, executionName(jobId, version)) : null;
  }

  async stop(executionArn: string, cause: string): Promise<void> {
    try {
      await this.client.send(new StopExecutionCommand({ executionArn, cause }));
    } catch (error) {
      if (error instanceof ExecutionDoesNotExist) return;
      logger.warn("lifecycle execution not stopped", { executionArn, error: error as Error });
    }
  }
}

/**
 * Step Functions' answers to SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat that mean no
 * state waits on the task token any more: the execution ended, timed out or was stopped, or the
 * state already took an answer (TaskTimedOut), or the token is none this service issued. Whoever
 * answers (the lifecycle, the worker) has nothing left to report: not an error to retry.
 */
const TASK_TOKEN_GONE: ReadonlySet<string> = new Set(["TaskDoesNotExist", "TaskTimedOut", "InvalidToken"]);

/**
 * Whether a task-token call failed because the token is gone. By the error's name, which the
 * SDK's exception classes (TaskDoesNotExist, TaskTimedOut, InvalidToken) set: so an error from
 * another copy of @aws-sdk/client-sfn, or rebuilt from a response, is recognised too.
 */
export function isTaskTokenGone(error: unknown): boolean {
  return error instanceof Error && TASK_TOKEN_GONE.has(error.name);
}

/** arn:aws:states:region:account:stateMachine:name → …:execution:name:executionName */
export function executionArnOf(stateMachineArn: string, name: string): string {
  return `${stateMachineArn.replace(":stateMachine:", ":execution:")}:${name}`;
}

export function createSfnClient(options: { region: string; endpoint?: string | undefined }): SFNClient {
  // Five attempts, as the DynamoDB client has: a StartExecution that gives up after the SDK's
  // default three leaves its job to the reconciler (minutes), and throttling comes in bursts.
  const client = traced(
    new SFNClient({ ...awsClientOptions(options.endpoint, options.region), maxAttempts: 5 }),
  );
  // The soak harness's throttling (store/faults.ts); inert unless turned on, and never in AWS.
  installFaultInjection(client.middlewareStack, "sfn", options.endpoint);
  return client;
}
