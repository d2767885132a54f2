import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  ScanCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { FIRST_DAY_SK, META_PK } from "./keys";

/**
 * Whole-table reads and create-only writes for export and import (app/export.ts). A Scan is the
 * one read here that is O(table): it serves an admin's rare export, a page at a time, and nothing
 * on a job's path uses it.
 */

export type StateTable = "jobs" | "policy";
export type TableKey = { readonly pk: string; readonly sk: string };

export interface ScanPage {
  readonly items: Record<string, unknown>[];
  /** Where the next page starts; undefined at the table's end. */
  readonly lastKey: TableKey | undefined;
}

export class StateStore {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tables: Readonly<Record<StateTable, string>>,
  ) {}

  /** One page of a table, eventually consistent (half the read units; an export is a snapshot in motion anyway). */
  async scan(table: StateTable, startKey: TableKey | undefined, limit: number): Promise<ScanPage> {
    const out = await this.db.send(
      new ScanCommand({ TableName: this.tables[table], Limit: limit, ExclusiveStartKey: startKey }),
    );
    const last = out.LastEvaluatedKey;
    return {
      items: out.Items ?? [],
      lastKey: last ? { pk: String(last.pk), sk: String(last.sk) } : undefined,
    };
  }

  /** One item by its key, eventually consistent like the scan it completes; undefined when absent. */
  async get(table: StateTable, key: TableKey): Promise<Record<string, unknown> | undefined> {
    const out = await this.db.send(new GetCommand({ TableName: this.tables[table], Key: key }));
    return out.Item;
  }

  /** Puts the item unless one with its key exists: false when it was there already. */
  async putIfAbsent(table: StateTable, item: Record<string, unknown>): Promise<boolean> {
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.tables[table],
          Item: item,
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }

  /** Puts every item (all in the jobs table) or none, each only if absent: false when any was there. */
  async putAllIfAbsent(items: readonly Record<string, unknown>[]): Promise<boolean> {
    try {
      await this.db.send(
        new TransactWriteCommand({
          TransactItems: items.map((Item) => ({
            Put: { TableName: this.tables.jobs, Item, ConditionExpression: "attribute_not_exists(pk)" },
          })),
        }),
      );
      return true;
    } catch (error) {
      // Only a refused condition means "already there"; a conflict with another write is retried by the caller.
      if (error instanceof Error && error.name === "TransactionCanceledException") {
        const reasons = (error as { CancellationReasons?: { Code?: string }[] }).CancellationReasons ?? [];
        if (reasons.some((r) => r.Code === "ConditionalCheckFailed")) return false;
      }
      throw error;
    }
  }

  /**
   * Moves the admin list's first day (META/FIRST_DAY) back to `day` when that is earlier: imported
   * jobs may predate every job of this stack, and the list stops walking back at that day.
   */
  async recordFirstDayNoLaterThan(day: string): Promise<void> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tables.jobs,
          Key: { pk: META_PK, sk: FIRST_DAY_SK },
          UpdateExpression: "SET #day = :day",
          ConditionExpression: "attribute_not_exists(#day) OR #day > :day",
          ExpressionAttributeNames: { "#day": "day" },
          ExpressionAttributeValues: { ":day": day },
        }),
      );
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
    }
  }
}

function isConditionFailure(error: unknown): boolean {
  return error instanceof Error && error.name === "ConditionalCheckFailedException";
}
