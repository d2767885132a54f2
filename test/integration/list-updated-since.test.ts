import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Actor,
  ADMIN,
  type Job,
  type ListPage,
  PrincipalPool,
  submitJob,
  uniqueType,
} from "../support/jobs";

/**
 * GET /jobs?updatedSince=: how a stream client resynchronises after a reconnect. The jobs changed
 * after the time, oldest change first, paged by cursor; combined with the other filters; a user's
 * own jobs only, an admin's across principals.
 */

const people = new PrincipalPool("updated-since", 4);
let api: TestApi;
let owner: Actor;
let other: Actor;
const type = uniqueType("resync");
let before: string;
let mid: string;
let jobs: Job[];

/** Every item of the list, following nextCursor with the given page size. */
async function all(actor: Actor, query: Record<string, string>, limit = 1): Promise<Job[]> {
  const items: Job[] = [];
  let cursor: string | null | undefined;
  for (let pages = 0; pages < 50; pages++) {
    const params = new URLSearchParams({ ...query, limit: String(limit), ...(cursor ? { cursor } : {}) });
    const response = await api.request<ListPage<Job>>("GET", `/jobs?${params}`, { token: actor.token });
    expect(response.status).toBe(200);
    items.push(...response.json.items);
    cursor = response.json.nextCursor;
    if (cursor === null) return items;
  }
  throw new Error("the cursors never ended");
}

/** A time strictly after every change so far (timestamps are milliseconds). */
async function now(): Promise<string> {
  const at = new Date().toISOString();
  while (new Date().toISOString() === at) await new Promise((resolve) => setTimeout(resolve, 1));
  await new Promise((resolve) => setTimeout(resolve, 2));
  return new Date().toISOString();
}

beforeAll(async () => {
  api = await startTestApi(people.tokens());
  owner = people.next();
  other = people.next();
  before = await now();
  jobs = [];
  for (let i = 0; i < 3; i++) jobs.push(await submitJob(api, owner, { type }));
  mid = await now();
  const [first, second] = jobs;
  expect((await api.request("PATCH", `/jobs/${first?.id}/cancel`, { token: owner.token })).status).toBe(200);
  expect((await api.request("POST", `/jobs/${second?.id}/pause`, { token: owner.token })).status).toBe(200);
  // Another principal's change after mid, of the same type: never in the owner's list.
  await submitJob(api, other, { type });
});
afterAll(() => api?.close());

describe("GET /jobs?updatedSince=", () => {
  it("lists the jobs changed after the time, oldest change first, across cursors", async () => {
    const [first, second] = jobs;
    const listed = await all(owner, { updatedSince: mid });

    expect(listed.map((job) => [job.id, job.status])).toEqual([
      [first?.id, "cancelled"],
      [second?.id, "paused"],
    ]);
  });

  it("counts a submission as a change", async () => {
    const [first, second, third] = jobs;
    const listed = await all(owner, { updatedSince: before }, 2);

    expect(listed.map((job) => job.id)).toEqual([third?.id, first?.id, second?.id]);
  });

  it("combines with the other filters", async () => {
    const [, second] = jobs;
    expect((await all(owner, { updatedSince: mid, status: "paused" })).map((job) => job.id)).toEqual([
      second?.id,
    ]);
    expect(await all(owner, { updatedSince: mid, type: uniqueType("other") })).toEqual([]);
    expect(await all(owner, { updatedSince: mid, createdBefore: before })).toEqual([]);
  });

  it("shows an admin every principal's changes, by type here", async () => {
    const listed = await all(ADMIN, { updatedSince: mid, type }, 2);

    expect(listed.map((job) => job.owner).sort()).toEqual(
      [other.principal, owner.principal, owner.principal].sort(),
    );
    const times = listed.map((job) => job.updatedAt);
    expect(times).toEqual([...times].sort());
  });

  it("refuses a malformed time and a cursor of another list with 400", async () => {
    const bad = await api.request("GET", "/jobs?updatedSince=yesterday", { token: owner.token });
    expect(bad.status).toBe(400);

    const first = await api.request<ListPage<Job>>("GET", `/jobs?updatedSince=${mid}&limit=1`, {
      token: owner.token,
    });
    const cursor = first.json.nextCursor ?? "";
    const elsewhere = await api.request("GET", `/jobs?cursor=${cursor}`, { token: owner.token });
    expect(elsewhere.status).toBe(400);
    const forged = Buffer.from(JSON.stringify({ index: "byOwnerUpdate", after: "x" })).toString("base64url");
    const refused = await api.request("GET", `/jobs?updatedSince=${mid}&cursor=${forged}`, {
      token: owner.token,
    });
    expect(refused.status).toBe(400);
  });
});
