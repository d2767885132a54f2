import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { ulid } from "ulid";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { type ListBudget, type ListPage, listJobs } from "../../app/queries";
import { type Job, type JobStatus, listJobsQuerySchema } from "../../core/job";
import type { Principal } from "../../core/principal";
import { LOCAL_REGION } from "../../local/config";
import { createDocumentClient } from "../../store/dynamo";
import { toJobItem } from "../../store/job-items";
import { JobRepository } from "../../store/job-repository";
import { seededJob } from "../support/jobs";
import { ownTables } from "../support/scheduling";

/**
 * Issue 12, defect 9: GET /jobs reads a bounded amount per request. A sparse filter answers a
 * short page with a nextCursor, and following the cursors yields exactly the matching jobs,
 * newest first, each once: for every filter, index and budget. listJobs is called directly with
 * small budgets so a few dozen jobs exercise what 10,000 would (bench/list.ts measures those).
 */

const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
/**
 * Tables of this file's own: the admin's walk reads every job of every day it passes, and with a
 * budget of one entry per page the shared tables' busy days (every other file's jobs of today)
 * would take thousands of pages.
 */
let repo: JobRepository;

const DAY_MS = 86_400_000;
/**
 * Jobs are created on the next two days, after every other test's jobs: the admin's walk across
 * owners starts at the fake clock's day and reaches them first. Terminal statuses only, so no
 * scheduler or reconciler of another test file ever sees them.
 */
const START = Date.parse(`${new Date(Date.now() + DAY_MS).toISOString().slice(0, 10)}T00:00:00.000Z`);
const clock = () => new Date(START + 3 * DAY_MS);
let ctx: { repo: JobRepository; clock: () => Date };
const TERMINAL: readonly JobStatus[] = ["completed", "failed", "cancelled", "escalated"];
const RUN = randomBytes(4).toString("hex");
const OWNER = `list-filters-${RUN}`;
/** Types only this file uses, so an admin's list across owners narrows to these jobs. */
const TYPES = [`lf-${RUN}-a`, `lf-${RUN}-b`, `lf-${RUN}-rare`] as const;
const JOBS = 72;

/** A deterministic mix: rare types, tags and priorities spread through the list. */
function seeded(i: number): Job {
  // Half on each of the two days, a few minutes apart, so ids and createdAt agree.
  const at = START + (i < JOBS / 2 ? 0 : DAY_MS) + i * 60_000;
  const createdAt = new Date(at).toISOString();
  const tags: Record<string, string> = { team: i % 3 === 0 ? "vision" : "nlp" };
  if (i % 11 === 5) tags.experiment = "rare";
  // A value that holds another tag's JSON must not match that tag.
  if (i % 13 === 7) tags.note = '"experiment":"rare"';
  return seededJob({
    id: `job_${ulid(at)}`,
    type: i % 17 === 3 ? (TYPES[2] as string) : (TYPES[i % 2] as string),
    status: TERMINAL[i % 4 === 3 ? 3 : i % 7 === 0 ? 1 : i % 5 === 0 ? 2 : 0] as JobStatus,
    priority: i % 19 === 4 ? 5 : i % 4 === 1 ? -5 : 0,
    owner: OWNER,
    tags,
    createdAt,
  });
}

const jobs = Array.from({ length: JOBS }, (_, i) => seeded(i));
const newestFirst = [...jobs].reverse();
const USER: Principal = { id: OWNER, admin: false };
const ADMIN: Principal = { id: `list-filters-admin-${RUN}`, admin: true };
const UNBOUNDED: ListBudget = { inspected: 1_000_000, queries: 1_000_000, fetched: 1_000_000, millis: 1e12 };

beforeAll(async () => {
  repo = new JobRepository(db, (await ownTables(`jobq-list-filters-${RUN}-`)).jobs);
  ctx = { repo, clock };
  await repo.batchPut(jobs.map((job) => toJobItem(job, 0, false)));
  // What a submission today records, so the admin's walk reaches back past these days.
  await repo.recordFirstDay(new Date().toISOString().slice(0, 10));
});

