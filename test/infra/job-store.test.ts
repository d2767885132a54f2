import { App, RemovalPolicy, Stack } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { JobStore } from "../../lib/job-store";
import {
  type IndexDefinition,
  jobsTable,
  type KeyAttribute,
  policyTable,
  TABLES,
  tokensTable,
} from "../../store/tables";
import { type CfnResource, logicalId, resourcesOfType } from "./fixtures";

function keySchema(partitionKey: KeyAttribute, sortKey: KeyAttribute | undefined): unknown[] {
  return [
    { AttributeName: partitionKey.name, KeyType: "HASH" },
    ...(sortKey ? [{ AttributeName: sortKey.name, KeyType: "RANGE" }] : []),
  ];
}

/** What CloudFormation must say for an index of store/tables.ts. */
function cfnIndex(index: IndexDefinition): unknown {
  return {
    IndexName: index.indexName,
    KeySchema: keySchema(index.partitionKey, index.sortKey),
    Projection:
      index.projection.type === "INCLUDE"
        ? { ProjectionType: "INCLUDE", NonKeyAttributes: [...index.projection.nonKeyAttributes] }
        : { ProjectionType: index.projection.type },
  };
}

const byName = (a: { IndexName: string }, b: { IndexName: string }) => a.IndexName.localeCompare(b.IndexName);

function synthStore(removalPolicy?: RemovalPolicy) {
  const stack = new Stack(new App(), "Store");
  const store = new JobStore(stack, "Store", { removalPolicy });
  const template = Template.fromStack(stack);
  const tableResource = (id: string): CfnResource => {
    const table = store.tables[id];
    if (!table) throw new Error(`no table ${id}`);
    const resource = resourcesOfType(template, "AWS::DynamoDB::Table")[logicalId(table)];
    if (!resource) throw new Error(`table ${id} is not in the template`);
    return resource;
  };
  return { stack, store, template, tableResource };
}

describe("JobStore", () => {
  let synth: ReturnType<typeof synthStore>;
  beforeAll(() => {
    synth = synthStore();
  });

  it("exposes the jobs and tokens tables as the definitions' tables", () => {
    expect(synth.store.jobsTable).toBe(synth.store.tables[jobsTable.id]);
    expect(synth.store.tokensTable).toBe(synth.store.tables[tokensTable.id]);
    expect(synth.store.policyTable).toBe(synth.store.tables[policyTable.id]);
  });

  it.each(TABLES.map((d) => [d.id, d] as const))(
    "%s: keys, indexes and attribute types are exactly those of store/tables.ts",
    (id, definition) => {
      const props = synth.tableResource(id).Properties ?? {};
      expect(props.KeySchema).toEqual(keySchema(definition.partitionKey, definition.sortKey));

      const actual = ((props.GlobalSecondaryIndexes ?? []) as { IndexName: string }[]).slice().sort(byName);
      const expected = definition.globalSecondaryIndexes.map(cfnIndex) as { IndexName: string }[];
      expect(actual).toEqual(expected.slice().sort(byName));

      const keys = [
        definition.partitionKey,
        definition.sortKey,
        ...definition.globalSecondaryIndexes.flatMap((i) => [i.partitionKey, i.sortKey]),
      ];
      const attributes = (props.AttributeDefinitions ?? []) as {
        AttributeName: string;
        AttributeType: string;
      }[];
      for (const key of keys) {
        if (!key) continue;
        expect(attributes).toContainEqual({ AttributeName: key.name, AttributeType: key.type });
      }
    },
  );

  it.each(TABLES.map((d) => [d.id] as const))(
    "%s: on-demand, point-in-time recovery, AWS-managed KMS key",
    (id) => {
      const props = synth.tableResource(id).Properties ?? {};
      expect(props.BillingMode).toBe("PAY_PER_REQUEST");
      expect(props.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
      // SSEEnabled without a key id is the AWS-managed key (aws/dynamodb); absent would be AWS-owned.
      expect(props.SSESpecification).toEqual({ SSEEnabled: true });
      // No table name: two stacks in one account must not collide.
      expect(props.TableName).toBeUndefined();
    },
  );

  it("expires job items on the expiresAt attribute", () => {
    expect(jobsTable.timeToLiveAttribute).toBe("expiresAt");
    expect(synth.tableResource(jobsTable.id).Properties?.TimeToLiveSpecification).toEqual({
      AttributeName: "expiresAt",
      Enabled: true,
    });
  });

  it("expires the Policy table's usage and run-time items on expiresAt, and can restore it to any point", () => {
    const props = synth.tableResource(policyTable.id).Properties ?? {};
    expect(props.TimeToLiveSpecification).toEqual({ AttributeName: "expiresAt", Enabled: true });
    expect(props.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
  });

  it("keeps the tables when they leave the stack unless told otherwise", () => {
    for (const { id } of TABLES) {
      expect(synth.tableResource(id).DeletionPolicy).toBe("Retain");
      expect(synth.tableResource(id).UpdateReplacePolicy).toBe("Retain");
    }
    const destroyed = synthStore(RemovalPolicy.DESTROY);
    for (const { id } of TABLES) expect(destroyed.tableResource(id).DeletionPolicy).toBe("Delete");
  });
});
