import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import type { Principal } from "../core/principal";
import { ADMIN_SUBSCRIBERS, subscriberKey } from "../core/stream";
import { CONNECTION_INDEX } from "./tables";

/**
 * The connections table (store/tables.ts): one item per open stream connection, with who opened
 * it and what it narrowed its subscription to. Written by $connect, the subscribe message and
 * $disconnect; read by the broadcaster one subscriber partition at a time.
 */

/**
 * How long an item outlives a connection whose $disconnect never ran: API Gateway closes every
 * connection after 2 hours, so after 3 nothing can post to it any more.
 */
export const CONNECTION_TTL_SECONDS = 3 * 3600;

export interface StreamConnection {
  readonly connectionId: string;
  readonly principal: Principal;
  /** null: every job the principal can see. */
  readonly jobIds: readonly string[] | null;
}

export class ConnectionRepository {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    readonly tableName: string,
  ) {}

  /** $connect: a new connection receives everything its principal can see. */
  async add(connectionId: string, principal: Principal, now: Date): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.tableName,
        Item: {
          connectionId,
          subscriberPk: subscriberKey(principal),
          principal: principal.id,
          admin: principal.admin,
          connectedAt: now.toISOString(),
          expiresAt: Math.floor(now.getTime() / 1000) + CONNECTION_TTL_SECONDS,
        },
      }),
    );
  }

  async get(connectionId: string): Promise<StreamConnection | null> {
    const { Item } = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: { connectionId }, ConsistentRead: true }),
    );
    if (!Item) return null;
    return {
      connectionId,
      principal: { id: String(Item.principal), admin: Item.admin === true },
      jobIds: jobIdsOf(Item.jobIds),
    };
  }

  /**
   * Narrows (a list) or widens (null) what the connection receives. Conditional on the item
   * existing: a subscribe racing $disconnect must not bring a closed connection back.
   * Returns false when the connection is gone.
   */
  async subscribe(connectionId: string, jobIds: readonly string[] | null): Promise<boolean> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { connectionId },
          ...(jobIds === null
            ? { UpdateExpression: "REMOVE jobIds" }
            : { UpdateExpression: "SET jobIds = :ids", ExpressionAttributeValues: { ":ids": [...jobIds] } }),
          ConditionExpression: "attribute_exists(connectionId)",
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof Error && error.name === "ConditionalCheckFailedException") return false;
      throw error;
    }
  }

  /** $disconnect, or a post that found the connection gone (410). Idempotent. */
  async remove(connectionId: string): Promise<void> {
    await this.db.send(new DeleteCommand({ TableName: this.tableName, Key: { connectionId } }));
  }

  /** Every open connection of one subscriber partition (core/stream.ts audienceKeys). */
  async ofSubscriber(subscriberPk: string): Promise<StreamConnection[]> {
    const connections: StreamConnection[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.db.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: CONNECTION_INDEX.bySubscriber,
          KeyConditionExpression: "subscriberPk = :pk",
          ExpressionAttributeValues: { ":pk": subscriberPk },
          ExclusiveStartKey: startKey,
        }),
      );
      for (const item of page.Items ?? []) {
        connections.push({
          connectionId: String(item.connectionId),
          // The admins' partition holds admins only; a user's partition only that user.
          principal: { id: String(item.principal), admin: subscriberPk === ADMIN_SUBSCRIBERS },
          jobIds: jobIdsOf(item.jobIds),
        });
      }
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return connections;
  }
}

function jobIdsOf(value: unknown): readonly string[] | null {
  return Array.isArray(value) ? value.map(String) : null;
}
