import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cascadeCancel } from "../../app/actions";
import { appContext } from "../../app/runtime";
import type { BulkResult } from "../../core/job";
import type { JobItem } from "../../store/job-items";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Actor,
  ADMIN,
  expectError,
  getJob,
  type Job,
  type ListPage,
  PrincipalPool,
  problemPaths,
  submitJob,
  type Transition,
  uniqueType,
} from "../support/jobs";

/**
 * Manual retry, bulk cancel/retry, maxPriority and the audited, admin-only reordering, through
 * HTTP against the shared DynamoDB Local. A job's end by the lifecycle (failed, escalated,
 * completed) is written with the repository's own status change and cascade, as the lifecycle
 * step does, so these tests need no workers.
 */

const people = new PrincipalPool("retry-api");
let api: TestApi;

beforeAll(async () => {
  api = await startTestApi(people.tokens());
});
afterAll(() => api?.close());

async function item(id: string): Promise<JobItem> {
  const found = (await appContext().repo.getJobItems([id])).get(id);
  if (!found) throw new Error(`no job ${id}`);
  return found;
}

/** What the lifecycle's last failed attempt does: the job failed, its dependents cancelled. */
async function endJob(
  id: string,
  to: "failed" | "completed" | "escalated",
  set: Record<string, unknown> = {},
) {
  const ctx = appContext();
  const current = await item(id);
  const at = new Date().toISOString();
  await ctx.repo.changeStatus(
    current,
    {
      to,
      reason: to === "failed" ? "attempt 1 failed: boom; no attempts left" : `${to} by the test`,
      triggeredBy: null,
      set: {
        finishedAt: at,
        attempts: 1,
        failures: to === "completed" ? 0 : 1,
        ...(to === "failed" ? { error: { type: "error", message: "boom" } } : {}),
        ...set,
      },
    },
    at,
  );
  if (to === "failed") await cascadeCancel(ctx, id, "failed");
}

async function retry(actor: Actor, id: string, body?: unknown) {
  return api.request<Job>("POST", `/jobs/${id}/retry`, {
    token: actor.token,
    ...(body === undefined ? {} : { body }),
  });
}

async function transitions(actor: Actor, id: string): Promise<Transition[]> {
  const response = await api.request<ListPage<Transition>>("GET", `/jobs/${id}/transitions?limit=200`, {
    token: actor.token,
  });
  expect(response.status).toBe(200);
  return response.json.items;
}

