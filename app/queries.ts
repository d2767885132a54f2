import { encodeTime } from "ulid";
import { z } from "zod";
import type { JobCost } from "../core/cost";
import { ForbiddenError } from "../core/errors";
import type { Attempt, Job, JobStatus, ListJobsQuery, LogLevel, LogLine, Transition } from "../core/job";
import type { Principal } from "../core/principal";
import { queuedReason } from "../core/reasons";
import { endedByCompletion } from "../store/attempts";
import {
  cursorDaySchema,
  cursorJobIdSchema,
  cursorSortKeySchema,
  decodeCursor,
  encodeCursor,
  invalidCursor,
} from "../store/cursor";
import { fromJobItem, type JobItem, queuedCreationRecord, transitionItem } from "../store/job-items";
import {
  countQueued,
  jobHistoryPage,
  type ListFilter,
  lastTransitionRecord,
  listIdsBetween,
  listUpdatedAfter,
} from "../store/job-queries";
import type { JobRepository } from "../store/job-repository";
import {
  ATTEMPT_PREFIX,
  DEPENDS_ON_PREFIX,
  dayPk,
  jobPk,
  LOG_PREFIX,
  ownerPk,
  ownerStatusPartitions,
  projectPk,
  schedulePk,
  TRANSITION_PREFIX,
  updatedDayPk,
  updatedMinute,
  versionOfTransitionSk,
} from "../store/keys";
import { JOB_INDEX } from "../store/tables";
import { isArrayParent, withArrayCounts } from "./arrays";
import { costOfItem, costSettings } from "./cost";
import { type QueueContext, queuedPlace } from "./queue";
import type { Clock } from "./runtime";
import { loadVisibleJob } from "./visibility";

export interface QueryContext {
  readonly repo: JobRepository;
  readonly clock: Clock;
}

export interface ListPage<T> {
  readonly items: T[];
  readonly nextCursor: string | null;
}

/** How many queued jobs ahead GET /jobs/{id} counts before it stops counting. */
const MAX_POSITION_COUNT = 1000;

export interface JobView extends Job {
  readonly queuePosition?: number | null;
  readonly estimatedStartAt?: string | null;
  /** What the job's life has cost so far (app/cost.ts, docs/cost.md); GET /jobs/{id} only. */
  readonly cost?: JobCost;
}

/** Unmet dependencies a blocked job's reason names, at most. */
const MAX_NAMED_DEPENDENCIES = 5;

/**
 * GET /jobs/{id}. A queued job also gets its position in the order the scheduler would admit
 * it (app/queue.ts: the policy's order, with an estimated start from recent run times) while it
 * is among the first QUEUE_LIST_LIMIT; further back, its place in its pool's stored queue order,
 * counted over the queue index up to MAX_POSITION_COUNT, and no estimate. A blocked job's reason
 * names the dependencies it still waits on, read from its own partition at this moment.
 */
export async function getJobView(
  ctx: QueryContext & Partial<QueueContext>,
  principal: Principal,
  id: string,
): Promise<JobView> {
  const { item, result } = await loadVisibleJob(ctx.repo, principal, id);
  const job: JobView = { ...fromJobItem(item, result), cost: costOfItem(item, costSettings(), ctx.clock()) };
  // An array's parent: its children's statuses counted (app/arrays.ts), its reason as stored;
  // its cost is its own (each child's is on the child).
  if (isArrayParent(item)) return { ...(await withArrayCounts(ctx, item, job)), cost: job.cost };
  if (item.status === "blocked")
    return { ...job, statusReason: await blockedReason(ctx, item, job.statusReason) };
  if (item.status !== "queued" || !item.queueSk) return job;
  if (isQueueContext(ctx)) {
    const place = await queuedPlace(ctx, item);
    if (place) {
      return {
        ...job,
        ...readReason(job, place.position - 1),
        queuePosition: place.position,
        estimatedStartAt: place.estimatedStartAt,
      };
    }
  }
  const ahead = await countQueued(ctx.repo, item.pool, MAX_POSITION_COUNT, item.queueSk);
  const counted = ahead.count < MAX_POSITION_COUNT;
  return {
    ...job,
    ...readReason(job, counted ? ahead.count : null),
    queuePosition: counted ? ahead.count + 1 : null,
    estimatedStartAt: null,
  };
}

/** A queued job's stored reason, read with the number of jobs ahead of it (core/reasons.ts). */
function readReason(job: Job, ahead: number | null): Pick<Job, "statusReason" | "reasonCode"> {
  const { code, message } = queuedReason({ code: job.reasonCode, message: job.statusReason }, ahead);
  return { statusReason: message, reasonCode: code };
}

function isQueueContext(ctx: QueryContext & Partial<QueueContext>): ctx is QueueContext {
  return (
    ctx.nodes !== undefined &&
    ctx.policies !== undefined &&
    ctx.usage !== undefined &&
    ctx.pools !== undefined
  );
}

