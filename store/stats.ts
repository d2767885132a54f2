import { ConditionalCheckFailedException, TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
} from "@aws-sdk/lib-dynamodb";
import { JOB_STATUSES, type JobStatus } from "../core/job";
import {
  addToBucket,
  type CostSums,
  emptyFigures,
  type PeriodFigures,
  rollUpHours,
  type StatsDelta,
} from "../core/stats";
import type { TransactItem } from "./job-repository";
import { runTimeDayItem } from "./usage";

/**
 * Where GET /stats's aggregates live: small items in the Policy table (docs/stats.md), written
 * by the stream consumer with ADD, so any number of stream batches, from any number of shards,
 * add up without reading first.
 *
 * | item | pk | sk |
 * |---|---|---|
 * | a minute's figures | `STATS#M#<yyyy-mm-ddThh:mm>` | `STATS` |
 * | an hour's figures | `STATS#H#<yyyy-mm-ddThh>` | `STATS` |
 * | gauges: jobs per status, per pool and status | `STATS#GAUGE` | `GAUGE` |
 * | an owner's running and queued jobs | `STATS#OWNERS` | `<owner>` |
 * | a receipt: stream records already applied | `STATS#RECEIPT#<first sequence number>` | `RECEIPT` |
 *
 * A period item holds, per dimension (`*`, `pool:<name>`, `type:<name>`): `c|<dim>` completed,
 * `f|<dim>` failed, and `q|<dim>|<bucket>` / `r|<dim>|<bucket>` the queue-wait and run-time
 * histogram buckets (core/stats.ts). Only what happened is stored, so a quiet minute costs
 * nothing and a busy one stays a few KB.
 */

export const STATS_SK = "STATS";
export const minutePk = (minute: string): string => `STATS#M#${minute}`;
export const hourPk = (hour: string): string => `STATS#H#${hour}`;
export const GAUGE_PK = "STATS#GAUGE";
export const GAUGE_SK = "GAUGE";
export const OWNERS_PK = "STATS#OWNERS";
export const receiptPk = (firstSequence: string): string => `STATS#RECEIPT#${firstSequence}`;
export const RECEIPT_SK = "RECEIPT";

/** Minute items serve windows up to an hour; two days leaves room for late records and replays. */
const MINUTE_TTL_SECONDS = 2 * 86_400;
/** Hour items serve the 24 h window. */
const HOUR_TTL_SECONDS = 3 * 86_400;
/**
 * Receipts must outlive every possible redelivery of their records: a stream keeps records 24 h,
 * and Lambda retries a batch at most until its records leave the stream.
 */
const RECEIPT_TTL_SECONDS = 2 * 86_400;
/** A day's cost sums: read for today and the 6 days before (this week), then let go. */
const COST_DAY_TTL_SECONDS = 9 * 86_400;
/** Ended jobs' cost per day and dimension (docs/cost.md): `n|dim` jobs, `r|dim` and `k|dim` nano-USD. */
export const costDayPk = (day: string): string => `STATS#COST#${day}`;
/** Costs are summed in nano-USD, whole numbers, so ADDs of any batches sum exactly. */
const NANO = 1e9;

/** DynamoDB's limit of items per TransactWriteItems; one is the receipt. */
export const MAX_UPDATES_PER_WRITE = 99;
/**
 * ADDs per item in one write: keeps each UpdateExpression (`#a12 :a12, `…) well under DynamoDB's
 * 4 KB expression limit.
 */
export const MAX_ATTRIBUTES_PER_UPDATE = 250;

const BATCH_GET_LIMIT = 100;
const CONFLICT_RETRIES = 5;

type Key = { pk: string; sk: string };

/** One item's additive update: attribute → amount, and the TTL to set. */
interface ItemUpdate {
  readonly key: Key;
  readonly adds: Map<string, number>;
  readonly expiresAt?: number;
  /** Plain attributes kept on the item (an owner item names its owner). */
  readonly set?: Record<string, string>;
}

/** The outcome of applying one chunk of stream records. */
export type ApplyOutcome =
  | { readonly applied: true; readonly items: number }
  /** These records were applied before (a redelivered batch): everything through this one. */
  | { readonly applied: false; readonly appliedThrough: string };

export interface GaugeView {
  readonly byStatus: Record<JobStatus, number>;
  /** Pool → status → jobs, non-terminal statuses. */
  readonly byPool: Map<string, Partial<Record<JobStatus, number>>>;
}

export interface OwnerGaugeView {
  readonly owner: string;
  readonly running: number;
  readonly queued: number;
}

