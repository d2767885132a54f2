import type { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import type { JobqStack } from "../../lib/jobq-stack";
import {
  environmentOf,
  grantsOf,
  logicalId,
  mentions,
  resourcesOfType,
  roleIdOf,
  roleStatements,
  synthJobqStack,
  tableGrants,
} from "./fixtures";

/** GET /stats's consumer in the template: the Lambda on the Jobs table's stream and its grants. */

let stack: JobqStack;
let template: Template;
let consumerId: string;
let jobsId: string;
let policyId: string;

beforeAll(() => {
  ({ stack, template } = synthJobqStack());
  consumerId = logicalId(stack.jobStats.consumer);
  jobsId = logicalId(stack.store.jobsTable);
  policyId = logicalId(stack.store.policyTable);
});

describe("JobStats", () => {
  it("reads the Jobs table's stream with the settings its exactly-once counting relies on", () => {
    const [mapping] = Object.values(resourcesOfType(template, "AWS::Lambda::EventSourceMapping")).filter(
      (m) => mentions(m.Properties?.FunctionName, consumerId),
    );
    expect(mapping?.Properties).toMatchObject({
      EventSourceArn: { "Fn::GetAtt": [jobsId, "StreamArn"] },
      // A failed chunk is reported by its first record and never split: a split half could start
      // inside a chunk already applied, whose receipt is keyed by the chunk's first record.
      FunctionResponseTypes: ["ReportBatchItemFailures"],
      BisectBatchOnFunctionError: false,
      ParallelizationFactor: 1,
      BatchSize: 1000,
      MaximumBatchingWindowInSeconds: 10,
    });
    expect(JSON.stringify(mapping?.Properties?.FilterCriteria)).toContain('\\"sk\\":{\\"S\\":[\\"JOB\\"]}');
    expect(mentions(mapping?.Properties?.DestinationConfig, logicalId(stack.jobStats.failedBatches))).toBe(
      true,
    );
  });

  it("writes only the Policy table's aggregates and reads nothing else of the tables", () => {
    const grants = grantsOf(roleStatements(template, roleIdOf(stack.jobStats.consumer)));
    for (const g of tableGrants(policyId, ["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:GetItem"]))
      expect(grants).toContain(g);
    const tableActions = [...grants].filter(
      (g) => g.startsWith("dynamodb:") && !g.startsWith("dynamodb:ListStreams") && !g.includes(policyId),
    );
    // On the Jobs table only its stream is read (the event source's own grant).
    for (const g of tableActions)
      expect(g).toMatch(/^dynamodb:(DescribeStream|GetRecords|GetShardIterator) .*StreamArn/);
    expect(environmentOf(template, consumerId).JOBQ_POLICY_TABLE).toEqual({ Ref: policyId });
  });
});
