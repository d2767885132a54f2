import { BatchGetCommand, type DynamoDBDocumentClient, GetCommand } from "@aws-sdk/lib-dynamodb";
import { auditRecord } from "../core/audit";
import { type Policy, policySchema } from "../core/policy";
import { NO_QUOTA, type QuotaLimits, type QuotaLimitsInput, quotaLimitsSchema } from "../core/quota";
import { AuditLog, isConditionFailure, writeAudited } from "./audit";
import { CircuitRepository } from "./circuits";
import { POLICY_PK, POLICY_SK, principalPk, QUOTA_SK } from "./keys";
import { rateCounterKey } from "./rate-limits";
import { RecentReads } from "./recent-reads";

/**
 * The scheduling policy and each principal's quota limits in the Policy table
 * (store/tables.ts#policyTable, docs/data-model.md). GPU usage items share the principals'
 * partitions (store/usage.ts); this module reads and writes only the policy and quota items.
 *
 * The policy is stored as JSON text (`policyJson`), like a job's payloadJson: it round-trips
 * exactly (maps keyed by job types and principals, whatever they contain), and a read re-parses
 * it with core's schema, so a field added to the policy later takes its default for a policy
 * stored before it existed.
 */

export interface StoredPolicy {
  readonly policy: Policy;
  /** null: no policy has been stored; `policy` is the fallback. */
  readonly updatedAt: string | null;
  /** The principal who stored it; null with updatedAt. */
  readonly updatedBy: string | null;
}

/** A stored item that core's schema no longer accepts: edited by hand, or written by a newer jobq. */
export class StoredPolicyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoredPolicyError";
  }
}

/**
 * How long the submit path's copy of the policy (recentPolicy) is used before it is read again:
 * short enough that a PUT of per-type defaults applies within seconds on every API instance,
 * long enough that a burst of submissions costs one read, not one each.
 */
export const POLICY_CACHE_MS = 5_000;

/** How long the submit path's copy of a quota (recentQuota) is used; the policy's reasoning. */
export const QUOTA_CACHE_MS = POLICY_CACHE_MS;
/** Principals whose quotas one process remembers; the least recently read go first. */
const MAX_CACHED_QUOTAS = 10_000;

/** DynamoDB's limit of keys per BatchGetItem. */
const BATCH_GET_LIMIT = 100;

