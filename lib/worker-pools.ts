import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ArnFormat, Duration, IgnoreMode, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as appscaling from "aws-cdk-lib/aws-applicationautoscaling";
import * as autoscaling from "aws-cdk-lib/aws-autoscaling";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as cloudwatchActions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as ecrAssets from "aws-cdk-lib/aws-ecr-assets";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import { Construct } from "constructs";
import { METRICS } from "../core/metrics";
import type { JobLifecycle } from "./job-lifecycle";
import { MAX_POOLS_PER_STACK } from "./job-queues";
import {
  type JobqRuntime,
  type RuntimeSettings,
  runtimeEnvironment,
  validateRuntimeProps,
} from "./jobq-function";
import { jobqMetric } from "./jobq-metrics";
import { fargateSize, gpuInstanceType, maxNodes, minNodes, type WorkerPoolConfig } from "./pool-settings";
import { checkDuration, checkNumber } from "./validate-props";

/** Where the worker image is built from: a Docker context and the Dockerfile in it. */
export interface WorkerImageSource {
  /** The build context. */
  readonly directory: string;
  /** The Dockerfile, relative to `directory`. */
  readonly file: string;
}

/** The repository root as context (the worker imports core/, app/, store/, functions/config.ts). */
export const DEFAULT_WORKER_IMAGE: WorkerImageSource = {
  directory: fileURLToPath(new URL("..", import.meta.url)),
  file: "worker/Dockerfile",
};

/**
 * Always left out of the build context and of the asset hash: nothing the image needs, and each
 * changes often enough to make every synth a new image.
 */
export const WORKER_IMAGE_EXCLUDE: readonly string[] = [
  "node_modules",
  "cdk.out",
  ".jobq",
  ".git",
  "test",
  ".scratch",
];

/**
 * What the asset leaves out of the context: the Dockerfile's own ignore file
 * (`<Dockerfile>.dockerignore`, which BuildKit reads instead of the context's `.dockerignore`)
 * followed by WORKER_IMAGE_EXCLUDE. CDK reads only the context's `.dockerignore`, so without this
 * the asset hash would cover the whole repository: a change to docs/ or lib/ would make a new
 * image, and ECS would replace every worker (draining running attempts) for nothing.
 */
export function workerImageExclude(source: WorkerImageSource): string[] {
  const ignoreFile = join(source.directory, `${source.file}.dockerignore`);
  const own = existsSync(ignoreFile)
    ? readFileSync(ignoreFile, "utf8")
        .split(/\r?\n/)
        .map((line) => line.trim())
        .filter((line) => line !== "" && !line.startsWith("#"))
    : [];
  return [...own, ...WORKER_IMAGE_EXCLUDE];
}

/**
 * Jobs waiting for capacity in a pool, as the scheduler publishes it (CloudWatch embedded metric
 * format, Powertools Metrics): namespace `jobq`, metric `QueuedJobs`, dimensions `service=jobq`
 * and `pool`. Dispatch messages alone cannot start a pool: a job is only sent to a queue once a
 * node has room for it, so a pool with no nodes would never see one.
 */
export const QUEUED_JOBS_METRIC = {
  namespace: "jobq",
  metricName: METRICS.queuedJobs.name,
  dimensions: (pool: string) => ({ service: "jobq", pool }),
} as const;

/** The documented limits of WorkerPoolsProps (and the runtime settings), checked at synth. */
export function validateWorkerPoolsProps(
  scope: Construct,
  props: Pick<WorkerPoolsProps, "pools" | "stopTimeout" | "scaleInAfterMinutes" | "natGateways"> &
    RuntimeSettings,
): void {
  validateRuntimeProps(scope, props);
  checkNumber(scope, "pools", props.pools.length, {
    min: 1,
    max: MAX_POOLS_PER_STACK,
    unit: " pools",
    why: "one ECS service, its scaling and its roles per pool; deploy a second stack for more",
  });
  checkDuration(scope, "stopTimeout", props.stopTimeout, {
    min: Duration.seconds(2),
    max: Duration.seconds(120),
    why: "what ECS allows a container between SIGTERM and SIGKILL on Fargate",
  });
  checkNumber(scope, "scaleInAfterMinutes", props.scaleInAfterMinutes, {
    min: 1,
    max: 1440,
    integer: true,
    why: "the BacklogEmpty alarm's one-minute evaluation periods, which CloudWatch caps at a day",
  });
  checkNumber(scope, "natGateways", props.natGateways, {
    min: 0,
    max: 2,
    integer: true,
    why: "the VPC spans two availability zones",
  });
}

