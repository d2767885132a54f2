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
import { consumeJobStream } from "./job-stream-source";
import { grantTable, type JobqRuntime, jobqFunction, runtimeEnvironment } from "./jobq-function";

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
const LIFECYCLE_JOBS_ACTIONS = [
  "dynamodb:GetItem",
  "dynamodb:BatchGetItem",
  "dynamodb:Query",
  "dynamodb:PutItem",
  "dynamodb:UpdateItem",
  "dynamodb:ConditionCheckItem",
];
/** Capacity goes back to its node in the transaction that ends an attempt. */
const LIFECYCLE_NODES_ACTIONS = [
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
const LIFECYCLE_POLICY_ACTIONS = ["dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:PutItem"];
/** The dependents consumer closes the breaker a completed probe belongs to (functions/dependents-stream.ts). */
const DEPENDENTS_POLICY_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem"];

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
    const stack = Stack.of(this);
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const logRemovalPolicy = props.logRemovalPolicy ?? RemovalPolicy.RETAIN;

    this.stateMachineName = props.stateMachineName ?? `${stack.stackName}-job-lifecycle`;
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
    grantTable(this.function, props.jobsTable, LIFECYCLE_JOBS_ACTIONS);
    grantTable(this.function, props.nodesTable, LIFECYCLE_NODES_ACTIONS);
    grantTable(this.function, props.policyTable, LIFECYCLE_POLICY_ACTIONS);
    // An escalation job whose job moved on before it was marked escalated is cancelled, which
    // stops its execution should it have been admitted already.
    this.grantExecution(this.function, "states:StopExecution");
    this.grantTaskResponse(this.function, ["states:SendTaskSuccess", "states:SendTaskFailure"]);
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
    grantTable(this.dependentsFunction, props.jobsTable, LIFECYCLE_JOBS_ACTIONS);
    grantTable(this.dependentsFunction, props.policyTable, DEPENDENTS_POLICY_ACTIONS);
    // A dependent that moves from blocked to queued publishes its Job State Change.
    props.eventBus.grantPutEventsTo(this.dependentsFunction);
    this.dependentsFailedBatches = consumeJobStream(
      dependents,
      this.dependentsFunction,
      props.jobsTable,
      {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: 100,
        reportBatchItemFailures: true,
        retryAttempts: 10,
      },
      [{ dynamodb: { NewImage: { status: { S: ["completed"] } } } }],
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
    props.queues.grantSend(this.stateMachine);

    this.failedExecutionsAlarm = new cloudwatch.Alarm(this, "ExecutionsFailed", {
      alarmDescription:
        "jobq: lifecycle executions failed (a step kept failing, or the definition is broken)",
      metric: this.stateMachine.metricFailed({
        period: Duration.minutes(5),
        statistic: cloudwatch.Stats.SUM,
      }),
      threshold: props.failedExecutionsThreshold ?? 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.functionErrorsAlarm = new cloudwatch.Alarm(this, "FunctionErrors", {
      alarmDescription: "jobq: the lifecycle function threw",
      metric: this.function.metricErrors({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
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

  public grantStartExecution(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ["states:StartExecution"],
      resourceArns: [this.stateMachineArn],
    });
  }

  /** Actions on the executions (StopExecution, DescribeExecution). */
  public grantExecution(grantee: iam.IGrantable, ...actions: string[]): iam.Grant {
    return iam.Grant.addToPrincipal({ grantee, actions, resourceArns: [this.executionArns] });
  }

  /**
   * Task-token answers. The Service Authorization Reference lists no resource type for them,
   * but IAM evaluates them against the state machine that issued the token, so they are scoped
   * to it (as CDK's own grantTaskResponse does).
   */
  public grantTaskResponse(
    grantee: iam.IGrantable,
    actions: readonly ("states:SendTaskSuccess" | "states:SendTaskFailure" | "states:SendTaskHeartbeat")[],
  ): iam.Grant {
    return iam.Grant.addToPrincipal({ grantee, actions: [...actions], resourceArns: [this.stateMachineArn] });
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
