import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api";
import {
  ALICE,
  type BatchResult,
  BOB,
  expectError,
  getJob,
  type Job,
  listedIds,
  mapConcurrent,
  PrincipalPool,
  problemPaths,
  submitBatch,
  submitJob,
} from "../support/jobs";

/** POST /jobs/batch: a DAG submitted all or nothing. */

const people = new PrincipalPool("batch-api");
let api: TestApi;

beforeAll(async () => {
  api = await startTestApi(people.tokens());
});
afterAll(() => api?.close());

const batch = (token: string, body: unknown) =>
  api.request<BatchResult>("POST", "/jobs/batch", { token, body });

/** The job of the batch whose ref is `ref`. */
function byRef(result: BatchResult, ref: string): Job {
  const job = result.jobs.find((j) => j.id === result.refs[ref]);
  if (!job) throw new Error(`no job for ref ${ref} in ${JSON.stringify(result.refs)}`);
  return job;
}

/** A chain of `length` jobs, each depending on the one before it. */
function chain(length: number, type = "echo"): Record<string, unknown>[] {
  return Array.from({ length }, (_, i) => ({
    ref: `step-${i}`,
    type,
    name: `step ${i}`,
    payload: { step: i },
    ...(i > 0 ? { dependsOn: [`step-${i - 1}`] } : {}),
  }));
}