/** "waiting for 2 of 3 dependencies: job_a (running), job_b (queued)". */
async function blockedReason(ctx: QueryContext, item: JobItem, stored: string): Promise<string> {
  const unmet: string[] = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await ctx.repo.queryJobPartition(item.id, DEPENDS_ON_PREFIX, { limit: 1000, startKey });
    for (const edge of page.items)
      if (edge.met !== true && typeof edge.parentId === "string") unmet.push(edge.parentId);
    startKey = page.lastKey;
  } while (startKey);
  if (unmet.length === 0) return stored;
  const named = unmet.slice(0, MAX_NAMED_DEPENDENCIES);
  const parents = await ctx.repo.getJobItems(named);
  const words = named.map((parentId) => {
    const status = parents.get(parentId)?.status;
    return status ? `${parentId} (${status})` : parentId;
  });
  const more = unmet.length > named.length ? `, and ${unmet.length - named.length} more` : "";
  const total = Math.max(unmet.length, item.dependsOn.length);
  return `waiting for ${unmet.length} of ${total} dependencies: ${words.join(", ")}${more}`;
}

const LIST_INDEXES = [
  JOB_INDEX.byOwner,
  JOB_INDEX.byOwnerStatus,
  JOB_INDEX.byDay,
  JOB_INDEX.bySchedule,
  JOB_INDEX.byProject,
] as const;
type ListIndex = (typeof LIST_INDEXES)[number];

/**
 * Where the next page of GET /jobs starts: which index the list reads (so a cursor of one list is
 * refused by another), the day the admin's walk has reached, and the last job id already passed.
 * Partitions and keys are rebuilt from the request; see store/cursor.ts.
 */
const listCursorSchema = z.strictObject({
  index: z.enum(LIST_INDEXES),
  day: cursorDaySchema.optional(),
  after: cursorJobIdSchema.optional(),
});
type ListCursor = z.infer<typeof listCursorSchema>;

/**
 * What one GET /jobs request reads at most, so its time is bounded at any list size. A filter the
 * index cannot answer by key (type, priority, tag) is a Query filter on the projected
 * attributes, applied by DynamoDB over small entries; once the budget is spent the page is
 * answered, maybe short, with a cursor to continue, as DynamoDB itself does with filters.
 */
export interface ListBudget {
  /** Index entries inspected (matching or not). */
  readonly inspected: number;
  /** Queries: the admin's walk costs one per day, empty or not. */
  readonly queries: number;
  /**
   * Job items read. Only a filter no index entry carries (status, on the admin's list across
   * owners) reads job items it then drops; this bounds that case.
   */
  readonly fetched: number;
  /**
   * Time spent reading, by the context's clock: no further query starts after it. DynamoDB reads
   * 2,000 small entries in a few tens of ms; DynamoDB Local on a busy machine can take seconds,
   * and a list page must stay far inside the API's timeout either way.
   */
  readonly millis: number;
}

export const LIST_BUDGET: ListBudget = { inspected: 2000, queries: 40, fetched: 300, millis: 300 };

/** DynamoDB's own page is at most 1 MB; a list index entry is ~150–300 bytes. */
const MAX_QUERY_LIMIT = 1000;
/** Job items read per BatchGetItem when most of them may be dropped (DynamoDB's maximum). */
const BATCH_GET_CHUNK = 100;

/** What one request has read so far, against its ListBudget. */
class ReadBudget {
  inspected = 0;
  queries = 0;
  fetched = 0;

  private readonly startedAt: number;

  constructor(
    readonly limits: ListBudget,
    private readonly clock: Clock,
  ) {
    this.startedAt = clock().getTime();
  }

  get spent(): boolean {
    return (
      this.inspected >= this.limits.inspected ||
      this.queries >= this.limits.queries ||
      this.fetched >= this.limits.fetched ||
      this.clock().getTime() - this.startedAt >= this.limits.millis
    );
  }

  get inspectable(): number {
    return Math.max(1, this.limits.inspected - this.inspected);
  }

  get fetchable(): number {
    return Math.max(0, this.limits.fetched - this.fetched);
  }
}

/** What the index entries are filtered on (LIST_PROJECTION's attributes); the exact check follows on the job item. */
function indexFilter(query: ListJobsQuery, owner?: string): ListFilter | undefined {
  const filter: ListFilter = { owner, type: query.type, priority: query.priority, tag: query.tag };
  return Object.values(filter).some((v) => v !== undefined) ? filter : undefined;
}

/**
 * GET /jobs: newest first. A principal's jobs come from their owner index; with a status filter,
 * from the owner+status index, one partition per status merged by job id (so "my failed jobs"
 * reads only failed jobs); an admin's list across principals walks the day index backwards.
 * type, priority and tag are filtered by DynamoDB on the attributes those indexes project, so
 * only matching jobs are read in full (one BatchGetItem per page) and checked exactly. A request
 * inspects a bounded number of index entries (ReadBudget): a sparse filter answers a short page
 * and a nextCursor, and following the cursors yields exactly the matching jobs.
 */
