import { randomUUID } from "node:crypto";
import { PutCommand } from "@aws-sdk/lib-dynamodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { appContext } from "../../app/runtime";
import { submitJobs } from "../../app/submit";
import { batchJobSchema } from "../../core/job";
import { NO_QUOTA, usageWindows } from "../../core/quota";
import { LOCAL_REGION } from "../../local/config";
import { createDocumentClient } from "../../store/dynamo";
import { dayUsageSk, principalPk, QUOTA_SK, weekUsageSk } from "../../store/keys";
import { PolicyRepository, QUOTA_CACHE_MS } from "../../store/policy";
import { startTestApi, type TestApi, type TestResponse } from "../support/api";
import {
  type Actor,
  ADMIN,
  type BatchResult,
  expectError,
  type Job,
  PrincipalPool,
  problemPaths,
  submitJob,
} from "../support/jobs";

/** A principal none of whose jobs ended this week (docs/cost.md). */
const NO_COST = { jobs: 0, totalUsd: 0, requestsUsd: 0, computeUsd: 0 };

/** PUT/GET /quotas/{principal} and maxQueuedJobs at submit, through HTTP. */

interface QuotaView {
  principal: string;
  limits: {
    dailyGpuSeconds: number | null;
    weeklyGpuSeconds: number | null;
    maxQueuedJobs: number | null;
    maxPriority: number | null;
  };
  used: { todayGpuSeconds: number; weekGpuSeconds: number; queuedJobs: number };
  remaining: { todayGpuSeconds: number | null; weekGpuSeconds: number | null; queuedJobs: number | null };
  warning: boolean;
}

const people = new PrincipalPool("quota-api");
const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
let api: TestApi;

beforeAll(async () => {
  api = await startTestApi(people.tokens());
});
afterAll(async () => {
  await api?.close();
  db.destroy();
});

const putQuota = (principal: string, body: unknown, token = ADMIN.token) =>
  api.request<QuotaView>("PUT", `/quotas/${encodeURIComponent(principal)}`, { token, body });
const getQuota = (principal: string, token = ADMIN.token) =>
  api.request<QuotaView>("GET", `/quotas/${encodeURIComponent(principal)}`, { token });

/** GPU-seconds of finished attempts today and this week, as the lifecycle's usage items hold them. */
async function seedGpuUsage(principal: string, today: number, week: number): Promise<void> {
  const { day, week: monday } = usageWindows(new Date());
  const table = inject("tables").Policy;
  for (const [sk, gpuSeconds] of [
    [dayUsageSk(day), today],
    [weekUsageSk(monday), week],
  ] as const) {
    await db.send(
      new PutCommand({ TableName: table, Item: { pk: principalPk(principal), sk, principal, gpuSeconds } }),
    );
  }
}

const post = <T = Job>(path: string, actor: Actor, body: unknown, key?: string): Promise<TestResponse<T>> =>
  api.request<T>("POST", path, {
    token: actor.token,
    body,
    headers: key === undefined ? {} : { "Idempotency-Key": key },
  });

