import type { JobRepository, TransactItem } from "./job-repository";
import { IDEMPOTENCY_SK } from "./keys";

/**
 * An Idempotency-Key's claim in the jobs table (app/idempotency.ts says what the states mean).
 * Every write that moves a claim is fenced by its owner's token, so an owner that lost the claim
 * to a takeover cannot complete it or give it back: each verb answers false (or fails its
 * transaction) instead.
 */

/**
 * - `pending`: the owner is writing its jobs staged (invisible) or about to write them in one
 *   transaction; a takeover gets new job ids, so nothing the old owner still writes can touch
 *   the new owner's jobs.
 * - `committing`: a batch too large for one transaction is being made visible; its ids are final,
 *   and a takeover finishes the commit of those same ids (commits are resumable).
 * - `complete`: the jobs exist; the key replays them.
 */
export type ClaimState = "pending" | "committing" | "complete";

export interface IdempotencyRecord {
  readonly pk: string;
  readonly sk: string;
  readonly requestHash: string;
  readonly state: ClaimState;
  /** The ids of the jobs this request creates, fixed at claim time. */
  readonly jobIds: readonly string[];
  /**
   * The owner's fencing token, new at every claim and takeover: every write that moves the claim
   * is conditional on it, so an owner that lost the claim cannot complete it or give it back.
   * Absent on records written before tokens existed; `claimedAt` fences those.
   */
  readonly token?: string;
  readonly claimedAt: number;
  readonly expiresAt: number;
}

interface Fence {
  readonly condition: string;
  readonly names: Record<string, string>;
  readonly values: Record<string, unknown>;
}

/** The condition that the stored claim is still `record`'s: its token, or its claimedAt before tokens. */
function fenceOf(record: IdempotencyRecord): Fence {
  return record.token === undefined
    ? {
        condition: "claimedAt = :claimedAt AND attribute_not_exists(#token)",
        names: { "#token": "token" },
        values: { ":claimedAt": record.claimedAt },
      }
    : { condition: "#token = :token", names: { "#token": "token" }, values: { ":token": record.token } };
}

export class IdempotencyClaims {
  constructor(private readonly repo: JobRepository) {}

  /** Writes a new claim; false when the key is claimed already (expired or not). */
  async create(record: IdempotencyRecord): Promise<boolean> {
    return this.repo.putIfAbsent({ ...record });
  }

  /** The claim as stored now (strongly consistent), or undefined when there is none. */
  async read(pk: string): Promise<IdempotencyRecord | undefined> {
    return (await this.repo.getItem({ pk, sk: IDEMPOTENCY_SK })) as IdempotencyRecord | undefined;
  }

  /**
   * Puts `next` in place of `previous` (a takeover, or a new claim over an expired one); false
   * when the stored claim is not `previous` any more (its state or owner changed).
   */
  async replace(previous: IdempotencyRecord, next: IdempotencyRecord): Promise<boolean> {
    const fence = fenceOf(previous);
    return this.repo.putIf({ ...next }, `#state = :state AND ${fence.condition}`, {
      names: { "#state": "state", ...fence.names },
      values: { ":state": previous.state, ...fence.values },
    });
  }

  /** Our claim from `from` to `to` on its own; false when it is not ours (or not in `from`). */
  async move(record: IdempotencyRecord, from: ClaimState, to: ClaimState): Promise<boolean> {
    const fence = fenceOf(record);
    return this.repo.updateIf(
      { pk: record.pk, sk: record.sk },
      "SET #state = :to",
      `#state = :from AND ${fence.condition}`,
      {
        names: { "#state": "state", ...fence.names },
        values: { ":to": to, ":from": from, ...fence.values },
      },
    );
  }

  /** Our pending claim now stands for other job ids; false when it is not ours (or not pending). */
  async reassign(record: IdempotencyRecord, jobIds: readonly string[]): Promise<boolean> {
    const fence = fenceOf(record);
    return this.repo.updateIf(
      { pk: record.pk, sk: record.sk },
      "SET jobIds = :ids",
      `#state = :pending AND ${fence.condition}`,
      {
        names: { "#state": "state", ...fence.names },
        values: { ":ids": [...jobIds], ":pending": "pending", ...fence.values },
      },
    );
  }

  /** Deletes our pending claim; false when it is not ours or not pending any more. */
  async release(record: IdempotencyRecord): Promise<boolean> {
    const fence = fenceOf(record);
    return this.repo.deleteIf({ pk: record.pk, sk: record.sk }, `#state = :pending AND ${fence.condition}`, {
      names: { "#state": "state", ...fence.names },
      values: { ":pending": "pending", ...fence.values },
    });
  }

  /**
   * The transaction part that moves our claim from `from` to `to`, to send with the jobs it
   * stands for: it fails (and with it the whole transaction) once the claim is not ours.
   */
  movePart(record: IdempotencyRecord, from: ClaimState, to: ClaimState): TransactItem {
    const fence = fenceOf(record);
    return {
      Update: {
        TableName: this.repo.tableName,
        Key: { pk: record.pk, sk: record.sk },
        UpdateExpression: "SET #state = :to",
        ConditionExpression: `#state = :from AND ${fence.condition}`,
        ExpressionAttributeNames: { "#state": "state", ...fence.names },
        ExpressionAttributeValues: { ":to": to, ":from": from, ...fence.values },
      },
    };
  }

  /** The transaction part that insists the claim is still ours and in `state`. */
  checkPart(record: IdempotencyRecord, state: ClaimState): TransactItem {
    const fence = fenceOf(record);
    return {
      ConditionCheck: {
        TableName: this.repo.tableName,
        Key: { pk: record.pk, sk: record.sk },
        ConditionExpression: `#state = :state AND ${fence.condition}`,
        ExpressionAttributeNames: { "#state": "state", ...fence.names },
        ExpressionAttributeValues: { ":state": state, ...fence.values },
      },
    };
  }
}
