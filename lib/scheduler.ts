import { fileURLToPath } from "node:url";
import { Duration, RemovalPolicy } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import * as lambda from "aws-cdk-lib/aws-lambda";
import type * as nodejs from "aws-cdk-lib/aws-lambda-nodejs";
import type * as logs from "aws-cdk-lib/aws-logs";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import type { PriorityName } from "../core/job";
import type { CapacityResource } from "../core/pass-metrics";
import type { JobLifecycle } from "./job-lifecycle";
import { consumeJobStream, type JobRecordPattern } from "./job-stream-source";
import {
  type JobqRuntime,
  jobqFunction,
  type RuntimeSettings,
  runtimeEnvironment,
  validateRuntimeProps,
} from "./jobq-function";
import { jobqMetric } from "./jobq-metrics";
import { checkDuration } from "./validate-props";

export const DEFAULT_SCHEDULER_ENTRY = fileURLToPath(new URL("../functions/scheduler.ts", import.meta.url));
export const DEFAULT_RECONCILER_ENTRY = fileURLToPath(new URL("../functions/reconciler.ts", import.meta.url));

/**
 * The Jobs table's stream records that wake the scheduler (store/job-stream.ts#schedulerWakeOf
 * reads them the same way): a job became queued (work added; for a large batch's jobs, written
 * staged first, when their commit makes them visible), or a job's reservation went away
 * (capacity freed: completed, failed, retrying, cancelled, paused, escalated, preempted). The
 * scheduler's own writes (a waiting job's reason, an admission) match none of them.
 */
export const SCHEDULER_WAKE_PATTERNS: readonly JobRecordPattern[] = [
  {
    eventName: ["INSERT"],
    dynamodb: { NewImage: { status: { S: ["queued"] }, staged: { BOOL: [{ exists: false }] } } },
  },
  {
    eventName: ["MODIFY"],
    dynamodb: {
      NewImage: { status: { S: ["queued"] }, staged: { BOOL: [{ exists: false }] } },
      OldImage: { status: { S: [{ "anything-but": ["queued"] }] } },
    },
  },
  // A large batch's commit: its jobs were written staged (invisible) and queued, now they are not staged.
  {
    eventName: ["MODIFY"],
    dynamodb: {
      NewImage: { status: { S: ["queued"] }, staged: { BOOL: [{ exists: false }] } },
      OldImage: { staged: { BOOL: [true] } },
    },
  },
  {
    eventName: ["MODIFY", "REMOVE"],
    dynamodb: {
      OldImage: { reservation: { M: { pool: { S: [{ exists: true }] } } } },
      NewImage: { reservation: { M: { pool: { S: [{ exists: false }] } } } },
    },
  },
];

