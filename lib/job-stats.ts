import { fileURLToPath } from "node:url";
import { Duration, RemovalPolicy } from "aws-cdk-lib";
import * as lambda from "aws-cdk-lib/aws-lambda";
import type * as nodejs from "aws-cdk-lib/aws-lambda-nodejs";
import type * as logs from "aws-cdk-lib/aws-logs";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { STATS_CONSUMER } from "../functions/stats-settings";
import type { JobStore } from "./job-store";
import { consumeJobStream } from "./job-stream-source";
import { jobqFunction } from "./jobq-function";
import { checkNumber } from "./validate-props";

/** functions/stats-stream.ts of this repository. */
export const DEFAULT_STATS_ENTRY = fileURLToPath(new URL("../functions/stats-stream.ts", import.meta.url));

export interface JobStatsProps {
  /**
   * The tables: the Jobs table's stream is folded into the aggregates, which live in the Policy
   * table (store/stats.ts).
   */
  readonly store: JobStore;
  /** The functions' shared configuration (lib/jobq-function.ts#runtimeEnvironment). */
  readonly environment: Record<string, string>;
  /** @default DEFAULT_STATS_ENTRY */
  readonly entry?: string;
  /**
   * Redeliveries of a chunk the consumer could not apply before its records go to the failure
   * queue (a figure is lost, the shard moves on); 0 to 10,000.
   * @default 10
   */
  readonly retryAttempts?: number;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** The documented limits of JobStatsProps, checked at synth. */
export function validateJobStatsProps(scope: Construct, props: Pick<JobStatsProps, "retryAttempts">): void {
  checkNumber(scope, "retryAttempts", props.retryAttempts, {
    min: 0,
    max: 10_000,
    integer: true,
    why: "Lambda's limit for a DynamoDB stream",
  });
}

/**
 * GET /stats's aggregates in AWS: a Lambda on the Jobs table's stream (no request charge for the
 * reads) that folds each batch of status changes into per-minute, per-hour, gauge and owner items
 * of the Policy table, a few transactions per batch rather than a write per job (docs/stats.md).
 * Its exactly-once counting relies on the event source settings of STATS_CONSUMER: failures
 * reported per record and batches never bisected.
 */
export class JobStats extends Construct {
  public readonly consumer: nodejs.NodejsFunction;
  /** Stream records the consumer gave up on (by shard and sequence number). */
  public readonly failedBatches: sqs.Queue;

  constructor(scope: Construct, id: string, props: JobStatsProps) {
    super(scope, id);
    validateJobStatsProps(this, props);
    this.consumer = jobqFunction(this, "Consumer", {
      entry: props.entry ?? DEFAULT_STATS_ENTRY,
      environment: props.environment,
      logRetention: props.logRetention,
      logRemovalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
    });
    props.store.grantPolicy(this.consumer, STATS_CONSUMER.policyTable);

    const source = STATS_CONSUMER.eventSource;
    this.failedBatches = consumeJobStream(this, this.consumer, props.store.jobsTable, {
      startingPosition: lambda.StartingPosition[source.startingPosition],
      batchSize: source.batchSize,
      maxBatchingWindow: Duration.seconds(source.maxBatchingWindowSeconds),
      reportBatchItemFailures: source.reportBatchItemFailures,
      bisectBatchOnError: source.bisectBatchOnError,
      parallelizationFactor: source.parallelizationFactor,
      retryAttempts: props.retryAttempts ?? 10,
    });
  }
}
