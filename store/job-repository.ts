import { TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  BatchExecuteStatementCommand,
  BatchGetCommand,
  BatchWriteCommand,
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  type QueryCommandInput,
  TransactWriteCommand,
  type TransactWriteCommandInput,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { parseArrayChildId } from "../core/arrays";
import { forEachConcurrent } from "../core/concurrency";
import type { ApplicableStatus } from "../core/dependencies";
import { ConcurrentUpdateError } from "../core/errors";
import { type JobStatus, TERMINAL_STATUSES } from "../core/job";
import type { ReasonCode } from "../core/reasons";
import { DEFAULT_RETENTION, historyExpiresAt, jobExpiresAt, type Retention } from "../core/retention";
import { sendAtMostOnce } from "./at-most-once";
import { type StoredResult, storeResultItem } from "./attempts";
import { CONDITION_FAILED, cancellationCodes } from "./cancellations";
import {
  indexAttributes,
  indexAttributesToRemove,
  type JobItem,
  storedJobItem,
  storedWhenSet,
  transitionItem,
  withStoredDefaults,
} from "./job-items";
import {
  ATTEMPT_PREFIX,
  activePk,
  DEPENDENT_PREFIX,
  dependentSk,
  dependsOnSk,
  FIRST_DAY_SK,
  JOB_SK,
  jobPk,
  LOG_PREFIX,
  META_PK,
  RESULT_SK,
  TRANSITION_PREFIX,
} from "./keys";
import { JOB_INDEX } from "./tables";

export type TransactItem = NonNullable<TransactWriteCommandInput["TransactItems"]>[number];
type Key = Record<string, unknown>;

/** DynamoDB's per-transaction item limit. */
export const MAX_TRANSACTION_ITEMS = 100;
const BATCH_GET_LIMIT = 100;
/** BatchGetItem requests in flight per call: 1,000 keys in one round trip, no burst beyond. */
const BATCH_GET_CONCURRENCY = 10;
const BATCH_WRITE_LIMIT = 25;
/**
 * BatchWriteItem requests in flight per call: a submit's 2,000 dependency edges are 80 requests,
 * written in ten rounds instead of twenty; unprocessed items are retried with backoff.
 */
const BATCH_WRITE_CONCURRENCY = 8;

export interface StoredJob {
  readonly item: JobItem;
  readonly result: unknown;
}

export interface StatusChange {
  readonly to: JobStatus;
  readonly reason: string;
  /**
   * The transition record's reason when it says more than the job's statusReason (the admission:
   * why that node); the job item, rewritten by every later change, carries the short one.
   */
  readonly recordReason?: string;
  /** The reason's stable code (core/reasons.ts); null when the status needs none. */
  readonly reasonCode?: ReasonCode | null;
  readonly triggeredBy: string | null;
  /** Other attributes the same write sets (e.g. finishedAt, pausedFrom). */
  readonly set?: Readonly<Record<string, unknown>>;
  readonly remove?: readonly string[];
}

/**
 * The change to the status the dependency rule says applies now (core's applicableStatus): a job
 * that becomes queued joins the queue's age order at `at`.
 */
export function applicableChange(
  applies: ApplicableStatus,
  at: string,
  triggeredBy: string | null,
): StatusChange {
  return {
    to: applies.status,
    reason: applies.reason,
    reasonCode: applies.code,
    triggeredBy,
    set: applies.status === "queued" ? { queuedAt: at } : {},
  };
}

/**
 * Whether the job as read is exactly what a change made of it (version, status and time): that
 * change landed, on a try whose answer was lost, when the SDK's retry of it was then refused.
 */
function isChange(found: JobItem | undefined, next: JobItem): boolean {
  return (
    found?.version === next.version && found.status === next.status && found.updatedAt === next.updatedAt
  );
}

export interface Page<T> {
  readonly items: T[];
  readonly lastKey: Key | undefined;
  /** Items matched (after any filter); the only result of a `Select: "COUNT"` query. */
  readonly count: number;
}

/**
 * The jobs table: every read and conditional write the API makes. Each status change is one
 * transaction of a conditional update (expected status and version) and the transition's put,
 * so the history can never disagree with the job.
 */
export class JobRepository {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    readonly tableName: string,
    /** How long ended jobs and their history are kept (docs/data-model.md#retention). */
    readonly retention: Retention = DEFAULT_RETENTION,
  ) {}

  /**
   * The `expiresAt` of a history item (transition, log, attempt, result) written at `at`; exact
   * (`at` + retention) when the write ends the job, later by a margin while it goes on.
   */
  historyExpiresAt(at: string, endsJob: boolean): number {
    return historyExpiresAt(this.retention, at, endsJob);
  }

  /** The job and its result in one strongly consistent Query; staged jobs do not exist yet. */
  async getJob(id: string): Promise<StoredJob | null> {
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: "pk = :pk AND begins_with(sk, :job)",
        ExpressionAttributeValues: { ":pk": jobPk(id), ":job": JOB_SK },
        ConsistentRead: true,
      }),
    );
    const items = out.Items ?? [];
    const stored = items.find((i) => i.sk === JOB_SK);
    const job = stored ? withStoredDefaults(stored as JobItem) : undefined;
    if (!job || job.staged) return null;
    // A result is put just before the completion that may then be refused (store/attempts.ts
    // storeResultItem): it is the job's only once the job is completed.
    const result = job.status === "completed" ? items.find((i) => i.sk === RESULT_SK) : undefined;
    return { item: job, result: result ? storedResult(result) : null };
  }

  /**
   * Puts an attempt's result (store/attempts.ts storeResultItem) unless one is stored already:
   * `stored`, or `kept` when this attempt's own result is there (an earlier try of this call, or
   * a replay of a completion), or `later` when a later attempt's is, so this attempt's is not the
   * job's. Only a refused put reads the result back.
   */
  async putResult(jobId: string, result: StoredResult): Promise<"stored" | "kept" | "later"> {
    const put = storeResultItem(this.tableName, jobId, result).Put;
    if (!put) throw new Error("storeResultItem is a Put");
    if (await this.ifConditionHolds(() => this.db.send(new PutCommand(put)))) return "stored";
    const there = await this.getItem({ pk: jobPk(jobId), sk: RESULT_SK });
    return there?.attempt === result.attempt ? "kept" : "later";
  }

  /** Takes back the result `putResult` stored for this attempt, when its completion was refused. */
  async deleteResult(jobId: string, attempt: number): Promise<void> {
    await this.deleteIf({ pk: jobPk(jobId), sk: RESULT_SK }, "#attempt = :attempt", {
      names: { "#attempt": "attempt" },
      values: { ":attempt": attempt },
    });
  }

  /**
   * The job items of many ids (missing ids are absent from the map), staged ones included. Keys go
   * 100 to a BatchGetItem, several requests in flight: a submit with 1,000 dependencies reads its
   * parents in about one round trip, not ten.
   */
  async getJobItems(ids: readonly string[], consistent = true): Promise<Map<string, JobItem>> {
    const found = new Map<string, JobItem>();
    const unique = [...new Set(ids)];
    const chunks: Key[][] = [];
    for (let i = 0; i < unique.length; i += BATCH_GET_LIMIT) {
      chunks.push(unique.slice(i, i + BATCH_GET_LIMIT).map((id) => ({ pk: jobPk(id), sk: JOB_SK })));
    }
    await forEachConcurrent(chunks, BATCH_GET_CONCURRENCY, async (first) => {
      let keys = first;
      // UnprocessedKeys come back under throttling; retry them with a short backoff.
      for (let round = 0; keys.length > 0; round++) {
        const out = await this.db.send(
          new BatchGetCommand({
            RequestItems: { [this.tableName]: { Keys: keys, ConsistentRead: consistent } },
          }),
        );
        for (const item of out.Responses?.[this.tableName] ?? []) {
          const job = withStoredDefaults(item as JobItem);
          found.set(job.id, job);
        }
        keys = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Key[];
        if (keys.length > 0) await backoff(round);
      }
    });
    return found;
  }

  /** One all-or-nothing write; a failed condition becomes ConcurrentUpdateError. */
  async transact(items: readonly TransactItem[]): Promise<void> {
    try {
      await this.db.send(new TransactWriteCommand({ TransactItems: items.map(storedPart) }));
    } catch (error) {
      if (error instanceof TransactionCanceledException) {
        const codes = (error.CancellationReasons ?? []).map((r) => r.Code ?? "None");
        throw new ConcurrentUpdateError(
          `write lost a race (${codes.join(", ")})`,
          { reasons: codes },
          { cause: error },
        );
      }
      throw error;
    }
  }

  /**
   * A status change that touches the job alone, written without a transaction: the job's
   * conditional UpdateItem first, then — once it landed — its history records (the transition,
   * an attempt record) side by side, each a Put only where absent or a conditional Update (an
   * attempt record's end, store/capacity.ts endAttemptItem). DynamoDB bills every write in a
   * transaction twice, and each index entry a status change moves with it, so this costs about
   * half (docs/data-model.md). A crash between the two can lose a record, never block a later
   * change: a record is keyed by the version or attempt it belongs to, and a later write that
   * finds it missing writes its own. `changed`: the job is not as read; nothing was written.
   * `ok` with `recordsUnwritten`: the change landed but a record could not be written (throttled
   * past the client's retries); the change stands, and the caller goes on with it.
   *
   * `items` is statusChangeItems' output (the job's Update and its transition's Put) and `records`
   * more history records; any other kind of item, or a second Update in `items`, is refused.
   * `alongside`, once the change landed, runs side by side with the records (the worker's
   * completion gives the job's capacity back there, not after them).
   */
  async changeAlone(
    items: readonly TransactItem[],
    records: readonly TransactItem[] = [],
    alongside: () => Promise<void> = async () => {},
  ): Promise<
    { readonly outcome: "ok"; readonly recordsUnwritten?: unknown } | { readonly outcome: "changed" }
  > {
    const updates = items.filter((item) => item.Update);
    const history = [...items.filter((item) => item.Put), ...records];
    if (
      updates.length !== 1 ||
      updates.length + history.length !== items.length + records.length ||
      history.some((item) => !item.Put && !item.Update)
    ) {
      throw new Error("changeAlone writes one job Update and history records, nothing else");
    }
    const update = updates[0]?.Update;
    if (!update) throw new Error("changeAlone needs the job's Update");
    if (!(await this.ifConditionHolds(() => this.db.send(new UpdateCommand(update))))) {
      return { outcome: "changed" };
    }
    const [written] = await Promise.allSettled([this.writeRecords(history), alongside()]);
    return written.status === "rejected"
      ? { outcome: "ok", recordsUnwritten: written.reason }
      : { outcome: "ok" };
  }

  /**
   * History records written side by side, each only where its condition holds: a Put only where
   * absent (one already there is this very record from an earlier try, or an attempt record its
   * end wrote first), an Update only where the record is still as it expects (an attempt's end:
   * absent or running).
   */
  private async writeRecords(records: readonly TransactItem[]): Promise<void> {
    await Promise.all(
      records.map(async (record) => {
        if (record.Put) {
          const put = record.Put;
          await this.ifConditionHolds(() => this.db.send(new PutCommand(put)));
        } else if (record.Update) {
          const update = record.Update;
          await this.ifConditionHolds(() => this.db.send(new UpdateCommand(update)));
        }
      }),
    );
  }

  /**
   * History records (a transition, an attempt record) put only where absent: one already there
   * is this very record from an earlier try, or an attempt record its end wrote first.
   */
  async putRecords(records: readonly TransactItem[]): Promise<void> {
    await Promise.all(
      records.map(async (record) => {
        const put = record.Put;
        if (!put) throw new Error("putRecords writes Puts only");
        await this.ifConditionHolds(() => this.db.send(new PutCommand(put)));
      }),
    );
  }

  /**
   * Unconditional puts in batches of 25, retrying unprocessed items. `stop` is asked before each
   * request: once it says so, no more are sent and WriteStoppedError is thrown (what was written
   * stays written; the caller knows its keys and removes them).
   */
  async batchPut(items: readonly object[], stop?: () => boolean): Promise<void> {
    await this.batchWrite(
      items.map((Item) => ({ PutRequest: { Item: storedJobItem(Item) } })),
      stop,
    );
  }

  async batchDelete(keys: readonly Key[]): Promise<void> {
    await this.batchWrite(keys.map((Key) => ({ DeleteRequest: { Key } })));
  }

  private async batchWrite(
    requests: readonly Record<string, unknown>[],
    stop?: () => boolean,
  ): Promise<void> {
    const chunks: Record<string, unknown>[][] = [];
    for (let i = 0; i < requests.length; i += BATCH_WRITE_LIMIT)
      chunks.push(requests.slice(i, i + BATCH_WRITE_LIMIT));
    // A few requests in flight: large batches are written in parallel without inviting throttling.
    await forEachConcurrent(chunks, BATCH_WRITE_CONCURRENCY, async (first) => {
      let chunk = first;
      for (let round = 0; chunk.length > 0; round++) {
        if (stop?.()) throw new WriteStoppedError();
        const out = await this.db.send(new BatchWriteCommand({ RequestItems: { [this.tableName]: chunk } }));
        chunk = (out.UnprocessedItems?.[this.tableName] ?? []) as Record<string, unknown>[];
        if (chunk.length > 0) await backoff(round);
      }
    });
  }

  /**
   * The transaction items of a status change: the job's conditional update and the transition
   * record. Returned, not sent, so callers can add items (edges, capacity) to the same write.
   */
  statusChangeItems(
    current: JobItem,
    change: StatusChange,
    requestedAt: string,
  ): {
    items: TransactItem[];
    /** The job's conditional update alone: `items[0]`. */
    update: TransactItem;
    /** The same update as data, for a write of many jobs' changes (`changeEach`). */
    write: StatusChangeWrite;
    /** The transition record's put (only where absent) alone: `items[1]`. */
    record: TransactItem;
    next: JobItem;
    historyExpiresAt: number;
  } {
    // A caller's clock may have been read before the job's last change (a scheduler pass reads
    // the time once): a job's history never runs backwards.
    const now = requestedAt < current.updatedAt ? current.updatedAt : requestedAt;
    const version = current.version + 1;
    const staged = current.staged === true;
    const endsJob = TERMINAL_STATUSES.has(change.to);
    // The history items this transaction writes (the transition, the attempt it ends) expire
    // exactly `historyDays` after an end; the job item itself only when jobRetentionDays is set.
    const expiresAt = this.historyExpiresAt(now, endsJob);
    const jobExpiry = endsJob ? jobExpiresAt(this.retention, now) : null;
    const ran = ranFor(current, change.to, now);
    const next = {
      ...current,
      ...change.set,
      ...ran,
      ...(jobExpiry === null ? {} : { expiresAt: jobExpiry }),
      status: change.to,
      statusReason: change.reason,
      reasonCode: change.reasonCode ?? null,
      version,
      updatedAt: now,
    } as JobItem;
    const set: Record<string, unknown> = {
      ...change.set,
      ...ran,
      status: change.to,
      statusReason: change.reason,
      reasonCode: change.reasonCode ?? null,
      version,
      updatedAt: now,
      ...(jobExpiry === null ? {} : { expiresAt: jobExpiry }),
      ...indexAttributes(next, staged),
    };
    // A field a job item stores only when set is removed rather than set to null (store/job-items.ts
    // STORED_WHEN_SET); `next` keeps it as null, as every read of the item shows it.
    const unset = Object.keys(set).filter((name) => set[name] === null && storedWhenSet(name));
    for (const name of unset) delete set[name];
    const remove = [
      ...new Set([...(change.remove ?? []), ...indexAttributesToRemove(change.to), ...unset]),
    ].filter((name) => !(name in set));
    for (const name of remove) {
      // What a read of the written item shows: null for a field stored only when set.
      if (storedWhenSet(name)) (next as unknown as Record<string, unknown>)[name] = null;
      else delete (next as unknown as Record<string, unknown>)[name];
    }
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = { ":from": current.status, ":version": current.version };
    const setClauses = Object.entries(set).map(([name, value], i) => {
      names[`#s${i}`] = name;
      values[`:s${i}`] = value;
      return `#s${i} = :s${i}`;
    });
    const removeClauses = remove.map((name, i) => {
      names[`#r${i}`] = name;
      return `#r${i}`;
    });
    names["#status"] = "status";
    names["#version"] = "version";
    const expression = `SET ${setClauses.join(", ")}${removeClauses.length ? ` REMOVE ${removeClauses.join(", ")}` : ""}`;
    const update: TransactItem = {
      Update: {
        TableName: this.tableName,
        Key: { pk: current.pk, sk: JOB_SK },
        UpdateExpression: expression,
        ConditionExpression: "#status = :from AND #version = :version",
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: values,
      },
    };
    const record = this.transitionPut(
      current,
      version,
      {
        to: change.to,
        at: now,
        reason: change.recordReason ?? change.reason,
        triggeredBy: change.triggeredBy,
      },
      expiresAt,
    );
    const write: StatusChangeWrite = {
      pk: current.pk,
      set,
      remove,
      from: { status: current.status, version: current.version },
    };
    return { items: [update, record], update, write, record, next, historyExpiresAt: expiresAt };
  }

  /**
   * Status changes of many jobs, each the job's update alone (statusChangeItems' `write`), sent
   * together without a transaction: PartiQL's BatchExecuteStatement, 25 conditional UPDATEs a
   * request, each billed as the UpdateItem it stands for, where a transaction would bill twice
   * and UpdateItems would cost a request each. Each request is sent at most once, so a refusal
   * always means the job is not as read, never that an earlier try of this very write landed.
   * Per change, in order: `written`; `refused` (its condition failed: nothing written); `unknown`
   * (the answer was lost, or the statement failed otherwise: it may have landed). The transition
   * records are the caller's to put once it knows which landed.
   */
  async changeEach(writes: readonly StatusChangeWrite[]): Promise<ChangeOutcome[]> {
    const outcomes: ChangeOutcome[] = [];
    const chunks: { first: number; writes: readonly StatusChangeWrite[] }[] = [];
    for (let i = 0; i < writes.length; i += PARTIQL_BATCH_LIMIT) {
      chunks.push({ first: i, writes: writes.slice(i, i + PARTIQL_BATCH_LIMIT) });
    }
    await Promise.all(
      chunks.map(async (chunk) => {
        const command = new BatchExecuteStatementCommand({
          Statements: chunk.writes.map((write) => statusChangeStatement(this.tableName, write)),
        });
        command.middlewareStack.add(sendAtMostOnce(), { step: "finalizeRequest", priority: "low" });
        let responses: { Error?: { Code?: string } }[] | null;
        try {
          responses = (await this.db.send(command)).Responses ?? [];
        } catch {
          responses = null;
        }
        chunk.writes.forEach((_, i) => {
          const error = responses ? responses[i]?.Error : { Code: "AnswerLost" };
          outcomes[chunk.first + i] = !error
            ? "written"
            : error.Code === "ConditionalCheckFailed"
              ? "refused"
              : "unknown";
        });
      }),
    );
    return outcomes;
  }

  /**
   * Flips the child's `DEP#<parent>` edge to met and decrements its `unmet`, as one transaction.
   * Only the write that flips the edge decrements, so however many writers race (a replayed
   * completion, a submission settling a parent that just completed), a parent counts once. The
   * decrement bumps the child's version, so a writer that read the old count loses its race.
   */
  edgeMetItems(parentId: string, childId: string, at: string): TransactItem[] {
    return [
      {
        Update: {
          TableName: this.tableName,
          Key: { pk: jobPk(childId), sk: dependsOnSk(parentId) },
          UpdateExpression: "SET met = :true",
          ConditionExpression: "met = :false",
          ExpressionAttributeValues: { ":true": true, ":false": false },
        },
      },
      {
        Update: {
          TableName: this.tableName,
          Key: { pk: jobPk(childId), sk: JOB_SK },
          UpdateExpression: "SET updatedAt = :at ADD unmet :minusOne, #version :one",
          ConditionExpression: "attribute_exists(pk) AND unmet > :zero",
          ExpressionAttributeNames: { "#version": "version" },
          ExpressionAttributeValues: { ":at": at, ":minusOne": -1, ":one": 1, ":zero": 0 },
        },
      },
    ];
  }

  /**
   * A status change of the job alone (a requeue, a release by dependencies, a resume, a sweep's
   * promotion, a missed deadline): its conditional UpdateItem, then its transition record (changeAlone), at half a
   * transaction's write units. A write refused because the job is not as read is a
   * ConcurrentUpdateError, for the caller to read again and decide anew; unless the job is
   * exactly what this change makes of it (version, status and time): that is this very write,
   * landed on a try whose answer was lost, which the SDK's retry then found refused. Then its
   * record is put and the change answered, as a transaction's client token would have.
   * A record that could not be put is lost, never the change (docs/lifecycle.md).
   */
  async changeStatus(current: JobItem, change: StatusChange, now: string): Promise<JobItem> {
    const { items, next, record } = this.statusChangeItems(current, change, now);
    const written = await this.changeAlone(items);
    if (written.outcome === "ok") return next;
    const found = (await this.getJobItems([current.id])).get(current.id);
    if (isChange(found, next)) {
      await this.putRecords([record]).catch(() => undefined);
      return next;
    }
    throw new ConcurrentUpdateError(`job ${current.id} changed before it could become ${change.to}`);
  }

  /**
   * A priority change (PATCH /jobs/{id}, and `before`'s move) as transaction items: the job's
   * update, conditional on its version and status like any write, and its row in /transitions
   * (from = to = the status, with both priorities) keyed by the version the change produced, so
   * the history can never miss a change or hold one twice. A plain priority change drops a moved
   * job's place (`orderKey`): it goes to its default place in its new priority.
   */
  priorityChangeItems(
    current: JobItem,
    change: {
      readonly priority: number;
      readonly orderKey?: string;
      readonly queuedAt?: string;
      readonly reason: string;
      readonly triggeredBy: string | null;
    },
    requestedAt: string,
  ): { items: TransactItem[]; next: JobItem } {
    const now = requestedAt < current.updatedAt ? current.updatedAt : requestedAt;
    const version = current.version + 1;
    const moved: Record<string, unknown> = {};
    if (change.orderKey !== undefined) moved.orderKey = change.orderKey;
    if (change.queuedAt !== undefined) moved.queuedAt = change.queuedAt;
    const next = { ...current, priority: change.priority, ...moved, version, updatedAt: now } as JobItem;
    if (change.orderKey === undefined) delete (next as { orderKey?: string }).orderKey;
    const attrs: Record<string, unknown> = {
      priority: change.priority,
      ...moved,
      version,
      updatedAt: now,
      ...indexAttributes(next, current.staged === true),
    };
    const names: Record<string, string> = { "#version": "version", "#status": "status" };
    const values: Record<string, unknown> = { ":version": current.version, ":status": current.status };
    const clauses = Object.entries(attrs).map(([name, value], i) => {
      names[`#a${i}`] = name;
      values[`:a${i}`] = value;
      return `#a${i} = :a${i}`;
    });
    const remove = change.orderKey === undefined ? " REMOVE orderKey" : "";
    const items: TransactItem[] = [
      {
        Update: {
          TableName: this.tableName,
          Key: { pk: current.pk, sk: JOB_SK },
          UpdateExpression: `SET ${clauses.join(", ")}${remove}`,
          ConditionExpression: "#version = :version AND #status = :status",
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        },
      },
      this.transitionPut(
        current,
        version,
        {
          to: current.status,
          at: now,
          reason: change.reason,
          triggeredBy: change.triggeredBy,
          fromPriority: current.priority,
          toPriority: change.priority,
        },
        this.historyExpiresAt(now, TERMINAL_STATUSES.has(current.status)),
      ),
    ];
    return { items, next };
  }

  /**
   * The put of the transition record a change of `current` to `version` writes (only where
   * absent: a replayed change collides instead of duplicating), from its status and attempt.
   */
  private transitionPut(
    current: JobItem,
    version: number,
    t: Omit<Parameters<typeof transitionItem>[2], "from" | "attempt">,
    expiresAt: number,
  ): TransactItem {
    return {
      Put: {
        TableName: this.tableName,
        Item: transitionItem(
          current.id,
          version,
          { ...t, from: current.status, attempt: current.attempts },
          expiresAt,
        ),
        ConditionExpression: "attribute_not_exists(pk)",
      },
    };
  }

  /**
   * Gives an ended job's history (transitions, logs, attempts, result) the expiry of items written
   * at `at` by a live job, before a manual retry revives it: what its end stamped would otherwise
   * collect the history under the revived job. One conditional write per item (never recreating
   * one TTL already deleted); at-least-once safe, as a rerun writes the same or a later expiry.
   * Returns how many items it renewed.
   */
  async renewHistory(id: string, at: string): Promise<number> {
    const expiresAt = this.historyExpiresAt(at, false);
    let renewed = 0;
    for (const prefix of [TRANSITION_PREFIX, LOG_PREFIX, ATTEMPT_PREFIX, RESULT_SK]) {
      let startKey: Key | undefined;
      do {
        const page = await this.queryJobPartition(id, prefix, {
          limit: 1000,
          startKey,
          // Only what would go sooner: a rerun after a crash skips what it already renewed.
          filter: {
            expression: "attribute_exists(expiresAt) AND expiresAt < :renewed",
            values: { ":renewed": expiresAt },
          },
        });
        await forEachConcurrent(page.items, BATCH_WRITE_CONCURRENCY, async (item) => {
          try {
            await this.db.send(
              new UpdateCommand({
                TableName: this.tableName,
                Key: { pk: item.pk, sk: item.sk },
                UpdateExpression: "SET expiresAt = :expiresAt",
                ConditionExpression: "attribute_exists(pk)",
                ExpressionAttributeValues: { ":expiresAt": expiresAt },
              }),
            );
            renewed++;
          } catch (error) {
            // Deleted by TTL between the read and the write: nothing left to keep.
            if ((error as { name?: string }).name !== "ConditionalCheckFailedException") throw error;
          }
        });
        startKey = page.lastKey;
      } while (startKey);
    }
    return renewed;
  }

  /** One page of the items under a job's partition whose sort key starts with `prefix`. */
  async queryJobPartition(
    id: string,
    prefix: string,
    options: {
      limit: number;
      startKey?: Key | undefined;
      filter?:
        | { expression: string; names?: Record<string, string>; values: Record<string, unknown> }
        | undefined;
      /** Last sort key first. */
      backward?: boolean;
    },
  ): Promise<Page<Record<string, unknown>>> {
    const input: QueryCommandInput = {
      TableName: this.tableName,
      KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
      ExpressionAttributeValues: { ":pk": jobPk(id), ":prefix": prefix, ...options.filter?.values },
      Limit: options.limit,
      ExclusiveStartKey: options.startKey,
      ...(options.backward ? { ScanIndexForward: false } : {}),
    };
    if (options.filter) {
      input.FilterExpression = options.filter.expression;
      if (options.filter.names) input.ExpressionAttributeNames = options.filter.names;
    }
    const out = await this.db.send(new QueryCommand(input));
    return { items: out.Items ?? [], lastKey: out.LastEvaluatedKey, count: out.Count ?? 0 };
  }

  /** Ids of every job that waits on this one (all pages). */
  async listDependentIds(id: string): Promise<string[]> {
    const ids: string[] = [];
    let startKey: Key | undefined;
    do {
      const page = await this.queryJobPartition(id, DEPENDENT_PREFIX, { limit: 1000, startKey });
      for (const item of page.items) ids.push(String(item.sk).slice(DEPENDENT_PREFIX.length));
      startKey = page.lastKey;
    } while (startKey);
    // An array child's parent waits on it without a stored `DPT#` edge (app/arrays.ts).
    const array = parseArrayChildId(id);
    if (array && !ids.includes(array.parentId)) ids.push(array.parentId);
    return ids;
  }

  /**
   * Whether each child's "waits on" edge to this parent is met, read from the children's `DEP#`
   * items (BatchGetItem, eventually consistent: a view, not a decision). A child whose edge is
   * gone (moved to an escalation job) is absent from the map.
   */
  async dependencyEdgesMet(parentId: string, childIds: readonly string[]): Promise<Map<string, boolean>> {
    const met = new Map<string, boolean>();
    const unique = [...new Set(childIds)];
    for (let i = 0; i < unique.length; i += BATCH_GET_LIMIT) {
      let keys: Key[] = unique
        .slice(i, i + BATCH_GET_LIMIT)
        .map((childId) => ({ pk: jobPk(childId), sk: dependsOnSk(parentId) }));
      for (let round = 0; keys.length > 0; round++) {
        const out = await this.db.send(
          new BatchGetCommand({
            RequestItems: {
              [this.tableName]: { Keys: keys, ProjectionExpression: "pk, met", ConsistentRead: false },
            },
          }),
        );
        for (const edge of out.Responses?.[this.tableName] ?? []) {
          met.set(String(edge.pk).slice(jobPk("").length), edge.met === true);
        }
        keys = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Key[];
        if (keys.length > 0) await backoff(round);
      }
    }
    return met;
  }

  /** One page of an index: keys only for KEYS_ONLY indexes. */
  async queryIndex(input: Omit<QueryCommandInput, "TableName">): Promise<Page<Record<string, unknown>>> {
    const out = await this.db.send(new QueryCommand({ ...input, TableName: this.tableName }));
    return { items: out.Items ?? [], lastKey: out.LastEvaluatedKey, count: out.Count ?? 0 };
  }

  /**
   * The jobs booked on one node (dispatched or running there), from the `active` index: its
   * projection, not the job items. The index trails the table by a moment; writes built on it
   * must be conditional.
   */
  async activeOnNode(pool: string, nodeId: string): Promise<Partial<JobItem>[]> {
    const entries: Partial<JobItem>[] = [];
    let startKey: Key | undefined;
    do {
      const page = await this.queryIndex({
        IndexName: JOB_INDEX.active,
        KeyConditionExpression: "activePk = :pk AND begins_with(activeSk, :node)",
        ExpressionAttributeValues: { ":pk": activePk(pool), ":node": `${nodeId}#` },
        ExclusiveStartKey: startKey,
      });
      entries.push(...(page.items as Partial<JobItem>[]));
      startKey = page.lastKey;
    } while (startKey);
    return entries;
  }

  async getItem(key: Key, consistent = true): Promise<Record<string, unknown> | undefined> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: consistent }),
    );
    return out.Item;
  }

  /** A put that succeeds only if the item is new; false if it already existed. */
  async putIfAbsent(item: Record<string, unknown>): Promise<boolean> {
    return this.putIf(item, "attribute_not_exists(pk)");
  }

  /** A conditional put; false when the condition did not hold. */
  async putIf(
    item: Record<string, unknown>,
    condition: string,
    expression: ExpressionParts = {},
  ): Promise<boolean> {
    return this.ifConditionHolds(() =>
      this.db.send(
        new PutCommand({
          TableName: this.tableName,
          Item: storedJobItem(item),
          ConditionExpression: condition,
          ...expressionAttributes(expression),
        }),
      ),
    );
  }

  /**
   * A conditional update of one item outside any transaction (half the write cost of a
   * one-item transaction); false when the condition did not hold.
   */
  async updateIf(
    key: Key,
    update: string,
    condition: string,
    expression: ExpressionParts = {},
  ): Promise<boolean> {
    return this.ifConditionHolds(() =>
      this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          UpdateExpression: update,
          ConditionExpression: condition,
          ...expressionAttributes(expression),
        }),
      ),
    );
  }

  /**
   * Waiting jobs' reasons (statusReason and reasonCode), each written only if its job is still
   * queued at the version read, with no version bump (the reason is advisory). PartiQL's
   * BatchExecuteStatement carries 25 such conditional updates a request: the write units of 25
   * UpdateItems, but one request's round trip and client CPU instead of 25 — a scheduler pass
   * rewrites up to a hundred reasons. Returns how many statements failed for a reason other
   * than their condition (throttled, say): those reasons stay stale until a later write.
   */
  async setWaitingReasons(updates: readonly WaitingReason[]): Promise<number> {
    const chunks: WaitingReason[][] = [];
    for (let i = 0; i < updates.length; i += PARTIQL_BATCH_LIMIT) {
      chunks.push(updates.slice(i, i + PARTIQL_BATCH_LIMIT));
    }
    const failed = await Promise.all(
      chunks.map(async (chunk) => {
        const out = await this.db.send(
          new BatchExecuteStatementCommand({
            Statements: chunk.map((u) => ({
              Statement: `UPDATE "${this.tableName}" SET statusReason = ? SET reasonCode = ? WHERE pk = ? AND sk = ? AND "status" = ? AND "version" = ?`,
              Parameters: [u.reason, u.code, jobPk(u.id), JOB_SK, "queued", u.version],
            })),
          }),
        );
        return (out.Responses ?? []).filter((r) => r.Error && r.Error.Code !== "ConditionalCheckFailed")
          .length;
      }),
    );
    return failed.reduce((sum, n) => sum + n, 0);
  }

  /** A conditional delete; false when the condition did not hold. */
  async deleteIf(key: Key, condition: string, expression: ExpressionParts = {}): Promise<boolean> {
    return this.ifConditionHolds(() =>
      this.db.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: key,
          ConditionExpression: condition,
          ...expressionAttributes(expression),
        }),
      ),
    );
  }

  private async ifConditionHolds(write: () => Promise<unknown>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (error) {
      if (error instanceof Error && error.name === "ConditionalCheckFailedException") return false;
      throw error;
    }
  }

  /**
   * The first day any job was created, written once (per cold start at most) so the admin's
   * list knows where history ends.
   */
  private firstDayKnown = false;
  async recordFirstDay(day: string): Promise<void> {
    if (this.firstDayKnown) return;
    await this.putIfAbsent({ pk: META_PK, sk: FIRST_DAY_SK, day });
    this.firstDayKnown = true;
  }

  async getFirstDay(): Promise<string | null> {
    const item = await this.getItem({ pk: META_PK, sk: FIRST_DAY_SK }, false);
    return typeof item?.day === "string" ? item.day : null;
  }

  // ---- Store operations in domain verbs (issue 14 item 3, run side): app/ composes and asks
  // these, and never writes an expression nor reads a cancellation reason by position.

  /**
   * One all-or-nothing write of named parts (the transaction builders' items that a use case
   * composes across concerns), saying which parts refused it, so the use case decides on names
   * instead of on `CancellationReasons` positions. A write that got no answer (a timeout, a
   * dropped connection) throws as it came: only a read can tell whether it landed.
   */
  async transactParts<K extends string>(parts: TransactionParts<K>): Promise<TransactionOutcome<K>> {
    const owners: K[] = [];
    const items: TransactItem[] = [];
    for (const name of Object.keys(parts) as K[]) {
      for (const item of parts[name]) {
        items.push(item);
        owners.push(name);
      }
    }
    try {
      await this.transact(items);
      return { ok: true };
    } catch (error) {
      if (!(error instanceof ConcurrentUpdateError)) throw error;
      const refused = new Set<K>();
      const conditionFailed = new Set<K>();
      cancellationCodes(error).forEach((code, i) => {
        const owner = owners[i];
        if (owner === undefined || code === "None") return;
        refused.add(owner);
        if (code === CONDITION_FAILED) conditionFailed.add(owner);
      });
      return { ok: false, refused, conditionFailed, error };
    }
  }

  /**
   * The transaction part for a job that gains a dependent: as jobUnchangedItem, and when the job
   * is marked as having none (`noDependents`) and may still complete, the mark removed under the
   * same condition, so its completion invokes the dependents consumer. The version stays: the
   * job's own status did not change. A completed job's mark stays (the new edge is born met).
   */
  dependentAddedItem(job: Pick<JobItem, "id" | "version" | "status" | "noDependents">): TransactItem {
    if (job.noDependents !== true || job.status === "completed") return this.jobUnchangedItem(job);
    return {
      Update: {
        TableName: this.tableName,
        Key: { pk: jobPk(job.id), sk: JOB_SK },
        UpdateExpression: "REMOVE noDependents",
        ConditionExpression: "#version = :version",
        ExpressionAttributeNames: { "#version": "version" },
        ExpressionAttributeValues: { ":version": job.version },
      },
    };
  }

  /**
   * The transaction part that insists a job is exactly as read (its version), so a write planned
   * on it (a submission's dependency, a move before a target) cannot miss a change made meanwhile.
   */
  jobUnchangedItem(job: { readonly id: string; readonly version: number }): TransactItem {
    return {
      ConditionCheck: {
        TableName: this.tableName,
        Key: { pk: jobPk(job.id), sk: JOB_SK },
        ConditionExpression: "#version = :version",
        ExpressionAttributeNames: { "#version": "version" },
        ExpressionAttributeValues: { ":version": job.version },
      },
    };
  }

  /**
   * Marks the child's dependency on `parentId` met (edgeMetItems: the edge flips and the child's
   * `unmet` goes down, in one transaction). `already_met`: the edge was met before (a replay) or
   * is gone (moved to an escalation's job); `not_waiting`: the child is gone or counts nothing
   * unmet. A conflict with another transaction throws ConcurrentUpdateError: try again.
   */
  async markDependencyMet(parentId: string, childId: string, at: string): Promise<DependencyMetOutcome> {
    const [edge, dependent] = this.edgeMetItems(parentId, childId, at);
    if (!edge || !dependent) throw new RangeError("edgeMetItems builds the edge and the dependent's count");
    const outcome = await this.transactParts({ edge: [edge], dependent: [dependent] });
    if (outcome.ok) return { ok: true };
    if (outcome.conditionFailed.has("edge")) return { ok: false, reason: "already_met" };
    if (outcome.conditionFailed.has("dependent")) return { ok: false, reason: "not_waiting" };
    throw outcome.error;
  }

  /**
   * A blocked job's reason (what it still waits on), written only if it is still blocked at the
   * version its count was read at, with no version bump; false when it changed meanwhile.
   */
  async setBlockedReason(job: Pick<JobItem, "pk" | "version">, reason: string): Promise<boolean> {
    return this.updateIf(
      { pk: job.pk, sk: JOB_SK },
      "SET statusReason = :reason",
      "#status = :blocked AND #version = :version",
      {
        names: { "#status": "status", "#version": "version" },
        values: { ":reason": reason, ":blocked": "blocked", ":version": job.version },
      },
    );
  }

  /**
   * Records on an escalated job the id of the job its escalation created, with the reason that
   * names it, if the job is still escalated at the version read; false when it changed.
   */
  async setEscalatedTo(
    job: Pick<JobItem, "pk" | "version">,
    escalatedTo: string,
    reason: string,
    at: string,
  ): Promise<boolean> {
    return this.updateIf(
      { pk: job.pk, sk: JOB_SK },
      "SET escalatedTo = :to, statusReason = :reason, #version = :next, updatedAt = :at",
      "#status = :escalated AND #version = :version",
      {
        names: { "#status": "status", "#version": "version" },
        values: {
          ":to": escalatedTo,
          ":reason": reason,
          ":next": job.version + 1,
          ":at": at,
          ":escalated": "escalated",
          ":version": job.version,
        },
      },
    );
  }

  /** Drops a parent's `DPT#<child>` edge if it is there; false when it was already gone. */
  async removeDependentEdge(parentId: string, childId: string): Promise<boolean> {
    return this.deleteIf({ pk: jobPk(parentId), sk: dependentSk(childId) }, "attribute_exists(pk)");
  }

  /**
   * The transaction that moves a child's dependency from `oldParentId` to `newParent` (an
   * escalation's job): the child's `DEP#` edge and the parents' `DPT#` edges swapped, the
   * dependency renamed in its `dependsOn` and its version bumped (its `unmet` down by one when
   * `decrement`), conditional on the child's and the new parent's versions as read.
   */
  rewireDependencyItems(rewire: {
    readonly child: Pick<JobItem, "id" | "version" | "dependsOn">;
    readonly oldParentId: string;
    readonly newParent: Pick<JobItem, "id" | "version" | "status" | "noDependents">;
    /** Whether the moved edge is met: it was before, or the new parent already completed. */
    readonly met: boolean;
    readonly decrement: boolean;
    readonly at: string;
  }): TransactItem[] {
    const { child, oldParentId, newParent, decrement } = rewire;
    const table = this.tableName;
    const values: Record<string, unknown> = {
      ":deps": child.dependsOn.map((id) => (id === oldParentId ? newParent.id : id)),
      ":at": rewire.at,
      ":next": child.version + 1,
      ":version": child.version,
    };
    if (decrement) values[":minusOne"] = -1;
    return [
      {
        Delete: {
          TableName: table,
          Key: { pk: jobPk(child.id), sk: dependsOnSk(oldParentId) },
          ConditionExpression: "attribute_exists(pk)",
        },
      },
      {
        Put: {
          TableName: table,
          Item: {
            pk: jobPk(child.id),
            sk: dependsOnSk(newParent.id),
            entity: "dependency",
            parentId: newParent.id,
            met: rewire.met,
          },
        },
      },
      {
        Put: {
          TableName: table,
          Item: {
            pk: jobPk(newParent.id),
            sk: dependentSk(child.id),
            entity: "dependent",
            childId: child.id,
          },
        },
      },
      { Delete: { TableName: table, Key: { pk: jobPk(oldParentId), sk: dependentSk(child.id) } } },
      {
        Update: {
          TableName: table,
          Key: { pk: jobPk(child.id), sk: JOB_SK },
          UpdateExpression: `SET dependsOn = :deps, updatedAt = :at, #version = :next${decrement ? " ADD unmet :minusOne" : ""}`,
          ConditionExpression: "#version = :version",
          ExpressionAttributeNames: { "#version": "version" },
          ExpressionAttributeValues: values,
        },
      },
      this.dependentAddedItem(newParent),
    ];
  }
}

