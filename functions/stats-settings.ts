/**
 * What the CDK stack must give this consumer (as data, like functions/routes.ts): its actions on
 * the Policy table (the transaction's ADDs and receipt Put, the receipt read after a refusal, the
 * idle owners' conditional delete) and the event source settings its exactly-once relies on
 * (docs/stats.md): failures reported per record, never bisected, one batch per shard at a time.
 */
export const STATS_CONSUMER = {
  policyTable: ["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:DeleteItem"],
  eventSource: {
    startingPosition: "LATEST",
    batchSize: 1000,
    maxBatchingWindowSeconds: 10,
    reportBatchItemFailures: true,
    bisectBatchOnError: false,
    parallelizationFactor: 1,
  },
} as const;
