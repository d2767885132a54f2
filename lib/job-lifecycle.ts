import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ArnFormat, Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import type * as nodejs from "aws-cdk-lib/aws-lambda-nodejs";
import * as logs from "aws-cdk-lib/aws-logs";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import type { JobsTableAction, NodesTableAction, PolicyTableAction } from "../functions/routes";
import { consumeJobStream } from "./job-stream-source";
import {
  type JobqRuntime,
  jobqFunction,
  type RuntimeSettings,
  runtimeEnvironment,
  validateRuntimeProps,
} from "./jobq-function";
import { jobqMetric } from "./jobq-metrics";
import { checkName, checkNumber } from "./validate-props";

export const DEFAULT_DEFINITION_FILE = fileURLToPath(
  new URL("../state-machines/job-lifecycle.asl.json", import.meta.url),
);
export const DEFAULT_LIFECYCLE_ENTRY = fileURLToPath(new URL("../functions/lifecycle.ts", import.meta.url));
export const DEFAULT_DEPENDENTS_ENTRY = fileURLToPath(
  new URL("../functions/dependents-stream.ts", import.meta.url),
);

/** The placeholder of the definition that becomes the lifecycle function's ARN. */
export const LIFECYCLE_FUNCTION_ARN = "LifecycleFunctionArn";