/** A batch write was stopped by its caller before every item was written. */
export class WriteStoppedError extends Error {
  constructor() {
    super("the batch write was stopped before every item was written");
    this.name = "WriteStoppedError";
  }
}

/** A waiting job's reason, for the job as read at `version` (JobRepository.setWaitingReasons). */
export interface WaitingReason {
  readonly id: string;
  readonly version: number;
  readonly reason: string;
  readonly code: ReasonCode;
}

/** A job's status change as statusChangeItems makes it: what it sets and removes, on which condition. */
export interface StatusChangeWrite {
  readonly pk: string;
  readonly set: Readonly<Record<string, unknown>>;
  readonly remove: readonly string[];
  /** The job as read: the write lands only on that status and version. */
  readonly from: { readonly status: string; readonly version: number };
}

export type ChangeOutcome = "written" | "refused" | "unknown";

/**
 * The PartiQL UPDATE of a status change: the same sets, removes and condition as its
 * UpdateItem. Names are quoted (PartiQL reserves `status` and many more); store/dynamo.ts's
 * meter reads this form back to count its write units locally.
 */
function statusChangeStatement(
  tableName: string,
  write: StatusChangeWrite,
): { Statement: string; Parameters: unknown[] } {
  // An undefined value is no value (the UpdateItem would refuse it): kept, it would shift the parameters.
  const sets = Object.entries(write.set).filter(([, value]) => value !== undefined);
  const clauses = [
    ...sets.map(([name]) => `SET "${name}" = ?`),
    ...write.remove.map((name) => `REMOVE "${name}"`),
  ];
  return {
    Statement: `UPDATE "${tableName}" ${clauses.join(" ")} WHERE "pk" = ? AND "sk" = ? AND "status" = ? AND "version" = ?`,
    Parameters: [...sets.map(([, value]) => value), write.pk, JOB_SK, write.from.status, write.from.version],
  };
}

