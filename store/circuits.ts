import { TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from "@aws-sdk/lib-dynamodb";
import {
  CIRCUIT_CHANGES,
  CIRCUIT_STATES,
  type Circuit,
  type CircuitStep,
  type CircuitTransition,
  parseCircuitKey,
} from "../core/circuit";
import { ConcurrentUpdateError } from "../core/errors";

/**
 * Circuit breakers in the Policy table (store/tables.ts#policyTable, docs/data-model.md): one
 * partition `CIRCUIT` holding each breaker (`sk = B#<type>` or `B#<type>#<owner>`) and its
 * history (`sk = T#<at>#<key>#<version>`, expiring by TTL after CIRCUIT_HISTORY_DAYS). Breakers
 * are few and change rarely, so one partition never runs hot, and a scheduling pass reads every
 * breaker with one Query. Every write is conditional on the version read (a breaker not yet
 * written: on its absence), and a change of state writes its history record in the same
 * transaction, so no change lands unrecorded.
 */

export const CIRCUIT_PK = "CIRCUIT";
const BREAKER_PREFIX = "B#";
const HISTORY_PREFIX = "T#";
export const CIRCUIT_HISTORY_DAYS = 30;

type TransactItem = NonNullable<TransactWriteCommandInput["TransactItems"]>[number];

export class CircuitRepository {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    readonly tableName: string,
  ) {}

  /** Every breaker ever written (closed ones too), by key: one Query, strongly consistent. */
  async list(): Promise<Map<string, Circuit>> {
    const circuits = new Map<string, Circuit>();
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await this.db.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
          ExpressionAttributeValues: { ":pk": CIRCUIT_PK, ":prefix": BREAKER_PREFIX },
          ConsistentRead: true,
          ...(startKey ? { ExclusiveStartKey: startKey } : {}),
        }),
      );
      for (const item of out.Items ?? []) {
        const circuit = fromItem(item);
        circuits.set(circuit.key, circuit);
      }
      startKey = out.LastEvaluatedKey;
    } while (startKey);
    return circuits;
  }

  async get(key: string): Promise<Circuit | null> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: CIRCUIT_PK, sk: `${BREAKER_PREFIX}${key}` },
        ConsistentRead: true,
      }),
    );
    return out.Item ? fromItem(out.Item) : null;
  }

  /** Newest first, at most `limit` records, of one breaker when `key` is given (a filter). */
  async history(limit: number, key?: string): Promise<CircuitTransition[]> {
    const records: CircuitTransition[] = [];
    let startKey: Record<string, unknown> | undefined;
    for (let round = 0; round < 5 && records.length < limit; round++) {
      const out = await this.db.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
          ...(key === undefined
            ? {}
            : { FilterExpression: "#key = :key", ExpressionAttributeNames: { "#key": "circuitKey" } }),
          ExpressionAttributeValues: {
            ":pk": CIRCUIT_PK,
            ":prefix": HISTORY_PREFIX,
            ...(key === undefined ? {} : { ":key": key }),
          },
          ScanIndexForward: false,
          Limit: limit - records.length,
          ...(startKey ? { ExclusiveStartKey: startKey } : {}),
        }),
      );
      for (const item of out.Items ?? []) records.push(transitionOf(item));
      startKey = out.LastEvaluatedKey;
      if (!startKey) break;
    }
    return records;
  }

  /**
   * The step's write items: the breaker, conditional on the version it was read at, and its
   * history record when the step changed its state. For a caller's own transaction (the
   * scheduler claims a probe in the probe job's admission transaction).
   */
  stepItems(step: CircuitStep): TransactItem[] {
    const expected = step.next.version - 1;
    const items: TransactItem[] = [
      {
        Put: {
          TableName: this.tableName,
          Item: toItem(step.next),
          ...(expected === 0
            ? { ConditionExpression: "attribute_not_exists(pk)" }
            : {
                ConditionExpression: "version = :expected",
                ExpressionAttributeValues: { ":expected": expected },
              }),
        },
      },
    ];
    if (step.transition) {
      items.push({
        Put: {
          TableName: this.tableName,
          Item: historyItem(step.transition, step.next.version),
          ConditionExpression: "attribute_not_exists(pk)",
        },
      });
    }
    return items;
  }

  /** Writes the step; ConcurrentUpdateError when the breaker changed since it was read. */
  async save(step: CircuitStep, also: readonly TransactItem[] = []): Promise<void> {
    const items = [...this.stepItems(step), ...also];
    try {
      const [only] = items;
      if (items.length === 1 && only?.Put) {
        // One item: a conditional PutItem costs half a transaction's write units.
        await this.db.send(new PutCommand(only.Put));
      } else {
        await this.db.send(new TransactWriteCommand({ TransactItems: items }));
      }
    } catch (error) {
      if (error instanceof TransactionCanceledException || isConditionFailure(error)) {
        throw new ConcurrentUpdateError(`circuit ${step.next.key} changed meanwhile`, {}, { cause: error });
      }
      throw error;
    }
  }
}

