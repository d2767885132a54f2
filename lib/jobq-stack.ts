import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CfnOutput, Duration, NestedStack, RemovalPolicy, Stack, type StackProps } from "aws-cdk-lib";
import * as events from "aws-cdk-lib/aws-events";
import * as logs from "aws-cdk-lib/aws-logs";
import type { Construct, Node } from "constructs";
import { z } from "zod";
import { DEFAULT_POOLS } from "../core/pools";
import { DEFAULT_RETENTION_DAYS } from "../core/retention";
import { JobApi } from "./job-api";
import { JobLifecycle } from "./job-lifecycle";
import { AlarmTopic, JobMonitoring } from "./job-monitoring";
import { JobQueues, MAX_POOLS_PER_STACK } from "./job-queues";
import { JobStats } from "./job-stats";
import { JobStore } from "./job-store";
import { JobStream } from "./job-stream";
import { type JobqRuntime, runtimeEnvironment } from "./jobq-function";
import { acknowledgeNagFindings } from "./nag-acknowledgements";
import { type WorkerPoolConfig, workerPoolsSchema } from "./pool-settings";
import { Scheduler } from "./scheduler";
import { WebDashboard } from "./web-dashboard";
import { type WorkerImageSource, WorkerPools } from "./worker-pools";

/** CDK context keys this stack reads (`cdk deploy -c key=value` or cdk.json). */
export const CONTEXT_KEYS = {
  /**
   * JSON array of pools as in core/pools.ts, each with an optional `ecs` block
   * (lib/pool-settings.ts); default DEFAULT_POOLS.
   */
  pools: "jobq:pools",
  /** `retain` (default) or `destroy`: what `cdk destroy` does to the tables and logs. */
  removalPolicy: "jobq:removalPolicy",
  /** JSON array of job types the API accepts; default: any type. */
  taskTypes: "jobq:taskTypes",
  /** NAT gateways of the workers' VPC; 0 puts workers in public subnets. Default 1. */
  natGateways: "jobq:natGateways",
  /**
   * `ecs` (default): the worker pools run on ECS. `none`: no VPC, cluster or workers (LocalStack's
   * free tier has no ECS; workers then run elsewhere against the same tables and queues).
   */
  workers: "jobq:workers",
  /**
   * `true` (default): the web dashboard on CloudFront, and the API answering CORS for its origin.
   * `false`: neither (LocalStack's free tier has no CloudFront; synth then needs no web/dist).
   */
  dashboard: "jobq:dashboard",
  /** Days an ended job's transitions, logs, attempts and result are kept (TTL). Default 90. */
  retentionDays: "jobq:retentionDays",
  /** Days an ended job itself is kept (TTL), with what is left of it. Default: for good. */
  jobRetentionDays: "jobq:jobRetentionDays",
  /** An email address the alarm topic sends to (the address must confirm); default: no subscription. */
  alarmEmail: "jobq:alarmEmail",
  /** Minutes a job may wait for capacity or priority before its pool's alarm pages. Default 30. */
  maxQueueAgeMinutes: "jobq:maxQueueAgeMinutes",
  /**
   * Days every log group of the stack keeps its events (functions, state machine, API access
   * logs, workers, stream, web); one of the values CloudWatch Logs accepts. Default 30.
   */
  logRetentionDays: "jobq:logRetentionDays",
  /**
   * `aws` (default) or `localstack`: the variant LocalStack's free tier can run — no workers
   * (as jobq:workers=none), no web dashboard (as jobq:dashboard=false) and no WebSocket stream
   * (API Gateway v2 is in its paid tier); GET /health then answers `streamUrl: null`.
   */
  target: "jobq:target",
  /**
   * `all` (default): a "Job State Change" event for every status change (docs/deploy.md).
   * `terminal`: only for changes into completed, failed, cancelled and escalated — three fewer
   * events per job; jobq's own wake-ups ride the Jobs table's stream either way.
   */
  stateChangeEvents: "jobq:stateChangeEvents",
} as const;

/** What CloudWatch Logs accepts as a retention (logs.RetentionDays, less "never expire"). */
export const LOG_RETENTION_DAYS: readonly number[] = Object.values(logs.RetentionDays).filter(
  (v): v is number => typeof v === "number" && v !== logs.RetentionDays.INFINITE,
);

