import { ConcurrentUpdateError } from "../core/errors";
import { CONDITION_FAILED, cancellationCodes } from "./cancellations";
import { indexAttributes, isQueuedCreationRecord, type JobItem } from "./job-items";
import type { JobRepository, TransactItem } from "./job-repository";
import { JOB_SK } from "./keys";

/**
 * The writes of a submission (app/submit.ts): new jobs created in one transaction or staged and
 * then made visible, each fenced by an Idempotency-Key's claim part when there is one
 * (store/idempotency-claims.ts). A write that lost a race answers which race it lost, so the use
 * case can tell "the claim is not ours any more" from "something we read changed".
 */

/** A job to create: its item, its first transition and its dependency edges. */
export interface NewJob {
  readonly item: JobItem;
  readonly transition: Record<string, unknown>;
  readonly edges: readonly Record<string, unknown>[];
}

/**
 * - `claim_lost`: the claim part's condition failed: another request owns the key now.
 * - `changed`: anything else cancelled the write (a dependency changed since it was read, a job
 *   changed while staged, a conflict with another transaction): read again and retry.
 * `error` is the store's ConcurrentUpdateError, for a caller that gives up to throw as it is.
 */
export type SubmissionWrite =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: "claim_lost" | "changed"; readonly error: ConcurrentUpdateError };

/**
 * Creates jobs with their first transitions (those not derived on read: written()) and edges as
 * one all-or-nothing write, insisting that each existing dependency is exactly as read (its
 * version; a parent marked as waited on by nothing loses the mark in the same write), and moving
 * the claim (`claim`, sent last) in the same transaction.
 */
export async function createJobs(
  repo: JobRepository,
  jobs: readonly NewJob[],
  dependencies: readonly JobItem[],
  claim?: TransactItem,
): Promise<SubmissionWrite> {
  const table = repo.tableName;
  const [single] = jobs;
  if (single && jobs.length === 1 && single.edges.length === 0 && dependencies.length === 0 && !claim) {
    // One job that depends on nothing, without an idempotency claim: nothing to keep atomic with
    // it but its first transition, so plain writes instead of a transaction, which DynamoDB
    // bills twice (22 write units become 11 for a 1 KB job). A job born queued has no
    // transition to write (written(), below). Any other's goes first: a crash between the two
    // leaves a record of a job that was never created (it expires with the history), never a job
    // without its first transition.
    if (written(single)) await repo.putIfAbsent(single.transition);
    if (!(await repo.putIfAbsent({ ...single.item }))) {
      return {
        ok: false,
        reason: "changed",
        error: new ConcurrentUpdateError(`job ${single.item.id} exists already`),
      };
    }
    return { ok: true };
  }
  const items: TransactItem[] = [];
  for (const job of jobs) {
    items.push({
      Put: { TableName: table, Item: job.item, ConditionExpression: "attribute_not_exists(pk)" },
    });
    if (written(job)) items.push({ Put: { TableName: table, Item: job.transition } });
    for (const edge of job.edges) items.push({ Put: { TableName: table, Item: edge } });
  }
  for (const parent of dependencies) items.push(repo.dependentAddedItem(parent));
  if (claim) items.push(claim);
  // The claim is the transaction's last item.
  return sendSubmissionWrite(repo, items, claim ? "last" : null);
}

/**
 * Whether a new job's first transition is stored: not when it is the record every job born
 * queued has, which reads derive from the job (store/job-items.ts#queuedCreationRecord).
 */
function written(job: NewJob): boolean {
  return !isQueuedCreationRecord(job.transition, job.item);
}

/**
 * Makes staged jobs visible (their index keys set, `staged` and its TTL removed), each only if
 * still staged at the version read, in one transaction with the claim's part (`claim`, sent
 * first) when there is one.
 */
export async function commitStagedJobs(
  repo: JobRepository,
  jobs: readonly JobItem[],
  claim?: TransactItem,
): Promise<SubmissionWrite> {
  const items = jobs.map((item) => commitPart(repo.tableName, item));
  return sendSubmissionWrite(repo, claim ? [claim, ...items] : items, claim ? "first" : null);
}

/**
 * Deletes a job item only while it is still staged: a committed job is never deleted, whoever
 * committed it. False when it was not staged (or not there).
 */
export async function deleteStagedJob(repo: JobRepository, item: Pick<JobItem, "pk">): Promise<boolean> {
  return repo.deleteIf({ pk: item.pk, sk: JOB_SK }, "staged = :true", { values: { ":true": true } });
}

async function sendSubmissionWrite(
  repo: JobRepository,
  items: readonly TransactItem[],
  claimAt: "first" | "last" | null,
): Promise<SubmissionWrite> {
  try {
    await repo.transact(items);
    return { ok: true };
  } catch (error) {
    if (!(error instanceof ConcurrentUpdateError)) throw error;
    const codes = cancellationCodes(error);
    const claimCode = claimAt === "first" ? codes[0] : claimAt === "last" ? codes.at(-1) : undefined;
    return { ok: false, reason: claimCode === CONDITION_FAILED ? "claim_lost" : "changed", error };
  }
}

function commitPart(table: string, item: JobItem): TransactItem {
  const attrs = indexAttributes(item, false);
  const names: Record<string, string> = { "#version": "version" };
  const values: Record<string, unknown> = { ":version": item.version, ":true": true };
  const clauses = Object.entries(attrs).map(([name, value], i) => {
    names[`#k${i}`] = name;
    values[`:k${i}`] = value;
    return `#k${i} = :k${i}`;
  });
  return {
    Update: {
      TableName: table,
      Key: { pk: item.pk, sk: JOB_SK },
      UpdateExpression: `SET ${clauses.join(", ")} REMOVE staged, expiresAt`,
      ConditionExpression: "#version = :version AND staged = :true",
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    },
  };
}