describe("POST /jobs/{id}/retry", () => {
  it("takes a cancelled job back to queued with a transition naming who retried it", async () => {
    // Prepare
    const alice = people.next();
    const job = await submitJob(api, alice, { type: "echo" });
    await api.request("PATCH", `/jobs/${job.id}/cancel`, { token: alice.token });

    // Act
    const response = await retry(alice, job.id);

    // Assess
    expect(response.status).toBe(200);
    expect(response.json).toMatchObject({ id: job.id, status: "queued", finishedAt: null, error: null });
    const last = (await transitions(alice, job.id)).at(-1);
    expect(last).toMatchObject({ from: "cancelled", to: "queued", triggeredBy: alice.principal });
    expect(last?.reason).toContain(`retried by ${alice.principal}`);
  });

  it("gives a failed job a new attempt budget; attempt numbers go on", async () => {
    // Prepare
    const alice = people.next();
    const job = await submitJob(api, alice, { type: "echo", retry: { maxAttempts: 1 } });
    await endJob(job.id, "failed");

    // Act
    const response = await retry(alice, job.id, { maxAttempts: 4 });

    // Assess
    expect(response.status).toBe(200);
    expect(response.json).toMatchObject({ status: "queued", attempts: 1, error: null, startedAt: null });
    expect(response.json.retry.maxAttempts).toBe(4);
    const stored = await item(job.id);
    expect(stored.failures).toBe(0);
    expect(stored.retries).toBe(1);
    expect(stored.queuePk).toBeDefined();
  });

  it("with dependents, revives the chain its cascade cancelled, each blocked on its dependency", async () => {
    // Prepare
    const alice = people.next();
    const root = await submitJob(api, alice, { type: "echo" });
    const child = await submitJob(api, alice, { type: "echo", dependsOn: [root.id] });
    const grandchild = await submitJob(api, alice, { type: "echo", dependsOn: [child.id] });
    await endJob(root.id, "failed");
    expect((await getJob(api, alice, grandchild.id)).status).toBe("cancelled");

    // Act
    const response = await retry(alice, root.id, { dependents: true });

    // Assess
    expect(response.status).toBe(200);
    expect(response.json.status).toBe("queued");
    for (const id of [child.id, grandchild.id]) {
      const revived = await getJob(api, alice, id);
      expect(revived).toMatchObject({
        status: "blocked",
        statusReason: expect.stringContaining("waiting for 1 of 1"),
      });
      expect(await item(id)).toMatchObject({ unmet: 1 });
    }
  });

  it("without dependents, leaves the cancelled dependents as they are", async () => {
    // Prepare
    const alice = people.next();
    const root = await submitJob(api, alice, { type: "echo" });
    const child = await submitJob(api, alice, { type: "echo", dependsOn: [root.id] });
    await endJob(root.id, "failed");

    // Act
    await retry(alice, root.id);

    // Assess
    expect((await getJob(api, alice, child.id)).status).toBe("cancelled");
  });

  it("does not revive a dependent a person cancelled", async () => {
    // Prepare
    const alice = people.next();
    const root = await submitJob(api, alice, { type: "echo" });
    const child = await submitJob(api, alice, { type: "echo", dependsOn: [root.id] });
    await api.request("PATCH", `/jobs/${child.id}/cancel`, { token: alice.token });
    await endJob(root.id, "failed");

    // Act
    await retry(alice, root.id, { dependents: true });

    // Assess
    expect(await getJob(api, alice, child.id)).toMatchObject({ status: "cancelled" });
  });

  it("revives a dependent once however often the retry is repeated", async () => {
    // Prepare
    const alice = people.next();
    const root = await submitJob(api, alice, { type: "echo" });
    const child = await submitJob(api, alice, { type: "echo", dependsOn: [root.id] });
    await endJob(root.id, "failed");
    await retry(alice, root.id, { dependents: true });

    // Act
    const again = await retry(alice, root.id, { dependents: true });

    // Assess
    expectError(again, 409, "invalid_transition");
    const history = await transitions(alice, child.id);
    expect(history.filter((t) => t.from === "cancelled")).toHaveLength(1);
  });

  describe("409 invalid_transition", () => {
    it.each(["queued", "blocked"])("refuses a %s job", async (status) => {
      const alice = people.next();
      const parent = await submitJob(api, alice, { type: "echo" });
      const job = await submitJob(api, alice, {
        type: "echo",
        ...(status === "blocked" ? { dependsOn: [parent.id] } : {}),
      });

      const body = expectError(await retry(alice, job.id), 409, "invalid_transition");

      expect(body.error.message).toContain(status);
    });

    it("refuses a completed job", async () => {
      const alice = people.next();
      const job = await submitJob(api, alice, { type: "echo" });
      await endJob(job.id, "completed");

      expectError(await retry(alice, job.id), 409, "invalid_transition");
    });

    it("refuses an escalated job whose escalation job has not failed or been cancelled", async () => {
      const alice = people.next();
      const job = await submitJob(api, alice, { type: "echo" });
      const escalation = await submitJob(api, alice, { type: "echo" });
      await endJob(job.id, "escalated", { escalatedTo: escalation.id });

      const body = expectError(await retry(alice, job.id), 409, "invalid_transition");

      expect(body.error.message).toContain(escalation.id);
    });

    it("retries an escalated job once its escalation job was cancelled", async () => {
      const alice = people.next();
      const job = await submitJob(api, alice, { type: "echo" });
      const escalation = await submitJob(api, alice, { type: "echo" });
      await endJob(job.id, "escalated", { escalatedTo: escalation.id });
      await api.request("PATCH", `/jobs/${escalation.id}/cancel`, { token: alice.token });

      const response = await retry(alice, job.id);

      expect(response.status).toBe(200);
      expect(response.json).toMatchObject({ status: "queued", escalatedTo: null });
    });

    it("refuses a job with a failed dependency, naming it", async () => {
      const alice = people.next();
      const root = await submitJob(api, alice, { type: "echo" });
      const child = await submitJob(api, alice, { type: "echo", dependsOn: [root.id] });
      await endJob(root.id, "failed");

      const body = expectError(await retry(alice, child.id), 409, "invalid_transition");

      expect(body.error.message).toContain(root.id);
      expect(body.error.message).toContain("dependents");
    });

    it("refuses a passed deadline unless the body gives a new one", async () => {
      const alice = people.next();
      const job = await submitJob(api, alice, { type: "echo" });
      await api.request("PATCH", `/jobs/${job.id}/cancel`, { token: alice.token });
      const current = await item(job.id);
      await appContext().repo.updateIf(
        { pk: current.pk, sk: current.sk },
        "SET deadline = :past",
        "attribute_exists(pk)",
        { values: { ":past": "2020-01-01T00:00:00.000Z" } },
      );

      const refused = expectError(await retry(alice, job.id), 409, "invalid_transition");
      const accepted = await retry(alice, job.id, { deadline: "2099-01-01T00:00:00Z" });

      expect(refused.error.message).toContain("deadline");
      expect(accepted.status).toBe(200);
      expect(accepted.json).toMatchObject({ status: "queued", deadline: "2099-01-01T00:00:00.000Z" });
    });
  });

  it("answers 404 for another user's job", async () => {
    const alice = people.next();
    const bob = people.next();
    const job = await submitJob(api, alice, { type: "echo" });
    await api.request("PATCH", `/jobs/${job.id}/cancel`, { token: alice.token });

    expectError(await retry(bob, job.id), 404, "not_found");
    expect((await retry(ADMIN, job.id)).status).toBe(200);
  });

  it.each([
    ["maxAttempts 0", { maxAttempts: 0 }],
    ["maxAttempts as text", { maxAttempts: "3" }],
    ["dependents as text", { dependents: "yes" }],
    ["a bad deadline", { deadline: "tomorrow" }],
    ["an unknown field", { priority: 5 }],
    ["an array", [1]],
  ])("refuses %s with 400 validation_failed", async (_case, body) => {
    const alice = people.next();
    const job = await submitJob(api, alice, { type: "echo" });

    expectError(await retry(alice, job.id, body), 400, "validation_failed");
  });
});

