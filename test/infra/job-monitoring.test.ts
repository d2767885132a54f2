import { App } from "aws-cdk-lib";
import type { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { METRIC_NAMESPACE, METRIC_SERVICE, METRICS } from "../../core/metrics";
import { TIERS } from "../../lib/job-queues";
import { type JobqStack, readSettings } from "../../lib/jobq-stack";
import {
  type CfnResource,
  logicalId,
  mentions,
  nestedTemplate,
  resolveForTest,
  resourcesOfType,
  synthJobqStack,
} from "./fixtures";

const POOLS = [
  { name: "cpu", nodes: 2, node: { cpu: 2, memoryMb: 4096 } },
  { name: "gpu-a", nodes: 1, node: { cpu: 8, memoryMb: 32768, gpu: 2 } },
];

let stack: JobqStack;
let main: Template;
/** The Monitoring nested stack's template, naming the main stack's resources. */
let monitoring: Template;
/** Every alarm of the main and Monitoring stacks, by logical id. */
let alarms: Record<string, CfnResource>;
let topicId: string;
/** The worker pools' nested stack's template (the scaling alarms). */
let compute: Template;

beforeAll(() => {
  ({ stack, template: main } = synthJobqStack({ "jobq:pools": POOLS }));
  monitoring = nestedTemplate(stack.monitoringStack);
  alarms = {
    ...resourcesOfType(main, "AWS::CloudWatch::Alarm"),
    ...resourcesOfType(monitoring, "AWS::CloudWatch::Alarm"),
  };
  topicId = logicalId(stack.alarmTopic.topic);
  if (!stack.workersStack) throw new Error("no worker pools");
  compute = nestedTemplate(stack.workersStack);
});

interface Dimension {
  readonly Name: string;
  readonly Value: unknown;
}
interface MetricStat {
  readonly Metric: {
    readonly MetricName: string;
    readonly Namespace: string;
    readonly Dimensions?: Dimension[];
  };
}

/** The metric names an alarm reads, directly or inside its metric math. */
function metricNamesOf(alarm: CfnResource): string[] {
  const props = alarm.Properties ?? {};
  if (typeof props.MetricName === "string") return [props.MetricName];
  const metrics = (props.Metrics ?? []) as { MetricStat?: MetricStat }[];
  return metrics.flatMap((m) => (m.MetricStat ? [m.MetricStat.Metric.MetricName] : []));
}

function dimensionsOf(alarm: CfnResource): Record<string, unknown> {
  const dims = (alarm.Properties?.Dimensions ?? []) as Dimension[];
  return Object.fromEntries(dims.map((d) => [d.Name, d.Value]));
}

function alarmsReading(metricName: string): [string, CfnResource][] {
  return Object.entries(alarms).filter(([, a]) => metricNamesOf(a).includes(metricName));
}

const pagingIds = (): string[] => stack.monitoring.pagingAlarms.map((a) => logicalId(a));

describe("paging alarms", () => {
  it("each notify the alarm topic on ALARM and on OK, and say what to do and where to read more", () => {
    const ids = pagingIds();
    for (const id of ids) {
      const alarm = alarms[id];
      expect(alarm, id).toBeDefined();
      expect(alarm?.Properties?.AlarmActions, id).toEqual([{ Ref: topicId }]);
      expect(alarm?.Properties?.OKActions, id).toEqual([{ Ref: topicId }]);
      expect(String(alarm?.Properties?.AlarmDescription), id).toContain("docs/operations.md#alarms");
    }
  });

  it("cover the DLQs (one each), scheduler and lifecycle errors, and the new signals", () => {
    const paging = new Set(pagingIds());
    for (const alarm of stack.monitoring.deadLetterAlarms) expect(paging).toContain(logicalId(alarm));
    // One alarm per dead-letter queue, no more.
    expect(stack.monitoring.deadLetterAlarms).toHaveLength(POOLS.length * TIERS.length);
    expect(alarmsReading("ApproximateNumberOfMessagesVisible")).toHaveLength(
      stack.monitoring.deadLetterAlarms.length,
    );
    expect(paging).toContain(logicalId(stack.scheduler.schedulerErrorsAlarm));
    expect(paging).toContain(logicalId(stack.lifecycle.failedExecutionsAlarm));

    const pagingReading = (metricName: string) => alarmsReading(metricName).filter(([id]) => paging.has(id));
    for (const pool of POOLS.map((p) => p.name)) {
      for (const name of [METRICS.oldestCapacityWaitAge.name, METRICS.lostNodes.name]) {
        const perPool = pagingReading(name).filter(([, a]) => dimensionsOf(a).pool === pool);
        expect(perPool, `${name} ${pool}`).toHaveLength(1);
        expect(dimensionsOf(perPool[0]?.[1] as CfnResource)).toEqual({ service: METRIC_SERVICE, pool });
      }
    }
    // Failure rate: metric math over failed and completed, per pool.
    const failureRate = pagingReading(METRICS.jobsFailed.name);
    expect(failureRate).toHaveLength(POOLS.length);
    for (const [, a] of failureRate) {
      expect(metricNamesOf(a)).toContain(METRICS.jobsCompleted.name);
      const expression = ((a.Properties?.Metrics ?? []) as { Expression?: string }[]).find(
        (m) => m.Expression,
      );
      // The floor: under 5 failures the rate reads 0, so one failed job does not page.
      expect(expression?.Expression).toMatch(/>= 5/);
    }
    expect(pagingReading(METRICS.reconcilerRepairs.name)).toHaveLength(1);
    expect(pagingReading("5XXError")).toHaveLength(1);
    expect(pagingReading("ExecutionThrottled")).toHaveLength(1);
    expect(pagingReading("ExecutionsFailed")).toHaveLength(1);
    expect(pagingReading(METRICS.schedulerPasses.name)).toHaveLength(1);
  });

  it("the scheduler heartbeat breaches on missing data (a stopped scheduler sends none)", () => {
    const [heartbeat] = alarmsReading(METRICS.schedulerPasses.name);
    expect(heartbeat?.[1].Properties).toMatchObject({
      Namespace: METRIC_NAMESPACE,
      Statistic: "Sum",
      Period: 300,
      ComparisonOperator: "LessThanThreshold",
      Threshold: 1,
      TreatMissingData: "breaching",
    });
    expect(dimensionsOf(heartbeat?.[1] as CfnResource)).toEqual({ service: METRIC_SERVICE });
  });

  it("the oldest-wait threshold follows jobq:maxQueueAgeMinutes (default 30)", () => {
    const thresholds = (a: Record<string, CfnResource>) =>
      Object.values(a)
        .filter((x) => metricNamesOf(x).includes(METRICS.oldestCapacityWaitAge.name))
        .map((x) => x.Properties?.Threshold);
    expect(thresholds(alarms)).toEqual(POOLS.map(() => 30 * 60));
    const { stack: other } = synthJobqStack({ "jobq:maxQueueAgeMinutes": "45" });
    const otherAlarms = resourcesOfType(nestedTemplate(other.monitoringStack), "AWS::CloudWatch::Alarm");
    expect(new Set(thresholds(otherAlarms))).toEqual(new Set([45 * 60]));
  });
});

describe("scaling alarms", () => {
  it("notify no one and stay out of jobq-unhealthy", () => {
    const scaling = Object.entries(resourcesOfType(compute, "AWS::CloudWatch::Alarm"));
    const policies = resourcesOfType(compute, "AWS::ApplicationAutoScaling::ScalingPolicy");
    const rule = JSON.stringify(resourcesOfType(monitoring, "AWS::CloudWatch::CompositeAlarm"));
    // BacklogHigh and BacklogEmpty of each pool.
    expect(scaling.length).toBeGreaterThanOrEqual(2 * POOLS.length);
    for (const [id, a] of scaling) {
      const actions = (a.Properties?.AlarmActions ?? []) as { Ref?: string }[];
      expect(actions.length, id).toBeGreaterThan(0);
      for (const action of actions) expect(Object.keys(policies), id).toContain(action.Ref);
      expect(a.Properties?.OKActions, id).toBeUndefined();
      expect(a.Properties?.InsufficientDataActions, id).toBeUndefined();
      expect(mentions(rule, id), id).toBe(false);
    }
  });
});

describe("jobq-unhealthy", () => {
  it("is named after the stack, pages, and its rule names every paging alarm and nothing else", () => {
    const composites = Object.values(resourcesOfType(monitoring, "AWS::CloudWatch::CompositeAlarm"));
    expect(composites).toHaveLength(1);
    const composite = composites[0] as CfnResource;
    expect(composite.Properties?.AlarmName).toBe(`${stack.stackName}-jobq-unhealthy`);
    expect(composite.Properties?.AlarmActions).toEqual([{ Ref: topicId }]);
    expect(composite.Properties?.OKActions).toEqual([{ Ref: topicId }]);
    const named = [
      ...JSON.stringify(composite.Properties?.AlarmRule).matchAll(/"Fn::GetAtt":\["([^"]+)","Arn"\]/g),
    ].map((m) => m[1]);
    expect(new Set(named)).toEqual(new Set(pagingIds()));
  });
});

describe("alarm topic", () => {
  it("is encrypted with a rotating customer-managed key that CloudWatch may use", () => {
    const topic = resourcesOfType(main, "AWS::SNS::Topic")[topicId];
    const keyId = logicalId(stack.alarmTopic.key);
    expect(topic?.Properties?.KmsMasterKeyId).toEqual({ "Fn::GetAtt": [keyId, "Arn"] });
    const key = resourcesOfType(main, "AWS::KMS::Key")[keyId];
    expect(key?.Properties?.EnableKeyRotation).toBe(true);
    const statements =
      (key?.Properties?.KeyPolicy as { Statement?: Record<string, unknown>[] } | undefined)?.Statement ?? [];
    const forCloudWatch = statements.find(
      (s) => JSON.stringify(s.Principal) === JSON.stringify({ Service: "cloudwatch.amazonaws.com" }),
    );
    expect(forCloudWatch?.Effect).toBe("Allow");
    expect(forCloudWatch?.Action).toEqual(expect.arrayContaining(["kms:Decrypt", "kms:GenerateDataKey*"]));
  });

  it("refuses publishing without TLS", () => {
    const policies = Object.values(resourcesOfType(main, "AWS::SNS::TopicPolicy")).filter((p) =>
      mentions(p.Properties?.Topics, topicId),
    );
    const statements = policies.flatMap(
      (p) =>
        (p.Properties?.PolicyDocument as { Statement?: Record<string, unknown>[] } | undefined)?.Statement ??
        [],
    );
    expect(statements).toContainEqual(
      expect.objectContaining({
        Effect: "Deny",
        Condition: { Bool: { "aws:SecureTransport": "false" } },
      }),
    );
  });

  it("has an email subscription only with jobq:alarmEmail", () => {
    const emailSubscriptions = (t: Template) =>
      Object.values(resourcesOfType(t, "AWS::SNS::Subscription")).filter(
        (s) => s.Properties?.Protocol === "email",
      );
    expect(emailSubscriptions(main)).toEqual([]);
    const { stack: withEmail, template } = synthJobqStack({ "jobq:alarmEmail": "oncall@example.com" });
    const subscriptions = emailSubscriptions(template);
    expect(subscriptions).toHaveLength(1);
    expect(subscriptions[0]?.Properties).toMatchObject({
      Endpoint: "oncall@example.com",
      TopicArn: { Ref: logicalId(withEmail.alarmTopic.topic) },
    });
  });
});

describe("context", () => {
  const settingsWith = (context: Record<string, unknown>) => readSettings(new App({ context }).node);

  it("reads jobq:alarmEmail and jobq:maxQueueAgeMinutes, from -c strings or cdk.json values", () => {
    expect(settingsWith({})).toMatchObject({ alarmEmail: undefined, maxQueueAgeMinutes: 30 });
    expect(settingsWith({ "jobq:alarmEmail": "a@b.example", "jobq:maxQueueAgeMinutes": "90" })).toMatchObject(
      {
        alarmEmail: "a@b.example",
        maxQueueAgeMinutes: 90,
      },
    );
    expect(settingsWith({ "jobq:maxQueueAgeMinutes": 5 }).maxQueueAgeMinutes).toBe(5);
  });

  it("fails synth with the key's name on a bad value", () => {
    expect(() => settingsWith({ "jobq:alarmEmail": "not an address" })).toThrow(
      /context jobq:alarmEmail is invalid/,
    );
    for (const bad of ["0", "-5", "1.5", '"thirty"', "soon"])
      expect(() => settingsWith({ "jobq:maxQueueAgeMinutes": bad }), bad).toThrow(/jobq:maxQueueAgeMinutes/);
  });
});

interface Widget {
  readonly type: string;
  readonly y: number;
  readonly properties: {
    readonly title?: string;
    readonly metrics?: unknown[][];
    readonly alarms?: string[];
  };
}

/** One metric line of a widget: namespace, name and dimensions (before the options), or an expression. */
interface MetricLine {
  readonly namespace?: string;
  readonly name?: string;
  readonly dimensions: Record<string, string>;
  readonly stat?: string;
  readonly expression?: string;
}

function metricLines(widget: Widget): MetricLine[] {
  return (widget.properties.metrics ?? []).map((line) => {
    const options = (line.find((x) => typeof x === "object" && x !== null) ?? {}) as {
      stat?: string;
      expression?: string;
    };
    const strings = line.filter((x): x is string => typeof x === "string");
    const [namespace, name, ...dims] = strings;
    const dimensions: Record<string, string> = {};
    for (let i = 0; i + 1 < dims.length; i += 2) dimensions[dims[i] as string] = dims[i + 1] as string;
    return { namespace, name, dimensions, stat: options.stat, expression: options.expression };
  });
}

/** Order-insensitive: CDK writes a metric's dimensions sorted by name. */
function sameDimensions(a: Record<string, string>, b: Record<string, string>): boolean {
  const sorted = (x: Record<string, string>) =>
    JSON.stringify(Object.entries(x).sort(([k1], [k2]) => k1.localeCompare(k2)));
  return sorted(a) === sorted(b);
}

describe("dashboard", () => {
  let widgets: Widget[];
  let lines: MetricLine[];

  beforeAll(() => {
    const dashboards = Object.values(resourcesOfType(monitoring, "AWS::CloudWatch::Dashboard"));
    expect(dashboards).toHaveLength(1);
    const body = JSON.parse(resolveForTest(dashboards[0]?.Properties?.DashboardBody)) as {
      widgets: Widget[];
    };
    widgets = body.widgets;
    lines = widgets.flatMap(metricLines);
  });

  const has = (namespace: string, name: string, dimensions: Record<string, string>, stat?: string) =>
    lines.some(
      (l) =>
        l.namespace === namespace &&
        l.name === name &&
        sameDimensions(l.dimensions, dimensions) &&
        (stat === undefined || l.stat === stat),
    );
  const jobq = (dimensions: Record<string, string>) => ({ service: METRIC_SERVICE, ...dimensions });

  it("puts health first: the composite and every paging alarm across the top", () => {
    const top = widgets.filter((w) => w.y === 0);
    expect(top.map((w) => w.type)).toEqual(["alarm"]);
    const arns = top[0]?.properties.alarms ?? [];
    const ids = [logicalId(stack.monitoring.unhealthyAlarm), ...pagingIds()];
    for (const id of ids) expect(arns, id).toContain(`<${id}.Arn>`);
  });

  it("shows the API's requests, 4xx, 5xx and latency", () => {
    const apiName = stack.jobApi.api.restApiName;
    for (const name of ["Count", "4XXError", "5XXError"])
      expect(has("AWS/ApiGateway", name, { ApiName: apiName }), name).toBe(true);
    for (const stat of ["p50", "p99"])
      expect(has("AWS/ApiGateway", "Latency", { ApiName: apiName }, stat)).toBe(true);
  });

  it("shows lifecycle executions, state transitions and the day's transition cost at list price", () => {
    const arn = resolveForTest({ Ref: logicalId(stack.lifecycle.stateMachine) });
    for (const name of ["ExecutionsStarted", "ExecutionsFailed"])
      expect(has("AWS/States", name, { StateMachineArn: arn }), name).toBe(true);
    expect(has("AWS/States", "ConsumedCapacity", { ServiceMetric: "StateTransition" }, "Sum")).toBe(true);
    expect(lines.some((l) => l.expression?.includes("* 0.025 / 1000"))).toBe(true);
  });

  it("shows depth and oldest message age of every dispatch queue, and every DLQ's depth", () => {
    for (const pool of POOLS.map((p) => p.name))
      for (const tier of TIERS) {
        const queue = stack.queues.queues[pool]?.[tier];
        const dlq = stack.queues.deadLetterQueues[pool]?.[tier];
        if (!queue || !dlq) throw new Error(`no queues for ${pool} ${tier}`);
        const queueName = { QueueName: `<${logicalId(queue)}.QueueName>` };
        expect(has("AWS/SQS", "ApproximateNumberOfMessagesVisible", queueName), `${pool} ${tier}`).toBe(true);
        expect(has("AWS/SQS", "ApproximateAgeOfOldestMessage", queueName), `${pool} ${tier}`).toBe(true);
        const dlqName = { QueueName: `<${logicalId(dlq)}.QueueName>` };
        expect(has("AWS/SQS", "ApproximateNumberOfMessagesVisible", dlqName), `${pool} ${tier} DLQ`).toBe(
          true,
        );
      }
  });

  it("shows jobq's own metrics per pool with the dimensions they are emitted with", () => {
    for (const pool of POOLS.map((p) => p.name)) {
      expect(has(METRIC_NAMESPACE, METRICS.admittedJobs.name, jobq({ pool }))).toBe(true);
      expect(has(METRIC_NAMESPACE, METRICS.schedulerPassDuration.name, jobq({ pool }))).toBe(true);
      expect(has(METRIC_NAMESPACE, METRICS.oldestCapacityWaitAge.name, jobq({ pool }))).toBe(true);
      expect(has(METRIC_NAMESPACE, METRICS.lostNodes.name, jobq({ pool }))).toBe(true);
      for (const stat of ["p50", "p99"]) {
        expect(has(METRIC_NAMESPACE, METRICS.queueWaitTime.name, jobq({ pool }), stat)).toBe(true);
        expect(has(METRIC_NAMESPACE, METRICS.runTime.name, jobq({ pool }), stat)).toBe(true);
      }
      for (const resource of ["cpu", "memory", "gpu"])
        expect(has(METRIC_NAMESPACE, METRICS.capacityInUse.name, jobq({ pool, resource })), resource).toBe(
          true,
        );
    }
    expect(has(METRIC_NAMESPACE, METRICS.reconcilerRepairs.name, jobq({}))).toBe(true);
    // Admissions per second: the sum over the period divided by its length.
    expect(lines.some((l) => l.expression?.includes("PERIOD("))).toBe(true);
    // Task types are open-ended: a search over the type dimension, not one line per known type.
    expect(
      lines.some(
        (l) =>
          l.expression?.includes("SEARCH(") &&
          l.expression.includes(`MetricName="${METRICS.jobsFailedByType.name}"`) &&
          l.expression.includes("type"),
      ),
    ).toBe(true);
  });
});

describe("without workers or web dashboard (the LocalStack variant)", () => {
  it("still pages and still has its dashboard", () => {
    const { stack: bare } = synthJobqStack({ "jobq:workers": "none", "jobq:dashboard": "false" });
    const nested = nestedTemplate(bare.monitoringStack);
    const bareTopic = logicalId(bare.alarmTopic.topic);
    expect(Object.keys(resourcesOfType(nested, "AWS::CloudWatch::Dashboard"))).toHaveLength(1);
    const composite = Object.values(resourcesOfType(nested, "AWS::CloudWatch::CompositeAlarm"))[0];
    expect(composite?.Properties?.AlarmActions).toEqual([{ Ref: bareTopic }]);
  });

  it("with jobq:target=localstack keeps them in the stack itself (no nested stack to deploy)", () => {
    const { stack: local, template } = synthJobqStack({ "jobq:target": "localstack" });
    expect(local.monitoringStack).toBeUndefined();
    expect(Object.keys(resourcesOfType(template, "AWS::CloudWatch::Dashboard"))).toHaveLength(1);
    const composite = Object.values(resourcesOfType(template, "AWS::CloudWatch::CompositeAlarm"))[0];
    expect(composite?.Properties?.AlarmActions).toEqual([{ Ref: logicalId(local.alarmTopic.topic) }]);
  });
});

describe("circuit breaker alarm", () => {
  it("pages when any circuit breaker opens (Sum of CircuitsOpened ≥ 1 in 5 minutes)", () => {
    const paging = new Set(pagingIds());
    const reading = alarmsReading(METRICS.circuitsOpened.name);
    expect(reading).toHaveLength(1);
    const [id, alarm] = reading[0] as [string, CfnResource];
    expect(paging).toContain(id);
    expect(alarm.Properties).toMatchObject({
      Namespace: METRIC_NAMESPACE,
      Statistic: "Sum",
      Period: 300,
      ComparisonOperator: "GreaterThanOrEqualToThreshold",
      Threshold: 1,
      TreatMissingData: "notBreaching",
    });
    // Emitted with no dimension but Powertools' service (app/circuits.ts): the alarm reads the same metric.
    expect(dimensionsOf(alarm)).toEqual({ service: METRIC_SERVICE });
    expect(String(alarm.Properties?.AlarmDescription)).toContain("/admin/circuits");
  });
});
