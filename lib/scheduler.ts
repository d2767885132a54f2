import { fileURLToPath } from "node:url";
import { Duration, RemovalPolicy } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import type * as nodejs from "aws-cdk-lib/aws-lambda-nodejs";
import type * as logs from "aws-cdk-lib/aws-logs";
import { Construct } from "constructs";
import type { JobStatus } from "../core/job";
import type { JobLifecycle } from "./job-lifecycle";
import { grantTable, type JobqRuntime, jobqFunction, runtimeEnvironment } from "./jobq-function";

export const DEFAULT_SCHEDULER_ENTRY = fileURLToPath(new URL("../functions/scheduler.ts", import.meta.url));
export const DEFAULT_RECONCILER_ENTRY = fileURLToPath(new URL("../functions/reconciler.ts", import.meta.url));

/** Statuses whose arrival adds work to a queue or frees capacity: each is worth a scheduling pass. */
export const WAKE_STATUSES: readonly JobStatus[] = [
  "queued",
  "completed",
  "failed",
  "retrying",
  "cancelled",
  "paused",
  "escalated",
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
  /** "Job State Change" events on the jobq bus that add work or free capacity. */
  public readonly stateChangeRule: events.Rule;
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
    // Releases an admitted job's execution (its admission token), and reports the attempts of a
    // node gone silent lost on their run tokens (app/lost-attempts.ts).
    props.lifecycle.grantTaskResponse(this.schedulerFunction, [
      "states:SendTaskSuccess",
      "states:SendTaskFailure",
    ]);
    // Preemption stops the victim's execution and starts a fresh one; an admission whose
    // execution is gone gives the job a new one at once (app/scheduler.ts#admit).
    props.lifecycle.grantStartExecution(this.schedulerFunction);
    props.lifecycle.grantExecution(this.schedulerFunction, "states:StopExecution");
    props.eventBus.grantPutEventsTo(this.schedulerFunction);

    const interval = props.sweepInterval ?? Duration.minutes(1);
    this.sweepRule = new events.Rule(this, "Sweep", {
      description: "jobq: scheduling pass",
      schedule: events.Schedule.rate(interval),
      targets: [new targets.LambdaFunction(this.schedulerFunction, { retryAttempts: 0 })],
    });
    this.stateChangeRule = new events.Rule(this, "WakeOnStateChange", {
      description: "jobq: scheduling pass when a job is queued or frees capacity",
      eventBus: props.eventBus,
      eventPattern: {
        source: ["jobq"],
        detailType: ["Job State Change"],
        detail: { status: [...WAKE_STATUSES] },
      },
      // An event older than a sweep interval has been overtaken by the sweep.
      targets: [
        new targets.LambdaFunction(this.schedulerFunction, { retryAttempts: 2, maxEventAge: interval }),
      ],
    });

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
    props.lifecycle.grantStartExecution(this.reconcilerFunction);
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