export class StatsRepository {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    readonly tableName: string,
  ) {}

  /**
   * Adds a delta folded from stream records `firstSequence`..`lastSequence` (one shard, in
   * order) in one transaction with their receipt, conditional on there being none: a
   * redelivered chunk is refused whole, never added twice, and a crash leaves all of it or none.
   */
  async apply(
    delta: StatsDelta,
    firstSequence: string,
    lastSequence: string,
    now: Date,
  ): Promise<ApplyOutcome> {
    const nowSeconds = Math.floor(now.getTime() / 1000);
    const updates = updatesOf(delta, nowSeconds);
    if (updates.length > MAX_UPDATES_PER_WRITE)
      throw new Error(`a chunk of ${updates.length} items is too large`);
    const receipt: TransactItem = {
      Put: {
        TableName: this.tableName,
        Item: {
          pk: receiptPk(firstSequence),
          sk: RECEIPT_SK,
          lastSequence,
          appliedAt: now.toISOString(),
          expiresAt: nowSeconds + RECEIPT_TTL_SECONDS,
        },
        ConditionExpression: "attribute_not_exists(pk)",
      },
    };
    const items = [receipt, ...updates.map((u) => this.updateItem(u))];
    for (let round = 0; ; round++) {
      try {
        await this.db.send(new TransactWriteCommand({ TransactItems: items }));
        return { applied: true, items: items.length };
      } catch (error) {
        if (!(error instanceof TransactionCanceledException)) throw error;
        const codes = (error.CancellationReasons ?? []).map((r) => r.Code ?? "None");
        if (codes[0] === "ConditionalCheckFailed") {
          return { applied: false, appliedThrough: await this.receiptThrough(firstSequence, lastSequence) };
        }
        // Another shard's batch is adding to the same minute or owner right now: try again.
        if (codes.includes("TransactionConflict") && round < CONFLICT_RETRIES) {
          await backoff(round);
          continue;
        }
        throw error;
      }
    }
  }

  /**
   * Deletes owner items that came down to nothing running and nothing queued, so an admin's
   * bounded read of owners meets active ones. Absent means zero to ADD, so a later change simply
   * creates the item again. Best effort: a lost race only leaves a zero row.
   */
  async pruneIdleOwners(owners: readonly string[]): Promise<void> {
    for (const owner of owners) {
      try {
        await this.db.send(
          new DeleteCommand({
            TableName: this.tableName,
            Key: { pk: OWNERS_PK, sk: owner },
            ConditionExpression: "running = :zero AND queued = :zero",
            ExpressionAttributeValues: { ":zero": 0 },
          }),
        );
      } catch (error) {
        if (error instanceof ConditionalCheckFailedException) continue;
        if (error instanceof Error && error.name === "TransactionConflictException") continue;
        throw error;
      }
    }
  }

  /**
   * The figures of the given minutes and hours and the gauges, in BatchGetItems of up to 100
   * keys, eventually consistent. Periods nothing happened in are absent from the maps.
   */
  async readPeriods(
    minutes: readonly string[],
    hours: readonly string[],
  ): Promise<{
    minutes: Map<string, Map<string, PeriodFigures>>;
    hours: Map<string, Map<string, PeriodFigures>>;
    gauges: GaugeView;
  }> {
    const keys: Key[] = [
      ...minutes.map((m) => ({ pk: minutePk(m), sk: STATS_SK })),
      ...hours.map((h) => ({ pk: hourPk(h), sk: STATS_SK })),
      { pk: GAUGE_PK, sk: GAUGE_SK },
    ];
    const found = await this.batchGet(keys);
    const minuteFigures = new Map<string, Map<string, PeriodFigures>>();
    const hourFigures = new Map<string, Map<string, PeriodFigures>>();
    let gauges: GaugeView = emptyGauges();
    for (const item of found) {
      const pk = String(item.pk);
      if (pk === GAUGE_PK) gauges = gaugesOf(item);
      else if (pk.startsWith(minutePk(""))) minuteFigures.set(pk.slice(minutePk("").length), figuresOf(item));
      else if (pk.startsWith(hourPk(""))) hourFigures.set(pk.slice(hourPk("").length), figuresOf(item));
    }
    return { minutes: minuteFigures, hours: hourFigures, gauges };
  }

  /**
   * Owners with jobs running or queued, by name, at most `limit` (one Query); `truncated` when
   * there are more.
   */
  async readOwners(limit: number): Promise<{ owners: OwnerGaugeView[]; truncated: boolean }> {
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: "pk = :pk",
        ExpressionAttributeValues: { ":pk": OWNERS_PK },
        Limit: limit + 1,
      }),
    );
    const items = out.Items ?? [];
    const owners = items.slice(0, limit).map(ownerOf);
    return { owners, truncated: items.length > limit };
  }

  /**
   * The cost sums of the given days, added up per dimension (one BatchGetItem; eventually
   * consistent). Only the dimensions asked for when `dims` is given (a user's own).
   */
  async readCosts(days: readonly string[], dims?: readonly string[]): Promise<Map<string, CostSums>> {
    const found = await this.batchGet(days.map((day) => ({ pk: costDayPk(day), sk: STATS_SK })));
    const sums = new Map<string, CostSums>();
    const wanted = dims ? new Set(dims) : null;
    for (const item of found) {
      for (const [name, value] of Object.entries(item)) {
        const kind = name.slice(0, 2);
        if ((kind !== "n|" && kind !== "r|" && kind !== "k|") || typeof value !== "number") continue;
        const dim = name.slice(2);
        if (wanted && !wanted.has(dim)) continue;
        const into = sums.get(dim) ?? { jobs: 0, requestsUsd: 0, computeUsd: 0 };
        if (kind === "n|") into.jobs += value;
        if (kind === "r|") into.requestsUsd += value / NANO;
        if (kind === "k|") into.computeUsd += value / NANO;
        sums.set(dim, into);
      }
    }
    return sums;
  }

  /** One owner's gauges (zeros when it has no item). */
  async readOwner(owner: string): Promise<OwnerGaugeView> {
    const out = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: { pk: OWNERS_PK, sk: owner } }),
    );
    return out.Item ? ownerOf(out.Item) : { owner, running: 0, queued: 0 };
  }

  private async receiptThrough(firstSequence: string, lastSequence: string): Promise<string> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: receiptPk(firstSequence), sk: RECEIPT_SK },
        ConsistentRead: true,
      }),
    );
    const through = out.Item?.lastSequence;
    // The receipt expired between the refusal and this read: only possible long after the
    // stream dropped the records, so the chunk counts as applied.
    return typeof through === "string" ? through : lastSequence;
  }

  private updateItem(update: ItemUpdate): TransactItem {
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = {};
    const adds: string[] = [];
    let i = 0;
    for (const [attribute, amount] of update.adds) {
      names[`#a${i}`] = attribute;
      values[`:a${i}`] = amount;
      adds.push(`#a${i} :a${i}`);
      i++;
    }
    const sets: string[] = [];
    if (update.expiresAt !== undefined) {
      names["#expiresAt"] = "expiresAt";
      values[":expiresAt"] = update.expiresAt;
      sets.push("#expiresAt = :expiresAt");
    }
    for (const [attribute, value] of Object.entries(update.set ?? {})) {
      names[`#s${sets.length}`] = attribute;
      values[`:s${sets.length}`] = value;
      sets.push(`#s${sets.length} = :s${sets.length}`);
    }
    const expression = [`ADD ${adds.join(", ")}`, ...(sets.length > 0 ? [`SET ${sets.join(", ")}`] : [])];
    return {
      Update: {
        TableName: this.tableName,
        Key: update.key,
        UpdateExpression: expression.join(" "),
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: values,
      },
    };
  }

  private async batchGet(keys: readonly Key[]): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    for (let i = 0; i < keys.length; i += BATCH_GET_LIMIT) {
      let chunk: Key[] = keys.slice(i, i + BATCH_GET_LIMIT);
      for (let round = 0; chunk.length > 0; round++) {
        const out = await this.db.send(
          new BatchGetCommand({ RequestItems: { [this.tableName]: { Keys: chunk } } }),
        );
        items.push(...(out.Responses?.[this.tableName] ?? []));
        chunk = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Key[];
        if (chunk.length > 0) await backoff(round);
      }
    }
    return items;
  }
}

