import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Actor,
  ADMIN,
  type ErrorBody,
  expectError,
  type Job,
  type ListPage,
  PrincipalPool,
  submitJob,
} from "../support/jobs";

/**
 * Issue 12, defect 4: a list cursor is tamper-evident. Whatever arrives as `?cursor=` on any
 * cursor-paged route, the answer is 200 or 400 validation_failed, never a 5xx (a DynamoDB
 * ValidationException). Cursors hold only a position that the server checks against the exact
 * format it writes (store/cursor.ts); keys are rebuilt from the request.
 */

const people = new PrincipalPool("list-cursors", 8);
let api: TestApi;
let owner: Actor;
/** A job with two transitions (queued, cancelled), so its lists page with limit=1. */
let job: Job;

beforeAll(async () => {
  api = await startTestApi(people.tokens());
  owner = people.next();
  for (let i = 0; i < 3; i++) await submitJob(api, owner, { type: "echo" });
  job = await submitJob(api, owner, { type: "echo" });
  const cancelled = await api.request("PATCH", `/jobs/${job.id}/cancel`, { token: owner.token });
  expect(cancelled.status).toBe(200);
});
afterAll(() => api?.close());

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
const unb64 = (cursor: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as Record<string, unknown>;

interface Route {
  readonly label: string;
  readonly actor: () => Actor;
  readonly path: () => string;
  readonly query: () => Record<string, string>;
  /** A well-formed cursor for a list too short to return one (the job never ran). */
  readonly wellFormed?: unknown;
  /**
   * A cursor as this route wrote them before defect 4's fix: the DynamoDB key itself, here with
   * the right partition and any other values.
   */
  readonly keyCursor: (a: string, b: string, c: string) => unknown;
}

const today = (): string => new Date().toISOString().slice(0, 10);

/** Every cursor-paged route, and GET /jobs with each index it may read. */
const ROUTES: readonly Route[] = [
  {
    label: "GET /jobs (byOwner)",
    actor: () => owner,
    path: () => "/jobs",
    query: () => ({}),
    keyCursor: (pk, sk, ownerSk) => ({
      index: "byOwner",
      key: { pk, sk, ownerSk, ownerPk: `O#${owner.principal}` },
    }),
  },
  {
    label: "GET /jobs?status= (byOwnerStatus)",
    actor: () => owner,
    path: () => "/jobs",
    query: () => ({ status: "queued" }),
    keyCursor: (pk, sk, ownerSk) => ({
      index: "byOwnerStatus",
      key: { pk, sk, ownerSk, ownerStatusPk: `O#${owner.principal}#queued` },
    }),
  },
  {
    label: "GET /jobs?status=a,b (byOwnerStatus, merged)",
    actor: () => owner,
    path: () => "/jobs",
    query: () => ({ status: "queued,cancelled", type: "echo" }),
    keyCursor: (pk, sk, ownerSk) => ({
      index: "byOwnerStatus",
      key: { pk, sk, ownerSk, ownerStatusPk: `O#${owner.principal}#cancelled` },
    }),
  },
  {
    label: "GET /jobs as admin (byDay)",
    actor: () => ADMIN,
    path: () => "/jobs",
    query: () => ({ type: "echo" }),
    keyCursor: (pk, sk, ownerSk) => ({
      index: "byDay",
      day: today(),
      key: { pk, sk, ownerSk, dayPk: `DAY#${today()}` },
    }),
  },
  {
    label: "GET /jobs?owner= as admin",
    actor: () => ADMIN,
    path: () => "/jobs",
    query: () => ({ owner: owner.principal }),
    keyCursor: (pk, sk, ownerSk) => ({
      index: "byOwner",
      key: { pk, sk, ownerSk, ownerPk: `O#${owner.principal}` },
    }),
  },
  {
    label: "GET /jobs/{id}/logs",
    actor: () => owner,
    path: () => `/jobs/${job.id}/logs`,
    query: () => ({}),
    keyCursor: (sk) => ({ task: { pk: `JOB#${job.id}`, sk: `LOG#${sk}` }, lifecycle: null }),
  },
  {
    label: "GET /jobs/{id}/attempts",
    actor: () => owner,
    path: () => `/jobs/${job.id}/attempts`,
    query: () => ({}),
    wellFormed: { after: "ATT#0001" },
    keyCursor: (sk) => ({ key: { pk: `JOB#${job.id}`, sk: `ATT#${sk}` } }),
  },
  {
    label: "GET /jobs/{id}/transitions",
    actor: () => owner,
    path: () => `/jobs/${job.id}/transitions`,
    query: () => ({}),
    keyCursor: (sk) => ({ key: { pk: `JOB#${job.id}`, sk: `TRN#${sk}` } }),
  },
  {
    label: "GET /jobs/{id}/dependents",
    actor: () => owner,
    path: () => `/jobs/${job.id}/dependents`,
    query: () => ({}),
    wellFormed: { after: "DPT#job_01ARZ3NDEKTSV4RRFFQ69G5FAV" },
    keyCursor: (sk) => ({ key: { pk: `JOB#${job.id}`, sk: `DPT#${sk}` } }),
  },
  {
    label: "GET /admin/tokens",
    actor: () => ADMIN,
    path: () => "/admin/tokens",
    query: () => ({}),
    wellFormed: { createdAt: "2026-01-01T00:00:00.000Z", after: "0123456789ab" },
    keyCursor: (hash) => ({ key: { tokenHash: hash } }),
  },
];

async function get<T>(route: Route, extra: Record<string, string>) {
  const params = new URLSearchParams({ ...route.query(), ...extra });
  return api.request<T>("GET", `${route.path()}?${params}`, { token: route.actor().token });
}

/** A real cursor of the route's list (its first page with limit=1), or its well-formed stand-in. */
async function realCursor(route: Route): Promise<string> {
  if (route.wellFormed !== undefined) return b64(route.wellFormed);
  const first = await get<ListPage<unknown>>(route, { limit: "1" });
  expect(first.status, JSON.stringify(first.json)).toBe(200);
  expect(first.json.nextCursor, route.label).toEqual(expect.any(String));
  return first.json.nextCursor ?? "";
}

function expectNo5xx(status: number, body: unknown, context: string): void {
  expect(status, `${context} → ${status} ${JSON.stringify(body)}`).toBeLessThan(500);
  if (status !== 200) expect((body as ErrorBody).error?.code, context).toBe("validation_failed");
}

describe("forged list cursors (issue 12, defect 4)", () => {
  it.each([
    [
      "the empty key of the issue",
      () => ({ index: "byOwner", key: { pk: "", sk: "", ownerSk: "", ownerPk: `O#${owner.principal}` } }),
    ],
    [
      "an ownerSk of 1 KB",
      () => ({
        index: "byOwner",
        key: { pk: "JOB#x", sk: "JOB", ownerSk: `job_${"A".repeat(1020)}`, ownerPk: `O#${owner.principal}` },
      }),
    ],
    ["an id of 1 KB", () => ({ index: "byOwner", after: `job_${"A".repeat(1020)}` })],
    ["an id that is no ULID", () => ({ index: "byOwner", after: "job_01ARZ3NDEKTSV4RRFFQ69G5FAu" })],
    ["an id with a key separator", () => ({ index: "byOwner", after: "job_01ARZ3NDEKTSV4RRFFQ69G5#AV" })],
    ["an empty id", () => ({ index: "byOwner", after: "" })],
    ["a day on the owner index", () => ({ index: "byOwner", day: "2026-01-01" })],
    ["an unknown index", () => ({ index: "queue", after: "job_01ARZ3NDEKTSV4RRFFQ69G5FAV" })],
    ["an extra field", () => ({ index: "byOwner", after: "job_01ARZ3NDEKTSV4RRFFQ69G5FAV", key: {} })],
    ["a number for the id", () => ({ index: "byOwner", after: 5 })],
    ["an array", () => [{ index: "byOwner" }]],
    ["null", () => null],
  ])("GET /jobs refuses a cursor with %s: 400 validation_failed", async (_case, forge) => {
    const response = await api.request<ErrorBody>("GET", `/jobs?cursor=${b64(forge())}`, {
      token: owner.token,
    });

    expectError(response, 400, "validation_failed");
  });

  it.each<[string, (cursor: Record<string, unknown>) => unknown]>([
    ["a day that does not exist", (c) => ({ ...c, day: "2026-02-30" })],
    ["a day with a time", (c) => ({ ...c, day: "2026-02-03T00:00:00Z" })],
    ["a day of 1 KB", (c) => ({ ...c, day: "9".repeat(1024) })],
    ["no day", ({ day: _day, ...c }) => c],
    [
      "a DynamoDB key added",
      (c) => ({ ...c, key: { dayPk: "DAY#2026-01-01", ownerSk: "", pk: "", sk: "" } }),
    ],
    ["the owner index named", (c) => ({ ...c, index: "byOwner" })],
    ["an id of 1 KB", (c) => ({ ...c, after: `job_${"Z".repeat(1020)}` })],
  ])("refuses an admin's byDay cursor edited to carry %s: 400", async (_case, edit) => {
    // Prepare: a real cursor of the admin's list across owners
    const route = ROUTES[3] as Route;
    const cursor = unb64(await realCursor(route));
    expect(cursor.index).toBe("byDay");

    // Act
    const response = await get<ErrorBody>(route, { cursor: b64(edit(cursor)) });

    // Assess
    expectError(response, 400, "validation_failed");
  });

  it.each<[string, string, unknown]>([
    ["attempts", "an old key cursor", { key: { pk: "JOB#job_other", sk: "ATT#0001" } }],
    ["attempts", "a transition's sort key", { after: "TRN#0000000001" }],
    ["attempts", "a sort key of 1 KB", { after: `ATT#${"9".repeat(1020)}` }],
    ["transitions", "a bare prefix", { after: "TRN#" }],
    ["transitions", "a sort key past the prefix", { after: "TRN#0000000001#x" }],
    ["logs", "a log position that is no ULID", { task: "LOG#x", lifecycle: null }],
    ["logs", "a key object", { task: null, lifecycle: { pk: "JOB#job_x", sk: "TRN#0000000001" } }],
    ["logs", "a transition key as the task position", { task: "TRN#0000000001", lifecycle: "end" }],
    ["logs", "an unknown stream state", { task: "start", lifecycle: null }],
  ])("/%s refuses %s: 400 validation_failed", async (list, _case, forged) => {
    const response = await api.request<ErrorBody>("GET", `/jobs/${job.id}/${list}?cursor=${b64(forged)}`, {
      token: owner.token,
    });

    expectError(response, 400, "validation_failed");
  });

  it.each<[string, (cursor: Record<string, unknown>) => unknown]>([
    ["an id from the far future", (c) => ({ ...c, after: "job_7ZZZZZZZZZZZZZZZZZZZZZZZZZ" })],
    ["an id from 1970", (c) => ({ ...c, after: "job_00000000000000000000000000" })],
    ["a day long before any job", (c) => ({ ...c, day: "1970-01-01" })],
    ["a day in the future", (c) => ({ ...c, day: "2999-12-31" })],
  ])("answers an admin's well-formed cursor moved to %s with 200", async (_case, edit) => {
    // A cursor holds only a position: moving it moves the reader within the same list.
    const route = ROUTES[3] as Route;
    const cursor = unb64(await realCursor(route));

    const response = await get<ListPage<Job>>(route, { cursor: b64(edit(cursor)) });

    expect(response.status, JSON.stringify(response.json)).toBe(200);
  });

  it("keeps a user's edited cursor within the user's own jobs", async () => {
    // Prepare: another user's jobs exist; the owner moves their cursor to the newest possible id
    const other = people.next();
    await submitJob(api, other, { type: "echo" });
    const cursor = { index: "byOwner", after: "job_7ZZZZZZZZZZZZZZZZZZZZZZZZZ" };

    // Act
    const response = await api.request<ListPage<Job>>("GET", `/jobs?limit=200&cursor=${b64(cursor)}`, {
      token: owner.token,
    });

    // Assess
    expect(response.status).toBe(200);
    expect(response.json.items.length).toBeGreaterThan(0);
    for (const listed of response.json.items) expect(listed.owner).toBe(owner.principal);
  });

  describe.each(ROUTES.map((r) => [r.label, r] as const))("fuzzed cursors on %s", (_label, route) => {
    it("answers any string with 400 validation_failed", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.string({ minLength: 1, maxLength: 300 }),
            fc.base64String({ minLength: 4, maxLength: 300 }),
            fc.string({ unit: "binary", minLength: 1, maxLength: 60 }),
          ),
          async (cursor) => {
            const response = await get<ErrorBody>(route, { cursor });
            expectError(response, 400, "validation_failed");
          },
        ),
        { numRuns: 25 },
      );
    });

    it("answers any JSON value as a cursor with 200 or 400, never a 5xx", async () => {
      await fc.assert(
        fc.asyncProperty(fc.jsonValue({ maxDepth: 3 }), async (value) => {
          const response = await get<unknown>(route, { cursor: b64(value) });
          expectNo5xx(response.status, response.json, JSON.stringify(value).slice(0, 200));
        }),
        { numRuns: 25 },
      );
    });

    it("answers a cursor carrying a DynamoDB key of any values with 400 validation_failed", async () => {
      const keyValue = fc.oneof(
        fc.string({ maxLength: 40 }),
        fc.string({ minLength: 1000, maxLength: 1100 }),
        fc.constantFrom("", "JOB", job.id, `JOB#${job.id}`, "0001", "0000000001"),
      );
      await fc.assert(
        fc.asyncProperty(keyValue, keyValue, keyValue, async (a, b, c) => {
          const cursor = route.keyCursor(a, b, c);
          const response = await get<ErrorBody>(route, { cursor: b64(cursor) });
          expectError(response, 400, "validation_failed");
        }),
        { numRuns: 25 },
      );
    });

    it("answers a real cursor with any field replaced with 200 or 400, never a 5xx", async () => {
      const real = unb64(await realCursor(route));
      const fieldValue = fc.oneof(
        fc.string({ maxLength: 40 }),
        fc.string({ minLength: 900, maxLength: 1100 }),
        fc.constantFrom(
          "",
          "end",
          "job_",
          "job_01ARZ3NDEKTSV4RRFFQ69G5FAV",
          "job_7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
          "2026-01-01",
          "0000-00-00",
          "ATT#0001",
          "TRN#0000000001",
          "LOG#01ARZ3NDEKTSV4RRFFQ69G5FAV",
          "byDay",
          "byOwner",
          "byOwnerStatus",
          "O#alice",
          "DAY#2026-01-01",
        ),
        fc.integer(),
        fc.constant(null),
        fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 40 }), { maxKeys: 4 }),
      );
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...Object.keys(real), "key", "index", "day", "after", "task", "lifecycle"),
          fieldValue,
          async (field, value) => {
            const edited = { ...real, [field]: value };
            const response = await get<unknown>(route, { cursor: b64(edited) });
            expectNo5xx(response.status, response.json, JSON.stringify(edited).slice(0, 200));
          },
        ),
        { numRuns: 40 },
      );
    });
  });
});
