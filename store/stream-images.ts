import type { AttributeValue, DynamoDBRecord } from "aws-lambda";
import { JOB_STATUSES, type JobStatus } from "../core/job";
import type { JobChange, JobImage } from "../core/stats";
import { JOB_SK } from "./keys";

/**
 * Jobs-table stream records (DynamoDB Streams, NEW_AND_OLD_IMAGES, as Lambda delivers them) as
 * job changes: only the job item itself (sk = "JOB") is a job; results, attempts, logs,
 * transitions and edges live in the same table and are skipped here.
 */

/** A stream image (DynamoDB JSON) as plain values; binary and sets are kept as their raw form. */
export function unmarshallImage(image: Record<string, AttributeValue>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(image)) {
    Object.defineProperty(out, name, {
      value: plainValue(value),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function plainValue(value: AttributeValue): unknown {
  if (value.S !== undefined) return value.S;
  if (value.N !== undefined) return Number(value.N);
  if (value.BOOL !== undefined) return value.BOOL;
  if (value.NULL !== undefined) return null;
  if (value.M !== undefined) return unmarshallImage(value.M);
  if (value.L !== undefined) return value.L.map(plainValue);
  if (value.SS !== undefined) return value.SS;
  if (value.NS !== undefined) return value.NS.map(Number);
  return value.B ?? value.BS ?? null;
}

const STATUS_SET: ReadonlySet<string> = new Set(JOB_STATUSES);

/** A job item image as the stats fold reads it; null for anything that is not a job item. */
export function jobImageOf(image: Record<string, AttributeValue> | undefined): JobImage | null {
  if (!image) return null;
  const item = unmarshallImage(image);
  const text = (v: unknown): string | null => (typeof v === "string" && v !== "" ? v : null);
  const status = text(item.status);
  const id = text(item.id);
  if (item.sk !== JOB_SK || item.entity !== "job" || !id || !status || !STATUS_SET.has(status)) return null;
  const reservation = item.reservation as { pool?: unknown } | null | undefined;
  return {
    id,
    status: status as JobStatus,
    owner: text(item.owner) ?? "",
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

/** A record's job change, or null when it concerns no job item (or carries no sequence number). */
export function jobChangeOf(record: DynamoDBRecord): (JobChange & { readonly sequence: string }) | null {
  const sequence = record.dynamodb?.SequenceNumber;
  if (!sequence) return null;
  const old = jobImageOf(record.dynamodb?.OldImage);
  const next = jobImageOf(record.dynamodb?.NewImage);
  if (!old && !next) return null;
  return { sequence, old, new: next };
}