describe("PUT /quotas/{principal}", () => {
  it("stores the limits and answers the quota's view; the principal and an admin GET the same", async () => {
    // Prepare
    const owner = people.next();
    const limits = { dailyGpuSeconds: 3600, weeklyGpuSeconds: 20000, maxQueuedJobs: 1000 };

    // Act
    const put = await putQuota(owner.principal, limits);
    const bySelf = await getQuota(owner.principal, owner.token);
    const byAdmin = await getQuota(owner.principal);

    // Assess
    expect(put.status).toBe(200);
    expect(put.json).toEqual({
      principal: owner.principal,
      limits: { ...limits, maxPriority: null },
      used: { todayGpuSeconds: 0, weekGpuSeconds: 0, queuedJobs: 0 },
      remaining: { todayGpuSeconds: 3600, weekGpuSeconds: 20000, queuedJobs: 1000 },
      warning: false,
      cost: { today: NO_COST, week: NO_COST },
    });
    expect(bySelf.status).toBe(200);
    expect(bySelf.json).toEqual(put.json);
    expect(byAdmin.json).toEqual(put.json);
  });

  it("replaces every limit: one left out (or null) is no limit", async () => {
    // Prepare
    const owner = people.next();
    await putQuota(owner.principal, { dailyGpuSeconds: 100, weeklyGpuSeconds: 200, maxQueuedJobs: 3 });

    // Act
    const put = await putQuota(owner.principal, { weeklyGpuSeconds: null, maxQueuedJobs: 5 });

    // Assess
    expect(put.json.limits).toEqual({
      dailyGpuSeconds: null,
      weeklyGpuSeconds: null,
      maxQueuedJobs: 5,
      maxPriority: null,
    });
    expect((await getQuota(owner.principal)).json.limits).toEqual(put.json.limits);
  });

  it("lists every field problem in one validation_failed and stores nothing", async () => {
    // Prepare
    const owner = people.next();

    // Act
    const response = await putQuota(owner.principal, {
      dailyGpuSeconds: -1,
      weeklyGpuSeconds: 1.5,
      maxQueuedJobs: "many",
      gpuHours: 3,
    });

    // Assess
    const error = expectError(response, 400, "validation_failed");
    expect(problemPaths(error)).toEqual(
      expect.arrayContaining(["dailyGpuSeconds", "weeklyGpuSeconds", "maxQueuedJobs"]),
    );
    expect(JSON.stringify(error.error.details)).toContain("gpuHours");
    expect((await getQuota(owner.principal)).json.limits.dailyGpuSeconds).toBeNull();
  });

  it("is for admins: a user setting even their own quota gets 403", async () => {
    // Prepare
    const owner = people.next();

    // Act
    const response = await putQuota(owner.principal, { maxQueuedJobs: 1_000_000 }, owner.token);

    // Assess
    expectError(response, 403, "forbidden");
    expect((await getQuota(owner.principal)).json.limits.maxQueuedJobs).toBeNull();
  });

  it.each([
    ["a space", "not a principal"],
    ["a leading dot", ".hidden"],
    ["a '#' (a key separator)", "alice#QUOTA"],
    ["129 characters", "a".repeat(129)],
  ])("answers a principal with %s with validation_failed naming it", async (_case, principal) => {
    const put = await putQuota(principal, { maxQueuedJobs: 1 });
    const get = await getQuota(principal);

    expect(problemPaths(expectError(put, 400, "validation_failed"))).toEqual(["principal"]);
    expect(problemPaths(expectError(get, 400, "validation_failed"))).toEqual(["principal"]);
  });
});

describe("GET /quotas/{principal}", () => {
  it("shows no limits, nothing remaining to count and no warning for a principal without a quota", async () => {
    // Prepare
    const owner = people.next();

    // Act
    const response = await getQuota(owner.principal, owner.token);

    // Assess
    expect(response.status).toBe(200);
    expect(response.json).toEqual({
      principal: owner.principal,
      limits: { dailyGpuSeconds: null, weeklyGpuSeconds: null, maxQueuedJobs: null, maxPriority: null },
      used: { todayGpuSeconds: 0, weekGpuSeconds: 0, queuedJobs: 0 },
      remaining: { todayGpuSeconds: null, weekGpuSeconds: null, queuedJobs: null },
      warning: false,
      cost: { today: NO_COST, week: NO_COST },
    });
  });

  it("refuses a user asking for another principal's quota with 403 (quotas are not secret objects)", async () => {
    // Prepare
    const owner = people.next();
    const other = people.next();
    await putQuota(owner.principal, { dailyGpuSeconds: 10 });

    // Act
    const response = await getQuota(owner.principal, other.token);

    // Assess
    expectError(response, 403, "forbidden");
  });

  it("counts the principal's jobs that have not started", async () => {
    // Prepare
    const owner = people.next();
    await submitJob(api, owner, { type: "echo" });
    await submitJob(api, owner, { type: "echo", runAt: "2099-01-01T00:00:00.000Z" });
    const cancelled = await submitJob(api, owner, { type: "echo" });
    await api.request("PATCH", `/jobs/${cancelled.id}/cancel`, { token: owner.token });
    await putQuota(owner.principal, { maxQueuedJobs: 10 });

    // Act
    const response = await getQuota(owner.principal, owner.token);

    // Assess
    expect(response.json.used.queuedJobs).toBe(2);
    expect(response.json.remaining.queuedJobs).toBe(8);
  });

  it("warns at 80 % of a GPU limit used, not below", async () => {
    // Prepare
    const at = people.next();
    const below = people.next();
    await putQuota(at.principal, { dailyGpuSeconds: 1000, weeklyGpuSeconds: 100000 });
    await putQuota(below.principal, { dailyGpuSeconds: 1000, weeklyGpuSeconds: 100000 });
    await seedGpuUsage(at.principal, 800, 800);
    await seedGpuUsage(below.principal, 799, 799);

    // Act
    const warned = await getQuota(at.principal, at.token);
    const quiet = await getQuota(below.principal, below.token);

    // Assess
    expect(warned.json).toMatchObject({
      used: { todayGpuSeconds: 800, weekGpuSeconds: 800 },
      remaining: { todayGpuSeconds: 200, weekGpuSeconds: 99200 },
      warning: true,
    });
    expect(quiet.json).toMatchObject({ used: { todayGpuSeconds: 799 }, warning: false });
  });

  it("warns on the weekly limit alone, and shows nothing remaining once it is used up", async () => {
    // Prepare
    const owner = people.next();
    await putQuota(owner.principal, { weeklyGpuSeconds: 5000 });
    await seedGpuUsage(owner.principal, 0, 6000);

    // Act
    const response = await getQuota(owner.principal);

    // Assess
    expect(response.json).toMatchObject({
      used: { weekGpuSeconds: 6000 },
      remaining: { todayGpuSeconds: null, weekGpuSeconds: 0 },
      warning: true,
    });
  });
});

