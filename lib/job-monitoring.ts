import { Annotations, Duration, Stack } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as cloudwatchActions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import { METRIC_NAMESPACE, METRIC_SERVICE, METRICS } from "../core/metrics";
import type { JobApi } from "./job-api";
import type { JobLifecycle } from "./job-lifecycle";
import { type JobQueues, TIERS } from "./job-queues";
import type { JobStore } from "./job-store";
import type { Scheduler } from "./scheduler";
import { checkDuration } from "./validate-props";

/** Kept here too: it was exported from this module before the metric methods took over. */
export { jobqMetric } from "./jobq-metrics";

/** Where each alarm's description sends the reader (docs/operations.md's `## Alarms`). */
export const ALARMS_RUNBOOK = "docs/operations.md#alarms";

/** Step Functions Standard list price: USD 0.025 per 1,000 state transitions (before the free tier). */
export const USD_PER_1000_STATE_TRANSITIONS = 0.025;

/**
 * A composite alarm's rule is at most 10,240 characters, and each `ALARM("arn")` takes about 120:
 * past this many alarms (some 8 per pool) the deploy may fail.
 */
const COMPOSITE_ALARMS_BEFORE_WARNING = 70;

/** The CPU, memory and GPU fractions CapacityInUse reports per pool. */
const CAPACITY_RESOURCES = ["cpu", "memory", "gpu"] as const;

export interface AlarmTopicProps {
  /** Subscribed by email when given (context jobq:alarmEmail); the address must confirm it. */
  readonly email?: string;
}

/**
 * The SNS topic every paging alarm notifies: encrypted with a customer-managed key (an AWS-managed
 * SNS key cannot be granted to CloudWatch, so alarms could not publish to it), TLS-only.
 */
export class AlarmTopic extends Construct {
  public readonly topic: sns.Topic;
  public readonly key: kms.Key;

  constructor(scope: Construct, id: string, props: AlarmTopicProps = {}) {
    super(scope, id);
    this.key = new kms.Key(this, "Key", {
      description: "jobq alarm topic",
      enableKeyRotation: true,
    });
    // CloudWatch publishes to an encrypted topic with its own principal, so the key must let it
    // generate and decrypt data keys; limited to this account's alarms.
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "AllowCloudWatchAlarmsToPublish",
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["kms:Decrypt", "kms:GenerateDataKey*"],
        resources: ["*"],
        conditions: { StringEquals: { "aws:SourceAccount": Stack.of(this).account } },
      }),
    );
    this.topic = new sns.Topic(this, "Topic", {
      displayName: "jobq alarms",
      masterKey: this.key,
      enforceSSL: true,
    });
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "AllowCloudWatchAlarmsToPublish",
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["sns:Publish"],
        resources: [this.topic.topicArn],
        conditions: { StringEquals: { "aws:SourceAccount": Stack.of(this).account } },
      }),
    );
    if (props.email !== undefined)
      this.topic.addSubscription(new subscriptions.EmailSubscription(props.email));
  }
}

export interface JobMonitoringProps {
  /** Paging alarms notify it on ALARM and on OK. */
  readonly topic: sns.ITopic;
  readonly pools: readonly string[];
  readonly queues: JobQueues;
  readonly lifecycle: JobLifecycle;
  readonly scheduler: Scheduler;
  readonly api: JobApi;
  /**
   * The tables: the dashboard graphs the Jobs table's throttled requests and system errors.
   * @default - no DynamoDB widget
   */
  readonly store?: JobStore;
  /**
   * Alarm when a job has waited for capacity or priority longer than this: 1 minute to 7 days
   * (the longest a job may wait in its queue).
   * @default 30 minutes
   */
  readonly maxQueueAge?: Duration;
  /**
   * Prefix of the composite alarm's and the dashboard's names: two stacks in one account must not
   * share them. @default the stack's name
   */
  readonly namePrefix?: string;
}

const FIVE_MINUTES = Duration.minutes(5);

/** The documented limits of JobMonitoringProps, checked at synth. */
export function validateJobMonitoringProps(
  scope: Construct,
  props: Pick<JobMonitoringProps, "maxQueueAge">,
): void {
  checkDuration(scope, "maxQueueAge", props.maxQueueAge, {
    min: Duration.minutes(1),
    max: Duration.days(7),
    why: "the longest a job may wait in its queue is 7 days",
  });
}

