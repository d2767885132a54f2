import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Stage } from "aws-cdk-lib";
import type { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { TIERS } from "../../lib/job-queues";
import type { JobqStack } from "../../lib/jobq-stack";
import { fargateSize, gpuInstanceType, type WorkerPoolConfig } from "../../lib/pool-settings";
import { QUEUED_JOBS_METRIC } from "../../lib/worker-pools";
import { readWorkerConfig } from "../../worker/config";
import {
  type CfnResource,
  grant,
  grantsOf,
  logicalId,
  nestedTemplate,
  resolvedEnvironment,
  resourcesOfType,
  roleStatements,
  synthJobqStack,
} from "./fixtures";

const POOLS = [
  { name: "cpu", nodes: 4, node: { cpu: 2, memoryMb: 4096 } },
  { name: "small", nodes: 2, node: { cpu: 0.5, memoryMb: 1000 }, ecs: { minNodes: 0 } },
  { name: "gpu", nodes: 1, node: { cpu: 8, memoryMb: 32768, gpu: 2 } },
  {
    name: "train",
    nodes: 2,
    node: { cpu: 4, memoryMb: 16384, gpu: 1 },
    ecs: { instanceType: "g5.2xlarge", minNodes: 1, maxNodes: 6 },
  },
];

let stack: JobqStack;
/** The worker pools' nested stack's template, naming the main stack's tables and queues. */
let template: Template;

beforeAll(() => {
  ({ stack } = synthJobqStack({ "jobq:pools": POOLS }));
  if (!stack.workersStack) throw new Error("no worker pools");
  template = nestedTemplate(stack.workersStack);
});

function poolOf(name: string) {
  const pool = stack.workers?.pools[name];
  if (!pool) throw new Error(`no worker pool ${name}`);
  return pool;
}

function resource(type: string, id: string): CfnResource {
  const found = resourcesOfType(template, type)[id];
  if (!found) throw new Error(`no ${type} ${id}`);
  return found;
}

const serviceOf = (name: string) => resource("AWS::ECS::Service", logicalId(poolOf(name).service));
const taskOf = (name: string) => resource("AWS::ECS::TaskDefinition", logicalId(poolOf(name).taskDefinition));

interface ContainerDefinition {
  readonly Environment: { Name: string; Value: unknown }[];
  readonly StopTimeout?: number;
  readonly ResourceRequirements?: { Type: string; Value: string }[];
  readonly Image: unknown;
}

function containerOf(name: string): ContainerDefinition {
  const [container] = (taskOf(name).Properties?.ContainerDefinitions ?? []) as ContainerDefinition[];
  if (!container) throw new Error(`no container in ${name}`);
  return container;
}

function scalableTargetOf(name: string): [string, CfnResource] {
  const serviceId = logicalId(poolOf(name).service);
  const found = Object.entries(resourcesOfType(template, "AWS::ApplicationAutoScaling::ScalableTarget")).find(
    ([, t]) => JSON.stringify(t.Properties?.ResourceId).includes(`"${serviceId}"`),
  );
  if (!found) throw new Error(`no scalable target for ${name}`);
  return found;
}

describe("a service per pool", () => {
  it.each([
    ["cpu", 2048, 4096],
    ["small", 512, 1024],
  ])("%s (no GPU) runs on Fargate in a task of %i CPU units and %i MiB", (name, cpu, memory) => {
    expect(serviceOf(name).Properties?.LaunchType).toBe("FARGATE");
    expect(taskOf(name).Properties).toMatchObject({
      RequiresCompatibilities: ["FARGATE"],
      Cpu: String(cpu),
      Memory: String(memory),
    });
  });

  it.each([
    ["gpu", "g5.12xlarge", "2"],
    ["train", "g5.2xlarge", "1"],
  ])(
    "%s runs on EC2 %s instances of its own capacity provider, with %s GPU per worker",
    (name, type, gpus) => {
      const pool = poolOf(name);
      if (!pool.capacityProvider || !pool.autoScalingGroup)
        throw new Error(`${name} has no capacity provider`);
      const { Ref: providerId } = stack.resolve(pool.capacityProvider.capacityProviderName) as {
        Ref: string;
      };

      expect(serviceOf(name).Properties?.LaunchType).toBeUndefined();
      expect(serviceOf(name).Properties?.CapacityProviderStrategy).toEqual([
        { CapacityProvider: { Ref: providerId }, Weight: 1 },
      ]);
      expect(
        resource("AWS::ECS::CapacityProvider", providerId).Properties?.AutoScalingGroupProvider,
      ).toMatchObject({
        AutoScalingGroupArn: { Ref: logicalId(pool.autoScalingGroup) },
        ManagedScaling: { Status: "ENABLED", TargetCapacity: 100 },
        ManagedTerminationProtection: "ENABLED",
      });
      expect(containerOf(name).ResourceRequirements).toEqual([{ Type: "GPU", Value: gpus }]);

      const group = resource("AWS::AutoScaling::AutoScalingGroup", logicalId(pool.autoScalingGroup));
      const templateRef = group.Properties?.LaunchTemplate as { LaunchTemplateId: { Ref: string } };
      const data = resource("AWS::EC2::LaunchTemplate", templateRef.LaunchTemplateId.Ref).Properties
        ?.LaunchTemplateData as Record<string, unknown>;
      expect(data.InstanceType).toBe(type);
      // Containers on the Docker bridge are one hop too far for instance metadata.
      expect(data.MetadataOptions).toEqual({ HttpTokens: "required", HttpPutResponseHopLimit: 1 });
    },
  );

  it("starts GPU instances from the ECS-optimized GPU AMI, resolved at deploy from SSM", () => {
    const parameters = template.toJSON().Parameters as Record<string, { Type: string; Default: string }>;
    expect(Object.values(parameters)).toContainEqual({
      Type: "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
      Default: "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
    });
  });

  it("waits for the cluster's capacity providers before creating a GPU service", () => {
    const associations = Object.keys(
      resourcesOfType(template, "AWS::ECS::ClusterCapacityProviderAssociations"),
    );
    expect(associations).toHaveLength(1);
    for (const name of ["gpu", "train"]) {
      const service = resourcesOfType(template, "AWS::ECS::Service")[logicalId(poolOf(name).service)] as
        | { DependsOn?: string[] }
        | undefined;
      expect(service?.DependsOn).toContain(associations[0]);
    }
  });

  it.each(POOLS.map((p) => [p.name]))(
    "%s: 120 s between SIGTERM and SIGKILL, so the worker drains",
    (name) => {
      expect(containerOf(name).StopTimeout).toBe(120);
    },
  );
});

describe("the worker's environment", () => {
  it.each(POOLS.map((p) => [p.name, p] as const))(
    "%s: worker/config.ts accepts it, for this pool, with its queues and the pool's node size",
    (name, pool) => {
      const variables = Object.fromEntries(containerOf(name).Environment.map((e) => [e.Name, e.Value]));
      const config = readWorkerConfig(resolvedEnvironment(variables));

      expect(config.pool).toBe(name);
      expect(Object.keys(config.shared.queues[name] ?? {}).sort()).toEqual([...TIERS].sort());
      expect(config.shared.stateMachineArn).toMatch(/:stateMachine:Jobq-job-lifecycle$/);
      expect(config.shared.eventBus).toBe(`<Ref:${logicalId(stack.eventBus)}>`);
      expect(config.shared.region).toBe("<Ref:AWS::Region>");
      expect(config.capacityOverride).toEqual({
        cpu: pool.node.cpu,
        memoryMb: pool.node.memoryMb,
        gpu: "gpu" in pool.node ? pool.node.gpu : 0,
      });
      // Handlers and workers read the same pools, without the CDK-only ecs settings.
      expect(config.shared.pools.map((p) => p.name)).toEqual(POOLS.map((p) => p.name));
      // Drains within the stop timeout, leaving time to hand back what it holds.
      expect(config.shutdownGraceMs).toBeLessThan(120_000);
    },
  );
});

describe("the worker's role", () => {
  const queueArnsOf = (pool: string) =>
    TIERS.map((tier) => {
      const queue = stack.queues.queues[pool]?.[tier];
      if (!queue) throw new Error(`no queue ${pool}/${tier}`);
      return { "Fn::GetAtt": [logicalId(queue), "Arn"] };
    });

  it.each(POOLS.map((p) => [p.name]))("%s: consumes its own pool's queues and no other queue", (name) => {
    const grants = [...grantsOf(roleStatements(template, logicalId(poolOf(name).taskDefinition.taskRole)))];
    const sqs = grants.filter((g) => g.startsWith("sqs:"));
    const expected = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ].flatMap((action) => queueArnsOf(name).map((arn) => grant(action, arn)));
    expect(new Set(sqs)).toEqual(new Set(expected));
    expect(sqs.some((g) => g.startsWith("sqs:SendMessage"))).toBe(false);
  });

  it.each(POOLS.map((p) => [p.name]))(
    "%s: reports and heartbeats on the lifecycle's task tokens, and may protect its own task",
    (name) => {
      const grants = grantsOf(roleStatements(template, logicalId(poolOf(name).taskDefinition.taskRole)));
      const stateMachineArn = stack.resolve(stack.lifecycle.stateMachineArn);
      for (const action of ["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"]) {
        expect(grants).toContain(grant(action, stateMachineArn));
      }
      expect([...grants].filter((g) => g.startsWith("states:"))).toHaveLength(3);
      expect([...grants].some((g) => g.startsWith("ecs:UpdateTaskProtection"))).toBe(true);
      const tokens = logicalId(stack.store.tokensTable);
      expect([...grants].some((g) => g.includes(`"${tokens}"`))).toBe(false);
    },
  );

  it.each(POOLS.map((p) => [p.name]))(
    "%s: may add a completed attempt's usage to the policy table, and do nothing else there",
    (name) => {
      const grants = [...grantsOf(roleStatements(template, logicalId(poolOf(name).taskDefinition.taskRole)))];
      const policy = logicalId(stack.store.policyTable);
      const onPolicy = grants.filter((g) => g.includes(`"${policy}"`));
      expect(onPolicy.length).toBeGreaterThan(0);
      expect(onPolicy.every((g) => g.startsWith("dynamodb:UpdateItem "))).toBe(true);
    },
  );
});

