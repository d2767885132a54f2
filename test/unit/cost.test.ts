import { describe, expect, it } from "vitest";
import {
  dominantShare,
  eventsOf,
  type JobCostFacts,
  jobCost,
  overheadCost,
  PRICE_TABLE,
  STEP_REQUESTS,
  stepCounts,
} from "../../core/cost";
import { DEFAULT_POOLS, poolHourlyUsd } from "../../core/pools";
import { EC2_HOURLY_USD, fargateHourlyUsd, PRICES } from "../../core/prices";
import { ALL, foldChanges, type JobImage, ownerDimension, projectDimension } from "../../core/stats";

const success: JobCostFacts = {
  status: "completed",
  version: 4,
  attempts: 1,
  failures: 0,
  retries: 0,
  runMs: 0,
  share: 0.5,
  hourlyUsd: 0.1,
  events: "all",
};

describe("the cost of a job", () => {
  it("counts one of each run step for a successful single-attempt job", () => {
    // Act
    const counts = stepCounts(success);
    // Assess
    expect(counts).toEqual({
      submit: 1,
      admission: 1,
      start: 1,
      completion: 1,
      attemptFailed: 0,
      requeue: 0,
      apiRequest: 0,
      otherChange: 0,
      statusChange: 4,
    });
  });

  it("prices a successful job from the step table: 1 transition, one API request, 4 events", () => {
    // Act
    const cost = jobCost(success);
    // Assess
    const { submit, admission, start, completion, statusChange } = STEP_REQUESTS;
    const writes =
      submit.writeUnits +
      admission.writeUnits +
      start.writeUnits +
      completion.writeUnits +
      4 * statusChange.writeUnits;
    expect(cost.breakdown.stepFunctions).toEqual({ transitions: 1, usd: PRICES.stateTransition });
    expect(cost.breakdown.dynamodb.writeUnits).toBeCloseTo(writes, 9);
    expect(cost.breakdown.api.requests).toBe(1);
    expect(cost.breakdown.eventBridge.entries).toBe(4);
    expect(cost.computeUsd).toBe(0);
    expect(cost.totalUsd).toBeCloseTo(cost.requestsUsd, 15);
    expect(cost.priceTable).toBe(PRICE_TABLE);
    // About $55 a million, as the bench measures (docs/cost.md).
    expect(cost.requestsUsd * 1e6).toBeGreaterThan(45);
    expect(cost.requestsUsd * 1e6).toBeLessThan(65);
  });

  it("adds a retried attempt: 4 transitions more, its failure, requeue, admission and start", () => {
    // Prepare: attempt 1 failed, attempt 2 completed (versions: queued, dispatched, running,
    // retrying, queued, dispatched, running, completed).
    const retried: JobCostFacts = { ...success, version: 8, attempts: 2, failures: 1 };
    // Act
    const once = jobCost(success);
    const twice = jobCost(retried);
    // Assess
    expect(stepCounts(retried)).toMatchObject({ admission: 2, attemptFailed: 1, requeue: 1, otherChange: 0 });
    expect(twice.breakdown.stepFunctions.transitions).toBe(5);
    expect(twice.breakdown.eventBridge.entries).toBe(8);
    expect(twice.requestsUsd).toBeGreaterThan(once.requestsUsd + 4 * PRICES.stateTransition);
  });

  it("counts 12 transitions for a job that exhausts three attempts, and no requeue after the last", () => {
    const failed: JobCostFacts = { ...success, status: "failed", version: 12, attempts: 3, failures: 3 };
    expect(stepCounts(failed)).toMatchObject({ attemptFailed: 3, requeue: 2, completion: 0, otherChange: 0 });
    expect(jobCost(failed).breakdown.stepFunctions.transitions).toBe(12);
  });

  it("costs a job cancelled while queued its submission, the cancel request and no transition", () => {
    const cancelled: JobCostFacts = { ...success, status: "cancelled", version: 2, attempts: 0 };
    const cost = jobCost(cancelled);
    expect(stepCounts(cancelled)).toMatchObject({ admission: 0, apiRequest: 1, otherChange: 1 });
    expect(cost.breakdown.stepFunctions.transitions).toBe(0);
    expect(cost.breakdown.api.requests).toBe(2);
  });

  it("publishes one event per change with `all`, one at the end with `terminal`, none without a bus", () => {
    expect(eventsOf({ ...success, events: "all" })).toBe(4);
    expect(eventsOf({ ...success, events: "terminal" })).toBe(1);
    expect(eventsOf({ ...success, status: "running", events: "terminal" })).toBe(0);
    expect(eventsOf({ ...success, events: "none" })).toBe(0);
  });

  it("charges compute as node-hours × hourlyUsd × the share reserved", () => {
    // Prepare: an hour on half of a $0.10 node.
    const cost = jobCost({ ...success, runMs: 3_600_000 });
    // Assess
    expect(cost.computeUsd).toBeCloseTo(0.05, 12);
    expect(cost.breakdown.compute).toEqual({
      nodeSeconds: 3600,
      share: 0.5,
      hourlyUsd: 0.1,
      usd: cost.computeUsd,
    });
    expect(cost.totalUsd).toBeCloseTo(cost.requestsUsd + 0.05, 12);
  });

  it("is deterministic", () => {
    expect(jobCost(success)).toEqual(jobCost(success));
  });
});

