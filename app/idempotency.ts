import { createHash, randomUUID } from "node:crypto";
import { IdempotencyKeyReusedError, TooManyRequestsError, ValidationError } from "../core/errors";
import type { Principal } from "../core/principal";
import { type ClaimState, IdempotencyClaims, type IdempotencyRecord } from "../store/idempotency-claims";
import type { JobRepository } from "../store/job-repository";
import { IDEMPOTENCY_SK, idempotencyPk } from "../store/keys";

/**
 * Idempotency-Key handling of API.md: the same principal and key within 24 h get the original
 * jobs back; a different body with the key is a 409. Safe under concurrent identical requests:
 * the first one claims the key with a conditional put that also fixes the job ids it will
 * create, so a retry after a crash writes the same jobs, never new ones.
 */

export const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;
/**
 * A claim older than this whose owner never finished is taken over by the next retry. Longer than
 * any request may run (submit's budget), so in normal operation only a dead owner's claim is
 * taken over; the token fences a live one that was merely slow.
 */
export const STALE_CLAIM_MS = 30_000;
/** How long a concurrent duplicate waits for the first request to finish before a 429. */
const WAIT_FOR_OWNER_MS = 20_000;
const POLL_MS = 50;

export type { ClaimState, IdempotencyRecord };

/** A claim's part in a submission's transaction (store/idempotency-claims.ts builds it). */
export type ClaimPart = ReturnType<IdempotencyClaims["movePart"]>;

export type Claim =
  | { readonly kind: "claimed"; readonly record: IdempotencyRecord }
  /** A dead owner's commit to finish: the claim is ours now and its ids are final. */
  | { readonly kind: "resume"; readonly record: IdempotencyRecord }
  | { readonly kind: "replay"; readonly jobIds: readonly string[] };

/**
 * The claim is no longer this request's (a retry took it over): whatever it wrote is its own to
 * clean up, and it must answer from the claim as it is now.
 */
export class ClaimLostError extends Error {
  /** Whether the loser had begun to commit (its jobs are the claim's now) or nothing of it is visible. */
  readonly afterCommitPoint: boolean;
  constructor(options: { cause?: unknown; afterCommitPoint?: boolean } = {}) {
    super("the Idempotency-Key's claim was taken over by another request", { cause: options.cause });
    this.name = "ClaimLostError";
    this.afterCommitPoint = options.afterCommitPoint ?? false;
  }
}

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
  private readonly claims: IdempotencyClaims;

  constructor(repo: JobRepository) {
    this.claims = new IdempotencyClaims(repo);
  }

  /**
   * Claims the key for this request with the ids it plans to create, or tells the caller to
   * replay the original jobs or to finish a dead owner's commit. Waits (bounded) while an
   * identical request is in flight.
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
        token: randomUUID(),
        claimedAt: at,
        expiresAt: Math.floor(at / 1000) + IDEMPOTENCY_TTL_SECONDS,
      };
      if (await this.claims.create(fresh)) return { kind: "claimed", record: fresh };

      const existing = await this.claims.read(pk);
      if (!existing) continue; // expired and deleted between our two calls
      // DynamoDB deletes expired items lazily (within days): an expired record counts as absent.
      if (existing.expiresAt * 1000 <= at) {
        if (await this.claims.replace(existing, fresh)) return { kind: "claimed", record: fresh };
        continue;
      }
      if (existing.requestHash !== hash) throw new IdempotencyKeyReusedError();
      if (existing.state === "complete") return { kind: "replay", jobIds: existing.jobIds };
      if (at - existing.claimedAt > STALE_CLAIM_MS) {
        if (existing.state === "committing") {
          // Its jobs are partly visible under final ids: finish that commit, never start over.
          const resumed: IdempotencyRecord = { ...existing, token: randomUUID(), claimedAt: at };
          if (await this.claims.replace(existing, resumed)) return { kind: "resume", record: resumed };
        } else {
          // Nothing of the old owner's is visible. Our own ids keep anything it still writes
          // (staged, invisible) apart from what we create; its commit will find the claim gone.
          const takeover: IdempotencyRecord = { ...fresh, expiresAt: existing.expiresAt };
          if (await this.claims.replace(existing, takeover)) return { kind: "claimed", record: takeover };
        }
        continue;
      }
      if (at >= deadline) {
        throw new TooManyRequestsError("a request with this Idempotency-Key is still in progress", 1);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /**
   * Whether the key already stands for jobs a finished request created (what a replay would
   * answer), without claiming it.
   */
  async isComplete(principal: Principal, key: string, now: () => Date): Promise<boolean> {
    const pk = idempotencyPk(principal.id, createHash("sha256").update(key).digest("hex"));
    const existing = await this.claims.read(pk);
    return existing?.state === "complete" && existing.expiresAt * 1000 > now().getTime();
  }

  /** The claim as stored now, or undefined when there is none. */
  async current(record: Pick<IdempotencyRecord, "pk">): Promise<IdempotencyRecord | undefined> {
    return this.claims.read(record.pk);
  }

  /**
   * The write that moves our claim from `from` to `to`, to put in the same transaction as the
   * jobs it stands for: it fails (and with it the whole transaction) once the claim is not ours.
   */
  moveItem(record: IdempotencyRecord, from: ClaimState, to: ClaimState): ClaimPart {
    return this.claims.movePart(record, from, to);
  }

  /** Insists, inside a transaction, that the claim is still ours and in `state`. */
  checkItem(record: IdempotencyRecord, state: ClaimState): ClaimPart {
    return this.claims.checkPart(record, state);
  }

  /** Our claim from `from` to `to` on its own; ClaimLostError when it is not ours any more. */
  async move(record: IdempotencyRecord, from: ClaimState, to: ClaimState): Promise<void> {
    if (!(await this.claims.move(record, from, to))) throw new ClaimLostError();
  }

  /**
   * Our pending claim now stands for other job ids (a retry of the write with fresh ids);
   * ClaimLostError when it is not ours any more.
   */
  async reassign(record: IdempotencyRecord, jobIds: readonly string[]): Promise<IdempotencyRecord> {
    if (!(await this.claims.reassign(record, jobIds))) throw new ClaimLostError();
    return { ...record, jobIds };
  }

  /** Gives the key back when the request failed before creating anything; a no-op once not ours. */
  async release(record: IdempotencyRecord): Promise<void> {
    await this.claims.release(record);
  }
}