describe("scaling on the backlog", () => {
  it.each([
    ["cpu", 1, 4],
    ["small", 0, 2],
    ["gpu", 0, 1],
    ["train", 1, 6],
  ])("%s scales between %i and %i workers", (name, min, max) => {
    const [, target] = scalableTargetOf(name);
    expect(target.Properties).toMatchObject({
      MinCapacity: min,
      MaxCapacity: max,
      ScalableDimension: "ecs:service:DesiredCount",
    });
  });

  it.each(POOLS.map((p) => [p.name]))(
    "%s: step policies driven by alarms on its five queues' depth and its queued jobs",
    (name) => {
      const [targetId] = scalableTargetOf(name);
      const policies = Object.entries(
        resourcesOfType(template, "AWS::ApplicationAutoScaling::ScalingPolicy"),
      ).filter(
        ([, p]) => JSON.stringify(p.Properties?.ScalingTargetId) === JSON.stringify({ Ref: targetId }),
      );
      const adjustments = policies.flatMap(
        ([, p]) =>
          (
            p.Properties?.StepScalingPolicyConfiguration as
              | { StepAdjustments: { ScalingAdjustment: number }[] }
              | undefined
          )?.StepAdjustments ?? [],
      );
      expect(adjustments.some((a) => a.ScalingAdjustment > 0)).toBe(true);
      expect(adjustments.some((a) => a.ScalingAdjustment < 0)).toBe(true);

      const queueNames = TIERS.map((tier) => {
        const queue = stack.queues.queues[name]?.[tier];
        if (!queue) throw new Error(`no queue ${name}/${tier}`);
        return { "Fn::GetAtt": [logicalId(queue), "QueueName"] };
      });
      for (const [policyId] of policies) {
        const alarm = Object.values(resourcesOfType(template, "AWS::CloudWatch::Alarm")).find(
          (a) => JSON.stringify(a.Properties?.AlarmActions) === JSON.stringify([{ Ref: policyId }]),
        );
        const metrics = JSON.stringify(alarm?.Properties?.Metrics);
        for (const queueName of queueNames) {
          expect(metrics).toContain(
            JSON.stringify({
              Dimensions: [{ Name: "QueueName", Value: queueName }],
              MetricName: "ApproximateNumberOfMessagesVisible",
              Namespace: "AWS/SQS",
            }),
          );
        }
        expect(metrics).toContain(`"MetricName":"${QUEUED_JOBS_METRIC.metricName}"`);
        expect(metrics).toContain(JSON.stringify({ Name: "pool", Value: name }));
        // No other pool's queues.
        for (const other of POOLS.filter((p) => p.name !== name)) {
          const otherQueue = stack.queues.queues[other.name]?.normal;
          if (!otherQueue) throw new Error(`no queue ${other.name}/normal`);
          expect(metrics).not.toContain(`"${logicalId(otherQueue)}"`);
        }
      }
    },
  );
});