export async function listJobs(
  ctx: QueryContext,
  principal: Principal,
  query: ListJobsQuery,
  limits: ListBudget = LIST_BUDGET,
): Promise<ListPage<Job>> {
  if (!principal.admin && query.owner !== undefined && query.owner !== principal.id) {
    throw new ForbiddenError("only an admin may list another principal's jobs");
  }
  const owner = principal.admin ? query.owner : principal.id;
  const statuses = query.status ? [...new Set(query.status)] : undefined;
  if (query.updatedSince !== undefined)
    return listUpdatedSince(ctx, owner, statuses, query, query.updatedSince, limits);
  // A schedule's jobs come from its own index; whose they are is checked on each job (a user
  // naming another's schedule gets an empty list, as for any job it may not see).
  // A project's jobs likewise (issue 13): a user's list keeps their own, filtered in DynamoDB
  // on the owner the index projects.
  const index: ListIndex =
    query.scheduleId !== undefined
      ? JOB_INDEX.bySchedule
      : query.project !== undefined
        ? JOB_INDEX.byProject
        : owner === undefined
          ? JOB_INDEX.byDay
          : statuses
            ? JOB_INDEX.byOwnerStatus
            : JOB_INDEX.byOwner;
  const cursor = decodeCursor(query.cursor, listCursorSchema);
  if (cursor && (cursor.index !== index || (cursor.day !== undefined) !== (index === JOB_INDEX.byDay)))
    throw invalidCursor();

  const items: Job[] = [];
  const range = sortKeyRange(query);
  if (range.lo > range.hi) return { items, nextCursor: null };
  const partitions = (day: string | undefined): { attribute: string; values: string[] } =>
    query.scheduleId !== undefined
      ? { attribute: "schedulePk", values: [schedulePk(query.scheduleId)] }
      : query.project !== undefined
        ? { attribute: "projectPk", values: [projectPk(query.project)] }
        : owner === undefined
          ? { attribute: "dayPk", values: [dayPk(day ?? "")] }
          : statuses
            ? {
                attribute: "ownerStatusPk",
                values: [...new Set(statuses.flatMap((s) => ownerStatusPartitions(owner, s)))],
              }
            : { attribute: "ownerPk", values: [ownerPk(owner)] };
  const filter = indexFilter(query, index === JOB_INDEX.byProject ? owner : undefined);
  // Status is a key of byOwnerStatus, but the day index carries none: checked on the job item.
  // Dispatched jobs share byOwnerStatus's partition with running ones (store/keys.ts): a list of
  // dispatched jobs without running ones is checked the same way, reading wide rounds, since
  // those few are among many running. (Running alone reads as usual: the dispatched ones it
  // drops are few.)
  const checkedAfterRead =
    statuses !== undefined &&
    (index === JOB_INDEX.byDay ||
      index === JOB_INDEX.bySchedule ||
      index === JOB_INDEX.byProject ||
      (index === JOB_INDEX.byOwnerStatus &&
        statuses.includes("dispatched") &&
        !statuses.includes("running")));
  const statusSet = statuses ? new Set<string>(statuses) : null;

  const lowestDay = index === JOB_INDEX.byDay ? await lowestDayToRead(ctx, query) : undefined;
  let day =
    index === JOB_INDEX.byDay
      ? laterDayFirst(
          cursor?.day ?? query.createdBefore?.slice(0, 10),
          ctx.clock().toISOString().slice(0, 10),
        )
      : undefined;
  let after = cursor?.after;
  const budget = new ReadBudget(limits, ctx.clock);
  const page = (next: Omit<ListCursor, "index"> | null): ListPage<Job> => ({
    items,
    nextCursor: next ? encodeCursor({ index, ...next }) : null,
  });

  // A filter's matches may be dense or sparse: each round reads more entries than the last.
  let reach = 2;
  for (;;) {
    if (lowestDay !== undefined && (day === undefined || day < lowestDay)) return page(null);
    // Every request moves the cursor (the first round always runs), so paging always ends.
    if (budget.spent && budget.queries > 0) return page({ day, after });
    const hi = after !== undefined && before(after) < range.hi ? before(after) : range.hi;
    const need = query.limit - items.length;
    const round =
      range.lo <= hi
        ? await readRound(ctx, budget, {
            index,
            partitions: partitions(day),
            lo: range.lo,
            hi,
            filter,
            limit: checkedAfterRead ? budget.fetchable : filter ? Math.max(need * reach, 50) : need,
          })
        : { ids: [], watermark: undefined };
    reach *= 4;

    // Read the candidates' job items in order; the page may fill part-way through them.
    let next = 0;
    while (next < round.ids.length) {
      // Past the first chunk, so this request has moved the cursor.
      if (budget.spent && (next > 0 || budget.fetchable === 0)) return page({ day, after });
      const want = checkedAfterRead ? BATCH_GET_CHUNK : query.limit - items.length;
      const ids = round.ids.slice(next, next + Math.min(want, budget.fetchable));
      next += ids.length;
      budget.fetched += ids.length;
      const jobs = await ctx.repo.getJobItems(ids, false);
      for (const id of ids) {
        after = id;
        const item = jobs.get(id);
        const job = item && !item.staged ? fromJobItem(item) : undefined;
        if (job && matches(job, query, statusSet) && (owner === undefined || job.owner === owner))
          items.push(job);
        if (items.length === query.limit) return page({ day, after });
      }
    }

    if (round.watermark !== undefined) {
      after = round.watermark;
    } else {
      // These partitions are read to the range's end: the walk goes on to the day before.
      if (index !== JOB_INDEX.byDay || day === undefined) return page(null);
      day = previousDay(day);
      after = undefined;
      reach = 2;
    }
  }
}

