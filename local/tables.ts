import {
  type AttributeDefinition,
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  type GlobalSecondaryIndex,
  type KeySchemaElement,
  type Projection,
  ResourceInUseException,
  ResourceNotFoundException,
  type TableDescription,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
} from "@aws-sdk/client-dynamodb";
import { type IndexDefinition, type KeyAttribute, TABLES, type TableDefinition } from "../store/tables";

/**
 * store/tables.ts's definitions as DynamoDB Local tables: the local counterpart of the JobStore
 * construct, so the handlers see the same keys, indexes and TTL locally as in AWS.
 */

/** An existing table's keys or an index disagree with store/tables.ts and cannot be changed in place. */
export class TableSchemaMismatchError extends Error {
  constructor(
    readonly tableName: string,
    problem: string,
  ) {
    super(
      `table ${tableName} does not match store/tables.ts: ${problem}. ` +
        "Its data predates a change to the data model; delete the local data directory (JOBQ_DATA_DIR) to recreate it.",
    );
    this.name = "TableSchemaMismatchError";
  }
}

/** store/tables.ts defines something DynamoDB would refuse. */
export class TableDefinitionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TableDefinitionError";
  }
}

/** A table or index did not become ACTIVE in time. */
export class TableNotActiveError extends Error {
  constructor(
    readonly tableName: string,
    timeoutMs: number,
  ) {
    super(`table ${tableName} did not become ACTIVE within ${timeoutMs} ms`);
    this.name = "TableNotActiveError";
  }
}

/**
 * DynamoDB Local backfills a new index while it serves everything else; on a busy 2-core machine
 * (a full test run) one index took over 30 s. A real failure still surfaces, just later.
 */
const ACTIVE_TIMEOUT_MS = 120_000;
const ACTIVE_POLL_MS = 100;

export function createTableInput(def: TableDefinition, tableName: string): CreateTableCommandInput {
  const indexes = def.globalSecondaryIndexes.map(globalSecondaryIndex);
  return {
    TableName: tableName,
    // As in AWS (JobStore): pay per request, so no throughput to configure anywhere.
    BillingMode: "PAY_PER_REQUEST",
    KeySchema: keySchema(def.partitionKey, def.sortKey),
    AttributeDefinitions: attributeDefinitions(def),
    // DynamoDB rejects an empty index list; a table without indexes omits it.
    ...(indexes.length > 0 ? { GlobalSecondaryIndexes: indexes } : {}),
    ...(def.stream ? { StreamSpecification: { StreamEnabled: true, StreamViewType: def.stream } } : {}),
  };
}

/**
 * Creates every table of TABLES named `${prefix}${def.id}` unless it exists (a persistent data
 * directory keeps its tables and items across restarts), brings a kept table's indexes up to
 * the definition, waits until all are ACTIVE, and enables TTL. Returns def.id → table name.
 */
export async function ensureTables(client: DynamoDBClient, prefix: string): Promise<Record<string, string>> {
  const names: Record<string, string> = {};
  for (const def of TABLES) {
    const tableName = `${prefix}${def.id}`;
    await ensureTable(client, def, tableName);
    names[def.id] = tableName;
  }
  return names;
}

async function ensureTable(client: DynamoDBClient, def: TableDefinition, tableName: string): Promise<void> {
  const expected = createTableInput(def, tableName);
  let table = await describeTable(client, tableName);
  if (table === undefined) {
    try {
      await client.send(new CreateTableCommand(expected));
    } catch (error) {
      // Another process (a second test run, a second `npm start`) created it first.
      if (!(error instanceof ResourceInUseException)) throw error;
    }
    table = await waitUntilActive(client, tableName);
  } else {
    table = await waitUntilActive(client, tableName);
    // The table's own keys cannot change in place; its indexes can.
    if (!sameKeys(expected, expected.KeySchema, table, table.KeySchema)) {
      throw new TableSchemaMismatchError(tableName, `its key schema is ${JSON.stringify(table.KeySchema)}`);
    }
    table = await reconcileIndexes(client, expected, table);
    table = await reconcileStream(client, def, table);
  }
  assertMatches(expected, table);
  if (def.timeToLiveAttribute !== undefined)
    await ensureTimeToLive(client, tableName, def.timeToLiveAttribute);
}