describe("the worker image", () => {
  it("is built from worker/Dockerfile for linux/amd64 at deploy; synth only stages what it copies", () => {
    const app = Stage.of(stack);
    if (!app) throw new Error("no app");
    const assembly = app.synth();
    const manifest = JSON.parse(readFileSync(join(assembly.directory, "Jobq.assets.json"), "utf8")) as {
      dockerImages: Record<string, { source: { directory: string; dockerFile: string; platform: string } }>;
    };
    const images = Object.values(manifest.dockerImages);
    expect(images).toHaveLength(1);
    const [image] = images;
    expect(image?.source.dockerFile).toBe("worker/Dockerfile");
    expect(image?.source.platform).toBe("linux/amd64");

    const staged = join(assembly.directory, image?.source.directory ?? "");
    expect(existsSync(join(staged, "worker", "Dockerfile"))).toBe(true);
    expect(existsSync(join(staged, "worker", "main.ts"))).toBe(true);
    expect(existsSync(join(staged, "package.json"))).toBe(true);
    // Left out by worker/Dockerfile.dockerignore, and always.
    for (const excluded of ["docs", "node_modules", "test", "cdk.out"]) {
      expect(existsSync(join(staged, excluded))).toBe(false);
    }
  });
});

describe("networking", () => {
  it("keeps workers in private subnets behind one NAT gateway by default", () => {
    expect(Object.keys(resourcesOfType(template, "AWS::EC2::NatGateway"))).toHaveLength(1);
    const network = serviceOf("cpu").Properties?.NetworkConfiguration as {
      AwsvpcConfiguration: { AssignPublicIp: string };
    };
    expect(network.AwsvpcConfiguration.AssignPublicIp).toBe("DISABLED");
  });

  it("with jobq:natGateways=0 has no NAT gateway and gives workers public IPs instead", () => {
    const synth = synthJobqStack({ "jobq:pools": POOLS, "jobq:natGateways": 0 });
    if (!synth.stack.workersStack) throw new Error("no worker pools");
    const workers = nestedTemplate(synth.stack.workersStack);
    expect(Object.keys(resourcesOfType(workers, "AWS::EC2::NatGateway"))).toHaveLength(0);
    const cpu = synth.stack.workers?.pools.cpu;
    if (!cpu) throw new Error("no cpu pool");
    const service = resourcesOfType(workers, "AWS::ECS::Service")[logicalId(cpu.service)];
    expect(service?.Properties?.NetworkConfiguration).toMatchObject({
      AwsvpcConfiguration: { AssignPublicIp: "ENABLED" },
    });
    for (const lt of Object.values(resourcesOfType(workers, "AWS::EC2::LaunchTemplate"))) {
      expect(lt.Properties?.LaunchTemplateData).toMatchObject({
        NetworkInterfaces: [expect.objectContaining({ AssociatePublicIpAddress: true })],
      });
    }
  });
});