describe("POST /jobs/batch", () => {
  it("answers 201 with the jobs in request order and the refs resolved to their ids", async () => {
    // Prepare
    const jobs = [
      { ref: "fetch", type: "echo", name: "fetch" },
      { ref: "train", type: "echo", name: "train", dependsOn: ["fetch"] },
      { type: "echo", name: "no ref" },
    ];

    // Act
    const response = await batch(ALICE.token, { jobs });

    // Assess
    expect(response.status).toBe(201);
    const result = response.json;
    expect(Object.keys(result).sort()).toEqual(["jobs", "refs"]);
    expect(result.jobs.map((j) => j.name)).toEqual(["fetch", "train", "no ref"]);
    expect(Object.keys(result.refs).sort()).toEqual(["fetch", "train"]);
    expect(result.refs.fetch).toBe(result.jobs[0]?.id);
    expect(result.refs.train).toBe(result.jobs[1]?.id);
    for (const id of Object.values(result.refs)) expect(id).toMatch(/^job_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(result.jobs[1]).toMatchObject({
      status: "blocked",
      statusReason: "waiting for 1 of 1 dependencies",
      dependsOn: [result.refs.fetch],
      owner: "alice",
    });
    expect(result.jobs[0]?.status).toBe("queued");
    expect(result.jobs[2]?.status).toBe("queued");
    expect(result.jobs[0]).not.toHaveProperty("ref");
  });

  it("mixes refs and existing ids in dependsOn", async () => {
    // Prepare
    const existing = await submitJob(api, ALICE, { type: "echo" });

    // Act
    const result = await submitBatch(api, ALICE, [
      { ref: "a", type: "echo" },
      { ref: "b", type: "echo", dependsOn: ["a", existing.id] },
      { ref: "c", type: "echo", dependsOn: [existing.id] },
    ]);

    // Assess
    const b = byRef(result, "b");
    expect(b).toMatchObject({ status: "blocked", statusReason: "waiting for 2 of 2 dependencies" });
    expect([...b.dependsOn].sort()).toEqual([result.refs.a, existing.id].sort());
    expect(byRef(result, "c")).toMatchObject({ status: "blocked", dependsOn: [existing.id] });
    expect(await getJob(api, ALICE, b.id)).toMatchObject({ status: "blocked", dependsOn: b.dependsOn });
  });

  it("gives a diamond the right statuses and reasons", async () => {
    // Act: d waits on b and c, which both wait on a; listed out of dependency order
    const result = await submitBatch(api, ALICE, [
      { ref: "d", type: "echo", dependsOn: ["b", "c"] },
      { ref: "b", type: "echo", dependsOn: ["a"] },
      { ref: "a", type: "echo" },
      { ref: "c", type: "echo", dependsOn: ["a"] },
    ]);

    // Assess
    expect(byRef(result, "a")).toMatchObject({ status: "queued", dependsOn: [] });
    for (const ref of ["b", "c"]) {
      expect(byRef(result, ref)).toMatchObject({
        status: "blocked",
        statusReason: "waiting for 1 of 1 dependencies",
        dependsOn: [result.refs.a],
      });
    }
    const d = byRef(result, "d");
    expect(d).toMatchObject({ status: "blocked", statusReason: "waiting for 2 of 2 dependencies" });
    expect([...d.dependsOn].sort()).toEqual([result.refs.b, result.refs.c].sort());
    expect(result.jobs.map((j) => j.id)).toEqual(["d", "b", "a", "c"].map((ref) => result.refs[ref]));
  });

  it("cancels a diamond submitted as a batch transitively", async () => {
    // Prepare
    const result = await submitBatch(api, ALICE, [
      { ref: "a", type: "echo" },
      { ref: "b", type: "echo", dependsOn: ["a"] },
      { ref: "c", type: "echo", dependsOn: ["a"] },
      { ref: "d", type: "echo", dependsOn: ["b", "c"] },
    ]);

    // Act
    const cancelled = await api.request<Job>("PATCH", `/jobs/${result.refs.a}/cancel`, {
      token: ALICE.token,
    });

    // Assess
    expect(cancelled.status).toBe(200);
    for (const ref of ["b", "c", "d"]) {
      expect((await getJob(api, ALICE, result.refs[ref] ?? "")).status).toBe("cancelled");
    }
  });

  it("creates a job whose batch parent depends on a cancelled job as cancelled too", async () => {
    // Prepare
    const gone = await submitJob(api, ALICE, { type: "echo" });
    await api.request("PATCH", `/jobs/${gone.id}/cancel`, { token: ALICE.token });

    // Act
    const result = await submitBatch(api, ALICE, [
      { ref: "a", type: "echo", dependsOn: [gone.id] },
      { ref: "b", type: "echo", dependsOn: ["a"] },
    ]);

    // Assess
    expect(byRef(result, "a")).toMatchObject({
      status: "cancelled",
      statusReason: `dependency ${gone.id} was cancelled`,
    });
    expect(byRef(result, "b")).toMatchObject({
      status: "cancelled",
      statusReason: `dependency ${result.refs.a} was cancelled`,
    });
  });

  describe("refusals", () => {
    it("refuses a cycle with 400 dependency_cycle naming its refs in details.cycle", async () => {
      // Act
      const response = await batch(ALICE.token, {
        jobs: [
          { ref: "root", type: "echo" },
          { ref: "x", type: "echo", dependsOn: ["root", "z"] },
          { ref: "y", type: "echo", dependsOn: ["x"] },
          { ref: "z", type: "echo", dependsOn: ["y"] },
        ],
      });

      // Assess
      const error = expectError(response, 400, "dependency_cycle");
      const cycle = (error.error.details as { cycle: string[] }).cycle;
      expect(new Set(cycle)).toEqual(new Set(["x", "y", "z"]));
    });

    it("refuses a job that depends on itself", async () => {
      const response = await batch(ALICE.token, {
        jobs: [{ ref: "self", type: "echo", dependsOn: ["self"] }],
      });

      const error = expectError(response, 400, "dependency_cycle");
      expect((error.error.details as { cycle: string[] }).cycle).toContain("self");
    });

    it("refuses duplicate refs with 400 validation_failed naming the second", async () => {
      const response = await batch(ALICE.token, {
        jobs: [
          { ref: "same", type: "echo" },
          { ref: "same", type: "echo" },
        ],
      });

      expect(problemPaths(expectError(response, 400, "validation_failed"))).toEqual(["jobs.1.ref"]);
    });

    it("refuses 501 jobs with 400 validation_failed", async () => {
      // Prepare
      const owner = people.next();
      const jobs = Array.from({ length: 501 }, () => ({ type: "echo" }));

      // Act
      const response = await batch(owner.token, { jobs });

      // Assess
      expectError(response, 400, "validation_failed");
      expect(await listedIds(api, owner)).toEqual([]);
    });

    it.each([
      ["an empty list", { jobs: [] }],
      ["no jobs field", {}],
      ["a job list that is an object", { jobs: { a: { type: "echo" } } }],
      ["an unknown top-level field", { jobs: [{ type: "echo" }], atomic: true }],
    ])("refuses %s with 400 validation_failed", async (_case, body) => {
      expectError(await batch(ALICE.token, body), 400, "validation_failed");
    });

    it("names every bad field of every job in details", async () => {
      // Act
      const response = await batch(ALICE.token, {
        jobs: [
          { type: "echo" },
          { type: "BAD" },
          { type: "echo", priority: "urgent", ref: "no spaces allowed" },
        ],
      });

      // Assess
      expect(new Set(problemPaths(expectError(response, 400, "validation_failed")))).toEqual(
        new Set(["jobs.1.type", "jobs.2.priority", "jobs.2.ref"]),
      );
    });

    it("refuses a batch with a payload over 256 KiB with 413", async () => {
      const owner = people.next();

      const response = await batch(owner.token, {
        jobs: [{ type: "echo" }, { type: "echo", payload: "x".repeat(256 * 1024) }],
      });

      expectError(response, 413, "payload_too_large");
      expect(await listedIds(api, owner)).toEqual([]);
    });
  });

  describe("all or nothing", () => {
    it("creates none of the jobs when the last one depends on an unknown id", async () => {
      // Prepare
      const owner = people.next();
      const jobs = [
        ...chain(4),
        { ref: "last", type: "echo", dependsOn: ["step-3", "job_01ARZ3NDEKTSV4RRFFQ69G5FAV"] },
      ];

      // Act
      const response = await batch(owner.token, { jobs });

      // Assess
      const error = expectError(response, 400, "unknown_dependency");
      expect(JSON.stringify(error.error)).toContain("job_01ARZ3NDEKTSV4RRFFQ69G5FAV");
      expect(await listedIds(api, owner)).toEqual([]);
    });

    it("creates none of a batch too large for one transaction when its last job depends on another user's job", async () => {
      // Prepare
      const owner = people.next();
      const bobs = await submitJob(api, BOB, { type: "echo" });
      const jobs = [...chain(120), { type: "echo", dependsOn: ["step-119", bobs.id] }];

      // Act
      const response = await batch(owner.token, { jobs });

      // Assess
      expectError(response, 400, "unknown_dependency");
      expect(await listedIds(api, owner)).toEqual([]);
    });

    it("creates none of the jobs when the last one asks for resources no pool has", async () => {
      const owner = people.next();

      const response = await batch(owner.token, {
        jobs: [...chain(3), { type: "echo", resources: { gpu: 8 } }],
      });

      expectError(response, 400, "unsatisfiable_resources");
      expect(await listedIds(api, owner)).toEqual([]);
    });

    it("creates none of the jobs when the batch has a cycle", async () => {
      const owner = people.next();

      const response = await batch(owner.token, {
        jobs: [
          ...chain(3),
          { ref: "p", type: "echo", dependsOn: ["q"] },
          { ref: "q", type: "echo", dependsOn: ["p"] },
        ],
      });

      expectError(response, 400, "dependency_cycle");
      expect(await listedIds(api, owner)).toEqual([]);
    });

    it("stores a batch of large payloads (within the limits) or refuses it with a 4xx, never a 500, creating none on refusal", async () => {
      // Prepare: 20 payloads of 230 KiB, about 4.6 MB in all: each within 256 KiB, the body within 6 MB
      const owner = people.next();
      const jobs = Array.from({ length: 20 }, (_, i) => ({
        type: "echo",
        payload: `${i}`.padEnd(230 * 1024, "x"),
      }));

      // Act
      const response = await batch(owner.token, { jobs });

      // Assess
      expect(response.status, JSON.stringify(response.json)).toBeLessThan(500);
      const listed = await listedIds(api, owner);
      if (response.status === 201) expect(listed).toHaveLength(20);
      else expect(listed).toEqual([]);
    });
  });

  describe("a batch larger than one DynamoDB transaction (the staged path)", () => {
    it("creates all 300 jobs of a chain, each readable and listed once", async () => {
      // Prepare: 300 jobs and 299 edges, far more than the 100 items of one transaction
      const owner = people.next();
      const jobs = chain(300);

      // Act
      const result = await submitBatch(api, owner, jobs);

      // Assess: the answer
      expect(result.jobs).toHaveLength(300);
      expect(Object.keys(result.refs)).toHaveLength(300);
      const ids = jobs.map((_, i) => result.refs[`step-${i}`] ?? "");
      expect(new Set(ids).size).toBe(300);
      expect(result.jobs.map((j) => j.id)).toEqual(ids);
      expect(result.jobs[0]).toMatchObject({ status: "queued", dependsOn: [] });
      result.jobs.slice(1).forEach((job, i) => {
        expect(job).toMatchObject({
          status: "blocked",
          statusReason: "waiting for 1 of 1 dependencies",
          dependsOn: [ids[i]],
          payload: { step: i + 1 },
        });
      });

      // Assess: every job reads back as answered
      const read = await mapConcurrent(ids, 8, (id) => getJob(api, owner, id));
      read.forEach((job, i) => {
        expect(job).toMatchObject({ id: ids[i], name: `step ${i}`, status: i === 0 ? "queued" : "blocked" });
      });

      // Assess: the list shows each exactly once
      const listed = await listedIds(api, owner);
      expect(listed).toHaveLength(300);
      expect(new Set(listed)).toEqual(new Set(ids));
      expect(await listedIds(api, owner, { status: "blocked" })).toHaveLength(299);
      expect(await listedIds(api, owner, { status: "queued" })).toEqual([ids[0]]);
    });

    it("cancels a staged chain transitively from its root", async () => {
      // Prepare: 40 jobs and 39 edges are 158 items, more than one transaction
      const owner = people.next();
      const result = await submitBatch(api, owner, chain(40));

      // Act
      const response = await api.request<Job>("PATCH", `/jobs/${result.refs["step-0"]}/cancel`, {
        token: owner.token,
      });

      // Assess
      expect(response.status).toBe(200);
      expect(await listedIds(api, owner, { status: "cancelled" })).toHaveLength(40);
      const last = await getJob(api, owner, result.refs["step-39"] ?? "");
      expect(last.statusReason).toBe(`dependency ${result.refs["step-38"]} was cancelled`);
    });

    it("mixes existing ids into a staged batch", async () => {
      // Prepare: 35 jobs with 69 dependencies, over 200 items
      const owner = people.next();
      const existing = await submitJob(api, owner, { type: "echo" });
      const jobs = chain(35).map((job) => ({
        ...job,
        dependsOn: [...((job.dependsOn as string[] | undefined) ?? []), existing.id],
      }));

      // Act
      const result = await submitBatch(api, owner, jobs);

      // Assess
      expect(byRef(result, "step-0")).toMatchObject({
        status: "blocked",
        statusReason: "waiting for 1 of 1 dependencies",
        dependsOn: [existing.id],
      });
      expect(byRef(result, "step-34")).toMatchObject({ statusReason: "waiting for 2 of 2 dependencies" });
      expect(await listedIds(api, owner)).toHaveLength(36);

      // Act: cancelling the existing job reaches every job of the batch
      await api.request("PATCH", `/jobs/${existing.id}/cancel`, { token: owner.token });

      // Assess
      expect(await listedIds(api, owner, { status: "cancelled" })).toHaveLength(36);
    });
  });
});
