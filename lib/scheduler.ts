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
import type { JobLifecycle } from "./job-lifecycle";
import { consumeJobStream, type JobRecordPattern } from "./job-stream-source";
import { grantTable, type JobqRuntime, jobqFunction, runtimeEnvironment } from "./jobq-function";

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
   * keeps every job moving.
   * @default Duration.minutes(1)
   */
  readonly sweepInterval?: Duration;
  /** @default Duration.minutes(5) */
  readonly reconcileInterval?: Duration;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
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
    grantTable(this.schedulerFunction, props.jobsTable, [
      "dynamodb:Query",
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:UpdateItem",
      "dynamodb:PutItem",
      "dynamodb:ConditionCheckItem",
      // Waiting jobs' reasons, 25 conditional updates a request (BatchExecuteStatement).
      "dynamodb:PartiQLUpdate",
      // A schedule's fire is a submission (app/schedules.ts): its idempotency claim is given
      // back with a conditional DeleteItem when the submission is refused.
      "dynamodb:DeleteItem",
    ]);
    // Nodes, their capacity and the pool leases.
    grantTable(this.schedulerFunction, props.nodesTable, [
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:ConditionCheckItem",
    ]);
    // The policy, quota limits and GPU usage a pass decides with, run times for estimates, and
    // the usage a preempted attempt adds in the transaction that ends it.
    grantTable(this.schedulerFunction, props.policyTable, [
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
      // A schedule's fire is recorded with a conditional PutItem of the schedule item.
      "dynamodb:PutItem",
    ]);
    // Reports the attempts of a node gone silent lost on their run tokens (app/lost-attempts.ts),
    // and ends executions of the previous lifecycle still parked on an admission token.
    props.lifecycle.grantTaskResponse(this.schedulerFunction, [
      "states:SendTaskSuccess",
      "states:SendTaskFailure",
    ]);
    // Every admission starts its attempt's execution (app/scheduler.ts#admit); preemption stops
    // the victim's.
    props.lifecycle.grantStartExecution(this.schedulerFunction);
    props.lifecycle.grantExecution(this.schedulerFunction, "states:StopExecution");
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
      props.jobsTable,
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
      timeout: Duration.minutes(4),
      retryAttempts: 0,
      logRetention,
      logRemovalPolicy,
    });
    grantTable(this.reconcilerFunction, props.jobsTable, [
      "dynamodb:Query",
      "dynamodb:GetItem",
      "dynamodb:BatchGetItem",
      "dynamodb:UpdateItem",
      "dynamodb:PutItem",
      "dynamodb:ConditionCheckItem",
    ]);
    grantTable(this.reconcilerFunction, props.nodesTable, [
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:ConditionCheckItem",
    ]);
    // Ending a lost attempt adds its GPU-seconds to its owner's usage in the same transaction.
    grantTable(this.reconcilerFunction, props.policyTable, ["dynamodb:UpdateItem"]);
    props.lifecycle.grantExecution(this.reconcilerFunction, "states:DescribeExecution");
    props.lifecycle.grantTaskResponse(this.reconcilerFunction, ["states:SendTaskSuccess"]);
    props.eventBus.grantPutEventsTo(this.reconcilerFunction);
    this.reconcileRule = new events.Rule(this, "Reconcile", {
      description: "jobq: reconciliation",
      schedule: events.Schedule.rate(props.reconcileInterval ?? Duration.minutes(5)),
      targets: [new targets.LambdaFunction(this.reconcilerFunction, { retryAttempts: 0 })],
    });

    this.schedulerErrorsAlarm = errorsAlarm(this, "SchedulerErrors", this.schedulerFunction, "scheduler");
    this.reconcilerErrorsAlarm = errorsAlarm(this, "ReconcilerErrors", this.reconcilerFunction, "reconciler");
  }
}

function errorsAlarm(
  scope: Construct,
  id: string,
  fn: nodejs.NodejsFunction,
  what: string,
): cloudwatch.Alarm {
  return new cloudwatch.Alarm(scope, id, {
    alarmDescription: `jobq: the ${what} function threw`,
    metric: fn.metricErrors({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
    threshold: 1,
    evaluationPeriods: 1,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  });
}
