import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { InvokeStoreBase } from "@aws/lambda-invoke-store";
import type { Context } from "aws-lambda";
import { meteredFunction } from "../store/dynamo";

/**
 * What the local stack needs to call a Lambda handler module in process, as the Lambda service
 * would: a context object, and the event and result passed through JSON so nothing but JSON
 * crosses the boundary (no Dates, no shared references), exactly as over the wire in AWS.
 */

/** A Lambda handler as the functions/ modules export it (middy or plain async). */
export type LambdaHandler = (event: unknown, context: Context) => Promise<unknown> | unknown;

/** Dummy account, in the shape of a real one, for ARNs. */
export const LOCAL_ACCOUNT = "000000000000";

/** Lambda's own limit for a function's run time; locally only `getRemainingTimeInMillis` sees it. */
const DEFAULT_TIMEOUT_MS = 15 * 60 * 1000;

export function lambdaFunctionArn(functionName: string, region: string): string {
  return `arn:aws:lambda:${region}:${LOCAL_ACCOUNT}:function:${functionName}`;
}

/**
 * The function name in any form Lambda accepts: a name, `name:qualifier`, a full ARN
 * (`arn:aws:lambda:region:account:function:name[:qualifier]`) or a partial one
 * (`account:function:name`).
 */
export function functionNameOf(nameOrArn: string): string {
  const parts = nameOrArn.split(":");
  const at = parts.indexOf("function");
  const name = at >= 0 ? parts[at + 1] : parts[0];
  return name ?? nameOrArn;
}

export function lambdaContext(functionName: string, region: string, timeoutMs = DEFAULT_TIMEOUT_MS): Context {
  const deadline = Date.now() + timeoutMs;
  const unsupported = (): never => {
    throw new Error("the callback-style Lambda API is not supported: return a promise");
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: "$LATEST",
    invokedFunctionArn: lambdaFunctionArn(functionName, region),
    memoryLimitInMB: "1024",
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: "local",
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}

/**
 * The Lambda runtime's per-invocation store, for invocations that run concurrently in one
 * process. In AWS each function's invocations run one at a time per execution environment, so
 * Powertools keeps an invocation's Lambda context (function name, request id) on the one process-
 * wide logger; locally every function's invocations share this process, and the last one to start
 * relabelled every log line of the others. With AWS_LAMBDA_MAX_CONCURRENCY set (local/config.ts
 * applyHandlerEnvironment), Powertools keeps that context in this store instead, as it does on
 * Lambda Managed Instances, and the store keeps one context per invocation by AsyncLocalStorage.
 */
class LocalInvokeStore extends InvokeStoreBase {
  private readonly storage = new AsyncLocalStorage<Record<string | symbol, unknown>>();

  getContext(): Record<string | symbol, unknown> | undefined {
    return this.storage.getStore();
  }

  hasContext(): boolean {
    return this.storage.getStore() !== undefined;
  }

  get<T = unknown>(key: string | symbol): T | undefined {
    return this.storage.getStore()?.[key] as T | undefined;
  }

  set<T = unknown>(key: string | symbol, value: T): void {
    if (this.isProtectedKey(key)) throw new InvocationStoreError(`${String(key)} is the runtime's to set`);
    const store = this.storage.getStore();
    if (!store) throw new InvocationStoreError("no invocation is running");
    store[key] = value;
  }

  run<T>(context: Record<string | symbol, unknown>, fn: () => T): T {
    return this.storage.run(context, fn);
  }
}

/** A write to the invocation store outside an invocation, or to a field only the runtime sets. */
export class InvocationStoreError extends Error {
  constructor(message: string) {
    super(`invocation store: ${message}`);
    this.name = "InvocationStoreError";
  }
}

let invokeStore: LocalInvokeStore | undefined;

/**
 * Makes this process's invocation store the one Powertools and the AWS SDK find on
 * `globalThis.awslambda`, replacing the single-invocation store the SDK installs at its first
 * request. Idempotent; call it before AWS_LAMBDA_MAX_CONCURRENCY is set, since Powertools fails
 * every log call when that variable is set and no store is installed.
 */
export function installInvocationStore(): void {
  invokeStore ??= new LocalInvokeStore();
  const global = globalThis as { awslambda?: { InvokeStore?: InvokeStoreBase } };
  global.awslambda ??= {};
  global.awslambda.InvokeStore = invokeStore;
}

/**
 * Runs one invocation in its own context of the invocation store, so what Powertools scopes to an
 * invocation (the Lambda context of each log line, temporary keys, the log level) stays its own
 * while other invocations run beside it.
 */
export function runInvocation<T>(context: Context, fn: () => T): T {
  installInvocationStore();
  const store = invokeStore as LocalInvokeStore;
  return meteredFunction.run(context.functionName, () =>
    store.run({ [InvokeStoreBase.PROTECTED_KEYS.REQUEST_ID]: context.awsRequestId }, fn),
  );
}

/** Invocations of each function in this process and their run time: Lambda bills both. */
export const lambdaMeter = new Map<string, { invocations: number; durationMs: number }>();

/** Calls the handler with a JSON copy of the event and returns a JSON copy of its result. */
export async function invokeHandler(
  handler: LambdaHandler,
  functionName: string,
  event: unknown,
  region: string,
): Promise<unknown> {
  const started = performance.now();
  try {
    const context = lambdaContext(functionName, region);
    const input = jsonCopy(event);
    const result = await runInvocation(context, () => handler(input, context));
    return result === undefined ? null : jsonCopy(result);
  } finally {
    const entry = lambdaMeter.get(functionName) ?? { invocations: 0, durationMs: 0 };
    entry.invocations += 1;
    entry.durationMs += performance.now() - started;
    lambdaMeter.set(functionName, entry);
  }
}

function jsonCopy(value: unknown): unknown {
  const text = JSON.stringify(value);
  return text === undefined ? null : JSON.parse(text);
}

/** Loads a handler module's `handler` export, failing with a message that names the module. */
export async function loadHandlerExport(
  load: () => Promise<Record<string, unknown>>,
  description: string,
): Promise<LambdaHandler> {
  const module = await load();
  const handler = module.handler;
  if (typeof handler !== "function") {
    throw new Error(`${description} does not export a function named handler`);
  }
  return handler as LambdaHandler;
}
