import { encodeTime } from "ulid";
import { z } from "zod";
import { ForbiddenError, ValidationError } from "../core/errors";
import type { Attempt, Job, ListJobsQuery, LogLevel, LogLine, Transition } from "../core/job";
import type { Principal } from "../core/principal";
import { decodeCursor, encodeCursor } from "../store/cursor";
import { fromJobItem, type JobItem } from "../store/job-items";
import type { JobRepository } from "../store/job-repository";
import {
  ATTEMPT_PREFIX,
  DEPENDS_ON_PREFIX,
  dayPk,
  jobPk,
  LOG_PREFIX,
  ownerPk,
  ownerStatusPk,
  queuePk,
  TRANSITION_PREFIX,
} from "../store/keys";
import { JOB_INDEX } from "../store/tables";
import { type QueueContext, queuedPlace } from "./queue";
import { countUpTo } from "./queue-reader";
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

/** Index keys a list inspects per request at most, so a sparse filter cannot run unbounded. */
const MAX_KEYS_PER_REQUEST = 1000;
/** How many queued jobs ahead GET /jobs/{id} counts before it stops counting. */
const MAX_POSITION_COUNT = 1000;

export interface JobView extends Job {
  readonly queuePosition?: number | null;
  readonly estimatedStartAt?: string | null;
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
  const job = fromJobItem(item, result);
  if (item.status === "blocked")
    return { ...job, statusReason: await blockedReason(ctx, item, job.statusReason) };
  if (item.status !== "queued" || !item.queueSk) return job;
  if (isQueueContext(ctx)) {
    const place = await queuedPlace(ctx, item);
    if (place) {
      return {
        ...job,
        statusReason: withJobsAhead(job.statusReason, place.position - 1),
        queuePosition: place.position,
        estimatedStartAt: place.estimatedStartAt,
      };
    }
  }
  const ahead = await countUpTo(
    ctx.repo,
    {
      IndexName: JOB_INDEX.queue,
      KeyConditionExpression: "queuePk = :pk AND queueSk < :mine",
      ExpressionAttributeValues: { ":pk": queuePk(item.pool), ":mine": item.queueSk },
    },
    MAX_POSITION_COUNT,
  );
  return {
    ...job,
    queuePosition: ahead.count < MAX_POSITION_COUNT ? ahead.count + 1 : null,
    estimatedStartAt: null,
  };
}

/**
 * The stored "behind" reason leaves out how many jobs are ahead (it would change with every
 * admission, and reasons are written only when they change); read, it says.
 */
