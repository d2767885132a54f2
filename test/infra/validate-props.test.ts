import { App, Duration, Stack } from "aws-cdk-lib";
import { describe, expect, it } from "vitest";
import { DEFAULT_POOLS } from "../../core/pools";
import { validateJobApiProps } from "../../lib/job-api";
import { validateJobLifecycleProps } from "../../lib/job-lifecycle";
import { validateJobMonitoringProps } from "../../lib/job-monitoring";
import { JobQueues, MAX_POOLS_PER_STACK, validateJobQueuesProps } from "../../lib/job-queues";
import { validateJobStatsProps } from "../../lib/job-stats";
import { validateJobStreamProps } from "../../lib/job-stream";
import { validateRuntimeProps } from "../../lib/jobq-function";
import { validateSchedulerProps } from "../../lib/scheduler";
import { PropValidationError } from "../../lib/validate-props";
import { validateWorkerPoolsProps } from "../../lib/worker-pools";

/**
 * Documented prop limits are refused at synth, with the construct, the prop, the limit and the
 * value in the message; the defaults and the values at the limits pass. No synth: the validators
 * run on a bare stack, and one construct shows they run at construction.
 */

const scope = () => new Stack(new App(), "Validate");
const pools = (count: number) =>
  Array.from({ length: count }, (_, i) => ({
    ...DEFAULT_POOLS[0],
    name: `pool${i}`,
  })) as typeof DEFAULT_POOLS;

function refusal(check: () => void): PropValidationError {
  try {
    check();
  } catch (error) {
    if (error instanceof PropValidationError) return error;
    throw error;
  }
  throw new Error("the props were accepted");
}

describe("worker pools", () => {
  const valid = { pools: DEFAULT_POOLS };

  it("refuses a stopTimeout over Fargate's 120 s, naming the prop, the limit and the value", () => {
    const error = refusal(() =>
      validateWorkerPoolsProps(scope(), { ...valid, stopTimeout: Duration.seconds(300) }),
    );
    expect(error.prop).toBe("stopTimeout");
    expect(error.message).toMatch(
      /^Validate: stopTimeout must be from 2 s to 120 s \(.*Fargate\); got 300 s$/,
    );
    expect(error.name).toBe("ValidationError");
  });

  it("accepts the limits themselves and the defaults", () => {
    validateWorkerPoolsProps(scope(), valid);
    validateWorkerPoolsProps(scope(), {
      ...valid,
      stopTimeout: Duration.seconds(120),
      scaleInAfterMinutes: 1440,
      natGateways: 2,
    });
    validateWorkerPoolsProps(scope(), { ...valid, stopTimeout: Duration.seconds(2), scaleInAfterMinutes: 1 });
  });

  it.each([
    ["scaleInAfterMinutes", { scaleInAfterMinutes: 0 }, /at least|from 1/],
    ["scaleInAfterMinutes", { scaleInAfterMinutes: 2.5 }, /whole number/],
    ["scaleInAfterMinutes", { scaleInAfterMinutes: 1441 }, /to 1440/],
    ["natGateways", { natGateways: 3 }, /from 0 to 2/],
    ["heartbeatSeconds", { heartbeatSeconds: 1 }, /from 2 s to 3600 s/],
    ["pools", { pools: pools(MAX_POOLS_PER_STACK + 1) }, new RegExp(`to ${MAX_POOLS_PER_STACK} pools`)],
  ] as const)("refuses %s %j", (prop, props, limit) => {
    const error = refusal(() => validateWorkerPoolsProps(scope(), { ...valid, ...props }));
    expect(error.prop).toBe(prop);
    expect(error.message).toMatch(limit);
  });
});