describe("maxQueuedJobs at submit", () => {
  it("answers 429 with Retry-After once the principal's not-started jobs reach the limit", async () => {
    // Prepare
    const owner = people.next();
    await putQuota(owner.principal, { maxQueuedJobs: 2 });
    await submitJob(api, owner, { type: "echo" });
    await submitJob(api, owner, { type: "echo" });

    // Act
    const refused = await post("/jobs", owner, { type: "echo" });

    // Assess
    const error = expectError(refused, 429, "too_many_requests");
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(error.error.message).toContain("maxQueuedJobs");
    expect((await getQuota(owner.principal)).json.used.queuedJobs).toBe(2);
  });

  it("refuses a batch that would pass the limit, all of it, and accepts one that fits", async () => {
    // Prepare
    const owner = people.next();
    await putQuota(owner.principal, { maxQueuedJobs: 3 });
    await submitJob(api, owner, { type: "echo" });
    const three = {
      jobs: [{ ref: "a", type: "echo" }, { ref: "b", type: "echo", dependsOn: ["a"] }, { type: "echo" }],
    };
    const two = {
      jobs: [
        { ref: "a", type: "echo" },
        { ref: "b", type: "echo", dependsOn: ["a"] },
      ],
    };

    // Act
    const refused = await post<BatchResult>("/jobs/batch", owner, three);
    const accepted = await post<BatchResult>("/jobs/batch", owner, two);

    // Assess
    expectError(refused, 429, "too_many_requests");
    expect(refused.headers.get("retry-after")).not.toBeNull();
    expect(accepted.status).toBe(201);
    expect((await getQuota(owner.principal)).json.used.queuedJobs).toBe(3);
  });

  it("applies a lowered limit to the very next submission, though the one before read the old limits", async () => {
    // Prepare: a submission that read (and so keeps a copy of) the principal's limits
    const owner = people.next();
    await putQuota(owner.principal, { maxQueuedJobs: 5 });
    await submitJob(api, owner, { type: "echo" });

    // Act: the limit lowered through the API, then a submission at once
    await putQuota(owner.principal, { maxQueuedJobs: 1 });
    const refused = await post("/jobs", owner, { type: "echo" });

    // Assess: the PUT replaced the submit path's copy (one process serves both here)
    expectError(refused, 429, "too_many_requests");
  });

  it("lets room made by a cancel be used again", async () => {
    // Prepare
    const owner = people.next();
    await putQuota(owner.principal, { maxQueuedJobs: 1 });
    const first = await submitJob(api, owner, { type: "echo" });
    expectError(await post("/jobs", owner, { type: "echo" }), 429, "too_many_requests");

    // Act
    await api.request("PATCH", `/jobs/${first.id}/cancel`, { token: owner.token });
    const again = await post("/jobs", owner, { type: "echo" });

    // Assess
    expect(again.status).toBe(201);
  });

  it("never refuses an Idempotency-Key replay of a submission it already created", async () => {
    // Prepare
    const owner = people.next();
    await putQuota(owner.principal, { maxQueuedJobs: 1 });
    const key = randomUUID();
    const body = { type: "echo", payload: { n: 1 } };
    const first = await post("/jobs", owner, body, key);

    // Act
    const replay = await post("/jobs", owner, body, key);

    // Assess
    expect(first.status).toBe(201);
    expect(replay.status).toBe(200);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.json.id).toBe(first.json.id);
  });

  it("gives a refused submission's Idempotency-Key back, so the same request succeeds once there is room", async () => {
    // Prepare
    const owner = people.next();
    await putQuota(owner.principal, { maxQueuedJobs: 1 });
    const blocker = await submitJob(api, owner, { type: "echo" });
    const key = randomUUID();
    const body = { type: "echo", payload: { n: 2 } };
    expectError(await post("/jobs", owner, body, key), 429, "too_many_requests");
    await api.request("PATCH", `/jobs/${blocker.id}/cancel`, { token: owner.token });

    // Act
    const retried = await post("/jobs", owner, body, key);

    // Assess
    expect(retried.status).toBe(201);
    expect(retried.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("does not hold a job the system creates on the principal's behalf (an escalation) to the limit", async () => {
    // Prepare
    const owner = people.next();
    await putQuota(owner.principal, { maxQueuedJobs: 1 });
    await submitJob(api, owner, { type: "echo" });
    const request = {
      principal: { id: owner.principal, admin: false },
      jobs: [batchJobSchema.parse({ type: "echo" })],
    };

    // Act
    // The refusal is caught at once: a rejection left unhandled while the next submission runs
    // would be reported by Node (and vitest) as unhandled.
    const refused = await submitJobs(appContext(), request).then(
      () => undefined,
      (error: unknown) => error,
    );
    const exempt = await submitJobs(appContext(), { ...request, exemptFromQueueLimit: true });

    // Assess
    expect(refused).toMatchObject({ code: "too_many_requests", retryAfterSeconds: 30 });
    expect(exempt.jobs).toHaveLength(1);
    expect((await getQuota(owner.principal)).json.used.queuedJobs).toBe(2);
  });

  it("leaves principals without a maxQueuedJobs limit alone", async () => {
    // Prepare
    const owner = people.next();
    await putQuota(owner.principal, { dailyGpuSeconds: 1 });
    const jobs = Array.from({ length: 40 }, () => ({ type: "echo" }));

    // Act
    const response = await post<BatchResult>("/jobs/batch", owner, { jobs });

    // Assess
    expect(response.status).toBe(201);
  });
});

describe("the submit path's copy of a quota (PolicyRepository#recentQuota)", () => {
  it("keeps a principal's limits for 5 s: its own PUT is seen at once, another process's once the copy is 5 s old", async () => {
    // Prepare: a repository of its own, as each process (each Lambda instance) has
    const table = inject("tables").Policy;
    if (!table) throw new Error("the global setup made no Policy table");
    const policies = new PolicyRepository(db, table);
    const owner = people.next().principal;
    const now = Date.now();
    expect(await policies.recentQuota(owner, QUOTA_CACHE_MS, now)).toEqual(NO_QUOTA);

    // Act: another process stores a limit
    await db.send(
      new PutCommand({
        TableName: table,
        Item: { pk: principalPk(owner), sk: QUOTA_SK, entity: "quota", principal: owner, maxQueuedJobs: 7 },
      }),
    );

    // Assess: this process's copy holds until it is QUOTA_CACHE_MS old, then the limit is read
    expect(await policies.recentQuota(owner, QUOTA_CACHE_MS, now + QUOTA_CACHE_MS - 1)).toEqual(NO_QUOTA);
    expect((await policies.recentQuota(owner, QUOTA_CACHE_MS, now + QUOTA_CACHE_MS)).maxQueuedJobs).toBe(7);

    // Act / Assess: a PUT through this repository replaces the copy at once
    await policies.putQuota(owner, { maxQueuedJobs: 3 }, new Date().toISOString(), ADMIN.principal);
    expect((await policies.recentQuota(owner, QUOTA_CACHE_MS, now + QUOTA_CACHE_MS)).maxQueuedJobs).toBe(3);
  });
});
