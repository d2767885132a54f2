import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import type { DynamoDBRecord } from "aws-lambda";
import type { Job, JobStatus } from "../core/job";
import { isAnnounced } from "../core/stream";
import { fromJobItem } from "./job-items";
import { JOB_SK } from "./keys";

/**
 * The jobs table's change stream (store/tables.ts: NEW_AND_OLD_IMAGES) read as job changes: which
 * records are announced status changes (core/stream.ts) and the job each one leaves behind.
 */

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
    const stream = record.dynamodb;
    // Only the job item (sk = JOB); results, attempts, logs, transitions and edges share its partition.
    if (stream?.Keys?.sk?.S !== JOB_SK) continue;
    const oldImage = image(stream.OldImage);
    const newImage = image(stream.NewImage);
    const announced = isAnnounced({
      oldStatus: statusOf(oldImage),
      oldStaged: oldImage?.staged === true,
      newStatus: statusOf(newImage),
      newStaged: newImage?.staged === true,
    });
    if (!announced || !newImage) continue;
    changes.push({ sequenceNumber: stream.SequenceNumber ?? "", job: fromJobItem(newImage) });
  }
  return changes;
}

function image(value: Record<string, unknown> | undefined): Record<string, unknown> | null {
  // The Lambda event's and the SDK's AttributeValue types differ only in their TypeScript shape.
  return value ? unmarshall(value as Record<string, AttributeValue>) : null;
}

function statusOf(item: Record<string, unknown> | null): JobStatus | null {
  return typeof item?.status === "string" ? (item.status as JobStatus) : null;
}