describe("POST /jobs/cancel and POST /jobs/retry", () => {
  it("cancels the caller's matching jobs a page at a time, continuing by cursor", async () => {
    // Prepare
    const alice = people.next();
    const type = uniqueType("bulk-cancel");
    const jobs = [];
    for (let i = 0; i < 3; i++) jobs.push(await submitJob(api, alice, { type }));
    const other = await submitJob(api, alice, { type: "echo" });

    // Act
    const first = await api.request<BulkResult>("POST", "/jobs/cancel", {
      token: alice.token,
      body: { filter: { type }, limit: 2 },
    });
    const second = await api.request<BulkResult>("POST", "/jobs/cancel", {
      token: alice.token,
      body: { filter: { type }, limit: 2, cursor: first.json.nextCursor },
    });

    // Assess
    expect(first.status).toBe(200);
    expect(first.json.acted).toHaveLength(2);
    expect(first.json.nextCursor).toEqual(expect.any(String));
    expect(second.json.acted).toHaveLength(1);
    expect(second.json.nextCursor).toBeNull();
    expect([...first.json.acted, ...second.json.acted].sort()).toEqual(jobs.map((j) => j.id).sort());
    expect((await getJob(api, alice, other.id)).status).toBe("queued");
  });

  it("skips jobs the action does not apply to, with the reason", async () => {
    // Prepare
    const alice = people.next();
    const type = uniqueType("bulk-skip");
    const done = await submitJob(api, alice, { type });
    await api.request("PATCH", `/jobs/${done.id}/cancel`, { token: alice.token });
    const live = await submitJob(api, alice, { type });

    // Act
    const response = await api.request<BulkResult>("POST", "/jobs/cancel", {
      token: alice.token,
      body: { filter: { type } },
    });

    // Assess
    expect(response.json.acted).toEqual([live.id]);
    expect(response.json.skipped).toEqual([{ id: done.id, reason: expect.stringContaining("cancelled") }]);
  });

  it("retries the caller's failed jobs, never another user's", async () => {
    // Prepare
    const alice = people.next();
    const bob = people.next();
    const type = uniqueType("bulk-retry");
    const mine = await submitJob(api, alice, { type });
    const theirs = await submitJob(api, bob, { type });
    await endJob(mine.id, "failed");
    await endJob(theirs.id, "failed");

    // Act
    const response = await api.request<BulkResult>("POST", "/jobs/retry", {
      token: alice.token,
      body: { filter: { type, status: "failed" }, maxAttempts: 2 },
    });

    // Assess
    expect(response.status).toBe(200);
    expect(response.json).toEqual({ acted: [mine.id], skipped: [], nextCursor: null });
    expect((await getJob(api, alice, mine.id)).retry.maxAttempts).toBe(2);
    expect((await getJob(api, bob, theirs.id)).status).toBe("failed");
  });

  it("lets an admin act on anyone's jobs, and refuses a user another owner", async () => {
    const alice = people.next();
    const type = uniqueType("bulk-admin");
    const job = await submitJob(api, alice, { type });

    const refused = await api.request("POST", "/jobs/cancel", {
      token: people.next().token,
      body: { filter: { type, owner: alice.principal } },
    });
    const response = await api.request<BulkResult>("POST", "/jobs/cancel", {
      token: ADMIN.token,
      body: { filter: { type, owner: alice.principal } },
    });

    expectError(refused, 403, "forbidden");
    expect(response.json.acted).toEqual([job.id]);
  });

  it.each([
    ["no body", undefined],
    ["an unknown filter", { filter: { colour: "red" } }],
    ["a bad status", { filter: { status: "done" } }],
    ["limit 0", { limit: 0 }],
    ["limit 201", { limit: 201 }],
    ["a forged cursor", { cursor: "bm90LWEtY3Vyc29y" }],
    ["an unknown field", { filter: {}, everything: true }],
  ])("refuses %s with a 400", async (_case, body) => {
    const alice = people.next();
    for (const path of ["/jobs/cancel", "/jobs/retry"]) {
      const response = await api.request("POST", path, {
        token: alice.token,
        ...(body === undefined ? {} : { body }),
      });
      expectError(response, 400, "validation_failed");
    }
  });
});

