import { z } from "zod";
import type { Resources } from "./job";
import { EC2_HOURLY_USD, fargateHourlyUsd } from "./prices";

/**
 * Worker pools as configured (JOBQ_CONFIG locally, CDK context in AWS). A pool is a set of
 * identical nodes; a job can run in a pool only if one node could ever hold it.
 */

export const nodeSizeSchema = z.strictObject({
  cpu: z.number().positive(),
  memoryMb: z.number().int().positive(),
  gpu: z.number().int().min(0).default(0),
});

export const poolConfigSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, "must match ^[a-z0-9][a-z0-9-]{0,31}$"),
  labels: z.record(z.string(), z.string()).default({}),
  nodes: z.number().int().min(0).default(1),
  node: nodeSizeSchema,
  /**
   * What one node costs an hour, in USD: what a job's compute cost is a share of (core/cost.ts).
   * Default: the list price of the node's Fargate size or GPU instance type (poolHourlyUsd).
   */
  hourlyUsd: z.number().positive().max(1000).optional(),
});
export type PoolConfig = z.infer<typeof poolConfigSchema>;

export const DEFAULT_POOLS: readonly PoolConfig[] = [
  { name: "cpu", labels: {}, nodes: 2, node: { cpu: 2, memoryMb: 4096, gpu: 0 } },
  { name: "gpu", labels: {}, nodes: 1, node: { cpu: 8, memoryMb: 32768, gpu: 2 } },
];

export const poolsSchema = z
  .array(poolConfigSchema)
  .min(1)
  .refine((pools) => new Set(pools.map((p) => p.name)).size === pools.length, "pool names must be unique");

/** Whether a pool carries every label the job's constraints ask for. */
export function matchesConstraints(pool: PoolConfig, constraints: Readonly<Record<string, string>>): boolean {
  return Object.entries(constraints).every(([key, value]) => pool.labels[key] === value);
}

export function nodeFits(pool: PoolConfig, resources: Resources): boolean {
  return (
    resources.cpu <= pool.node.cpu &&
    resources.memoryMb <= pool.node.memoryMb &&
    resources.gpu <= pool.node.gpu
  );
}

/** Pools the job may ever run in: the named one, or every pool whose labels match. */
export function eligiblePools(
  pools: readonly PoolConfig[],
  job: { readonly pool?: string | null; readonly constraints?: Readonly<Record<string, string>> | null },
): PoolConfig[] {
  const constraints = job.constraints ?? {};
  return pools.filter((p) => (job.pool ? p.name === job.pool : true) && matchesConstraints(p, constraints));
}

/**
 * Why no pool could ever run the job, or null when some eligible pool's node fits it.
 * Used at submit to answer `unsatisfiable_resources` instead of queueing a job forever.
 */
export function unsatisfiableReason(
  pools: readonly PoolConfig[],
  job: {
    readonly pool?: string | null;
    readonly constraints?: Readonly<Record<string, string>> | null;
    readonly resources: Resources;
  },
): string | null {
  const eligible = eligiblePools(pools, job);
  if (eligible.length === 0) {
    if (job.pool && !pools.some((p) => p.name === job.pool)) return `no pool named ${job.pool}`;
    return `no pool carries the labels ${JSON.stringify(job.constraints ?? {})}`;
  }
  if (eligible.some((p) => nodeFits(p, job.resources))) return null;
  const { cpu, memoryMb, gpu } = job.resources;
  const largest = eligible
    .map((p) => `${p.name} (${p.node.cpu} CPU, ${p.node.memoryMb} MB, ${p.node.gpu} GPU)`)
    .join(", ");
  return `no node can hold ${cpu} CPU, ${memoryMb} MB, ${gpu} GPU; eligible node sizes: ${largest}`;
}

/** g5 sizes (vCPU, GiB, GPUs), cheapest first: a GPU pool's default instance type when none is named. */
const G5_BY_PRICE: readonly (readonly [string, number, number, number])[] = [
  ["g5.xlarge", 4, 16, 1],
  ["g5.2xlarge", 8, 32, 1],
  ["g5.4xlarge", 16, 64, 1],
  ["g5.8xlarge", 32, 128, 1],
  ["g5.16xlarge", 64, 256, 1],
  ["g5.12xlarge", 48, 192, 4],
  ["g5.24xlarge", 96, 384, 4],
  ["g5.48xlarge", 192, 768, 8],
];

/**
 * What one node of the pool costs an hour: its `hourlyUsd`, else the list price of what it runs
 * on — the instance type when known (lib/ fills it for GPU pools), else the cheapest g5 that holds
 * a GPU node (ECS keeps ~10 % of an instance's memory), else a Fargate task of the node's size.
 */
export function poolHourlyUsd(pool: PoolConfig, instanceType?: string): number {
  if (pool.hourlyUsd !== undefined) return pool.hourlyUsd;
  const { cpu, memoryMb, gpu } = pool.node;
  if (instanceType && EC2_HOURLY_USD[instanceType] !== undefined) return EC2_HOURLY_USD[instanceType] ?? 0;
  if (gpu > 0) {
    const fit = G5_BY_PRICE.find(
      ([, vcpu, gib, gpus]) => cpu <= vcpu && memoryMb <= gib * 1024 * 0.9 && gpu <= gpus,
    );
    return EC2_HOURLY_USD[fit?.[0] ?? "g5.48xlarge"] ?? 0;
  }
  return fargateHourlyUsd(cpu, memoryMb);
}
