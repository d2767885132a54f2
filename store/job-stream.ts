import type { AttributeValue as SdkAttributeValue } from "@aws-sdk/client-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import type { AttributeValue, DynamoDBRecord } from "aws-lambda";
import { JOB_STATUSES, type Job, type JobStatus, TERMINAL_STATUSES } from "../core/job";
import type { ImageCost, JobChange, JobImage } from "../core/stats";
import { isAnnounced } from "../core/stream";
import { fromJobItem } from "./job-items";
import { JOB_SK } from "./keys";

/**
 * The Jobs table's change stream (store/tables.ts: NEW_AND_OLD_IMAGES, as Lambda delivers it)
 * read as job changes, for both of its consumers: the broadcaster's announced status changes
 * (core/stream.ts) and the /stats fold's job images (core/stats.ts). Only the job item itself
 * (sk = "JOB") is a job; results, attempts, logs, transitions and edges share its partition and
 * are skipped here.
 */

/** A record's job item before and after the write, as plain items. */
export interface JobItemImages {
  /** The record's sequence number: what a partial batch failure names to be retried from. */
  readonly sequence: string;
  readonly old: Record<string, unknown> | null;
  readonly new: Record<string, unknown> | null;
}

/**
 * Whether a record is of a job item (`sk = JOB`): the key filter every consumer's event source has
 * in AWS (lib/job-stream-source.ts), so transitions, attempts, logs and edges, which share the
 * job's partition and change more often, invoke no consumer.
 */
export function isJobItemRecord(record: DynamoDBRecord): boolean {
  return record.dynamodb?.Keys?.sk?.S === JOB_SK;
}

/** The record's job item images, or null for a record of any other item. */
export function jobItemImages(record: DynamoDBRecord): JobItemImages | null {
  const stream = record.dynamodb;
  // The keys first: most records are of other items, and their images need not be read.
  const keySk = stream?.Keys?.sk?.S;
  if (keySk !== undefined && keySk !== JOB_SK) return null;
  const old = plainItem(stream?.OldImage);
  const next = plainItem(stream?.NewImage);
  if ((old ?? next)?.sk !== JOB_SK) return null;
  return { sequence: stream?.SequenceNumber ?? "", old, new: next };
}

/**
 * The id of the job a record shows becoming `completed` (the dependents consumer's one question),
 * or null: a record of another item, of another status, or of a completed job written again.
 */
export function completedJobOf(record: DynamoDBRecord): string | null {
  const completed = completedImage(record);
  return typeof completed?.id === "string" ? completed.id : null;
}

/** The new image of a job item that became `completed` with this record, or null. */
function completedImage(record: DynamoDBRecord): Record<string, unknown> | null {
  const images = jobItemImages(record);
  const completed = images?.new;
  if (completed?.status !== "completed" || images?.old?.status === "completed") return null;
  return completed;
}

/**
 * Whether a record asks the dependents consumer for anything: a job that became `completed` and
 * may have dependents (no `noDependents` mark: store/job-items.ts) or was a circuit breaker's
 * probe. The consumer's event source filters the same way (lib/job-lifecycle.ts), so a job
 * nothing waits on costs no invocation and no Query of its edges.
 */
export function asksDependentsConsumer(record: DynamoDBRecord): boolean {
  const completed = completedImage(record);
  if (typeof completed?.id !== "string") return false;
  return completed.noDependents !== true || typeof completed.circuitProbe === "string";
}

/** Whether a completed job's image says no job waits on it (its `noDependents` mark). */
export function completedWithoutDependents(record: DynamoDBRecord): boolean {
  return jobItemImages(record)?.new?.noDependents === true;
}

/** A job that became `completed` as the probe of a half-open circuit breaker: its id and the breaker's key. */
export function completedProbeOf(record: DynamoDBRecord): { jobId: string; key: string } | null {
  const jobId = completedJobOf(record);
  const key = jobItemImages(record)?.new?.circuitProbe;
  return jobId !== null && typeof key === "string" ? { jobId, key } : null;
}

/**
 * What a record asks of the scheduler: a pass over the job's pool (null: every pool) when the
 * write added work (the job became `queued`) or freed capacity (it gave up its reservation), else
 * null. The scheduler's wake-ups ride the stream (its event source filters the same way,
 * lib/scheduler.ts), so they cost no event and every change that matters is seen.
 */
