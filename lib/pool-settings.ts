import { z } from "zod";
import { type PoolConfig, poolConfigSchema, poolHourlyUsd } from "../core/pools";
import { fargateHourlyUsd } from "../core/prices";

/**
 * How a pool runs in AWS: core/pools.ts's pool plus an optional `ecs` block, only in CDK context
 * (`jobq:pools`). The handlers and workers get the pools without it (JOBQ_POOLS), since core's
 * schema, rightly, knows nothing of ECS.
 */
export const ecsSettingsSchema = z.strictObject({
  /**
   * EC2 instance type of a GPU pool's nodes (one worker per instance).
   * Default: the smallest g5 that holds one node (GPU_INSTANCES).
   */
  instanceType: z
    .string()
    .regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, "must be an EC2 instance type such as g5.xlarge")
    .optional(),
  /** Workers kept running with nothing to do. Default: 0 for GPU pools (scale to zero), 1 for CPU pools. */
  minNodes: z.number().int().min(0).optional(),
  /** Most workers the pool scales to. Default: the pool's `nodes`. */
  maxNodes: z.number().int().min(0).optional(),
});
export type EcsSettings = z.infer<typeof ecsSettingsSchema>;

export const workerPoolSchema = poolConfigSchema
  .extend({ ecs: ecsSettingsSchema.optional() })
  .superRefine((pool, ctx) => {
    const min = pool.ecs?.minNodes;
    const max = pool.ecs?.maxNodes ?? pool.nodes;
    if (min !== undefined && min > max) {
      ctx.addIssue({
        code: "custom",
        path: ["ecs", "minNodes"],
        message: `must not exceed the most nodes (${max})`,
      });
    }
    if (pool.ecs?.instanceType !== undefined && pool.node.gpu === 0) {
      ctx.addIssue({
        code: "custom",
        path: ["ecs", "instanceType"],
        message: "applies to GPU pools only; a pool without GPUs runs on Fargate",
      });
    }
  });
export type WorkerPoolConfig = z.infer<typeof workerPoolSchema>;

export const workerPoolsSchema = z
  .array(workerPoolSchema)
  .min(1)
  .refine((pools) => new Set(pools.map((p) => p.name)).size === pools.length, "pool names must be unique");

/** The pool as handlers and workers read it (core/pools.ts), without the CDK-only settings. */
export function corePool(pool: WorkerPoolConfig | PoolConfig): PoolConfig {
  const { name, labels, nodes, node } = pool;
  return { name, labels, nodes, node, hourlyUsd: poolPrice(pool) };
}

/**
 * The pool's hourly price per node as deployed: its `hourlyUsd`, else the list price of its GPU
 * instance type or of the Fargate task that holds a node (core/prices.ts).
 */
function poolPrice(pool: WorkerPoolConfig | PoolConfig): number {
  if (pool.hourlyUsd !== undefined) return pool.hourlyUsd;
  if (pool.node.gpu > 0) return poolHourlyUsd(pool, gpuInstanceType(pool as WorkerPoolConfig));
  const size = fargateSize(pool.node);
  return fargateHourlyUsd(size.cpu / 1024, size.memoryMiB);
}

/** Workers kept running with nothing to do: none for GPU pools, one for CPU pools (if allowed any). */
export function minNodes(pool: WorkerPoolConfig): number {
  return pool.ecs?.minNodes ?? Math.min(pool.node.gpu > 0 ? 0 : 1, maxNodes(pool));
}

export function maxNodes(pool: WorkerPoolConfig): number {
  return pool.ecs?.maxNodes ?? pool.nodes;
}

/** Task size of a Fargate pool: Fargate's CPU units and memory (MiB). */
export interface FargateSize {
  readonly cpu: number;
  readonly memoryMiB: number;
}

/** Fargate's valid CPU/memory combinations (Linux): memory from min to max in steps. */
const FARGATE_SIZES: readonly { cpu: number; min: number; max: number; step: number }[] = [
  { cpu: 256, min: 512, max: 2048, step: 512 },
  { cpu: 512, min: 1024, max: 4096, step: 1024 },
  { cpu: 1024, min: 2048, max: 8192, step: 1024 },
  { cpu: 2048, min: 4096, max: 16384, step: 1024 },
  { cpu: 4096, min: 8192, max: 30720, step: 1024 },
  { cpu: 8192, min: 16384, max: 61440, step: 4096 },
  { cpu: 16384, min: 32768, max: 122880, step: 8192 },
];

/**
 * The smallest Fargate task that holds one node of the pool. Fargate takes only certain
 * combinations, so the task can be larger than the node; the node still advertises (and the
 * scheduler admits against) the pool's size.
 */
export function fargateSize(node: { readonly cpu: number; readonly memoryMb: number }): FargateSize {
  const cpuUnits = Math.ceil(node.cpu * 1024);
  for (const size of FARGATE_SIZES) {
    if (size.cpu < cpuUnits) continue;
    const memory = Math.max(size.min, Math.ceil(node.memoryMb / size.step) * size.step);
    if (memory <= size.max) return { cpu: size.cpu, memoryMiB: memory };
  }
  throw new Error(
    `no Fargate task holds ${node.cpu} vCPU and ${node.memoryMb} MB (at most 16 vCPU and 120 GB)`,
  );
}