/** web/dist of this repository: where `npm run build:web` puts the dashboard bundle. */
export const DEFAULT_DASHBOARD_PATH = fileURLToPath(new URL("../web/dist", import.meta.url));

export interface JobqStackProps extends StackProps {
  /**
   * Directory of the route handler modules.
   * @default functions/api of this repository
   */
  readonly handlersDir?: string;
  /**
   * Directory holding lifecycle.ts, scheduler.ts, reconciler.ts and stats-stream.ts.
   * @default functions/ of this repository
   */
  readonly functionsDir?: string;
  /**
   * The lifecycle state machine's ASL.
   * @default state-machines/job-lifecycle.asl.json of this repository
   */
  readonly definitionFile?: string;
  /**
   * Docker context and Dockerfile of the worker image.
   * @default the repository root and worker/Dockerfile
   */
  readonly workerImage?: WorkerImageSource;
  /**
   * The built web dashboard (index.html and assets/); read only with context jobq:dashboard on.
   * @default DEFAULT_DASHBOARD_PATH (web/dist)
   */
  readonly dashboardPath?: string;
}

export interface JobqSettings {
  readonly pools: readonly WorkerPoolConfig[];
  readonly removalPolicy: RemovalPolicy;
  readonly taskTypes: readonly string[] | undefined;
  readonly natGateways: number;
  readonly workers: "ecs" | "none";
  readonly dashboard: boolean;
  readonly retentionDays: number;
  readonly jobRetentionDays: number | undefined;
  readonly alarmEmail: string | undefined;
  readonly maxQueueAgeMinutes: number;
  readonly logRetention: logs.RetentionDays;
  readonly target: "aws" | "localstack";
  readonly stateChangeEvents: "all" | "terminal";
  /** The job stream's WebSocket API; off for LocalStack. */
  readonly stream: boolean;
}

/** `-c key=value` arrives as a string, cdk.json values as JSON already: accept both. */
function jsonContext(node: Node, key: string): unknown {
  const value: unknown = node.tryGetContext(key);
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new Error(`context ${key} is not valid JSON`, { cause: error });
  }
}

