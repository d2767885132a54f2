import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recordAttemptFailure } from "../../app/attempt-failure";
import { type PoolPassSummary, schedulePool } from "../../app/scheduler";
import { submitJobs } from "../../app/submit";
import type { BatchJobRequest, Job } from "../../core/job";
import { type DEFAULT_POLICY, policySchema } from "../../core/policy";
import { startTestApi, type TestApi } from "../support/api";
import { ADMIN, ALICE, expectError, problemPaths } from "../support/jobs";
import {
  type Harness,
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
 * Per-type rules and running caps (issue 13 items 2 and 3): the type's defaults at submit over
 * HTTP (the one policy item of the shared tables; restored to the defaults afterwards), and at
 * the level of a scheduling pass on tables of this file's own: onTimeout against onFailure when
 * attempts run out, types[x].maxRunning, the policy's maxRunning caps and per-type rate limits.
 */

const RUN = suffix();
let api: TestApi;
let h: Harness;

const CPU_NODE = { cpu: 8, memoryMb: 16384, gpu: 0 };
const ONE_CPU = { cpu: 1, memoryMb: 512, gpu: 0 };

beforeAll(async () => {
  api = await startTestApi();
  h = await startHarness(await ownTables(`jobq-typerules-${RUN}-`));
});
afterAll(async () => {
  await api?.request("PUT", "/admin/policy", { token: ADMIN.token, body: {} });
  await api?.close();
  await h?.close();
});

function newPool(): string {
  const name = `p${suffix()}`;
  h.addPool({ name, labels: {}, nodes: 1, node: CPU_NODE });
  return name;
}

function waitingOf(summary: PoolPassSummary, jobId: string) {
  return summary.waiting.find((w) => w.jobId === jobId);
}

const putPolicy = (body: unknown) => api.request("PUT", "/admin/policy", { token: ADMIN.token, body });
const submit = (body: unknown) => api.request<Job>("POST", "/jobs", { token: ALICE.token, body });
const getJob = (id: string) => api.request<Job>("GET", `/jobs/${id}`, { token: ALICE.token });

describe("per-type defaults at submit (POST /jobs, POST /jobs/batch)", () => {
  it("fills the fields a job left out from its type's rules, keeps the ones it gave, and never changes them later", async () => {
    // Prepare
    const typeRetry = {
      maxAttempts: 5,
      strategy: "linear",
      initialDelaySeconds: 2,
      backoffMultiplier: 1,
      maxDelaySeconds: 60,
    };
    const put = await putPolicy({
      types: {
        echo: {
          retry: typeRetry,
          timeoutSeconds: 120,
          onFailure: { escalateTo: { type: "sleep" } },
          onTimeout: { escalateTo: { type: "sleep", priority: "high" } },
        },
      },
    });
    expect(put.status).toBe(200);

    // Act
    const bare = await submit({ type: "echo" });
    const own = await submit({
      type: "echo",
      retry: { maxAttempts: 1 },
      timeoutSeconds: 30,
      onTimeout: { escalateTo: { type: "echo" } },
    });
    const other = await submit({ type: "sleep" });
    const batch = await api.request<{ jobs: Job[] }>("POST", "/jobs/batch", {
      token: ALICE.token,
      body: { jobs: [{ type: "echo", timeoutSeconds: 45 }] },
    });
    await putPolicy({ types: { echo: { timeoutSeconds: 999 } } });
    const later = await getJob(bare.json.id);

    // Assess
    expect(bare.status).toBe(201);
    expect(bare.json).toMatchObject({
      retry: typeRetry,
      timeoutSeconds: 120,
      onFailure: { escalateTo: { type: "sleep" } },
      onTimeout: { escalateTo: { type: "sleep", priority: 5 } },
    });
    expect(own.json).toMatchObject({
      retry: { maxAttempts: 1, strategy: "exponential", initialDelaySeconds: 1 },
      timeoutSeconds: 30,
      onFailure: { escalateTo: { type: "sleep" } },
      onTimeout: { escalateTo: { type: "echo" } },
    });
    // A type without rules: the built-in defaults of API.md, and no escalation.
    expect(other.json).toMatchObject({
      retry: { maxAttempts: 3, strategy: "exponential" },
      timeoutSeconds: 3600,
      onFailure: null,
      onTimeout: null,
    });
    expect(batch.status).toBe(201);
    expect(batch.json.jobs[0]).toMatchObject({ retry: typeRetry, timeoutSeconds: 45 });
    // The policy changed after submit: the job keeps what it was given then.
    expect(later.json).toEqual(expect.objectContaining({ timeoutSeconds: 120, retry: typeRetry }));
  });
});

describe("PUT /admin/policy: the new fields", () => {
  it("refuses bad per-type rules and running caps with a 400 naming every path", async () => {
    // Act
    const response = await putPolicy({
      types: {
        echo: {
          rateLimit: { starts: 0, perSeconds: 0 },
          maxRunning: -1,
          timeoutSeconds: 0,
          onTimeout: { escalateTo: {} },
          bogus: true,
        },
        "Not A Type": {},
      },
      maxRunning: { total: -1, pools: { gpu: 1.5 } },
    });

    // Assess
    const body = expectError(response, 400, "validation_failed");
    expect(problemPaths(body)).toEqual(
      expect.arrayContaining([
        "types.echo.rateLimit.starts",
        "types.echo.rateLimit.perSeconds",
        "types.echo.maxRunning",
        "types.echo.timeoutSeconds",
        "types.echo.onTimeout.escalateTo.type",
        "maxRunning",
      ]),
    );
    expect(problemPaths(body).some((p) => p.startsWith("types"))).toBe(true);
  });

  it("stores valid rules and caps and answers them", async () => {
    // Prepare
    const policy = {
      types: { echo: { maxRunning: 2, rateLimit: { starts: 10, perSeconds: 60 } } },
      maxRunning: { total: 100, pools: { gpu: 4 } },
    };

    // Act
    const put = await putPolicy(policy);
    const got = await api.request("GET", "/admin/policy", { token: ADMIN.token });

    // Assess
    expect(put.status).toBe(200);
    expect(got.json).toMatchObject(policy);
    await putPolicy({});
    const reset = await api.request<typeof DEFAULT_POLICY>("GET", "/admin/policy", { token: ADMIN.token });
    expect(reset.json.types).toEqual({});
  });
});

describe("escalation: onTimeout against onFailure", () => {
  async function endLastAttempt(
    owner: string,
    pool: string,
    outcome: "timed_out" | "failed",
    job: Partial<BatchJobRequest>,
    lifecycle: typeof h.reconciler = h.reconciler,
  ) {
    const ctx = schedulerFor(h, [pool]);
    const { jobs } = await submitJobs(lifecycle, {
      principal: { id: owner, admin: false },
      jobs: [
        {
          type: "echo",
          priority: 0,
          resources: ONE_CPU,
          dependsOn: [],
          offPeakOnly: false,
          pool,
          retry: { ...RETRY_ONCE },
          timeoutSeconds: 1,
          ...job,
        },
      ],
    });
    const id = jobs[0]?.id ?? "";
    const pass = await schedulePool(ctx, pool);
    // (The previous call's escalation job, queued in the same pool, may be admitted too.)
    expect(pass.admitted.map((a) => a.jobId)).toContain(id);
    await startOnReservedNode(h, id);
    await recordAttemptFailure(lifecycle, {
      jobId: id,
      attempt: 1,
      outcome,
      error: outcome === "timed_out" ? { Error: "timeout", Cause: "timed out after 1 s" } : { Error: "boom" },
    });
    const ended = await jobItem(h, id);
    return { ended, replacement: ended.escalatedTo ? await jobItem(h, ended.escalatedTo) : null };
  }

  const RETRY_ONCE = {
    maxAttempts: 1,
    strategy: "exponential" as const,
    initialDelaySeconds: 1,
    backoffMultiplier: 2,
    maxDelaySeconds: 1,
  };

  it("escalates to onTimeout's type when the last attempt timed out, to onFailure's when it failed", async () => {
    // Prepare
    const pool = newPool();
    await registerNode(h, pool, CPU_NODE);
    const owner = `alice-${suffix()}`;
    const both = {
      onFailure: { escalateTo: { type: "review" } },
      onTimeout: { escalateTo: { type: "big-model", priority: 5 } },
    };

    // Act
    const timedOut = await endLastAttempt(owner, pool, "timed_out", both);
    const failed = await endLastAttempt(owner, pool, "failed", both);
    const onlyOnFailure = await endLastAttempt(owner, pool, "timed_out", { onFailure: both.onFailure });

    // Assess
    expect(timedOut.ended).toMatchObject({ status: "escalated", error: { type: "timeout" } });
    expect(timedOut.replacement).toMatchObject({ type: "big-model", priority: 5, timeoutSeconds: 1 });
    expect(failed.ended.status).toBe("escalated");
    expect(failed.replacement).toMatchObject({ type: "review", priority: 0 });
    // No onTimeout: a timeout escalates by onFailure, as before onTimeout existed.
    expect(onlyOnFailure.replacement).toMatchObject({ type: "review" });
  });

  it("takes onTimeout from the type's rules, and the escalation job gets its own type's timeout but no escalation of its own", async () => {
    // Prepare: jobs of type `slow` escalate on timeout to `triage`; `triage` has a rule too.
    const pool = newPool();
    await registerNode(h, pool, CPU_NODE);
    // The policy in force as the deployment's default: none is stored in this file's tables.
    const policy = policySchema.parse({
      types: {
        slow: { onTimeout: { escalateTo: { type: "triage" } } },
        triage: { timeoutSeconds: 600, onFailure: { escalateTo: { type: "slow" } } },
      },
    });
    const lifecycle = { ...h.reconciler, defaultPolicy: policy };

    // Act
    const timedOut = await endLastAttempt(
      `alice-${suffix()}`,
      pool,
      "timed_out",
      { type: "slow" },
      lifecycle,
    );

    // Assess
    expect(timedOut.ended).toMatchObject({
      onTimeout: { escalateTo: { type: "triage" } },
      status: "escalated",
    });
    expect(timedOut.replacement).toMatchObject({ type: "triage", timeoutSeconds: 600, onFailure: null });
    expect(timedOut.replacement?.retry).toEqual(RETRY_ONCE);
  });
});

describe("running caps and per-type limits in a pass", () => {
  it("types[x].maxRunning holds a type at its limit with type_limit (the smaller of it and typeConcurrency)", async () => {
    // Prepare
    const pool = newPool();
    const ctx = schedulerFor(h, [pool], {
      typeConcurrency: { train: 5 },
      types: { train: { maxRunning: 1 } },
    });
    await registerNode(h, pool, CPU_NODE);
    const [first = "", second = ""] = await submitWaiting(h, `alice-${suffix()}`, [
      { pool, type: "train", resources: ONE_CPU },
      { pool, type: "train", resources: ONE_CPU },
    ]);

    // Act
    const pass = await schedulePool(ctx, pool);

    // Assess
    expect(pass.admitted.map((a) => a.jobId)).toEqual([first]);
    expect(waitingOf(pass, second)).toMatchObject({
      code: "type_limit",
      reason: "type train is at its concurrency limit: 1 of 1 dispatched or running",
    });
  });

  it("the system's maxRunning holds jobs beyond the cap with running_cap, counting those already running", async () => {
    // Prepare: one job already running; a cap of 3 on the whole system (this test's pools).
    const pool = newPool();
    const ctx = schedulerFor(h, [pool], { maxRunning: 3 });
    await registerNode(h, pool, CPU_NODE);
    const owner = `alice-${suffix()}`;
    const [running = ""] = await submitWaiting(h, owner, [{ pool, resources: ONE_CPU }]);
    await schedulePool(ctx, pool);
    await startOnReservedNode(h, running);
    const queued = await submitWaiting(
      h,
      owner,
      [1, 2, 3, 4].map(() => ({ pool, resources: ONE_CPU })),
    );

    // Act
    const pass = await schedulePool(ctx, pool);
    const held = await jobItem(h, queued[2] ?? "");

    // Assess
    expect(pass.admitted.map((a) => a.jobId)).toEqual(queued.slice(0, 2));
    for (const id of queued.slice(2)) expect(waitingOf(pass, id)?.code).toBe("running_cap");
    expect(held).toMatchObject({
      status: "queued",
      reasonCode: "running_cap",
      statusReason: "the system's running cap is reached: 3 of 3 dispatched or running",
    });
  });

  it("a pool's maxRunning holds that pool's jobs while another pool's run", async () => {
    // Prepare
    const capped = newPool();
    const free = newPool();
    const ctx = schedulerFor(h, [capped, free], { maxRunning: { pools: { [capped]: 1 } } });
    await registerNode(h, capped, CPU_NODE);
    await registerNode(h, free, CPU_NODE);
    const owner = `alice-${suffix()}`;
    const [c1 = "", c2 = "", f1 = "", f2 = ""] = await submitWaiting(h, owner, [
      { pool: capped, resources: ONE_CPU },
      { pool: capped, resources: ONE_CPU },
      { pool: free, resources: ONE_CPU },
      { pool: free, resources: ONE_CPU },
    ]);

    // Act
    const inCapped = await schedulePool(ctx, capped);
    const inFree = await schedulePool(ctx, free);

    // Assess
    expect(inCapped.admitted.map((a) => a.jobId)).toEqual([c1]);
    expect(waitingOf(inCapped, c2)).toMatchObject({
      code: "running_cap",
      reason: `pool ${capped}'s running cap is reached: 1 of 1 dispatched or running`,
    });
    expect(inFree.admitted.map((a) => a.jobId).sort()).toEqual([f1, f2].sort());
  });

  it("rateLimit starts at most `starts` jobs of a type per window, across pools, and the next window starts more", async () => {
    // Prepare: 2 starts of `scan` per minute; the clock at the start of a minute.
    h.clock.now = new Date("2026-11-25T12:00:05.000Z");
    const first = newPool();
    const second = newPool();
    const ctx = schedulerFor(h, [first, second], {
      types: { scan: { rateLimit: { starts: 2, perSeconds: 60 } } },
    });
    const n1 = await registerNode(h, first, CPU_NODE);
    const n2 = await registerNode(h, second, CPU_NODE);
    const owner = `alice-${suffix()}`;
    const inFirst = await submitWaiting(
      h,
      owner,
      [1, 2, 3].map(() => ({ pool: first, type: "scan", resources: ONE_CPU })),
    );
    const [inSecond = ""] = await submitWaiting(h, owner, [
      { pool: second, type: "scan", resources: ONE_CPU },
    ]);
    const [echo = ""] = await submitWaiting(h, owner, [{ pool: second, type: "echo", resources: ONE_CPU }]);

    // Act
    const a = await schedulePool(ctx, first);
    const b = await schedulePool(ctx, second);
    const held = await jobItem(h, inSecond);
    const counted = await h.scheduler.policies.getRateStarts([
      { type: "scan", windowStart: new Date("2026-11-25T12:00:00.000Z") },
    ]);
    h.clock.now = new Date("2026-11-25T12:01:01.000Z");
    await h.nodes.heartbeat(first, n1, h.clock.read());
    await h.nodes.heartbeat(second, n2, h.clock.read());
    const c = await schedulePool(ctx, first);
    const d = await schedulePool(ctx, second);

    // Assess
    expect(a.admitted.map((x) => x.jobId)).toEqual(inFirst.slice(0, 2));
    expect(waitingOf(a, inFirst[2] ?? "")?.code).toBe("rate_limit");
    expect(b.admitted.map((x) => x.jobId)).toEqual([echo]);
    expect(held).toMatchObject({
      status: "queued",
      reasonCode: "rate_limit",
      statusReason: "type scan started 2 of 2 jobs allowed per 60 s; next start at 2026-11-25T12:01:00.000Z",
    });
    expect(counted.get("scan")).toBe(2);
    expect(c.admitted.map((x) => x.jobId)).toEqual([inFirst[2]]);
    expect(d.admitted.map((x) => x.jobId)).toEqual([inSecond]);
  });
});
