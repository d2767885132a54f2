import type { DynamoDBBatchResponse, DynamoDBRecord } from "aws-lambda";
import type { Principal } from "../core/principal";
import {
  audienceKeys,
  clientMessageSchema,
  type JobMessage,
  jobMessage,
  receives,
  type ServerMessage,
} from "../core/stream";
import { fieldProblems } from "../core/validation";
import type { ConnectionRepository, StreamConnection } from "../store/connections";
import { announcedChanges } from "../store/job-stream";
import type { ConnectionSender } from "../store/stream-sender";
import { logger } from "./logger";
import { recordMetrics } from "./metrics";
import type { Clock } from "./runtime";

/**
 * The job stream's use cases: a connection opens, talks and closes ($connect, $default,
 * $disconnect), and the broadcaster turns a batch of the jobs table's change stream into one
 * message per announced change for every connection that may see it.
 */

export interface StreamContext {
  readonly connections: ConnectionRepository;
  readonly clock: Clock;
}

export interface BroadcastContext extends StreamContext {
  readonly sender: ConnectionSender;
}

export async function openConnection(
  ctx: StreamContext,
  connectionId: string,
  principal: Principal,
): Promise<void> {
  await ctx.connections.add(connectionId, principal, ctx.clock());
  recordMetrics({}, { streamConnections: 1 });
}

export async function closeConnection(ctx: StreamContext, connectionId: string): Promise<void> {
  await ctx.connections.remove(connectionId);
}

/** The largest client message read; anything bigger is refused unread (1000 ids fit in ~32 KB). */
const MAX_CLIENT_MESSAGE_BYTES = 64 * 1024;

/**
 * A client's message: ping, or subscribe (narrow to job ids, or widen to all). The answer goes back
 * on the same connection; a message the server cannot act on gets an error message, and the
 * connection stays open.
 */
export async function clientMessage(
  ctx: StreamContext,
  connectionId: string,
  body: string | null | undefined,
): Promise<ServerMessage> {
  if (body === null || body === undefined || Buffer.byteLength(body, "utf8") > MAX_CLIENT_MESSAGE_BYTES) {
    return invalid(`a message is a JSON object of at most ${MAX_CLIENT_MESSAGE_BYTES} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return invalid("the message is not valid JSON");
  }
  const parsed = clientMessageSchema.safeParse(json);
  if (!parsed.success) {
    return invalid(
      'expected {"action": "ping"}, {"action": "subscribe", "jobIds": [...]} or {"action": "subscribe", "all": true}',
      fieldProblems(parsed.error),
    );
  }
  const message = parsed.data;
  if (message.action === "ping") return { type: "pong" };
  const jobIds = "jobIds" in message ? [...new Set(message.jobIds)] : null;
  // A subscription to a job the principal cannot see is stored as asked and simply never
  // matches (core/stream.ts receives): answering differently would tell which ids exist.
  await ctx.connections.subscribe(connectionId, jobIds);
  return { type: "subscribed", jobIds };
}

function invalid(message: string, details?: unknown): ServerMessage {
  return { type: "error", error: { code: "validation_failed", message, ...(details ? { details } : {}) } };
}

/** Connections posted to at once; each connection's own messages go one after another, in order. */
const SEND_CONCURRENCY = 16;

export interface BroadcastOutcome extends DynamoDBBatchResponse {
  readonly messages: number;
  readonly sent: number;
  readonly gone: number;
}

/**
 * One batch of the jobs table's change stream: every announced change (core/stream.ts) goes to
 * each connection that may see the job, in the stream's order per connection. The audience is
 * read by Query per subscriber partition — the owners of the batch's jobs and the admins — never
 * by Scan. A connection that is gone (410) is deleted. A failed post stops that connection's
 * messages and names the earliest record not delivered as the batch's failure, so the event
 * source retries from there: delivery is at least once, and clients drop versions already seen.
 */
export async function broadcast(
  ctx: BroadcastContext,
  records: readonly DynamoDBRecord[],
): Promise<BroadcastOutcome> {
  const changes = announcedChanges(records);
  if (changes.length === 0) return { batchItemFailures: [], messages: 0, sent: 0, gone: 0 };

  const keys = [...new Set(changes.flatMap((change) => audienceKeys(change.job.owner)))];
  const audience = (await Promise.all(keys.map((key) => ctx.connections.ofSubscriber(key)))).flat();
  const messages = changes.map((change) => ({ ...change, message: jobMessage(change.job) }));
  const deliveries = audience
    .map((connection) => ({
      connection,
      messages: messages.filter((m) => receives(connection, m.job)),
    }))
    .filter((delivery) => delivery.messages.length > 0);

  let sent = 0;
  let gone = 0;
  let firstFailed: number | undefined;
  const deliver = async (delivery: {
    connection: StreamConnection;
    messages: { sequenceNumber: string; message: JobMessage }[];
  }): Promise<void> => {
    for (const [index, { message }] of delivery.messages.entries()) {
      try {
        const outcome = await ctx.sender.send(delivery.connection.connectionId, message);
        if (outcome === "gone") {
          gone++;
          await ctx.connections.remove(delivery.connection.connectionId);
          return;
        }
        sent++;
      } catch (error) {
        const position = messages.indexOf(delivery.messages[index] as (typeof messages)[number]);
        if (firstFailed === undefined || position < firstFailed) firstFailed = position;
        logger.warn("stream post failed; the batch is retried from this change", {
          connectionId: delivery.connection.connectionId,
          jobId: message.job.id,
          version: message.job.version,
          error: error as Error,
        });
        return;
      }
    }
  };
  await inBatches(deliveries, SEND_CONCURRENCY, deliver);
  if (sent > 0) recordMetrics({}, { streamPosts: sent });

  const failed = firstFailed === undefined ? undefined : messages[firstFailed];
  return {
    batchItemFailures: failed ? [{ itemIdentifier: failed.sequenceNumber }] : [],
    messages: messages.length,
    sent,
    gone,
  };
}

async function inBatches<T>(
  items: readonly T[],
  width: number,
  run: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++];
      if (item !== undefined) await run(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}
