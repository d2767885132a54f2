import { AsyncLocalStorage } from "node:async_hooks";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { awsClientOptions } from "./aws";
import { installFaultInjection } from "./faults";
import { traced } from "./tracing";

/**
 * Read and write capacity units consumed by this process, summed from every response's
 * ConsumedCapacity. The benchmark divides it by submissions; in AWS the same numbers feed the
 * handlers' metrics, so cost per job is observed, not estimated.
 */
export class CapacityMeter {
  read = 0;
  write = 0;
  requests = 0;
  /**
   * The same figures per function (meteredFunction's name; "other" outside any), so the benchmark
   * can say what each consumer of the Jobs table's stream adds per job.
   */
  readonly byFunction = new Map<string, { read: number; write: number; requests: number }>();

  add(consumed: unknown, fn = "other"): void {
    const mine = this.of(fn);
    const entries = Array.isArray(consumed) ? consumed : consumed ? [consumed] : [];
    for (const entry of entries) {
      if (typeof entry !== "object" || entry === null) continue;
      const { ReadCapacityUnits, WriteCapacityUnits, CapacityUnits } = entry as Record<string, unknown>;
      const read = typeof ReadCapacityUnits === "number" ? ReadCapacityUnits : 0;
      const write = typeof WriteCapacityUnits === "number" ? WriteCapacityUnits : 0;
      // Some operations (and DynamoDB Local) report only the total.
      const written = read === 0 && write === 0 && typeof CapacityUnits === "number" ? CapacityUnits : write;
      this.read += read;
      this.write += written;
      mine.read += read;
      mine.write += written;
    }
  }

  /** Counts one request of `fn`. */
  request(fn = "other"): void {
    this.requests += 1;
    this.of(fn).requests += 1;
  }

  private of(fn: string): { read: number; write: number; requests: number } {
    let entry = this.byFunction.get(fn);
    if (!entry) {
      entry = { read: 0, write: 0, requests: 0 };
      this.byFunction.set(fn, entry);
    }
    return entry;
  }

  snapshot(): { read: number; write: number; requests: number } {
    return { read: this.read, write: this.write, requests: this.requests };
  }

  reset(): void {
    this.read = 0;
    this.write = 0;
    this.requests = 0;
    this.byFunction.clear();
  }
}

export const capacityMeter = new CapacityMeter();

/**
 * The function an invocation runs as, for capacityMeter.byFunction: the local stack runs every
 * invocation in it (local/lambda.ts#runInvocation); in AWS each function is its own process.
 */
export const meteredFunction = new AsyncLocalStorage<string>();

/** Read operations whose capacity DynamoDB reports as read units even when only `CapacityUnits` is set. */
const READ_COMMANDS = new Set([
  "GetItemCommand",
  "QueryCommand",
  "ScanCommand",
  "BatchGetItemCommand",
  "TransactGetItemsCommand",
]);

export interface DynamoOptions {
  readonly region: string;
  /** DynamoDB Local on loopback; unset in AWS. */
  readonly endpoint?: string | undefined;
}

/**
 * One document client per process. Locally it gets an explicit endpoint and dummy credentials
 * so the SDK never falls back to the instance metadata address.
 */
export function createDocumentClient(options: DynamoOptions): DynamoDBDocumentClient {
  const client = traced(
    new DynamoDBClient({
      ...awsClientOptions(options.endpoint, options.region),
      maxAttempts: 5,
    }),
  );
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as Record<string, unknown>;
      input.ReturnConsumedCapacity ??= "TOTAL";
      const result = await next(args);
      const fn = meteredFunction.getStore();
      capacityMeter.request(fn);
      const consumed = (result.output as unknown as Record<string, unknown>).ConsumedCapacity;
      if (READ_COMMANDS.has(context.commandName ?? "")) {
        capacityMeter.add(asReads(consumed), fn);
      } else {
        capacityMeter.add(consumed, fn);
      }
      return result;
    },
    { step: "initialize", name: "jobqCapacityMeter" },
  );
  // The soak harness's throttling (store/faults.ts); inert unless turned on, and never in AWS.
  installFaultInjection(client.middlewareStack, "dynamodb", options.endpoint);
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}

function asReads(consumed: unknown): unknown {
  const entries = Array.isArray(consumed) ? consumed : consumed ? [consumed] : [];
  return entries.map((entry) => {
    if (typeof entry !== "object" || entry === null) return entry;
    const e = entry as Record<string, unknown>;
    if (typeof e.ReadCapacityUnits === "number") return e;
    return { ReadCapacityUnits: typeof e.CapacityUnits === "number" ? e.CapacityUnits : 0 };
  });
}
