import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appContext } from "../../app/runtime";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Actor,
  ADMIN,
  expectError,
  type ListPage,
  PrincipalPool,
  problemPaths,
  submitJob,
} from "../support/jobs";

/**
 * GET /jobs/{id}/dependents through HTTP against the shared DynamoDB Local: the reverse of
 * dependsOn from the parent's own edges, paged by cursor, each edge's `met`, and GET /jobs/{id}'s
 * visibility.
 */

interface Dependent {
  id: string;
  type: string;
  name: string | null;
  status: string;
  owner: string;
  met: boolean;
}

const people = new PrincipalPool("dependents-api");
let api: TestApi;

beforeAll(async () => {
  api = await startTestApi(people.tokens());
});
afterAll(() => api?.close());

function dependents(actor: Actor, id: string, query = "") {
  return api.request<ListPage<Dependent>>("GET", `/jobs/${id}/dependents${query}`, { token: actor.token });
}

/** Every page, following nextCursor, with the size of each. */
async function allPages(
  actor: Actor,
  id: string,
  limit: number,
): Promise<{ items: Dependent[]; sizes: number[] }> {
  const items: Dependent[] = [];
  const sizes: number[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const query: string = `?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const response = await dependents(actor, id, query);
    expect(response.status).toBe(200);
    items.push(...response.json.items);
    sizes.push(response.json.items.length);
    cursor = response.json.nextCursor;
    if (cursor === null) return { items, sizes };
  }
  throw new Error("dependents never ended");
}

describe("GET /jobs/{id}/dependents", () => {
  it("answers the jobs that wait on this one, oldest first, by pages of `limit`", async () => {
    // Prepare
    const alice = people.next();
    const parent = await submitJob(api, alice, { type: "echo", runAt: "2099-01-01T00:00:00Z" });
    const children = [];
    for (const name of ["a", "b", "c"])
      children.push(await submitJob(api, alice, { type: "echo", name, dependsOn: [parent.id] }));
    const unrelated = await submitJob(api, alice, { type: "echo" });

    // Act
    const { items, sizes } = await allPages(alice, parent.id, 2);
    const none = await dependents(alice, unrelated.id);

    // Assess
    expect(sizes).toEqual([2, 1]);
    expect(items).toEqual(
      children.map((c) => ({
        id: c.id,
        type: "echo",
        name: c.name,
        status: "blocked",
        owner: alice.principal,
        met: false,
      })),
    );
    expect(none.json).toEqual({ items: [], nextCursor: null });
  });

  it("says an edge is met when the job depended on had completed", async () => {
    // Prepare: the parent completed, as the lifecycle ends it; a dependent submitted now waits on nothing.
    const alice = people.next();
    const parent = await submitJob(api, alice, { type: "echo", runAt: "2099-01-01T00:00:00Z" });
    const ctx = appContext();
    const item = (await ctx.repo.getJobItems([parent.id])).get(parent.id);
    if (!item) throw new Error("no parent");
    await ctx.repo.changeStatus(
      item,
      {
        to: "completed",
        reason: "completed by the test",
        triggeredBy: null,
        set: { finishedAt: new Date().toISOString() },
      },
      new Date().toISOString(),
    );
    const child = await submitJob(api, alice, { type: "echo", dependsOn: [parent.id] });

    // Act
    const response = await dependents(alice, parent.id);

    // Assess
    expect(response.json.items).toEqual([expect.objectContaining({ id: child.id, met: true })]);
  });

  it("is a 404 for a job the caller cannot see or that does not exist; an admin sees any", async () => {
    // Prepare
    const alice = people.next();
    const bob = people.next();
    const parent = await submitJob(api, alice, { type: "echo", runAt: "2099-01-01T00:00:00Z" });
    const child = await submitJob(api, alice, { type: "echo", dependsOn: [parent.id] });

    // Act
    const asBob = await dependents(bob, parent.id);
    const missing = await dependents(alice, "job_01J00000000000000000000000");
    const asAdmin = await dependents(ADMIN, parent.id);

    // Assess
    expectError(asBob, 404, "not_found");
    expectError(missing, 404, "not_found");
    expect(asAdmin.json.items.map((d) => d.id)).toEqual([child.id]);
  });

  it("leaves out a dependent the caller cannot see: an admin's job waiting on a user's", async () => {
    // Prepare
    const alice = people.next();
    const parent = await submitJob(api, alice, { type: "echo", runAt: "2099-01-01T00:00:00Z" });
    const own = await submitJob(api, alice, { type: "echo", dependsOn: [parent.id] });
    const admins = await submitJob(api, ADMIN, { type: "echo", dependsOn: [parent.id] });

    // Act
    const asAlice = await allPages(alice, parent.id, 1);
    const asAdmin = await allPages(ADMIN, parent.id, 200);

    // Assess
    expect(asAlice.items.map((d) => d.id)).toEqual([own.id]);
    expect(asAdmin.items.map((d) => d.id)).toEqual([own.id, admins.id]);
  });

  it("refuses a cursor it did not write, and a bad limit, with 400", async () => {
    // Prepare
    const alice = people.next();
    const parent = await submitJob(api, alice, { type: "echo" });
    const forged = Buffer.from(JSON.stringify({ after: "TRN#0000000001" })).toString("base64url");

    // Act
    const badCursor = await dependents(alice, parent.id, `?cursor=${forged}`);
    const badLimit = await dependents(alice, parent.id, "?limit=0");

    // Assess
    expect(problemPaths(expectError(badCursor, 400, "validation_failed"))).toEqual(["cursor"]);
    expect(problemPaths(expectError(badLimit, 400, "validation_failed"))).toEqual(["limit"]);
  });
});
