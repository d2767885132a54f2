import { Duration } from "aws-cdk-lib";
import type * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { DynamoEventSource, type DynamoEventSourceProps, SqsDlq } from "aws-cdk-lib/aws-lambda-event-sources";
import * as sqs from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import { JOB_SK } from "../store/keys";

/** A Lambda filter pattern over a Jobs table stream record, beside the job-item key filter. */
export interface JobRecordPattern {
  readonly eventName?: readonly ("INSERT" | "MODIFY" | "REMOVE")[];
  readonly dynamodb?: { readonly NewImage?: object; readonly OldImage?: object };
}

/**
 * A consumer of the Jobs table's stream: the function's event source on it and the queue where
 * the batches it gives up on go (`FailedBatches` in `scope`). Only the job item's records invoke
 * the function (filtered records cost nothing): attempts, logs, transitions and edges share its
 * partition and change far more often. Each consumer says how it reads: position, batching,
 * retries, partial failures.
 */
export function consumeJobStream(
  scope: Construct,
  fn: lambda.IFunction,
  jobsTable: dynamodb.ITable,
  reading: Omit<DynamoEventSourceProps, "onFailure" | "filters">,
  /**
   * Record patterns (Lambda filter criteria: `eventName`, `dynamodb.NewImage`/`OldImage`), any of
   * which invokes the function: a consumer of some changes only. @default every job item record
   */
  patterns: readonly JobRecordPattern[] = [{}],
): sqs.Queue {
  const failedBatches = new sqs.Queue(scope, "FailedBatches", {
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: Duration.days(14),
  });
  fn.addEventSource(
    new DynamoEventSource(jobsTable, {
      ...reading,
      onFailure: new SqsDlq(failedBatches),
      filters: patterns.map(({ eventName, dynamodb }) =>
        lambda.FilterCriteria.filter({
          ...(eventName ? { eventName } : {}),
          dynamodb: { Keys: { sk: { S: lambda.FilterRule.isEqual(JOB_SK) } }, ...dynamodb },
        }),
      ),
    }),
  );
  return failedBatches;
}
