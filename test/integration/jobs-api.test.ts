import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Actor,
  ADMIN,
  ALICE,
  type Attempt,
  BOB,
  type ErrorBody,
  expectError,
  expectListShape,
  getJob,
  JOB_FIELDS,
  type Job,
  type ListPage,
  type LogLine,
  listAll,
  listedIds,
  PrincipalPool,
  problemPaths,
  submitJob,
  type Transition,
  uniqueType,
} from "../support/jobs";

/** Every route of API.md's "Jobs" section through HTTP, against the shared DynamoDB Local. */

const people = new PrincipalPool("jobs-api");
let api: TestApi;

beforeAll(async () => {
  api = await startTestApi(people.tokens());
});
afterAll(() => api?.close());

const KIB = 1024;
/** A future instant, far enough ahead that no test run reaches it. */
const FUTURE = "2099-01-01T00:00:00.000Z";

async function cancel(actor: Actor, id: string): Promise<Job> {
  const response = await api.request<Job>("PATCH", `/jobs/${id}/cancel`, { token: actor.token });
  expect(response.status).toBe(200);
  return response.json;
}

describe("POST /jobs", () => {
  it("answers 201 with every field of the job object, defaults applied", async () => {
    // Prepare
    const body = { type: "echo" };

    // Act
    const response = await api.request<Job>("POST", "/jobs", { token: ALICE.token, body });

    // Assess
    expect(response.status).toBe(201);
    const job = response.json;
    for (const field of JOB_FIELDS) expect(job, `field ${field}`).toHaveProperty(field);
    expect(job).toMatchObject({
      name: null,
      type: "echo",
      status: "queued",
      statusReason: "waiting for admission",
      priority: 0,
      owner: "alice",
      payload: null,
      result: null,
      error: null,
      resources: { cpu: 1, memoryMb: 512, gpu: 0 },
      pool: null,
      constraints: {},
      dependsOn: [],
      retry: {
        maxAttempts: 3,
        strategy: "exponential",
        initialDelaySeconds: 1,
        backoffMultiplier: 2,
        maxDelaySeconds: 3600,
      },
      timeoutSeconds: 3600,
      attempts: 0,
      runAt: null,
      deadline: null,
      offPeakOnly: false,
      tags: {},
      escalatedTo: null,
      scheduleId: null,
      startedAt: null,
      finishedAt: null,
      nextAttemptAt: null,
    });
    expect(job.id).toMatch(/^job_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(new Date(job.createdAt).toISOString()).toBe(job.createdAt);
    expect(job.updatedAt).toBe(job.createdAt);
  });

  it("keeps every field it was given", async () => {
    // Prepare
    const body = {
      type: "train-model",
      name: "nightly fine-tune",
      payload: { dataset: "s3://bucket/key", epochs: 3, nested: [1, "two", null, { ok: true }] },
      priority: 7,
      resources: { cpu: 4, memoryMb: 16384, gpu: 1 },
      pool: "gpu",
      constraints: {},
      retry: {
        maxAttempts: 5,
        strategy: "linear",
        initialDelaySeconds: 2,
        backoffMultiplier: 3,
        maxDelaySeconds: 60,
      },
      timeoutSeconds: 120,
      deadline: "2099-01-02T06:00:00Z",
      offPeakOnly: true,
      onFailure: { escalateTo: { type: "big-model", priority: "high" } },
      tags: { team: "vision", "cost-centre": "42" },
    };

    // Act
    const job = await submitJob(api, ALICE, body);

    // Assess
    expect(job).toMatchObject({
      type: "train-model",
      name: "nightly fine-tune",
      payload: body.payload,
      priority: 7,
      resources: { cpu: 4, memoryMb: 16384, gpu: 1 },
      pool: "gpu",
      retry: body.retry,
      timeoutSeconds: 120,
      deadline: "2099-01-02T06:00:00.000Z",
      offPeakOnly: true,
      tags: body.tags,
      status: "queued",
    });
    expect(await getJob(api, ALICE, job.id)).toMatchObject({ payload: body.payload, tags: body.tags });
  });

  it.each([
    ["critical", 10],
    ["high", 5],
    ["normal", 0],
    ["low", -5],
    ["background", -10],
    [-10, -10],
    [10, 10],
    [3, 3],
  ])("stores priority %j as the integer %i", async (priority, expected) => {
    // Act
    const job = await submitJob(api, ALICE, { type: "echo", priority });

    // Assess
    expect(job.priority).toBe(expected);
  });

  it("lists every field problem of a bad body in details", async () => {
    // Prepare
    const body = {
      type: "Not A Type!",
      name: "",
      priority: "urgent",
      resources: { cpu: -1, memoryMb: 1.5, gpu: "two" },
      retry: { maxAttempts: 0, strategy: "sometimes" },
      timeoutSeconds: 0,
      runAt: "tomorrow",
      offPeakOnly: "yes",
      tags: { team: 5 },
      dependsOn: "job_1",
    };

    // Act
    const response = await api.request<ErrorBody>("POST", "/jobs", { token: ALICE.token, body });

    // Assess
    const error = expectError(response, 400, "validation_failed");
    expect(new Set(problemPaths(error))).toEqual(
      new Set([
        "type",
        "name",
        "priority",
        "resources.cpu",
        "resources.memoryMb",
        "resources.gpu",
        "retry.maxAttempts",
        "retry.strategy",
        "timeoutSeconds",
        "runAt",
        "offPeakOnly",
        "tags.team",
        "dependsOn",
      ]),
    );
    for (const problem of error.error.details as { message: unknown }[]) {
      expect(problem.message).toEqual(expect.any(String));
    }
  });

  it("refuses a body without a type, naming the field", async () => {
    // Act
    const response = await api.request<ErrorBody>("POST", "/jobs", {
      token: ALICE.token,
      body: { payload: {} },
    });

    // Assess
    expect(problemPaths(expectError(response, 400, "validation_failed"))).toEqual(["type"]);
  });

  it("refuses unknown fields with 400, naming them", async () => {
    // Act
    const response = await api.request<ErrorBody>("POST", "/jobs", {
      token: ALICE.token,
      body: { type: "echo", colour: "blue" },
    });

    // Assess
    const error = expectError(response, 400, "validation_failed");
    expect(JSON.stringify(error.error.details)).toContain("colour");
  });

  it.each([
    ["not JSON", "{type: echo}"],
    ["truncated JSON", '{"type": "echo"'],
    ["an empty body", ""],
    ["a JSON array", '[{"type": "echo"}]'],
    ["JSON null", "null"],
    ["a JSON string", '"echo"'],
  ])("refuses %s with 400 validation_failed", async (_case, body) => {
    // Act
    const response = await api.request<ErrorBody>("POST", "/jobs", {
      token: ALICE.token,
      body,
      headers: { "content-type": "application/json" },
    });

    // Assess
    expectError(response, 400, "validation_failed");
  });

  it.each([
    ["just over 256 KiB", 256 * KIB + 1],
    ["well over the body limit", 400 * KIB],
  ])("refuses a payload %s with 413 payload_too_large", async (_case, size) => {
    // Prepare: a string payload serializes to its length plus two quotes
    const payload = "x".repeat(size - 2);

    // Act
    const response = await api.request<ErrorBody>("POST", "/jobs", {
      token: ALICE.token,
      body: { type: "echo", payload },
    });

    // Assess
    expectError(response, 413, "payload_too_large");
  });

  it("accepts a payload of exactly 256 KiB serialized", async () => {
    // Prepare
    const payload = "x".repeat(256 * KIB - 2);

    // Act
    const response = await api.request<Job>("POST", "/jobs", {
      token: ALICE.token,
      body: { type: "echo", payload },
    });

    // Assess
    expect(response.status).toBe(201);
    expect((await getJob(api, ALICE, response.json.id)).payload).toBe(payload);
  });

  describe("payloads any JSON may hold (bad input never yields a 500)", () => {
    it.each([
      ["a number beyond 2^53", { n: 2 ** 53 + 2 }],
      ["a huge number", { n: 1e200 }],
      ["a large negative number", { n: -1e20 }],
      ["the smallest double", { n: 5e-324 }],
    ])("stores %s or refuses it with a 4xx", async (_case, payload) => {
      // Act
      const response = await api.request<Job | ErrorBody>("POST", "/jobs", {
        token: ALICE.token,
        body: { type: "echo", payload },
      });

      // Assess
      expect(response.status, JSON.stringify(response.json)).toBeLessThan(500);
    });

    it("stores a payload nested 40 levels deep", async () => {
      // Prepare: DynamoDB itself allows 32 levels of nesting in an item
      let payload: unknown = "leaf";
      for (let depth = 0; depth < 40; depth++) payload = { inner: payload };

      // Act
      const response = await api.request<Job>("POST", "/jobs", {
        token: ALICE.token,
        body: { type: "echo", payload },
      });

      // Assess
      expect(response.status, JSON.stringify(response.json)).toBe(201);
      expect((await getJob(api, ALICE, response.json.id)).payload).toEqual(payload);
    });

    it("stores a payload object with an empty key", async () => {
      // Prepare
      const payload = { "": "empty key", nested: { "": 1 } };

      // Act
      const response = await api.request<Job>("POST", "/jobs", {
        token: ALICE.token,
        body: { type: "echo", payload },
      });

      // Assess
      expect(response.status, JSON.stringify(response.json)).toBe(201);
      expect((await getJob(api, ALICE, response.json.id)).payload).toEqual(payload);
    });

    it("stores a payload whose keys name Object.prototype's members", async () => {
      // Prepare: raw JSON, so "__proto__" arrives as an ordinary key
      const raw = '{"type":"echo","payload":{"constructor":"Ford","toString":"x","__proto__":{"a":1}}}';

      // Act
      const response = await api.request<Job>("POST", "/jobs", {
        token: ALICE.token,
        body: raw,
        headers: { "content-type": "application/json" },
      });

      // Assess
      expect(response.status, JSON.stringify(response.json)).toBe(201);
      const payload = (await getJob(api, ALICE, response.json.id)).payload as object;
      expect(Object.entries(payload).sort()).toEqual([
        ["__proto__", { a: 1 }],
        ["constructor", "Ford"],
        ["toString", "x"],
      ]);
    });

    it("answers a payload nested 50,000 levels deep (under 256 KiB) with a 4xx, not a 500", async () => {
      // Prepare
      const depth = 50_000;
      const body = `{"type":"echo","payload":${"[".repeat(depth)}${"]".repeat(depth)}}`;

      // Act
      const response = await api.request<ErrorBody>("POST", "/jobs", {
        token: ALICE.token,
        body,
        headers: { "content-type": "application/json" },
      });

      // Assess
      expect(response.status, JSON.stringify(response.json)).toBeGreaterThanOrEqual(400);
      expect(response.status, JSON.stringify(response.json)).toBeLessThan(500);
    });
  });

  it.each([
    ["constructor", '{"constructor":"ford","team":"vision"}'],
    ["__proto__", '{"__proto__":"x","team":"vision"}'],
  ])("keeps a tag named %s as given", async (_case, tags) => {
    // Act
    const response = await api.request<Job>("POST", "/jobs", {
      token: ALICE.token,
      body: `{"type":"echo","tags":${tags}}`,
      headers: { "content-type": "application/json" },
    });

    // Assess: stored as given (or refused as a 4xx); never a 500, never silently dropped
    expect(response.status, JSON.stringify(response.json)).toBeLessThan(500);
    if (response.status === 201) {
      const stored = (await getJob(api, ALICE, response.json.id)).tags;
      expect(Object.entries(stored).sort()).toEqual(Object.entries(JSON.parse(tags)).sort());
    } else {
      expectError(response, 400, "validation_failed");
    }
  });

  describe("dependencies", () => {
    it("refuses an unknown dependency with 400 unknown_dependency", async () => {
      // Prepare
      const parent = await submitJob(api, ALICE, { type: "echo" });
      const unknown = "job_01ARZ3NDEKTSV4RRFFQ69G5FAV";

      // Act
      const response = await api.request<ErrorBody>("POST", "/jobs", {
        token: ALICE.token,
        body: { type: "echo", dependsOn: [parent.id, unknown] },
      });

      // Assess
      const error = expectError(response, 400, "unknown_dependency");
      expect(JSON.stringify(error.error)).toContain(unknown);
      expect(JSON.stringify(error.error)).not.toContain(parent.id);
    });

    it("treats another user's job as an unknown dependency, never revealing it exists", async () => {
      // Prepare
      const bobs = await submitJob(api, BOB, { type: "echo" });
      const missing = "job_01ARZ3NDEKTSV4RRFFQ69G5FAW";

      // Act
      const theirs = await api.request<ErrorBody>("POST", "/jobs", {
        token: ALICE.token,
        body: { type: "echo", dependsOn: [bobs.id] },
      });
      const nobodys = await api.request<ErrorBody>("POST", "/jobs", {
        token: ALICE.token,
        body: { type: "echo", dependsOn: [missing] },
      });

      // Assess: the same answer as for an id that exists nowhere
      const error = expectError(theirs, 400, "unknown_dependency");
      expectError(nobodys, 400, "unknown_dependency");
      expect(error.error.message.replace(bobs.id, "ID")).toBe(
        (nobodys.json as ErrorBody).error.message.replace(missing, "ID"),
      );
    });

    it("lets an admin depend on any user's job", async () => {
      // Prepare
      const bobs = await submitJob(api, BOB, { type: "echo" });

      // Act
      const job = await submitJob(api, ADMIN, { type: "echo", dependsOn: [bobs.id] });

      // Assess
      expect(job).toMatchObject({ status: "blocked", dependsOn: [bobs.id] });
    });

    it("creates a job depending on a cancelled job as cancelled at once, naming the dependency", async () => {
      // Prepare
      const parent = await submitJob(api, ALICE, { type: "echo" });
      await cancel(ALICE, parent.id);

      // Act
      const response = await api.request<Job>("POST", "/jobs", {
        token: ALICE.token,
        body: { type: "echo", dependsOn: [parent.id] },
      });

      // Assess
      expect(response.status).toBe(201);
      expect(response.json).toMatchObject({
        status: "cancelled",
        statusReason: `dependency ${parent.id} was cancelled`,
        dependsOn: [parent.id],
      });
      expect(response.json.finishedAt).toEqual(expect.any(String));
    });

    it("counts a dependency listed twice once", async () => {
      // Prepare
      const parent = await submitJob(api, ALICE, { type: "echo" });

      // Act
      const job = await submitJob(api, ALICE, { type: "echo", dependsOn: [parent.id, parent.id] });

      // Assess
      expect(job).toMatchObject({
        status: "blocked",
        statusReason: "waiting for 1 of 1 dependencies",
        dependsOn: [parent.id],
      });
    });

    it("accepts 20 concurrent submissions that all depend on the same job", async () => {
      // Prepare
      const parent = await submitJob(api, ALICE, { type: "echo" });

      // Act
      const responses = await Promise.all(
        Array.from({ length: 20 }, () =>
          api.request<Job>("POST", "/jobs", {
            token: ALICE.token,
            body: { type: "echo", dependsOn: [parent.id] },
          }),
        ),
      );

      // Assess
      expect(responses.map((r) => r.status)).toEqual(Array(20).fill(201));
      expect(new Set(responses.map((r) => r.json.status))).toEqual(new Set(["blocked"]));
    });
  });

  describe("resources no pool can fit", () => {
    it.each([
      ["4 GPU (the gpu pool's node has 2)", { resources: { gpu: 4 } }],
      ["16 CPU (the largest node has 8)", { resources: { cpu: 16 } }],
      ["64 GiB of memory", { resources: { memoryMb: 65536 } }],
      ["a GPU in the cpu pool", { pool: "cpu", resources: { gpu: 1 } }],
      ["a pool that does not exist", { pool: "nope" }],
      ["labels no pool carries", { constraints: { zone: "mars" } }],
    ])("refuses %s with 400 unsatisfiable_resources", async (_case, fields) => {
      // Act
      const response = await api.request<ErrorBody>("POST", "/jobs", {
        token: ALICE.token,
        body: { type: "echo", ...fields },
      });

      // Assess
      expectError(response, 400, "unsatisfiable_resources");
    });

    it.each([
      ["2 GPU, a whole gpu node", { resources: { cpu: 8, memoryMb: 32768, gpu: 2 } }],
      ["a whole cpu node", { pool: "cpu", resources: { cpu: 2, memoryMb: 4096 } }],
    ])("accepts %s", async (_case, fields) => {
      // Act
      const job = await submitJob(api, ALICE, { type: "echo", ...fields });

      // Assess
      expect(job.status).toBe("queued");
    });
  });

  describe("initial status", () => {
    it("is queued with no dependencies and no runAt", async () => {
      const job = await submitJob(api, ALICE, { type: "echo" });

      expect(job).toMatchObject({ status: "queued", statusReason: "waiting for admission" });
    });

    it("is blocked while a dependency has not completed", async () => {
      // Prepare
      const parent = await submitJob(api, ALICE, { type: "echo" });

      // Act
      const job = await submitJob(api, ALICE, { type: "echo", dependsOn: [parent.id] });

      // Assess
      expect(job).toMatchObject({
        status: "blocked",
        statusReason: "waiting for 1 of 1 dependencies",
        dependsOn: [parent.id],
      });
    });

    it("is scheduled when runAt is in the future", async () => {
      // Act
      const job = await submitJob(api, ALICE, { type: "echo", runAt: "2099-01-01T00:00:00+02:00" });

      // Assess
      expect(job).toMatchObject({ status: "scheduled", runAt: "2098-12-31T22:00:00.000Z" });
      expect(job.statusReason).toContain("2098-12-31T22:00:00.000Z");
    });

    it("is queued when runAt has passed", async () => {
      const job = await submitJob(api, ALICE, { type: "echo", runAt: "2001-01-01T00:00:00Z" });

      expect(job).toMatchObject({ status: "queued", runAt: "2001-01-01T00:00:00.000Z" });
    });

    it("is blocked, not scheduled, when both apply", async () => {
      // Prepare
      const parent = await submitJob(api, ALICE, { type: "echo" });

      // Act
      const job = await submitJob(api, ALICE, { type: "echo", runAt: FUTURE, dependsOn: [parent.id] });

      // Assess
      expect(job.status).toBe("blocked");
    });
  });
});

describe("GET /jobs/{id}", () => {
  it("answers the job as submitted", async () => {
    // Prepare
    const submitted = await submitJob(api, ALICE, { type: "echo", name: "read me", tags: { k: "v" } });

    // Act
    const job = await getJob(api, ALICE, submitted.id);

    // Assess: the job as submitted; its reason read with the jobs ahead of it, should other
    // tests' jobs be queued (core/reasons.ts queuedReason).
    const { queuePosition, estimatedStartAt: _estimate, cost, statusReason, reasonCode, ...rest } = job;
    const { statusReason: submittedReason, reasonCode: submittedCode, ...asSubmitted } = submitted;
    expect(rest).toEqual(asSubmitted);
    expect([submittedCode, submittedReason]).toEqual(["pending", "waiting for admission"]);
    const ahead = (queuePosition ?? 0) - 1;
    expect([reasonCode, statusReason]).toEqual(
      ahead === 0
        ? ["pending", "waiting for admission"]
        : ["priority", `waiting behind ${ahead} job${ahead === 1 ? "" : "s"} ahead of it in the queue`],
    );
    // What its life has cost so far (docs/cost.md): the submit's requests, no compute yet.
    expect(cost).toMatchObject({ computeUsd: 0, breakdown: { api: { requests: 1 } } });
    expect(cost?.requestsUsd).toBeGreaterThan(0);
  });

  it("adds queuePosition and estimatedStartAt to a queued job, counting the jobs ahead of it", async () => {
    // Prepare: the gpu pool at low priority, where hardly any other test queues work
    const first = await submitJob(api, ALICE, { type: "echo", pool: "gpu", priority: "low" });
    const second = await submitJob(api, ALICE, { type: "echo", pool: "gpu", priority: "low" });
    const before = await getJob(api, ALICE, first.id);

    // Act: a more urgent job goes ahead of both
    await submitJob(api, ALICE, { type: "echo", pool: "gpu", priority: "critical" });
    const firstAfter = await getJob(api, ALICE, first.id);
    const secondAfter = await getJob(api, ALICE, second.id);

    // Assess
    expect(before).toHaveProperty("estimatedStartAt");
    expect(before.queuePosition).toEqual(expect.any(Number));
    expect(before.queuePosition).toBeGreaterThanOrEqual(1);
    expect(firstAfter.queuePosition).toBe((before.queuePosition ?? 0) + 1);
    expect(secondAfter.queuePosition).toBe((firstAfter.queuePosition ?? 0) + 1);
    // Its reason counts the same jobs ahead (core/reasons.ts queuedReason).
    const ahead = (secondAfter.queuePosition ?? 0) - 1;
    expect(secondAfter).toMatchObject({
      reasonCode: "priority",
      statusReason: `waiting behind ${ahead} job${ahead === 1 ? "" : "s"} ahead of it in the queue`,
    });
  });

  it("gives a job whose priority was raised a place ahead", async () => {
    // Prepare
    const first = await submitJob(api, ALICE, { type: "echo", pool: "gpu", priority: "background" });
    const second = await submitJob(api, ALICE, { type: "echo", pool: "gpu", priority: "background" });

    // Act
    const raised = await api.request<Job>("PATCH", `/jobs/${second.id}`, {
      token: ALICE.token,
      body: { priority: "critical" },
    });

    // Assess
    expect(raised.status).toBe(200);
    const a = await getJob(api, ALICE, first.id);
    const b = await getJob(api, ALICE, second.id);
    expect(b.queuePosition).toBeLessThan(a.queuePosition ?? 0);
  });

  it("gives a job that is not queued no queue position", async () => {
    // Prepare
    const parent = await submitJob(api, ALICE, { type: "echo" });
    const blocked = await submitJob(api, ALICE, { type: "echo", dependsOn: [parent.id] });

    // Act
    const job = await getJob(api, ALICE, blocked.id);

    // Assess
    expect(job.queuePosition ?? null).toBeNull();
  });

  it("answers 404 not_found for an id that does not exist", async () => {
    const response = await api.request<ErrorBody>("GET", "/jobs/job_01ARZ3NDEKTSV4RRFFQ69G5FAV", {
      token: ALICE.token,
    });

    expectError(response, 404, "not_found");
  });

  it("answers 404 for another user's job, and the admin sees it", async () => {
    // Prepare
    const bobs = await submitJob(api, BOB, { type: "echo" });

    // Act
    const asAlice = await api.request<ErrorBody>("GET", `/jobs/${bobs.id}`, { token: ALICE.token });
    const asAdmin = await api.request<Job>("GET", `/jobs/${bobs.id}`, { token: ADMIN.token });

    // Assess
    expectError(asAlice, 404, "not_found");
    expect(asAlice.json.error.message).not.toContain("bob");
    expect(asAdmin.status).toBe(200);
    expect(asAdmin.json).toMatchObject({ id: bobs.id, owner: "bob" });
  });

  it("answers an id longer than any DynamoDB key with 404 not_found", async () => {
    const response = await api.request<ErrorBody>("GET", `/jobs/job_${"x".repeat(3000)}`, {
      token: ALICE.token,
    });

    expectError(response, 404, "not_found");
  });

  it.each(["%ZZ", "%E0%A4%A", "job_%"])("answers a malformed id %s with a 4xx, not a 500", async (id) => {
    // Act
    const response = await api.request<ErrorBody>("GET", `/jobs/${id}`, { token: ALICE.token });

    // Assess
    expect(response.status, JSON.stringify(response.json)).toBeGreaterThanOrEqual(400);
    expect(response.status, JSON.stringify(response.json)).toBeLessThan(500);
  });
});

describe("GET /jobs", () => {
  /**
   * One user's jobs, created in this order with a pause between them, so creation-time
   * boundaries fall cleanly between two jobs.
   */
  interface Fixture {
    readonly owner: Actor;
    readonly typeA: string;
    readonly typeB: string;
    readonly queued: Job;
    readonly blocked: Job;
    readonly scheduled: Job;
    readonly cancelled: Job;
    /** boundaries[i]: after job i was created, before job i+1 was. */
    readonly boundaries: string[];
  }
  let f: Fixture;

  beforeAll(async () => {
    const owner = people.next();
    const typeA = uniqueType("list-a");
    const typeB = uniqueType("list-b");
    const boundaries: string[] = [];
    const created: Job[] = [];
    const bodies: ((earlier: Job[]) => Record<string, unknown>)[] = [
      () => ({ type: typeA, priority: "high", tags: { team: "vision" } }),
      (earlier) => ({ type: typeB, priority: "low", dependsOn: [earlier[0]?.id], tags: { team: "nlp" } }),
      () => ({ type: typeA, runAt: FUTURE }),
      () => ({ type: typeB, priority: "low" }),
    ];
    for (const body of bodies) {
      const job = await submitJob(api, owner, body(created));
      created.push(job);
      boundaries.push(new Date(Date.parse(job.createdAt) + 5).toISOString());
      await sleep(20);
    }
    const [queued, blocked, scheduled, toCancel] = created as [Job, Job, Job, Job];
    const cancelled = await cancel(owner, toCancel.id);
    f = { owner, typeA, typeB, queued, blocked, scheduled, cancelled, boundaries };
  });

  const list = async (query: Record<string, string>) => listedIds(api, f.owner, query);

  it("lists the principal's jobs newest first in the list shape", async () => {
    // Act
    const response = await api.request<ListPage<Job>>("GET", "/jobs", { token: f.owner.token });

    // Assess
    expect(response.status).toBe(200);
    expectListShape(response.json);
    expect(response.json.items.map((j) => j.id)).toEqual([
      f.cancelled.id,
      f.scheduled.id,
      f.blocked.id,
      f.queued.id,
    ]);
    expect(response.json.nextCursor).toBeNull();
    expect(response.json.items[0]).toMatchObject({ status: "cancelled", owner: f.owner.principal });
  });

  it.each([
    ["blocked", () => [f.blocked.id]],
    ["cancelled", () => [f.cancelled.id]],
    ["queued,scheduled", () => [f.scheduled.id, f.queued.id]],
    ["queued, cancelled", () => [f.cancelled.id, f.queued.id]],
    ["running", () => []],
  ])("filters by status=%s", async (status, expected) => {
    expect(await list({ status })).toEqual(expected());
  });

  it("filters by type", async () => {
    expect(await list({ type: f.typeA })).toEqual([f.scheduled.id, f.queued.id]);
    expect(await list({ type: f.typeB })).toEqual([f.cancelled.id, f.blocked.id]);
  });

  it.each([
    ["high", () => [f.queued.id]],
    ["5", () => [f.queued.id]],
    ["low", () => [f.cancelled.id, f.blocked.id]],
    ["-5", () => [f.cancelled.id, f.blocked.id]],
    ["normal", () => [f.scheduled.id]],
    ["critical", () => []],
  ])("filters by priority=%s", async (priority, expected) => {
    expect(await list({ priority })).toEqual(expected());
  });

  it("filters by tag=key:value", async () => {
    expect(await list({ tag: "team:vision" })).toEqual([f.queued.id]);
    expect(await list({ tag: "team:nlp" })).toEqual([f.blocked.id]);
    expect(await list({ tag: "team:other" })).toEqual([]);
  });

  it("filters by createdAfter and createdBefore", async () => {
    const [afterQueued, afterBlocked, afterScheduled] = f.boundaries as [string, string, string];

    expect(await list({ createdAfter: afterQueued })).toEqual([f.cancelled.id, f.scheduled.id, f.blocked.id]);
    expect(await list({ createdBefore: afterQueued })).toEqual([f.queued.id]);
    expect(await list({ createdAfter: afterQueued, createdBefore: afterScheduled })).toEqual([
      f.scheduled.id,
      f.blocked.id,
    ]);
    expect(await list({ createdAfter: afterBlocked, createdBefore: afterScheduled })).toEqual([
      f.scheduled.id,
    ]);
  });

  it("combines filters", async () => {
    expect(
      await list({ type: f.typeB, status: "blocked,cancelled", priority: "low", tag: "team:nlp" }),
    ).toEqual([f.blocked.id]);
  });

  it("lists every job when createdAfter is before 1970", async () => {
    // Act
    const response = await api.request<ListPage<Job> | ErrorBody>(
      "GET",
      "/jobs?createdAfter=1969-07-20T20:17:00Z",
      {
        token: f.owner.token,
      },
    );

    // Assess
    expect(response.status, JSON.stringify(response.json)).toBe(200);
    expect((response.json as ListPage<Job>).items).toHaveLength(4);
  });

  it("answers an empty time range (createdAfter at or after createdBefore) without a 500", async () => {
    // Prepare
    const at = f.boundaries[1] as string;

    // Act
    const same = await api.request<ListPage<Job>>("GET", `/jobs?createdAfter=${at}&createdBefore=${at}`, {
      token: f.owner.token,
    });
    const reversed = await api.request<ListPage<Job>>(
      "GET",
      `/jobs?createdAfter=${f.boundaries[2]}&createdBefore=${f.boundaries[0]}`,
      { token: f.owner.token },
    );

    // Assess: an empty list, or a 400 naming the range; never a 500
    for (const response of [same, reversed]) {
      expect([200, 400], JSON.stringify(response.json)).toContain(response.status);
      if (response.status === 200) expect(response.json.items).toEqual([]);
      else expectError(response, 400, "validation_failed");
    }
  });

  it.each([
    ["limit=0", "limit=0"],
    ["limit=201", "limit=201"],
    ["limit=-1", "limit=-1"],
    ["limit=abc", "limit=abc"],
    ["limit=1.5", "limit=1.5"],
    ["an unknown status", "status=done"],
    ["an empty status", "status="],
    ["an unknown priority name", "priority=urgent"],
    ["a priority out of range", "priority=11"],
    ["a tag without a colon", "tag=team"],
    ["a bad createdAfter", "createdAfter=yesterday"],
    ["a bad type", "type=Not%20A%20Type"],
    ["an unknown parameter", "colour=blue"],
    ["a garbage cursor", "cursor=garbage!!"],
    ["a cursor of valid base64 but no cursor", `cursor=${Buffer.from('{"x":1}').toString("base64url")}`],
  ])("refuses %s with 400 validation_failed", async (_case, query) => {
    const response = await api.request<ErrorBody>("GET", `/jobs?${query}`, { token: f.owner.token });

    expectError(response, 400, "validation_failed");
  });

  it.each([
    ["a key of the wrong type", { index: "byOwner", key: { ownerPk: "O#OWNER", ownerSk: 5 } }],
    ["a key missing attributes", { index: "byOwner", key: { ownerPk: "O#OWNER" } }],
    ["a day that is no date", { index: "byDay", day: "9999-99-99" }],
  ])("refuses a forged cursor with %s with 400, not a 500", async (_case, forged) => {
    // Prepare: well-formed as far as its shape goes, but never one the list returned
    const json = JSON.stringify(forged).replace("OWNER", f.owner.principal);
    const cursor = Buffer.from(json).toString("base64url");

    // Act: the day cursor needs an admin's list across owners to be read at all
    const asUser = await api.request<ErrorBody>("GET", `/jobs?cursor=${cursor}`, { token: f.owner.token });
    const asAdmin = await api.request<ErrorBody>("GET", `/jobs?cursor=${cursor}`, { token: ADMIN.token });

    // Assess
    expectError(asUser, 400, "validation_failed");
    expectError(asAdmin, 400, "validation_failed");
  });

  it("accepts limit=1 and limit=200", async () => {
    const one = await api.request<ListPage<Job>>("GET", "/jobs?limit=1", { token: f.owner.token });
    const max = await api.request<ListPage<Job>>("GET", "/jobs?limit=200", { token: f.owner.token });

    expect(one.status).toBe(200);
    expect(one.json.items).toHaveLength(1);
    expect(one.json.nextCursor).toEqual(expect.any(String));
    expect(max.status).toBe(200);
    expect(max.json.items).toHaveLength(4);
  });

  it("refuses a cursor from another list", async () => {
    // Prepare: a cursor of the unfiltered list, reused on a list of one status
    const first = await api.request<ListPage<Job>>("GET", "/jobs?limit=1", { token: f.owner.token });
    const cursor = first.json.nextCursor ?? "";

    // Act
    const response = await api.request<ErrorBody>("GET", `/jobs?limit=1&status=queued&cursor=${cursor}`, {
      token: f.owner.token,
    });

    // Assess
    expectError(response, 400, "validation_failed");
  });

  it("pages with limit and cursor, visiting every job exactly once, newest first", async () => {
    // Prepare
    const owner = people.next();
    const created: string[] = [];
    for (let i = 0; i < 7; i++)
      created.push((await submitJob(api, owner, { type: "echo", name: `page-${i}` })).id);

    // Act
    const { items, pages } = await listAll<Job>(api, owner, "/jobs", { limit: "3" });

    // Assess
    expect(items.map((j) => j.id)).toEqual([...created].reverse());
    expect(pages).toBeGreaterThanOrEqual(3);
  });

  it("pages a status-filtered list the same way", async () => {
    // Prepare
    const owner = people.next();
    const queued: string[] = [];
    for (let i = 0; i < 5; i++) {
      const job = await submitJob(api, owner, { type: "echo" });
      queued.push(job.id);
      if (i % 2 === 0) await submitJob(api, owner, { type: "echo", runAt: FUTURE });
    }

    // Act
    const { items } = await listAll<Job>(api, owner, "/jobs", { limit: "2", status: "queued" });

    // Assess
    expect(items.map((j) => j.id)).toEqual([...queued].reverse());
  });

  describe("owners", () => {
    it("lets an admin filter by owner and list across owners", async () => {
      // Prepare
      const [u1, u2] = [people.next(), people.next()];
      const type = uniqueType("owners");
      const a = await submitJob(api, u1, { type });
      const b = await submitJob(api, u2, { type });
      const c = await submitJob(api, u1, { type });

      // Act
      const onlyU1 = await listedIds(api, ADMIN, { owner: u1.principal });
      const acrossOwners = await listedIds(api, ADMIN, { type });
      const acrossPaged = await listAll<Job>(api, ADMIN, "/jobs", { type, limit: "1" });

      // Assess
      expect(onlyU1).toEqual([c.id, a.id]);
      expect(acrossOwners).toEqual([c.id, b.id, a.id]);
      expect(acrossPaged.items.map((j) => j.id)).toEqual([c.id, b.id, a.id]);
    });

    it("answers 403 forbidden when a user asks for another owner's jobs", async () => {
      // Prepare
      const [u1, u2] = [people.next(), people.next()];
      await submitJob(api, u2, { type: "echo" });

      // Act
      const response = await api.request<ErrorBody>("GET", `/jobs?owner=${u2.principal}`, {
        token: u1.token,
      });

      // Assess
      expectError(response, 403, "forbidden");
    });

    it("lets a user name themself as owner", async () => {
      const owner = people.next();
      const job = await submitJob(api, owner, { type: "echo" });

      expect(await listedIds(api, owner, { owner: owner.principal })).toEqual([job.id]);
    });
  });
});

describe("PATCH /jobs/{id}/cancel", () => {
  it("answers 200 with the job cancelled", async () => {
    // Prepare
    const job = await submitJob(api, ALICE, { type: "echo" });

    // Act
    const response = await api.request<Job>("PATCH", `/jobs/${job.id}/cancel`, { token: ALICE.token });

    // Assess
    expect(response.status).toBe(200);
    expect(response.json).toMatchObject({
      id: job.id,
      status: "cancelled",
      statusReason: "cancelled by alice",
    });
    expect(response.json.finishedAt).toEqual(expect.any(String));
    expect(await getJob(api, ALICE, job.id)).toMatchObject({ status: "cancelled" });
  });

  it.each([
    [
      "blocked",
      async () => ({ type: "echo", dependsOn: [(await submitJob(api, ALICE, { type: "echo" })).id] }),
    ],
    ["scheduled", async () => ({ type: "echo", runAt: FUTURE })],
  ])("cancels a %s job", async (status, body) => {
    // Prepare
    const job = await submitJob(api, ALICE, await body());
    expect(job.status).toBe(status);

    // Act
    const cancelled = await cancel(ALICE, job.id);

    // Assess
    expect(cancelled.status).toBe("cancelled");
  });

  it("cancels a 3-level chain of dependents transitively, each naming its own dependency", async () => {
    // Prepare: a <- b <- c <- d
    const a = await submitJob(api, ALICE, { type: "echo" });
    const b = await submitJob(api, ALICE, { type: "echo", dependsOn: [a.id] });
    const c = await submitJob(api, ALICE, { type: "echo", dependsOn: [b.id] });
    const d = await submitJob(api, ALICE, { type: "echo", dependsOn: [c.id] });

    // Act
    await cancel(ALICE, a.id);

    // Assess
    expect(await getJob(api, ALICE, b.id)).toMatchObject({
      status: "cancelled",
      statusReason: `dependency ${a.id} was cancelled`,
    });
    expect(await getJob(api, ALICE, c.id)).toMatchObject({
      status: "cancelled",
      statusReason: `dependency ${b.id} was cancelled`,
    });
    expect(await getJob(api, ALICE, d.id)).toMatchObject({
      status: "cancelled",
      statusReason: `dependency ${c.id} was cancelled`,
    });
    const history = await listAll<Transition>(api, ALICE, `/jobs/${d.id}/transitions`);
    expect(history.items.at(-1)).toMatchObject({ from: "blocked", to: "cancelled", triggeredBy: null });
  });

  it("cancels a diamond: both branches name the root, the join names a branch", async () => {
    // Prepare: top <- left, top <- right, (left, right) <- bottom; and an unrelated sibling
    const top = await submitJob(api, ALICE, { type: "echo" });
    const left = await submitJob(api, ALICE, { type: "echo", dependsOn: [top.id] });
    const right = await submitJob(api, ALICE, { type: "echo", dependsOn: [top.id] });
    const bottom = await submitJob(api, ALICE, { type: "echo", dependsOn: [left.id, right.id] });
    const unrelated = await submitJob(api, ALICE, { type: "echo", dependsOn: [right.id] });
    await cancel(ALICE, unrelated.id);

    // Act
    await cancel(ALICE, top.id);

    // Assess
    for (const branch of [left, right]) {
      expect(await getJob(api, ALICE, branch.id)).toMatchObject({
        status: "cancelled",
        statusReason: `dependency ${top.id} was cancelled`,
      });
    }
    const joined = await getJob(api, ALICE, bottom.id);
    expect(joined.status).toBe("cancelled");
    expect([`dependency ${left.id} was cancelled`, `dependency ${right.id} was cancelled`]).toContain(
      joined.statusReason,
    );
    const bottomHistory = await listAll<Transition>(api, ALICE, `/jobs/${bottom.id}/transitions`);
    expect(bottomHistory.items.map((t) => t.to)).toEqual(["blocked", "cancelled"]);
    expect((await getJob(api, ALICE, unrelated.id)).statusReason).toBe("cancelled by alice");
  });

  it("leaves dependents of other jobs alone", async () => {
    // Prepare
    const cancelled = await submitJob(api, ALICE, { type: "echo" });
    const other = await submitJob(api, ALICE, { type: "echo" });
    const dependent = await submitJob(api, ALICE, { type: "echo", dependsOn: [other.id] });

    // Act
    await cancel(ALICE, cancelled.id);

    // Assess
    expect((await getJob(api, ALICE, dependent.id)).status).toBe("blocked");
  });

  it("cancels a paused dependent too", async () => {
    // Prepare
    const parent = await submitJob(api, ALICE, { type: "echo" });
    const child = await submitJob(api, ALICE, { type: "echo", dependsOn: [parent.id] });
    expect((await api.request("POST", `/jobs/${child.id}/pause`, { token: ALICE.token })).status).toBe(200);

    // Act
    await cancel(ALICE, parent.id);

    // Assess
    expect(await getJob(api, ALICE, child.id)).toMatchObject({
      status: "cancelled",
      statusReason: `dependency ${parent.id} was cancelled`,
    });
  });

  it("refuses to cancel a terminal job with 409 invalid_transition", async () => {
    // Prepare
    const job = await submitJob(api, ALICE, { type: "echo" });
    await cancel(ALICE, job.id);

    // Act
    const again = await api.request<ErrorBody>("PATCH", `/jobs/${job.id}/cancel`, { token: ALICE.token });

    // Assess
    expectError(again, 409, "invalid_transition");
    expect((await listAll<Transition>(api, ALICE, `/jobs/${job.id}/transitions`)).items).toHaveLength(2);
  });

  it("answers 404 for an unknown job", async () => {
    const response = await api.request<ErrorBody>("PATCH", "/jobs/job_01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel", {
      token: ALICE.token,
    });

    expectError(response, 404, "not_found");
  });
});

describe("POST /jobs/{id}/pause and /resume", () => {
  const pause = (actor: Actor, id: string) =>
    api.request<Job>("POST", `/jobs/${id}/pause`, { token: actor.token });
  const resume = (actor: Actor, id: string) =>
    api.request<Job>("POST", `/jobs/${id}/resume`, { token: actor.token });

  it("pauses a queued job and resumes it to queued", async () => {
    // Prepare
    const job = await submitJob(api, ALICE, { type: "echo" });

    // Act
    const paused = await pause(ALICE, job.id);
    const resumed = await resume(ALICE, job.id);

    // Assess
    expect(paused.status).toBe(200);
    expect(paused.json).toMatchObject({ status: "paused", statusReason: "paused by alice" });
    expect(resumed.status).toBe(200);
    expect(resumed.json).toMatchObject({ status: "queued", statusReason: "waiting for admission" });
    expect((await getJob(api, ALICE, job.id)).queuePosition).toEqual(expect.any(Number));
  });

  it("pauses a blocked job and resumes it to blocked", async () => {
    // Prepare
    const parent = await submitJob(api, ALICE, { type: "echo" });
    const job = await submitJob(api, ALICE, { type: "echo", dependsOn: [parent.id] });

    // Act
    const paused = await pause(ALICE, job.id);
    const resumed = await resume(ALICE, job.id);

    // Assess
    expect(paused.json.status).toBe("paused");
    expect(resumed.status).toBe(200);
    expect(resumed.json).toMatchObject({
      status: "blocked",
      statusReason: "waiting for 1 of 1 dependencies",
    });
  });

  it("pauses a scheduled job and resumes it to scheduled", async () => {
    // Prepare
    const job = await submitJob(api, ALICE, { type: "echo", runAt: FUTURE });

    // Act
    const paused = await pause(ALICE, job.id);
    const resumed = await resume(ALICE, job.id);

    // Assess
    expect(paused.json.status).toBe("paused");
    expect(resumed.json).toMatchObject({ status: "scheduled", runAt: FUTURE });
  });

  it("does not show a paused job as queued", async () => {
    // Prepare
    const owner = people.next();
    const job = await submitJob(api, owner, { type: "echo" });

    // Act
    await pause(owner, job.id);

    // Assess
    expect(await listedIds(api, owner, { status: "queued" })).toEqual([]);
    expect(await listedIds(api, owner, { status: "paused" })).toEqual([job.id]);
    expect((await getJob(api, owner, job.id)).queuePosition ?? null).toBeNull();
  });

  it("refuses to resume a job that is not paused with 409", async () => {
    const job = await submitJob(api, ALICE, { type: "echo" });

    expectError(await resume(ALICE, job.id), 409, "invalid_transition");
    expect((await getJob(api, ALICE, job.id)).status).toBe("queued");
  });

  it("refuses to pause a cancelled job with 409", async () => {
    const job = await submitJob(api, ALICE, { type: "echo" });
    await cancel(ALICE, job.id);

    expectError(await pause(ALICE, job.id), 409, "invalid_transition");
    expect((await getJob(api, ALICE, job.id)).status).toBe("cancelled");
  });

  it("refuses to pause a paused job with 409", async () => {
    const job = await submitJob(api, ALICE, { type: "echo" });
    await pause(ALICE, job.id);

    expectError(await pause(ALICE, job.id), 409, "invalid_transition");
  });

  it("lets a paused job be cancelled", async () => {
    const job = await submitJob(api, ALICE, { type: "echo" });
    await pause(ALICE, job.id);

    expect((await cancel(ALICE, job.id)).status).toBe("cancelled");
  });
});

describe("PATCH /jobs/{id}", () => {
  const patch = (id: string, body: unknown) =>
    api.request<Job>("PATCH", `/jobs/${id}`, { token: ALICE.token, body });

  it.each([
    ["high", 5],
    ["background", -10],
    [8, 8],
    [-3, -3],
  ])("changes the priority to %j", async (priority, expected) => {
    // Prepare
    const job = await submitJob(api, ALICE, { type: "echo" });

    // Act
    const response = await patch(job.id, { priority });

    // Assess
    expect(response.status).toBe(200);
    expect(response.json).toMatchObject({ id: job.id, priority: expected, status: "queued" });
    expect((await getJob(api, ALICE, job.id)).priority).toBe(expected);
  });

  it("changes the priority of a blocked job", async () => {
    const parent = await submitJob(api, ALICE, { type: "echo" });
    const job = await submitJob(api, ALICE, { type: "echo", dependsOn: [parent.id] });

    const response = await patch(job.id, { priority: "critical" });

    expect(response.json).toMatchObject({ priority: 10, status: "blocked" });
  });

  it("refuses to change a terminal job with 409", async () => {
    const job = await submitJob(api, ALICE, { type: "echo" });
    await cancel(ALICE, job.id);

    expectError(await patch(job.id, { priority: "high" }), 409, "invalid_transition");
    expect((await getJob(api, ALICE, job.id)).priority).toBe(0);
  });

  it.each([
    ["an unknown name", { priority: "urgent" }],
    ["11", { priority: 11 }],
    ["-11", { priority: -11 }],
    ["a fraction", { priority: 2.5 }],
    ["a numeric string", { priority: "5" }],
    ["no priority", {}],
    ["another field", { priority: 1, status: "queued" }],
    ["an array", [{ priority: 1 }]],
  ])("refuses %s with 400 validation_failed", async (_case, body) => {
    const job = await submitJob(api, ALICE, { type: "echo" });

    expectError(await patch(job.id, body), 400, "validation_failed");
  });
});

describe("GET /jobs/{id}/transitions, /logs, /attempts", () => {
  /** A job submitted, paused, resumed and cancelled by its owner. */
  async function jobWithHistory(actor: Actor): Promise<Job> {
    const job = await submitJob(api, actor, { type: "echo" });
    for (const action of ["pause", "resume"]) {
      expect((await api.request("POST", `/jobs/${job.id}/${action}`, { token: actor.token })).status).toBe(
        200,
      );
    }
    await cancel(actor, job.id);
    return job;
  }

  it("lists every status change with from, to, at, reason and triggeredBy", async () => {
    // Prepare
    const job = await jobWithHistory(ALICE);

    // Act
    const response = await api.request<ListPage<Transition>>("GET", `/jobs/${job.id}/transitions`, {
      token: ALICE.token,
    });

    // Assess
    expect(response.status).toBe(200);
    expectListShape(response.json);
    expect(response.json.nextCursor).toBeNull();
    expect(response.json.items).toEqual([
      {
        from: null,
        to: "queued",
        at: job.createdAt,
        reason: "waiting for admission",
        triggeredBy: "alice",
        fromPriority: null,
        toPriority: null,
      },
      {
        from: "queued",
        to: "paused",
        at: expect.any(String),
        reason: "paused by alice",
        triggeredBy: "alice",
        fromPriority: null,
        toPriority: null,
      },
      {
        from: "paused",
        to: "queued",
        at: expect.any(String),
        reason: "waiting for admission",
        triggeredBy: "alice",
        fromPriority: null,
        toPriority: null,
      },
      {
        from: "queued",
        to: "cancelled",
        at: expect.any(String),
        reason: "cancelled by alice",
        triggeredBy: "alice",
        fromPriority: null,
        toPriority: null,
      },
    ]);
    const times = response.json.items.map((t) => t.at);
    expect([...times].sort()).toEqual(times);
  });

  it("pages transitions with limit and cursor", async () => {
    const job = await jobWithHistory(ALICE);

    const { items } = await listAll<Transition>(api, ALICE, `/jobs/${job.id}/transitions`, { limit: "1" });

    expect(items.map((t) => t.to)).toEqual(["queued", "paused", "queued", "cancelled"]);
  });

  it("records the admin who acted as triggeredBy", async () => {
    const job = await submitJob(api, BOB, { type: "echo" });
    await cancel(ADMIN, job.id);

    const { items } = await listAll<Transition>(api, BOB, `/jobs/${job.id}/transitions`);

    expect(items.at(-1)).toMatchObject({ to: "cancelled", triggeredBy: "ops", reason: "cancelled by ops" });
  });

  it("includes lifecycle lines in the logs", async () => {
    // Prepare
    const job = await jobWithHistory(ALICE);

    // Act
    const response = await api.request<ListPage<LogLine>>("GET", `/jobs/${job.id}/logs`, {
      token: ALICE.token,
    });

    // Assess
    expect(response.status).toBe(200);
    expectListShape(response.json);
    const lines = response.json.items;
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      expect(Object.keys(line).sort()).toEqual(["attempt", "level", "message", "timestamp"]);
      expect(["debug", "info", "warn", "error"]).toContain(line.level);
      expect(line.attempt).toBeNull();
    }
    expect(lines[0]?.message).toContain("queued");
    expect(lines[1]?.message).toContain("paused");
    expect(lines[3]?.message).toContain("cancelled");
    const times = lines.map((l) => l.timestamp);
    expect([...times].sort()).toEqual(times);
  });

  it("filters logs by level and attempt, and pages them", async () => {
    // Prepare
    const job = await jobWithHistory(ALICE);
    const path = `/jobs/${job.id}/logs`;

    // Act
    const info = await listAll<LogLine>(api, ALICE, path, { level: "info" });
    const errors = await listAll<LogLine>(api, ALICE, path, { level: "error" });
    const firstAttempt = await listAll<LogLine>(api, ALICE, path, { attempt: "1" });
    const paged = await listAll<LogLine>(api, ALICE, path, { limit: "1" });

    // Assess
    expect(info.items).toHaveLength(4);
    expect(errors.items).toEqual([]);
    expect(firstAttempt.items).toEqual([]);
    expect(paged.items).toEqual(info.items);
  });

  it.each([
    ["an unknown level", "level=fatal"],
    ["attempt 0", "attempt=0"],
    ["limit 0", "limit=0"],
    ["a garbage cursor", "cursor=nope"],
  ])("refuses logs with %s", async (_case, query) => {
    const job = await submitJob(api, ALICE, { type: "echo" });

    const response = await api.request<ErrorBody>("GET", `/jobs/${job.id}/logs?${query}`, {
      token: ALICE.token,
    });

    expectError(response, 400, "validation_failed");
  });

  it.each([
    [
      "transitions",
      "another job's partition",
      () => ({ key: { pk: "JOB#job_other", sk: "TRN#0000000001" } }),
    ],
    ["transitions", "no partition key", () => ({ key: { sk: "TRN#0000000001" } })],
    ["attempts", "another job's partition", () => ({ key: { pk: "JOB#job_other", sk: "ATT#0001" } })],
    [
      "logs",
      "another job's partition",
      () => ({ task: null, lifecycle: { pk: "JOB#job_other", sk: "TRN#1" } }),
    ],
    [
      "logs",
      "an extra key attribute",
      (id: string) => ({ task: null, lifecycle: { pk: `JOB#${id}`, sk: "TRN#1", x: 1 } }),
    ],
  ])("refuses a forged /%s cursor with %s with 400, not a 500", async (list, _case, forge) => {
    // Prepare
    const job = await submitJob(api, ALICE, { type: "echo" });
    const cursor = Buffer.from(JSON.stringify(forge(job.id))).toString("base64url");

    // Act
    const response = await api.request<ErrorBody>("GET", `/jobs/${job.id}/${list}?cursor=${cursor}`, {
      token: ALICE.token,
    });

    // Assess
    expectError(response, 400, "validation_failed");
  });

  it("lists no attempts for a job that never ran", async () => {
    // Prepare
    const job = await submitJob(api, ALICE, { type: "echo" });

    // Act
    const response = await api.request<ListPage<Attempt>>("GET", `/jobs/${job.id}/attempts`, {
      token: ALICE.token,
    });

    // Assess
    expect(response.status).toBe(200);
    expect(response.json).toEqual({ items: [], nextCursor: null });
  });

  it.each(["transitions", "logs", "attempts"])("answers /%s of an unknown job with 404", async (list) => {
    const response = await api.request<ErrorBody>("GET", `/jobs/job_01ARZ3NDEKTSV4RRFFQ69G5FAV/${list}`, {
      token: ALICE.token,
    });

    expectError(response, 404, "not_found");
  });

  it.each(["transitions", "attempts"])("refuses /%s with limit=201", async (list) => {
    const job = await submitJob(api, ALICE, { type: "echo" });

    const response = await api.request<ErrorBody>("GET", `/jobs/${job.id}/${list}?limit=201`, {
      token: ALICE.token,
    });

    expectError(response, 400, "validation_failed");
  });
});