/** Every page of a list, following nextCursor (bounded, so a cursor that never ends fails). */
async function allPages(
  principal: Principal,
  params: Record<string, string>,
  budget: ListBudget,
): Promise<{ ids: string[]; pages: ListPage<Job>[] }> {
  const pages: ListPage<Job>[] = [];
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

const ids = (keep: (job: Job) => boolean): string[] => newestFirst.filter(keep).map((j) => j.id);

describe("GET /jobs with a bounded read per request (issue 12, defect 9)", () => {
  it.each<[string, Record<string, string>, (job: Job) => boolean]>([
    ["type", { type: TYPES[2] }, (j) => j.type === TYPES[2]],
    ["priority", { priority: "high" }, (j) => j.priority === 5],
    ["tag", { tag: "experiment:rare" }, (j) => j.tags.experiment === "rare"],
  ])(
    "a sparse %s filter answers a short page with a cursor; the cursors yield exactly the matches",
    async (_f, params, keep) => {
      // Prepare: a budget far smaller than the list, as 10,000 jobs are to the real one
      const budget: ListBudget = { inspected: 8, queries: 40, fetched: 300, millis: 1e12 };
      const expected = ids(keep);
      expect(expected.length).toBeGreaterThan(2);

      // Act
      const { ids: listed, pages } = await allPages(USER, { limit: "50", ...params }, budget);

      // Assess
      const first = pages[0] as ListPage<Job>;
      expect(first.items.length).toBeLessThan(expected.length);
      expect(first.nextCursor).toEqual(expect.any(String));
      expect(listed).toEqual(expected);
    },
  );

  it("merges several status partitions newest first, each job once", async () => {
    const expected = ids((j) => j.status === "failed" || j.status === "escalated");

    const { ids: listed, pages } = await allPages(
      USER,
      { limit: "4", status: "failed,escalated" },
      UNBOUNDED,
    );

    expect(listed).toEqual(expected);
    expect(pages.length).toBeGreaterThan(2);
  });

  it("walks the admin's days with a status filter no index entry carries, bounded by job items read", async () => {
    // Prepare: status is checked on job items here; at most 5 are read per request
    const budget: ListBudget = { inspected: 1000, queries: 40, fetched: 5, millis: 1e12 };
    const keep = (j: Job) => j.type === TYPES[0] && j.status === "cancelled";

    // Act
    const { ids: listed, pages } = await allPages(
      ADMIN,
      { limit: "50", type: TYPES[0], status: "cancelled" },
      budget,
    );

    // Assess
    expect(listed).toEqual(ids(keep));
    expect(pages.length).toBeGreaterThan(2);
    expect(pages[0]?.items.length).toBeLessThan(ids(keep).length);
  });

  it("does not match a tag whose JSON appears inside another tag's value", async () => {
    const listed = await allPages(USER, { limit: "200", tag: "note:x" }, UNBOUNDED);
    const rare = await allPages(USER, { limit: "200", tag: "experiment:rare" }, UNBOUNDED);

    expect(listed.ids).toEqual([]);
    expect(rare.ids).toEqual(ids((j) => j.tags.experiment === "rare"));
  });

  it("yields exactly the matching jobs for any filters, page size and budget", async () => {
    const times = jobs.map((j) => j.createdAt);
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            status: fc.subarray([...TERMINAL], { minLength: 1 }),
            type: fc.constantFrom(...TYPES),
            priority: fc.constantFrom("high", "low", "normal"),
            tag: fc.constantFrom("team:vision", "team:nlp", "experiment:rare"),
            createdAfter: fc.constantFrom(...times),
            createdBefore: fc.constantFrom(...times),
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
        async (filters, asAdmin, limit, budget) => {
          // Prepare: the admin reads across owners (the day index) and needs a type to see only these
          const params: Record<string, string> = { limit: String(limit) };
          for (const [key, value] of Object.entries(filters))
            params[key] = Array.isArray(value) ? value.join(",") : String(value);
          if (asAdmin && params.type === undefined) params.type = TYPES[0];
          const priority = { high: 5, low: -5, normal: 0 }[params.priority ?? ""];
          const [tagKey, tagValue] = (params.tag ?? ":").split(":") as [string, string];
          const keep = (j: Job) =>
            (filters.status === undefined || filters.status.includes(j.status)) &&
            (params.type === undefined || j.type === params.type) &&
            (priority === undefined || j.priority === priority) &&
            (params.tag === undefined || j.tags[tagKey] === tagValue) &&
            (params.createdAfter === undefined || j.createdAt >= params.createdAfter) &&
            (params.createdBefore === undefined || j.createdAt < params.createdBefore);

          // Act
          const { ids: listed, pages } = await allPages(asAdmin ? ADMIN : USER, params, budget);

          // Assess
          expect(listed, JSON.stringify({ params, budget })).toEqual(ids(keep));
          for (const page of pages) expect(page.items.length).toBeLessThanOrEqual(limit);
        },
      ),
      { numRuns: 40 },
    );
  });
});