/** An instance type's size as ECS sees it. */
export interface InstanceSize {
  readonly vcpu: number;
  readonly memoryMiB: number;
  readonly gpu: number;
}

/** NVIDIA instance types known at synth (no lookups), smallest first within each family. */
export const GPU_INSTANCES: Readonly<Record<string, InstanceSize>> = {
  "g5.xlarge": { vcpu: 4, memoryMiB: 16 * 1024, gpu: 1 },
  "g5.2xlarge": { vcpu: 8, memoryMiB: 32 * 1024, gpu: 1 },
  "g5.4xlarge": { vcpu: 16, memoryMiB: 64 * 1024, gpu: 1 },
  "g5.8xlarge": { vcpu: 32, memoryMiB: 128 * 1024, gpu: 1 },
  "g5.12xlarge": { vcpu: 48, memoryMiB: 192 * 1024, gpu: 4 },
  "g5.16xlarge": { vcpu: 64, memoryMiB: 256 * 1024, gpu: 1 },
  "g5.24xlarge": { vcpu: 96, memoryMiB: 384 * 1024, gpu: 4 },
  "g5.48xlarge": { vcpu: 192, memoryMiB: 768 * 1024, gpu: 8 },
  "g4dn.xlarge": { vcpu: 4, memoryMiB: 16 * 1024, gpu: 1 },
  "g4dn.2xlarge": { vcpu: 8, memoryMiB: 32 * 1024, gpu: 1 },
  "g4dn.4xlarge": { vcpu: 16, memoryMiB: 64 * 1024, gpu: 1 },
  "g4dn.8xlarge": { vcpu: 32, memoryMiB: 128 * 1024, gpu: 1 },
  "g4dn.12xlarge": { vcpu: 48, memoryMiB: 192 * 1024, gpu: 4 },
  "g4dn.16xlarge": { vcpu: 64, memoryMiB: 256 * 1024, gpu: 1 },
  "g6.xlarge": { vcpu: 4, memoryMiB: 16 * 1024, gpu: 1 },
  "g6.2xlarge": { vcpu: 8, memoryMiB: 32 * 1024, gpu: 1 },
  "g6.4xlarge": { vcpu: 16, memoryMiB: 64 * 1024, gpu: 1 },
  "g6.8xlarge": { vcpu: 32, memoryMiB: 128 * 1024, gpu: 1 },
  "g6.12xlarge": { vcpu: 48, memoryMiB: 192 * 1024, gpu: 4 },
  "g6.16xlarge": { vcpu: 64, memoryMiB: 256 * 1024, gpu: 1 },
  "g6.24xlarge": { vcpu: 96, memoryMiB: 384 * 1024, gpu: 4 },
  "g6.48xlarge": { vcpu: 192, memoryMiB: 768 * 1024, gpu: 8 },
};

/**
 * Memory the instance keeps for itself (OS, Docker, the ECS agent): ECS registers less than the
 * instance type's nominal memory, and a task asking for all of it would never be placed.
 */
const RESERVED_MEMORY_FRACTION = 0.1;

export function instanceHolds(instance: InstanceSize, node: PoolConfig["node"]): boolean {
  return (
    node.cpu <= instance.vcpu &&
    node.memoryMb <= Math.floor(instance.memoryMiB * (1 - RESERVED_MEMORY_FRACTION)) &&
    node.gpu <= instance.gpu
  );
}

/**
 * The instance type of a GPU pool: the configured one (checked when it is a known type), or the
 * cheapest g5 that holds one node.
 */
export function gpuInstanceType(pool: WorkerPoolConfig): string {
  const configured = pool.ecs?.instanceType;
  if (configured !== undefined) {
    const size = GPU_INSTANCES[configured];
    if (size && !instanceHolds(size, pool.node)) {
      throw new Error(
        `pool ${pool.name}: ${configured} (${size.vcpu} vCPU, ${size.memoryMiB} MiB, ${size.gpu} GPU) cannot hold one node ` +
          `(${pool.node.cpu} vCPU, ${pool.node.memoryMb} MB, ${pool.node.gpu} GPU)`,
      );
    }
    return configured;
  }
  // In ascending on-demand price (the 1-GPU 16xlarge costs less than the 4-GPU 12xlarge), so
  // the first fit is the cheapest.
  const g5ByPrice = [
    "g5.xlarge",
    "g5.2xlarge",
    "g5.4xlarge",
    "g5.8xlarge",
    "g5.16xlarge",
    "g5.12xlarge",
    "g5.24xlarge",
    "g5.48xlarge",
  ];
  const fit = g5ByPrice.find((type) => {
    const size = GPU_INSTANCES[type];
    return size !== undefined && instanceHolds(size, pool.node);
  });
  if (!fit) {
    throw new Error(
      `pool ${pool.name}: no g5 instance holds one node (${pool.node.cpu} vCPU, ${pool.node.memoryMb} MB, ` +
        `${pool.node.gpu} GPU); set ecs.instanceType`,
    );
  }
  return fit;
}
