import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi, type TestResponse } from "../support/api";
import {
  type Actor,
  type BatchResult,
  type ErrorBody,
  expectError,
  getJob,
  type Job,
  listedIds,
  PrincipalPool,
} from "../support/jobs";

/** The Idempotency-Key header of POST /jobs and POST /jobs/batch. */

const people = new PrincipalPool("idempotency");
let api: TestApi;

beforeAll(async () => {
  api = await startTestApi(people.tokens());
});
afterAll(() => api?.close());

const post = <T = Job>(path: string, actor: Actor, body: unknown, key?: string): Promise<TestResponse<T>> =>
  api.request<T>("POST", path, {
    token: actor.token,
    body,
    headers: key === undefined ? {} : { "Idempotency-Key": key },
  });

describe("Idempotency-Key on POST /jobs", () => {
  it("answers the same key and body again with 200, Idempotent-Replayed and the original job, creating nothing", async () => {
    // Prepare
    const owner = people.next();
    const key = randomUUID();
    const body = { type: "echo", payload: { n: 1 }, priority: "high" };
    const first = await post("/jobs", owner, body, key);

    // Act
    const again = await post("/jobs", owner, body, key);

    // Assess
    expect(first.status).toBe(201);
    expect(first.headers.get("Idempotent-Replayed")).toBeNull();
    expect(again.status).toBe(200);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.json).toMatchObject({
      id: first.json.id,
      priority: 5,
      payload: { n: 1 },
      owner: owner.principal,
    });
    expect(await listedIds(api, owner)).toEqual([first.json.id]);
  });

  it("treats a body with its keys in another order as the same body", async () => {
    // Prepare
    const owner = people.next();
    const key = randomUUID();
    const first = await post(
      "/jobs",
      owner,
      { type: "echo", payload: { a: 1, b: 2 }, tags: { x: "1" } },
      key,
    );

    // Act
    const again = await post(
      "/jobs",
      owner,
      { tags: { x: "1" }, payload: { b: 2, a: 1 }, type: "echo" },
      key,
    );

    // Assess
    expect(again.status).toBe(200);
    expect(again.json.id).toBe(first.json.id);
    expect(await listedIds(api, owner)).toHaveLength(1);
  });

  it("answers the job as it is now when it changed since", async () => {
    // Prepare
    const owner = people.next();
    const key = randomUUID();
    const first = await post("/jobs", owner, { type: "echo" }, key);
    await api.request("PATCH", `/jobs/${first.json.id}/cancel`, { token: owner.token });

    // Act
    const again = await post("/jobs", owner, { type: "echo" }, key);

    // Assess: the original job, not a new one
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ id: first.json.id, status: "cancelled" });
    expect(await listedIds(api, owner)).toHaveLength(1);
  });

  it("refuses the same key with a different body with 409 idempotency_key_reused", async () => {
    // Prepare
    const owner = people.next();
    const key = randomUUID();
    const first = await post("/jobs", owner, { type: "echo", payload: { n: 1 } }, key);

    // Act
    const other = await post<ErrorBody>("/jobs", owner, { type: "echo", payload: { n: 2 } }, key);

    // Assess
    expectError(other, 409, "idempotency_key_reused");
    expect(await listedIds(api, owner)).toEqual([first.json.id]);
  });

  it("keeps the keys of different principals apart", async () => {
    // Prepare
    const [u1, u2] = [people.next(), people.next()];
    const key = randomUUID();
    const body = { type: "echo" };
    const mine = await post("/jobs", u1, body, key);

    // Act
    const theirs = await post("/jobs", u2, body, key);
    const theirsWithAnotherBody = await post("/jobs", u2, { type: "echo", name: "x" }, randomUUID());

    // Assess
    expect(mine.status).toBe(201);
    expect(theirs.status).toBe(201);
    expect(theirs.headers.get("Idempotent-Replayed")).toBeNull();
    expect(theirs.json.id).not.toBe(mine.json.id);
    expect(theirs.json.owner).toBe(u2.principal);
    expect(theirsWithAnotherBody.status).toBe(201);
    expect(await listedIds(api, u1)).toEqual([mine.json.id]);
  });

  it("creates exactly one job for 20 concurrent requests with one key", async () => {
    // Prepare
    const owner = people.next();
    const key = randomUUID();
    const body = { type: "echo", payload: { concurrent: true } };

    // Act
    const responses = await Promise.all(Array.from({ length: 20 }, () => post("/jobs", owner, body, key)));

    // Assess
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses).toEqual([...Array(19).fill(200), 201]);
    const ids = new Set(responses.map((r) => r.json.id));
    expect(ids.size).toBe(1);
    for (const r of responses.filter((x) => x.status === 200)) {
      expect(r.headers.get("Idempotent-Replayed")).toBe("true");
    }
    expect(await listedIds(api, owner)).toEqual([...ids]);
  });

  it("does not burn a key whose request was refused", async () => {
    // Prepare
    const owner = people.next();
    const key = randomUUID();
    const refused = await post<ErrorBody>(
      "/jobs",
      owner,
      { type: "echo", dependsOn: ["job_01ARZ3NDEKTSV4RRFFQ69G5FAV"] },
      key,
    );

    // Act
    const corrected = await post("/jobs", owner, { type: "echo" }, key);

    // Assess
    expectError(refused, 400, "unknown_dependency");
    expect(corrected.status).toBe(201);
    expect(await listedIds(api, owner)).toEqual([corrected.json.id]);
  });

  it.each([
    ["256 characters", "k".repeat(256)],
    ["an empty key", ""],
  ])("refuses a key of %s with 400 validation_failed", async (_case, key) => {
    const owner = people.next();

    const response = await post<ErrorBody>("/jobs", owner, { type: "echo" }, key);

    expectError(response, 400, "validation_failed");
    expect(await listedIds(api, owner)).toEqual([]);
  });

  it("accepts a key of 255 characters", async () => {
    const owner = people.next();
    const key = `${randomUUID()}`.padEnd(255, "k");

    const first = await post("/jobs", owner, { type: "echo" }, key);
    const again = await post("/jobs", owner, { type: "echo" }, key);

    expect(first.status).toBe(201);
    expect(again.status).toBe(200);
    expect(again.json.id).toBe(first.json.id);
  });
});