function isConditionFailure(error: unknown): boolean {
  return error instanceof Error && error.name === "ConditionalCheckFailedException";
}

function toItem(circuit: Circuit): Record<string, unknown> {
  return {
    pk: CIRCUIT_PK,
    sk: `${BREAKER_PREFIX}${circuit.key}`,
    entity: "circuit",
    circuitKey: circuit.key,
    type: circuit.type,
    owner: circuit.owner,
    phase: circuit.phase,
    failures: [...circuit.failures],
    recent: [...circuit.recent],
    openedAt: circuit.openedAt,
    openUntil: circuit.openUntil,
    probeJobId: circuit.probeJobId,
    probeAttempt: circuit.probeAttempt,
    changedAt: circuit.changedAt,
    version: circuit.version,
  };
}

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);

function fromItem(item: Record<string, unknown>): Circuit {
  const key = String(item.circuitKey ?? String(item.sk).slice(BREAKER_PREFIX.length));
  const { type, owner } = parseCircuitKey(key);
  const phase = item.phase === "open" || item.phase === "probing" ? item.phase : "closed";
  return {
    key,
    type,
    owner,
    phase,
    failures: Array.isArray(item.failures) ? item.failures.map(Number).filter(Number.isFinite) : [],
    recent: Array.isArray(item.recent) ? item.recent.map(String) : [],
    openedAt: str(item.openedAt),
    openUntil: str(item.openUntil),
    probeJobId: str(item.probeJobId),
    probeAttempt: typeof item.probeAttempt === "number" ? item.probeAttempt : null,
    changedAt: str(item.changedAt) ?? "",
    version: typeof item.version === "number" ? item.version : 0,
  };
}

function historyItem(t: CircuitTransition, version: number): Record<string, unknown> {
  const expiresAt = Math.floor(Date.parse(t.at) / 1000) + CIRCUIT_HISTORY_DAYS * 86_400;
  return {
    pk: CIRCUIT_PK,
    // The breaker's version keeps two changes of one breaker within a millisecond apart.
    sk: `${HISTORY_PREFIX}${t.at}#${t.key}#${String(version).padStart(10, "0")}`,
    entity: "circuitTransition",
    circuitKey: t.key,
    type: t.type,
    owner: t.owner,
    change: t.change,
    fromState: t.from,
    toState: t.to,
    at: t.at,
    reason: t.reason,
    jobId: t.jobId,
    by: t.by,
    ...(Number.isFinite(expiresAt) ? { expiresAt } : {}),
  };
}

function transitionOf(item: Record<string, unknown>): CircuitTransition {
  const state = (v: unknown) => CIRCUIT_STATES.find((s) => s === v) ?? "closed";
  return {
    key: String(item.circuitKey),
    type: String(item.type),
    owner: str(item.owner),
    change: CIRCUIT_CHANGES.find((c) => c === item.change) ?? "reset",
    from: state(item.fromState),
    to: state(item.toState),
    at: String(item.at),
    reason: String(item.reason ?? ""),
    jobId: str(item.jobId),
    by: str(item.by),
  };
}
