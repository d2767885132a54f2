import { RemovalPolicy } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import { Construct } from "constructs";
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
}

function tableOf(tables: Record<string, dynamodb.Table>, definition: TableDefinition): dynamodb.Table {
  const table = tables[definition.id];
  if (!table) throw new Error(`table ${definition.id} is not in TABLES (store/tables.ts)`);
  return table;
}