describe("a node's share and price", () => {
  it("takes the dominant share: the largest of cpu, memory and GPU", () => {
    const node = { cpu: 8, memoryMb: 32768, gpu: 2 };
    expect(dominantShare({ cpu: 1, memoryMb: 1024, gpu: 1 }, node)).toBe(0.5);
    expect(dominantShare({ cpu: 4, memoryMb: 1024, gpu: 0 }, node)).toBe(0.5);
    expect(dominantShare({ cpu: 1, memoryMb: 32768, gpu: 0 }, node)).toBe(1);
    expect(dominantShare({ cpu: 1, memoryMb: 512, gpu: 0 }, { cpu: 2, memoryMb: 4096, gpu: 0 })).toBe(0.5);
  });

  it("defaults a pool's hourlyUsd to its Fargate size or the cheapest g5 that holds a node", () => {
    const [cpu, gpu] = DEFAULT_POOLS;
    if (!cpu || !gpu) throw new Error("default pools changed");
    expect(poolHourlyUsd(cpu)).toBeCloseTo(fargateHourlyUsd(2, 4096), 12);
    expect(poolHourlyUsd(cpu)).toBeCloseTo(2 * 0.04048 + 4 * 0.004445, 12);
    // 8 vCPU, 32 GB, 2 GPUs: the first g5 with 2 GPUs is the 4-GPU g5.12xlarge.
    expect(poolHourlyUsd(gpu)).toBe(EC2_HOURLY_USD["g5.12xlarge"]);
    expect(poolHourlyUsd({ ...gpu, hourlyUsd: 3 })).toBe(3);
    expect(poolHourlyUsd(gpu, "g6.12xlarge")).toBe(EC2_HOURLY_USD["g6.12xlarge"]);
  });
});

describe("time-driven overhead", () => {
  it("grows with time and nodes, not with jobs", () => {
    const settings = { seconds: 3600, pools: 2, nodes: 3, tiers: 5, pollSeconds: 20, heartbeatSeconds: 30 };
    const hour = overheadCost(settings);
    const twoHours = overheadCost({ ...settings, seconds: 7200 });
    expect(hour.invocations).toBe(120);
    expect(hour.sqsRequests).toBe(2700);
    expect(twoHours.usd).toBeCloseTo(2 * hour.usd, 12);
  });
});

describe("cost sums in the stats fold", () => {
  const image = (status: JobImage["status"], cost: JobImage["cost"] = null): JobImage => ({
    id: "job_1",
    status,
    owner: "alice",
    type: "echo",
    pool: null,
    reservationPool: null,
    createdAt: "2026-12-07T10:00:00.000Z",
    updatedAt: "2026-12-07T10:01:00.000Z",
    queuedAt: null,
    attemptStartedAt: null,
    staged: false,
    cost,
  });

  it("adds an ended job's cost to its day, for everyone and for its owner", () => {
    // Act
    const delta = foldChanges([
      { old: image("running"), new: image("completed", { requestsUsd: 0.00007, computeUsd: 0.001 }) },
    ]);
    // Assess
    const day = delta.costs.get("2026-12-07");
    expect(day?.get(ALL)).toEqual({ jobs: 1, requestsUsd: 0.00007, computeUsd: 0.001 });
    expect(day?.get(ownerDimension("alice"))).toEqual({ jobs: 1, requestsUsd: 0.00007, computeUsd: 0.001 });
  });

  it("adds a project's job to its project too, under the project's quota key", () => {
    // Act
    const delta = foldChanges([
      {
        old: { ...image("running"), project: "ml-research" },
        new: { ...image("failed", { requestsUsd: 0.0001, computeUsd: 0.002 }), project: "ml-research" },
      },
    ]);
    // Assess
    const day = delta.costs.get("2026-12-07");
    expect(projectDimension("ml-research")).toBe("project:ml-research");
    expect(day?.get(projectDimension("ml-research"))).toEqual({
      jobs: 1,
      requestsUsd: 0.0001,
      computeUsd: 0.002,
    });
    expect([...(day?.keys() ?? [])].sort()).toEqual(
      [ALL, ownerDimension("alice"), "project:ml-research"].sort(),
    );
  });

  it("adds nothing for a change that ends no job, nor for a replayed end", () => {
    const cost = { requestsUsd: 1, computeUsd: 1 };
    expect(foldChanges([{ old: image("queued"), new: image("dispatched", cost) }]).costs.size).toBe(0);
    expect(foldChanges([{ old: image("completed", cost), new: image("completed", cost) }]).costs.size).toBe(
      0,
    );
  });
});
