import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import type { StateMachine, StateMachineDefinition } from "aws-local-stepfunctions";
import { z } from "zod";
import { awsClientOptions } from "../store/aws";
import { AwsApiError, startAwsJsonServer } from "./aws-json-server";
import { functionNameOf, invokeHandler, type LambdaHandler, LOCAL_ACCOUNT } from "./lambda";

/**
 * The local Step Functions: an HTTP endpoint on loopback that speaks the AWS JSON 1.0 protocol
 * for the calls jobq makes (StartExecution, StopExecution, DescribeExecution, SendTaskSuccess,
 * SendTaskFailure, SendTaskHeartbeat), so the SDK's SFNClient works against it unchanged. The
 * states are interpreted by aws-local-stepfunctions; what that library lacks is done here
 * (LOCAL.md):
 *
 * - Task tokens. `.waitForTaskToken` is ignored by the library and `$$.Task.Token` is unset, so
 *   every execution runs with a sentinel token in its context, and each Task invocation replaces
 *   the sentinel in its parameters with a fresh token and waits on it. A token names one
 *   invocation only: a late or duplicate SendTaskSuccess for an earlier state (or an earlier
 *   try of the same state) is refused with TaskTimedOut and can never complete a later one.
 * - HeartbeatSeconds / HeartbeatSecondsPath, enforced here: a lapse fails the task with
 *   `States.HeartbeatTimeout`; as in AWS, a catcher or retrier for `States.Timeout` matches it too.
 * - TimeoutSeconds / TimeoutSecondsPath: the library's own timer raises `States.Timeout`; the
 *   paths are resolved against the state input (as in AWS), not against the Parameters output
 *   (as the library would), and a Task without a timeout waits as long as a timer can (≈24 days)
 *   instead of the library's 60 s default.
 * - The integrations: `arn:aws:states:::lambda:invoke[.waitForTaskToken]` and plain Lambda ARNs
 *   call an in-process handler module resolved from the FunctionName; `sqs:sendMessage
 *   [.waitForTaskToken]` sends to the local SQS with the SDK. Anything else is refused when the
 *   state machine is loaded.
 *
 * Executions live in memory; after a restart the reconciler gives every job a new one.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export type ExecutionStatus = "RUNNING" | "SUCCEEDED" | "FAILED" | "ABORTED" | "TIMED_OUT";

export interface LocalStateMachineSpec {
  /** The state machine's name: its ARN is `arn:aws:states:<region>:000000000000:stateMachine:<name>`. */
  readonly name: string;
  /** The ASL definition, placeholders already substituted (loadStateMachineDefinition). */
  readonly definition: JsonObject;
}

export interface LocalStepFunctionsOptions {
  readonly stateMachines: readonly LocalStateMachineSpec[];
  /**
   * The handler of a Lambda function, by function name (the last part of its ARN). Called once
   * per name; a rejection fails the Task with `Lambda.ResourceNotFoundException`.
   */
  readonly resolveFunction: (functionName: string) => Promise<LambdaHandler> | LambdaHandler;
  /** The local SQS endpoint for `sqs:sendMessage` tasks. @default none: such tasks fail */
  readonly sqsEndpoint?: string;
  /** @default 0 (a free port) */
  readonly port?: number;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** @default "us-east-1" */
  readonly region?: string;
  /** Failed executions and failing Lambda tasks, one line each on stderr. @default true */
  readonly log?: boolean;
}

export interface LocalStepFunctions {
  /** `http://127.0.0.1:<port>`: the SFNClient's `endpoint`. */
  readonly endpoint: string;
  stateMachineArn(name: string): string;
  /**
   * What Step Functions Standard bills, counted since start: executions started and state
   * transitions (every state entered, and every retry of one, nested states included).
   */
  meter(): StepFunctionsMeter;
  /** Aborts every execution, waits briefly for in-flight Lambda calls, closes the endpoint. Idempotent. */
  stop(): Promise<void>;
}

export interface StepFunctionsMeter {
  readonly executions: number;
  readonly stateTransitions: number;
}

/** The local Step Functions cannot load a definition or start; the message says why. */
export class LocalStepFunctionsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LocalStepFunctionsError";
  }
}