describe("runtime settings (every construct that runs jobq code)", () => {
  it.each([
    ["heartbeatSeconds", { heartbeatSeconds: 3601 }],
    ["lostAfterSeconds", { lostAfterSeconds: 9 }],
    ["nodeLostSeconds", { nodeLostSeconds: 0 }],
    ["retentionDays", { retentionDays: 0.5 }],
    ["jobRetentionDays", { jobRetentionDays: 36_501 }],
  ] as const)("refuses %s %j, as app/config.ts would at cold start", (prop, props) => {
    expect(refusal(() => validateRuntimeProps(scope(), props)).prop).toBe(prop);
    expect(refusal(() => validateSchedulerProps(scope(), props)).prop).toBe(prop);
    expect(refusal(() => validateJobLifecycleProps(scope(), props)).prop).toBe(prop);
    expect(refusal(() => validateJobApiProps(scope(), props)).prop).toBe(prop);
  });

  it("accepts the defaults and the bounds", () => {
    validateRuntimeProps(scope(), {});
    validateRuntimeProps(scope(), {
      heartbeatSeconds: 2,
      lostAfterSeconds: 86_400,
      nodeLostSeconds: 3600,
      retentionDays: 1,
      jobRetentionDays: 36_500,
    });
  });
});

describe("each construct's own limits", () => {
  it.each([
    ["sweepInterval", () => validateSchedulerProps(scope(), { sweepInterval: Duration.seconds(30) })],
    ["sweepInterval", () => validateSchedulerProps(scope(), { sweepInterval: Duration.seconds(90) })],
    ["reconcileInterval", () => validateSchedulerProps(scope(), { reconcileInterval: Duration.minutes(2) })],
    ["stateMachineName", () => validateJobLifecycleProps(scope(), { stateMachineName: "jobs lifecycle" })],
    ["stateMachineName", () => validateJobLifecycleProps(scope(), { stateMachineName: "x".repeat(81) })],
    ["failedExecutionsThreshold", () => validateJobLifecycleProps(scope(), { failedExecutionsThreshold: 0 })],
    ["timeout", () => validateJobApiProps(scope(), { timeout: Duration.seconds(30) })],
    ["memorySize", () => validateJobApiProps(scope(), { memorySize: 64 })],
    ["authorizerCacheTtl", () => validateJobApiProps(scope(), { authorizerCacheTtl: Duration.hours(2) })],
    ["stageName", () => validateJobApiProps(scope(), { stageName: "v1/beta" })],
    ["throttlingBurstLimit", () => validateJobApiProps(scope(), { throttlingBurstLimit: -1 })],
    ["batchSize", () => validateJobStreamProps(scope(), { batchSize: 10_001 })],
    ["retryAttempts", () => validateJobStreamProps(scope(), { retryAttempts: -1 })],
    ["retryAttempts", () => validateJobStatsProps(scope(), { retryAttempts: 10_001 })],
    ["maxQueueAge", () => validateJobMonitoringProps(scope(), { maxQueueAge: Duration.days(8) })],
    [
      "maxReceiveCount",
      () => validateJobQueuesProps(scope(), { pools: DEFAULT_POOLS, maxReceiveCount: 1001 }),
    ],
    ["pools", () => validateJobQueuesProps(scope(), { pools: [] })],
    ["pools", () => validateJobQueuesProps(scope(), { pools: [{ name: "cpu" }, { name: "cpu" }] })],
  ] as const)("refuses a bad %s", (prop, check) => {
    const error = refusal(check);
    expect(error.prop).toBe(prop);
    expect(error.message).toContain(`${prop} must be`);
  });

  it("accepts every construct's defaults", () => {
    validateSchedulerProps(scope(), {});
    validateSchedulerProps(scope(), {
      sweepInterval: Duration.minutes(1),
      reconcileInterval: Duration.minutes(4),
    });
    validateJobLifecycleProps(scope(), { stateMachineName: "Jobq-job-lifecycle" });
    validateJobApiProps(scope(), { timeout: Duration.seconds(29), memorySize: 10_240, stageName: "v1" });
    validateJobStreamProps(scope(), {});
    validateJobStatsProps(scope(), {});
    validateJobMonitoringProps(scope(), { maxQueueAge: Duration.days(7) });
    validateJobQueuesProps(scope(), { pools: pools(MAX_POOLS_PER_STACK), maxReceiveCount: 1000 });
  });

  it("runs when the construct is built, so a bad prop stops the synth", () => {
    const stack = scope();
    expect(() => new JobQueues(stack, "Queues", { pools: DEFAULT_POOLS, maxReceiveCount: 0 })).toThrow(
      /^Validate\/Queues: maxReceiveCount must be a whole number from 1 to 1000 \(SQS's redrive policy limit\); got 0$/,
    );
  });
});
