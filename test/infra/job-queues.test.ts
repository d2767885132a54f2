import type { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { readConfig } from "../../functions/config";
import { TIERS } from "../../lib/job-queues";
import type { JobqStack } from "../../lib/jobq-stack";
import {
  environmentOf,
  logicalId,
  nestedTemplate,
  resolvedEnvironment,
  resourcesOfType,
  synthJobqStack,
} from "./fixtures";

const POOLS = [
  { name: "cpu", nodes: 2, node: { cpu: 2, memoryMb: 4096 } },
  { name: "big-gpu", nodes: 1, node: { cpu: 8, memoryMb: 32768, gpu: 2 } },
  { name: "arm", nodes: 3, node: { cpu: 1, memoryMb: 2048 } },
];

let stack: JobqStack;
let template: Template;

beforeAll(() => {
  ({ stack, template } = synthJobqStack({ "jobq:pools": POOLS }));
});

const cases = POOLS.flatMap((p) => TIERS.map((tier) => [`${p.name}/${tier}`, p.name, tier] as const));

function queueId(pool: string, tier: (typeof TIERS)[number], dead = false): string {
  const queue = (dead ? stack.queues.deadLetterQueues : stack.queues.queues)[pool]?.[tier];
  if (!queue) throw new Error(`no queue ${pool}/${tier}`);
  return logicalId(queue);
}

describe("dispatch queues", () => {
  it.each(cases)("%s: redrives to its own dead-letter queue", (_, pool, tier) => {
    const queue = resourcesOfType(template, "AWS::SQS::Queue")[queueId(pool, tier)];
    expect(queue?.Properties?.RedrivePolicy).toEqual({
      deadLetterTargetArn: { "Fn::GetAtt": [queueId(pool, tier, true), "Arn"] },
      maxReceiveCount: 50,
    });
  });

  it("no two queues share a dead-letter queue", () => {
    const targets = cases.map(([, pool, tier]) => queueId(pool, tier, true));
    expect(new Set(targets).size).toBe(cases.length);
  });

  it.each(cases)(
    "%s: queue and dead-letter queue are SQS-encrypted and refuse plain HTTP",
    (_, pool, tier) => {
      const queues = resourcesOfType(template, "AWS::SQS::Queue");
      const policies = Object.values(resourcesOfType(template, "AWS::SQS::QueuePolicy"));
      for (const id of [queueId(pool, tier), queueId(pool, tier, true)]) {
        expect(queues[id]?.Properties?.SqsManagedSseEnabled).toBe(true);
        const policy = policies.find(
          (p) => JSON.stringify(p.Properties?.Queues) === JSON.stringify([{ Ref: id }]),
        );
        expect(policy?.Properties?.PolicyDocument).toMatchObject({
          Statement: expect.arrayContaining([
            expect.objectContaining({
              Effect: "Deny",
              Condition: { Bool: { "aws:SecureTransport": "false" } },
            }),
          ]),
        });
      }
    },
  );

  it("keep a message longer than the longest job timeout the Dispatch state waits for", () => {
    const queues = resourcesOfType(template, "AWS::SQS::Queue");
    for (const [, pool, tier] of cases) {
      expect(queues[queueId(pool, tier)]?.Properties?.MessageRetentionPeriod).toBe(14 * 24 * 3600);
    }
  });
});

describe("dead-letter alarms", () => {
  it.each(cases)("%s: an alarm fires on the first message in the dead-letter queue", (_, pool, tier) => {
    const dlqName = { "Fn::GetAtt": [queueId(pool, tier, true), "QueueName"] };
    // The paging alarms live in the Monitoring nested stack (its parameters resolved to the main stack's values).
    const alarm = Object.values(
      resourcesOfType(nestedTemplate(stack.monitoringStack), "AWS::CloudWatch::Alarm"),
    ).find(
      (a) =>
        a.Properties?.MetricName === "ApproximateNumberOfMessagesVisible" &&
        JSON.stringify(a.Properties?.Dimensions) === JSON.stringify([{ Name: "QueueName", Value: dlqName }]),
    );
    expect(alarm?.Properties).toMatchObject({
      Namespace: "AWS/SQS",
      Threshold: 1,
      ComparisonOperator: "GreaterThanOrEqualToThreshold",
      TreatMissingData: "notBreaching",
    });
  });
});

describe("JOBQ_QUEUES", () => {
  it("gives every function the URL of each pool's queue for each tier", () => {
    const fn = stack.lifecycle.function;
    const config = readConfig(resolvedEnvironment(environmentOf(template, logicalId(fn))));
    for (const [, pool, tier] of cases) {
      expect(config.queues[pool]?.[tier]).toBe(`<Ref:${queueId(pool, tier)}>`);
    }
  });
});