/**
 * Brings a persisted table's indexes up to store/tables.ts, as the data model changes between
 * restarts: a missing index is created, one whose keys or projection changed is dropped and
 * created again (an index is only a view of the table's items, so no data is lost; DynamoDB
 * backfills it). One index per UpdateTable, DynamoDB's rule. Indexes no longer defined are left.
 */
async function reconcileIndexes(
  client: DynamoDBClient,
  expected: CreateTableCommandInput,
  table: TableDescription,
): Promise<TableDescription> {
  const tableName = expected.TableName ?? "";
  let current = table;
  for (const index of expected.GlobalSecondaryIndexes ?? []) {
    const actual = current.GlobalSecondaryIndexes?.find(
      (candidate) => candidate.IndexName === index.IndexName,
    );
    if (actual && sameIndex(expected, index, current, actual)) continue;
    if (actual) {
      await client.send(
        new UpdateTableCommand({
          TableName: tableName,
          GlobalSecondaryIndexUpdates: [{ Delete: { IndexName: index.IndexName } }],
        }),
      );
      current = await waitUntilActive(client, tableName, index.IndexName);
    }
    const keyNames = new Set(index.KeySchema?.map((key) => key.AttributeName));
    await client.send(
      new UpdateTableCommand({
        TableName: tableName,
        AttributeDefinitions: expected.AttributeDefinitions?.filter((attribute) =>
          keyNames.has(attribute.AttributeName),
        ),
        GlobalSecondaryIndexUpdates: [
          {
            Create: { IndexName: index.IndexName, KeySchema: index.KeySchema, Projection: index.Projection },
          },
        ],
      }),
    );
    current = await waitUntilActive(client, tableName);
  }
  return current;
}

/**
 * Turns on the table's stream when store/tables.ts now asks for one (data kept from before the
 * stream existed); a stream of another view type is switched off and on again, as in AWS.
 */
async function reconcileStream(
  client: DynamoDBClient,
  def: TableDefinition,
  table: TableDescription,
): Promise<TableDescription> {
  const current = table.StreamSpecification;
  const enabled = current?.StreamEnabled === true;
  if (def.stream === undefined || (enabled && current?.StreamViewType === def.stream)) return table;
  const tableName = table.TableName ?? "";
  if (enabled) {
    await client.send(
      new UpdateTableCommand({ TableName: tableName, StreamSpecification: { StreamEnabled: false } }),
    );
    await waitUntilActive(client, tableName);
  }
  await client.send(
    new UpdateTableCommand({
      TableName: tableName,
      StreamSpecification: { StreamEnabled: true, StreamViewType: def.stream },
    }),
  );
  return waitUntilActive(client, tableName);
}

/** After creation or reconciliation the table must be what store/tables.ts says. */
function assertMatches(expected: CreateTableCommandInput, table: TableDescription): void {
  const tableName = expected.TableName ?? "";
  if (!sameKeys(expected, expected.KeySchema, table, table.KeySchema)) {
    throw new TableSchemaMismatchError(tableName, `its key schema is ${JSON.stringify(table.KeySchema)}`);
  }
  for (const index of expected.GlobalSecondaryIndexes ?? []) {
    const actual = table.GlobalSecondaryIndexes?.find((candidate) => candidate.IndexName === index.IndexName);
    if (!actual || !sameIndex(expected, index, table, actual)) {
      throw new TableSchemaMismatchError(tableName, `index ${index.IndexName} differs`);
    }
  }
}

interface WithAttributes {
  readonly AttributeDefinitions?: readonly AttributeDefinition[];
}

function sameIndex(
  expectedTable: WithAttributes,
  expected: GlobalSecondaryIndex,
  actualTable: WithAttributes,
  actual: { readonly KeySchema?: readonly KeySchemaElement[]; readonly Projection?: Projection },
): boolean {
  return (
    sameKeys(expectedTable, expected.KeySchema, actualTable, actual.KeySchema) &&
    sameProjection(expected.Projection, actual.Projection)
  );
}

/** Same key names, roles (HASH/RANGE) and attribute types. */
function sameKeys(
  aTable: WithAttributes,
  a: readonly KeySchemaElement[] | undefined,
  bTable: WithAttributes,
  b: readonly KeySchemaElement[] | undefined,
): boolean {
  const canonical = (table: WithAttributes, keys: readonly KeySchemaElement[] | undefined) =>
    JSON.stringify(
      (keys ?? []).map((key) => [
        key.AttributeName,
        key.KeyType,
        table.AttributeDefinitions?.find((attribute) => attribute.AttributeName === key.AttributeName)
          ?.AttributeType,
      ]),
    );
  return canonical(aTable, a) === canonical(bTable, b);
}