describe("priority changes in /transitions", () => {
  it("records a PATCH as a row from the status to itself with both priorities", async () => {
    // Prepare
    const alice = people.next();
    const job = await submitJob(api, alice, { type: "echo" });

    // Act
    await api.request("PATCH", `/jobs/${job.id}`, { token: ADMIN.token, body: { priority: "high" } });

    // Assess
    const last = (await transitions(alice, job.id)).at(-1);
    expect(last).toMatchObject({
      from: "queued",
      to: "queued",
      fromPriority: 0,
      toPriority: 5,
      triggeredBy: ADMIN.principal,
    });
    expect(last?.reason).toContain("0");
    expect(last?.reason).toContain("5");
  });

  it("shows null priorities on status changes", async () => {
    const alice = people.next();
    const job = await submitJob(api, alice, { type: "echo" });

    const [first] = await transitions(alice, job.id);

    expect(first).toMatchObject({ fromPriority: null, toPriority: null });
  });
});

describe("maxPriority", () => {
  async function limitTo(actor: Actor, maxPriority: unknown) {
    const response = await api.request("PUT", `/quotas/${actor.principal}`, {
      token: ADMIN.token,
      body: { maxPriority },
    });
    expect(response.status).toBe(200);
  }

  it("refuses a user's submission above it with 403, and shows it in the quota", async () => {
    const alice = people.next();
    await limitTo(alice, "high");

    const refused = await api.request("POST", "/jobs", {
      token: alice.token,
      body: { type: "echo", priority: 6 },
    });
    const batch = await api.request("POST", "/jobs/batch", {
      token: alice.token,
      body: { jobs: [{ type: "echo" }, { type: "echo", priority: "critical" }] },
    });
    const quota = await api.request<{ limits: { maxPriority: number } }>(
      "GET",
      `/quotas/${alice.principal}`,
      {
        token: alice.token,
      },
    );

    expectError(refused, 403, "forbidden");
    expectError(batch, 403, "forbidden");
    expect((await submitJob(api, alice, { type: "echo", priority: 5 })).priority).toBe(5);
    expect(quota.json.limits.maxPriority).toBe(5);
  });

  it("refuses a user's PATCH above it, allows lowering, and exempts admins", async () => {
    const alice = people.next();
    await limitTo(alice, 0);
    const job = await submitJob(api, alice, { type: "echo" });

    const raised = await api.request("PATCH", `/jobs/${job.id}`, {
      token: alice.token,
      body: { priority: 1 },
    });
    const byAdmin = await api.request<Job>("PATCH", `/jobs/${job.id}`, {
      token: ADMIN.token,
      body: { priority: 9 },
    });
    const lowered = await api.request<Job>("PATCH", `/jobs/${job.id}`, {
      token: alice.token,
      body: { priority: 7 },
    });

    expectError(raised, 403, "forbidden");
    expect(byAdmin.json.priority).toBe(9);
    expect(lowered.status).toBe(200);
    expect(lowered.json.priority).toBe(7);
  });

  it("refuses a bad maxPriority with 400", async () => {
    const alice = people.next();
    const response = await api.request("PUT", `/quotas/${alice.principal}`, {
      token: ADMIN.token,
      body: { maxPriority: 11 },
    });

    expectError(response, 400, "validation_failed");
  });
});