describe("Idempotency-Key on POST /jobs/batch", () => {
  const jobs = [
    { ref: "a", type: "echo" },
    { ref: "b", type: "echo", dependsOn: ["a"] },
    { ref: "c", type: "echo", dependsOn: ["a", "b"] },
  ];

  it("replays a batch with the same jobs and refs, creating nothing", async () => {
    // Prepare
    const owner = people.next();
    const key = randomUUID();
    const first = await post<BatchResult>("/jobs/batch", owner, { jobs }, key);

    // Act
    const again = await post<BatchResult>("/jobs/batch", owner, { jobs }, key);

    // Assess
    expect(first.status).toBe(201);
    expect(again.status).toBe(200);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.json.refs).toEqual(first.json.refs);
    expect(again.json.jobs.map((j) => j.id)).toEqual(first.json.jobs.map((j) => j.id));
    expect(again.json.jobs.map((j) => j.status)).toEqual(["queued", "blocked", "blocked"]);
    expect(await listedIds(api, owner)).toHaveLength(3);
  });

  it("replays a batch too large for one transaction", async () => {
    // Prepare
    const owner = people.next();
    const key = randomUUID();
    const big = Array.from({ length: 60 }, (_, i) => ({
      ref: `j${i}`,
      type: "echo",
      ...(i > 0 ? { dependsOn: [`j${i - 1}`] } : {}),
    }));
    const first = await post<BatchResult>("/jobs/batch", owner, { jobs: big }, key);

    // Act
    const again = await post<BatchResult>("/jobs/batch", owner, { jobs: big }, key);

    // Assess
    expect(first.status).toBe(201);
    expect(again.status).toBe(200);
    expect(again.json.refs).toEqual(first.json.refs);
    expect(await listedIds(api, owner)).toHaveLength(60);
    expect((await getJob(api, owner, first.json.refs.j59 ?? "")).status).toBe("blocked");
  });

  it("refuses the key with a different batch with 409", async () => {
    const owner = people.next();
    const key = randomUUID();
    await post<BatchResult>("/jobs/batch", owner, { jobs }, key);

    const other = await post<ErrorBody>("/jobs/batch", owner, { jobs: jobs.slice(0, 2) }, key);

    expectError(other, 409, "idempotency_key_reused");
    expect(await listedIds(api, owner)).toHaveLength(3);
  });

  it("does not replay a POST /jobs key as a batch", async () => {
    // Prepare
    const owner = people.next();
    const key = randomUUID();
    const single = await post("/jobs", owner, { type: "echo" }, key);

    // Act
    const asBatch = await post<ErrorBody>("/jobs/batch", owner, { jobs: [{ type: "echo" }] }, key);

    // Assess
    expectError(asBatch, 409, "idempotency_key_reused");
    expect(await listedIds(api, owner)).toEqual([single.json.id]);
  });

  it("creates one batch for 10 concurrent requests with one key", async () => {
    // Prepare
    const owner = people.next();
    const key = randomUUID();

    // Act
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => post<BatchResult>("/jobs/batch", owner, { jobs }, key)),
    );

    // Assess
    expect(responses.filter((r) => r.status === 201)).toHaveLength(1);
    expect(responses.filter((r) => r.status === 200)).toHaveLength(9);
    expect(new Set(responses.map((r) => JSON.stringify(r.json.refs))).size).toBe(1);
    expect(await listedIds(api, owner)).toHaveLength(3);
  });
});
