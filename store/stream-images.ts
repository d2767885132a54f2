import type { AttributeValue as SdkAttributeValue } from "@aws-sdk/client-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import type { AttributeValue, DynamoDBRecord } from "aws-lambda";
import { JOB_STATUSES, type JobStatus } from "../core/job";
import type { JobChange, JobImage } from "../core/stats";
import { JOB_SK } from "./keys";

/**
 * Jobs-table stream records (DynamoDB Streams, NEW_AND_OLD_IMAGES, as Lambda delivers them) as
 * job changes: only the job item itself (sk = "JOB") is a job; results, attempts, logs,
 * transitions and edges live in the same table and are skipped here.
 */

const STATUS_SET: ReadonlySet<string> = new Set(JOB_STATUSES);

/** A job item image as the stats fold reads it; null for anything that is not a job item. */
export function jobImageOf(image: Record<string, AttributeValue> | undefined): JobImage | null {
  if (!image) return null;
  // aws-lambda's AttributeValue and the SDK's describe the same DynamoDB JSON.
  const item = unmarshall(image as Record<string, SdkAttributeValue>);
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