describe("PATCH /jobs/{id} before", () => {
  const moveJob = (actor: Actor, id: string, body: unknown) =>
    api.request<Job>("PATCH", `/jobs/${id}`, { token: actor.token, body });

  async function position(id: string): Promise<number> {
    const job = await getJob(api, ADMIN, id);
    expect(job.queuePosition).toEqual(expect.any(Number));
    return job.queuePosition as number;
  }

  it("moves a queued job just ahead of another, taking its priority, and records it", async () => {
    // Prepare
    const alice = people.next();
    const a = await submitJob(api, alice, { type: "echo", priority: 3 });
    const b = await submitJob(api, alice, { type: "echo", priority: 3 });
    const c = await submitJob(api, alice, { type: "echo", priority: -4 });

    // Act
    const response = await moveJob(ADMIN, c.id, { before: b.id });

    // Assess
    expect(response.status).toBe(200);
    expect(response.json).toMatchObject({ priority: 3, status: "queued" });
    const [pa, pb, pc] = [await position(a.id), await position(b.id), await position(c.id)];
    expect(pa).toBeLessThan(pc);
    expect(pc).toBeLessThan(pb);
    const last = (await transitions(ADMIN, c.id)).at(-1);
    expect(last).toMatchObject({ from: "queued", to: "queued", fromPriority: -4, toPriority: 3 });
    expect(last?.reason).toContain(b.id);
  });

  it("moves a second job into the same gap, ahead of the target and behind the first", async () => {
    const alice = people.next();
    const a = await submitJob(api, alice, { type: "echo", priority: 2 });
    const b = await submitJob(api, alice, { type: "echo", priority: 2 });
    const c = await submitJob(api, alice, { type: "echo", priority: 1 });
    const d = await submitJob(api, alice, { type: "echo", priority: 1 });

    await moveJob(ADMIN, c.id, { before: b.id });
    await moveJob(ADMIN, d.id, { before: b.id });

    const order = [await position(a.id), await position(c.id), await position(d.id), await position(b.id)];
    expect([...order].sort((x, y) => x - y)).toEqual(order);
    expect(new Set(order).size).toBe(4);
  });

  it("lets a plain priority change put a moved job back at its default place", async () => {
    const alice = people.next();
    const a = await submitJob(api, alice, { type: "echo", priority: 4 });
    const b = await submitJob(api, alice, { type: "echo", priority: 4 });
    await moveJob(ADMIN, b.id, { before: a.id });
    expect(await position(b.id)).toBeLessThan(await position(a.id));

    await api.request("PATCH", `/jobs/${b.id}`, { token: ADMIN.token, body: { priority: 4 } });

    expect(await position(a.id)).toBeLessThan(await position(b.id));
  });

  it("shows the moved job at its new place in the queue's admission order", async () => {
    // Prepare
    const alice = people.next();
    const a = await submitJob(api, alice, { type: "echo", pool: "gpu", priority: 9 });
    const b = await submitJob(api, alice, { type: "echo", pool: "gpu", priority: 9 });
    const c = await submitJob(api, alice, { type: "echo", pool: "gpu", priority: 9 });

    // Act
    await moveJob(ADMIN, c.id, { before: a.id });

    // Assess: queuePosition ranks the queue as GET /queue and a pass do (app/queue.ts); GET
    // /queue's first 100 may be other files' jobs here, which share the tables and have aged
    const [pc, pa, pb] = [await position(c.id), await position(a.id), await position(b.id)];
    expect(pc).toBeLessThan(pa);
    expect(pa).toBeLessThan(pb);
  });

  it("refuses a user with 403 forbidden", async () => {
    const alice = people.next();
    const a = await submitJob(api, alice, { type: "echo" });
    const b = await submitJob(api, alice, { type: "echo" });

    expectError(await moveJob(alice, b.id, { before: a.id }), 403, "forbidden");
  });

  it("refuses before with priority in one body with 400", async () => {
    const alice = people.next();
    const a = await submitJob(api, alice, { type: "echo" });
    const b = await submitJob(api, alice, { type: "echo" });

    const body = expectError(
      await moveJob(ADMIN, b.id, { before: a.id, priority: 1 }),
      400,
      "validation_failed",
    );

    expect(problemPaths(body)).toContain("before");
  });

  it("refuses a job that is not queued, either side, with 409", async () => {
    const alice = people.next();
    const parent = await submitJob(api, alice, { type: "echo" });
    const queued = await submitJob(api, alice, { type: "echo" });
    const blocked = await submitJob(api, alice, { type: "echo", dependsOn: [parent.id] });

    expectError(await moveJob(ADMIN, blocked.id, { before: queued.id }), 409, "invalid_transition");
    expectError(await moveJob(ADMIN, queued.id, { before: blocked.id }), 409, "invalid_transition");
  });

  it("refuses jobs of different queues with 400, itself with 400, and an unknown target with 404", async () => {
    const alice = people.next();
    const anyPool = await submitJob(api, alice, { type: "echo" });
    const cpu = await submitJob(api, alice, { type: "echo", pool: "cpu" });

    expectError(await moveJob(ADMIN, cpu.id, { before: anyPool.id }), 400, "validation_failed");
    expectError(await moveJob(ADMIN, cpu.id, { before: cpu.id }), 400, "validation_failed");
    expectError(await moveJob(ADMIN, cpu.id, { before: "job_unknown" }), 404, "not_found");
  });
});