describe("pool sizes", () => {
  it.each([
    [
      { cpu: 0.25, memoryMb: 512 },
      { cpu: 256, memoryMiB: 512 },
    ],
    [
      { cpu: 0.5, memoryMb: 1000 },
      { cpu: 512, memoryMiB: 1024 },
    ],
    [
      { cpu: 1, memoryMb: 1024 },
      { cpu: 1024, memoryMiB: 2048 },
    ],
    [
      { cpu: 2, memoryMb: 4096 },
      { cpu: 2048, memoryMiB: 4096 },
    ],
    [
      { cpu: 1, memoryMb: 9000 },
      { cpu: 2048, memoryMiB: 9216 },
    ],
    [
      { cpu: 6, memoryMb: 8192 },
      { cpu: 8192, memoryMiB: 16384 },
    ],
    [
      { cpu: 16, memoryMb: 122880 },
      { cpu: 16384, memoryMiB: 122880 },
    ],
  ])("a node of %o is the Fargate task %o", (node, size) => {
    expect(fargateSize(node)).toEqual(size);
  });

  it("refuses a node larger than any Fargate task", () => {
    expect(() => fargateSize({ cpu: 32, memoryMb: 4096 })).toThrow(/Fargate/);
    expect(() => fargateSize({ cpu: 4, memoryMb: 200_000 })).toThrow(/Fargate/);
  });

  const gpuPool = (node: WorkerPoolConfig["node"], ecs?: WorkerPoolConfig["ecs"]): WorkerPoolConfig => ({
    name: "p",
    labels: {},
    nodes: 1,
    node,
    ecs,
  });

  it.each([
    [{ cpu: 4, memoryMb: 8192, gpu: 1 }, "g5.xlarge"],
    [{ cpu: 4, memoryMb: 16384, gpu: 1 }, "g5.2xlarge"],
    [{ cpu: 40, memoryMb: 65536, gpu: 1 }, "g5.16xlarge"],
    [{ cpu: 8, memoryMb: 32768, gpu: 2 }, "g5.12xlarge"],
    [{ cpu: 64, memoryMb: 262144, gpu: 8 }, "g5.48xlarge"],
  ])("a GPU node of %o runs on %s unless told otherwise", (node, type) => {
    expect(gpuInstanceType(gpuPool(node))).toBe(type);
  });

  it("refuses an instance type that cannot hold a node, and one that is no known type is taken as given", () => {
    expect(() =>
      gpuInstanceType(gpuPool({ cpu: 8, memoryMb: 32768, gpu: 2 }, { instanceType: "g5.xlarge" })),
    ).toThrow(/g5.xlarge .* cannot hold one node/);
    expect(
      gpuInstanceType(gpuPool({ cpu: 8, memoryMb: 32768, gpu: 2 }, { instanceType: "p5.48xlarge" })),
    ).toBe("p5.48xlarge");
  });
});
