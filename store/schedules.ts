import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
} from "@aws-sdk/lib-dynamodb";
import { type AuditAction, auditRecord } from "../core/audit";
import { ConcurrentUpdateError } from "../core/errors";
import { jitteredDueAt, type Schedule, type ScheduleFire } from "../core/schedule";
import { AuditLog, type AuditWrite, writeAudited } from "./audit";
import {
  SCHEDULE_DUE_PK,
  SCHEDULE_SK,
  SCHEDULES_PK,
  scheduleDueSk,
  scheduleItemPk,
  schedulesSk,
} from "./keys";
import { SCHEDULE_INDEX } from "./tables";

/**
 * Recurring schedules in the Policy table (store/tables.ts#policyTable, docs/schedules.md): one
 * item per schedule, `pk` = `SCHEDULE#<id>`, `sk` = `SCHEDULE`. Every write puts the whole item
 * with its index keys derived here, conditional on the version read, so no writer can let the
 * `schedules` or `scheduleDue` index drift from the schedule and no two writers lose an update.
 */

/** The job template is stored as JSON text, like a job's payload: it round-trips exactly. */
interface ScheduleItem extends Omit<Schedule, "job"> {
  readonly pk: string;
  readonly sk: string;
  readonly entity: "schedule";
  readonly jobJson: string;
  readonly schedulesPk: string;
  readonly schedulesSk: string;
  readonly scheduleDuePk?: string;
  readonly scheduleDueSk?: string;
}

/** Where a fire is due: the cron time plus the schedule's jitter; only enabled schedules are due. */
export function dueAtOf(
  schedule: Pick<Schedule, "id" | "enabled" | "nextRunAt" | "jitterSeconds">,
): string | null {
  if (!schedule.enabled || schedule.nextRunAt === null) return null;
  return jitteredDueAt(schedule.id, schedule.nextRunAt, schedule.jitterSeconds);
}

function toItem(schedule: Schedule): ScheduleItem {
  const { job, ...rest } = schedule;
  const dueAt = dueAtOf(schedule);
  return {
    ...rest,
    pk: scheduleItemPk(schedule.id),
    sk: SCHEDULE_SK,
    entity: "schedule",
    jobJson: JSON.stringify(job),
    schedulesPk: SCHEDULES_PK,
    schedulesSk: schedulesSk(schedule.owner, schedule.id),
    ...(dueAt === null
      ? {}
      : { scheduleDuePk: SCHEDULE_DUE_PK, scheduleDueSk: scheduleDueSk(dueAt, schedule.id) }),
  };
}

/** API.md's schedule, in a stable field order. */
function fromItem(item: Record<string, unknown>): Schedule {
  return {
    id: String(item.id),
    name: String(item.name),
    owner: String(item.owner),
    cron: String(item.cron),
    timezone: String(item.timezone),
    enabled: item.enabled === true,
    overlap: item.overlap === "skip" ? "skip" : "allow",
    jitterSeconds: typeof item.jitterSeconds === "number" ? item.jitterSeconds : 0,
    job: JSON.parse(String(item.jobJson)) as Record<string, unknown>,
    nextRunAt: typeof item.nextRunAt === "string" ? item.nextRunAt : null,
    lastFires: Array.isArray(item.lastFires) ? item.lastFires.map(fireOf) : [],
    lastJobId: typeof item.lastJobId === "string" ? item.lastJobId : null,
    createdAt: String(item.createdAt),
    updatedAt: String(item.updatedAt),
    version: Number(item.version),
  };
}

/** A stored fire in API.md's field order (DynamoDB keeps a map's keys in an order of its own). */
function fireOf(stored: Record<string, unknown>): ScheduleFire {
  const at = String(stored.at);
  const extra = {
    ...(stored.trigger === "manual" ? { trigger: "manual" as const } : {}),
    ...(typeof stored.missed === "number" ? { missed: stored.missed } : {}),
  };
  return typeof stored.jobId === "string"
    ? { at, jobId: stored.jobId, ...extra }
    : { at, skipped: String(stored.skipped), ...extra };
}

/**
 * A schedule as the audit trail shows it: what a person set, not what the tick keeps (next run,
 * last fires, version), so a record's before and after differ only where the change did.
 */
export function scheduleSettings(schedule: Schedule): Record<string, unknown> {
  const { id, name, owner, cron, timezone, enabled, overlap, jitterSeconds, job } = schedule;
  return { id, name, owner, cron, timezone, enabled, overlap, jitterSeconds, job };
}

/** Who changed a schedule, recorded in the same transaction as the change. */
export interface ScheduleChange {
  readonly by: string;
  readonly action: AuditAction;
  readonly before: Schedule | null;
}

function isConditionFailure(error: unknown): boolean {
  return error instanceof Error && error.name === "ConditionalCheckFailedException";
}

export interface SchedulePage {
  readonly items: Schedule[];
  /** The last `schedulesSk` read when more may follow. */
  readonly lastSortKey: string | undefined;
}

