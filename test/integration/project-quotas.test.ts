import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { completeRun } from "../../app/completion";
import type { PoolPassSummary } from "../../app/scheduler";
import { schedulePool } from "../../app/scheduler";
import { projectQuotaKey } from "../../core/projects";
import { gpuUsageItems } from "../../store/usage";
import {
  type Harness,
  heartbeatNodes,
  jobItem,
  ownTables,
  registerNode,
  schedulerFor,
  startHarness,
  startOnReservedNode,
  submitWaiting,
  suffix,
} from "../support/scheduling";

/**
 * Project quotas at the level of a scheduling pass (issue 13, item 4), against DynamoDB Local
 * with the clock set by the test: a project over its GPU quota holds only its own GPU jobs, with
 * a reason that names the project; its CPU jobs and other projects' GPU jobs still run; GPU
 * usage of a project's attempts is counted for the project as well as for the owner.
 */

const RUN = suffix();
let h: Harness;

const GPU_NODE = { cpu: 8, memoryMb: 32768, gpu: 4 };
const ONE_GPU = { cpu: 1, memoryMb: 1024, gpu: 1 };
const ONE_CPU = { cpu: 1, memoryMb: 512, gpu: 0 };

function newPool(): string {
  const name = `p${suffix()}`;
  h.addPool({ name, labels: {}, nodes: 1, node: GPU_NODE });
  return name;
}

function name(prefix: string): string {
  return `${prefix}-${suffix()}`.toLowerCase();
}

function setClock(iso: string): void {
  h.clock.now = new Date(iso);
}

function waitingOf(summary: PoolPassSummary, jobId: string) {
  return summary.waiting.find((w) => w.jobId === jobId);
}

async function putQuota(subject: string, dailyGpuSeconds: number): Promise<void> {
  await h.scheduler.policies.putQuota(
    subject,
    { dailyGpuSeconds, weeklyGpuSeconds: null, maxQueuedJobs: null },
    h.clock.read().toISOString(),
  );
}

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-projects-${RUN}-`));
});
afterAll(() => h?.close());

describe("project GPU quotas", () => {
  it("holds only the spent project's GPU jobs, with a reason naming the project; its CPU jobs and other projects' GPU jobs run", async () => {
    // Prepare: project ml used its 3600 GPU-seconds this morning (an attempt of alice's);
    // alice herself and bob have no quota; vision has none either.
    setClock("2026-11-25T10:00:00.000Z");
    const pool = newPool();
    const ctx = schedulerFor(h, [pool]);
    await registerNode(h, pool, GPU_NODE);
    const ml = name("ml");
    const vision = name("vision");
    const alice = name("alice");
    const bob = name("bob");
    await putQuota(projectQuotaKey(ml), 3600);
    await h.repo.transact(
      gpuUsageItems(
        h.scheduler.usage.tableName,
        alice,
        1,
        "2026-11-25T08:00:00.000Z",
        "2026-11-25T09:00:00.000Z",
        ml,
      ),
    );
    const [mlGpu = "", mlCpu = ""] = await submitWaiting(h, alice, [
      { pool, resources: ONE_GPU, project: ml },
      { pool, resources: ONE_CPU, project: ml },
    ]);
    const [bobMlGpu = "", visionGpu = "", plainGpu = ""] = await submitWaiting(h, bob, [
      { pool, resources: ONE_GPU, project: ml },
      { pool, resources: ONE_GPU, project: vision },
      { pool, resources: ONE_GPU },
    ]);

    // Act
    const pass = await schedulePool(ctx, pool);
    const held = await jobItem(h, mlGpu);

    // Assess
    const reason = `project ${ml} is over its daily GPU quota: 3600 of 3600 GPU-seconds used today`;
    expect(pass.admitted.map((a) => a.jobId).sort()).toEqual([mlCpu, visionGpu, plainGpu].sort());
    expect(waitingOf(pass, mlGpu)).toMatchObject({ code: "quota", reason });
    expect(waitingOf(pass, bobMlGpu)).toMatchObject({ code: "quota", reason });
    expect(held).toMatchObject({ status: "queued", reasonCode: "quota", statusReason: reason, project: ml });
  });

  it("counts a project's running attempt against the project's quota, whoever owns the job", async () => {
    // Prepare: carol's 1-GPU job of project ml starts at 09:00; by 10:00 it has used the
    // project's 3600 GPU-seconds (carol herself has no quota).
    setClock("2026-11-25T09:00:00.000Z");
    const pool = newPool();
    const ctx = schedulerFor(h, [pool]);
    const nodeId = await registerNode(h, pool, GPU_NODE);
    const ml = name("ml");
    const carol = name("carol");
    const dave = name("dave");
    await putQuota(projectQuotaKey(ml), 3600);
    const [running = ""] = await submitWaiting(h, carol, [{ pool, resources: ONE_GPU, project: ml }]);
    await schedulePool(ctx, pool);
    await startOnReservedNode(h, running);
    setClock("2026-11-25T10:00:00.000Z");
    await heartbeatNodes(h, pool, [nodeId]);
    const [daves = ""] = await submitWaiting(h, dave, [{ pool, resources: ONE_GPU, project: ml }]);

    // Act
    const pass = await schedulePool(ctx, pool);

    // Assess
    expect(pass.admitted).toEqual([]);
    expect(waitingOf(pass, daves)).toMatchObject({
      code: "quota",
      reason: `project ${ml} is over its daily GPU quota: 3600 of 3600 GPU-seconds used today`,
    });
  });

  it("adds a finished attempt's GPU-seconds to its project as well as to its owner, in the completing write", async () => {
    // Prepare: erin's 2-GPU job of a project runs from 09:00 to 09:30.
    setClock("2026-11-25T09:00:00.000Z");
    const pool = newPool();
    const ctx = schedulerFor(h, [pool]);
    await registerNode(h, pool, GPU_NODE);
    const ml = name("ml");
    const erin = name("erin");
    const [job = ""] = await submitWaiting(h, erin, [
      { pool, resources: { cpu: 1, memoryMb: 1024, gpu: 2 }, project: ml },
    ]);
    await schedulePool(ctx, pool);
    await startOnReservedNode(h, job);
    setClock("2026-11-25T09:30:00.000Z");

    // Act
    const done = await completeRun(h.reconciler, { jobId: job, attempt: 1, resultJson: "null" });
    const usage = await h.scheduler.usage.readGpuUsage([erin, projectQuotaKey(ml)], h.clock.read());

    // Assess
    expect(done.outcome).toBe("completed");
    expect(usage.get(erin)).toEqual({ todayGpuSeconds: 3600, weekGpuSeconds: 3600 });
    expect(usage.get(projectQuotaKey(ml))).toEqual({ todayGpuSeconds: 3600, weekGpuSeconds: 3600 });
  });
});
