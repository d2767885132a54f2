import { AsyncLocalStorage } from "node:async_hooks";
import { type AttributeValue, DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import { awsClientOptions } from "./aws";
import { installFaultInjection } from "./faults";
import { TABLES, type TableDefinition } from "./tables";
import { traced } from "./tracing";
import { appliedUpdate, type Item, writeUnits } from "./write-units";

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
  const transactions = transactionMeter(options);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as Record<string, unknown>;
      input.ReturnConsumedCapacity ??= "TOTAL";
      const metered = transactions && process.env.JOBQ_METER_TRANSACTIONS === "by-item";
      const byItem = metered && context.commandName === "TransactWriteItemsCommand";
      const byStatement = metered && context.commandName === "BatchExecuteStatementCommand";
      const before = byItem ? await transactions.images(input) : undefined;
      const updated = byStatement ? await transactions.statementImages(input) : undefined;
      const result = await next(args);
      const fn = meteredFunction.getStore();
      capacityMeter.request(fn);
      const output = result.output as unknown as Record<string, unknown>;
      const consumed = output.ConsumedCapacity;
      if (READ_COMMANDS.has(context.commandName ?? "")) {
        capacityMeter.add(asReads(consumed), fn);
      } else if (byItem && before) {
        capacityMeter.add(await transactions.units(input, before), fn);
      } else if (byStatement && updated) {
        capacityMeter.add(transactions.statementUnits(updated, output), fn);
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

/**
 * What a TransactWriteItems consumed by DynamoDB's billing rules (store/write-units.ts), for the
 * benchmark: DynamoDB Local reports a transaction of many items as if it wrote one. On only for a
 * loopback client while JOBQ_METER_TRANSACTIONS=by-item (npm run bench sets it; the local stack's
 * workers inherit it; read at each request): each transaction's items are read before it, by a
 * client of its own that nothing meters (and after it, only where the request cannot tell what it
 * leaves), which adds reads to DynamoDB Local's load. Null for a client of AWS.
 */
function transactionMeter(options: DynamoOptions): {
  images(input: Record<string, unknown>): Promise<Map<string, Item>>;
  units(input: Record<string, unknown>, before: Map<string, Item>): Promise<unknown[]>;
  statementImages(input: Record<string, unknown>): Promise<(StatementUpdate | null)[]>;
  statementUnits(updates: readonly (StatementUpdate | null)[], output: Record<string, unknown>): unknown[];
} | null {
  if (options.endpoint === undefined) return null;
  const reader = new DynamoDBClient(awsClientOptions(options.endpoint, options.region));
  const targets = (input: Record<string, unknown>) =>
    (
      (input.TransactItems ?? []) as Record<
        string,
        { TableName: string; Key?: object; Item?: Record<string, unknown> }
      >[]
    )
      .map((op) => {
        const [kind, body] = Object.entries(op)[0] ?? [];
        if (!kind || !body) return null;
        const table = tableOf(body.TableName);
        if (!table) return null;
        const source = (body.Key ?? body.Item ?? {}) as Record<string, unknown>;
        const key: Record<string, unknown> = { [table.partitionKey.name]: source[table.partitionKey.name] };
        if (table.sortKey) key[table.sortKey.name] = source[table.sortKey.name];
        return { kind, body, tableName: body.TableName, table, key: marshall(key) };
      })
      .filter((t) => t !== null);
  const id = (tableName: string, key: Item) => `${tableName}\u0000${JSON.stringify(key)}`;
  return {
    async images(input) {
      const found = new Map<string, Item>();
      await Promise.all(
        targets(input).map(async (t) => {
          const out = await reader.send(
            new GetItemCommand({ TableName: t.tableName, Key: t.key, ConsistentRead: true }),
          );
          if (out.Item) found.set(id(t.tableName, t.key), out.Item);
        }),
      );
      return found;
    },
    async units(input, before) {
      const byTable = new Map<string, number>();
      for (const t of targets(input)) {
        const k = id(t.tableName, t.key);
        // Read back only when the request cannot tell (another writer may have changed it since).
        const worked = imageAfter(t.kind, t.body, before.get(k));
        const next =
          worked !== null
            ? worked
            : (
                await reader.send(
                  new GetItemCommand({ TableName: t.tableName, Key: t.key, ConsistentRead: true }),
                )
              ).Item;
        byTable.set(
          t.tableName,
          (byTable.get(t.tableName) ?? 0) + writeUnits(t.table, before.get(k), next, true),
        );
      }
      return [...byTable].map(([TableName, CapacityUnits]) => ({ TableName, CapacityUnits }));
    },
    // DynamoDB Local reports no capacity at all for PartiQL's BatchExecuteStatement: each UPDATE
    // of the plain form jobq sends (store/job-repository.ts#setWaitingReasons, #changeEach) is counted from its
    // item read before and the values it sets; a statement that failed wrote nothing.
    async statementImages(input) {
      const statements = (input.Statements ?? []) as { Statement?: string; Parameters?: unknown[] }[];
      return Promise.all(
        statements.map(async (statement) => {
          const parsed = plainUpdateStatement(statement.Statement ?? "", statement.Parameters ?? []);
          const table = parsed ? tableOf(parsed.tableName) : undefined;
          if (!parsed || !table) return null;
          const key = marshall(parsed.key, MARSHALL);
          const out = await reader.send(
            new GetItemCommand({ TableName: parsed.tableName, Key: key, ConsistentRead: true }),
          );
          return {
            tableName: parsed.tableName,
            table,
            before: out.Item,
            set: marshall(parsed.set, MARSHALL),
            remove: parsed.remove,
          };
        }),
      );
    },
    statementUnits(updates, output) {
      const responses = (output.Responses ?? []) as { Error?: unknown }[];
      const byTable = new Map<string, number>();
      updates.forEach((update, i) => {
        if (!update || responses[i]?.Error || !update.before) return;
        const after: Record<string, AttributeValue> = { ...update.before, ...update.set };
        for (const name of update.remove) delete after[name];
        byTable.set(
          update.tableName,
          (byTable.get(update.tableName) ?? 0) + writeUnits(update.table, update.before, after, false),
        );
      });
      return [...byTable].map(([TableName, CapacityUnits]) => ({ TableName, CapacityUnits }));
    },
  };
}

interface StatementUpdate {
  readonly tableName: string;
  readonly table: TableDefinition;
  readonly before: Item | undefined;
  readonly set: Item;
  readonly remove: readonly string[];
}

/**
 * `UPDATE "<table>" SET a = ? SET b = ? … REMOVE c … WHERE pk = ? AND sk = ? …` (names quoted or
 * not) with its parameters: the table, the item's key, the values set and the names removed;
 * null for any other statement.
 */
function plainUpdateStatement(
  statement: string,
  parameters: readonly unknown[],
): {
  tableName: string;
  key: Record<string, unknown>;
  set: Record<string, unknown>;
  remove: string[];
} | null {
  const match =
    /^UPDATE "([^"]+)" ((?:SET "?[A-Za-z0-9_]+"? = \? )+)((?:REMOVE "?[A-Za-z0-9_]+"? )*)WHERE "?pk"? = \? AND "?sk"? = \?/.exec(
      statement,
    );
  if (!match?.[1] || !match[2]) return null;
  const names = [...match[2].matchAll(/SET "?([A-Za-z0-9_]+)"? = \?/g)].map((m) => m[1] ?? "");
  const remove = [...(match[3] ?? "").matchAll(/REMOVE "?([A-Za-z0-9_]+)"?/g)].map((m) => m[1] ?? "");
  const set: Record<string, unknown> = {};
  names.forEach((name, i) => {
    set[name] = parameters[i];
  });
  return {
    tableName: match[1],
    key: { pk: parameters[names.length], sk: parameters[names.length + 1] },
    set,
    remove,
  };
}

/**
 * A transaction item's image after the transaction, worked out from the request: a put's item, a
 * delete, a condition check, a plain update (write-units.ts#appliedUpdate); null when only a read
 * can tell (an update of another form).
 */
function imageAfter(kind: string, body: object, before: Item | undefined): Item | undefined | null {
  const request = body as Record<string, unknown>;
  if (kind === "ConditionCheck") return before;
  if (kind === "Delete") return undefined;
  if (kind === "Put") return marshall(request.Item as Record<string, unknown>, MARSHALL);
  const values = request.ExpressionAttributeValues as Record<string, unknown> | undefined;
  return appliedUpdate(before, {
    UpdateExpression: request.UpdateExpression as string | undefined,
    ExpressionAttributeNames: request.ExpressionAttributeNames as Record<string, string> | undefined,
    ExpressionAttributeValues: values ? marshall(values, MARSHALL) : undefined,
  });
}

const MARSHALL = { removeUndefinedValues: true, convertClassInstanceToMap: false } as const;

/** The table definition of a table name: local names are a prefix and the definition's id. */
function tableOf(tableName: string): TableDefinition | undefined {
  return TABLES.find((def) => tableName.endsWith(def.id));
}