export interface SchedulerProps extends JobqRuntime {
  readonly lifecycle: JobLifecycle;
  /** @default DEFAULT_SCHEDULER_ENTRY (functions/scheduler.ts) */
  readonly schedulerEntry?: string;
  /** @default DEFAULT_RECONCILER_ENTRY (functions/reconciler.ts) */
  readonly reconcilerEntry?: string;
  /**
   * How often the sweep runs without any event. Wake-ups are an optimization; this is what
   * keeps every job moving. Whole minutes (an EventBridge rate), at most an hour.
   * @default Duration.minutes(1)
   */
  readonly sweepInterval?: Duration;
  /**
   * How often the reconciler runs; whole minutes, at least its function's timeout (4 minutes), so
   * two reconciliations never overlap.
   * @default Duration.minutes(5)
   */
  readonly reconcileInterval?: Duration;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** The reconciler function's timeout: a reconciliation must end before the next begins. */
const RECONCILER_TIMEOUT = Duration.minutes(4);

/** The documented limits of SchedulerProps (and the runtime settings), checked at synth. */
export function validateSchedulerProps(
  scope: Construct,
  props: Pick<SchedulerProps, "sweepInterval" | "reconcileInterval"> & RuntimeSettings,
): void {
  validateRuntimeProps(scope, props);
  checkDuration(scope, "sweepInterval", props.sweepInterval, {
    min: Duration.minutes(1),
    max: Duration.hours(1),
    wholeMinutes: true,
    why: "an EventBridge rate; the sweep is what keeps every job moving",
  });
  checkDuration(scope, "reconcileInterval", props.reconcileInterval, {
    min: RECONCILER_TIMEOUT,
    max: Duration.days(1),
    wholeMinutes: true,
    why: "an EventBridge rate, no shorter than the reconciler's timeout",
  });
}

/**
 * The scheduler (admission: queued jobs onto free capacity) and the reconciler (repairs after
 * crashes: missing executions, leaked capacity, lost nodes), both Lambda functions on
 * EventBridge rules.
 */
export class Scheduler extends Construct {
  public readonly schedulerFunction: nodejs.NodejsFunction;
  public readonly reconcilerFunction: nodejs.NodejsFunction;
  /** Every sweepInterval on the default bus. */
  public readonly sweepRule: events.Rule;
  /** Wake-up records the scheduler gave up on (its stream event source's failure destination). */
  public readonly wakeFailedBatches: sqs.Queue;
  public readonly reconcileRule: events.Rule;
  public readonly schedulerErrorsAlarm: cloudwatch.Alarm;
  public readonly reconcilerErrorsAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: SchedulerProps) {
    super(scope, id);
    validateSchedulerProps(this, props);
    const environment = runtimeEnvironment(props, props.lifecycle.stateMachineArn);
    const logRetention = props.logRetention;
    const logRemovalPolicy = props.logRemovalPolicy ?? RemovalPolicy.RETAIN;

    // No reserved concurrency: concurrent passes (a tick and a burst of events) are serialized by
    // each pool's lease in the Nodes table, so an extra invocation finds the lease taken and ends.
    // Capping concurrency would only make EventBridge throttle and retry the wake-ups.
    this.schedulerFunction = jobqFunction(this, "SchedulerFunction", {
      entry: props.schedulerEntry ?? DEFAULT_SCHEDULER_ENTRY,
      description: "jobq scheduler: admits queued jobs onto free capacity",
      environment,
      memorySize: 1024,
      timeout: Duration.seconds(60),
      // A failed pass is not worth a retry: the next event or the next sweep runs a fresh one.
      retryAttempts: 0,
      logRetention,
      logRemovalPolicy,
    });
    props.store.grantJobs(this.schedulerFunction, [
      "dynamodb:Query",
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:UpdateItem",
      "dynamodb:PutItem",
      "dynamodb:ConditionCheckItem",
      // Admissions' job changes and waiting jobs' reasons, 25 conditional updates a request
      // (BatchExecuteStatement).
      "dynamodb:PartiQLUpdate",
      // A schedule's fire is a submission (app/schedules.ts): its idempotency claim is given
      // back with a conditional DeleteItem when the submission is refused.
      "dynamodb:DeleteItem",
    ]);
    // Nodes, their capacity and the pool leases.
    props.store.grantNodes(this.schedulerFunction, [
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:ConditionCheckItem",
    ]);
    // The policy, quota limits and GPU usage a pass decides with, run times for estimates, and
    // the usage a preempted attempt adds in the transaction that ends it.
    props.store.grantPolicy(this.schedulerFunction, [
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
      // A schedule's fire is recorded with a conditional PutItem of the schedule item.
      "dynamodb:PutItem",
    ]);
    // Reports the attempts of a node gone silent lost on their run tokens (app/lost-attempts.ts),
    // and ends executions of the previous lifecycle still parked on an admission token.
    props.lifecycle.grantTaskOutcome(this.schedulerFunction);
    // Every admission starts its attempt's execution (app/admissions.ts#admit); preemption stops
    // the victim's.
    props.lifecycle.grantStartExecution(this.schedulerFunction);
    props.lifecycle.grantStopExecution(this.schedulerFunction);
    props.eventBus.grantPutEventsTo(this.schedulerFunction);

    const interval = props.sweepInterval ?? Duration.minutes(1);
    this.sweepRule = new events.Rule(this, "Sweep", {
      description: "jobq: scheduling pass",
      schedule: events.Schedule.rate(interval),
      targets: [new targets.LambdaFunction(this.schedulerFunction, { retryAttempts: 0 })],
    });
    // Wake-ups ride the Jobs table's stream, not paid events: free to read, filtered for free, and
    // one invocation at a time per shard gathers the changes that arrive while a pass runs. They
    // are an optimization (the sweep keeps every job moving), so a failing batch is retried twice
    // and a record older than a minute is left to the sweep.
    this.wakeFailedBatches = consumeJobStream(
      new Construct(this, "Wake"),
      this.schedulerFunction,
      props.store.jobsTable,
      {
        startingPosition: lambda.StartingPosition.LATEST,
        batchSize: 100,
        retryAttempts: 2,
        maxRecordAge: Duration.minutes(1),
      },
      SCHEDULER_WAKE_PATTERNS,
    );

    this.reconcilerFunction = jobqFunction(this, "ReconcilerFunction", {
      entry: props.reconcilerEntry ?? DEFAULT_RECONCILER_ENTRY,
      description: "jobq reconciler: missing executions, leaked capacity, lost nodes",
      environment,
      memorySize: 1024,
      timeout: RECONCILER_TIMEOUT,
      retryAttempts: 0,
      logRetention,
      logRemovalPolicy,
    });
    props.store.grantJobs(this.reconcilerFunction, [
      "dynamodb:Query",
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:UpdateItem",
      "dynamodb:PutItem",
      "dynamodb:ConditionCheckItem",
    ]);
    props.store.grantNodes(this.reconcilerFunction, [
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:ConditionCheckItem",
    ]);
    // Ending a lost attempt adds its GPU-seconds to its owner's usage in the same transaction.
    props.store.grantPolicy(this.reconcilerFunction, ["dynamodb:UpdateItem"]);
    props.lifecycle.grantDescribeExecution(this.reconcilerFunction);
    props.lifecycle.grantTaskSuccess(this.reconcilerFunction);
    props.eventBus.grantPutEventsTo(this.reconcilerFunction);
    this.reconcileRule = new events.Rule(this, "Reconcile", {
      description: "jobq: reconciliation",
      schedule: events.Schedule.rate(props.reconcileInterval ?? Duration.minutes(5)),
      targets: [new targets.LambdaFunction(this.reconcilerFunction, { retryAttempts: 0 })],
    });

    this.schedulerErrorsAlarm = errorsAlarm(
      this,
      "SchedulerErrors",
      this.metricSchedulerErrors(),
      "scheduler",
    );
    this.reconcilerErrorsAlarm = errorsAlarm(
      this,
      "ReconcilerErrors",
      this.metricReconcilerErrors(),
      "reconciler",
    );
  }