export interface WorkerPoolsProps extends JobqRuntime {
  /** One ECS service per pool. */
  readonly pools: readonly WorkerPoolConfig[];
  readonly lifecycle: JobLifecycle;
  /**
   * NAT gateways of the VPC. With one or more, workers run in private subnets and reach AWS
   * through them (about 33 USD a month each, plus 0.045 USD per GB). With 0 there are only
   * public subnets: every worker gets a public IP (0.005 USD an hour while it runs) and nothing
   * costs anything while no worker runs. Workers open no ports either way, and their security
   * groups admit nothing. 0 to 2 (the VPC spans two availability zones).
   * @default 1
   */
  readonly natGateways?: number;
  /** @default DEFAULT_WORKER_IMAGE (worker/Dockerfile, repository root as context) */
  readonly image?: WorkerImageSource;
  /**
   * How long a worker has between SIGTERM and SIGKILL to stop taking work and hand back what it
   * holds. Fargate allows 2 to 120 s (checked at synth).
   * @default Duration.seconds(120)
   */
  readonly stopTimeout?: Duration;
  /**
   * Minutes of no backlog before a pool gives back one worker; 1 to 1,440.
   * @default 10
   */
  readonly scaleInAfterMinutes?: number;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** One pool's workers. */
export interface WorkerPool {
  readonly config: WorkerPoolConfig;
  readonly service: ecs.Ec2Service | ecs.FargateService;
  readonly taskDefinition: ecs.TaskDefinition;
  readonly container: ecs.ContainerDefinition;
  /** What the pool scales on: its queues' backlog plus the jobs waiting for its capacity. */
  readonly backlog: cloudwatch.MathExpression;
  /** GPU pools only: the instances' Auto Scaling group and its capacity provider. */
  readonly autoScalingGroup?: autoscaling.AutoScalingGroup;
  readonly capacityProvider?: ecs.AsgCapacityProvider;
}

/**
 * The workers: a VPC, an ECS cluster and one service per pool running worker/Dockerfile's image.
 * Pools without GPUs run on Fargate; GPU pools on EC2 instances of an Auto Scaling group behind
 * a capacity provider, so ECS starts an instance when it needs one and GPU pools can sit at zero.
 * Each pool scales on its backlog.
 */
export class WorkerPools extends Construct {
  public readonly vpc: ec2.Vpc;
  public readonly cluster: ecs.Cluster;
  public readonly image: ecrAssets.DockerImageAsset;
  /** By pool name. */
  public readonly pools: Readonly<Record<string, WorkerPool>>;

