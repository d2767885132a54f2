import { Duration } from "aws-cdk-lib";
import type { Template } from "aws-cdk-lib/assertions";
import type * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as iam from "aws-cdk-lib/aws-iam";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_POOLS } from "../../core/pools";
import { TIERS } from "../../lib/job-queues";
import type { JobqStack } from "../../lib/jobq-stack";
import {
  type CfnResource,
  grantsOf,
  logicalId,
  nestedTemplate,
  resourcesOfType,
  roleStatements,
  synthJobqStack,
  tableGrants,
} from "./fixtures";

/**
 * The constructs' grantXxx and metricXxx methods are what the stack is built from: each role's
 * permissions are what the methods grant a probe principal, and each alarm reads the metric its
 * owner's metricXxx returns.
 */

const PROBES = [
  "taskResponse",
  "taskOutcome",
  "taskSuccess",
  "describeExecution",
  "dispatch",
  "tokenLookup",
  "jobsGetItem",
  "nothing",
] as const;
type Probe = (typeof PROBES)[number];

let stack: JobqStack;
let main: Template;
let compute: Template;
let monitoring: Template;
const probeIds = {} as Record<Probe, string>;
let protectionProbeId: string;

beforeAll(() => {
  ({ stack, template: main } = synthJobqStack(
    {},
    {
      beforeSynth: (s) => {
        const probes = {} as Record<Probe, iam.Role>;
        for (const name of PROBES)
          probes[name] = new iam.Role(s, `Probe-${name}`, { assumedBy: new iam.AccountRootPrincipal() });
        s.lifecycle.grantTaskResponse(probes.taskResponse);
        s.lifecycle.grantTaskOutcome(probes.taskOutcome);
        s.lifecycle.grantTaskSuccess(probes.taskSuccess);
        s.lifecycle.grantDescribeExecution(probes.describeExecution);
        s.queues.grantDispatch(probes.dispatch);
        s.store.grantTokenLookup(probes.tokenLookup);
        s.store.grantJobs(probes.jobsGetItem, ["dynamodb:GetItem"]);
        s.store.grantNodes(probes.nothing, []);
        for (const name of PROBES) probeIds[name] = logicalId(probes[name]);
        // In the workers' nested stack, beside the task roles it is compared with.
        if (!s.workersStack || !s.workers) throw new Error("no worker pools");
        const protection = new iam.Role(s.workersStack, "Probe-taskProtection", {
          assumedBy: new iam.AccountRootPrincipal(),
        });
        s.workers.grantTaskProtection(protection);
        protectionProbeId = logicalId(protection);
      },
    },
  ));
  compute = nestedTemplate(stack.workersStack);
  monitoring = nestedTemplate(stack.monitoringStack);
});

/** What a role may do, limited to actions with the prefix (`states:`, `dynamodb:`…). */
function grantsWith(template: Template, roleId: string, prefix: string): Set<string> {
  return new Set([...grantsOf(roleStatements(template, roleId))].filter((g) => g.startsWith(prefix)));
}

const probeGrants = (probe: Probe, prefix: string) => grantsWith(main, probeIds[probe], prefix);

function roleOf(construct: { readonly role?: iam.IRole | undefined }): string {
  if (!construct.role) throw new Error("no role");
  return logicalId(construct.role);
}