/**
 * What an operator watches: the paging alarms (each on ALARM and OK to the topic), the composite
 * `jobq-unhealthy` over them, and one dashboard. The worker pools' BacklogHigh/BacklogEmpty alarms
 * drive autoscaling and are deliberately not here: a backlog is the pools' job to absorb, not a
 * person's to be woken for.
 */
export class JobMonitoring extends Construct {
  /** Every alarm that pages (the ones other constructs own, wired here, and this construct's). */
  public readonly pagingAlarms: readonly cloudwatch.Alarm[];
  public readonly unhealthyAlarm: cloudwatch.CompositeAlarm;
  public readonly dashboard: cloudwatch.Dashboard;
  public readonly schedulerHeartbeatAlarm: cloudwatch.Alarm;
  /** One per pool and tier's dead-letter queue. */
  public readonly deadLetterAlarms: readonly cloudwatch.Alarm[];
  /** By pool. */
  public readonly oldestWaitAlarms: Readonly<Record<string, cloudwatch.Alarm>>;

  constructor(scope: Construct, id: string, props: JobMonitoringProps) {
    super(scope, id);
    validateJobMonitoringProps(this, props);
    const prefix = props.namePrefix ?? Stack.of(this).stackName;
    const maxQueueAge = props.maxQueueAge ?? Duration.minutes(30);
    const alarms: cloudwatch.Alarm[] = [];
    const page = (alarm: cloudwatch.Alarm): cloudwatch.Alarm => {
      alarms.push(alarm);
      return alarm;
    };
    const alarm = (
      alarmId: string,
      description: string,
      options: Omit<cloudwatch.AlarmProps, "alarmDescription" | "evaluationPeriods"> &
        Partial<Pick<cloudwatch.AlarmProps, "evaluationPeriods">>,
    ): cloudwatch.Alarm =>
      page(
        new cloudwatch.Alarm(this, alarmId, {
          evaluationPeriods: 1,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
          ...options,
          alarmDescription: `jobq: ${description} See ${ALARMS_RUNBOOK}.`,
        }),
      );

    // The alarms other constructs own: wired, not duplicated; their descriptions gain the
    // runbook line here so the owning constructs stay as they are.
    const wire = (owned: cloudwatch.Alarm, firstStep: string): void => {
      const cfn = owned.node.defaultChild as cloudwatch.CfnAlarm;
      cfn.alarmDescription = `${cfn.alarmDescription ?? "jobq alarm"}. First: ${firstStep} See ${ALARMS_RUNBOOK}.`;
      page(owned);
    };
    wire(props.scheduler.schedulerErrorsAlarm, "the scheduler function's logs for the error and its stack.");
    wire(
      props.scheduler.reconcilerErrorsAlarm,
      "the reconciler function's logs for the error and its stack.",
    );
    wire(
      props.lifecycle.failedExecutionsAlarm,
      "the failed execution's history in the Step Functions console, then the lifecycle function's logs.",
    );
    wire(props.lifecycle.functionErrorsAlarm, "the lifecycle function's logs for the error and its stack.");

    const deadLetterAlarms: cloudwatch.Alarm[] = [];
    for (const pool of props.pools) {
      for (const tier of TIERS) {
        deadLetterAlarms.push(
          alarm(
            `${pool}-${tier}-dlq-depth`,
            `dispatch messages of pool ${pool}, tier ${tier} went to the dead-letter queue: no worker could take them. ` +
              "First: read one message (its job id), then that job's attempts and the pool's worker logs; redrive once fixed.",
            {
              metric: props.queues.metricDeadLetterMessages(pool, tier),
              threshold: 1,
              comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            },
          ),
        );
      }
    }
    this.deadLetterAlarms = deadLetterAlarms;

    const oldestWaitAlarms: Record<string, cloudwatch.Alarm> = {};
    for (const pool of props.pools) {
      oldestWaitAlarms[pool] = alarm(
        `${pool}-OldestWait`,
        `a job in pool ${pool} has waited for capacity or priority over ${maxQueueAge.toMinutes()} minutes. ` +
          "First: GET /pools for live nodes and free capacity, then the pool's workers (ECS service) and its BacklogHigh scaling.",
        {
          metric: props.scheduler.metricOldestCapacityWaitAge(pool, {
            period: FIVE_MINUTES,
            statistic: "Maximum",
          }),
          threshold: maxQueueAge.toSeconds(),
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        },
      );
      alarm(
        `${pool}-LostNodes`,
        `a node of pool ${pool} stopped heartbeating and was marked lost; its attempts were retried. ` +
          "First: the pool's ECS service events and the worker's last log lines (OOM, spot reclaim, crash).",
        {
          metric: props.scheduler.metricLostNodes(pool, { period: FIVE_MINUTES, statistic: "Sum" }),
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        },
      );
      // A rate with a floor: one job failing once is a user's bug, five failures and a fifth of
      // everything that ended are the platform's (or a bad release's).
      const failureRate = new cloudwatch.MathExpression({
        label: `${pool}: failed ÷ ended (0 under 5 failures)`,
        // A job that ended failed because its last attempt timed out counts in JobsTimedOut only.
        expression:
          "IF(FILL(failed, 0) + FILL(timedOut, 0) >= 5, (FILL(failed, 0) + FILL(timedOut, 0)) / " +
          "(FILL(failed, 0) + FILL(timedOut, 0) + FILL(completed, 0)), 0)",
        usingMetrics: {
          failed: props.lifecycle.metricJobsFailed(pool, { period: FIVE_MINUTES, statistic: "Sum" }),
          timedOut: props.lifecycle.metricJobsTimedOut(pool, { period: FIVE_MINUTES, statistic: "Sum" }),
          completed: props.lifecycle.metricJobsCompleted(pool, { period: FIVE_MINUTES, statistic: "Sum" }),
        },
        period: FIVE_MINUTES,
      });
      alarm(
        `${pool}-FailureRate`,
        `at least 5 jobs of pool ${pool} failed in 5 minutes and they are 20% or more of those that ended. ` +
          "First: the dashboard's failures-by-type widget, then GET /jobs?status=failed and one job's attempts and logs.",
        {
          metric: failureRate,
          threshold: 0.2,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        },
      );
    }
    this.oldestWaitAlarms = oldestWaitAlarms;

    this.schedulerHeartbeatAlarm = alarm(
      "SchedulerHeartbeat",
      "no scheduler pass ran in 5 minutes (the sweep fires every minute), so nothing is being admitted. " +
        "First: the Sweep EventBridge rule is enabled, then the scheduler function's throttles and logs.",
      {
        metric: props.scheduler.metricPasses({ period: FIVE_MINUTES, statistic: "Sum" }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        // No data is exactly what a stopped scheduler looks like.
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      },
    );
    // Threshold 1: every repair is a job the normal path (conditional writes, executions) left
    // stranded, which a healthy deployment never does; a higher bar would hide a slow leak.
    alarm(
      "ReconcilerRepairs",
      "the reconciler repaired jobs (missing executions, leaked capacity): something crashed or a path leaks. " +
        "First: the reconciler's log lines name each job and repair; look for the function errors or timeouts before them.",
      {
        metric: props.scheduler.metricReconcilerRepairs({ period: FIVE_MINUTES, statistic: "Sum" }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      },
    );
    // Threshold 1: a breaker opens only after its `failures` attempts failed within its window,
    // and while it is open the type's jobs wait: someone should look (docs/scheduling.md).
    alarm(
      "CircuitOpened",
      "a task type's circuit breaker opened: its attempts kept failing, so its jobs are held. " +
        "First: GET /admin/circuits?history=true for the type and the job that opened it, then that job's attempts and logs; " +
        "POST /admin/circuits/{type}/reset once fixed.",
      {
        metric: props.lifecycle.metricCircuitsOpened({ period: FIVE_MINUTES, statistic: "Sum" }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      },
    );
    alarm(
      "Api5xxRate",
      "5% or more of API requests in 5 minutes (at least 20 requests) answered 5xx. " +
        "First: the API functions' Errors and logs, then DynamoDB throttling on the tables.",
      {
        metric: new cloudwatch.MathExpression({
          label: "API 5xx ÷ requests (0 under 20 requests)",
          expression: "IF(FILL(requests, 0) >= 20, FILL(errors, 0) / requests, 0)",
          usingMetrics: {
            errors: props.api.metricServerErrors({ period: FIVE_MINUTES, statistic: "Sum" }),
            requests: props.api.metricRequests({ period: FIVE_MINUTES, statistic: "Sum" }),
          },
          period: FIVE_MINUTES,
        }),
        threshold: 0.05,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      },
    );
    alarm(
      "ExecutionsThrottled",
      "Step Functions throttled lifecycle executions: jobs are not starting. " +
        "First: the account's StartExecution and state-transition quotas (Service Quotas), then bursts of submissions.",
      {
        metric: props.lifecycle.metricExecutionsThrottled({ period: FIVE_MINUTES, statistic: "Sum" }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      },
    );

    const action = new cloudwatchActions.SnsAction(props.topic);
    for (const each of alarms) {
      each.addAlarmAction(action);
      each.addOkAction(action);
    }
    this.pagingAlarms = alarms;

    if (alarms.length > COMPOSITE_ALARMS_BEFORE_WARNING)
      Annotations.of(this).addWarningV2(
        "jobq:compositeAlarmSize",
        `jobq-unhealthy names ${alarms.length} alarms; its rule may pass CloudWatch's 10,240 characters`,
      );
    this.unhealthyAlarm = new cloudwatch.CompositeAlarm(this, "Unhealthy", {
      compositeAlarmName: `${prefix}-jobq-unhealthy`,
      alarmDescription: `jobq: one or more paging alarms are in ALARM; the dashboard's top row names which. See ${ALARMS_RUNBOOK}.`,
      alarmRule: cloudwatch.AlarmRule.anyOf(...alarms),
    });
    this.unhealthyAlarm.addAlarmAction(action);
    this.unhealthyAlarm.addOkAction(action);

    this.dashboard = new cloudwatch.Dashboard(this, "Dashboard", {
      dashboardName: `${prefix}-jobq`,
      defaultInterval: Duration.hours(3),
    });
    this.addWidgets(props, maxQueueAge);
  }

  /** Health first, then the API, the flow of jobs, what went wrong, capacity, and the cost. */
  private addWidgets(props: JobMonitoringProps, maxQueueAge: Duration): void {
    const period = Duration.minutes(1);
    const { pools, queues, lifecycle, scheduler } = props;
    const api = props.api.api;
    const graph = (
      title: string,
      left: cloudwatch.IMetric[],
      width = 8,
      extra: Partial<cloudwatch.GraphWidgetProps> = {},
    ) => new cloudwatch.GraphWidget({ title, left, width, height: 6, ...extra });

    this.dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({
        title: "Health: jobq-unhealthy and every paging alarm",
        alarms: [this.unhealthyAlarm, ...this.pagingAlarms],
        width: 24,
        height: 6,
      }),
    );

    this.dashboard.addWidgets(
      graph("API requests", [props.api.metricRequests({ period, statistic: "Sum", label: "requests" })]),
      graph("API 4xx and 5xx", [
        api.metricClientError({ period, statistic: "Sum", label: "4xx" }),
        props.api.metricServerErrors({ period, statistic: "Sum", label: "5xx" }),
      ]),
      graph("API latency (ms)", [
        api.metricLatency({ period, statistic: "p50", label: "p50" }),
        api.metricLatency({ period, statistic: "p99", label: "p99" }),
      ]),
    );

    this.dashboard.addWidgets(
      graph(
        "Admissions per second",
        // Ids by index: one graph may not reuse an id, and pool names may hold `-`.
        pools.map(
          (pool, i) =>
            new cloudwatch.MathExpression({
              label: pool,
              expression: `FILL(admitted${i}, 0) / PERIOD(admitted${i})`,
              usingMetrics: {
                [`admitted${i}`]: scheduler.metricAdmittedJobs(pool, { period, statistic: "Sum" }),
              },
              period,
            }),
        ),
      ),
      graph(
        "Scheduler pass duration (ms, p99)",
        pools.map((pool) =>
          scheduler.metricPassDuration(pool, { period, statistic: "p99", label: `${pool} p99` }),
        ),
      ),
      graph(
        "Oldest job waiting for capacity (s)",
        pools.map((pool) =>
          scheduler.metricOldestCapacityWaitAge(pool, { period, statistic: "Maximum", label: pool }),
        ),
        8,
        {
          leftAnnotations: [{ value: maxQueueAge.toSeconds(), label: "pages above" }],
        },
      ),
    );

    this.dashboard.addWidgets(
      graph(
        "Queue wait time (ms, p50 / p99)",
        pools.flatMap((pool) =>
          ["p50", "p99"].map((statistic) =>
            lifecycle.metricQueueWaitTime(pool, { period, statistic, label: `${pool} ${statistic}` }),
          ),
        ),
        12,
      ),
      graph(
        "Run time (ms, p50 / p99)",
        pools.flatMap((pool) =>
          ["p50", "p99"].map((statistic) =>
            lifecycle.metricRunTime(pool, { period, statistic, label: `${pool} ${statistic}` }),
          ),
        ),
        12,
      ),
    );

    // SQS queue depth and oldest message age, per pool × tier.
    for (const pool of pools) {
      if (!queues.queues[pool]) continue;
      this.dashboard.addWidgets(
        graph(
          `${pool}: dispatch queue depth by tier`,
          TIERS.map((tier) =>
            queues.metricQueueDepth(pool, tier, { period, statistic: "Maximum", label: tier }),
          ),
          12,
        ),
        graph(
          `${pool}: oldest dispatch message age by tier (s)`,
          TIERS.map((tier) =>
            queues.metricOldestMessageAge(pool, tier, { period, statistic: "Maximum", label: tier }),
          ),
          12,
        ),
      );
    }

    this.dashboard.addWidgets(
      graph("Failed jobs by type", [
        new cloudwatch.MathExpression({
          label: "",
          expression: `SEARCH('{${METRIC_NAMESPACE},service,type} MetricName="${METRICS.jobsFailedByType.name}" service="${METRIC_SERVICE}"', 'Sum', 300)`,
          period: FIVE_MINUTES,
        }),
      ]),
      graph(
        "Dead-letter queue depths",
        pools.flatMap((pool) =>
          TIERS.map((tier) =>
            queues.metricDeadLetterMessages(pool, tier, { period, label: `${pool} ${tier}` }),
          ),
        ),
      ),
      graph("Lost nodes and reconciler repairs", [
        ...pools.map((pool) =>
          scheduler.metricLostNodes(pool, { period, statistic: "Sum", label: `lost nodes ${pool}` }),
        ),
        scheduler.metricReconcilerRepairs({ period, statistic: "Sum", label: "reconciler repairs" }),
      ]),
    );

    this.dashboard.addWidgets(
      ...pools.map((pool) =>
        graph(
          `${pool}: capacity in use (fraction)`,
          CAPACITY_RESOURCES.map((resource) =>
            scheduler.metricCapacityInUse(pool, resource, { period, statistic: "Average", label: resource }),
          ),
          Math.max(6, Math.floor(24 / Math.max(1, pools.length))),
          { leftYAxis: { min: 0, max: 1 } },
        ),
      ),
    );

    // Throttling on the Jobs table is what turns a burst into 5xx answers and slow passes.
    // One graph each: the two expressions sum the same per-operation metrics under the same ids.
    if (props.store) {
      this.dashboard.addWidgets(
        graph("Jobs table: throttled requests", [props.store.metricJobsThrottled({ period })], 12),
        graph("Jobs table: DynamoDB system errors", [props.store.metricJobsSystemErrors({ period })], 12),
      );
    }

    const day = Duration.days(1);
    this.dashboard.addWidgets(
      graph("Lifecycle executions", [
        lifecycle.stateMachine.metricStarted({ period, statistic: "Sum", label: "started" }),
        lifecycle.metricExecutionsFailed({ period, statistic: "Sum", label: "failed" }),
        lifecycle.metricExecutionsThrottled({ period, statistic: "Sum", label: "throttled" }),
      ]),
      graph("State transitions (account, all state machines)", [
        sfn.StateTransitionMetric.metricConsumedCapacity({ period, statistic: "Sum", label: "transitions" }),
      ]),
      new cloudwatch.SingleValueWidget({
        title: "State transitions: the day's cost (USD at list price, before the free tier)",
        metrics: [
          new cloudwatch.MathExpression({
            label: "USD per day",
            expression: `transitions * ${USD_PER_1000_STATE_TRANSITIONS} / 1000`,
            usingMetrics: {
              transitions: sfn.StateTransitionMetric.metricConsumedCapacity({
                period: day,
                statistic: "Sum",
              }),
            },
            period: day,
          }),
        ],
        width: 8,
        height: 6,
      }),
    );
  }
}
