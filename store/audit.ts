import { ConditionalCheckFailedException, TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  type DynamoDBDocumentClient,
  QueryCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from "@aws-sdk/lib-dynamodb";
import { AUDIT_ACTIONS, AUDIT_KINDS, type AuditKind, type AuditRecord, auditExpiresAt } from "../core/audit";

/**
 * The audit trail in the Policy table (store/tables.ts#policyTable, docs/data-model.md): one
 * partition `AUDIT`, sort key `<at>#<kind>#<subject>`, so GET /admin/audit is one Query, newest
 * first, cut at `since` by the key condition. Operators change things a few times a day, so one
 * partition never runs hot. Records expire by the table's TTL (`expiresAt`) after
 * AUDIT_RETENTION_DAYS.
 *
 * Every record is written in the same TransactWriteItems as the change it records, beside that
 * change's own condition (the version or state read before it), and only when the change changes
 * something: a change cannot land unrecorded, and a retried request either finds nothing left to
 * change (no record) or loses the condition and decides again.
 */

export const AUDIT_PK = "AUDIT";

type TransactItem = NonNullable<TransactWriteCommandInput["TransactItems"]>[number];

/** Where the record goes: the Policy table, whichever table the change itself is in. */
export interface AuditWrite {
  readonly tableName: string;
  readonly record: AuditRecord;
}

function auditItem(record: AuditRecord): Record<string, unknown> {
  // A time that does not parse (only a test's stand-in) leaves a record that never expires.
  const expiresAt = auditExpiresAt(record.at);
  return {
    pk: AUDIT_PK,
    sk: record.id,
    entity: "audit",
    at: record.at,
    principal: record.principal,
    kind: record.kind,
    subject: record.subject,
    action: record.action,
    // JSON text, like the policy's: it round-trips exactly whatever the thing holds.
    beforeJson: JSON.stringify(record.before ?? null),
    afterJson: JSON.stringify(record.after ?? null),
    ...(Number.isFinite(expiresAt) ? { expiresAt } : {}),
  };
}

/** The audit record's put, for a caller's own transaction (a circuit reset: the breaker, its history and this). */
export function auditPutItem(audit: AuditWrite): TransactItem {
  return {
    Put: {
      TableName: audit.tableName,
      Item: auditItem(audit.record),
      ConditionExpression: "attribute_not_exists(pk)",
    },
  };
}

/**
 * Writes `change` and its audit record in one transaction. A lost condition on either (the thing
 * changed since it was read; this very record exists) surfaces as ConditionalCheckFailedException,
 * as the change alone would, so callers keep one way of re-reading and deciding again.
 */
export async function writeAudited(
  db: DynamoDBDocumentClient,
  change: TransactItem,
  audit: AuditWrite,
): Promise<void> {
  try {
    await db.send(
      new TransactWriteCommand({
        TransactItems: [
          change,
          {
            Put: {
              TableName: audit.tableName,
              Item: auditItem(audit.record),
              ConditionExpression: "attribute_not_exists(pk)",
            },
          },
        ],
      }),
    );
  } catch (error) {
    if (
      error instanceof TransactionCanceledException &&
      (error.CancellationReasons ?? []).some((r) => r.Code === "ConditionalCheckFailed")
    ) {
      throw new ConditionalCheckFailedException({
        message: `conditional change refused: ${error.message}`,
        $metadata: error.$metadata,
      });
    }
    throw error;
  }
}

export function isConditionFailure(error: unknown): boolean {
  return error instanceof Error && error.name === "ConditionalCheckFailedException";
}

export interface AuditPage {
  readonly items: AuditRecord[];
  /** The last sort key read when more may follow. */
  readonly lastId: string | undefined;
}

/** Queries a filtered page may take before answering short (with a cursor): reads stay bounded. */
const MAX_QUERIES_PER_PAGE = 5;

export class AuditLog {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    readonly tableName: string,
  ) {}

  /** The audit write for a record of this table's trail. */
  write(record: AuditRecord): AuditWrite {
    return { tableName: this.tableName, record };
  }

  /**
   * Newest first: records at or after `since`, before `before` (the cursor's last id), of `kind`
   * when given (a filter: the partition is ordered by time only).
   */
  async list(query: {
    readonly kind?: AuditKind | undefined;
    readonly since?: string | undefined;
    readonly before?: string | undefined;
    readonly limit: number;
  }): Promise<AuditPage> {
    const items: AuditRecord[] = [];
    let startKey: Record<string, unknown> | undefined =
      query.before === undefined ? undefined : { pk: AUDIT_PK, sk: query.before };
    for (let round = 0; round < MAX_QUERIES_PER_PAGE && items.length < query.limit; round++) {
      const out = await this.db.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: query.since === undefined ? "pk = :pk" : "pk = :pk AND sk >= :since",
          ...(query.kind === undefined
            ? {}
            : { FilterExpression: "#kind = :kind", ExpressionAttributeNames: { "#kind": "kind" } }),
          ExpressionAttributeValues: {
            ":pk": AUDIT_PK,
            ...(query.since === undefined ? {} : { ":since": query.since }),
            ...(query.kind === undefined ? {} : { ":kind": query.kind }),
          },
          ScanIndexForward: false,
          Limit: query.limit - items.length,
          ...(startKey === undefined ? {} : { ExclusiveStartKey: startKey }),
        }),
      );
      for (const item of out.Items ?? []) items.push(fromItem(item));
      startKey = out.LastEvaluatedKey;
      if (startKey === undefined) return { items, lastId: undefined };
    }
    const last = startKey?.sk;
    return { items, lastId: typeof last === "string" ? last : undefined };
  }
}

function fromItem(item: Record<string, unknown>): AuditRecord {
  const kind = AUDIT_KINDS.find((k) => k === item.kind) ?? "policy";
  const action = AUDIT_ACTIONS.find((a) => a === item.action) ?? "update";
  return {
    id: String(item.sk),
    at: String(item.at),
    principal: String(item.principal),
    kind,
    subject: String(item.subject),
    action,
    before: JSON.parse(String(item.beforeJson ?? "null")) as unknown,
    after: JSON.parse(String(item.afterJson ?? "null")) as unknown,
  };
}