export function schedulerWakeOf(record: DynamoDBRecord): { readonly pool: string | null } | null {
  const images = jobItemImages(record);
  if (!images) return null;
  const before = images.old;
  const after = images.new;
  // A staged job (a large batch's, before its commit) is not in the queue yet: its commit is
  // the write that queues it.
  const queued = after?.status === "queued" && after.staged !== true;
  if (queued && (before?.status !== "queued" || before.staged === true)) {
    return { pool: typeof after.pool === "string" ? after.pool : null };
  }
  const held = reservationPool(before);
  if (held !== undefined && reservationPool(after) === undefined) return { pool: held };
  return null;
}

function reservationPool(item: Record<string, unknown> | null): string | undefined {
  const reservation = item?.reservation;
  if (typeof reservation !== "object" || reservation === null) return undefined;
  const pool = (reservation as Record<string, unknown>).pool;
  return typeof pool === "string" ? pool : undefined;
}

function plainItem(image: Record<string, AttributeValue> | undefined): Record<string, unknown> | null {
  // aws-lambda's AttributeValue and the SDK's describe the same DynamoDB JSON.
  return image ? unmarshall(image as Record<string, SdkAttributeValue>) : null;
}

// ---------------------------------------------------------------------------------------------
// The broadcaster's view
// ---------------------------------------------------------------------------------------------

export interface AnnouncedChange {
  /** The record's sequence number: what a partial batch failure names to be retried from. */
  readonly sequenceNumber: string;
  /** The job after the change, as the API shows it (payload and result still in). */
  readonly job: Job;
}

/** The announced job changes of a batch, in the stream's order. Other items are skipped. */
export function announcedChanges(records: readonly DynamoDBRecord[]): AnnouncedChange[] {
  const changes: AnnouncedChange[] = [];
  for (const record of records) {
    const images = jobItemImages(record);
    if (!images) continue;
    const announced = isAnnounced({
      oldStatus: statusOf(images.old),
      oldStaged: images.old?.staged === true,
      newStatus: statusOf(images.new),
      newStaged: images.new?.staged === true,
    });
    if (!announced || !images.new) continue;
    changes.push({ sequenceNumber: images.sequence, job: fromJobItem(images.new) });
  }
  return changes;
}

function statusOf(item: Record<string, unknown> | null): JobStatus | null {
  return typeof item?.status === "string" ? (item.status as JobStatus) : null;
}

// ---------------------------------------------------------------------------------------------
// The /stats fold's view
// ---------------------------------------------------------------------------------------------

const STATUS_SET: ReadonlySet<string> = new Set(JOB_STATUSES);

/** A job item image (DynamoDB JSON) as the stats fold reads it; null for anything that is not a job item. */
export function jobImageOf(image: Record<string, AttributeValue> | undefined): JobImage | null {
  return jobImageOfItem(plainItem(image));
}

function jobImageOfItem(item: Record<string, unknown> | null): JobImage | null {
  if (!item) return null;
  const text = (v: unknown): string | null => (typeof v === "string" && v !== "" ? v : null);
  const status = text(item.status);
  const id = text(item.id);
  if (item.sk !== JOB_SK || item.entity !== "job" || !id || !status || !STATUS_SET.has(status)) return null;
  const reservation = item.reservation as { pool?: unknown } | null | undefined;
  return {
    id,
    status: status as JobStatus,
    owner: text(item.owner) ?? "",
    project: text(item.project),
    type: text(item.type) ?? "",
    pool: text(item.pool),
    reservationPool: text(reservation?.pool),
    createdAt: text(item.createdAt) ?? "",
    updatedAt: text(item.updatedAt) ?? text(item.createdAt) ?? "",
    queuedAt: text(item.queuedAt),
    attemptStartedAt: text(item.attemptStartedAt),
    staged: item.staged === true,
  };
}

/**
 * A record's job change, or null when it concerns no job item (or carries no sequence number).
 * `costOf` prices the new image of a job that ended (app/cost.ts), for the /stats cost sums.
 */
export function jobChangeOf(
  record: DynamoDBRecord,
  costOf?: (item: Record<string, unknown>) => ImageCost,
): (JobChange & { readonly sequence: string }) | null {
  const images = jobItemImages(record);
  if (!images?.sequence) return null;
  const old = jobImageOfItem(images.old);
  const image = jobImageOfItem(images.new);
  const next =
    image && costOf && images.new && TERMINAL_STATUSES.has(image.status)
      ? { ...image, cost: costOf(images.new) }
      : image;
  if (!old && !next) return null;
  return { sequence: images.sequence, old, new: next };
}
