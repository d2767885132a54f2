import { createHash } from "node:crypto";
import { IdempotencyKeyReusedError, TooManyRequestsError, ValidationError } from "../core/errors";
import type { Principal } from "../core/principal";
import type { JobRepository, TransactItem } from "../store/job-repository";
import { IDEMPOTENCY_SK, idempotencyPk } from "../store/keys";

/**
 * Idempotency-Key handling of API.md: the same principal and key within 24 h get the original
 * jobs back; a different body with the key is a 409. Safe under concurrent identical requests:
 * the first one claims the key with a conditional put that also fixes the job ids it will
 * create, so a retry after a crash writes the same jobs, never new ones.
 */

export const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;
/** A claim older than this whose owner never finished is taken over by the next retry. */
const STALE_CLAIM_MS = 30_000;
/** How long a concurrent duplicate waits for the first request to finish before a 429. */
const WAIT_FOR_OWNER_MS = 20_000;
const POLL_MS = 50;

export interface IdempotencyRecord {
  readonly pk: string;
  readonly sk: string;
  readonly requestHash: string;
  readonly state: "pending" | "complete";
  /** The ids of the jobs this request creates, fixed at claim time. */
  readonly jobIds: readonly string[];
  readonly claimedAt: number;
  readonly expiresAt: number;
}

export type Claim =
  | { readonly kind: "claimed"; readonly record: IdempotencyRecord }
  | { readonly kind: "replay"; readonly jobIds: readonly string[] };

export function validateKey(key: string): string {
  if (key.length < 1 || key.length > 255) {
    throw new ValidationError([{ path: "Idempotency-Key", message: "must be 1..255 characters" }]);
  }
  return key;
}

/** A stable hash of what was asked: the route and the body with its keys sorted. */
export function requestHash(route: string, body: unknown): string {
  return createHash("sha256").update(route).update("\n").update(canonicalJson(body)).digest("hex");
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

export class Idempotency {
  constructor(private readonly repo: JobRepository) {}

  /**
   * Claims the key for this request with the ids it plans to create, or tells the caller to
   * replay the original jobs. Waits (bounded) while an identical request is in flight.
   */
  async claim(
    principal: Principal,
    key: string,
    hash: string,
    plannedIds: readonly string[],
    now: () => Date,
  ): Promise<Claim> {
    const pk = idempotencyPk(principal.id, createHash("sha256").update(key).digest("hex"));
    const deadline = now().getTime() + WAIT_FOR_OWNER_MS;
    for (;;) {
      const at = now().getTime();
      const fresh: IdempotencyRecord = {
        pk,
        sk: IDEMPOTENCY_SK,
        requestHash: hash,
        state: "pending",
        jobIds: plannedIds,
        claimedAt: at,
        expiresAt: Math.floor(at / 1000) + IDEMPOTENCY_TTL_SECONDS,
      };
      if (await this.repo.putIfAbsent({ ...fresh })) return { kind: "claimed", record: fresh };

      const existing = (await this.repo.getItem({ pk, sk: IDEMPOTENCY_SK })) as IdempotencyRecord | undefined;
      if (!existing) continue; // expired and deleted between our two calls
      // DynamoDB deletes expired items lazily (within days): an expired record counts as absent.
      if (existing.expiresAt * 1000 <= at) {
        if (await this.replaceClaim(existing, fresh)) return { kind: "claimed", record: fresh };
        continue;
      }
      if (existing.requestHash !== hash) throw new IdempotencyKeyReusedError();
      if (existing.state === "complete") return { kind: "replay", jobIds: existing.jobIds };
      if (at - existing.claimedAt > STALE_CLAIM_MS) {
        // The first request died mid-way: finish its work under the same job ids.
        const takeover: IdempotencyRecord = { ...existing, claimedAt: at };
        if (await this.replaceClaim(existing, takeover)) return { kind: "claimed", record: takeover };
        continue;
      }
      if (at >= deadline) {
        throw new TooManyRequestsError("a request with this Idempotency-Key is still in progress", 1);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /** The write that marks the claim complete, to put in the same transaction as the jobs. */
  completeItem(record: IdempotencyRecord): TransactItem {
    return {
      Update: {
        TableName: this.repo.tableName,
        Key: { pk: record.pk, sk: record.sk },
        UpdateExpression: "SET #state = :complete",
        ConditionExpression: "#state = :pending AND claimedAt = :claimedAt",
        ExpressionAttributeNames: { "#state": "state" },
        ExpressionAttributeValues: {
          ":complete": "complete",
          ":pending": "pending",
          ":claimedAt": record.claimedAt,
        },
      },
    };
  }

  /** Gives the key back when the request failed before creating anything. */
  async release(record: IdempotencyRecord): Promise<void> {
    await this.repo.deleteIf(
      { pk: record.pk, sk: record.sk },
      "claimedAt = :claimedAt AND #state = :pending",
      {
        names: { "#state": "state" },
        values: { ":claimedAt": record.claimedAt, ":pending": "pending" },
      },
    );
  }

  private async replaceClaim(previous: IdempotencyRecord, next: IdempotencyRecord): Promise<boolean> {
    return this.repo.putIf({ ...next }, "claimedAt = :claimedAt", {
      values: { ":claimedAt": previous.claimedAt },
    });
  }
}