function withJobsAhead(reason: string, ahead: number): string {
  const stored = "waiting behind jobs ahead of it";
  if (!reason.startsWith(stored) || ahead < 1) return reason;
  return `waiting behind ${ahead} job${ahead === 1 ? "" : "s"} ahead of it${reason.slice(stored.length)}`;
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

/** An index's LastEvaluatedKey: the table's keys plus the index's, all strings. */
const indexKeySchema = z.record(z.string(), z.string());
type IndexKey = z.infer<typeof indexKeySchema>;

const listCursorSchema = z.strictObject({
  index: z.enum([JOB_INDEX.byOwner, JOB_INDEX.byOwnerStatus, JOB_INDEX.byDay]),
  /** The day being read, for the byDay index. */
  day: z
    .string()
    .regex(/^\d{4}-\d{2}-\d{2}$/)
    .refine((d) => !Number.isNaN(Date.parse(`${d}T00:00:00Z`)), "is not a day")
    .optional(),
  key: indexKeySchema.optional(),
});
type ListCursor = z.infer<typeof listCursorSchema>;

interface ListSource {
  readonly index: ListCursor["index"];
  readonly partitionAttribute: string;
  /** The partition to read for a day (byDay) or the only one. */
  partition(day?: string): string;
}

/**
 * GET /jobs: newest first. A principal's jobs come from their owner index (one status: the
 * owner+status index, so "my failed jobs" reads only failed jobs); an admin's list across
 * principals walks the day index backwards. Indexes hold keys only; the page's jobs are then
 * read in one BatchGetItem and the remaining filters applied.
 */
export async function listJobs(
  ctx: QueryContext,
  principal: Principal,
  query: ListJobsQuery,
): Promise<ListPage<Job>> {
  if (!principal.admin && query.owner !== undefined && query.owner !== principal.id) {
    throw new ForbiddenError("only an admin may list another principal's jobs");
  }
  const owner = principal.admin ? query.owner : principal.id;
  const statuses = query.status ? new Set(query.status) : null;
  const singleStatus = query.status?.length === 1 ? query.status[0] : undefined;

  const source: ListSource =
    owner !== undefined && singleStatus !== undefined
      ? {
          index: JOB_INDEX.byOwnerStatus,
          partitionAttribute: "ownerStatusPk",
          partition: () => ownerStatusPk(owner, singleStatus),
        }
      : owner !== undefined
        ? { index: JOB_INDEX.byOwner, partitionAttribute: "ownerPk", partition: () => ownerPk(owner) }
        : { index: JOB_INDEX.byDay, partitionAttribute: "dayPk", partition: (day) => dayPk(day ?? "") };

  const cursor = decodeCursor(query.cursor, listCursorSchema);
  if (cursor && cursor.index !== source.index) throw invalidCursor();
  const lowestDay = source.index === JOB_INDEX.byDay ? await lowestDayToRead(ctx, query) : undefined;
  let day =
    source.index === JOB_INDEX.byDay
      ? laterDayFirst(
          cursor?.day ?? query.createdBefore?.slice(0, 10),
          ctx.clock().toISOString().slice(0, 10),
        )
      : undefined;
  let startKey: IndexKey | undefined = cursor?.key;
  if (startKey) {
    const expected = new Set(["pk", "sk", "ownerSk", source.partitionAttribute]);
    const attributes = Object.keys(startKey);
    const exact = attributes.length === expected.size && attributes.every((a) => expected.has(a));
    if (!exact || startKey[source.partitionAttribute] !== source.partition(day)) throw invalidCursor();
  }

  const range = sortKeyRange(query);
  const items: Job[] = [];
  if (range.lo > range.hi) return { items, nextCursor: null };
  let inspected = 0;
  for (;;) {
    if (lowestDay !== undefined && (day === undefined || day < lowestDay)) return { items, nextCursor: null };
    const page = await ctx.repo.queryIndex({
      IndexName: source.index,
      KeyConditionExpression: `${source.partitionAttribute} = :pk AND ownerSk BETWEEN :lo AND :hi`,
      ExpressionAttributeValues: { ":pk": source.partition(day), ":lo": range.lo, ":hi": range.hi },
      ScanIndexForward: false,
      Limit: Math.min(200, query.limit - items.length + 10),
      ExclusiveStartKey: startKey,
    });
    const jobs = await ctx.repo.getJobItems(
      page.items.map((k) => String(k.ownerSk)),
      false,
    );
    for (const key of page.items) {
      inspected++;
      const item = jobs.get(String(key.ownerSk));
      const job = item && !item.staged ? fromJobItem(item) : undefined;
      if (job && matches(job, query, statuses)) items.push(job);
      if (items.length === query.limit) {
        // Resume right after the last key consumed, not after the page DynamoDB returned.
        return { items, nextCursor: encodeCursor({ index: source.index, day, key }) };
      }
    }
    startKey = page.lastKey as IndexKey | undefined;
    if (!startKey) {
      if (source.index !== JOB_INDEX.byDay || day === undefined) return { items, nextCursor: null };
      day = previousDay(day);
    }
    if (inspected >= MAX_KEYS_PER_REQUEST) {
      // A sparse filter: return what we have and let the client page on, as DynamoDB does.
      const next: ListCursor = startKey
        ? { index: source.index, day, key: startKey }
        : { index: source.index, day };
      return { items, nextCursor: encodeCursor(next) };
    }
  }
}

function invalidCursor(): ValidationError {
  return new ValidationError([{ path: "cursor", message: "does not belong to this list" }]);
}

function matches(item: Job, query: ListJobsQuery, statuses: ReadonlySet<string> | null): boolean {
  if (statuses && !statuses.has(item.status)) return false;
  if (query.type !== undefined && item.type !== query.type) return false;
  if (query.priority !== undefined && item.priority !== query.priority) return false;
  if (query.tag && item.tags[query.tag.key] !== query.tag.value) return false;
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

/** A LastEvaluatedKey of a job's own partition: exactly pk and sk. */
const partitionKeySchema = z.strictObject({ pk: z.string(), sk: z.string() });
type PartitionKey = z.infer<typeof partitionKeySchema>;
const pageCursorSchema = z.strictObject({ key: partitionKeySchema });

async function pageOf<T>(
  ctx: QueryContext,
  principal: Principal,
  id: string,
  prefix: string,
  options: { limit: number; cursor?: string | undefined },
  map: (item: Record<string, unknown>) => T,
): Promise<ListPage<T>> {
  await loadVisibleJob(ctx.repo, principal, id);
  const cursor = decodeCursor(options.cursor, pageCursorSchema);
  if (cursor && (cursor.key.pk !== jobPk(id) || !cursor.key.sk.startsWith(prefix))) throw invalidCursor();
  const page = await ctx.repo.queryJobPartition(id, prefix, { limit: options.limit, startKey: cursor?.key });
  return {
    items: page.items.map(map),
    nextCursor: page.lastKey ? encodeCursor({ key: page.lastKey }) : null,
  };
}

export function toTransition(item: Record<string, unknown>): Transition {
  return {
    from: (item.from ?? null) as Transition["from"],
    to: item.to as Transition["to"],
    at: String(item.at),
    reason: String(item.reason ?? ""),
    triggeredBy: (item.triggeredBy ?? null) as string | null,
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
  return pageOf(ctx, principal, id, ATTEMPT_PREFIX, options, toAttempt);
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

const streamPosition = z.union([z.literal("end"), partitionKeySchema, z.null()]);
const logsCursorSchema = z.strictObject({ task: streamPosition, lifecycle: streamPosition });
type StreamPosition = z.infer<typeof streamPosition>;

interface StreamRead {
  readonly entries: { line: LogLine; key: PartitionKey }[];
  readonly exhausted: boolean;
}

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
  await loadVisibleJob(ctx.repo, principal, id);
  const cursor = decodeCursor(options.cursor, logsCursorSchema) ?? { task: null, lifecycle: null };
  const filterParts: string[] = [];
  const values: Record<string, unknown> = {};
  const names: Record<string, string> = {};
  if (options.attempt !== undefined) {
    filterParts.push("#attempt = :attempt");
    names["#attempt"] = "attempt";
    values[":attempt"] = options.attempt;
  }
  if (options.level !== undefined) {
    filterParts.push("#level = :level");
    names["#level"] = "level";
    values[":level"] = options.level;
  }
  const filter = filterParts.length ? { expression: filterParts.join(" AND "), names, values } : undefined;

  const read = async (
    prefix: string,
    position: StreamPosition,
    toLine: (i: Record<string, unknown>) => LogLine,
  ) => {
    if (position === "end") return { entries: [], exhausted: true } satisfies StreamRead;
    if (position && (position.pk !== jobPk(id) || !position.sk.startsWith(prefix))) throw invalidCursor();
    const entries: StreamRead["entries"] = [];
    let startKey: PartitionKey | undefined = position ?? undefined;
    do {
      const page = await ctx.repo.queryJobPartition(id, prefix, { limit: options.limit, startKey, filter });
      for (const item of page.items)
        entries.push({ line: toLine(item), key: { pk: String(item.pk), sk: String(item.sk) } });
      startKey = page.lastKey ? { pk: String(page.lastKey.pk), sk: String(page.lastKey.sk) } : undefined;
    } while (startKey && entries.length < options.limit);
    return { entries, exhausted: startKey === undefined } satisfies StreamRead;
  };
  const [task, lifecycle] = await Promise.all([
    read(LOG_PREFIX, cursor.task, taskLine),
    read(TRANSITION_PREFIX, cursor.lifecycle, lifecycleLine),
  ]);

  const items: LogLine[] = [];
  let ti = 0;
  let li = 0;
  while (items.length < options.limit && (ti < task.entries.length || li < lifecycle.entries.length)) {
    const t = task.entries[ti];
    const l = lifecycle.entries[li];
    if (l && (!t || l.line.timestamp <= t.line.timestamp)) {
      items.push(l.line);
      li++;
    } else if (t) {
      items.push(t.line);
      ti++;
    }
  }
  const position = (s: StreamRead, consumed: number, previous: StreamPosition): StreamPosition => {
    if (consumed === s.entries.length && s.exhausted) return "end";
    return consumed > 0 ? (s.entries[consumed - 1]?.key ?? previous) : previous;
  };
  const next = {
    task: position(task, ti, cursor.task),
    lifecycle: position(lifecycle, li, cursor.lifecycle),
  };
  const done = next.task === "end" && next.lifecycle === "end";
  return { items, nextCursor: done ? null : encodeCursor(next) };
}
