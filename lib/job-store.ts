import { Duration, RemovalPolicy } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as iam from "aws-cdk-lib/aws-iam";
import { Construct } from "constructs";
import type {
  JobsTableAction,
  NodesTableAction,
  PolicyTableAction,
  TokensTableAction,
} from "../functions/routes";
import {
  connectionsTable,
  type IndexDefinition,
  jobsTable,
  type KeyAttribute,
  nodesTable,
  policyTable,
  TABLES,
  type TableDefinition,
  tokensTable,
} from "../store/tables";

export interface JobStoreProps {
  /**
   * What happens to the tables (and their data) when they leave the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * DynamoDB actions a jobq process may take on the Jobs table: a route's (functions/routes.ts), and
 * the scheduler's PartiQL updates (an admission's job change, a waiting job's reason: 25
 * conditional updates a request).
 */
export type JobsTableGrantAction = JobsTableAction | "dynamodb:PartiQLUpdate";

/** DynamoDB actions on the Connections table (the job stream's open WebSocket connections). */
export type ConnectionsTableAction =
  | "dynamodb:PutItem"
  | "dynamodb:UpdateItem"
  | "dynamodb:DeleteItem"
  | "dynamodb:Query";

/** Everything CDK needs to build one table of store/tables.ts: the table and its indexes. */
export interface TableConstructProps {
  readonly table: dynamodb.TableProps;
  readonly globalSecondaryIndexes: readonly dynamodb.GlobalSecondaryIndexProps[];
}

function attribute(key: KeyAttribute): dynamodb.Attribute {
  return {
    name: key.name,
    type: key.type === "N" ? dynamodb.AttributeType.NUMBER : dynamodb.AttributeType.STRING,
  };
}

function indexProps(index: IndexDefinition): dynamodb.GlobalSecondaryIndexProps {
  const projection = index.projection;
  return {
    indexName: index.indexName,
    partitionKey: attribute(index.partitionKey),
    sortKey: index.sortKey ? attribute(index.sortKey) : undefined,
    projectionType:
      projection.type === "ALL"
        ? dynamodb.ProjectionType.ALL
        : projection.type === "KEYS_ONLY"
          ? dynamodb.ProjectionType.KEYS_ONLY
          : dynamodb.ProjectionType.INCLUDE,
    nonKeyAttributes: projection.type === "INCLUDE" ? [...projection.nonKeyAttributes] : undefined,
  };
}

/**
 * A table definition as construct props: a pure mapping (no scope, no I/O), so the template says
 * exactly what store/tables.ts says plus the settings every jobq table shares. No table name is
 * set: CloudFormation generates one, so two jobq stacks can live in one account.
 */
export function tableConstructProps(
  definition: TableDefinition,
  removalPolicy: RemovalPolicy,
): TableConstructProps {
  return {
    table: {
      partitionKey: attribute(definition.partitionKey),
      sortKey: definition.sortKey ? attribute(definition.sortKey) : undefined,
      // Pay per use: a job queue is bursty and idle most of the night.
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // A KMS key the account can see in CloudTrail, with no key of ours to manage or pay for.
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      timeToLiveAttribute: definition.timeToLiveAttribute,
      stream: definition.stream === undefined ? undefined : dynamodb.StreamViewType[definition.stream],
      removalPolicy,
    },
    globalSecondaryIndexes: definition.globalSecondaryIndexes.map(indexProps),
  };
}

/**
 * The DynamoDB tables of store/tables.ts. `dynamodb.Table` (AWS::DynamoDB::Table) rather than
 * TableV2 (AWS::DynamoDB::GlobalTable): jobq needs no replicas, and LocalStack's CloudFormation,
 * the documented second way to run the stack, does not reliably deploy GlobalTable resources.
 */
export class JobStore extends Construct {
  /** Every table, by its definition id (store/tables.ts). */
  public readonly tables: Readonly<Record<string, dynamodb.Table>>;
  public readonly jobsTable: dynamodb.Table;
  public readonly tokensTable: dynamodb.Table;
  /** Nodes, their capacity, and each pool's scheduling lease. */
  public readonly nodesTable: dynamodb.Table;
  /** The scheduling policy, quota limits, GPU usage and run-time statistics. */
  public readonly policyTable: dynamodb.Table;
  /** Open WebSocket connections of the job stream. */
  public readonly connectionsTable: dynamodb.Table;

  constructor(scope: Construct, id: string, props: JobStoreProps = {}) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;

