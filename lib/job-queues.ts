import { Duration, Stack } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as iam from "aws-cdk-lib/aws-iam";
import * as sqs from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { PRIORITY_NAMES, type PriorityName } from "../core/job";
import type { PoolConfig } from "../core/pools";
import { checkDuration, checkNumber, PropValidationError } from "./validate-props";

/** The priority tiers, highest first (core/job.ts#priorityTier): one queue per pool and tier. */
export const TIERS = Object.keys(PRIORITY_NAMES) as readonly PriorityName[];

export interface JobQueuesProps {
  /** One set of tier queues per pool. */
  readonly pools: readonly Pick<PoolConfig, "name">[];
  /**
   * Receives of one dispatch message before it moves to its dead-letter queue. Not 5: a worker
   * hands a message back (visibility 0, or 1 s when the job fits neither its node nor a swap of
   * bookings) whenever it received more than it has room for, and each of those is a receive,
   * so a healthy message in a busy pool may be received several times before a node takes it.
   * 50 leaves room for that, and a message no worker can start still gets there.
   * @default 50
   */
  readonly maxReceiveCount?: number;
  /**
   * How long a received message stays hidden: from a worker's receive to its delete (after
   * the dispatched → running transaction), not the job's run time.
   * @default Duration.minutes(2)
   */
  readonly visibilityTimeout?: Duration;
}

/**
 * The most pools one stack deploys. Two limits meet there: Lambda refuses environments over 4 KB,
 * and every function carries JOBQ_QUEUES (five URLs of about 100 characters per pool) besides
 * JOBQ_POOLS, so six pools' come to about 4 KB; and CloudFormation allows 500 resources a stack,
 * of which each pool's queues take 20 and the control plane most of the rest. Refused at synth
 * with the reason, rather than failing half-way through a deploy.
 */
export const MAX_POOLS_PER_STACK = 5;

/** SQS's limit on a redrive policy's maxReceiveCount. */
const MAX_RECEIVE_COUNT_LIMIT = 1000;

/**
 * The documented limits of JobQueuesProps, checked at synth (SQS itself checks the visibility
 * timeout's 12 hours: aws-sqs/lib/validate-props.ts).
 */
export function validateJobQueuesProps(scope: Construct, props: JobQueuesProps): void {
  const count = props.pools.length;
  if (count < 1 || count > MAX_POOLS_PER_STACK)
    throw new PropValidationError(
      scope.node.path,
      "pools",
      `from 1 to ${MAX_POOLS_PER_STACK} pools`,
      `${count} pools`,
      "each pool adds five queue URLs to every function's 4 KB environment and 20 resources to the stack",
    );
  const names = props.pools.map((p) => p.name);
  const repeated = names.find((name, i) => names.indexOf(name) !== i);
  if (repeated !== undefined)
    throw new PropValidationError(scope.node.path, "pools", "named uniquely", `${repeated} twice`);
  checkNumber(scope, "maxReceiveCount", props.maxReceiveCount, {
    min: 1,
    max: MAX_RECEIVE_COUNT_LIMIT,
    integer: true,
    why: "SQS's redrive policy limit",
  });
  checkDuration(scope, "visibilityTimeout", props.visibilityTimeout, {
    max: Duration.hours(12),
    why: "SQS's limit",
  });
}

/** The five queues (or dead-letter queues) of one pool, by tier. */
export type TierQueues = Readonly<Record<PriorityName, sqs.Queue>>;

/**
 * The dispatch queues: one standard SQS queue per pool × priority tier, each with its own
 * dead-letter queue and an alarm on it. The lifecycle's Dispatch state sends a job there
 * (sqs:sendMessage.waitForTaskToken) and the pool's workers poll the tiers highest first.
 */
export class JobQueues extends Construct {
  /** By pool, then tier. */
  public readonly queues: Readonly<Record<string, TierQueues>>;
  public readonly deadLetterQueues: Readonly<Record<string, TierQueues>>;

  constructor(scope: Construct, id: string, props: JobQueuesProps) {
    super(scope, id);
    validateJobQueuesProps(this, props);
    const queues: Record<string, TierQueues> = {};
    const deadLetterQueues: Record<string, TierQueues> = {};

    for (const { name: pool } of props.pools) {
      const tierQueues = {} as Record<PriorityName, sqs.Queue>;
      const tierDlqs = {} as Record<PriorityName, sqs.Queue>;
      for (const tier of TIERS) {
        const dlq = new sqs.Queue(this, `${pool}-${tier}-dlq`, {
          encryption: sqs.QueueEncryption.SQS_MANAGED,
          enforceSSL: true,
          retentionPeriod: Duration.days(14),
        });
        tierQueues[tier] = new sqs.Queue(this, `${pool}-${tier}`, {
          // SQS-managed keys: encrypted at rest with no KMS key to pay for or grant on.
          encryption: sqs.QueueEncryption.SQS_MANAGED,
          enforceSSL: true,
          visibilityTimeout: props.visibilityTimeout ?? Duration.minutes(2),
          // The Dispatch state waits up to the job's timeout (at most 7 days) for a worker: the
          // message must outlive that wait, or the job would sit dispatched with nothing to take.
          retentionPeriod: Duration.days(14),
          deadLetterQueue: { queue: dlq, maxReceiveCount: props.maxReceiveCount ?? 50 },
        });
        tierDlqs[tier] = dlq;
      }
      queues[pool] = tierQueues;
      deadLetterQueues[pool] = tierDlqs;
    }
    this.queues = queues;
    this.deadLetterQueues = deadLetterQueues;
  }

