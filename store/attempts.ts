import type { TransactItem } from "./job-repository";
import { jobPk, RESULT_SK } from "./keys";

/**
 * Write parts for an attempt's own items under its job (`ATT#n`, `JOB#RESULT`). The ending
 * update of an attempt record is `endAttemptItem` in store/capacity.ts, beside the capacity it
 * goes back with.
 */

/**
 * The first write of an attempt record (`ATT#n`, with its `pk` and `sk`): the worker's start, or
 * the end of an attempt no worker started. Only if no record of that attempt exists: the start
 * and the end of an unstarted attempt write the same key, each in a transaction conditional on
 * the job's version, so only one of them can ever win.
 */
export function newAttemptItem(jobsTable: string, record: Readonly<Record<string, unknown>>): TransactItem {
  return {
    Put: {
      TableName: jobsTable,
      Item: { ...record },
      ConditionExpression: "attribute_not_exists(pk)",
    },
  };
}

/** A successful attempt's result, as the job's completion stores it. */
export interface StoredResult {
  /** The result as JSON text, like payloads (store/job-items.ts): DynamoDB's types refuse some valid JSON. */
  readonly resultJson: string;
  readonly attempt: number;
  readonly bytes: number;
  readonly writtenAt: string;
  /** TTL: the expiry the completing status change gives history items. */
  readonly expiresAt: number;
}

/**
 * The job's result item (`JOB#RESULT`): put by the worker right before the transaction that
 * completes the job, as a plain PutItem (1 write unit where the transaction billed 2), and only
 * where no result of this or a later attempt is: a stale worker never overwrites what a later
 * attempt stored, and the first put of an attempt's result stands (JobRepository#putResult).
 * A result whose completion is then refused is taken back (app/completion.ts); one a dying
 * worker left is never read: a job shows its result only while `completed`
 * (JobRepository#getJob), and the attempt that completes it puts its own first.
 */
export function storeResultItem(jobsTable: string, jobId: string, result: StoredResult): TransactItem {
  return {
    Put: {
      TableName: jobsTable,
      Item: {
        pk: jobPk(jobId),
        sk: RESULT_SK,
        entity: "result",
        resultJson: result.resultJson,
        attempt: result.attempt,
        bytes: result.bytes,
        writtenAt: result.writtenAt,
        expiresAt: result.expiresAt,
      },
      ConditionExpression: "attribute_not_exists(pk) OR #attempt < :attempt",
      ExpressionAttributeNames: { "#attempt": "attempt" },
      ExpressionAttributeValues: { ":attempt": result.attempt },
    },
  };
}

/** What of a job tells how its completion ended its last attempt (a job item has it). */
export interface CompletedAs {
  readonly status: string;
  readonly attempts: number;
  readonly finishedAt: string | null;
  readonly updatedAt: string;
}

/**
 * An attempt record (stored shape) as the reads show it: as stored, except the one a completion
 * ended whose record still says running. A worker whose start stored the record does not end it
 * (app/completion.ts, `attemptRecorded`), and one that dies right after the job's write leaves it
 * so too: the job is the one that knows. A completed job's last attempt is the one that succeeded
 * (a completed job is never retried), finished when the job did.
 */
export function endedByCompletion(
  record: Record<string, unknown>,
  job: CompletedAs,
): Record<string, unknown> {
  if (job.status !== "completed" || record.attempt !== job.attempts || record.status !== "running")
    return record;
  const finishedAt = job.finishedAt ?? job.updatedAt;
  const startedAt = typeof record.startedAt === "string" ? Date.parse(record.startedAt) : Number.NaN;
  const durationMs = Number.isNaN(startedAt) ? null : Math.max(0, Date.parse(finishedAt) - startedAt);
  return { ...record, status: "succeeded", finishedAt, durationMs, error: null };
}