describe("grant methods", () => {
  it("gives every pool's workers exactly what grantTaskResponse grants on task tokens, heartbeats included", () => {
    const expected = probeGrants("taskResponse", "states:");
    expect(expected.size).toBe(3);
    for (const { name } of DEFAULT_POOLS) {
      const pool = stack.workers?.pools[name];
      if (!pool) throw new Error(`no pool ${name}`);
      expect(grantsWith(compute, logicalId(pool.taskDefinition.taskRole), "states:")).toEqual(expected);
    }
  });

  it("lets the lifecycle function and the scheduler end tokens (grantTaskOutcome), never heartbeat them", () => {
    const outcome = probeGrants("taskOutcome", "states:SendTask");
    expect([...outcome].some((g) => g.includes("Heartbeat"))).toBe(false);
    expect(grantsWith(main, roleOf(stack.lifecycle.function), "states:SendTask")).toEqual(outcome);
    expect(grantsWith(main, roleOf(stack.scheduler.schedulerFunction), "states:SendTask")).toEqual(outcome);
  });

  it("lets the reconciler only succeed tokens and describe executions", () => {
    const reconciler = roleOf(stack.scheduler.reconcilerFunction);
    expect(grantsWith(main, reconciler, "states:")).toEqual(
      new Set([...probeGrants("taskSuccess", "states:"), ...probeGrants("describeExecution", "states:")]),
    );
  });

  it("lets the state machine send to the dispatch queues exactly as grantDispatch does", () => {
    const expected = probeGrants("dispatch", "sqs:");
    expect(expected.size).toBe(DEFAULT_POOLS.length * TIERS.length);
    expect(grantsWith(main, logicalId(stack.lifecycle.stateMachine.role), "sqs:")).toEqual(expected);
  });

  it("lets both authorizers look a token up with grantTokenLookup: GetItem on the table, not its indexes", () => {
    const expected = probeGrants("tokenLookup", "dynamodb:");
    expect(expected).toEqual(
      new Set([tableGrants(logicalId(stack.store.tokensTable), ["dynamodb:GetItem"])[0]]),
    );
    expect(grantsWith(main, roleOf(stack.jobApi.authorizerFunction), "dynamodb:")).toEqual(expected);
    const stream = stack.jobStream;
    if (!stream) throw new Error("no job stream");
    expect(grantsWith(main, roleOf(stream.authorizerFunction), "dynamodb:")).toEqual(expected);
  });

  it("grants a table's listed actions on it and its indexes, and nothing for no actions", () => {
    expect(probeGrants("jobsGetItem", "")).toEqual(
      new Set(tableGrants(logicalId(stack.store.jobsTable), ["dynamodb:GetItem"])),
    );
    expect(roleStatements(main, probeIds.nothing)).toEqual([]);
  });

  it("lets workers protect only their cluster's tasks from scale-in, as grantTaskProtection does", () => {
    const expected = grantsWith(compute, protectionProbeId, "ecs:");
    expect(expected.size).toBe(2);
    for (const { name } of DEFAULT_POOLS) {
      const pool = stack.workers?.pools[name];
      if (!pool) throw new Error(`no pool ${name}`);
      expect(grantsWith(compute, logicalId(pool.taskDefinition.taskRole), "ecs:")).toEqual(expected);
    }
  });
});

interface AlarmProperties {
  readonly Namespace?: string;
  readonly MetricName?: string;
  readonly Dimensions?: { Name: string; Value: unknown }[];
  readonly Period?: number;
  readonly Statistic?: string;
  readonly Metrics?: { Id: string; MetricStat?: unknown }[];
}

function alarmProps(template: Template, alarm: cloudwatch.Alarm): AlarmProperties {
  const found: CfnResource | undefined = resourcesOfType(template, "AWS::CloudWatch::Alarm")[
    logicalId(alarm)
  ];
  if (!found) throw new Error(`no alarm ${alarm.node.path}`);
  return (found.Properties ?? {}) as AlarmProperties;
}

const byName = (a: { Name: string }, b: { Name: string }) => a.Name.localeCompare(b.Name);

/** A metric as an alarm on it names it in the template (resolved in the metric's own stack). */
function asAlarmMetric(metric: cloudwatch.IMetric): AlarmProperties {
  const stat = metric.toMetricConfig().metricStat;
  if (!stat) throw new Error("not a single metric");
  return {
    Namespace: stat.namespace,
    MetricName: stat.metricName,
    Dimensions: (stack.resolve(stat.dimensions ?? []) as { name: string; value: unknown }[])
      .map(({ name, value }) => ({ Name: name, Value: value }))
      .sort(byName),
    Period: stat.period.toSeconds(),
    Statistic: stat.statistic,
  };
}

function expectAlarmOn(template: Template, alarm: cloudwatch.Alarm, metric: cloudwatch.IMetric): void {
  const props = alarmProps(template, alarm);
  expect({
    Namespace: props.Namespace,
    MetricName: props.MetricName,
    Dimensions: [...(props.Dimensions ?? [])].sort(byName),
    Period: props.Period,
    Statistic: props.Statistic,
  }).toEqual(asAlarmMetric(metric));
}

