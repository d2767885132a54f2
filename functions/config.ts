import { z } from "zod";
import { DEFAULT_POOLS, type PoolConfig, poolsSchema } from "../core/pools";

/**
 * The handlers' configuration, read once at cold start; a bad value fails the cold start
 * loudly instead of a request quietly. The only place in functions/ that reads process.env.
 */
const envSchema = z.object({
  JOBQ_JOBS_TABLE: z.string().min(1).default("jobq-Jobs"),
  JOBQ_TOKENS_TABLE: z.string().min(1).default("jobq-Tokens"),
  /** Set by the local stack and the tests: DynamoDB Local on loopback. Unset in AWS. */
  JOBQ_DYNAMODB_ENDPOINT: z.url().optional(),
  AWS_REGION: z.string().min(1).default("us-east-1"),
  /** JSON array of pools (core/pools.ts); defaults to API.md's local pools. */
  JOBQ_POOLS: z.string().optional(),
  /** JSON array of allowed job types; unset or empty means any type is accepted. */
  JOBQ_TASK_TYPES: z.string().optional(),
});

export interface HandlerConfig {
  readonly jobsTable: string;
  readonly tokensTable: string;
  readonly region: string;
  readonly dynamoEndpoint: string | undefined;
  readonly pools: readonly PoolConfig[];
  /** null: any job type is accepted. */
  readonly taskTypes: ReadonlySet<string> | null;
}

export function readConfig(env: NodeJS.ProcessEnv = process.env): HandlerConfig {
  const e = envSchema.parse(env);
  const pools = e.JOBQ_POOLS ? poolsSchema.parse(JSON.parse(e.JOBQ_POOLS)) : [...DEFAULT_POOLS];
  const types = e.JOBQ_TASK_TYPES ? z.array(z.string()).parse(JSON.parse(e.JOBQ_TASK_TYPES)) : [];
  return {
    jobsTable: e.JOBQ_JOBS_TABLE,
    tokensTable: e.JOBQ_TOKENS_TABLE,
    region: e.AWS_REGION,
    dynamoEndpoint: e.JOBQ_DYNAMODB_ENDPOINT,
    pools,
    taskTypes: types.length > 0 ? new Set(types) : null,
  };
}

let cached: HandlerConfig | undefined;
/** The process's configuration, parsed on first use. */
export function config(): HandlerConfig {
  cached ??= readConfig();
  return cached;
}