/** Statements per BatchExecuteStatement request at most. */
const PARTIQL_BATCH_LIMIT = 25;

export interface ExpressionParts {
  readonly names?: Record<string, string>;
  readonly values?: Record<string, unknown>;
}

function expressionAttributes(parts: ExpressionParts): {
  ExpressionAttributeNames?: Record<string, string>;
  ExpressionAttributeValues?: Record<string, unknown>;
} {
  return {
    ...(parts.names ? { ExpressionAttributeNames: parts.names } : {}),
    ...(parts.values ? { ExpressionAttributeValues: parts.values } : {}),
  };
}

/**
 * A result item's value. Workers store it as JSON text (`resultJson`), like payloads and for
 * the same reason (DynamoDB's document types refuse some valid JSON); `result` is the older form.
 */
function storedResult(item: Record<string, unknown>): unknown {
  return typeof item.resultJson === "string" ? JSON.parse(item.resultJson) : (item.result ?? null);
}

async function backoff(round: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 25 * 2 ** round)));
}

/**
 * The run time an attempt adds when its job leaves `running`, summed on the job item (`runMs`)
 * with the pool it ran in (`runPool`), in the status change's own update: what the job's compute
 * cost is computed from (core/cost.ts), for no write of its own. The update is conditional on the
 * version read, so the sum cannot count an attempt twice.
 */