function parseContext<S extends z.ZodType>(key: string, schema: S, value: unknown): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join(".") || "value"}: ${i.message}`)
      .join("; ");
    throw new Error(`context ${key} is invalid: ${problems}`);
  }
  return parsed.data;
}

/** The stack's settings from CDK context, failing the synth on a bad value. */
export function readSettings(node: Node): JobqSettings {
  const pools = jsonContext(node, CONTEXT_KEYS.pools);
  const taskTypes = jsonContext(node, CONTEXT_KEYS.taskTypes);
  const natGateways = jsonContext(node, CONTEXT_KEYS.natGateways) ?? 1;
  const removal: unknown = node.tryGetContext(CONTEXT_KEYS.removalPolicy) ?? "retain";
  const workers: unknown = node.tryGetContext(CONTEXT_KEYS.workers) ?? "ecs";
  const dashboard: unknown = node.tryGetContext(CONTEXT_KEYS.dashboard) ?? true;
  const retentionDays = jsonContext(node, CONTEXT_KEYS.retentionDays) ?? DEFAULT_RETENTION_DAYS;
  const jobRetentionDays = jsonContext(node, CONTEXT_KEYS.jobRetentionDays);
  // Whole days, as DynamoDB's TTL has no use for less; the functions refuse anything else too.
  const days = z.number().int().min(1).max(36_500);
  const alarmEmail: unknown = node.tryGetContext(CONTEXT_KEYS.alarmEmail);
  const maxQueueAgeMinutes = jsonContext(node, CONTEXT_KEYS.maxQueueAgeMinutes) ?? 30;
  const logRetentionDays = jsonContext(node, CONTEXT_KEYS.logRetentionDays) ?? 30;
  const target = parseContext(
    CONTEXT_KEYS.target,
    z.enum(["aws", "localstack"]),
    node.tryGetContext(CONTEXT_KEYS.target) ?? "aws",
  );
  const localstack = target === "localstack";
  const stateChangeEvents = parseContext(
    CONTEXT_KEYS.stateChangeEvents,
    z.enum(["all", "terminal"]),
    node.tryGetContext(CONTEXT_KEYS.stateChangeEvents) ?? "all",
  );
  return {
    stateChangeEvents,
    pools:
      pools === undefined
        ? DEFAULT_POOLS
        : parseContext(
            CONTEXT_KEYS.pools,
            workerPoolsSchema.refine((p) => p.length <= MAX_POOLS_PER_STACK, {
              message:
                `at most ${MAX_POOLS_PER_STACK} pools a stack: each adds five queue URLs to every ` +
                "function's environment (Lambda refuses more than 4 KB) and 20 resources to the stack " +
                "(CloudFormation refuses more than 500); deploy a second stack for more",
            }),
            pools,
          ),
    removalPolicy:
      parseContext(CONTEXT_KEYS.removalPolicy, z.enum(["retain", "destroy"]), removal) === "destroy"
        ? RemovalPolicy.DESTROY
        : RemovalPolicy.RETAIN,
    taskTypes:
      taskTypes === undefined
        ? undefined
        : parseContext(CONTEXT_KEYS.taskTypes, z.array(z.string()), taskTypes),
    natGateways: parseContext(CONTEXT_KEYS.natGateways, z.number().int().min(0).max(2), natGateways),
    // LocalStack implies no workers and no dashboard whatever the other keys say: its free tier
    // has neither ECS nor CloudFront, and a half-deployable variant helps nobody.
    workers: localstack ? "none" : parseContext(CONTEXT_KEYS.workers, z.enum(["ecs", "none"]), workers),
    // `-c jobq:dashboard=false` arrives as a string, cdk.json's false as a boolean.
    retentionDays: parseContext(CONTEXT_KEYS.retentionDays, days, retentionDays),
    jobRetentionDays:
      jobRetentionDays === undefined
        ? undefined
        : parseContext(CONTEXT_KEYS.jobRetentionDays, days, jobRetentionDays),
    alarmEmail:
      alarmEmail === undefined ? undefined : parseContext(CONTEXT_KEYS.alarmEmail, z.email(), alarmEmail),
    // Up to 7 days: the longest a job may wait in its queue (the dispatch wait's limit).
    maxQueueAgeMinutes: parseContext(
      CONTEXT_KEYS.maxQueueAgeMinutes,
      z
        .number()
        .int()
        .min(1)
        .max(7 * 24 * 60),
      maxQueueAgeMinutes,
    ),
    dashboard:
      !localstack &&
      parseContext(
        CONTEXT_KEYS.dashboard,
        z.union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")]),
        dashboard,
      ),
    logRetention: parseContext(
      CONTEXT_KEYS.logRetentionDays,
      z.number().refine((days) => LOG_RETENTION_DAYS.includes(days), {
        message: `must be one of the retentions CloudWatch Logs accepts: ${LOG_RETENTION_DAYS.join(", ")}`,
      }),
      logRetentionDays,
    ) as logs.RetentionDays,
    target,
    stream: !localstack,
  };
}

/** Defined with the queues (lib/job-queues.ts), which check it too; exported here as before. */
export { MAX_POOLS_PER_STACK };

/**
 * jobq in one stack: the tables, the HTTP API, the lifecycle state machine, the dispatch queues,
 * the scheduler and reconciler, and the worker pools.
 */
export class JobqStack extends Stack {
  public readonly store: JobStore;
  /** Carries "Job State Change" events; users add their own rules to it. */
  public readonly eventBus: events.EventBus;
  public readonly queues: JobQueues;
  public readonly lifecycle: JobLifecycle;
  public readonly scheduler: Scheduler;
  public readonly jobApi: JobApi;
  /** Absent with context jobq:workers=none. */
  public readonly workers: WorkerPools | undefined;
  /**
   * The nested stack holding the worker pools (VPC, cluster, one service per pool): CloudFormation
   * allows 500 resources a stack, and with four pools the control plane alone comes near it.
   */
  public readonly workersStack: NestedStack | undefined;
  /**
   * WS /jobs/stream: the WebSocket API and the broadcaster on the Jobs table's stream; absent
   * with context jobq:target=localstack.
   */
  public readonly jobStream: JobStream | undefined;
  /** GET /stats's aggregates, folded from the Jobs table's stream. */
  public readonly jobStats: JobStats;
  /** The web dashboard on CloudFront; absent with context jobq:dashboard=false. */
  public readonly dashboard: WebDashboard | undefined;
  /** The nested stack holding the dashboard and the API's CORS preflights. */
  public readonly dashboardStack: NestedStack | undefined;
  /** The SNS topic paging alarms notify (in this stack: the alarms of this stack act on it). */
  public readonly alarmTopic: AlarmTopic;
  /**
   * The nested stack holding the paging alarms, the composite jobq-unhealthy and the CloudWatch
   * dashboard; absent with jobq:target=localstack, whose smaller stack holds them itself.
   */
  public readonly monitoringStack: NestedStack | undefined;
  public readonly monitoring: JobMonitoring;

  constructor(scope: Construct, id: string, props: JobqStackProps = {}) {
    super(scope, id, props);
    const settings = readSettings(this.node);
    const logRemovalPolicy = settings.removalPolicy;
    const logRetention = settings.logRetention;
    const entry = (name: string): string | undefined =>
      props.functionsDir === undefined ? undefined : join(props.functionsDir, `${name}.ts`);

    this.store = new JobStore(this, "Store", { removalPolicy: settings.removalPolicy });
    // Named after the stack: predictable for users' own rules, distinct for two stacks in one account.
    this.eventBus = new events.EventBus(this, "EventBus", { eventBusName: this.stackName });
    this.queues = new JobQueues(this, "Queues", { pools: settings.pools });
    const runtime: JobqRuntime = {
      store: this.store,
      eventBus: this.eventBus,
      queues: this.queues,
      pools: settings.pools,
      taskTypes: settings.taskTypes,
      retentionDays: settings.retentionDays,
      jobRetentionDays: settings.jobRetentionDays,
      stateChangeEvents: settings.stateChangeEvents,
    };

    this.lifecycle = new JobLifecycle(this, "Lifecycle", {
      ...runtime,
      entry: entry("lifecycle"),
      definitionFile: props.definitionFile,
      logRemovalPolicy,
      logRetention,
    });
    this.scheduler = new Scheduler(this, "Scheduler", {
      ...runtime,
      lifecycle: this.lifecycle,
      schedulerEntry: entry("scheduler"),
      reconcilerEntry: entry("reconciler"),
      logRemovalPolicy,
      logRetention,
    });
    this.jobApi = new JobApi(this, "Api", {
      ...runtime,
      lifecycle: this.lifecycle,
      handlersDir: props.handlersDir,
      logRemovalPolicy,
      logRetention,
    });
    // The compute plane in a nested stack of its own: every pool adds a service, its scaling and
    // its roles, and the tables, queues and state machine it uses reach it as parameters.
    this.workersStack =
      settings.workers === "ecs"
        ? new NestedStack(this, "Compute", {
            description: "jobq worker pools: VPC, ECS cluster, one service per pool",
          })
        : undefined;
    this.workers = this.workersStack
      ? new WorkerPools(this.workersStack, "Workers", {
          ...runtime,
          pools: settings.pools,
          lifecycle: this.lifecycle,
          natGateways: settings.natGateways,
          image: props.workerImage,
          logRemovalPolicy,
          logRetention,
        })
      : undefined;

    this.jobStream = settings.stream
      ? new JobStream(this, "Stream", {
          store: this.store,
          logRemovalPolicy,
          logRetention,
        })
      : undefined;
    // GET /health names the stream (API.md); without one it answers streamUrl: null.
    if (this.jobStream) this.jobApi.functions.Health?.addEnvironment("JOBQ_STREAM_URL", this.jobStream.url);
    // The stream's access log needs the account's API Gateway CloudWatch role, which the REST
    // API sets up (cloudWatchRole): a stage created first would fail the deploy.
    const apiGatewayAccount = this.jobApi.api.node.tryFindChild("Account");
    if (this.jobStream && apiGatewayAccount) this.jobStream.stage.node.addDependency(apiGatewayAccount);
    this.jobStats = new JobStats(this, "Stats", {
      store: this.store,
      environment: runtimeEnvironment(runtime, this.lifecycle.stateMachineArn),
      entry: entry("stats-stream"),
      logRemovalPolicy,
      logRetention,
    });

    // A nested stack of its own, with the API's CORS preflights, to keep this stack well under
    // CloudFormation's 500 resources. Nothing in it may depend on the REST
    // API's stage (nor so on its functions), which get the dashboard's origin: hence the API's URL
    // from its id and stage name, and origins for the page's connect-src.
    const stream = this.jobStream;
    this.dashboardStack =
      settings.dashboard && stream
        ? new NestedStack(this, "Web", { description: "jobq web dashboard and the API's CORS preflights" })
        : undefined;
    this.dashboard =
      this.dashboardStack && stream
        ? new WebDashboard(this.dashboardStack, "Dashboard", {
            dashboardPath: props.dashboardPath ?? DEFAULT_DASHBOARD_PATH,
            apiUrl: `${this.jobApi.origin}/${this.jobApi.stageName}/`,
            streamUrl: stream.url,
            connectOrigins: [this.jobApi.origin, stream.origin],
            logRemovalPolicy,
            logRetention,
          })
        : undefined;
    if (this.dashboard) this.jobApi.allowOrigin(this.dashboard.origin, this.dashboardStack);

    // The topic stays here, next to the alarms this stack already has (scheduler, lifecycle):
    // were it in the nested stack, those alarms would reference its outputs while the composite
    // there references them, a cycle. The other alarms (one per pool and tier's DLQ among them)
    // and the dashboard go into a nested stack of their own, away from this stack's 500-resource
    // limit; LocalStack's variant has room for them here and skips the nested stack's assets.
    this.alarmTopic = new AlarmTopic(this, "Alarms", { email: settings.alarmEmail });
    this.monitoringStack =
      settings.target === "aws"
        ? new NestedStack(this, "Monitoring", {
            description:
              "jobq paging alarms, the jobq-unhealthy composite alarm and the CloudWatch dashboard",
          })
        : undefined;
    this.monitoring = new JobMonitoring(this.monitoringStack ?? this, "Monitoring", {
      topic: this.alarmTopic.topic,
      pools: settings.pools.map((p) => p.name),
      queues: this.queues,
      lifecycle: this.lifecycle,
      scheduler: this.scheduler,
      api: this.jobApi,
      store: this.store,
      maxQueueAge: Duration.minutes(settings.maxQueueAgeMinutes),
      namePrefix: this.stackName,
    });

    // cdk-nag's accepted findings, each with its reason (lib/nag-acknowledgements.ts).
    acknowledgeNagFindings(this);

    new CfnOutput(this, "ApiUrl", { value: this.jobApi.url, description: "Base URL of the jobq API" });
    new CfnOutput(this, "JobsTableName", { value: this.store.jobsTable.tableName });
    if (this.jobStream) {
      new CfnOutput(this, "StreamUrl", {
        value: this.jobStream.url,
        description: "WS /jobs/stream: connect with Authorization: Bearer <token> or ?token=",
      });
    }
    new CfnOutput(this, "TokensTableName", {
      value: this.store.tokensTable.tableName,
      description: "For `jobq tokens bootstrap --table` (the first admin token)",
    });
    new CfnOutput(this, "EventBusName", {
      value: this.eventBus.eventBusName,
      description: 'Where "Job State Change" events go; add your own rules to it',
    });
    new CfnOutput(this, "StateMachineArn", {
      value: this.lifecycle.stateMachine.stateMachineArn,
      description: "The job lifecycle state machine: one execution per attempt, started at admission",
    });
    new CfnOutput(this, "AlarmTopicArn", {
      value: this.alarmTopic.topic.topicArn,
      description: "SNS topic every paging alarm notifies; subscribe chat or a pager to it",
    });
    new CfnOutput(this, "MonitoringDashboardName", {
      value: this.monitoring.dashboard.dashboardName,
      description:
        "The CloudWatch dashboard (health first, then API, jobs, queues, failures, capacity, cost)",
    });
    if (this.workers) {
      new CfnOutput(this, "ClusterName", {
        value: this.workers.cluster.clusterName,
        description: "ECS cluster of the worker pools",
      });
    }
    if (this.dashboard) {
      new CfnOutput(this, "DashboardUrl", {
        value: this.dashboard.url,
        description: "The web dashboard (index.html and config.json from the deploy)",
      });
    }
  }
}
