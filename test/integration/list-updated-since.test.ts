import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { ulid } from "ulid";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type ListBudget, listJobs, type ListPage as QueryPage } from "../../app/queries";
import { type JobStatus, type Job as JobType, listJobsQuerySchema } from "../../core/job";
import type { Principal } from "../../core/principal";
import { LOCAL_REGION } from "../../local/config";
import { createDocumentClient } from "../../store/dynamo";
import { toJobItem } from "../../store/job-items";
import { JobRepository } from "../../store/job-repository";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Actor,
  ADMIN,
  type Job,
  type ListPage,
  PrincipalPool,
  seededJob,
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

    // By the minute of the last change, then by id (store/keys.ts#updatedSk): all three changed
    // within the test's minute or two, so the order within it is not the order of the changes.
    expect(listed.map((job) => job.id).sort()).toEqual([first?.id, second?.id, third?.id].sort());
    const minutes = listed.map((job) => job.updatedAt.slice(0, 16));
    expect(minutes).toEqual([...minutes].sort());
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

/**
 * The same list read directly with small budgets (as list-filters.test.ts does for the other
 * lists): seeded jobs whose last changes spread over three days after every other test's, so the
 * admin's day walk and the cursors across days and budgets are exercised by a few dozen jobs.
 */
describe("listJobs with updatedSince, any filters, page size and budget", () => {
  const repo = new JobRepository(
    createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") }),
    inject("tables").Jobs ?? "",
  );
  const DAY_MS = 86_400_000;
  // Ten days ahead: past list-filters' seeded days, so neither file's admin walk meets the other's.
  const START = Date.parse(`${new Date(Date.now() + 10 * DAY_MS).toISOString().slice(0, 10)}T00:00:00.000Z`);
  const ctx = { repo, clock: () => new Date(START + 4 * DAY_MS) };
  const RUN = randomBytes(4).toString("hex");
  const OWNER = `updated-since-${RUN}`;
  const TYPES = [`us-${RUN}-a`, `us-${RUN}-b`] as const;
  const STATUSES: readonly JobStatus[] = ["completed", "failed", "cancelled", "escalated"];
  const USER: Principal = { id: OWNER, admin: false };
  const ADMIN_PRINCIPAL: Principal = { id: `updated-since-admin-${RUN}`, admin: true };

  const seeded: JobType[] = Array.from({ length: 48 }, (_, i) => {
    const created = START + i * 60_000;
    // Last changes spread over the three days, in an order unlike creation.
    const updated = created + ((i * 37) % 60) * 3_600_000;
    return seededJob({
      id: `job_${ulid(created)}`,
      type: TYPES[i % 2] as string,
      status: STATUSES[i % 4] as JobStatus,
      priority: i % 5 === 0 ? 5 : 0,
      owner: OWNER,
      tags: { team: i % 3 === 0 ? "vision" : "nlp" },
      createdAt: new Date(created).toISOString(),
      updatedAt: new Date(updated).toISOString(),
      version: 2,
    });
  });
  const byChange = [...seeded].sort((a, b) =>
    `${a.updatedAt}#${a.id}`.localeCompare(`${b.updatedAt}#${b.id}`),
  );

  beforeAll(async () => {
    await repo.batchPut(seeded.map((job) => toJobItem(job, 0, false)));
  });

  async function allPages(principal: Principal, params: Record<string, string>, budget: ListBudget) {
    const pages: QueryPage<JobType>[] = [];
    let cursor: string | null = null;
    for (let n = 0; n < 500; n++) {
      const query = listJobsQuerySchema.parse(cursor === null ? params : { ...params, cursor });
      const page = await listJobs(ctx, principal, query, budget);
      pages.push(page);
      cursor = page.nextCursor;
      if (cursor === null) return { ids: pages.flatMap((p) => p.items.map((j) => j.id)), pages };
    }
    throw new Error(`still a nextCursor after 500 pages: ${JSON.stringify(params)}`);
  }

  it("yields exactly the jobs changed after the time that match, oldest change first", async () => {
    const times = seeded.map((j) => j.updatedAt);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...times, new Date(START - DAY_MS).toISOString()),
        fc.record(
          {
            status: fc.subarray([...STATUSES], { minLength: 1 }),
            type: fc.constantFrom(...TYPES),
            priority: fc.constantFrom("high", "normal"),
            tag: fc.constantFrom("team:vision", "team:nlp"),
            createdAfter: fc.constantFrom(...seeded.map((j) => j.createdAt)),
          },
          { requiredKeys: [] },
        ),
        fc.boolean(),
        fc.integer({ min: 1, max: 20 }),
        fc.record({
          inspected: fc.integer({ min: 1, max: 60 }),
          queries: fc.integer({ min: 1, max: 6 }),
          fetched: fc.integer({ min: 1, max: 30 }),
          millis: fc.constant(1e12),
        }),
        async (since, filters, asAdmin, limit, budget) => {
          const params: Record<string, string> = { limit: String(limit), updatedSince: since };
          for (const [key, value] of Object.entries(filters))
            params[key] = Array.isArray(value) ? value.join(",") : String(value);
          // The admin reads across owners: a type narrows the walk to these jobs.
          if (asAdmin && params.type === undefined) params.type = TYPES[0];
          const priority = { high: 5, normal: 0 }[params.priority ?? ""];
          const [tagKey, tagValue] = (params.tag ?? ":").split(":") as [string, string];
          const keep = (j: JobType) =>
            j.updatedAt > since &&
            (filters.status === undefined || filters.status.includes(j.status)) &&
            (params.type === undefined || j.type === params.type) &&
            (priority === undefined || j.priority === priority) &&
            (params.tag === undefined || j.tags[tagKey] === tagValue) &&
            (params.createdAfter === undefined || j.createdAt >= params.createdAfter);

          const { ids, pages } = await allPages(asAdmin ? ADMIN_PRINCIPAL : USER, params, budget);

          expect(ids, JSON.stringify({ params, budget })).toEqual(byChange.filter(keep).map((j) => j.id));
          for (const page of pages) expect(page.items.length).toBeLessThanOrEqual(limit);
        },
      ),
      { numRuns: 30 },
    );
  }, 120_000);
});