export class ScheduleRepository {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    readonly tableName: string,
  ) {}

  /** Strongly consistent: the tick decides a fire from it, PATCH writes on top of it. */
  async get(id: string): Promise<Schedule | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: scheduleItemPk(id), sk: SCHEDULE_SK },
        ConsistentRead: true,
      }),
    );
    return out.Item?.entity === "schedule" ? fromItem(out.Item) : undefined;
  }

  async create(schedule: Schedule, by?: string): Promise<void> {
    const put = {
      TableName: this.tableName,
      Item: toItem(schedule),
      ConditionExpression: "attribute_not_exists(pk)",
    };
    if (by === undefined) {
      await this.db.send(new PutCommand(put));
      return;
    }
    await writeAudited(
      this.db,
      { Put: put },
      this.auditOf(schedule.id, schedule.createdAt, { by, action: "create", before: null }, schedule),
    );
  }

  private auditOf(id: string, at: string, change: ScheduleChange, after: Schedule | null): AuditWrite {
    return new AuditLog(this.db, this.tableName).write(
      auditRecord({
        at,
        principal: change.by,
        kind: "schedule",
        subject: id,
        action: change.action,
        before: change.before ? scheduleSettings(change.before) : null,
        after: after ? scheduleSettings(after) : null,
      }),
    );
  }

  /**
   * Replaces the schedule if it is still at `expectedVersion`; `next.version` must be one more.
   * A lost race is a ConcurrentUpdateError: the caller re-reads and decides again.
   */
  async replace(next: Schedule, expectedVersion: number, change?: ScheduleChange): Promise<void> {
    const put = {
      TableName: this.tableName,
      Item: toItem(next),
      ConditionExpression: "version = :v",
      ExpressionAttributeValues: { ":v": expectedVersion },
    };
    try {
      if (change === undefined) await this.db.send(new PutCommand(put));
      else await writeAudited(this.db, { Put: put }, this.auditOf(next.id, next.updatedAt, change, next));
    } catch (error) {
      if (isConditionFailure(error)) {
        throw new ConcurrentUpdateError(`schedule ${next.id} changed since version ${expectedVersion}`, {
          cause: error,
        });
      }
      throw error;
    }
  }

  /** Deletes the schedule if it is still at `expectedVersion`; false when it changed or is gone. */
  async delete(
    id: string,
    expectedVersion: number,
    change?: ScheduleChange & { readonly at: string },
  ): Promise<boolean> {
    const del = {
      TableName: this.tableName,
      Key: { pk: scheduleItemPk(id), sk: SCHEDULE_SK },
      ConditionExpression: "version = :v",
      ExpressionAttributeValues: { ":v": expectedVersion },
    };
    try {
      if (change === undefined) await this.db.send(new DeleteCommand(del));
      else await writeAudited(this.db, { Delete: del }, this.auditOf(id, change.at, change, null));
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }

  /**
   * A page of schedules in `<owner>#<id>` order: one owner's (a prefix of the sort key) or, for
   * an admin, everyone's. `after` is the last sort key of the previous page.
   */
  async list(query: { owner?: string; after?: string; limit: number }): Promise<SchedulePage> {
    const afterId = query.after?.slice(query.after.lastIndexOf("#") + 1);
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: SCHEDULE_INDEX.schedules,
        KeyConditionExpression:
          query.owner === undefined
            ? "schedulesPk = :pk"
            : "schedulesPk = :pk AND begins_with(schedulesSk, :owner)",
        ExpressionAttributeValues: {
          ":pk": SCHEDULES_PK,
          ...(query.owner === undefined ? {} : { ":owner": `${query.owner}#` }),
        },
        ...(query.after !== undefined && afterId !== undefined
          ? {
              ExclusiveStartKey: {
                schedulesPk: SCHEDULES_PK,
                schedulesSk: query.after,
                pk: scheduleItemPk(afterId),
                sk: SCHEDULE_SK,
              },
            }
          : {}),
        Limit: query.limit,
      }),
    );
    const items = (out.Items ?? []).map(fromItem);
    const last = out.LastEvaluatedKey?.schedulesSk;
    return { items, lastSortKey: typeof last === "string" ? last : undefined };
  }

  /**
   * The ids of enabled schedules due at `now` (their cron time plus jitter has come), earliest
   * first: one Query of the sparse `scheduleDue` index, bounded by `limit`.
   */
  async dueIds(now: Date, limit: number): Promise<string[]> {
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: SCHEDULE_INDEX.scheduleDue,
        KeyConditionExpression: "scheduleDuePk = :pk AND scheduleDueSk <= :now",
        ExpressionAttributeValues: { ":pk": SCHEDULE_DUE_PK, ":now": `${now.toISOString()}#~` },
        Limit: limit,
      }),
    );
    return (out.Items ?? []).map((item) => {
      const sk = String(item.scheduleDueSk);
      return sk.slice(sk.lastIndexOf("#") + 1);
    });
  }
}