export class PolicyRepository {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    readonly tableName: string,
  ) {}

  /** The circuit breakers, which live in this table too (store/circuits.ts). */
  circuitRepository(): CircuitRepository {
    return new CircuitRepository(this.db, this.tableName);
  }

  /**
   * The policy in force: the stored one (strongly consistent, so a pass right after a PUT sees
   * it), or `fallback` (the deployment's default) while none is stored.
   */
  async getPolicy(fallback: Policy, consistent = true): Promise<StoredPolicy> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: POLICY_PK, sk: POLICY_SK },
        ConsistentRead: consistent,
      }),
    );
    const item = out.Item;
    if (!item) return { policy: fallback, updatedAt: null, updatedBy: null };
    return {
      policy: parseStoredPolicy(item.policyJson),
      updatedAt: typeof item.updatedAt === "string" ? item.updatedAt : null,
      updatedBy: typeof item.updatedBy === "string" ? item.updatedBy : null,
    };
  }

  /**
   * The policy in force as read at most `maxAgeMs` ago by this repository (one per process):
   * what the submit path reads for per-type defaults (core/type-rules.ts), so a submission costs
   * no policy read but one (eventually consistent, 0.5 RRU) per POLICY_CACHE_MS per process. A
   * PUT through this repository is seen at once; one through another process (another Lambda
   * instance) within maxAgeMs. `now` is the caller's clock (the use cases' Clock, which tests
   * move); a copy read "later" than now (a clock moved back) counts as stale.
   */
  recentPolicy(fallback: Policy, maxAgeMs = POLICY_CACHE_MS, now = Date.now()): Promise<Policy> {
    // Eventually consistent (0.5 RRU): a copy up to 5 s old is the contract here anyway; right
    // after a PUT through this repository, strongly consistent, so that PUT is seen at once.
    return this.policyReads.get(fallback, maxAgeMs, now, () =>
      this.getPolicy(fallback, now < this.consistentUntil).then((stored) => stored.policy),
    );
  }

  /** Keyed by the fallback: a caller with another default reads again. */
  private readonly policyReads = new RecentReads<Policy, Policy>(1);
  private consistentUntil = 0;

  /**
   * Replaces the policy, recording the change in the audit trail in the same transaction. The
   * write is conditional on the item read just before (last writer still wins: a lost race reads
   * again), and a PUT of the policy already stored writes nothing: a retried PUT records once.
   */
  async putPolicy(policy: Policy, principal: string, now: string): Promise<StoredPolicy> {
    const valid = policySchema.parse(policy);
    const policyJson = JSON.stringify(valid);
    for (let round = 1; ; round++) {
      const current = await this.policyItem();
      if (current?.policyJson === policyJson) {
        return {
          policy: valid,
          updatedAt: typeof current.updatedAt === "string" ? current.updatedAt : null,
          updatedBy: typeof current.updatedBy === "string" ? current.updatedBy : null,
        };
      }
      const before = current ? (JSON.parse(String(current.policyJson)) as unknown) : null;
      try {
        await writeAudited(
          this.db,
          {
            Put: {
              TableName: this.tableName,
              Item: {
                pk: POLICY_PK,
                sk: POLICY_SK,
                entity: "policy",
                policyJson,
                updatedAt: now,
                updatedBy: principal,
              },
              ...sameAs(current),
            },
          },
          this.audit.write(
            auditRecord({
              at: now,
              principal,
              kind: "policy",
              subject: "policy",
              action: "update",
              before,
              after: valid,
            }),
          ),
        );
        this.policyReads.clear();
        this.consistentUntil = Date.now() + POLICY_CACHE_MS;
        return { policy: valid, updatedAt: now, updatedBy: principal };
      } catch (error) {
        if (isConditionFailure(error) && round < MAX_WRITE_ROUNDS) continue;
        throw error;
      }
    }
  }

  private async policyItem(): Promise<Record<string, unknown> | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: POLICY_PK, sk: POLICY_SK },
        ConsistentRead: true,
      }),
    );
    return out.Item;
  }

  /**
   * Each type's starts in its current rate-limit window (store/rate-limits.ts), 0 for a window
   * not counted yet: one BatchGetItem per pass, only for the types that have a rateLimit.
   */
  async getRateStarts(
    windows: readonly { readonly type: string; readonly windowStart: Date }[],
  ): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    for (let i = 0; i < windows.length; i += BATCH_GET_LIMIT) {
      let keys: Record<string, string>[] = windows
        .slice(i, i + BATCH_GET_LIMIT)
        .map((w) => rateCounterKey(w.type, w.windowStart));
      for (let round = 0; keys.length > 0; round++) {
        const out = await this.db.send(
          new BatchGetCommand({ RequestItems: { [this.tableName]: { Keys: keys, ConsistentRead: true } } }),
        );
        for (const item of out.Responses?.[this.tableName] ?? []) {
          const type = String(item.pk).slice("RATE#".length);
          if (typeof item.starts === "number") found.set(type, item.starts);
        }
        keys = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Record<string, string>[];
        if (keys.length > 0) await backoff(round);
      }
    }
    return found;
  }

  /**
   * A principal's (or `project:` key's) limits as read at most `maxAgeMs` ago by this repository:
   * the submit path's read (maxPriority, maxQueuedJobs), so a burst of submissions costs one
   * quota read per principal and QUOTA_CACHE_MS per process instead of one each, and one round
   * trip less before the job is stored. As with recentPolicy, a PUT through this repository is
   * seen at once, one through another process (another Lambda instance) within maxAgeMs; the
   * scheduler's reads (getQuotas) are not cached, so GPU quotas bind from the next pass.
   */
  recentQuota(principal: string, maxAgeMs = QUOTA_CACHE_MS, now = Date.now()): Promise<QuotaLimits> {
    return this.quotaReads.get(principal, maxAgeMs, now, () => this.getQuota(principal));
  }

  private readonly quotaReads = new RecentReads<string, QuotaLimits>(MAX_CACHED_QUOTAS);

  /** A principal's limits; NO_QUOTA when none were set. */
  async getQuota(principal: string): Promise<QuotaLimits> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: principalPk(principal), sk: QUOTA_SK },
        ConsistentRead: true,
      }),
    );
    return out.Item ? limitsOf(out.Item) : NO_QUOTA;
  }

  /**
   * The limits of many principals in BatchGetItems of 100, eventually consistent (a scheduling
   * pass, where a quota set a second ago may apply from the next pass). Only principals with a
   * quota item are in the map.
   */
  async getQuotas(principals: readonly string[]): Promise<Map<string, QuotaLimits>> {
    const found = new Map<string, QuotaLimits>();
    const unique = [...new Set(principals)];
    for (let i = 0; i < unique.length; i += BATCH_GET_LIMIT) {
      let keys: Record<string, string>[] = unique
        .slice(i, i + BATCH_GET_LIMIT)
        .map((principal) => ({ pk: principalPk(principal), sk: QUOTA_SK }));
      // UnprocessedKeys come back under throttling; retry them with a short backoff.
      for (let round = 0; keys.length > 0; round++) {
        const out = await this.db.send(
          new BatchGetCommand({ RequestItems: { [this.tableName]: { Keys: keys } } }),
        );
        for (const item of out.Responses?.[this.tableName] ?? []) {
          if (typeof item.principal === "string") found.set(item.principal, limitsOf(item));
        }
        keys = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Record<string, string>[];
        if (keys.length > 0) await backoff(round);
      }
    }
    return found;
  }

  /**
   * Replaces a principal's limits (a PUT replaces all of them; one left out is no limit), with its
   * audit record in the same transaction; limits equal to the stored ones write nothing.
   */
  async putQuota(
    principal: string,
    limits: QuotaLimitsInput,
    now: string,
    by: string = principal,
  ): Promise<QuotaLimits> {
    const valid = quotaLimitsSchema.parse(limits);
    for (let round = 1; ; round++) {
      const out = await this.db.send(
        new GetCommand({
          TableName: this.tableName,
          Key: { pk: principalPk(principal), sk: QUOTA_SK },
          ConsistentRead: true,
        }),
      );
      const current = out.Item;
      const before = current ? limitsOf(current) : null;
      const after = limitsOf(valid);
      if (before && JSON.stringify(before) === JSON.stringify(after)) return valid;
      try {
        await writeAudited(
          this.db,
          {
            Put: {
              TableName: this.tableName,
              Item: {
                pk: principalPk(principal),
                sk: QUOTA_SK,
                entity: "quota",
                principal,
                ...valid,
                updatedAt: now,
              },
              ...sameAs(current),
            },
          },
          this.audit.write(
            auditRecord({
              at: now,
              principal: by,
              kind: "quota",
              subject: principal,
              action: "update",
              before,
              after,
            }),
          ),
        );
        this.quotaReads.forget(principal);
        return valid;
      } catch (error) {
        if (isConditionFailure(error) && round < MAX_WRITE_ROUNDS) continue;
        throw error;
      }
    }
  }

  private get audit(): AuditLog {
    return new AuditLog(this.db, this.tableName);
  }
}