const UPDATE_INDEXES = [JOB_INDEX.byOwnerUpdate, JOB_INDEX.byUpdateDay] as const;

/**
 * Where the next page of an updatedSince list starts: its index, the day reached, the last key
 * passed (`<time>#~` before any key of a day was passed).
 */
const updatedCursorSchema = z.strictObject({
  index: z.enum(UPDATE_INDEXES),
  day: cursorDaySchema.optional(),
  after: z
    .string()
    .regex(
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}#(job_[0-9A-HJKMNP-TV-Z]{26}(-\d{1,4})?)?$/,
      "is not a position in this list",
    ),
});

/**
 * GET /jobs?updatedSince=: the jobs whose last change (a status change, a priority change or
 * their submission) is after the time, **oldest change first** (by the minute of the change,
 * then by id: store/keys.ts#updatedSk), so a client that follows
 * nextCursor catches up to now and resumes its stream. A principal's from `byOwnerUpdate`, an
 * admin's across principals from `byUpdateDay`, walked from that day forward to today. Status,
 * type, priority and tag are filtered in DynamoDB on the projection; the job items of the page
 * are read and checked exactly, and createdAfter/createdBefore on them. A job changed again while
 * a client pages may show up twice (at its old and new place): a stream client keeps the
 * highest version it has seen of each job.
 */
async function listUpdatedSince(
  ctx: QueryContext,
  owner: string | undefined,
  statuses: readonly JobStatus[] | undefined,
  query: ListJobsQuery,
  since: string,
  limits: ListBudget,
): Promise<ListPage<Job>> {
  const index = owner === undefined ? JOB_INDEX.byUpdateDay : JOB_INDEX.byOwnerUpdate;
  const cursor = decodeCursor(query.cursor, updatedCursorSchema);
  if (cursor && (cursor.index !== index || (cursor.day !== undefined) !== (index === JOB_INDEX.byUpdateDay)))
    throw invalidCursor();
  // Every entry of the minute of `since` (the index keeps minutes: store/keys.ts#updatedSk);
  // the exact time is checked on the job items. "<minute>#" sorts before that minute's keys.
  const floor = `${updatedMinute(since)}#`;
  let after = cursor && cursor.after > floor ? cursor.after : floor;
  const today = ctx.clock().toISOString().slice(0, 10);
  // Never before the day of `since` or of the last key passed, whatever a cursor says.
  let day =
    index === JOB_INDEX.byUpdateDay
      ? [cursor?.day ?? "", since.slice(0, 10), after.slice(0, 10)].sort().at(-1)
      : undefined;

  // Status is checked on the job items: the index does not project it (store/tables.ts).
  const filter = indexFilter(query);
  const statusSet = statuses ? new Set<string>(statuses) : null;
  const budget = new ReadBudget(limits, ctx.clock);
  const items: Job[] = [];
  const page = (next: boolean): ListPage<Job> => ({
    items,
    nextCursor: next ? encodeCursor({ index, ...(day !== undefined ? { day } : {}), after }) : null,
  });

  for (;;) {
    if (day !== undefined && day > today) return page(false);
    if (budget.spent && budget.queries > 0) return page(true);
    const need = query.limit - items.length;
    const limit = Math.max(
      1,
      Math.min(MAX_QUERY_LIMIT, filter ? Math.max(need * 4, 50) : need, budget.inspectable),
    );
    budget.queries++;
    budget.inspected += limit;
    const result = await listUpdatedAfter(ctx.repo, {
      index,
      partition:
        day === undefined
          ? { attribute: "ownerPk", value: ownerPk(owner ?? "") }
          : { attribute: "updatedDayPk", value: updatedDayPk(day) },
      after,
      filter,
      limit,
    });
    const keys = result.items.map((entry) => String(entry.updatedSk));
    for (let next = 0; next < keys.length; ) {
      if (budget.spent && budget.fetchable === 0) return page(true);
      const chunk = keys.slice(
        next,
        next + Math.min(query.limit - items.length, Math.max(1, budget.fetchable)),
      );
      next += chunk.length;
      budget.fetched += chunk.length;
      const jobs = await ctx.repo.getJobItems(chunk.map(jobIdOfUpdatedSk), false);
      for (const key of chunk) {
        after = key;
        const item = jobs.get(jobIdOfUpdatedSk(key));
        const job = item && !item.staged ? fromJobItem(item) : undefined;
        if (job && job.updatedAt > since && matches(job, query, statusSet) && createdWithin(job, query))
          items.push(job);
        if (items.length === query.limit) return page(true);
      }
    }
    if (result.lastKey) {
      after = String(result.lastKey.updatedSk);
    } else if (day !== undefined && day < today) {
      day = nextDay(day);
      after = floor;
    } else {
      return page(false);
    }
  }
}