  constructor(scope: Construct, id: string, props: WorkerPoolsProps) {
    super(scope, id);
    validateWorkerPoolsProps(this, props);
    const natGateways = props.natGateways ?? 1;
    const publicOnly = natGateways === 0;
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const logRemovalPolicy = props.logRemovalPolicy ?? RemovalPolicy.RETAIN;

    // Created here, never looked up: synth needs no AWS account. Two AZs keep a pool running when
    // one AZ has no capacity for its instance type.
    this.vpc = new ec2.Vpc(this, "Vpc", {
      maxAzs: 2,
      natGateways,
      subnetConfiguration: publicOnly
        ? [{ name: "workers", subnetType: ec2.SubnetType.PUBLIC, cidrMask: 20 }]
        : [
            { name: "public", subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
            { name: "workers", subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
          ],
      // Free, and they keep the heaviest traffic (DynamoDB calls, image layers from S3) off the NAT.
      gatewayEndpoints: {
        DynamoDb: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB },
        S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
      },
      // Rejected traffic only: what an operator looks for (something probing the workers, or a
      // worker blocked from reaching AWS), at a fraction of logging every accepted flow.
      flowLogs: {
        Rejected: {
          destination: ec2.FlowLogDestination.toCloudWatchLogs(
            new logs.LogGroup(this, "FlowLogs", { retention: logRetention, removalPolicy: logRemovalPolicy }),
          ),
          trafficType: ec2.FlowLogTrafficType.REJECT,
        },
      },
    });
    const subnets: ec2.SubnetSelection = {
      subnetType: publicOnly ? ec2.SubnetType.PUBLIC : ec2.SubnetType.PRIVATE_WITH_EGRESS,
    };

    this.cluster = new ecs.Cluster(this, "Cluster", {
      vpc: this.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    const source = props.image ?? DEFAULT_WORKER_IMAGE;
    // Built and pushed by `cdk deploy` (cdk-assets), never by synth: synth only stages the context.
    this.image = new ecrAssets.DockerImageAsset(this, "WorkerImage", {
      directory: source.directory,
      file: source.file,
      exclude: workerImageExclude(source),
      ignoreMode: IgnoreMode.DOCKER,
      // The GPU instances are x86_64, and one image serves every pool; built on an arm64 laptop
      // it would otherwise not start there.
      platform: ecrAssets.Platform.LINUX_AMD64,
    });
    const image = ecs.ContainerImage.fromDockerImageAsset(this.image);

    const pools: Record<string, WorkerPool> = {};
    for (const pool of props.pools) {
      pools[pool.name] = this.addPool(
        pool,
        image,
        subnets,
        publicOnly,
        props,
        logRetention,
        logRemovalPolicy,
      );
    }
    this.pools = pools;
  }

  private addPool(
    pool: WorkerPoolConfig,
    image: ecs.ContainerImage,
    subnets: ec2.SubnetSelection,
    publicOnly: boolean,
    props: WorkerPoolsProps,
    logRetention: logs.RetentionDays,
    logRemovalPolicy: RemovalPolicy,
  ): WorkerPool {
    const scope = new Construct(this, pool.name);
    const stack = Stack.of(this);
    const gpu = pool.node.gpu > 0;
    const logGroup = new logs.LogGroup(scope, "Logs", {
      retention: logRetention,
      removalPolicy: logRemovalPolicy,
    });

    const stopTimeout = props.stopTimeout ?? Duration.seconds(120);
    const environment = {
      ...runtimeEnvironment(props, props.lifecycle.stateMachineArn),
      JOBQ_POOL: pool.name,
      // The node advertises the pool's size, not what it detects: Fargate rounds tasks up to its
      // sizes, and a bridge-mode container on EC2 has CPU shares, not a quota, so detection would
      // report the whole instance. The pool's size is what submit checked jobs against.
      JOBQ_NODE_CPU: String(pool.node.cpu),
      JOBQ_NODE_MEMORY_MB: String(pool.node.memoryMb),
      JOBQ_NODE_GPU: String(pool.node.gpu),
      // Running attempts get this long after SIGTERM; the rest of stopTimeout hands back the
      // messages and the node before SIGKILL.
      JOBQ_SHUTDOWN_GRACE_SECONDS: String(Math.max(0, stopTimeout.toSeconds() - 20)),
      // functions/config.ts would otherwise assume us-east-1.
      AWS_REGION: stack.region,
      // Credentials come from the task role through the container credentials endpoint, which the
      // SDK asks before instance metadata; turning the metadata fallback off means a missing task
      // role fails loudly instead of quietly borrowing the instance's role.
      AWS_EC2_METADATA_DISABLED: "true",
      POWERTOOLS_SERVICE_NAME: "jobq",
      POWERTOOLS_METRICS_NAMESPACE: "jobq",
      NODE_OPTIONS: "--enable-source-maps",
    };
    const containerOptions: ecs.ContainerDefinitionOptions = {
      image,
      environment,
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: pool.name }),
      // SIGTERM first: the worker stops polling, marks its node draining and finishes or hands
      // back its attempt within this time.
      stopTimeout,
    };

    let taskDefinition: ecs.TaskDefinition;
    let container: ecs.ContainerDefinition;
    let service: ecs.Ec2Service | ecs.FargateService;
    let autoScalingGroup: autoscaling.AutoScalingGroup | undefined;
    let capacityProvider: ecs.AsgCapacityProvider | undefined;

    if (gpu) {
      const instanceType = gpuInstanceType(pool);
      const securityGroup = new ec2.SecurityGroup(scope, "NodeSecurityGroup", {
        vpc: this.vpc,
        description: `jobq ${pool.name} GPU nodes: no inbound`,
        allowAllOutbound: true,
      });
      const launchTemplate = new ec2.LaunchTemplate(scope, "LaunchTemplate", {
        // The GPU variant of the ECS-optimized AMI (NVIDIA driver, container toolkit), resolved
        // from its SSM parameter at deploy. Amazon Linux 2023: the Amazon Linux 2 one reached its
        // end of life on 2026-06-30.
        machineImage: ecs.EcsOptimizedImage.amazonLinux2023(ecs.AmiHardwareType.GPU),
        instanceType: new ec2.InstanceType(instanceType),
        userData: ec2.UserData.forLinux(),
        role: new iam.Role(scope, "InstanceRole", {
          assumedBy: new iam.ServicePrincipal("ec2.amazonaws.com"),
        }),
        securityGroup,
        // IMDSv2 with one hop: the agent on the host reads instance metadata, containers on the
        // Docker bridge (one more hop) cannot, so job code never sees the instance role.
        requireImdsv2: true,
        httpPutResponseHopLimit: 1,
        associatePublicIpAddress: publicOnly ? true : undefined,
        blockDevices: [
          {
            deviceName: "/dev/xvda",
            // GPU images (CUDA) are several GB: room for a few of them.
            volume: ec2.BlockDeviceVolume.ebs(100, {
              volumeType: ec2.EbsDeviceVolumeType.GP3,
              encrypted: true,
            }),
          },
        ],
      });
      autoScalingGroup = new autoscaling.AutoScalingGroup(scope, "Nodes", {
        vpc: this.vpc,
        vpcSubnets: subnets,
        launchTemplate,
        // ECS managed scaling moves this between 0 and the pool's size.
        minCapacity: 0,
        maxCapacity: Math.max(maxNodes(pool), 1),
      });
      capacityProvider = new ecs.AsgCapacityProvider(scope, "CapacityProvider", {
        autoScalingGroup,
        enableManagedScaling: true,
        // One worker per instance and no spare instances: a GPU instance idles expensively.
        targetCapacityPercent: 100,
        // An instance with a running worker is not terminated by a scale-in of the group.
        enableManagedTerminationProtection: true,
      });
      this.cluster.addAsgCapacityProvider(capacityProvider);

      // Bridge mode: the container uses the instance's network, so a public-subnet instance needs
      // no NAT; awsvpc on EC2 gives tasks no public IP.
      taskDefinition = new ecs.Ec2TaskDefinition(scope, "Task", { networkMode: ecs.NetworkMode.BRIDGE });
      container = taskDefinition.addContainer("worker", {
        ...containerOptions,
        cpu: Math.ceil(pool.node.cpu * 1024),
        memoryLimitMiB: pool.node.memoryMb,
        gpuCount: pool.node.gpu,
      });
      service = new ecs.Ec2Service(scope, "Service", {
        cluster: this.cluster,
        taskDefinition,
        capacityProviderStrategies: [{ capacityProvider: capacityProvider.capacityProviderName, weight: 1 }],
        ...deployment(),
      });
      // The strategy names a provider the cluster must already have: wait for the association.
      service.node.addDependency(this.cluster);
    } else {
      const size = fargateSize(pool.node);
      taskDefinition = new ecs.FargateTaskDefinition(scope, "Task", {
        cpu: size.cpu,
        memoryLimitMiB: size.memoryMiB,
        runtimePlatform: {
          cpuArchitecture: ecs.CpuArchitecture.X86_64,
          operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
        },
      });
      container = taskDefinition.addContainer("worker", containerOptions);
      service = new ecs.FargateService(scope, "Service", {
        cluster: this.cluster,
        taskDefinition,
        vpcSubnets: subnets,
        assignPublicIp: publicOnly,
        ...deployment(),
      });
    }

    this.grantWorker(taskDefinition.taskRole, pool.name, props);
    const backlog = this.backlogOf(pool.name, props);
    this.scaleOnBacklog(scope, service, pool, backlog, props.scaleInAfterMinutes ?? 10);
    return {
      config: pool,
      service,
      taskDefinition,
      container,
      backlog,
      autoScalingGroup,
      capacityProvider,
    };
  }

  /** What a worker does: docs/lifecycle.md's worker steps, for its own pool's queues only. */
  private grantWorker(role: iam.IRole, pool: string, props: WorkerPoolsProps): void {
    props.store.grantJobs(role, [
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:ConditionCheckItem",
    ]);
    // Register, heartbeat, drain and deregister its node; move a reservation onto it.
    props.store.grantNodes(role, [
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:ConditionCheckItem",
    ]);
    // Completing an attempt (app/lifecycle.ts#completeRun) adds its GPU-seconds to the owner's
    // usage in the same transaction and its run time to its type's statistics: UpdateItem (ADD).
    props.store.grantPolicy(role, ["dynamodb:UpdateItem"]);
    props.queues.grantConsume(role, pool);
    props.lifecycle.grantTaskResponse(role);
    props.eventBus.grantPutEventsTo(role);
    this.grantTaskProtection(role);
  }

  /**
   * Task scale-in protection through the ECS agent ($ECS_AGENT_URI/task-protection/v1/state), on
   * this cluster's tasks only: a worker running an attempt protects its task, so a scale-in stops
   * idle workers only.
   */
  public grantTaskProtection(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"],
      resourceArns: [
        Stack.of(this).formatArn({
          service: "ecs",
          resource: "task",
          resourceName: `${this.cluster.clusterName}/*`,
          arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
        }),
      ],
    });
  }

