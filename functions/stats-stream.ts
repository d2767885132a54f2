import middy from "@middy/core";
import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from "aws-lambda";
import { costOfStreamItem, costSettings } from "../app/cost";
import { logger } from "../app/logger";
import { applyJobChanges, type SequencedChange, statsContext } from "../app/stats";
import { jobChangeOf } from "../store/job-stream";
import { observability } from "./observability";

export { STATS_CONSUMER } from "./stats-settings";

// Built at import, Lambda's init: a bad variable fails the cold start, not every batch.
const ctx = statsContext();
const settings = costSettings();

/**
 * The /stats consumer of the Jobs table's stream (NEW_AND_OLD_IMAGES). Its event source must
 * report batch item failures (`reportBatchItemFailures`) and must not bisect batches: a failed
 * chunk is reported by its first record, where Lambda resumes, and every chunk's receipt is
 * keyed by that record (app/stats.ts), which is what makes a redelivery count once.
 */
export const handler = middy<DynamoDBStreamEvent, DynamoDBBatchResponse>()
  .use(observability())
  .handler(async (event) => {
    const records: readonly DynamoDBRecord[] = event.Records ?? [];
    const changes: SequencedChange[] = [];
    for (const record of records) {
      const change = jobChangeOf(record, (item) => costOfStreamItem(item, settings));
      // A record of no job item still marks a place in the shard: kept as a change of nothing,
      // so chunk boundaries are the same on every delivery.
      const sequence = record.dynamodb?.SequenceNumber;
      if (change) changes.push(change);
      else if (sequence) changes.push({ sequence, old: null, new: null });
    }
    const result = await applyJobChanges(ctx, changes);
    if (result.replayed > 0)
      logger.info("stream records already applied were skipped", { replayed: result.replayed });
    return { batchItemFailures: result.failedAt ? [{ itemIdentifier: result.failedAt }] : [] };
  });
