import { CfnOutput, RemovalPolicy, Stack, type StackProps } from "aws-cdk-lib";
import type { Construct, Node } from "constructs";
import { z } from "zod";
import { DEFAULT_POOLS, type PoolConfig, poolsSchema } from "../core/pools";
import { JobApi } from "./job-api";
import { JobStore } from "./job-store";

/** CDK context keys this stack reads (`cdk deploy -c key=value` or cdk.json). */
export const CONTEXT_KEYS = {
  /** JSON array of pools as in core/pools.ts; default DEFAULT_POOLS. */
  pools: "jobq:pools",
  /** `retain` (default) or `destroy`: what `cdk destroy` does to the tables and logs. */
  removalPolicy: "jobq:removalPolicy",
  /** JSON array of job types the API accepts; default: any type. */
  taskTypes: "jobq:taskTypes",
} as const;

export interface JobqStackProps extends StackProps {
  /**
   * Directory of the route handler modules.
   * @default functions/api of this repository
   */
  readonly handlersDir?: string;
}

export interface JobqSettings {
  readonly pools: readonly PoolConfig[];
  readonly removalPolicy: RemovalPolicy;
  readonly taskTypes: readonly string[] | undefined;
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
  const removal: unknown = node.tryGetContext(CONTEXT_KEYS.removalPolicy) ?? "retain";
  return {
    pools: pools === undefined ? DEFAULT_POOLS : parseContext(CONTEXT_KEYS.pools, poolsSchema, pools),
    removalPolicy:
      parseContext(CONTEXT_KEYS.removalPolicy, z.enum(["retain", "destroy"]), removal) === "destroy"
        ? RemovalPolicy.DESTROY
        : RemovalPolicy.RETAIN,
    taskTypes:
      taskTypes === undefined
        ? undefined
        : parseContext(CONTEXT_KEYS.taskTypes, z.array(z.string()), taskTypes),
  };
}

/** jobq in one stack: the tables and the HTTP API in front of them. */
export class JobqStack extends Stack {
  public readonly store: JobStore;
  public readonly jobApi: JobApi;

  constructor(scope: Construct, id: string, props: JobqStackProps = {}) {
    super(scope, id, props);
    const settings = readSettings(this.node);

    this.store = new JobStore(this, "Store", { removalPolicy: settings.removalPolicy });
    this.jobApi = new JobApi(this, "Api", {
      jobsTable: this.store.jobsTable,
      tokensTable: this.store.tokensTable,
      pools: settings.pools,
      taskTypes: settings.taskTypes,
      handlersDir: props.handlersDir,
      logRemovalPolicy: settings.removalPolicy,
    });

    new CfnOutput(this, "ApiUrl", { value: this.jobApi.url, description: "Base URL of the jobq API" });
    new CfnOutput(this, "JobsTableName", { value: this.store.jobsTable.tableName });
    new CfnOutput(this, "TokensTableName", {
      value: this.store.tokensTable.tableName,
      description: "For `npm run tokens -- --table`",
    });
  }
}
