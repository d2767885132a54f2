import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Actor,
  ADMIN,
  type ErrorBody,
  expectError,
  getJob,
  type Job,
  type JobView,
  listAll,
  listedIds,
  PrincipalPool,
  submitJob,
  uniqueType,
} from "../support/jobs";

/**
 * Principals see and act on only their own jobs: another user's job is a 404 exactly like a
 * missing one; an admin sees and acts on all.
 */

const people = new PrincipalPool("isolation");
let api: TestApi;

beforeAll(async () => {
  api = await startTestApi(people.tokens());
});
afterAll(() => api?.close());

/** What another user may try on a job, each with a body that would be valid for its owner. */
const ACTIONS: [action: string, method: string, suffix: string, body?: unknown][] = [
  ["GET the job", "GET", ""],
  ["cancel it", "PATCH", "/cancel"],
  ["pause it", "POST", "/pause"],
  ["resume it", "POST", "/resume"],
  ["change its priority", "PATCH", "", { priority: "critical" }],
  ["read its logs", "GET", "/logs"],
  ["read its attempts", "GET", "/attempts"],
  ["read its transitions", "GET", "/transitions"],
];

describe("another user's job", () => {
  let alice: Actor;
  let bob: Actor;
  let bobsJob: Job;
  let bobsPausedJob: Job;
  const missingId = "job_01ARZ3NDEKTSV4RRFFQ69G5FAV";

  beforeAll(async () => {
    [alice, bob] = [people.next(), people.next()];
    bobsJob = await submitJob(api, bob, { type: "echo", name: "bob's secret", payload: { secret: 42 } });
    bobsPausedJob = await submitJob(api, bob, { type: "echo" });
    await api.request("POST", `/jobs/${bobsPausedJob.id}/pause`, { token: bob.token });
  });

  it.each(ACTIONS)("is a 404 not_found when alice tries to %s", async (_action, method, suffix, body) => {
    // Prepare: resume needs a paused job to be meaningful
    const target = suffix === "/resume" ? bobsPausedJob : bobsJob;

    // Act
    const theirs = await api.request<ErrorBody>(method, `/jobs/${target.id}${suffix}`, {
      token: alice.token,
      body,
    });
    const missing = await api.request<ErrorBody>(method, `/jobs/${missingId}${suffix}`, {
      token: alice.token,
      body,
    });

    // Assess: indistinguishable from a job that does not exist
    expectError(theirs, 404, "not_found");
    expectError(missing, 404, "not_found");
    expect(theirs.json.error.message.replace(target.id, "ID")).toBe(
      missing.json.error.message.replace(missingId, "ID"),
    );
    expect(JSON.stringify(theirs.json)).not.toContain(bob.principal);
  });

  it("is left exactly as it was after all of alice's attempts", async () => {
    // Prepare
    for (const [, method, suffix, body] of ACTIONS) {
      await api.request(method, `/jobs/${bobsJob.id}${suffix}`, { token: alice.token, body });
    }

    // Act
    const job = await getJob(api, bob, bobsJob.id);
    const history = await listAll(api, bob, `/jobs/${bobsJob.id}/transitions`);

    // Assess
    expect(job).toMatchObject({ status: "queued", priority: 0, version: bobsJob.version });
    expect(history.items).toHaveLength(1);
  });

  it("never appears in alice's list, with or without filters", async () => {
    // Prepare
    const mine = await submitJob(api, alice, { type: "echo" });

    // Act
    const all = await listedIds(api, alice);
    const queued = await listedIds(api, alice, { status: "queued" });
    const paused = await listedIds(api, alice, { status: "paused" });
    const byType = await listedIds(api, alice, { type: "echo" });

    // Assess
    expect(all).toEqual([mine.id]);
    expect(queued).toEqual([mine.id]);
    expect(paused).toEqual([]);
    expect(byType).toEqual([mine.id]);
  });

  it("cannot be listed by alice by naming bob as owner", async () => {
    const response = await api.request<ErrorBody>("GET", `/jobs?owner=${bob.principal}`, {
      token: alice.token,
    });

    expectError(response, 403, "forbidden");
  });

  it("cannot be used by alice as a dependency", async () => {
    const response = await api.request<ErrorBody>("POST", "/jobs", {
      token: alice.token,
      body: { type: "echo", dependsOn: [bobsJob.id] },
    });

    expectError(response, 400, "unknown_dependency");
  });

  it("cannot be used by another user as a dependency in a batch, which creates nothing", async () => {
    // Prepare
    const carol = people.next();

    // Act
    const response = await api.request<ErrorBody>("POST", "/jobs/batch", {
      token: carol.token,
      body: {
        jobs: [
          { ref: "a", type: "echo" },
          { type: "echo", dependsOn: ["a", bobsJob.id] },
        ],
      },
    });

    // Assess
    expectError(response, 400, "unknown_dependency");
    expect(await listedIds(api, carol)).toEqual([]);
  });
});