/** Writes retried after losing a race with another writer of the same item. */
const MAX_WRITE_ROUNDS = 5;

/** The condition that the item is still as read: absent, or last written at the same time. */
function sameAs(current: Record<string, unknown> | undefined): {
  ConditionExpression: string;
  ExpressionAttributeValues?: Record<string, unknown>;
} {
  if (!current) return { ConditionExpression: "attribute_not_exists(pk)" };
  if (typeof current.updatedAt !== "string")
    return { ConditionExpression: "attribute_not_exists(updatedAt)" };
  return {
    ConditionExpression: "updatedAt = :read",
    ExpressionAttributeValues: { ":read": current.updatedAt },
  };
}

function parseStoredPolicy(text: unknown): Policy {
  let json: unknown;
  try {
    json = typeof text === "string" ? JSON.parse(text) : undefined;
  } catch (error) {
    throw new StoredPolicyError("the stored policy is not valid JSON; PUT /admin/policy replaces it", {
      cause: error,
    });
  }
  const parsed = policySchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "policy"}: ${i.message}`);
    throw new StoredPolicyError(
      `the stored policy is invalid (${problems.join("; ")}); PUT /admin/policy replaces it`,
    );
  }
  return parsed.data;
}

function limitsOf(item: Record<string, unknown>): QuotaLimits {
  const limit = (value: unknown): number | null => (typeof value === "number" ? value : null);
  return {
    dailyGpuSeconds: limit(item.dailyGpuSeconds),
    weeklyGpuSeconds: limit(item.weeklyGpuSeconds),
    maxQueuedJobs: limit(item.maxQueuedJobs),
    maxPriority: limit(item.maxPriority),
  };
}

async function backoff(round: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 25 * 2 ** round)));
}
