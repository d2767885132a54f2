import { type JobItem, withNullFields } from "./job-items";
import type { JobRepository, Page } from "./job-repository";
import { activePk, duePk, queuePk, TRANSITION_PREFIX } from "./keys";
import { JOB_INDEX } from "./tables";

/**
 * The reads of the jobs table's indexes in the queue's and the lists' terms: one page of a
 * pool's queue, of an owner's head of the queue, of the jobs holding capacity, of a list index.
 * Each is one Query, exactly as the use cases sent it before (same index, key condition, filter,
 * projection, page size): a move of where the expression is written, not of what is read.
 */

type StartKey = Record<string, unknown> | undefined;

/** One page of a queue partition (`Q#<pool>`) in the order of `index`: admission order or age. */
export async function queuePage(
  repo: JobRepository,
  index: typeof JOB_INDEX.queue | typeof JOB_INDEX.queueByAge,
  partition: string,
  options: { readonly limit: number; readonly startKey: StartKey },
): Promise<Page<JobItem>> {
  const page = await repo.queryIndex({
    IndexName: index,
    KeyConditionExpression: "queuePk = :pk",
    ExpressionAttributeValues: { ":pk": partition },
    Limit: options.limit,
    ExclusiveStartKey: options.startKey,
  });
  return { ...page, items: page.items.map((entry) => withNullFields(entry as unknown as JobItem)) };
}

/**
 * One page of the `queueByOwner` index: the first owner's jobs in the partition after `after`
 * (an owner key from store/keys.ts#afterOwner; from the start when null), the next owner's after
 * them if the page reaches that far.
 */
export async function ownerHeadPage(
  repo: JobRepository,
  partition: string,
  after: string | null,
  limit: number,
): Promise<Page<JobItem>> {
  // DynamoDB refuses an empty string in a key condition: the first owner needs none.
  const page = await repo.queryIndex({
    IndexName: JOB_INDEX.queueByOwner,
    KeyConditionExpression: after ? "queuePk = :pk AND queueOwnerSk > :after" : "queuePk = :pk",
    ExpressionAttributeValues: after ? { ":pk": partition, ":after": after } : { ":pk": partition },
    Limit: limit,
  });
  return { ...page, items: page.items.map((entry) => withNullFields(entry as unknown as JobItem)) };
}

/** The next page of one owner's queued jobs in a partition (`queueByOwner`), from `startKey`. */
export async function ownerQueuePage(
  repo: JobRepository,
  partition: string,
  owner: string,
  options: { readonly limit: number; readonly startKey: StartKey },
): Promise<Page<JobItem>> {
  const page = await repo.queryIndex({
    IndexName: JOB_INDEX.queueByOwner,
    KeyConditionExpression: "queuePk = :pk AND begins_with(queueOwnerSk, :owner)",
    ExpressionAttributeValues: { ":pk": partition, ":owner": `${owner}#` },
    Limit: options.limit,
    ExclusiveStartKey: options.startKey,
  });
  return { ...page, items: page.items.map((entry) => withNullFields(entry as unknown as JobItem)) };
}

/**
 * Queued jobs of one priority band of a pool's queue, newest first from `hi` down to `lo` (queue
 * sort keys, store/keys.ts#queueSk): what is just ahead of a job in admission order.
 */
export async function queuedBetween(
  repo: JobRepository,
  pool: string | null,
  range: { readonly lo: string; readonly hi: string },
  limit: number,
): Promise<Page<Pick<JobItem, "id" | "queueSk">>> {
  const page = await repo.queryIndex({
    IndexName: JOB_INDEX.queue,
    KeyConditionExpression: "queuePk = :pk AND queueSk BETWEEN :lo AND :hi",
    ExpressionAttributeValues: { ":pk": queuePk(pool), ":lo": range.lo, ":hi": range.hi },
    ScanIndexForward: false,
    Limit: limit,
  });
  return { ...page, items: page.items as unknown as Pick<JobItem, "id" | "queueSk">[] };
}