function jobIdOfUpdatedSk(key: string): string {
  return key.slice(key.indexOf("#") + 1);
}

function createdWithin(job: Job, query: ListJobsQuery): boolean {
  if (query.createdAfter !== undefined && job.createdAt < query.createdAfter) return false;
  if (query.createdBefore !== undefined && job.createdAt >= query.createdBefore) return false;
  return true;
}

function nextDay(day: string): string {
  const d = new Date(`${day}T00:00:00.000Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

interface Round {
  /** Matching job ids, newest first, every one of them newer than or at the watermark. */
  readonly ids: string[];
  /** Where the next round starts (exclusive), or undefined when every partition is read out. */
  readonly watermark: string | undefined;
}

/**
 * One Query per partition (in parallel), each from `hi` down to `lo`, filtered in DynamoDB.
 * Partitions read different amounts, so only ids at or above the highest point where some
 * partition stopped are known to be complete: those are returned, and the next round starts
 * below that watermark (re-reading what other partitions read past it: at most one page each).
 */
async function readRound(
  ctx: QueryContext,
  budget: ReadBudget,
  read: {
    index: ListIndex;
    partitions: { attribute: string; values: string[] };
    lo: string;
    hi: string;
    filter: ListFilter | undefined;
    limit: number;
  },
): Promise<Round> {
  const count = read.partitions.values.length;
  const limit = Math.max(1, Math.min(MAX_QUERY_LIMIT, read.limit, Math.floor(budget.inspectable / count)));
  const pages = await Promise.all(
    read.partitions.values.map((partition) => {
      budget.queries++;
      budget.inspected += limit;
      return listIdsBetween(ctx.repo, {
        index: read.index,
        partition: { attribute: read.partitions.attribute, value: partition },
        lo: read.lo,
        hi: read.hi,
        filter: read.filter,
        limit,
      });
    }),
  );
  let watermark: string | undefined;
  for (const p of pages) {
    const stoppedAt = p.lastKey ? String(p.lastKey.ownerSk) : undefined;
    if (stoppedAt !== undefined && (watermark === undefined || stoppedAt > watermark)) watermark = stoppedAt;
  }
  // A job can sit in two status partitions for a moment (the index is eventually consistent).
  const ids = new Set<string>();
  for (const p of pages)
    for (const entry of p.items) {
      const id = String(entry.ownerSk);
      if (watermark === undefined || id >= watermark) ids.add(id);
    }
  return { ids: [...ids].sort().reverse(), watermark };
}

/**
 * The greatest id-length key below `id`: job ids all have the same length, so every id smaller
 * than this one sorts at or below its last character decremented. Makes "after the cursor's id"
 * an ordinary sort-key bound, with no ExclusiveStartKey to trust.
 */
function before(id: string): string {
  return `${id.slice(0, -1)}${String.fromCharCode(id.charCodeAt(id.length - 1) - 1)}`;
}

function matches(item: Job, query: ListJobsQuery, statuses: ReadonlySet<string> | null): boolean {
  if (statuses && !statuses.has(item.status)) return false;
  if (query.type !== undefined && item.type !== query.type) return false;
  if (query.priority !== undefined && item.priority !== query.priority) return false;
  if (query.tag && item.tags[query.tag.key] !== query.tag.value) return false;
  if (query.project !== undefined && item.project !== query.project) return false;
  return true;
}

/** Job ids are `job_` + ULID, so a creation-time range is a sort-key range. */
function sortKeyRange(query: ListJobsQuery): { lo: string; hi: string } {
  // ULIDs encode 0 .. 2^48-1 ms since 1970; a bound outside that range is clamped into it.
  const clamp = (ms: number) => Math.min(Math.max(ms, 0), 2 ** 48 - 1);
  const lo = query.createdAfter ? `job_${encodeTime(clamp(Date.parse(query.createdAfter)))}` : "job_";
  if (query.createdBefore && Date.parse(query.createdBefore) <= 0) return { lo: "job_~", hi: "job_" };
  const hi = query.createdBefore ? `job_${encodeTime(clamp(Date.parse(query.createdBefore) - 1))}~` : "job_~";
  return { lo, hi };
}

async function lowestDayToRead(ctx: QueryContext, query: ListJobsQuery): Promise<string> {
  const first = (await ctx.repo.getFirstDay()) ?? ctx.clock().toISOString().slice(0, 10);
  const after = query.createdAfter?.slice(0, 10);
  return after && after > first ? after : first;
}

/** Where the walk back starts: no job was created after today, whatever a query or cursor says. */
function laterDayFirst(requested: string | undefined, today: string): string {
  return requested !== undefined && requested < today ? requested : today;
}

function previousDay(day: string): string {
  const d = new Date(`${day}T00:00:00.000Z`);
  d.setUTCDate(d.getUTCDate() - 1);
  return d.toISOString().slice(0, 10);
}

/**
 * Sort keys within a job's partition, exactly as their writers make them (store/keys.ts): a
 * cursor holds only the last one read, and the partition key is the job the path names.
 */
const SORT_KEYS = {
  attempt: cursorSortKeySchema(/^ATT#\d{4,10}$/),
  transition: cursorSortKeySchema(/^TRN#\d{10,16}$/),
  log: cursorSortKeySchema(/^LOG#[0-9A-HJKMNP-TV-Z]{26}$/),
} as const;

/** A key of the job's own partition, built by the server. */
type PartitionKey = Record<"pk" | "sk", string>;

const pageCursorSchemas = {
  [ATTEMPT_PREFIX]: z.strictObject({ after: SORT_KEYS.attempt }),
  [TRANSITION_PREFIX]: z.strictObject({ after: SORT_KEYS.transition }),
};

async function pageOf<T>(
  ctx: QueryContext,
  principal: Principal,
  id: string,
  prefix: typeof ATTEMPT_PREFIX | typeof TRANSITION_PREFIX,
  options: { limit: number; cursor?: string | undefined },
  map: (item: Record<string, unknown>, job: JobItem) => T,
): Promise<ListPage<T>> {
  const cursor = decodeCursor(options.cursor, pageCursorSchemas[prefix]);
  const { item: job } = await loadVisibleJob(ctx.repo, principal, id);
  const startKey = cursor ? { pk: jobPk(id), sk: cursor.after } : undefined;
  const page = await ctx.repo.queryJobPartition(id, prefix, { limit: options.limit, startKey });
  const items = page.items;
  let lastKey = page.lastKey;
  const creation = prefix === TRANSITION_PREFIX && !cursor ? unrecordedCreation(ctx, job, items[0]) : null;
  if (creation) {
    // At the start of the history: a job born queued has its creation derived, not recorded.
    items.unshift(creation);
    if (items.length > options.limit) {
      items.pop();
      lastKey = { sk: items.at(-1)?.sk };
    }
  }
  if (prefix === TRANSITION_PREFIX && !lastKey) {
    // At the end of the history: the worker's completion is not recorded, only derived.
    const derived = await unrecordedCompletion(ctx.repo, job, items.at(-1));
    if (derived && items.length < options.limit) items.push(derived);
    else if (derived) lastKey = { sk: items.at(-1)?.sk };
  }
  return {
    items: items.map((item) => map(item, job)),
    nextCursor: lastKey ? encodeCursor({ after: String(lastKey.sk) }) : null,
  };
}

/**
 * The creation record of a job born `queued`, where none is stored: the submission leaves it
 * unwritten (store/job-items.ts#queuedCreationRecord), since the job holds all it says. Its
 * absence means that only while it could not have expired: a job's history outlives it by
 * `historyDays` at least, so a job older than that which shows none may have lost it to the
 * history's TTL, and for all we know it was born otherwise (blocked, scheduled). `first` is the
 * first record read from the history's start (unfiltered, or filtered to info lines: where a
 * stored creation record would be).
 */
function unrecordedCreation(
  ctx: QueryContext,
  job: JobItem,
  first: Record<string, unknown> | undefined,
): Record<string, unknown> | null {
  if (first !== undefined && versionOfTransitionSk(String(first.sk)) === 1) return null;
  const expiresAt = ctx.repo.historyExpiresAt(job.createdAt, true);
  if (ctx.clock().getTime() >= expiresAt * 1000) return null;
  return queuedCreationRecord(job);
}

/**
 * The transition into `completed`, as a record would say, where none is stored: the worker's
 * completion writes no transition record (docs/lifecycle.md, "The worker's completion"), since
 * everything one would say is on the completed job (its reason, its attempt, the change's time:
 * nothing changes a completed job's `updatedAt` after) but the status it left, which is the last
 * record's: `running`, unless the worker that started it died before putting that one. A
 * completion recorded before this, or by the previous lifecycle's Complete step, shows as
 * stored. The admission's and the start's records are put after the job, and a crash can lose
 * them, but later rows follow them and their records say more than the job does, so only the
 * end, which nothing follows, is derived. `last` is the history's last record where the caller
 * has read it; otherwise it is read (one Query of one item).
 */
async function unrecordedCompletion(
  repo: JobRepository,
  job: JobItem,
  last?: Record<string, unknown>,
): Promise<Record<string, unknown> | null> {
  if (job.status !== "completed") return null;
  const record = last ?? (await lastTransitionRecord(repo, job.id));
  if (!record || record.to === job.status) return null;
  if (versionOfTransitionSk(String(record.sk)) >= job.version) return null;
  return transitionItem(
    job.id,
    job.version,
    {
      from: record.to as JobStatus,
      to: job.status,
      at: job.updatedAt,
      reason: job.statusReason,
      triggeredBy: null,
      attempt: job.attempts,
    },
    0,
  );
}

export function toTransition(item: Record<string, unknown>): Transition {
  return {
    from: (item.from ?? null) as Transition["from"],
    to: item.to as Transition["to"],
    at: String(item.at),
    reason: String(item.reason ?? ""),
    triggeredBy: (item.triggeredBy ?? null) as string | null,
    fromPriority: typeof item.fromPriority === "number" ? item.fromPriority : null,
    toPriority: typeof item.toPriority === "number" ? item.toPriority : null,
  };
}

export function toAttempt(item: Record<string, unknown>): Attempt {
  return {
    attempt: Number(item.attempt),
    status: item.status as Attempt["status"],
    startedAt: typeof item.startedAt === "string" ? item.startedAt : null,
    finishedAt: (item.finishedAt ?? null) as string | null,
    durationMs: (item.durationMs ?? null) as number | null,
    workerId: (item.workerId ?? null) as string | null,
    nodeId: (item.nodeId ?? null) as string | null,
    pool: (item.pool ?? null) as string | null,
    error: (item.error ?? null) as Attempt["error"],
  };
}

export function listTransitions(
  ctx: QueryContext,
  principal: Principal,
  id: string,
  options: { limit: number; cursor?: string | undefined },
): Promise<ListPage<Transition>> {
  return pageOf(ctx, principal, id, TRANSITION_PREFIX, options, toTransition);
}

export function listAttempts(
  ctx: QueryContext,
  principal: Principal,
  id: string,
  options: { limit: number; cursor?: string | undefined },
): Promise<ListPage<Attempt>> {
  return pageOf(ctx, principal, id, ATTEMPT_PREFIX, options, attemptOf);
}

/** An attempt as its record says, or as the completion that ended it says (store/attempts.ts#endedByCompletion). */
function attemptOf(item: Record<string, unknown>, job: JobItem): Attempt {
  return toAttempt(endedByCompletion(item, job));
}

/** A transition shown as the lifecycle line GET /logs includes. */
function lifecycleLine(item: Record<string, unknown>): LogLine {
  const t = toTransition(item);
  const attempt = Number(item.attempt ?? 0);
  return {
    timestamp: t.at,
    level: (item.level ?? "info") as LogLevel,
    message: `${t.from ?? "submitted"} → ${t.to}: ${t.reason}`,
    attempt: attempt > 0 ? attempt : null,
  };
}

function taskLine(item: Record<string, unknown>): LogLine {
  return {
    timestamp: String(item.timestamp),
    level: item.level as LogLevel,
    message: String(item.message ?? ""),
    attempt: (item.attempt ?? null) as number | null,
  };
}

/**
 * The lifecycle lines read from the start, after the creation line where no record of it is
 * stored (unrecordedCreation), when the filters let it through: an info line of no attempt.
 */
function withCreationLine(
  ctx: QueryContext,
  job: JobItem,
  read: StreamRead,
  position: StreamPosition,
  filters: LogFilters,
): StreamRead {
  if (position !== null) return read;
  // Unfiltered or filtered to info lines, a stored creation record is the first line read; under
  // any other filter the derived line (info, of no attempt) is not shown anyway.
  const creation = unrecordedCreation(ctx, job, read.entries[0]?.record);
  if (!creation) return read;
  const line = lifecycleLine(creation);
  if (!passes(line, filters)) return read;
  return { ...read, entries: [{ line, sk: String(creation.sk), record: creation }, ...read.entries] };
}

/** GET /logs's filters: one attempt's lines, one level's. */
type LogFilters = { readonly attempt?: number | undefined; readonly level?: LogLevel | undefined };

/** Whether a line is one the filters keep, as the Query's filter keeps stored lines. */
function passes(line: LogLine, filters: LogFilters): boolean {
  return (
    (filters.attempt === undefined || line.attempt === filters.attempt) &&
    (filters.level === undefined || line.level === filters.level)
  );
}

/**
 * The lifecycle lines read to the end, and the line into `completed` where no record of it is
 * stored (unrecordedCompletion), when the filters let it through: GET /logs of a completed job
 * ends with its `running → completed` line, as GET /transitions does.
 */
async function withUnrecordedLine(
  repo: JobRepository,
  job: JobItem,
  read: StreamRead,
  position: StreamPosition,
  filters: LogFilters,
): Promise<StreamRead> {
  if (!read.exhausted || position === "end") return read;
  // Unfiltered, the last line read is the last record; filtered, it need not be.
  const last = filters.attempt === undefined && filters.level === undefined ? read.entries.at(-1) : undefined;
  const derived = await unrecordedCompletion(repo, job, last?.record);
  if (!derived) return read;
  const line = lifecycleLine(derived);
  const sk = String(derived.sk);
  if (position !== null && position >= sk) return read;
  if (!passes(line, filters)) return read;
  return { ...read, entries: [...read.entries, { line, sk }] };
}

/** Each stream's position: not started (null), read out ("end"), or the last sort key read. */
const logsCursorSchema = z.strictObject({
  task: z.union([z.literal("end"), SORT_KEYS.log, z.null()]),
  lifecycle: z.union([z.literal("end"), SORT_KEYS.transition, z.null()]),
});
type StreamPosition = string | null;

interface StreamRead {
  /** `record`: the stored item each line was read from. */
  readonly entries: { line: LogLine; sk: string; record?: Record<string, unknown> }[];
  /** The last sort key the reads evaluated (matching or not), when the stream is not read out. */
  readonly readTo: string | null;
  readonly exhausted: boolean;
}

/**
 * Queries per stream one GET /logs request makes at most: with a sparse attempt or level filter
 * over a long log, the page ends short and the cursor continues where the reads stopped.
 */
const MAX_LOG_QUERIES_PER_STREAM = 10;

/**
 * GET /jobs/{id}/logs: the lines the task wrote and the lifecycle lines (its transitions), in
 * time order. The two live under different sort-key prefixes, so each page merges two ordered
 * reads and the cursor remembers where each stopped.
 */
export async function listLogs(
  ctx: QueryContext,
  principal: Principal,
  id: string,
  options: {
    limit: number;
    cursor?: string | undefined;
    attempt?: number | undefined;
    level?: LogLevel | undefined;
  },
): Promise<ListPage<LogLine>> {
  const cursor = decodeCursor(options.cursor, logsCursorSchema) ?? { task: null, lifecycle: null };
  const { item: job } = await loadVisibleJob(ctx.repo, principal, id);

  const read = async (
    prefix: string,
    position: StreamPosition,
    toLine: (i: Record<string, unknown>) => LogLine,
  ): Promise<StreamRead> => {
    if (position === "end") return { entries: [], readTo: null, exhausted: true };
    const entries: StreamRead["entries"] = [];
    // Rebuilt from the path's job id: the cursor supplies only the sort key.
    let startKey: PartitionKey | undefined = position === null ? undefined : { pk: jobPk(id), sk: position };
    let queries = 0;
    do {
      const page = await jobHistoryPage(ctx.repo, id, prefix, {
        limit: options.limit,
        startKey,
        attempt: options.attempt,
        level: options.level,
      });
      queries++;
      for (const item of page.items) entries.push({ line: toLine(item), sk: String(item.sk), record: item });
      startKey = page.lastKey ? { pk: jobPk(id), sk: String(page.lastKey.sk) } : undefined;
    } while (startKey && entries.length < options.limit && queries < MAX_LOG_QUERIES_PER_STREAM);
    return { entries, readTo: startKey?.sk ?? null, exhausted: startKey === undefined };
  };
  const [task, recorded] = await Promise.all([
    read(LOG_PREFIX, cursor.task, taskLine),
    read(TRANSITION_PREFIX, cursor.lifecycle, lifecycleLine),
  ]);
  const lifecycle = await withUnrecordedLine(
    ctx.repo,
    job,
    withCreationLine(ctx, job, recorded, cursor.lifecycle, options),
    cursor.lifecycle,
    options,
  );

  const items: LogLine[] = [];
  let ti = 0;
  let li = 0;
  while (items.length < options.limit) {
    const t = task.entries[ti];
    const l = lifecycle.entries[li];
    // A stream read only part way may hold earlier lines than the other's next: stop there.
    if ((!t && !task.exhausted) || (!l && !lifecycle.exhausted) || (!t && !l)) break;
    if (l && (!t || l.line.timestamp <= t.line.timestamp)) {
      items.push(l.line);
      li++;
    } else if (t) {
      items.push(t.line);
      ti++;
    }
  }
  const position = (s: StreamRead, consumed: number, previous: StreamPosition): StreamPosition => {
    if (consumed === s.entries.length) return s.exhausted ? "end" : (s.readTo ?? previous);
    return consumed > 0 ? (s.entries[consumed - 1]?.sk ?? previous) : previous;
  };
  const next = {
    task: position(task, ti, cursor.task),
    lifecycle: position(lifecycle, li, cursor.lifecycle),
  };
  const done = next.task === "end" && next.lifecycle === "end";
  return { items, nextCursor: done ? null : encodeCursor(next) };
}