/** setTimeout's ceiling (2^31 − 1 ms): a longer timeout would fire at once. */
export const MAX_TIMER_SECONDS = 2_147_483;
const TOKEN_PREFIX = "jobq-local-task.";
const TOKEN_PATTERN = /^jobq-local-task\.[A-Za-z0-9_-]{32}$/;
/** Stands in for `$$.Task.Token` until the Task invocation puts its own token there. */
const TOKEN_SENTINEL = "jobq-local-task-token-sentinel";
/** How many ended executions and closed task tokens are remembered for Describe and for refusals. */
const CLOSED_MEMORY = 10_000;
/** stop(): how long in-flight in-process Lambda calls may take to finish before the endpoint goes. */
const STOP_GRACE_MS = 5_000;
const EXECUTION_NAME = /^[^\s<>{}[\]?*"#%\\^|~`$&,;:/]{1,80}$/;

/**
 * Reads an ASL file and substitutes its `${Name}` placeholders, as CDK's
 * `DefinitionBody.fromFile` with `definitionSubstitutions` does in AWS. A placeholder without a
 * value is an error here (in AWS the deployment would fail).
 */
export function loadStateMachineDefinition(
  path: string,
  substitutions: Readonly<Record<string, string>>,
): JsonObject {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new LocalStepFunctionsError(`cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parseDefinition(substituteDefinition(text, substitutions, path), path);
}

export function substituteDefinition(
  text: string,
  substitutions: Readonly<Record<string, string>>,
  source = "the definition",
): string {
  const missing = new Set<string>();
  const result = text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (placeholder, name: string) => {
    const value = substitutions[name];
    if (value === undefined) {
      missing.add(name);
      return placeholder;
    }
    // The value lands inside a JSON string.
    return JSON.stringify(value).slice(1, -1);
  });
  if (missing.size > 0) {
    throw new LocalStepFunctionsError(
      `${source} uses \${${[...missing].join("}, ${")}} with no substitution`,
    );
  }
  return result;
}

function parseDefinition(text: string, source: string): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new LocalStepFunctionsError(`${source} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (!isObject(parsed)) throw new LocalStepFunctionsError(`${source} is not a JSON object`);
  return parsed;
}

export function stateMachineArn(name: string, region = "us-east-1"): string {
  return `arn:aws:states:${region}:${LOCAL_ACCOUNT}:stateMachine:${name}`;
}

export async function startLocalStepFunctions(
  options: LocalStepFunctionsOptions,
): Promise<LocalStepFunctions> {
  installPromiseWithResolvers();
  // Imported only now: the library needs Promise.withResolvers, which Node 20 lacks.
  const { StateMachine } = await import("aws-local-stepfunctions");
  const region = options.region ?? "us-east-1";
  const machines = new Map<string, LoadedMachine>();
  for (const spec of options.stateMachines) {
    const { definition, tasks } = prepareDefinition(spec.definition, spec.name);
    let machine: StateMachine;
    try {
      machine = new StateMachine(definition as unknown as StateMachineDefinition);
    } catch (error) {
      throw new LocalStepFunctionsError(`state machine ${spec.name}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const arn = stateMachineArn(spec.name, region);
    machines.set(arn, { arn, name: spec.name, machine, tasks });
  }
  const service = new LocalSfnService(machines, options, region);
  const server = await startAwsJsonServer({
    name: "local sfn",
    port: options.port,
    host: options.host,
    protocol: "1.0",
    targetPrefix: "AWSStepFunctions.",
    internalErrorType: "InternalFailure",
    operations: Object.fromEntries(
      Object.entries(OPERATIONS).map(([name, operation]) => [
        name,
        (input: unknown) => operation(service, input),
      ]),
    ),
  });

  let stopping: Promise<void> | undefined;
  return {
    endpoint: server.endpoint,
    stateMachineArn: (name) => stateMachineArn(name, region),
    meter: () => ({ executions: service.executionsStarted, stateTransitions: service.stateTransitions }),
    stop: () => {
      stopping ??= (async () => {
        await service.stop();
        await server.close();
      })();
      return stopping;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Preparing a definition for the interpreter

interface TaskSpec {
  readonly stateName: string;
  readonly integration: Integration;
  /** The effective literal timeout; unused when `timeoutFromPath`. */
  readonly timeoutSeconds: number;
  readonly timeoutFromPath: boolean;
  readonly heartbeatSeconds: number | undefined;
  readonly heartbeatFromPath: boolean;
}

type Integration =
  | { readonly kind: "lambda:invoke"; readonly waitForTaskToken: boolean }
  | { readonly kind: "lambda"; readonly functionName: string; readonly waitForTaskToken: false }
  | { readonly kind: "sqs:sendMessage"; readonly waitForTaskToken: boolean };

interface LoadedMachine {
  readonly arn: string;
  readonly name: string;
  readonly machine: StateMachine;
  readonly tasks: ReadonlyMap<string, TaskSpec>;
}

/** What every Task override receives: the library resolves these through the Parameters it is given. */
interface TaskInput {
  /** The state input (after InputPath), for the timeout and heartbeat paths. */
  readonly raw: Json;
  /** The original Parameters' output, or the state input when there were none. */
  readonly params: Json;
  readonly timeout: Json | undefined;
  readonly heartbeat: Json | undefined;
}

/**
 * A copy of the definition in which every Task's Parameters are wrapped so that the override
 * receives its parameters and the values of its timeout and heartbeat paths, resolved by the
 * library against the state input; timeouts are made explicit (the library's default is 60 s,
 * AWS's is none); catchers and retriers of States.Timeout also match States.HeartbeatTimeout.
 */
function prepareDefinition(
  original: JsonObject,
  machineName: string,
): { definition: JsonObject; tasks: Map<string, TaskSpec> } {
  const definition = structuredClone(original);
  const tasks = new Map<string, TaskSpec>();
  rewriteStates(definition, tasks, machineName);
  return { definition, tasks };
}

function rewriteStates(machine: JsonObject, tasks: Map<string, TaskSpec>, machineName: string): void {
  const states = machine.States;
  if (!isObject(states)) return;
  for (const [stateName, state] of Object.entries(states)) {
    if (!isObject(state)) continue;
    if (state.Type === "Task") tasks.set(stateName, rewriteTask(stateName, state, machineName));
    if (state.Type === "Parallel" && Array.isArray(state.Branches)) {
      for (const branch of state.Branches) if (isObject(branch)) rewriteStates(branch, tasks, machineName);
    }
    if (state.Type === "Map") {
      for (const nested of [state.Iterator, state.ItemProcessor]) {
        if (isObject(nested)) rewriteStates(nested, tasks, machineName);
      }
    }
  }
}

function rewriteTask(stateName: string, state: JsonObject, machineName: string): TaskSpec {
  const where = `state machine ${machineName}, state ${stateName}`;
  const resource = state.Resource;
  if (typeof resource !== "string") throw new LocalStepFunctionsError(`${where}: Resource is not a string`);
  const integration = parseResource(resource);
  if (!integration) {
    throw new LocalStepFunctionsError(
      `${where}: resource ${resource} is not emulated locally (lambda:invoke, sqs:sendMessage, their ` +
        ".waitForTaskToken forms and Lambda function ARNs are)",
    );
  }
  const parameters: JsonObject = { "__raw.$": "$" };
  if ("Parameters" in state && state.Parameters !== undefined) parameters.__params = state.Parameters;
  else parameters["__params.$"] = "$";

  const timeoutFromPath = typeof state.TimeoutSecondsPath === "string";
  let timeoutSeconds = MAX_TIMER_SECONDS;
  if (timeoutFromPath) {
    parameters["__timeout.$"] = state.TimeoutSecondsPath ?? "$";
    state.TimeoutSecondsPath = "$.__timeout";
  } else {
    if (typeof state.TimeoutSeconds === "number")
      timeoutSeconds = Math.min(state.TimeoutSeconds, MAX_TIMER_SECONDS);
    state.TimeoutSeconds = timeoutSeconds;
  }
  const heartbeatFromPath = typeof state.HeartbeatSecondsPath === "string";
  if (heartbeatFromPath) parameters["__heartbeat.$"] = state.HeartbeatSecondsPath ?? "$";
  const heartbeatSeconds = typeof state.HeartbeatSeconds === "number" ? state.HeartbeatSeconds : undefined;
  // Enforced by the override; the library ignores them.
  delete state.HeartbeatSecondsPath;
  delete state.HeartbeatSeconds;
  state.Parameters = parameters;

  // AWS: "States.Timeout: a Task state ran longer than TimeoutSeconds, or failed to send a
  // heartbeat for longer than HeartbeatSeconds". The library matches error names exactly.
  for (const field of ["Catch", "Retry"] as const) {
    const entries = state[field];
    if (!Array.isArray(entries)) continue;
    for (const entry of entries) {
      if (!isObject(entry) || !Array.isArray(entry.ErrorEquals)) continue;
      const names = entry.ErrorEquals;
      if (names.includes("States.Timeout") && !names.includes("States.HeartbeatTimeout")) {
        names.push("States.HeartbeatTimeout");
      }
    }
  }
  return { stateName, integration, timeoutSeconds, timeoutFromPath, heartbeatSeconds, heartbeatFromPath };
}

function parseResource(resource: string): Integration | null {
  const service =
    /^arn:aws[a-z-]*:states:[^:]*:[^:]*:(lambda:invoke|sqs:sendMessage)(\.waitForTaskToken)?$/.exec(resource);
  if (service) {
    const kind = service[1] === "lambda:invoke" ? "lambda:invoke" : "sqs:sendMessage";
    return { kind, waitForTaskToken: service[2] !== undefined };
  }
  if (/^arn:aws[a-z-]*:lambda:[^:]*:[^:]*:function:[^:]+(:[^:]+)?$/.test(resource)) {
    return { kind: "lambda", functionName: functionNameOf(resource), waitForTaskToken: false };
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Executions and task tokens

/** Ends a Task as the stop of its execution: never caught, never retried, so the run unwinds. */
class ExecutionClosedError extends Error {
  readonly isRetryable = false;
  readonly isCatchable = false;
  constructor() {
    super("the execution is no longer running");
    this.name = "ExecutionClosed";
  }
}

/** A problem with the definition or its data, like the library's States.Runtime: not catchable. */
class StatesRuntimeError extends Error {
  readonly isRetryable = false;
  readonly isCatchable = false;
  constructor(message: string) {
    super(message);
    this.name = "States.Runtime";
  }
}

/** A Task's failure as Catch and Retry see it: the library matches `name` against ErrorEquals. */
class TaskFailedError extends Error {
  constructor(error: string, cause: string) {
    super(cause);
    this.name = error;
  }
}

interface Execution {
  readonly arn: string;
  readonly name: string;
  readonly machine: LoadedMachine;
  readonly input: string;
  readonly startDate: Date;
  status: ExecutionStatus;
  stopDate?: Date;
  output?: string;
  error?: string;
  cause?: string;
  /** Aborted when the execution ends: releases its pending tasks and in-flight calls. */
  readonly controller: AbortController;
  readonly tokens: Set<string>;
  abortRun?: () => void;
}

interface PendingTask {
  readonly token: string;
  readonly execution: Execution;
  readonly stateName: string;
  readonly heartbeatMs: number | undefined;
  heartbeatTimer?: NodeJS.Timeout;
  timeoutTimer?: NodeJS.Timeout;
  readonly resolve: (output: Json) => void;
  readonly reject: (error: Error) => void;
}

type ClosedReason = "succeeded" | "failed" | "timed out" | "execution ended";

/** A Step Functions error answer (`__type` is what the SDK maps to its exception class). */
class SfnApiError extends AwsApiError {}

class LocalSfnService {
  private readonly executions = new Map<string, Execution>();
  /** Ended executions, oldest first, so the memory of them stays bounded. */
  private readonly ended = new Set<string>();
  private readonly tasks = new Map<string, PendingTask>();
  private readonly closedTokens = new Map<string, ClosedReason>();
  private readonly handlers = new Map<string, Promise<LambdaHandler>>();
  private readonly inflight = new Set<Promise<unknown>>();
  private sqsClient: SQSClient | undefined;
  private stopped = false;
  executionsStarted = 0;
  stateTransitions = 0;

  constructor(
    private readonly machines: ReadonlyMap<string, LoadedMachine>,
    private readonly options: LocalStepFunctionsOptions,
    private readonly region: string,
  ) {}

  // --- the API -------------------------------------------------------------------------------

  startExecution(request: unknown): JsonObject {
    const r = parseRequest(startExecutionRequest, request);
    this.refuseWhenStopped();
    const machine = this.machines.get(r.stateMachineArn);
    if (!machine)
      throw new SfnApiError(
        "StateMachineDoesNotExist",
        `State Machine Does Not Exist: '${r.stateMachineArn}'`,
      );
    const name = r.name ?? randomUUID();
    if (!EXECUTION_NAME.test(name)) throw new SfnApiError("InvalidName", `Invalid Name: '${name}'`);
    const input = r.input ?? "{}";
    let parsedInput: unknown;
    try {
      parsedInput = JSON.parse(input);
    } catch {
      throw new SfnApiError("InvalidExecutionInput", "Invalid State Machine Execution Input: not valid JSON");
    }
    const arn = `${machine.arn.replace(":stateMachine:", ":execution:")}:${name}`;
    const existing = this.executions.get(arn);
    if (existing) {
      // AWS: idempotent while the execution runs with the same input; otherwise the name is taken.
      if (existing.status === "RUNNING" && existing.input === input) {
        return { executionArn: arn, startDate: epochSeconds(existing.startDate) };
      }
      throw new SfnApiError("ExecutionAlreadyExists", `Execution Already Exists: '${arn}'`);
    }
    const execution: Execution = {
      arn,
      name,
      machine,
      input,
      startDate: new Date(),
      status: "RUNNING",
      controller: new AbortController(),
      tokens: new Set(),
    };
    this.executions.set(arn, execution);
    this.run(execution, parsedInput as Json);
    return { executionArn: arn, startDate: epochSeconds(execution.startDate) };
  }

  stopExecution(request: unknown): JsonObject {
    const r = parseRequest(stopExecutionRequest, request);
    const execution = this.execution(r.executionArn);
    if (execution.status === "RUNNING") {
      execution.status = "ABORTED";
      execution.stopDate = new Date();
      if (r.error !== undefined) execution.error = r.error;
      if (r.cause !== undefined) execution.cause = r.cause;
      this.end(execution);
    }
    return { stopDate: epochSeconds(execution.stopDate ?? new Date()) };
  }

  describeExecution(request: unknown): JsonObject {
    const r = parseRequest(describeExecutionRequest, request);
    const e = this.execution(r.executionArn);
    const out: JsonObject = {
      executionArn: e.arn,
      stateMachineArn: e.machine.arn,
      name: e.name,
      status: e.status,
      startDate: epochSeconds(e.startDate),
      input: e.input,
      inputDetails: { included: true },
    };
    if (e.stopDate) out.stopDate = epochSeconds(e.stopDate);
    if (e.output !== undefined) {
      out.output = e.output;
      out.outputDetails = { included: true };
    }
    if (e.error !== undefined) out.error = e.error;
    if (e.cause !== undefined) out.cause = e.cause;
    return out;
  }

  sendTaskSuccess(request: unknown): JsonObject {
    const r = parseRequest(sendTaskSuccessRequest, request);
    let output: Json;
    try {
      output = JSON.parse(r.output) as Json;
    } catch {
      throw new SfnApiError("InvalidOutput", "Invalid Output: not valid JSON");
    }
    const task = this.openTask(r.taskToken);
    this.closeTask(task, "succeeded");
    task.resolve(output);
    return {};
  }

  sendTaskFailure(request: unknown): JsonObject {
    const r = parseRequest(sendTaskFailureRequest, request);
    const task = this.openTask(r.taskToken);
    this.closeTask(task, "failed");
    // Without an error name only States.ALL and States.TaskFailed match, as in AWS.
    task.reject(new TaskFailedError(r.error ?? "States.TaskFailed", r.cause ?? ""));
    return {};
  }

  sendTaskHeartbeat(request: unknown): JsonObject {
    const r = parseRequest(sendTaskHeartbeatRequest, request);
    const task = this.openTask(r.taskToken);
    if (task.heartbeatMs !== undefined) {
      clearTimeout(task.heartbeatTimer);
      task.heartbeatTimer = setTimeout(() => this.heartbeatLapsed(task), task.heartbeatMs);
    }
    return {};
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const execution of this.executions.values()) {
      if (execution.status === "RUNNING") {
        execution.status = "ABORTED";
        execution.stopDate = new Date();
        execution.error = "States.Runtime";
        execution.cause = "the local Step Functions endpoint stopped";
        this.end(execution);
      }
    }
    if (this.inflight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.inflight]),
        new Promise<void>((done) => {
          timer = setTimeout(done, STOP_GRACE_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    this.sqsClient?.destroy();
  }

  // --- running ---------------------------------------------------------------------------------

  private run(execution: Execution, input: Json): void {
    const overrides: Record<string, (input: Json) => Promise<Json>> = {};
    for (const spec of execution.machine.tasks.values()) {
      overrides[spec.stateName] = (taskInput) => this.runTask(execution, spec, taskInput);
    }
    const run = execution.machine.machine.run(input, {
      overrides: { taskResourceLocalHandlers: overrides },
      context: {
        Execution: {
          Id: execution.arn,
          Name: execution.name,
          RoleArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/jobq-local`,
        },
        StateMachine: { Id: execution.machine.arn, Name: execution.machine.name },
        Task: { Token: TOKEN_SENTINEL },
      },
    });
    execution.abortRun = run.abort;
    this.executionsStarted += 1;
    // Draining the library's event log also frees it: unread, it holds every event until the end.
    const countTransitions = async (): Promise<void> => {
      for await (const event of run.eventLogs) {
        if (event.type === "StateEntered" || event.type === "StateRetried") this.stateTransitions += 1;
      }
    };
    countTransitions().catch(() => undefined);
    run.result.then(
      (output) => {
        if (execution.status !== "RUNNING") return;
        execution.status = "SUCCEEDED";
        execution.output = JSON.stringify(output ?? null);
        execution.stopDate = new Date();
        this.end(execution);
      },
      (error: unknown) => {
        if (execution.status !== "RUNNING") return;
        const failure = describeFailure(error);
        execution.status = failure.status;
        execution.error = failure.error;
        execution.cause = failure.cause;
        execution.stopDate = new Date();
        if (this.options.log !== false) {
          console.error(
            `local sfn: execution ${execution.name} ${failure.status}: ${failure.error}: ${failure.cause}`,
          );
        }
        this.end(execution);
      },
    );
  }

  /** The execution ended (any way): release what still waits in it and remember it, bounded. */
  private end(execution: Execution): void {
    execution.controller.abort();
    execution.abortRun?.();
    for (const token of [...execution.tokens]) {
      const task = this.tasks.get(token);
      if (!task) continue;
      this.closeTask(task, "execution ended");
      // Unwinds the interpreter's await (and clears its timers); the error is neither caught
      // nor retried, and the run's result has already settled.
      task.reject(new ExecutionClosedError());
    }
    this.ended.add(execution.arn);
    for (const arn of this.ended) {
      if (this.ended.size <= CLOSED_MEMORY) break;
      this.ended.delete(arn);
      this.executions.delete(arn);
    }
  }

  /**
   * One Task invocation. Synchronous up to the registration of its token and timers: the library
   * reads the timeout from the same input object right after calling the override, so a clamped
   * value written here is the one it uses.
   */
  private runTask(execution: Execution, spec: TaskSpec, taskInput: Json): Promise<Json> {
    if (execution.controller.signal.aborted) return Promise.reject(new ExecutionClosedError());
    let input: TaskInput;
    let timeoutSeconds: number;
    let heartbeatSeconds: number | undefined;
    try {
      input = taskInputOf(taskInput);
      timeoutSeconds = spec.timeoutSeconds;
      if (spec.timeoutFromPath) {
        timeoutSeconds = Math.min(
          positiveInteger(input.timeout, "TimeoutSecondsPath", spec),
          MAX_TIMER_SECONDS,
        );
        (taskInput as JsonObject).__timeout = timeoutSeconds;
      }
      heartbeatSeconds = spec.heartbeatFromPath
        ? positiveInteger(input.heartbeat, "HeartbeatSecondsPath", spec)
        : spec.heartbeatSeconds;
    } catch (error) {
      return Promise.reject(error);
    }
    const token = `${TOKEN_PREFIX}${randomBytes(24).toString("base64url")}`;
    const params = replaceSentinel(input.params, token);
    if (!spec.integration.waitForTaskToken) return this.call(spec, params, execution);

    const { promise, resolve, reject } = deferred<Json>();
    const task: PendingTask = {
      token,
      execution,
      stateName: spec.stateName,
      heartbeatMs:
        heartbeatSeconds === undefined ? undefined : Math.min(heartbeatSeconds, MAX_TIMER_SECONDS) * 1000,
      resolve,
      reject,
    };
    // The library's own timer fails the state with States.Timeout at the same moment; this one
    // only retires the token so that a late report is refused.
    task.timeoutTimer = setTimeout(() => this.closeTask(task, "timed out"), timeoutSeconds * 1000);
    if (task.heartbeatMs !== undefined) {
      task.heartbeatTimer = setTimeout(() => this.heartbeatLapsed(task), task.heartbeatMs);
    }
    this.tasks.set(token, task);
    execution.tokens.add(token);
    // The call's result is not the task's; its failure is (e.g. the queue does not exist).
    this.call(spec, params, execution).then(
      () => undefined,
      (error: unknown) => {
        if (!this.tasks.has(token)) return;
        this.closeTask(task, "failed");
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
    return promise;
  }

  private heartbeatLapsed(task: PendingTask): void {
    if (!this.tasks.has(task.token)) return;
    this.closeTask(task, "timed out");
    task.reject(new TaskFailedError("States.HeartbeatTimeout", ""));
  }

  private openTask(token: string): PendingTask {
    if (!TOKEN_PATTERN.test(token))
      throw new SfnApiError("InvalidToken", "Invalid Token: not a task token of this endpoint");
    const task = this.tasks.get(token);
    if (task) return task;
    const closed = this.closedTokens.get(token);
    if (closed) throw new SfnApiError("TaskTimedOut", `Task Timed Out: the task of this token has ${closed}`);
    // Issued before a restart, or long forgotten.
    throw new SfnApiError("TaskDoesNotExist", "Task Does Not Exist");
  }

  private closeTask(task: PendingTask, reason: ClosedReason): void {
    clearTimeout(task.timeoutTimer);
    clearTimeout(task.heartbeatTimer);
    if (!this.tasks.delete(task.token)) return;
    task.execution.tokens.delete(task.token);
    this.closedTokens.set(task.token, reason);
    if (this.closedTokens.size > CLOSED_MEMORY) {
      const oldest = this.closedTokens.keys().next();
      if (!oldest.done) this.closedTokens.delete(oldest.value);
    }
  }

  private refuseWhenStopped(): void {
    if (this.stopped)
      throw new SfnApiError("ServiceUnavailable", "the local Step Functions endpoint is stopping");
  }

  private execution(arn: string): Execution {
    const execution = this.executions.get(arn);
    if (!execution) throw new SfnApiError("ExecutionDoesNotExist", `Execution Does Not Exist: '${arn}'`);
    return execution;
  }

  // --- integrations ----------------------------------------------------------------------------

  private async call(spec: TaskSpec, params: Json, execution: Execution): Promise<Json> {
    const signal = execution.controller.signal;
    const integration = spec.integration;
    switch (integration.kind) {
      case "lambda":
        return this.invoke(integration.functionName, params, signal, spec);
      case "lambda:invoke": {
        const p = objectParams(params, spec);
        if (typeof p.FunctionName !== "string")
          throw new StatesRuntimeError(`${spec.stateName}: FunctionName is not a string`);
        const payload = await this.invoke(functionNameOf(p.FunctionName), p.Payload ?? null, signal, spec);
        return { ExecutedVersion: "$LATEST", Payload: payload, StatusCode: 200 };
      }
      case "sqs:sendMessage":
        return this.sendMessage(objectParams(params, spec), signal, spec);
    }
  }

  private async invoke(
    functionName: string,
    payload: Json,
    signal: AbortSignal,
    spec: TaskSpec,
  ): Promise<Json> {
    let handler: LambdaHandler;
    try {
      handler = await this.handler(functionName);
    } catch (error) {
      throw new TaskFailedError(
        "Lambda.ResourceNotFoundException",
        `Function not found: ${functionName} (${(error as Error).message})`,
      );
    }
    const call = invokeHandler(handler, functionName, payload, this.region);
    this.inflight.add(call);
    const forget = () => this.inflight.delete(call);
    call.then(forget, forget);
    try {
      return (await abortable(call, signal)) as Json;
    } catch (error) {
      if (error instanceof ExecutionClosedError) throw error;
      const name = error instanceof Error ? error.name : "Error";
      const message = error instanceof Error ? error.message : String(error);
      if (this.options.log !== false) {
        console.error(`local sfn: ${spec.stateName} → ${functionName} failed: ${name}: ${message}`);
      }
      // As the lambda:invoke integration reports a function error: Error is the errorType.
      const trace = error instanceof Error ? (error.stack ?? "").split("\n").slice(1, 6) : [];
      throw new TaskFailedError(name, JSON.stringify({ errorType: name, errorMessage: message, trace }));
    }
  }

  private handler(functionName: string): Promise<LambdaHandler> {
    let handler = this.handlers.get(functionName);
    if (!handler) {
      handler = Promise.resolve().then(() => this.options.resolveFunction(functionName));
      this.handlers.set(functionName, handler);
      handler.catch(() => this.handlers.delete(functionName));
    }
    return handler;
  }

  private async sendMessage(p: JsonObject, signal: AbortSignal, spec: TaskSpec): Promise<Json> {
    if (typeof p.QueueUrl !== "string")
      throw new StatesRuntimeError(`${spec.stateName}: QueueUrl is not a string`);
    if (p.MessageBody === undefined)
      throw new StatesRuntimeError(`${spec.stateName}: MessageBody is missing`);
    if (!this.options.sqsEndpoint)
      throw new StatesRuntimeError("no SQS endpoint is configured for sqs:sendMessage");
    this.sqsClient ??= new SQSClient(awsClientOptions(this.options.sqsEndpoint, this.region));
    const body = typeof p.MessageBody === "string" ? p.MessageBody : JSON.stringify(p.MessageBody);
    try {
      const out = await this.sqsClient.send(
        new SendMessageCommand({
          QueueUrl: p.QueueUrl,
          MessageBody: body,
          DelaySeconds: typeof p.DelaySeconds === "number" ? p.DelaySeconds : undefined,
          MessageGroupId: typeof p.MessageGroupId === "string" ? p.MessageGroupId : undefined,
          MessageDeduplicationId:
            typeof p.MessageDeduplicationId === "string" ? p.MessageDeduplicationId : undefined,
        }),
        { abortSignal: signal },
      );
      const result: JsonObject = {
        MessageId: out.MessageId ?? null,
        MD5OfMessageBody: out.MD5OfMessageBody ?? null,
      };
      if (out.SequenceNumber !== undefined) result.SequenceNumber = out.SequenceNumber;
      return result;
    } catch (error) {
      if (signal.aborted) throw new ExecutionClosedError();
      const e = error as Error;
      throw new TaskFailedError(`SQS.${e.name}`, e.message);
    }
  }
}

function describeFailure(error: unknown): { status: ExecutionStatus; error: string; cause: string } {
  const e = error as Error;
  if (e.name === "ExecutionTimeoutError") {
    return {
      status: "TIMED_OUT",
      error: "States.Timeout",
      cause: "the execution ran longer than its TimeoutSeconds",
    };
  }
  if (e.name === "ExecutionAbortedError") return { status: "ABORTED", error: "", cause: "" };
  // ExecutionError carries the state's error as its cause.
  const cause = e.cause instanceof Error ? e.cause : e;
  return { status: "FAILED", error: cause.name, cause: cause.message };
}

function taskInputOf(value: Json): TaskInput {
  if (!isObject(value) || !("__raw" in value)) {
    throw new StatesRuntimeError("a Task override received an input the local endpoint did not prepare");
  }
  return {
    raw: value.__raw ?? null,
    params: value.__params ?? null,
    timeout: value.__timeout,
    heartbeat: value.__heartbeat,
  };
}

function positiveInteger(value: Json | undefined, field: string, spec: TaskSpec): number {
  if (typeof value === "number" && Number.isInteger(value) && value >= 1) return value;
  throw new StatesRuntimeError(
    `${spec.stateName}: ${field} must select a positive integer, got ${JSON.stringify(value)}`,
  );
}

function objectParams(params: Json, spec: TaskSpec): JsonObject {
  if (!isObject(params)) throw new StatesRuntimeError(`${spec.stateName}: Parameters must be an object`);
  return params;
}

function replaceSentinel(value: Json, token: string): Json {
  if (typeof value === "string")
    return value.includes(TOKEN_SENTINEL) ? value.replaceAll(TOKEN_SENTINEL, token) : value;
  if (Array.isArray(value)) return value.map((item) => replaceSentinel(item, token));
  if (isObject(value)) {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, replaceSentinel(item, token)]),
    );
  }
  return value;
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new ExecutionClosedError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new ExecutionClosedError());
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
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

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: Error) => void } {
  let resolve: (value: T) => void = () => undefined;
  let reject: (error: Error) => void = () => undefined;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The interpreter races this promise; a rejection after it moved on must not count as unhandled.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function epochSeconds(date: Date): number {
  return date.getTime() / 1000;
}

/** aws-local-stepfunctions 3 targets Node 22; Node 20 has no Promise.withResolvers. */
function installPromiseWithResolvers(): void {
  const promise = Promise as unknown as { withResolvers?: unknown };
  if (typeof promise.withResolvers === "function") return;
  Object.defineProperty(Promise, "withResolvers", {
    configurable: true,
    writable: true,
    value: function withResolvers<T>() {
      let resolve: (value: T | PromiseLike<T>) => void = () => undefined;
      let reject: (reason?: unknown) => void = () => undefined;
      const p = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise: p, resolve, reject };
    },
  });
}