describe("an admin", () => {
  it("sees every owner's jobs, in one list and by owner", async () => {
    // Prepare
    const [alice, bob] = [people.next(), people.next()];
    const type = uniqueType("iso-admin");
    const a = await submitJob(api, alice, { type });
    const b = await submitJob(api, bob, { type });

    // Act
    const both = await listedIds(api, ADMIN, { type });
    const onlyBob = await listedIds(api, ADMIN, { owner: bob.principal });
    const got = await Promise.all([a, b].map((job) => getJob(api, ADMIN, job.id)));

    // Assess
    expect(both).toEqual([b.id, a.id]);
    expect(onlyBob).toEqual([b.id]);
    expect(got.map((job: JobView) => job.owner)).toEqual([alice.principal, bob.principal]);
  });

  it("acts on every owner's jobs", async () => {
    // Prepare
    const [alice, bob] = [people.next(), people.next()];
    const a = await submitJob(api, alice, { type: "echo" });
    const b = await submitJob(api, bob, { type: "echo" });
    const c = await submitJob(api, bob, { type: "echo" });

    // Act
    const cancelA = await api.request<Job>("PATCH", `/jobs/${a.id}/cancel`, { token: ADMIN.token });
    const cancelB = await api.request<Job>("PATCH", `/jobs/${b.id}/cancel`, { token: ADMIN.token });
    const pauseC = await api.request<Job>("POST", `/jobs/${c.id}/pause`, { token: ADMIN.token });
    const patchC = await api.request<Job>("PATCH", `/jobs/${c.id}`, {
      token: ADMIN.token,
      body: { priority: "low" },
    });
    const logsC = await api.request("GET", `/jobs/${c.id}/logs`, { token: ADMIN.token });

    // Assess
    expect(cancelA.json).toMatchObject({
      status: "cancelled",
      statusReason: "cancelled by ops",
      owner: alice.principal,
    });
    expect(cancelB.json).toMatchObject({ status: "cancelled", owner: bob.principal });
    expect(pauseC.json).toMatchObject({ status: "paused", owner: bob.principal });
    expect(patchC.json).toMatchObject({ priority: -5, owner: bob.principal });
    expect(logsC.status).toBe(200);
    expect((await getJob(api, alice, a.id)).status).toBe("cancelled");
    expect((await getJob(api, bob, b.id)).status).toBe("cancelled");
  });

  it("submits jobs as itself, not on behalf of an owner", async () => {
    const job = await submitJob(api, ADMIN, { type: "echo" });

    expect(job.owner).toBe("ops");
  });
});

describe("authentication", () => {
  it.each([
    ["POST", "/jobs"],
    ["POST", "/jobs/batch"],
    ["GET", "/jobs"],
    ["GET", "/jobs/job_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
    ["PATCH", "/jobs/job_01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel"],
    ["GET", "/jobs/job_01ARZ3NDEKTSV4RRFFQ69G5FAV/transitions"],
  ])("answers %s %s without a known token with 401", async (method, path) => {
    const none = await api.request<ErrorBody>(method, path, {
      body: method === "GET" ? undefined : { type: "echo" },
    });
    const unknown = await api.request<ErrorBody>(method, path, {
      token: "not-a-token",
      body: method === "GET" ? undefined : { type: "echo" },
    });

    expectError(none, 401, "unauthorized");
    expectError(unknown, 401, "unauthorized");
  });
});