  /**
   * A pool's backlog, what it scales on: its dispatch messages no worker has taken yet plus the
   * jobs the scheduler found waiting for its capacity (QueuedJobs). Missing data is 0.
   */
  public metricBacklog(pool: string, props?: cloudwatch.MathExpressionOptions): cloudwatch.MathExpression {
    const found = this.pools[pool];
    if (!found) throw new Error(`jobq: no worker pool ${pool}`);
    return props === undefined ? found.backlog : found.backlog.with(props);
  }

  /**
   * The pool's backlog: dispatch messages no worker has taken yet, plus the jobs the scheduler
   * found waiting for capacity in the pool (QUEUED_JOBS_METRIC). Missing data is 0.
   */
  private backlogOf(pool: string, props: WorkerPoolsProps): cloudwatch.MathExpression {
    const period = Duration.minutes(1);
    const messages = props.queues.metricVisibleMessages(pool, period);
    // The scheduler's figure (Scheduler#metricQueuedJobs); built here from the same catalogue
    // entry because the pools are constructed without the scheduler.
    const queued = jobqMetric("queuedJobs", { pool }, { statistic: cloudwatch.Stats.MAXIMUM, period });
    return new cloudwatch.MathExpression({
      label: `${pool}: backlog`,
      expression: `messages + FILL(queued, 0)`,
      usingMetrics: { messages, queued },
      period,
    });
  }