  /** Jobs a pool's scheduler passes admitted (AdmittedJobs): Sum is admissions. */
  public metricAdmittedJobs(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("admittedJobs", { pool }, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /**
   * Jobs a pass found waiting for a pool's capacity (QueuedJobs): what the worker pools scale on.
   * A gauge, so Maximum.
   */
  public metricQueuedJobs(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("queuedJobs", { pool }, { statistic: cloudwatch.Stats.MAXIMUM, ...props });
  }

  /** Jobs waiting in a pool's queue at one priority tier (WaitingJobs), a gauge. */
  public metricWaitingJobs(
    pool: string,
    tier: PriorityName,
    props?: cloudwatch.MetricOptions,
  ): cloudwatch.Metric {
    return jobqMetric("waitingJobs", { pool, tier }, { statistic: cloudwatch.Stats.MAXIMUM, ...props });
  }

  /** Seconds the oldest job of a pool has waited for capacity or priority (OldestCapacityWaitAge). */
  public metricOldestCapacityWaitAge(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("oldestCapacityWaitAge", { pool }, { statistic: cloudwatch.Stats.MAXIMUM, ...props });
  }

  /** Reserved ÷ total of one resource over a pool's live nodes, 0..1 (CapacityInUse). */
  public metricCapacityInUse(
    pool: string,
    resource: CapacityResource,
    props?: cloudwatch.MetricOptions,
  ): cloudwatch.Metric {
    return jobqMetric("capacityInUse", { pool, resource }, { statistic: cloudwatch.Stats.AVERAGE, ...props });
  }

  /** Milliseconds one pool's pass took (SchedulerPassDuration). */
  public metricPassDuration(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("schedulerPassDuration", { pool }, { statistic: cloudwatch.Stats.p(99), ...props });
  }

  /** Scheduler invocations that ran (SchedulerPasses): no data means no scheduler. */
  public metricPasses(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("schedulerPasses", {}, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Jobs the reconciler had to repair (ReconcilerRepairs). */
  public metricReconcilerRepairs(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("reconcilerRepairs", {}, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Nodes of a pool the reconciler marked lost (LostNodes). */
  public metricLostNodes(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("lostNodes", { pool }, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Errors the scheduler function threw, summed over 5 minutes. */
  public metricSchedulerErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.schedulerFunction.metricErrors({
      period: FIVE_MINUTES,
      statistic: cloudwatch.Stats.SUM,
      ...props,
    });
  }

  /** Errors the reconciler function threw, summed over 5 minutes. */
  public metricReconcilerErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.reconcilerFunction.metricErrors({
      period: FIVE_MINUTES,
      statistic: cloudwatch.Stats.SUM,
      ...props,
    });
  }
}

const FIVE_MINUTES = Duration.minutes(5);

function errorsAlarm(
  scope: Construct,
  id: string,
  errors: cloudwatch.IMetric,
  what: string,
): cloudwatch.Alarm {
  return new cloudwatch.Alarm(scope, id, {
    alarmDescription: `jobq: the ${what} function threw`,
    metric: errors,
    threshold: 1,
    evaluationPeriods: 1,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  });
}
