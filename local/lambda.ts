import { randomUUID } from "node:crypto";
import type { Context } from "aws-lambda";

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
    const result = await handler(jsonCopy(event), lambdaContext(functionName, region));
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
