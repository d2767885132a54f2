import { DescribeTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  ExpiredIteratorException,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type _Record as StreamsRecord,
  TrimmedDataAccessException,
} from "@aws-sdk/client-dynamodb-streams";
import type { DynamoDBRecord } from "aws-lambda";
import { invokeHandler, type LambdaHandler } from "./lambda";

/**
 * The local Lambda event source mapping for DynamoDB Streams: reads a table's stream from
 * DynamoDB Local (GetShardIterator / GetRecords on the same endpoint) and invokes each consumer's
 * handler with DynamoDBStreamEvent batches, in order per shard, as Lambda does in AWS. A batch a
 * consumer fails (it throws, or reports batchItemFailures) is retried from the failed record, up
 * to `retryAttempts` times, then skipped with a log line, like an event source mapping with
 * MaximumRetryAttempts. Consumers progress independently: one failing does not hold the others.
 */

export interface StreamConsumer {
  /** The function's name, for logs and the Lambda meter. */
  readonly name: string;
  /** Loaded on the first batch (handler modules read their environment once, when imported). */
  readonly load: () => Promise<LambdaHandler>;
  /** Records per invocation at most (the event source's BatchSize). @default the poller's batchSize */
  readonly batchSize?: number;
  /**
   * How long records gather before an invocation that is not full (MaximumBatchingWindow): a
   * consumer that writes per batch, not per record, is invoked as rarely locally as in AWS.
   * @default 0 (at once)
   */
  readonly batchWindowMs?: number;
  /**
   * The records that invoke it (its event source's filter criteria in AWS): others are dropped
   * before batching, at no invocation, as Lambda's filtering does. @default every record
   */
  readonly filter?: (record: DynamoDBRecord) => boolean;
}

export interface StreamPollerOptions {
  readonly endpoint: string;
  readonly region: string;
  readonly tableName: string;
  readonly consumers: readonly StreamConsumer[];
  /** Records per batch (GetRecords Limit). @default 100 */
  readonly batchSize?: number;
  /** Wait between polls of a shard that had nothing new. @default 50 */
  readonly idlePollMs?: number;
  /** Retries of a failed batch before it is skipped. @default 3 */
  readonly retryAttempts?: number;
  /** @default console.error */
  readonly log?: (message: string, error?: unknown) => void;
}

export interface StreamPoller {
  /**
   * Reads the shards now rather than after the idle wait: the local stack calls it when the API
   * has written, so a submission's wake-up reaches the scheduler without waiting out a poll.
   */
  poll(): void;
  stop(): Promise<void>;
}

/** How often the shard list is read again: DynamoDB rolls shards over every few hours. */
const DESCRIBE_EVERY_MS = 10_000;
const RETRY_DELAY_MS = 200;
/** Records a lane may hold before the poller stops reading (a consumer far behind). */
const MAX_PENDING_RECORDS = 10_000;

interface ShardState {
  /** Where the next GetRecords reads; undefined once the shard is closed and read out. */
  iterator: string | undefined;
  readonly done: boolean;
}

