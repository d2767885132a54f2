import { z } from "zod";
import type { Job, JobStatus } from "./job";
import type { Principal } from "./principal";

/**
 * The job stream (WS /jobs/stream) as pure rules: which changes of the jobs table become
 * messages, what a message carries, who may receive it, and what a client may ask for. The
 * broadcaster (app/stream.ts) applies them to DynamoDB stream records in AWS and locally alike.
 */

/** A job as the stream sends it: without payload and result (an API Gateway frame holds 128 KB). */
export type StreamedJob = Omit<Job, "payload" | "result">;

export interface JobMessage {
  readonly type: "job";
  readonly job: StreamedJob;
}

export interface PongMessage {
  readonly type: "pong";
}

/** The answer to a message the server cannot act on; the connection stays open. */
export interface ErrorMessage {
  readonly type: "error";
  readonly error: {
    readonly code: "validation_failed";
    readonly message: string;
    readonly details?: unknown;
  };
}

/** The answer to a subscribe: what the connection now receives. */
export interface SubscribedMessage {
  readonly type: "subscribed";
  /** null: every job the principal can see. */
  readonly jobIds: readonly string[] | null;
}

export type ServerMessage = JobMessage | PongMessage | ErrorMessage | SubscribedMessage;

/** At most this many job ids in one narrowed subscription (an item stays far below 400 KB). */
export const MAX_SUBSCRIBED_JOBS = 1000;

const jobIdSchema = z.string().regex(/^job_[0-9A-HJKMNP-TV-Z]{26}(-\d{1,4})?$/, "is not a job id");

/** What a client may send. */
export const clientMessageSchema = z.union([
  z.strictObject({ action: z.literal("ping") }),
  z.strictObject({
    action: z.literal("subscribe"),
    jobIds: z.array(jobIdSchema).min(1).max(MAX_SUBSCRIBED_JOBS),
  }),
  z.strictObject({ action: z.literal("subscribe"), all: z.literal(true) }),
]);
export type ClientMessage = z.infer<typeof clientMessageSchema>;

/** What the broadcaster needs of a job change, from a stream record's images. */
export interface JobImageChange {
  /** The stored job before the write; null for an insert. */
  readonly oldStatus: JobStatus | null;
  /** The job after the write (null for a delete). */
  readonly newJob: Job | null;
}

/**
 * Whether a write to a job item is a status change the stream announces: an insert of a visible
 * job (a submission) or a write whose status differs from the one before. Staged jobs (a large
 * batch being written) are invisible to every read until committed, and so to the stream: their
 * commit, which changes no status, is announced as the job's first appearance.
 */
export function isAnnounced(change: {
  readonly oldStatus: JobStatus | null;
  readonly oldStaged: boolean;
  readonly newStatus: JobStatus | null;
  readonly newStaged: boolean;
}): boolean {
  if (change.newStatus === null || change.newStaged) return false;
  if (change.oldStatus === null || change.oldStaged) return true;
  return change.oldStatus !== change.newStatus;
}

export function jobMessage(job: Job): JobMessage {
  const { payload: _payload, result: _result, ...streamed } = job;
  return { type: "job", job: streamed };
}

/** A subscriber's partition in the connections table: admins share one, each user has their own. */
export function subscriberKey(principal: Principal): string {
  return principal.admin ? ADMIN_SUBSCRIBERS : `P#${principal.id}`;
}

export const ADMIN_SUBSCRIBERS = "ADMIN";

/** The subscriber partitions a job's changes go to: its owner's and the admins'. */
export function audienceKeys(owner: string): readonly string[] {
  return [`P#${owner}`, ADMIN_SUBSCRIBERS];
}

/**
 * Whether a connection receives a message about this job: its principal may see the job (owner
 * or admin, as everywhere in the API) and, when it narrowed its subscription, the job is in it.
 */
export function receives(
  connection: { readonly principal: Principal; readonly jobIds: readonly string[] | null },
  job: Pick<Job, "id" | "owner">,
): boolean {
  const visible = connection.principal.admin || connection.principal.id === job.owner;
  return visible && (connection.jobIds === null || connection.jobIds.includes(job.id));
}

/** Close codes the local stream uses besides WebSocket's standard ones (docs/stream.md). */
export const STREAM_CLOSE = {
  /** The client read too slowly: its unsent messages passed the server's bound. */
  tooSlow: { code: 4008, reason: "client too slow" },
} as const;