// ---------------------------------------------------------------------------------------------
// The HTTP front (AWS JSON 1.0)

const startExecutionRequest = z.object({
  stateMachineArn: z.string().min(1),
  name: z.string().optional(),
  input: z.string().optional(),
});
const stopExecutionRequest = z.object({
  executionArn: z.string().min(1),
  error: z.string().optional(),
  cause: z.string().optional(),
});
const describeExecutionRequest = z.object({ executionArn: z.string().min(1) });
const sendTaskSuccessRequest = z.object({ taskToken: z.string().min(1), output: z.string() });
const sendTaskFailureRequest = z.object({
  taskToken: z.string().min(1),
  error: z.string().optional(),
  cause: z.string().optional(),
});
const sendTaskHeartbeatRequest = z.object({ taskToken: z.string().min(1) });

function parseRequest<T>(schema: z.ZodType<T>, request: unknown): T {
  const parsed = schema.safeParse(request);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`)
      .join("; ");
    throw new SfnApiError("ValidationException", problems);
  }
  return parsed.data;
}

const OPERATIONS: Readonly<Record<string, (service: LocalSfnService, request: unknown) => JsonObject>> = {
  StartExecution: (s, r) => s.startExecution(r),
  StopExecution: (s, r) => s.stopExecution(r),
  DescribeExecution: (s, r) => s.describeExecution(r),
  SendTaskSuccess: (s, r) => s.sendTaskSuccess(r),
  SendTaskFailure: (s, r) => s.sendTaskFailure(r),
  SendTaskHeartbeat: (s, r) => s.sendTaskHeartbeat(r),
};
