import { App, CfnElement, Stack } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { JobStore } from "../../lib/job-store";
import { createTableInput } from "../../local/tables";
import { TABLES } from "../../store/tables";

/**
 * The local stack's tables (local/tables.ts) against the synthesized JobStore: both are built from
 * store/tables.ts, and this proves the two translations agree, so a query that works locally has
 * the same keys and indexes in AWS.
 */

interface CfnTableProperties {
  readonly KeySchema?: unknown[];
  readonly AttributeDefinitions?: { AttributeName: string; AttributeType: string }[];
  readonly GlobalSecondaryIndexes?: { IndexName: string; KeySchema: unknown[]; Projection: unknown }[];
  readonly TimeToLiveSpecification?: { AttributeName: string; Enabled: boolean };
  readonly BillingMode?: string;
  readonly StreamSpecification?: { StreamViewType: string };
}

const sortedBy = <T>(items: readonly T[] | undefined, key: (item: T) => string): T[] =>
  [...(items ?? [])].sort((a, b) => key(a).localeCompare(key(b)));

/** A projection as CloudFormation writes it, with include lists order-free. */
function projection(value: unknown): unknown {
  const { ProjectionType, NonKeyAttributes } = value as {
    ProjectionType?: string;
    NonKeyAttributes?: string[];
  };
  return NonKeyAttributes
    ? { ProjectionType, NonKeyAttributes: [...NonKeyAttributes].sort() }
    : { ProjectionType };
}

describe("local tables equal the synthesized JobStore tables", () => {
  let templateTables: Map<string, CfnTableProperties>;

  beforeAll(() => {
    const stack = new Stack(new App(), "Store");
    const store = new JobStore(stack, "Store", {});
    const resources = Template.fromStack(stack).findResources("AWS::DynamoDB::Table");
    templateTables = new Map(
      TABLES.map((def) => {
        const element = store.tables[def.id]?.node.defaultChild;
        if (!(element instanceof CfnElement)) throw new Error(`JobStore has no table for ${def.id}`);
        const resource = resources[stack.getLogicalId(element)] as
          | { Properties?: CfnTableProperties }
          | undefined;
        if (!resource?.Properties) throw new Error(`table ${def.id} is not in the template`);
        return [def.id, resource.Properties];
      }),
    );
  });

  it.each(TABLES.map((def) => [def.id, def] as const))(
    "%s: keys, attribute definitions, indexes (keys and projections), billing and TTL",
    (id, def) => {
      const cfn = templateTables.get(id);
      const local = createTableInput(def, `jobq-${id}`);

      expect(local.KeySchema).toEqual(cfn?.KeySchema);
      expect(sortedBy(local.AttributeDefinitions, (a) => a.AttributeName ?? "")).toEqual(
        sortedBy(cfn?.AttributeDefinitions, (a) => a.AttributeName),
      );
      expect(
        sortedBy(local.GlobalSecondaryIndexes, (index) => index.IndexName ?? "").map((index) => ({
          IndexName: index.IndexName,
          KeySchema: index.KeySchema,
          Projection: projection(index.Projection),
        })),
      ).toEqual(
        sortedBy(cfn?.GlobalSecondaryIndexes, (index) => index.IndexName).map((index) => ({
          IndexName: index.IndexName,
          KeySchema: index.KeySchema,
          Projection: projection(index.Projection),
        })),
      );
      expect(local.BillingMode).toBe(cfn?.BillingMode);
      expect(cfn?.TimeToLiveSpecification).toEqual(
        def.timeToLiveAttribute === undefined
          ? undefined
          : { AttributeName: def.timeToLiveAttribute, Enabled: true },
      );
      expect(local.StreamSpecification?.StreamViewType).toBe(cfn?.StreamSpecification?.StreamViewType);
    },
  );
});