/**
 * How many items and, at most, ADDs per item writing `delta` takes: what the consumer sizes its
 * chunks by (a chunk is one transaction).
 */
export function writeSize(delta: StatsDelta): { items: number; attributes: number } {
  const updates = updatesOf(delta, 0);
  return { items: updates.length, attributes: Math.max(0, ...updates.map((u) => u.adds.size)) };
}

function updatesOf(delta: StatsDelta, nowSeconds: number): ItemUpdate[] {
  const updates: ItemUpdate[] = [];
  for (const [minute, dims] of delta.minutes) {
    updates.push({
      key: { pk: minutePk(minute), sk: STATS_SK },
      adds: periodAdds(dims),
      expiresAt: nowSeconds + MINUTE_TTL_SECONDS,
    });
  }
  for (const [hour, dims] of rollUpHours(delta.minutes)) {
    updates.push({
      key: { pk: hourPk(hour), sk: STATS_SK },
      adds: periodAdds(dims),
      expiresAt: nowSeconds + HOUR_TTL_SECONDS,
    });
  }
  const gauge = new Map<string, number>();
  for (const [status, n] of delta.byStatus) gauge.set(`s|${status}`, n);
  for (const [pool, statuses] of delta.byPool) {
    for (const [status, n] of statuses) gauge.set(`p|${pool}|${status}`, n);
  }
  if (gauge.size > 0) updates.push({ key: { pk: GAUGE_PK, sk: GAUGE_SK }, adds: gauge });
  for (const [day, dims] of delta.costs) {
    const adds = new Map<string, number>();
    for (const [dim, sums] of dims) {
      adds.set(`n|${dim}`, sums.jobs);
      adds.set(`r|${dim}`, Math.round(sums.requestsUsd * NANO));
      adds.set(`k|${dim}`, Math.round(sums.computeUsd * NANO));
    }
    updates.push({
      key: { pk: costDayPk(day), sk: STATS_SK },
      adds,
      expiresAt: nowSeconds + COST_DAY_TTL_SECONDS,
    });
  }
  for (const [day, types] of delta.runTimes) {
    for (const [type, sums] of types) {
      const { key, expiresAt } = runTimeDayItem(type, day);
      updates.push({
        key,
        adds: new Map([
          ["count", sums.count],
          ["totalMs", sums.totalMs],
        ]),
        expiresAt,
        set: { type },
      });
    }
  }
  for (const [owner, g] of delta.owners) {
    updates.push({
      key: { pk: OWNERS_PK, sk: owner },
      // Both always, so the prune's condition can compare both.
      adds: new Map([
        ["running", g.running],
        ["queued", g.queued],
      ]),
      set: { owner },
    });
  }
  return updates;
}