/** One page of the `active` index of a pool: the jobs holding capacity there, as it projects them. */
export async function activePage(
  repo: JobRepository,
  pool: string,
  startKey: StartKey,
): Promise<Page<Record<string, unknown>>> {
  return repo.queryIndex({
    IndexName: JOB_INDEX.active,
    KeyConditionExpression: "activePk = :pk",
    ExpressionAttributeValues: { ":pk": activePk(pool) },
    ExclusiveStartKey: startKey,
  });
}

/** One page of the `due` index of a pool, the status of each entry only. */
export async function dueStatusPage(
  repo: JobRepository,
  pool: string | null,
  options: { readonly limit: number; readonly startKey: StartKey },
): Promise<Page<{ readonly status?: unknown }>> {
  return repo.queryIndex({
    IndexName: JOB_INDEX.due,
    KeyConditionExpression: "duePk = :pk",
    ExpressionAttributeValues: { ":pk": duePk(pool) },
    ProjectionExpression: "#status",
    ExpressionAttributeNames: { "#status": "status" },
    Limit: options.limit,
    ExclusiveStartKey: options.startKey,
  });
}

/**
 * The queued jobs of a pool's queue partition (before `queueSk` in admission order when given),
 * counted (Select COUNT) page by page and stopping at `cap`: counting costs reads, so it never
 * walks a whole backlog. `complete` is false when it stopped early.
 */
export async function countQueued(
  repo: JobRepository,
  pool: string | null,
  cap: number,
  before?: string,
): Promise<{ count: number; complete: boolean }> {
  let count = 0;
  let startKey: StartKey;
  do {
    const page = await repo.queryIndex({
      IndexName: JOB_INDEX.queue,
      ...(before === undefined
        ? { KeyConditionExpression: "queuePk = :pk", ExpressionAttributeValues: { ":pk": queuePk(pool) } }
        : {
            KeyConditionExpression: "queuePk = :pk AND queueSk < :mine",
            ExpressionAttributeValues: { ":pk": queuePk(pool), ":mine": before },
          }),
      Select: "COUNT",
      Limit: cap - count,
      ExclusiveStartKey: startKey,
    });
    count += page.count;
    startKey = page.lastKey;
  } while (startKey && count < cap);
  return { count, complete: startKey === undefined };
}

/**
 * What a list keeps of the index entries before reading any job item, on the attributes the
 * list indexes project (store/tables.ts#LIST_PROJECTION); the exact check follows on the items.
 */
export interface ListFilter {
  /** byProject projects the owner: a user's list of a project drops other members' jobs unread. */
  readonly owner?: string | undefined;
  readonly type?: string | undefined;
  readonly priority?: number | undefined;
  readonly tag?: { readonly key: string; readonly value: string } | undefined;
}

/** A list index's partition: the key attribute and its value (e.g. `ownerPk` = `O#alice`). */
export interface ListPartition {
  readonly attribute: string;
  readonly value: string;
}

/**
 * One page of a list index sorted by job id (`ownerSk`), newest first from `hi` down to `lo`,
 * the entries' ids only.
 */
export async function listIdsBetween(
  repo: JobRepository,
  read: {
    readonly index: string;
    readonly partition: ListPartition;
    readonly lo: string;
    readonly hi: string;
    readonly filter: ListFilter | undefined;
    readonly limit: number;
  },
): Promise<Page<{ readonly ownerSk?: unknown }>> {
  const filter = filterExpression(read.filter);
  return repo.queryIndex({
    IndexName: read.index,
    KeyConditionExpression: "#pk = :pk AND ownerSk BETWEEN :lo AND :hi",
    ...(filter ? { FilterExpression: filter.expression } : {}),
    ProjectionExpression: "ownerSk",
    ExpressionAttributeNames: { "#pk": read.partition.attribute, ...filter?.names },
    ExpressionAttributeValues: {
      ":pk": read.partition.value,
      ":lo": read.lo,
      ":hi": read.hi,
      ...filter?.values,
    },
    ScanIndexForward: false,
    Limit: read.limit,
  });
}

