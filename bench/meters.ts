/**
 * The meters of a run on the local stack, shared by the bench (bench/run.ts) and the tests that
 * check jobs' own `cost` against what was counted (test/integration/cost.test.ts): Step
 * Functions, SQS and EventBridge count what they serve; store/dynamo.ts's capacityMeter and
 * local/lambda.ts's lambdaMeter count this process; each worker logs its own DynamoDB use when it
 * drains (`workerCapacity`). Prices: core/prices.ts, the same table jobs are costed with.
 */
import { PRICES } from "../core/prices";
import { lambdaMeter } from "../local/lambda";
import type { LocalStack } from "../local/stack";
import { capacityMeter } from "../store/dynamo";

const f = (value: number, digits = 2): string => (Number.isFinite(value) ? value.toFixed(digits) : "n/a");

export interface Meters {
  readonly transitions: number;
  readonly executions: number;
  readonly read: number;
  readonly write: number;
  readonly dynamoRequests: number;
  /** DynamoDB use per function (store/dynamo.ts#meteredFunction). */
  readonly dynamoByFunction: ReadonlyMap<string, { read: number; write: number; requests: number }>;
  readonly sqs: Readonly<Record<string, number>>;
  readonly eventEntries: number;
  readonly putEventsCalls: number;
  readonly lambda: ReadonlyMap<string, { invocations: number; durationMs: number }>;
}

export function readMeters(stack: LocalStack): Meters {
  const execution = stack.execution;
  if (!execution) throw new Error("the stack runs no jobs");
  const sfn = execution.meters.stepFunctions();
  const events = execution.meters.events();
  const dynamo = capacityMeter.snapshot();
  return {
    transitions: sfn.stateTransitions,
    executions: sfn.executions,
    read: dynamo.read,
    write: dynamo.write,
    dynamoRequests: dynamo.requests,
    dynamoByFunction: new Map([...capacityMeter.byFunction].map(([name, entry]) => [name, { ...entry }])),
    sqs: execution.meters.sqsRequests(),
    eventEntries: events.entries,
    putEventsCalls: events.putEventsCalls,
    lambda: new Map([...lambdaMeter].map(([name, entry]) => [name, { ...entry }])),
  };
}

export function diffMeters(after: Meters, before: Meters): Meters {
  const sqs: Record<string, number> = {};
  for (const [action, count] of Object.entries(after.sqs)) sqs[action] = count - (before.sqs[action] ?? 0);
  const lambda = new Map<string, { invocations: number; durationMs: number }>();
  for (const [name, entry] of after.lambda) {
    const earlier = before.lambda.get(name) ?? { invocations: 0, durationMs: 0 };
    lambda.set(name, {
      invocations: entry.invocations - earlier.invocations,
      durationMs: entry.durationMs - earlier.durationMs,
    });
  }
  const dynamoByFunction = new Map<string, { read: number; write: number; requests: number }>();
  for (const [name, entry] of after.dynamoByFunction) {
    const earlier = before.dynamoByFunction.get(name) ?? { read: 0, write: 0, requests: 0 };
    dynamoByFunction.set(name, {
      read: entry.read - earlier.read,
      write: entry.write - earlier.write,
      requests: entry.requests - earlier.requests,
    });
  }
  return {
    transitions: after.transitions - before.transitions,
    executions: after.executions - before.executions,
    read: after.read - before.read,
    write: after.write - before.write,
    dynamoRequests: after.dynamoRequests - before.dynamoRequests,
    dynamoByFunction,
    sqs,
    eventEntries: after.eventEntries - before.eventEntries,
    putEventsCalls: after.putEventsCalls - before.putEventsCalls,
    lambda,
  };
}

/** The workers' own DynamoDB use, from the line each logs when it drains. */
export function workerCapacity(lines: readonly string[]): {
  read: number;
  write: number;
  requests: number;
  nodes: number;
} {
  const total = { read: 0, write: 0, requests: 0, nodes: 0 };
  for (const line of lines) {
    const json = line.slice(line.indexOf("{"));
    try {
      const parsed = JSON.parse(json) as { message?: string; capacity?: Record<string, unknown> };
      if (parsed.message !== "capacity consumed" || !parsed.capacity) continue;
      const { read, write, requests } = parsed.capacity;
      total.read += typeof read === "number" ? read : 0;
      total.write += typeof write === "number" ? write : 0;
      total.requests += typeof requests === "number" ? requests : 0;
      total.nodes += 1;
    } catch {
      // not a JSON log line
    }
  }
  return total;
}

/** The AWS request cost lines of `jobs` jobs' meters (Lambda at 128 MB), per job. */
export function costLines(
  used: Meters,
  jobs: number,
  worker: { readonly read: number; readonly write: number },
): [string, string, number][] {
  const per = (n: number): number => n / jobs;
  const sqsTotal = Object.values(used.sqs).reduce((a, b) => a + b, 0);
  const lambdaRows = [...used.lambda].filter(([, e]) => e.invocations > 0);
  const lambdaRequests = 1 + per(lambdaRows.reduce((a, [, e]) => a + e.invocations, 0));
  const lambdaMs = per(lambdaRows.reduce((a, [, e]) => a + e.durationMs, 0));
  const readUnits = per(used.read) + worker.read;
  const writeUnits = per(used.write) + worker.write;
  return [
    [
      "Step Functions Standard",
      `${f(per(used.transitions))} transitions`,
      per(used.transitions) * PRICES.stateTransition,
    ],
    ["DynamoDB writes", `${f(writeUnits)} WRU`, writeUnits * PRICES.writeUnit],
    ["DynamoDB reads", `${f(readUnits)} RRU`, readUnits * PRICES.readUnit],
    ["SQS", `${f(per(sqsTotal))} requests`, per(sqsTotal) * PRICES.sqsRequest],
    ["Lambda requests", `${f(lambdaRequests)} invocations`, lambdaRequests * PRICES.lambdaRequest],
    [
      "Lambda duration at 128 MB",
      `${f(lambdaMs, 1)} ms`,
      (lambdaMs / 1000) * (128 / 1024) * PRICES.lambdaGbSecond,
    ],
    [
      "EventBridge custom events",
      `${f(per(used.eventEntries))} entries`,
      per(used.eventEntries) * PRICES.eventEntry,
    ],
    ["API Gateway REST API (submit)", "1 request", PRICES.apiRequest],
  ];
}

/** The AWS request cost of the metered run, per job (the sum of costLines). */
export function requestUsdPerJob(
  used: Meters,
  jobs: number,
  worker: { readonly read: number; readonly write: number },
): number {
  return costLines(used, jobs, worker).reduce((sum, [, , usd]) => sum + usd, 0);
}