function periodAdds(dims: ReadonlyMap<string, PeriodFigures>): Map<string, number> {
  const adds = new Map<string, number>();
  for (const [dim, f] of dims) {
    if (f.completed !== 0) adds.set(`c|${dim}`, f.completed);
    if (f.failed !== 0) adds.set(`f|${dim}`, f.failed);
    for (const [bucket, n] of f.queueWait) adds.set(`q|${dim}|${bucket}`, n);
    for (const [bucket, n] of f.run) adds.set(`r|${dim}|${bucket}`, n);
  }
  return adds;
}

/** A period item back into figures per dimension. */
function figuresOf(item: Record<string, unknown>): Map<string, PeriodFigures> {
  const dims = new Map<string, PeriodFigures>();
  const of = (dim: string): PeriodFigures => {
    let f = dims.get(dim);
    if (!f) {
      f = emptyFigures();
      dims.set(dim, f);
    }
    return f;
  };
  for (const [attribute, value] of Object.entries(item)) {
    const n = Number(value);
    if (!Number.isFinite(n)) continue;
    const kind = attribute.slice(0, 2);
    if (kind === "c|") of(attribute.slice(2)).completed += n;
    else if (kind === "f|") of(attribute.slice(2)).failed += n;
    else if (kind === "q|" || kind === "r|") {
      const last = attribute.lastIndexOf("|");
      const bucket = Number(attribute.slice(last + 1));
      if (last <= 1 || !Number.isInteger(bucket)) continue;
      const f = of(attribute.slice(2, last));
      addToBucket(kind === "q|" ? f.queueWait : f.run, bucket, n);
    }
  }
  return dims;
}

function emptyGauges(): GaugeView {
  const byStatus = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>;
  return { byStatus, byPool: new Map() };
}

const STATUS_SET: ReadonlySet<string> = new Set(JOB_STATUSES);

function gaugesOf(item: Record<string, unknown>): GaugeView {
  const gauges = emptyGauges();
  for (const [attribute, value] of Object.entries(item)) {
    const n = Number(value);
    if (!Number.isFinite(n)) continue;
    if (attribute.startsWith("s|")) {
      const status = attribute.slice(2);
      if (STATUS_SET.has(status)) gauges.byStatus[status as JobStatus] = n;
    } else if (attribute.startsWith("p|")) {
      const last = attribute.lastIndexOf("|");
      const pool = attribute.slice(2, last);
      const status = attribute.slice(last + 1);
      if (!STATUS_SET.has(status) || pool === "") continue;
      const statuses = gauges.byPool.get(pool) ?? {};
      statuses[status as JobStatus] = n;
      gauges.byPool.set(pool, statuses);
    }
  }
  return gauges;
}

function ownerOf(item: Record<string, unknown>): OwnerGaugeView {
  const n = (v: unknown): number => (Number.isFinite(Number(v)) ? Number(v) : 0);
  return { owner: String(item.owner ?? item.sk), running: n(item.running), queued: n(item.queued) };
}

async function backoff(round: number): Promise<void> {
  const ms = Math.min(1000, 25 * 2 ** round) * (0.5 + Math.random() / 2);
  await new Promise((resolve) => setTimeout(resolve, ms));
}