  /**
   * Step scaling on the backlog: out as soon as anything waits (bigger steps for bigger
   * backlogs), in one worker at a time after a quiet spell. Target tracking cannot start a pool
   * from zero tasks, which is where GPU pools sit.
   */
  private scaleOnBacklog(
    scope: Construct,
    service: ecs.BaseService,
    pool: WorkerPoolConfig,
    backlog: cloudwatch.MathExpression,
    scaleInAfterMinutes: number,
  ): void {
    const scaling = service.autoScaleTaskCount({ minCapacity: minNodes(pool), maxCapacity: maxNodes(pool) });
    // autoScaleTaskCount's ScalableTarget (with ECS's service-linked role): the step actions need it.
    const target = scaling.node.findChild("Target");
    if (!(target instanceof appscaling.ScalableTarget)) throw new Error("no scalable target for the service");

    const out = new appscaling.StepScalingAction(scope, "ScaleOut", {
      scalingTarget: target,
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      metricAggregationType: appscaling.MetricAggregationType.MAXIMUM,
      // The backlog stays until the new worker takes it, and the alarm keeps firing while it
      // does: wait about as long as a worker takes to start (a GPU instance boots and pulls a
      // large image) before adding more, or one waiting job would start the whole pool.
      cooldown: pool.node.gpu > 0 ? Duration.minutes(7) : Duration.minutes(2),
    });
    // Bounds are relative to the alarm's threshold (1).
    out.addAdjustment({ lowerBound: 0, upperBound: 9, adjustment: 1 });
    out.addAdjustment({ lowerBound: 9, upperBound: 49, adjustment: 3 });
    out.addAdjustment({ lowerBound: 49, adjustment: 10 });
    new cloudwatch.Alarm(scope, "BacklogHigh", {
      alarmDescription: `jobq: work waits in pool ${pool.name}; add workers`,
      metric: backlog,
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }).addAlarmAction(new cloudwatchActions.ApplicationScalingAction(out));

    const scaleIn = new appscaling.StepScalingAction(scope, "ScaleIn", {
      scalingTarget: target,
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      metricAggregationType: appscaling.MetricAggregationType.MAXIMUM,
      cooldown: Duration.minutes(5),
    });
    scaleIn.addAdjustment({ upperBound: 0, adjustment: -1 });
    new cloudwatch.Alarm(scope, "BacklogEmpty", {
      alarmDescription: `jobq: nothing waits in pool ${pool.name}; remove a worker`,
      metric: backlog,
      threshold: 0,
      evaluationPeriods: scaleInAfterMinutes,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    }).addAlarmAction(new cloudwatchActions.ApplicationScalingAction(scaleIn));
  }
}

/**
 * Rolling: new workers start before old ones get SIGTERM, and a release whose workers cannot
 * start rolls back on its own.
 */
function deployment(): Pick<
  ecs.BaseServiceOptions,
  "minHealthyPercent" | "maxHealthyPercent" | "circuitBreaker"
> {
  return { minHealthyPercent: 100, maxHealthyPercent: 200, circuitBreaker: { rollback: true } };
}