/**
 * One page of a list index sorted by last change (`updatedSk`), oldest first after `after`, the
 * entries' sort keys only.
 */
export async function listUpdatedAfter(
  repo: JobRepository,
  read: {
    readonly index: string;
    readonly partition: ListPartition;
    readonly after: string;
    readonly filter: ListFilter | undefined;
    readonly limit: number;
  },
): Promise<Page<{ readonly updatedSk?: unknown }>> {
  const filter = filterExpression(read.filter);
  return repo.queryIndex({
    IndexName: read.index,
    KeyConditionExpression: "#pk = :pk AND updatedSk > :after",
    ...(filter ? { FilterExpression: filter.expression } : {}),
    ProjectionExpression: "updatedSk",
    ExpressionAttributeNames: { "#pk": read.partition.attribute, ...filter?.names },
    ExpressionAttributeValues: { ":pk": read.partition.value, ":after": read.after, ...filter?.values },
    ScanIndexForward: true,
    Limit: read.limit,
  });
}

/** The Query filter of a ListFilter; undefined when it keeps everything. */
function filterExpression(
  filter: ListFilter | undefined,
): { expression: string; names: Record<string, string>; values: Record<string, unknown> } | undefined {
  const parts: string[] = [];
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  if (!filter) return undefined;
  if (filter.owner !== undefined) {
    parts.push("#owner = :owner");
    names["#owner"] = "owner";
    values[":owner"] = filter.owner;
  }
  if (filter.type !== undefined) {
    parts.push("#type = :type");
    names["#type"] = "type";
    values[":type"] = filter.type;
  }
  if (filter.priority !== undefined) {
    parts.push("#priority = :priority");
    names["#priority"] = "priority";
    values[":priority"] = filter.priority;
  }
  if (filter.tag) {
    // Tags are stored as JSON text (store/job-items.ts): the pair as JSON.stringify writes it.
    // A superset at worst (the check on the job item is exact), never a miss.
    parts.push("contains(#tags, :tag)");
    names["#tags"] = "tagsJson";
    values[":tag"] = `${JSON.stringify(filter.tag.key)}:${JSON.stringify(filter.tag.value)}`;
  }
  return parts.length > 0 ? { expression: parts.join(" AND "), names, values } : undefined;
}

/**
 * One page of a job's history under a sort-key prefix (its log lines, its transitions), keeping
 * only the entries of one attempt and one level when given (a Query filter: the entries passed
 * over still count towards `limit`, as DynamoDB reads them).
 */
export async function jobHistoryPage(
  repo: JobRepository,
  id: string,
  prefix: string,
  options: {
    readonly limit: number;
    readonly startKey: StartKey;
    readonly attempt?: number | undefined;
    readonly level?: string | undefined;
  },
): Promise<Page<Record<string, unknown>>> {
  const parts: string[] = [];
  const values: Record<string, unknown> = {};
  const names: Record<string, string> = {};
  if (options.attempt !== undefined) {
    parts.push("#attempt = :attempt");
    names["#attempt"] = "attempt";
    values[":attempt"] = options.attempt;
  }
  if (options.level !== undefined) {
    parts.push("#level = :level");
    names["#level"] = "level";
    values[":level"] = options.level;
  }
  const filter = parts.length ? { expression: parts.join(" AND "), names, values } : undefined;
  return repo.queryJobPartition(id, prefix, { limit: options.limit, startKey: options.startKey, filter });
}

/** The job's last transition record (its highest version's), or undefined when it has none. */
export async function lastTransitionRecord(
  repo: JobRepository,
  id: string,
): Promise<Record<string, unknown> | undefined> {
  const page = await repo.queryJobPartition(id, TRANSITION_PREFIX, { limit: 1, backward: true });
  return page.items[0];
}
