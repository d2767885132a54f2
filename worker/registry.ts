import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { jobTypeSchema, type LogLevel } from "../core/job";

/**
 * The task registry: which handler runs each job type on this worker. A handler gets the job's
 * payload and a TaskContext, and its resolved value becomes the job's result. Handlers are
 * defined with defineTask in any module; the worker registers the examples and every definition
 * exported by the modules named in JOBQ_TASK_MODULES.
 */

export interface TaskContext {
  readonly jobId: string;
  /** 1 for the first attempt, 2 for the first retry, … */
  readonly attempt: number;
  /** An array job's child (POST /jobs with `array`): its index 0..arraySize-1; null otherwise. */
  readonly arrayIndex?: number | null;
  /** An array job's child: how many children its array has; null otherwise. */
  readonly arraySize?: number | null;
  /** A line for GET /jobs/{id}/logs; written in batches, never blocks the task. */
  log(level: LogLevel, message: string): void;
  /**
   * Tells the lifecycle the attempt is alive now (the worker also does so on its own). Rejects
   * with AttemptStoppedError when the execution no longer waits for this attempt (cancelled,
   * paused, timed out): the task should stop.
   */
  heartbeat(): Promise<void>;
  /** Aborted when the attempt must stop: timeout, cancel or pause, worker shutdown. */
  readonly signal: AbortSignal;
}

export type TaskHandler = (payload: unknown, ctx: TaskContext) => Promise<unknown>;

/** Marks definitions so a task module built against another copy of this file is still recognized. */
const TASK_DEFINITION = Symbol.for("jobq.taskDefinition");

export interface TaskDefinition {
  readonly type: string;
  readonly handler: TaskHandler;
  readonly [TASK_DEFINITION]: true;
}

/** A job type's handler, ready to register; export it from a module named in JOBQ_TASK_MODULES. */
export function defineTask(type: string, handler: TaskHandler): TaskDefinition {
  const parsed = jobTypeSchema.safeParse(type);
  if (!parsed.success)
    throw new TaskRegistryError(`task type ${JSON.stringify(type)} ${parsed.error.issues[0]?.message}`);
  return { type, handler, [TASK_DEFINITION]: true };
}

export function isTaskDefinition(value: unknown): value is TaskDefinition {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as Record<symbol, unknown>)[TASK_DEFINITION] === true &&
    typeof (value as { type?: unknown }).type === "string" &&
    typeof (value as { handler?: unknown }).handler === "function"
  );
}

/** A type defined twice, a malformed type, or a task module that defines nothing. */
export class TaskRegistryError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TaskRegistryError";
  }
}

/**
 * A failure the task chooses the type of: `type` becomes the attempt's error type (the
 * SendTaskFailure error), the message its cause. Any other thrown Error reports its `name`.
 */
export class TaskError extends Error {
  constructor(
    message: string,
    readonly type: string = "task_failed",
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "TaskError";
  }
}

/**
 * A failure that no retry can mend (BullMQ's UnrecoverableError is the model): the input is
 * invalid, the thing it names is gone for good, the task knows the next attempt would fail the
 * same way. The job ends at once — `failed`, or its `onFailure` escalation — even with attempts
 * left, and its statusReason and attempt record say it was not retried and why. `type` and the
 * message are reported as for TaskError. The worker throws it for its own such failures
 * (`unknown_type`, `result_too_large`, `result_not_serializable`).
 *
 * ```ts
 * import { defineTask, UnrecoverableTaskError } from "../registry"; // worker/registry.ts
 * export const resize = defineTask("resize", async (payload) => {
 *   if (!isImageRef(payload)) throw new UnrecoverableTaskError("payload is not an image reference", "invalid_payload");
 *   …
 * });
 * ```
 */
export class UnrecoverableTaskError extends TaskError {
  readonly unrecoverable = true;

  constructor(message: string, type = "task_failed", options?: { cause?: unknown }) {
    super(message, type, options);
    this.name = "UnrecoverableTaskError";
  }
}

/**
 * Whether a thrown value is an UnrecoverableTaskError: by class, or by name as BullMQ checks its
 * UnrecoverableError, so one thrown by a task module built against another copy of this file
 * (or a plain Error named so) counts too.
 */
export function isUnrecoverable(error: unknown): boolean {
  return (
    error instanceof UnrecoverableTaskError ||
    (error instanceof Error && error.name === "UnrecoverableTaskError")
  );
}

/**
 * Why the worker stopped an attempt, as the AbortSignal's reason and heartbeat()'s rejection:
 * `timeout` (timeoutSeconds ran out), `execution_stopped` (the lifecycle no longer waits: cancel,
 * pause, Step Functions' own timeout), `worker_shutdown` (SIGTERM and the grace ran out).
 */
export class AttemptStoppedError extends Error {
  constructor(
    readonly type: "timeout" | "execution_stopped" | "worker_shutdown",
    message: string,
  ) {
    super(message);
    this.name = "AttemptStoppedError";
  }
}

export class TaskRegistry {
  private readonly handlers = new Map<string, TaskHandler>();

  register(definition: TaskDefinition): this {
    if (this.handlers.has(definition.type)) {
      throw new TaskRegistryError(`task type ${definition.type} is defined twice`);
    }
    this.handlers.set(definition.type, definition.handler);
    return this;
  }

  get(type: string): TaskHandler | undefined {
    return this.handlers.get(type);
  }

  types(): string[] {
    return [...this.handlers.keys()].sort();
  }
}

export type ModuleImporter = (specifier: string) => Promise<Record<string, unknown>>;

const importFile: ModuleImporter = (path) => import(pathToFileURL(resolve(path)).href);

/**
 * Registers every task definition a module exports (directly or in an exported array). A module
 * that exports none is an error: a typo in JOBQ_TASK_MODULES should not start a worker that then
 * fails every job of the intended type.
 */
export async function loadTaskModules(
  registry: TaskRegistry,
  paths: readonly string[],
  importer: ModuleImporter = importFile,
): Promise<string[]> {
  const loaded: string[] = [];
  for (const path of paths) {
    let exports: Record<string, unknown>;
    try {
      exports = await importer(path);
    } catch (error) {
      throw new TaskRegistryError(`task module ${path} cannot be loaded: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const definitions = Object.values(exports).flatMap((value) =>
      Array.isArray(value) ? value.filter(isTaskDefinition) : isTaskDefinition(value) ? [value] : [],
    );
    if (definitions.length === 0) {
      throw new TaskRegistryError(`task module ${path} exports no task defined with defineTask`);
    }
    for (const definition of new Set(definitions)) {
      registry.register(definition);
      loaded.push(definition.type);
    }
  }
  return loaded;
}

/**
 * The error type and message an attempt reports for whatever a task threw; `unrecoverable` only
 * when it was an UnrecoverableTaskError (the lifecycle then retries nothing).
 */
export function describeFailure(error: unknown): { type: string; message: string; unrecoverable?: true } {
  const mark = isUnrecoverable(error) ? { unrecoverable: true as const } : {};
  if (error instanceof TaskError || error instanceof AttemptStoppedError) {
    return { type: error.type, message: error.message, ...mark };
  }
  if (error instanceof Error) {
    const type = (error as { type?: unknown }).type;
    return {
      // An UnrecoverableTaskError of another copy of this file names no type: it failed the task.
      type:
        typeof type === "string" && type !== ""
          ? type
          : mark.unrecoverable
            ? "task_failed"
            : error.name || "Error",
      message: error.message,
      ...mark,
    };
  }
  return { type: "Error", message: typeof error === "string" ? error : safeJson(error) };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