  /**
   * Messages waiting in a pool and tier's dead-letter queue (the most seen in the period): any is
   * a dispatch no worker could take. The alarms on it live with the other paging alarms
   * (lib/job-monitoring.ts), in the Monitoring nested stack, away from this stack's 500 resources.
   */
  public metricDeadLetterMessages(
    pool: string,
    tier: PriorityName,
    props?: cloudwatch.MetricOptions,
  ): cloudwatch.Metric {
    const dlq = this.deadLetterQueues[pool]?.[tier];
    if (!dlq) throw new Error(`jobq: no dead-letter queue for pool ${pool}, tier ${tier}`);
    return dlq.metricApproximateNumberOfMessagesVisible({
      period: Duration.minutes(5),
      statistic: cloudwatch.Stats.MAXIMUM,
      ...props,
    });
  }

  /**
   * Messages waiting in one pool and tier's dispatch queue (SQS's ApproximateNumberOfMessagesVisible):
   * dispatched jobs no worker has taken yet.
   */
  public metricQueueDepth(
    pool: string,
    tier: PriorityName,
    props?: cloudwatch.MetricOptions,
  ): cloudwatch.Metric {
    return this.queueOf(pool, tier).metricApproximateNumberOfMessagesVisible({
      statistic: cloudwatch.Stats.MAXIMUM,
      ...props,
    });
  }

  /** Age in seconds of the oldest message in one pool and tier's dispatch queue. */
  public metricOldestMessageAge(
    pool: string,
    tier: PriorityName,
    props?: cloudwatch.MetricOptions,
  ): cloudwatch.Metric {
    return this.queueOf(pool, tier).metricApproximateAgeOfOldestMessage({
      statistic: cloudwatch.Stats.MAXIMUM,
      ...props,
    });
  }

  private queueOf(pool: string, tier: PriorityName): sqs.Queue {
    const queue = this.queues[pool]?.[tier];
    if (!queue) throw new Error(`jobq: no dispatch queue for pool ${pool}, tier ${tier}`);
    return queue;
  }

  /** `{pool: {tier: url}}`, as functions/config.ts reads JOBQ_QUEUES. */
  public get queueUrls(): Record<string, Record<PriorityName, string>> {
    return Object.fromEntries(
      Object.entries(this.queues).map(([pool, tiers]) => [
        pool,
        Object.fromEntries(TIERS.map((tier) => [tier, tiers[tier].queueUrl])) as Record<PriorityName, string>,
      ]),
    );
  }

  /** JOBQ_QUEUES: the URLs as one JSON string (resolved by CloudFormation at deploy). */
  public queueUrlsJson(): string {
    return Stack.of(this).toJsonString(this.queueUrls);
  }

  /** The pool's five queues, highest tier first. */
  public queuesOf(pool: string): sqs.Queue[] {
    const tiers = this.queues[pool];
    if (!tiers) throw new Error(`no queues for pool ${pool}`);
    return TIERS.map((tier) => tiers[tier]);
  }

  /** Every dispatch queue (not the dead-letter queues). */
  public get allQueues(): sqs.Queue[] {
    return Object.keys(this.queues).flatMap((pool) => this.queuesOf(pool));
  }

  /**
   * Dispatch: sqs:SendMessage only (no reads, no attribute calls) on the queues of one pool, or of
   * every pool; what the lifecycle's Dispatch state does. SQS-managed encryption needs no KMS grant.
   */
  public grantDispatch(grantee: iam.IGrantable, pool?: string): iam.Grant {
    const queues = pool === undefined ? this.allQueues : this.queuesOf(pool);
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ["sqs:SendMessage"],
      resourceArns: queues.map((q) => q.queueArn),
    });
  }

  /** Receive, delete and change visibility on one pool's queues: what that pool's workers do. */
  public grantConsume(grantee: iam.IGrantable, pool: string): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
      ],
      resourceArns: this.queuesOf(pool).map((q) => q.queueArn),
    });
  }

  /**
   * Messages waiting in the pool's five queues together (missing data counts as 0: SQS stops
   * reporting queues idle for hours).
   */
  public metricVisibleMessages(
    pool: string,
    period: Duration = Duration.minutes(1),
  ): cloudwatch.MathExpression {
    const queues = this.queuesOf(pool);
    const usingMetrics: Record<string, cloudwatch.IMetric> = {};
    queues.forEach((queue, i) => {
      usingMetrics[`q${i}`] = queue.metricApproximateNumberOfMessagesVisible({
        period,
        statistic: cloudwatch.Stats.MAXIMUM,
      });
    });
    return new cloudwatch.MathExpression({
      label: `${pool}: dispatch messages waiting`,
      expression: Object.keys(usingMetrics)
        .map((k) => `FILL(${k}, 0)`)
        .join(" + "),
      usingMetrics,
      period,
    });
  }
}