export async function startStreamPoller(options: StreamPollerOptions): Promise<StreamPoller> {
  const credentials = { accessKeyId: "local", secretAccessKey: "local" };
  const dynamo = new DynamoDBClient({ endpoint: options.endpoint, region: options.region, credentials });
  const streams = new DynamoDBStreamsClient({
    endpoint: options.endpoint,
    region: options.region,
    credentials,
  });
  const log = options.log ?? ((message, error) => console.error(`local streams: ${message}`, error ?? ""));
  const batchSize = options.batchSize ?? 100;
  const idlePollMs = options.idlePollMs ?? 50;
  const retryAttempts = options.retryAttempts ?? 3;

  const table = await dynamo.send(new DescribeTableCommand({ TableName: options.tableName }));
  dynamo.destroy();
  const streamArn = table.Table?.LatestStreamArn;
  if (!streamArn) throw new Error(`table ${options.tableName} has no stream (store/tables.ts: stream)`);

  const handlers = options.consumers.map((consumer) => {
    let loaded: Promise<LambdaHandler> | undefined;
    return () => {
      loaded ??= consumer.load();
      return loaded;
    };
  });

  // Shards open at start are read from now on (LATEST): what happened before this process is not
  // news to anyone connected now. Shards that appear later are read from their start.
  const shards = new Map<string, ShardState>();
  const knownAtStart = await describeShards(streams, streamArn);
  for (const shardId of knownAtStart.open) {
    const { ShardIterator } = await streams.send(
      new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shardId, ShardIteratorType: "LATEST" }),
    );
    shards.set(shardId, { iterator: ShardIterator, done: false });
  }
  for (const shardId of knownAtStart.closed) shards.set(shardId, { iterator: undefined, done: true });

  let stopped = false;
  /** Set by poll(): the loop reads again before it would next sleep. */
  let pollAgain = false;
  let wake: (() => void) | undefined;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  // One lane per consumer, as each event source mapping is its own in AWS: a consumer that
  // gathers records for its batching window, or retries a failure, holds up no other.
  const lanes = options.consumers.map((consumer, index) => ({
    consumer,
    load: handlers[index],
    pending: [] as DynamoDBRecord[],
    /** When the oldest pending record arrived. */
    since: 0,
    /** Wakes the lane's loop: records arrived, or the poller stops. */
    nudge: undefined as (() => void) | undefined,
  }));
  type Lane = (typeof lanes)[number];

  const deliver = async (lane: Lane, records: DynamoDBRecord[]): Promise<void> => {
    let remaining = records;
    for (let attempt = 0; remaining.length > 0 && !stopped; attempt++) {
      const failedFrom = await invoke(lane.consumer, lane.load, remaining, options.region).catch(
        (error: unknown) => {
          log(`${lane.consumer.name} failed a batch of ${remaining.length}`, error);
          return 0;
        },
      );
      if (failedFrom === undefined) return;
      remaining = remaining.slice(failedFrom);
      if (attempt >= retryAttempts) {
        log(`${lane.consumer.name}: ${remaining.length} records skipped after ${retryAttempts} retries`);
        return;
      }
      await sleep(RETRY_DELAY_MS);
    }
  };

  const runLane = async (lane: Lane): Promise<void> => {
    const size = lane.consumer.batchSize ?? batchSize;
    const windowMs = lane.consumer.batchWindowMs ?? 0;
    while (!stopped) {
      const wait =
        lane.pending.length === 0
          ? Number.POSITIVE_INFINITY
          : lane.pending.length >= size
            ? 0
            : lane.since + windowMs - Date.now();
      if (wait > 0) {
        await new Promise<void>((resolve) => {
          const timer = Number.isFinite(wait) ? setTimeout(resolve, wait) : undefined;
          lane.nudge = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        lane.nudge = undefined;
        continue;
      }
      const batch = lane.pending.splice(0, size);
      lane.since = Date.now();
      await deliver(lane, batch);
    }
  };
  const laneLoops = lanes.map(runLane);

  /** Hands records to every lane; waits while a lane is far behind, so memory stays bounded. */
  const enqueue = async (records: DynamoDBRecord[]): Promise<void> => {
    for (const lane of lanes) {
      const { filter } = lane.consumer;
      const matching = filter ? records.filter(filter) : records;
      if (matching.length === 0) continue;
      if (lane.pending.length === 0) lane.since = Date.now();
      lane.pending.push(...matching);
      lane.nudge?.();
    }
    while (!stopped && lanes.some((lane) => lane.pending.length > MAX_PENDING_RECORDS))
      await sleep(idlePollMs);
  };

  const loop = async (): Promise<void> => {
    let describedAt = Date.now();
    while (!stopped) {
      let busy = false;
      pollAgain = false;
      for (const [shardId, shard] of shards) {
        if (stopped) break;
        if (shard.done || shard.iterator === undefined) continue;
        try {
          const page = await streams.send(
            new GetRecordsCommand({ ShardIterator: shard.iterator, Limit: batchSize }),
          );
          shard.iterator = page.NextShardIterator;
          if (shard.iterator === undefined) {
            shards.set(shardId, { iterator: undefined, done: true });
            // A read-out shard has a successor already taking writes: find it now, not at the
            // next listing (up to DESCRIBE_EVERY_MS away), or a wake-up written there waits.
            describedAt = 0;
          }
          const records = (page.Records ?? []).map((record) =>
            lambdaRecord(record, streamArn, options.region),
          );
          if (records.length > 0) {
            busy = true;
            await enqueue(records);
          }
        } catch (error) {
          if (stopped) break;
          if (error instanceof ExpiredIteratorException || error instanceof TrimmedDataAccessException) {
            // Read again from the shard's oldest record still held: at least once, never a gap.
            shard.iterator = await iterator(streams, streamArn, shardId, "TRIM_HORIZON").catch(
              () => undefined,
            );
          } else {
            log(`reading shard ${shardId} failed`, error);
          }
        }
      }
      if (Date.now() - describedAt >= DESCRIBE_EVERY_MS) {
        describedAt = Date.now();
        try {
          const current = await describeShards(streams, streamArn);
          for (const shardId of current.open) {
            if (shards.has(shardId)) continue;
            shards.set(shardId, {
              iterator: await iterator(streams, streamArn, shardId, "TRIM_HORIZON"),
              done: false,
            });
          }
        } catch (error) {
          if (!stopped) log("describing the stream failed", error);
        }
      }
      if (!busy && !stopped && !pollAgain) await sleep(idlePollMs);
    }
  };
  const running = loop();

  return {
    poll: () => {
      pollAgain = true;
      wake?.();
    },
    stop: async () => {
      stopped = true;
      wake?.();
      for (const lane of lanes) lane.nudge?.();
      await running;
      await Promise.all(laneLoops);
      // What a lane was still gathering is handed over once: the next start reads from LATEST.
      await Promise.all(
        lanes
          .filter((lane) => lane.pending.length > 0)
          .map((lane) =>
            invoke(lane.consumer, lane.load, lane.pending.splice(0), options.region).catch((error: unknown) =>
              log(`${lane.consumer.name} failed its last batch at stop`, error),
            ),
          ),
      );
      streams.destroy();
    },
  };
}

/**
 * One invocation; the index of the first failed record (a thrown error fails the whole batch), or
 * undefined when every record was taken.
 */
async function invoke(
  consumer: StreamConsumer,
  load: (() => Promise<LambdaHandler>) | undefined,
  records: DynamoDBRecord[],
  region: string,
): Promise<number | undefined> {
  if (!load) return undefined;
  const result = (await invokeHandler(await load(), consumer.name, { Records: records }, region)) as {
    batchItemFailures?: { itemIdentifier?: string }[];
  } | null;
  const failed = result?.batchItemFailures?.[0]?.itemIdentifier;
  if (failed === undefined) return undefined;
  const index = records.findIndex((record) => record.dynamodb?.SequenceNumber === failed);
  return Math.max(index, 0);
}

async function describeShards(
  streams: DynamoDBStreamsClient,
  streamArn: string,
): Promise<{ open: string[]; closed: string[] }> {
  const open: string[] = [];
  const closed: string[] = [];
  let start: string | undefined;
  do {
    const { StreamDescription } = await streams.send(
      new DescribeStreamCommand({ StreamArn: streamArn, ExclusiveStartShardId: start }),
    );
    for (const shard of StreamDescription?.Shards ?? []) {
      if (!shard.ShardId) continue;
      if (shard.SequenceNumberRange?.EndingSequenceNumber) closed.push(shard.ShardId);
      else open.push(shard.ShardId);
    }
    start = StreamDescription?.LastEvaluatedShardId;
  } while (start);
  return { open, closed };
}

async function iterator(
  streams: DynamoDBStreamsClient,
  streamArn: string,
  shardId: string,
  type: "TRIM_HORIZON" | "LATEST",
): Promise<string | undefined> {
  const { ShardIterator } = await streams.send(
    new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shardId, ShardIteratorType: type }),
  );
  return ShardIterator;
}

/** A GetRecords record in the shape Lambda hands a function (JSON: times as epoch seconds). */
function lambdaRecord(record: StreamsRecord, streamArn: string, region: string): DynamoDBRecord {
  const stream = record.dynamodb;
  const created = stream?.ApproximateCreationDateTime;
  return JSON.parse(
    JSON.stringify({
      eventID: record.eventID,
      eventName: record.eventName,
      eventVersion: record.eventVersion ?? "1.1",
      eventSource: "aws:dynamodb",
      awsRegion: region,
      eventSourceARN: streamArn,
      dynamodb: {
        ...stream,
        ApproximateCreationDateTime: created ? Math.floor(new Date(created).getTime() / 1000) : undefined,
      },
    }),
  ) as DynamoDBRecord;
}
