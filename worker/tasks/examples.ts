import { z } from "zod";
import { defineTask, TaskError, type TaskRegistry, UnrecoverableTaskError } from "../registry";

/**
 * API.md's example task types, always present in the local stack: enough to watch every path of
 * the lifecycle (success, retry, failure, cancel and timeout of a long task, logs) without
 * writing a task.
 */

/**
 * A payload that does not match the type's schema: a failure of the attempt, not of the worker,
 * and unrecoverable: every retry would read the same payload.
 */
function parsePayload<T>(type: string, schema: z.ZodType<T>, payload: unknown): T {
  const parsed = schema.safeParse(payload ?? {});
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "payload"}: ${i.message}`);
  throw new UnrecoverableTaskError(`${type}: invalid payload: ${problems.join("; ")}`, "invalid_payload");
}

/** Waits `seconds`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(seconds: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, seconds * 1000);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

const seconds = z.number().min(0).max(604_800);

export const echoTask = defineTask("echo", async (payload) => payload ?? null);

export const sleepTask = defineTask("sleep", async (payload, ctx) => {
  const p = parsePayload("sleep", z.object({ seconds: seconds.default(1) }), payload);
  await sleep(p.seconds, ctx.signal);
  return { slept: p.seconds };
});

export const flakyTask = defineTask("flaky", async (payload, ctx) => {
  const p = parsePayload(
    "flaky",
    z.object({ failTimes: z.number().int().min(0).max(100).default(1), seconds: seconds.default(0) }),
    payload,
  );
  await sleep(p.seconds, ctx.signal);
  if (ctx.attempt <= p.failTimes) {
    throw new TaskError(`attempt ${ctx.attempt} fails on purpose (failTimes ${p.failTimes})`, "flaky");
  }
  return { attempt: ctx.attempt, failedBefore: p.failTimes };
});

/** `{"unrecoverable": true}` throws UnrecoverableTaskError: the job ends without a retry. */
export const failTask = defineTask("fail", async (payload) => {
  const p = parsePayload(
    "fail",
    z.object({ message: z.string().max(32_768).optional(), unrecoverable: z.boolean().default(false) }),
    payload,
  );
  const message = p.message ?? "failed on purpose";
  throw p.unrecoverable ? new UnrecoverableTaskError(message) : new TaskError(message, "task_failed");
});

export const logTask = defineTask("log", async (payload, ctx) => {
  const p = parsePayload(
    "log",
    z.object({ lines: z.number().int().min(0).max(100_000).default(10) }),
    payload,
  );
  for (let i = 1; i <= p.lines; i++) ctx.log("info", `log line ${i} of ${p.lines}`);
  return { lines: p.lines };
});

export const EXAMPLE_TASKS = [echoTask, sleepTask, flakyTask, failTask, logTask] as const;

export function registerExampleTasks(registry: TaskRegistry): TaskRegistry {
  for (const task of EXAMPLE_TASKS) registry.register(task);
  return registry;
}