describe("metric methods", () => {
  it("alarms on failed lifecycle executions with metricExecutionsFailed() as it is", () => {
    expectAlarmOn(main, stack.lifecycle.failedExecutionsAlarm, stack.lifecycle.metricExecutionsFailed());
    expectAlarmOn(main, stack.lifecycle.functionErrorsAlarm, stack.lifecycle.metricFunctionErrors());
  });

  it("alarms on the scheduler's and reconciler's errors with their metric methods", () => {
    expectAlarmOn(main, stack.scheduler.schedulerErrorsAlarm, stack.scheduler.metricSchedulerErrors());
    expectAlarmOn(main, stack.scheduler.reconcilerErrorsAlarm, stack.scheduler.metricReconcilerErrors());
  });

  it("pages on a pool's oldest capacity wait with Scheduler#metricOldestCapacityWaitAge, per pool", () => {
    for (const { name } of DEFAULT_POOLS) {
      const alarm = stack.monitoring.oldestWaitAlarms[name];
      if (!alarm) throw new Error(`no oldest-wait alarm for ${name}`);
      expectAlarmOn(
        monitoring,
        alarm,
        stack.scheduler.metricOldestCapacityWaitAge(name, { period: Duration.minutes(5) }),
      );
    }
  });

  it("pages on a stopped scheduler with Scheduler#metricPasses over 5 minutes", () => {
    expectAlarmOn(
      monitoring,
      stack.monitoring.schedulerHeartbeatAlarm,
      stack.scheduler.metricPasses({ period: Duration.minutes(5) }),
    );
  });

  it("pages on every dead-letter queue with JobQueues#metricDeadLetterMessages", () => {
    const expected = DEFAULT_POOLS.flatMap(({ name }) =>
      TIERS.map((tier) => asAlarmMetric(stack.queues.metricDeadLetterMessages(name, tier))),
    );
    const actual = stack.monitoring.deadLetterAlarms.map((alarm) => {
      const props = alarmProps(monitoring, alarm);
      return {
        Namespace: props.Namespace,
        MetricName: props.MetricName,
        Dimensions: [...(props.Dimensions ?? [])].sort(byName),
        Period: props.Period,
        Statistic: props.Statistic,
      };
    });
    expect(actual).toEqual(expected);
  });

  it("scales each pool on a backlog that includes Scheduler#metricQueuedJobs for that pool", () => {
    for (const { name } of DEFAULT_POOLS) {
      const queued = asAlarmMetric(stack.scheduler.metricQueuedJobs(name, { period: Duration.minutes(1) }));
      const backlogAlarms = Object.values(resourcesOfType(compute, "AWS::CloudWatch::Alarm")).filter((a) =>
        String((a.Properties as { AlarmDescription?: string }).AlarmDescription).includes(`pool ${name};`),
      );
      expect(backlogAlarms.length).toBeGreaterThan(0);
      for (const alarm of backlogAlarms) {
        const stats = ((alarm.Properties as AlarmProperties).Metrics ?? []).flatMap((m) =>
          m.MetricStat ? [m.MetricStat] : [],
        );
        expect(stats).toContainEqual({
          Metric: {
            Namespace: queued.Namespace,
            MetricName: queued.MetricName,
            Dimensions: expect.arrayContaining(queued.Dimensions ?? []),
          },
          Period: queued.Period,
          Stat: queued.Statistic,
        });
      }
    }
  });

  it("graphs the Jobs table's throttled requests with JobStore#metricJobsThrottled", () => {
    const [dashboard] = Object.values(resourcesOfType(monitoring, "AWS::CloudWatch::Dashboard"));
    const body = JSON.stringify(dashboard?.Properties?.DashboardBody);
    const expression = stack.store.metricJobsThrottled().toMetricConfig().mathExpression?.expression;
    if (!expression) throw new Error("not a math expression");
    expect(body).toContain("Jobs table: throttled requests");
    expect(body).toContain(expression);
    expect(body).toContain('\\"AWS/DynamoDB\\",\\"ThrottledRequests\\"');
  });
});