    const tables: Record<string, dynamodb.Table> = {};
    for (const definition of TABLES) {
      const { table: tableProps, globalSecondaryIndexes } = tableConstructProps(definition, removalPolicy);
      const table = new dynamodb.Table(this, definition.id, tableProps);
      for (const index of globalSecondaryIndexes) table.addGlobalSecondaryIndex(index);
      tables[definition.id] = table;
    }
    this.tables = tables;
    this.jobsTable = tableOf(tables, jobsTable);
    this.tokensTable = tableOf(tables, tokensTable);
    this.nodesTable = tableOf(tables, nodesTable);
    this.policyTable = tableOf(tables, policyTable);
    this.connectionsTable = tableOf(tables, connectionsTable);
  }
  /**
   * The given actions on the Jobs table and its indexes (jobs, their attempts, logs, transitions,
   * dependency edges and results), in one statement. The actions are typed: only what a jobq
   * process may do to that table type-checks, and each caller lists exactly what its code does
   * (the route specs of functions/routes.ts, the constructs' own lists), so least privilege stays
   * visible where the code is.
   */
  public grantJobs(grantee: iam.IGrantable, actions: readonly JobsTableGrantAction[]): iam.Grant {
    return grantOnTable(grantee, this.jobsTable, actions, "jobs");
  }

  /** The given actions on the Nodes table (nodes, their capacity, pool leases) and its indexes. */
  public grantNodes(grantee: iam.IGrantable, actions: readonly NodesTableAction[]): iam.Grant {
    return grantOnTable(grantee, this.nodesTable, actions, "nodes");
  }

  /**
   * The given actions on the Policy table (policy, quota limits, GPU usage, run-time statistics,
   * circuit breakers, schedules, GET /stats's aggregates) and its indexes.
   */
  public grantPolicy(grantee: iam.IGrantable, actions: readonly PolicyTableAction[]): iam.Grant {
    return grantOnTable(grantee, this.policyTable, actions, "policy");
  }

  /** The given actions on the Tokens table and its indexes: the admin token routes. */
  public grantTokens(grantee: iam.IGrantable, actions: readonly TokensTableAction[]): iam.Grant {
    return grantOnTable(grantee, this.tokensTable, actions, "tokens");
  }

  /**
   * GetItem of one token hash on the Tokens table itself, not its indexes (GetItem cannot read an
   * index): what an authorizer does, and all it may do.
   */
  public grantTokenLookup(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ["dynamodb:GetItem"],
      resourceArns: [this.tokensTable.tableArn],
    });
  }

  /** The given actions on the Connections table and its indexes: the job stream's functions. */
  public grantConnections(grantee: iam.IGrantable, actions: readonly ConnectionsTableAction[]): iam.Grant {
    return grantOnTable(grantee, this.connectionsTable, actions, "connections");
  }

  /**
   * Requests to the Jobs table that DynamoDB throttled, all operations together (CloudWatch's
   * `ThrottledRequests` per operation, summed; missing data is 0). On-demand tables throttle when
   * a partition takes more than its share, e.g. one pool's queue index written in a burst.
   */
  public metricJobsThrottled(props?: cloudwatch.MetricOptions): cloudwatch.IMetric {
    return this.jobsTable.metricThrottledRequestsForOperations({
      period: Duration.minutes(5),
      statistic: cloudwatch.Stats.SUM,
      ...props,
    });
  }

  /** System errors (HTTP 500) DynamoDB answered on the Jobs table, all operations together. */
  public metricJobsSystemErrors(props?: cloudwatch.MetricOptions): cloudwatch.IMetric {
    return this.jobsTable.metricSystemErrorsForOperations({
      period: Duration.minutes(5),
      statistic: cloudwatch.Stats.SUM,
      ...props,
    });
  }
}

/**
 * Actions on a table and its indexes, as one statement; no statement at all for no actions (an
 * empty action list is invalid IAM anyway), so a route that never touches a table gets nothing.
 */
function grantOnTable(
  grantee: iam.IGrantable,
  table: dynamodb.ITable,
  actions: readonly string[],
  what: string,
): iam.Grant {
  const unique = [...new Set(actions)];
  if (unique.length === 0) return iam.Grant.drop(grantee, `nothing on the ${what} table`);
  return iam.Grant.addToPrincipal({
    grantee,
    actions: unique,
    resourceArns: [table.tableArn, `${table.tableArn}/index/*`],
  });
}

function tableOf(tables: Record<string, dynamodb.Table>, definition: TableDefinition): dynamodb.Table {
  const table = tables[definition.id];
  if (!table) throw new Error(`table ${definition.id} is not in TABLES (store/tables.ts)`);
  return table;
}
