import middy from "@middy/core";
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from "aws-lambda";
import { broadcast } from "../../app/stream";
import { broadcastContext } from "../../app/stream-runtime";
import { logger } from "../http";
import { observability } from "../observability";

// Built at import, Lambda's init: without JOBQ_STREAM_ENDPOINT (or with a bad variable) the
// cold start fails, not every batch. Locally the stream poller imports this module only after the
// API server listens and the stream's variables are set.
const ctx = broadcastContext();

/**
 * The jobs table's change stream → WebSocket messages (app/stream.ts broadcast). Reports the
 * first record it could not deliver (ReportBatchItemFailures), so the event source retries from
 * there; in AWS a Lambda event source mapping calls it, locally local/dynamo-streams.ts.
 */
export const handler = middy(async (event: DynamoDBStreamEvent): Promise<DynamoDBBatchResponse> => {
  const outcome = await broadcast(ctx, event.Records ?? []);
  if (outcome.messages > 0) {
    logger.debug("broadcast", { messages: outcome.messages, sent: outcome.sent, gone: outcome.gone });
  }
  return { batchItemFailures: outcome.batchItemFailures };
}).use(observability());
