/**
 * The one dated price table jobq costs with: the bench (bench/run.ts) prices what it counted with
 * it, and every job's `cost` (core/cost.ts) prices what its life caused with it, so the two agree.
 * us-east-1, on-demand list prices; free tiers are left out. Prices change: check the AWS pricing
 * pages and move `date` with them.
 */
export const PRICES = {
  /** The month the prices were read; shown as `cost.priceTable`. */
  date: "2026-11",
  region: "us-east-1",
  /** Step Functions Standard, per state transition. */
  stateTransition: 25 / 1e6,
  /** DynamoDB on-demand: one WRU per KB written (2 in a transaction), one RRU per 4 KB read. */
  writeUnit: 0.625 / 1e6,
  readUnit: 0.125 / 1e6,
  /** SQS standard, per request (each 64 KB chunk; empty receives count). */
  sqsRequest: 0.4 / 1e6,
  /** Lambda, per request and per GB-second on arm64. */
  lambdaRequest: 0.2 / 1e6,
  lambdaGbSecond: 0.0000133334,
  /** EventBridge custom events, per entry (64 KB chunk). */
  eventEntry: 1.0 / 1e6,
  /**
   * API Gateway REST API (what lib/job-api.ts deploys), per request (first 333 million a month).
   * Its token authorizer's answers are cached 5 minutes per token: no authorizer call per job.
   */
  apiRequest: 3.5 / 1e6,
  /** Fargate, Linux x86_64 (lib/worker-pools.ts), per vCPU-hour and per GB-hour. */
  fargateVcpuHour: 0.04048,
  fargateGbHour: 0.004445,
} as const;

/**
 * On-demand hourly list prices (Linux, us-east-1, same date) of the GPU instance types a pool may
 * name (lib/pool-settings.ts#GPU_INSTANCES).
 */
export const EC2_HOURLY_USD: Readonly<Record<string, number>> = {
  "g5.xlarge": 1.006,
  "g5.2xlarge": 1.212,
  "g5.4xlarge": 1.624,
  "g5.8xlarge": 2.448,
  "g5.12xlarge": 5.672,
  "g5.16xlarge": 4.096,
  "g5.24xlarge": 8.144,
  "g5.48xlarge": 16.288,
  "g4dn.xlarge": 0.526,
  "g4dn.2xlarge": 0.752,
  "g4dn.4xlarge": 1.204,
  "g4dn.8xlarge": 2.176,
  "g4dn.12xlarge": 3.912,
  "g4dn.16xlarge": 4.352,
  "g6.xlarge": 0.8048,
  "g6.2xlarge": 0.9776,
  "g6.4xlarge": 1.3232,
  "g6.8xlarge": 2.0144,
  "g6.12xlarge": 4.6016,
  "g6.16xlarge": 3.3968,
  "g6.24xlarge": 6.6752,
  "g6.48xlarge": 13.3504,
};

/** The hourly price of a Fargate task of this size (vCPU, MiB). */
export function fargateHourlyUsd(vcpu: number, memoryMiB: number): number {
  return vcpu * PRICES.fargateVcpuHour + (memoryMiB / 1024) * PRICES.fargateGbHour;
}
