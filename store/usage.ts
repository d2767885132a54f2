import { BatchGetCommand, type DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { projectQuotaKey } from "../core/projects";
import { gpuSecondsByWindow, usageWindows } from "../core/quota";
import type { TransactItem } from "./job-repository";
import { dayUsageSk, principalPk, runtimePk, runtimeSk, weekUsageSk } from "./keys";

/**
 * GPU-seconds used per principal and run-time statistics per job type, in the Policy table
 * (store/tables.ts#policyTable, docs/data-model.md). Usage of finished attempts is added by the
 * transaction that ends the attempt, so it is counted exactly once and never needs a scan; the
 * running attempts' share is computed from the `active` index (app/quota-usage.ts).
 */

const DAY_MS = 86_400_000;
/** Day items outlive their day by a week: long enough for every reader, short enough to stay few. */
const DAY_ITEM_TTL_DAYS = 8;
/** Week items outlive their week (7 days from the Monday) by about a week more. */
const WEEK_ITEM_TTL_DAYS = 15;
/** Run-time statistics are read over today and the 6 days before. */
const RUNTIME_DAYS = 7;
const BATCH_GET_LIMIT = 100;

/** Epoch seconds `days` after a `yyyy-mm-dd` day's 00:00 UTC: a TTL attribute's value. */
function expiresAfter(day: string, days: number): number {
  return Math.floor((Date.parse(`${day}T00:00:00.000Z`) + days * DAY_MS) / 1000);
}

/**
 * The day item a type's successful run times are added to (`count`, `totalMs`), and its TTL: the
 * /stats stream consumer adds each chunk's run times there in the transaction that applies the
 * chunk (store/stats.ts), so an attempt is counted once and costs its job no write of its own.
 */
export function runTimeDayItem(
  type: string,
  day: string,
): { readonly key: { pk: string; sk: string }; readonly expiresAt: number } {
  return {
    key: { pk: runtimePk(type), sk: runtimeSk(day) },
    expiresAt: expiresAfter(day, DAY_ITEM_TTL_DAYS),
  };
}

/**
 * The transaction items that add a finished attempt's GPU-seconds (gpu × its duration, split at
 * UTC midnights) to the day and week items it touched. They belong in the TransactWriteItems
 * that ends the attempt, which is conditional on the job's version: counted exactly once.
 * None for a CPU job or an attempt that never started running; none for a window whose item
 * would already have expired (a very long attempt), which also bounds the item count.
 * A job of a project adds the same seconds to the project's items too (`project:<name>`, issue
 * 13), in the same transaction: no request more, and none of it for a job without a project.
 */
export function gpuUsageItems(
  policyTable: string,
  owner: string,
  gpu: number,
  startedAt: string | null | undefined,
  finishedAt: string,
  project?: string | null,
): TransactItem[] {
  if (!(gpu > 0) || !startedAt || Number.isNaN(Date.parse(startedAt))) return [];
  // A transaction may not touch one item twice: spans of the same day or week are summed first.
  const days = new Map<string, number>();
  const weeks = new Map<string, number>();
  for (const span of gpuSecondsByWindow(gpu, new Date(startedAt), new Date(finishedAt))) {
    if (span.gpuSeconds <= 0) continue;
    days.set(span.day, (days.get(span.day) ?? 0) + span.gpuSeconds);
    weeks.set(span.week, (weeks.get(span.week) ?? 0) + span.gpuSeconds);
  }
  const nowSeconds = Math.floor(Date.parse(finishedAt) / 1000);
  const items: TransactItem[] = [];
  const subjects = project ? [owner, projectQuotaKey(project)] : [owner];
  const add = (sk: string, seconds: number, expiresAt: number): void => {
    if (expiresAt <= nowSeconds) return;
    for (const subject of subjects) {
      items.push({
        Update: {
          TableName: policyTable,
          Key: { pk: principalPk(subject), sk },
          UpdateExpression: "ADD gpuSeconds :seconds SET expiresAt = :expiresAt, #principal = :owner",
          ExpressionAttributeNames: { "#principal": "principal" },
          ExpressionAttributeValues: { ":seconds": seconds, ":expiresAt": expiresAt, ":owner": subject },
        },
      });
    }
  };
  for (const [day, seconds] of days) add(dayUsageSk(day), seconds, expiresAfter(day, DAY_ITEM_TTL_DAYS));
  for (const [monday, seconds] of weeks) {
    add(weekUsageSk(monday), seconds, expiresAfter(monday, WEEK_ITEM_TTL_DAYS));
  }
  return items;
}

/** GPU-seconds of a principal's finished attempts in the current windows. */
export interface GpuUsage {
  readonly todayGpuSeconds: number;
  readonly weekGpuSeconds: number;
}

type Key = Record<string, unknown>;

export class UsageRepository {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    readonly tableName: string,
  ) {}

  /**
   * GPU-seconds of each principal's finished attempts today and this week (UTC, weeks from
   * Monday): two items per principal, read in BatchGets. Every owner asked for is in the map.
   */
  async readGpuUsage(owners: readonly string[], now: Date): Promise<Map<string, GpuUsage>> {
    const windows = usageWindows(now);
    const day = dayUsageSk(windows.day);
    const week = weekUsageSk(windows.week);
    const unique = [...new Set(owners)];
    // Strongly consistent: the quota gate must see an attempt that just ended.
    const found = await this.batchGet(
      unique.flatMap((owner) => [
        { pk: principalPk(owner), sk: day },
        { pk: principalPk(owner), sk: week },
      ]),
      true,
    );
    const seconds = new Map<string, number>();
    for (const item of found) seconds.set(`${String(item.pk)}|${String(item.sk)}`, numberOf(item.gpuSeconds));
    const usage = new Map<string, GpuUsage>();
    for (const owner of unique) {
      const pk = principalPk(owner);
      usage.set(owner, {
        todayGpuSeconds: seconds.get(`${pk}|${day}`) ?? 0,
        weekGpuSeconds: seconds.get(`${pk}|${week}`) ?? 0,
      });
    }
    return usage;
  }

  /**
   * GPU-seconds of each principal's finished attempts today (UTC): one item per principal,
   * eventually consistent (GET /stats; the quota gate reads strongly with readGpuUsage). Every
   * owner asked for is in the map.
   */
  async readGpuSecondsToday(owners: readonly string[], now: Date): Promise<Map<string, number>> {
    const day = dayUsageSk(usageWindows(now).day);
    const unique = [...new Set(owners)];
    const found = await this.batchGet(
      unique.map((owner) => ({ pk: principalPk(owner), sk: day })),
      false,
    );
    const today = new Map<string, number>(unique.map((owner) => [owner, 0]));
    for (const item of found) {
      const owner = String(item.pk).slice(principalPk("").length);
      if (today.has(owner)) today.set(owner, numberOf(item.gpuSeconds));
    }
    return today;
  }

  /**
   * Mean run time in ms of each type's successful attempts over today and the 6 days before
   * (UTC); only types with at least one attempt recorded are in the map.
   */
  async readRunTimes(types: readonly string[], now: Date): Promise<Map<string, number>> {
    const days = Array.from(
      { length: RUNTIME_DAYS },
      (_, i) => usageWindows(new Date(now.getTime() - i * DAY_MS)).day,
    );
    const unique = [...new Set(types)];
    const found = await this.batchGet(
      unique.flatMap((type) => days.map((day) => ({ pk: runtimePk(type), sk: runtimeSk(day) }))),
      false,
    );
    const totals = new Map<string, { count: number; totalMs: number }>();
    for (const item of found) {
      const type = String(item.pk).slice(runtimePk("").length);
      const total = totals.get(type) ?? { count: 0, totalMs: 0 };
      total.count += numberOf(item.count);
      total.totalMs += numberOf(item.totalMs);
      totals.set(type, total);
    }
    const means = new Map<string, number>();
    for (const [type, { count, totalMs }] of totals) if (count > 0) means.set(type, totalMs / count);
    return means;
  }

  /** Items of many keys, in BatchGets of 100, retrying unprocessed keys; missing ones are absent. */
  private async batchGet(keys: readonly Key[], consistent: boolean): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    for (let i = 0; i < keys.length; i += BATCH_GET_LIMIT) {
      let chunk: Key[] = keys.slice(i, i + BATCH_GET_LIMIT);
      for (let round = 0; chunk.length > 0; round++) {
        const out = await this.db.send(
          new BatchGetCommand({
            RequestItems: { [this.tableName]: { Keys: chunk, ConsistentRead: consistent } },
          }),
        );
        items.push(...(out.Responses?.[this.tableName] ?? []));
        chunk = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Key[];
        if (chunk.length > 0) await backoff(round);
      }
    }
    return items;
  }
}

function numberOf(value: unknown): number {
  const n = Number(value);
  return Number.isFinite(n) ? n : 0;
}

async function backoff(round: number): Promise<void> {
  const ms = Math.min(1000, 25 * 2 ** round) * (0.5 + Math.random() / 2);
  await new Promise((resolve) => setTimeout(resolve, ms));
}