function sameProjection(a: Projection | undefined, b: Projection | undefined): boolean {
  const canonical = (projection: Projection | undefined) =>
    JSON.stringify([projection?.ProjectionType, [...(projection?.NonKeyAttributes ?? [])].sort()]);
  return canonical(a) === canonical(b);
}

async function ensureTimeToLive(
  client: DynamoDBClient,
  tableName: string,
  attributeName: string,
): Promise<void> {
  const { TimeToLiveDescription: ttl } = await client.send(
    new DescribeTimeToLiveCommand({ TableName: tableName }),
  );
  if (ttl?.TimeToLiveStatus === "ENABLED" && ttl.AttributeName === attributeName) return;
  // DynamoDB refuses to enable TTL twice, so a restart must look before it asks.
  await client.send(
    new UpdateTimeToLiveCommand({
      TableName: tableName,
      TimeToLiveSpecification: { AttributeName: attributeName, Enabled: true },
    }),
  );
}

async function describeTable(
  client: DynamoDBClient,
  tableName: string,
): Promise<TableDescription | undefined> {
  try {
    return (await client.send(new DescribeTableCommand({ TableName: tableName }))).Table;
  } catch (error) {
    if (error instanceof ResourceNotFoundException) return undefined;
    throw error;
  }
}

/**
 * DynamoDB Local creates tables ACTIVE at once, but CreateTable's contract is asynchronous; the
 * SDK's waiter polls every 20 s, far too slow for a local start, hence this loop. With
 * `deletedIndex`, also waits until that index is gone.
 */
async function waitUntilActive(
  client: DynamoDBClient,
  tableName: string,
  deletedIndex?: string,
): Promise<TableDescription> {
  const deadline = Date.now() + ACTIVE_TIMEOUT_MS;
  for (;;) {
    const table = await describeTable(client, tableName);
    const indexes = table?.GlobalSecondaryIndexes ?? [];
    const settled =
      table?.TableStatus === "ACTIVE" &&
      indexes.every((index) => index.IndexStatus === "ACTIVE") &&
      !indexes.some((index) => index.IndexName === deletedIndex);
    if (table && settled) return table;
    if (Date.now() >= deadline) throw new TableNotActiveError(tableName, ACTIVE_TIMEOUT_MS);
    await new Promise((wake) => setTimeout(wake, ACTIVE_POLL_MS));
  }
}

function keySchema(partitionKey: KeyAttribute, sortKey: KeyAttribute | undefined): KeySchemaElement[] {
  return [
    { AttributeName: partitionKey.name, KeyType: "HASH" },
    ...(sortKey ? [{ AttributeName: sortKey.name, KeyType: "RANGE" as const }] : []),
  ];
}

function projection(index: IndexDefinition): Projection {
  const { projection } = index;
  return projection.type === "INCLUDE"
    ? { ProjectionType: "INCLUDE", NonKeyAttributes: [...projection.nonKeyAttributes] }
    : { ProjectionType: projection.type };
}

function globalSecondaryIndex(index: IndexDefinition): GlobalSecondaryIndex {
  return {
    IndexName: index.indexName,
    KeySchema: keySchema(index.partitionKey, index.sortKey),
    Projection: projection(index),
  };
}

/**
 * Every key attribute of the table and its indexes, once: several indexes share a sort key
 * (ownerSk), and DynamoDB rejects a repeated definition. One name with two types is a bug in
 * store/tables.ts, reported here rather than as DynamoDB's less specific ValidationException.
 */
function attributeDefinitions(def: TableDefinition): AttributeDefinition[] {
  const keys = [
    def.partitionKey,
    def.sortKey,
    ...def.globalSecondaryIndexes.flatMap((index) => [index.partitionKey, index.sortKey]),
  ].filter((key): key is KeyAttribute => key !== undefined);
  const types = new Map<string, KeyAttribute["type"]>();
  for (const key of keys) {
    const known = types.get(key.name);
    if (known !== undefined && known !== key.type) {
      throw new TableDefinitionError(
        `table ${def.id}: key attribute ${key.name} is both ${known} and ${key.type}`,
      );
    }
    types.set(key.name, key.type);
  }
  return [...types].map(([AttributeName, AttributeType]) => ({ AttributeName, AttributeType }));
}