function ranFor(
  current: JobItem,
  to: JobStatus,
  now: string,
): { readonly runMs: number; readonly runPool: string } | Record<string, never> {
  if (current.status !== "running" || to === "running" || !current.attemptStartedAt) return {};
  const ms = Math.max(0, Date.parse(now) - Date.parse(current.attemptStartedAt));
  if (!Number.isFinite(ms)) return {};
  const pool = current.reservation?.pool ?? current.runPool ?? current.pool ?? "";
  return { runMs: (current.runMs ?? 0) + ms, runPool: pool };
}

/** Named parts of one transaction, each the items of one builder (JobRepository#transactParts). */
export type TransactionParts<K extends string> = { readonly [P in K]: readonly TransactItem[] };

/**
 * What a transaction of named parts came to: written, or refused, with the parts whose items
 * refused it (any reason: a failed condition, a conflict with another transaction) and, among
 * them, those whose condition failed; `error` is the ConcurrentUpdateError to throw on.
 */
export type TransactionOutcome<K extends string> =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly refused: ReadonlySet<K>;
      readonly conditionFailed: ReadonlySet<K>;
      readonly error: ConcurrentUpdateError;
    };

/** What marking a dependency met came to (JobRepository#markDependencyMet). */
export type DependencyMetOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: "already_met" | "not_waiting" };

/** A transaction's part as written: a job item's Put without what the item stores only when set. */
function storedPart(part: TransactItem): TransactItem {
  return part.Put?.Item ? { ...part, Put: { ...part.Put, Item: storedJobItem(part.Put.Item) } } : part;
}
