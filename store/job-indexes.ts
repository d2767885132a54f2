import type { JobStatus } from "../core/job";
import type { JobItem } from "./job-items";
import type { JobRepository } from "./job-repository";
import { activePk, duePk, ownerStatusPk } from "./keys";
import { JOB_INDEX } from "./tables";

/**
 * Page reads of the Jobs table's sparse indexes that the scheduler, the reconciler and the quota
 * checks walk (store/tables.ts `JOB_INDEX`): each a named read with its key condition here, so
 * app/ asks for "the due jobs of a pool", never for an expression. One Query per call, as before.
 */

type Key = Record<string, unknown>;
type IndexReader = Pick<JobRepository, "queryIndex">;

/** Where a page starts and how many items it evaluates at most (absent: DynamoDB's 1 MB page). */
export interface PageRequest {
  readonly limit?: number | undefined;
  readonly startKey?: Key | undefined;
}

export interface IdPage {
  readonly ids: string[];
  readonly lastKey: Key | undefined;
}

export interface EntryPage {
  /** The index's projection of each job, not the job item. */
  readonly items: Partial<JobItem>[];
  readonly lastKey: Key | undefined;
}

function idOf(item: Record<string, unknown>): string {
  return String(item.pk).slice("JOB#".length);
}

function paging(page: PageRequest): { Limit?: number; ExclusiveStartKey: Key | undefined } {
  return { ...(page.limit !== undefined ? { Limit: page.limit } : {}), ExclusiveStartKey: page.startKey };
}

/**
 * Ids of the jobs whose time has come by `at` on the `due` index of `pool` (null: the any-pool
 * partition): scheduled jobs whose runAt came, retrying jobs whose backoff is over, deadlines.
 */
export async function dueJobIds(
  repo: IndexReader,
  pool: string | null,
  at: string,
  page: PageRequest,
): Promise<IdPage> {
  return dueIds(repo, pool, at, page, null);
}

/** One page of the `due` index of `pool` up to `at`, only jobs in `status` when one is given. */
async function dueIds(
  repo: IndexReader,
  pool: string | null,
  at: string,
  page: PageRequest,
  status: JobStatus | null,
): Promise<IdPage> {
  const out = await repo.queryIndex({
    IndexName: JOB_INDEX.due,
    KeyConditionExpression: "duePk = :pk AND dueSk <= :bound",
    // dueSk is `<time>#<id>`: every key of a time up to now sorts below `<now>#~`.
    ExpressionAttributeValues: {
      ":pk": duePk(pool),
      ":bound": `${at}#~`,
      ...(status ? { ":status": status } : {}),
    },
    // The index projects the status, so the filter reads no job item.
    ...(status
      ? { FilterExpression: "#status = :status", ExpressionAttributeNames: { "#status": "status" } }
      : {}),
    ...paging(page),
  });
  return { ids: out.items.map(idOf), lastKey: out.lastKey };
}

/**
 * Ids of the `retrying` jobs of `pool` (null: the any-pool partition) whose backoff was over by
 * `at`, from the `due` index (its projected status filters out scheduled jobs and deadlines):
 * with the `active` index, what the reconciler walks after a crash.
 */
export async function retryDueJobIds(
  repo: IndexReader,
  pool: string | null,
  at: string,
  page: PageRequest,
): Promise<IdPage> {
  return dueIds(repo, pool, at, page, "retrying");
}

/** The jobs that hold capacity in a pool (dispatched or running), from the `active` index. */
export async function activeInPool(repo: IndexReader, pool: string, page: PageRequest): Promise<EntryPage> {
  const out = await repo.queryIndex({
    IndexName: JOB_INDEX.active,
    KeyConditionExpression: "activePk = :pk",
    ExpressionAttributeValues: { ":pk": activePk(pool) },
    ...paging(page),
  });
  return { items: out.items as Partial<JobItem>[], lastKey: out.lastKey };
}

/**
 * A principal's running jobs in a pool, from the `active` index filtered to the owner or the
 * project (the filter costs the partition's read, which a pool's node count bounds).
 */
export async function runningInPoolFor(
  repo: IndexReader,
  pool: string,
  whose: { readonly owner: string } | { readonly project: string },
  page: PageRequest,
): Promise<EntryPage> {
  const [attribute, value] = "owner" in whose ? ["owner", whose.owner] : ["project", whose.project];
  const out = await repo.queryIndex({
    IndexName: JOB_INDEX.active,
    KeyConditionExpression: "activePk = :pk",
    FilterExpression: "#whose = :whose AND #status = :running",
    ExpressionAttributeNames: { "#whose": attribute, "#status": "status" },
    ExpressionAttributeValues: { ":pk": activePk(pool), ":whose": value, ":running": "running" },
    ...paging(page),
  });
  return { items: out.items as Partial<JobItem>[], lastKey: out.lastKey };
}

/** How many of a principal's jobs are in `status`, one COUNT page of the `byOwnerStatus` index. */
export async function countOwnerStatus(
  repo: IndexReader,
  principal: string,
  status: JobStatus,
  page: PageRequest,
): Promise<{ readonly count: number; readonly lastKey: Key | undefined }> {
  const out = await repo.queryIndex({
    IndexName: JOB_INDEX.byOwnerStatus,
    KeyConditionExpression: "ownerStatusPk = :pk",
    ExpressionAttributeValues: { ":pk": ownerStatusPk(principal, status) },
    Select: "COUNT",
    ...paging(page),
  });
  return { count: out.count, lastKey: out.lastKey };
}