export interface JobLifecycleProps extends JobqRuntime {
  /**
   * The lifecycle ASL, with `${LifecycleFunctionArn}` where the lifecycle function is invoked.
   * @default DEFAULT_DEFINITION_FILE (state-machines/job-lifecycle.asl.json)
   */
  readonly definitionFile?: string;
  /**
   * The module of the lifecycle steps.
   * @default DEFAULT_LIFECYCLE_ENTRY (functions/lifecycle.ts)
   */
  readonly entry?: string;
  /**
   * The state machine's name. It is set, not generated, so that the lifecycle function can be
   * told the ARN without a reference to the state machine (which references the function).
   * @default `<stack name>-job-lifecycle`
   */
  readonly stateMachineName?: string;
  /**
   * Failed executions in 5 minutes that raise the alarm.
   * @default 1
   */
  readonly failedExecutionsThreshold?: number;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** DynamoDB actions of the lifecycle steps (app/lifecycle.ts through store/). */
const LIFECYCLE_JOBS_ACTIONS: readonly JobsTableAction[] = [
  "dynamodb:GetItem",
  "dynamodb:BatchGetItem",
  "dynamodb:Query",
  "dynamodb:PutItem",
  "dynamodb:UpdateItem",
  "dynamodb:ConditionCheckItem",
];
/** Capacity goes back to its node in the transaction that ends an attempt. */
const LIFECYCLE_NODES_ACTIONS: readonly NodesTableAction[] = [
  "dynamodb:GetItem",
  "dynamodb:Query",
  "dynamodb:UpdateItem",
  "dynamodb:ConditionCheckItem",
];
/**
 * The transaction that ends an attempt adds its GPU-seconds to the owner's usage items, and a
 * completion adds its run time to its type's statistics: both UpdateItem (ADD). An escalation
 * job is a submission, which reads the policy for its type's rules (policy.types): GetItem.
 */
/**
 * GPU usage (UpdateItem); the policy read (GetItem) for an escalation job's type rules and circuit
 * breakers (app/circuits.ts), whose breaker is read and written conditionally with its history
 * (PutItem, alone or in a transaction).
 */
const LIFECYCLE_POLICY_ACTIONS: readonly PolicyTableAction[] = [
  "dynamodb:UpdateItem",
  "dynamodb:GetItem",
  "dynamodb:PutItem",
];
/** The dependents consumer closes the breaker a completed probe belongs to (functions/dependents-stream.ts). */
const DEPENDENTS_POLICY_ACTIONS: readonly PolicyTableAction[] = ["dynamodb:GetItem", "dynamodb:PutItem"];

/** Step Functions' limits on a state machine's name. */
const STATE_MACHINE_NAME = {
  pattern: /^[A-Za-z0-9_-]+$/,
  maxLength: 80,
  describe: "letters, digits, - and _",
};

/** The documented limits of JobLifecycleProps (and the runtime settings), checked at synth. */
export function validateJobLifecycleProps(
  scope: Construct,
  props: Pick<JobLifecycleProps, "stateMachineName" | "failedExecutionsThreshold"> & RuntimeSettings,
): void {
  validateRuntimeProps(scope, props);
  checkName(scope, "stateMachineName", props.stateMachineName, STATE_MACHINE_NAME);
  checkNumber(scope, "failedExecutionsThreshold", props.failedExecutionsThreshold, { min: 1, integer: true });
}

/**
 * One Standard execution per attempt, started by the scheduler at admission (docs/lifecycle.md):
 * the state machine of state-machines/job-lifecycle.asl.json, the lifecycle function its failure
 * steps invoke, and the Jobs table stream's consumer that releases completed jobs' dependents.
 * The state machine may invoke only that function and send only to the job queues.
 */
export class JobLifecycle extends Construct {
  public readonly function: nodejs.NodejsFunction;
  /** Releases completed jobs' dependents from the Jobs table's stream (functions/dependents-stream.ts). */
  public readonly dependentsFunction: nodejs.NodejsFunction;
  /** Stream records the dependents function gave up on. */
  public readonly dependentsFailedBatches: sqs.Queue;
  public readonly stateMachine: sfn.StateMachine;
  public readonly stateMachineName: string;
  /** Built from the name: usable where a reference to the state machine would make a cycle. */
  public readonly stateMachineArn: string;
  public readonly logGroup: logs.LogGroup;
  public readonly failedExecutionsAlarm: cloudwatch.Alarm;
  public readonly functionErrorsAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: JobLifecycleProps) {
    super(scope, id);
    validateJobLifecycleProps(this, props);
    const stack = Stack.of(this);
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const logRemovalPolicy = props.logRemovalPolicy ?? RemovalPolicy.RETAIN;

    this.stateMachineName = props.stateMachineName ?? `${stack.stackName}-job-lifecycle`;
    // The default comes from the stack's name, which the props check could not see.
    checkName(this, "stateMachineName", this.stateMachineName, STATE_MACHINE_NAME);
    this.stateMachineArn = stack.formatArn({
      service: "states",
      resource: "stateMachine",
      resourceName: this.stateMachineName,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });

    this.function = jobqFunction(this, "Function", {
      entry: props.entry ?? DEFAULT_LIFECYCLE_ENTRY,
      description:
        "jobq lifecycle steps (attempt-failed, requeue; await-admission and complete for older executions)",
      environment: runtimeEnvironment(props, this.stateMachineArn),
      memorySize: 512,
      // A step is a few transactions; a cascade over many dependents is the long case.
      timeout: Duration.seconds(60),
      logRetention,
      logRemovalPolicy,
    });
    props.store.grantJobs(this.function, LIFECYCLE_JOBS_ACTIONS);
    props.store.grantNodes(this.function, LIFECYCLE_NODES_ACTIONS);
    props.store.grantPolicy(this.function, LIFECYCLE_POLICY_ACTIONS);
    // An escalation job whose job moved on before it was marked escalated is cancelled, which
    // stops its execution should it have been admitted already.
    this.grantStopExecution(this.function);
    this.grantTaskOutcome(this.function);
    props.eventBus.grantPutEventsTo(this.function);

    // The worker completes a job in its own transaction; the stream's record of that write is what
    // releases the dependents. Invoked only for job items that became completed (free filtering).
    const dependents = new Construct(this, "ReleaseDependents");
    this.dependentsFunction = jobqFunction(dependents, "Function", {
      entry: DEFAULT_DEPENDENTS_ENTRY,
      description: "jobq: releases the dependents of completed jobs (Jobs table stream)",
      environment: runtimeEnvironment(props, this.stateMachineArn),
      memorySize: 512,
      timeout: Duration.seconds(60),
      logRetention,
      logRemovalPolicy,
    });
    props.store.grantJobs(this.dependentsFunction, LIFECYCLE_JOBS_ACTIONS);
    props.store.grantPolicy(this.dependentsFunction, DEPENDENTS_POLICY_ACTIONS);
    // A dependent that moves from blocked to queued publishes its Job State Change.
    props.eventBus.grantPutEventsTo(this.dependentsFunction);
    this.dependentsFailedBatches = consumeJobStream(
      dependents,
      this.dependentsFunction,
      props.store.jobsTable,
      {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: 100,
        reportBatchItemFailures: true,
        retryAttempts: 10,
      },
      // store/job-stream.ts#asksDependentsConsumer: completed and maybe waited on (no
      // `noDependents` mark), or completed as a breaker's probe.
      [
        {
          dynamodb: {
            NewImage: { status: { S: ["completed"] }, noDependents: { BOOL: lambda.FilterRule.notExists() } },
          },
        },
        {
          dynamodb: {
            NewImage: { status: { S: ["completed"] }, circuitProbe: { S: lambda.FilterRule.exists() } },
          },
        },
      ],
    );

    this.logGroup = new logs.LogGroup(this, "Logs", {
      retention: logRetention,
      removalPolicy: logRemovalPolicy,
    });
    this.stateMachine = new sfn.StateMachine(this, "StateMachine", {
      stateMachineName: this.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString(
        readDefinition(props.definitionFile ?? DEFAULT_DEFINITION_FILE),
      ),
      definitionSubstitutions: { [LIFECYCLE_FUNCTION_ARN]: this.function.functionArn },
      tracingEnabled: true,
      // Execution data would copy job payloads into CloudWatch; errors alone say what broke.
      logs: { destination: this.logGroup, level: sfn.LogLevel.ERROR, includeExecutionData: false },
    });
    // The definition is a string, so CDK cannot see what it calls: these are all it may do.
    this.function.grantInvoke(this.stateMachine);
    props.queues.grantDispatch(this.stateMachine);

    this.failedExecutionsAlarm = new cloudwatch.Alarm(this, "ExecutionsFailed", {
      alarmDescription:
        "jobq: lifecycle executions failed (a step kept failing, or the definition is broken)",
      metric: this.metricExecutionsFailed(),
      threshold: props.failedExecutionsThreshold ?? 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.functionErrorsAlarm = new cloudwatch.Alarm(this, "FunctionErrors", {
      alarmDescription: "jobq: the lifecycle function threw",
      metric: this.metricFunctionErrors(),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  /** ARN of every execution of this state machine. */
  public get executionArns(): string {
    return Stack.of(this).formatArn({
      service: "states",
      resource: "execution",
      resourceName: `${this.stateMachineName}:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  }

  /** states:StartExecution on this state machine: admission starts an attempt's execution. */
  public grantStartExecution(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ["states:StartExecution"],
      resourceArns: [this.stateMachineArn],
    });
  }

  /** Actions on this state machine's executions (StopExecution, DescribeExecution). */
  public grantExecution(
    grantee: iam.IGrantable,
    ...actions: ("states:StopExecution" | "states:DescribeExecution")[]
  ): iam.Grant {
    return iam.Grant.addToPrincipal({ grantee, actions, resourceArns: [this.executionArns] });
  }

  /** Stop an execution: cancel, pause, preemption. */
  public grantStopExecution(grantee: iam.IGrantable): iam.Grant {
    return this.grantExecution(grantee, "states:StopExecution");
  }

  /** Read an execution's status: the reconciler's check for missing or ended executions. */
  public grantDescribeExecution(grantee: iam.IGrantable): iam.Grant {
    return this.grantExecution(grantee, "states:DescribeExecution");
  }

  /**
   * Every task-token answer, heartbeat included: what a worker running an attempt does (as CDK's
   * own StateMachine#grantTaskResponse). The Service Authorization Reference lists no resource
   * type for them, but IAM evaluates them against the state machine that issued the token, so
   * they are scoped to it.
   */
  public grantTaskResponse(grantee: iam.IGrantable): iam.Grant {
    return this.grantTaskActions(grantee, [
      "states:SendTaskSuccess",
      "states:SendTaskFailure",
      "states:SendTaskHeartbeat",
    ]);
  }

  /**
   * An attempt's (or an admission's) outcome on its task token, success or failure, without
   * heartbeats: the lifecycle steps and the scheduler end tokens, they never hold a running one.
   */
  public grantTaskOutcome(grantee: iam.IGrantable): iam.Grant {
    return this.grantTaskActions(grantee, ["states:SendTaskSuccess", "states:SendTaskFailure"]);
  }

  /** SendTaskSuccess only: the reconciler releases executions parked on a token, nothing more. */
  public grantTaskSuccess(grantee: iam.IGrantable): iam.Grant {
    return this.grantTaskActions(grantee, ["states:SendTaskSuccess"]);
  }

  private grantTaskActions(grantee: iam.IGrantable, actions: readonly string[]): iam.Grant {
    return iam.Grant.addToPrincipal({ grantee, actions: [...actions], resourceArns: [this.stateMachineArn] });
  }

  /** Lifecycle executions that failed (Step Functions' ExecutionsFailed), summed over 5 minutes. */
  public metricExecutionsFailed(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricFailed({
      period: Duration.minutes(5),
      statistic: cloudwatch.Stats.SUM,
      ...props,
    });
  }

  /** Lifecycle executions Step Functions throttled (ExecutionThrottled), summed over 5 minutes. */
  public metricExecutionsThrottled(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stateMachine.metricThrottled({
      period: Duration.minutes(5),
      statistic: cloudwatch.Stats.SUM,
      ...props,
    });
  }

  /** Errors the lifecycle function threw, summed over 5 minutes. */
  public metricFunctionErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.function.metricErrors({
      period: Duration.minutes(5),
      statistic: cloudwatch.Stats.SUM,
      ...props,
    });
  }

  /** Jobs of a pool that ended completed (JobsCompleted). */
  public metricJobsCompleted(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("jobsCompleted", { pool }, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Jobs of a pool that ended failed, retries spent (JobsFailed). */
  public metricJobsFailed(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("jobsFailed", { pool }, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Jobs of a pool that ended timed_out (JobsTimedOut; not counted in JobsFailed). */
  public metricJobsTimedOut(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("jobsTimedOut", { pool }, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Jobs of a task type that ended failed or timed_out (JobsFailedByType). */
  public metricJobsFailedByType(type: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("jobsFailedByType", { type }, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Attempts a worker started running in a pool (JobsStarted). */
  public metricJobsStarted(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("jobsStarted", { pool }, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Attempts whose worker went silent (AttemptsLost). */
  public metricAttemptsLost(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("attemptsLost", { pool }, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Milliseconds from ready (submitted or released) to running (QueueWaitTime). */
  public metricQueueWaitTime(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("queueWaitTime", { pool }, { statistic: cloudwatch.Stats.AVERAGE, ...props });
  }

  /** Milliseconds from running to the attempt's end (RunTime). */
  public metricRunTime(pool: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("runTime", { pool }, { statistic: cloudwatch.Stats.AVERAGE, ...props });
  }

  /** Circuit breakers that opened or opened again (CircuitsOpened, every type together). */
  public metricCircuitsOpened(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("circuitsOpened", {}, { statistic: cloudwatch.Stats.SUM, ...props });
  }

  /** Circuit breakers closed by a probe or a reset (CircuitsClosed). */
  public metricCircuitsClosed(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return jobqMetric("circuitsClosed", {}, { statistic: cloudwatch.Stats.SUM, ...props });
  }
}

/**
 * The definition inline (DefinitionString), not DefinitionBody.fromFile: that one uploads the
 * file as an S3 asset, so `cdk diff` would show an object key instead of the changed states. A
 * file that is not JSON fails the synth here rather than the deploy.
 */
function readDefinition(file: string): string {
  const text = readFileSync(file, "utf8");
  try {
    return JSON.stringify(JSON.parse(text));
  } catch (error) {
    throw new Error(`${file} is not valid JSON`, { cause: error });
  }
}
