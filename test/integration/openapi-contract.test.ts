import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { JobqApiError, JobqClient, JobqUnreachableError } from "../../client";
import { circuitKey, closedCircuit } from "../../core/circuit";
import { ROUTES } from "../../functions/routes";
import { LOCAL_REGION } from "../../local/config";
import { createDocumentClient } from "../../store/dynamo";
import { NodeRepository } from "../../store/nodes";
import { PolicyRepository } from "../../store/policy";
import { startTestApi, type TestApi } from "../support/api";
import { ContractRecorder } from "../support/contract";

/**
 * The contract test: every route of ROUTES driven through the local API front (the real handler
 * modules on the shared DynamoDB Local) with the typed client, as a user would, and every answer
 * held to the OpenAPI document's schema for its route and status (test/support/contract.ts).
 * Also the client's own promises: typed errors with the contract's code, Retry-After, and a
 * distinct error when nothing answers.
 */

const run = randomBytes(4).toString("hex");
const USER = { token: `contract-${run}-user`, principal: `contract-${run}-u` };
const LIMITED = { token: `contract-${run}-limited`, principal: `contract-${run}-limited` };
const ADMIN = { token: `contract-${run}-admin`, principal: `contract-${run}-ops` };

const recorder = new ContractRecorder();
let api: TestApi;
let user: JobqClient;
let admin: JobqClient;
let anonymous: JobqClient;

beforeAll(async () => {
  api = await startTestApi({
    [USER.token]: { principal: USER.principal, role: "user" },
    [LIMITED.token]: { principal: LIMITED.principal, role: "user" },
    [ADMIN.token]: { principal: ADMIN.principal, role: "admin" },
  });
  const client = (token?: string) => new JobqClient({ url: api.url, token, fetch: recorder.fetch });
  user = client(USER.token);
  admin = client(ADMIN.token);
  anonymous = client();
});
afterAll(async () => {
  // PUT /admin/policy is shared by every test file: back to the defaults, as policy-api.test.ts leaves it.
  await admin?.putPolicy({});
  await api?.close();
});

/** The error a call fails with, which must be a JobqApiError. */
async function apiError(call: Promise<unknown>): Promise<JobqApiError> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(JobqApiError);
  return error as JobqApiError;
}

describe("every route through the client, every answer against the document", () => {
  it("answers each route with a body its documented schema accepts", async () => {
    // Service
    expect(await anonymous.health()).toMatchObject({ status: "ok" });
    expect(await anonymous.openapi()).toMatchObject({ openapi: "3.1.0" });

    // Jobs: submit, replay, a batch, read, list across pages, act
    const type = `contract-${run}`;
    const key = `contract-${run}-key`;
    const first = await user.submitAnswer(
      { type, payload: { n: 1 }, tags: { suite: "contract" } },
      { idempotencyKey: key },
    );
    expect(first.status).toBe(201);
    const replay = await user.submitAnswer(
      { type, payload: { n: 1 }, tags: { suite: "contract" } },
      { idempotencyKey: key },
    );
    expect(replay.status).toBe(200);
    expect(replay.body.id).toBe(first.body.id);
    const batch = await user.submitBatch({
      jobs: [
        { ref: "a", type },
        { ref: "b", type, dependsOn: ["a"], priority: "high" },
      ],
    });
    expect(Object.keys(batch.refs).sort()).toEqual(["a", "b"]);

    const job = await user.getJob(first.body.id);
    expect(job.id).toBe(first.body.id);
    const blocked = await user.getJob(batch.refs.b ?? "");
    expect(blocked.status).toBe("blocked");

    const listed: string[] = [];
    let pages = 0;
    for await (const page of user.jobPages({ type, limit: 1 })) {
      pages++;
      listed.push(...page.items.map((j) => j.id));
    }
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(listed.sort()).toEqual([first.body.id, ...Object.values(batch.refs)].sort());
    const all: string[] = [];
    for await (const each of user.jobs({ type, status: ["queued", "blocked", "scheduled"] }))
      all.push(each.id);
    expect(all).toHaveLength(3);

    expect((await user.setPriority(job.id, "critical")).priority).toBe(10);
    expect((await user.pause(job.id)).status).toBe("paused");
    expect((await user.resume(job.id)).status).not.toBe("paused");
    expect((await user.cancel(job.id)).status).toBe("cancelled");

    expect((await user.transitions(job.id)).items.length).toBeGreaterThan(0);
    expect((await user.attempts(job.id)).items).toEqual([]);
    expect((await user.logs(job.id, { limit: 10 })).items).toBeInstanceOf(Array);

    // Queue, pools, policy, quotas
    expect((await user.queue()).counts).toBeTypeOf("object");
    expect((await user.queue({ pool: "cpu" })).pools.map((p) => p.name)).toEqual(["cpu"]);
    expect(await user.pools({ lost: true })).toBeInstanceOf(Array);
    const policy = await admin.getPolicy();
    const { updatedAt: _at, updatedBy: _by, ...fields } = policy;
    // A PUT of the policy already stored writes nothing and answers who stored it: change a field
    // so this PUT is the one recorded, then put the policy back as it was.
    const aging = fields.agingSecondsPerStep === 300 ? 301 : 300;
    expect((await admin.putPolicy({ ...fields, agingSecondsPerStep: aging })).updatedBy).toBe(
      ADMIN.principal,
    );
    await admin.putPolicy(fields);
    expect((await admin.putQuota(USER.principal, { dailyGpuSeconds: 3600 })).limits.dailyGpuSeconds).toBe(
      3600,
    );
    expect((await user.getQuota(USER.principal)).principal).toBe(USER.principal);
    expect((await admin.putQuota(USER.principal, { maxPriority: "critical" })).limits.maxPriority).toBe(10);

    // Reorder (admins), retry, bulk cancel and retry
    const [ahead, behind] = [await user.submit({ type }), await user.submit({ type })];
    const moved = await admin.moveBefore(behind.id, ahead.id);
    expect(moved.id).toBe(behind.id);
    const moves = (await user.transitions(behind.id)).items.filter((t) => t.fromPriority !== null);
    expect(moves.length).toBeGreaterThan(0);
    expect((await user.retry(job.id)).status).not.toBe("cancelled");
    const bulkTag = `bulk:${run}`;
    const bulk = [
      await user.submit({ type, tags: { bulk: run } }),
      await user.submit({ type, tags: { bulk: run } }),
    ];
    const cancelled = await user.cancelJobs({ filter: { tag: bulkTag }, limit: 1 });
    expect(cancelled.acted).toHaveLength(1);
    expect(cancelled.nextCursor).not.toBeNull();
    const rest = await user.cancelJobs({
      filter: { tag: bulkTag },
      limit: 1,
      cursor: cancelled.nextCursor ?? "",
    });
    expect([...cancelled.acted, ...rest.acted].sort()).toEqual(bulk.map((b) => b.id).sort());
    const retried = await user.retryJobs({ filter: { tag: bulkTag, status: "cancelled" }, maxAttempts: 2 });
    expect(retried.acted.sort()).toEqual(bulk.map((b) => b.id).sort());
    expect(retried.skipped).toEqual([]);

    // Stats
    expect((await user.stats()).window).toBe("1h");
    expect((await admin.stats("5m")).window).toBe("5m");

    // Schedules: created disabled (no cron fire in the test), fired by hand
    const schedule = await user.createSchedule({
      name: `contract-${run}`,
      cron: "0 3 * * *",
      enabled: false,
      job: { type, tags: { suite: "contract" } },
    });
    expect(schedule.nextRunAt).toBeNull();
    const fired = await user.triggerSchedule(schedule.id, { idempotencyKey: `contract-${run}-fire` });
    expect(fired.outcome).toBe("submitted");
    const again = await user.triggerSchedule(schedule.id, { idempotencyKey: `contract-${run}-fire` });
    expect(again.outcome).toBe("replayed");
    // overlap=skip: the fired job has not ended, so a new fire submits nothing.
    expect((await user.updateSchedule(schedule.id, { overlap: "skip" })).overlap).toBe("skip");
    const held = await user.triggerSchedule(schedule.id);
    expect(held.outcome).toBe("skipped");
    const shown = await user.getSchedule(schedule.id);
    expect(shown.lastFires.map((f) => ("jobId" in f ? "job" : "skipped"))).toEqual(["skipped", "job"]);
    const mine: string[] = [];
    for await (const each of user.schedules({ limit: 1 })) mine.push(each.id);
    expect(mine).toContain(schedule.id);
    expect((await user.listJobs({ scheduleId: schedule.id })).items).toHaveLength(1);
    await user.deleteSchedule(schedule.id);
    expect(await apiError(user.getSchedule(schedule.id))).toMatchObject({ status: 404 });

    // Nodes: one of the test's own in the shared cpu pool, drained (202), drained again (200), removed
    const nodeId = `node-contract-${run}`;
    const nodes = new NodeRepository(
      createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") }),
      inject("tables").Nodes ?? "",
    );
    await nodes.register(
      { pool: "cpu", nodeId, workerId: `worker-${nodeId}`, capacity: { cpu: 1, memoryMb: 512, gpu: 0 } },
      new Date(),
    );
    try {
      expect(await admin.drainNode("cpu", nodeId)).toMatchObject({
        started: true,
        node: { status: "draining" },
      });
      expect((await admin.drainNode("cpu", nodeId)).started).toBe(false);
    } finally {
      await nodes.deregister("cpu", nodeId);
    }
    // Dependents, and the admin token routes (the secret once, never listed)
    const dependents = await user.dependents(batch.refs.a ?? "");
    expect(dependents.items.map((d) => d.id)).toEqual([batch.refs.b]);
    const created = await admin.createToken({ principal: `contract-${run}-t` });
    expect(created.token).toMatch(/^jq_/);
    const tokens: string[] = [];
    for await (const each of admin.tokens({ limit: 200 })) tokens.push(JSON.stringify(each));
    expect(tokens.some((t) => t.includes(created.id))).toBe(true);
    expect(tokens.some((t) => t.includes(created.token))).toBe(false);
    expect((await admin.revokeToken(created.id)).revokedAt).not.toBeNull();
    expect(await apiError(user.listTokens())).toMatchObject({ status: 403, code: "forbidden" });
    // The audit trail holds the token just revoked.
    const audit = await admin.listAudit({ kind: "token", limit: 200 });
    expect(audit.items.filter((r) => r.subject === created.id).map((r) => r.action)).toEqual([
      "revoke",
      "create",
    ]);

    // An array job's children, in index order
    const parent = await user.submit({ type, array: { size: 2 } });
    expect((await user.children(parent.id)).items.map((c) => c.arrayIndex)).toEqual([0, 1]);

    // Circuit breakers (admins): one written as a pass writes it, listed, reset
    const breakerType = `breaker-${run}`;
    const circuits = new PolicyRepository(
      createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") }),
      inject("tables").Policy ?? "",
    ).circuitRepository();
    const fresh = closedCircuit(circuitKey(breakerType, null), new Date().toISOString());
    await circuits.save({ next: { ...fresh, version: 1 }, transition: null });
    expect((await admin.listCircuits()).items.map((c) => c.type)).toContain(breakerType);
    expect((await admin.resetCircuit(breakerType)).state).toBe("closed");

    // Export a page (NDJSON, each line against the document) and import a line of it back
    const page = await admin.exportPage({ limit: 5 });
    expect(page.nextCursor).not.toBeNull();
    const header = page.text.split("\n")[0] ?? "";
    const quota = JSON.stringify({
      kind: "quota",
      item: { principal: `contract-${run}-q`, maxQueuedJobs: 5 },
    });
    expect((await admin.importLines(`${header}\n${quota}\n`)).imported.quota).toBe(1);
    expect((await admin.importLines(`${quota}\n`)).skipped.quota).toBe(1);

    // Assess: every route answered 2xx, and nothing broke the document
    const untested = ROUTES.filter((route) => !recorder.succeeded().has(route.id)).map((r) => r.id);
    expect(untested, "routes this test never got a 2xx from").toEqual([]);
    expect(recorder.violations).toEqual([]);
  });

  it("answers errors in the contract's format with a code the route documents for the status", async () => {
    // 401, 404, 400 with details, 409, 403
    expect(await apiError(anonymous.listJobs())).toMatchObject({ status: 401, code: "unauthorized" });
    expect(await apiError(user.getJob(`job_${run}_missing`))).toMatchObject({
      status: 404,
      code: "not_found",
    });
    const invalid = await apiError(user.submit({ type: "Not A Type", retry: { maxAttempts: 0 } }));
    expect(invalid).toMatchObject({ status: 400, code: "validation_failed" });
    expect((invalid.details as { path: string }[]).map((p) => p.path).sort()).toEqual([
      "retry.maxAttempts",
      "type",
    ]);
    const done = await user.submit({ type: `contract-${run}` });
    await user.cancel(done.id);
    expect(await apiError(user.cancel(done.id))).toMatchObject({ status: 409, code: "invalid_transition" });
    expect(await apiError(user.getPolicy())).toMatchObject({ status: 403, code: "forbidden" });
    expect(await apiError(user.listJobs({ limit: 0 }))).toMatchObject({
      status: 400,
      code: "validation_failed",
    });
    // The new routes' documented refusals: retry of a job that has not ended, reordering as a
    // user, another principal's schedules, a bulk body with a filter GET /jobs does not know.
    const waiting = await user.submit({ type: `contract-${run}` });
    expect(await apiError(user.retry(waiting.id))).toMatchObject({ status: 409, code: "invalid_transition" });
    expect(await apiError(user.moveBefore(waiting.id, done.id))).toMatchObject({
      status: 403,
      code: "forbidden",
    });
    expect(await apiError(user.listSchedules({ owner: ADMIN.principal }))).toMatchObject({
      status: 403,
      code: "forbidden",
    });
    expect(
      await apiError(user.cancelJobs({ filter: { nope: "x" } as unknown as { type: string } })),
    ).toMatchObject({ status: 400, code: "validation_failed" });
    expect(await apiError(user.stats("1y" as "1h"))).toMatchObject({
      status: 400,
      code: "validation_failed",
    });
    expect(await apiError(user.triggerSchedule("sch_missing"))).toMatchObject({
      status: 404,
      code: "not_found",
    });

    expect(recorder.violations).toEqual([]);
  });

  it("carries Retry-After on a 429 as retryAfterSeconds", async () => {
    // Prepare: a principal allowed no job that has not started
    await admin.putQuota(LIMITED.principal, { maxQueuedJobs: 0 });
    const limited = new JobqClient({ url: api.url, token: LIMITED.token, fetch: recorder.fetch });

    // Act
    const refused = await apiError(limited.submit({ type: `contract-${run}` }));

    // Assess
    expect(refused).toMatchObject({ status: 429, code: "too_many_requests" });
    expect(refused.retryAfterSeconds).toBeGreaterThan(0);
    expect(recorder.violations).toEqual([]);
  });

  it("fails with JobqUnreachableError, not a JobqApiError, when nothing answers", async () => {
    // Port 1 on loopback: nothing listens there, the connection is refused.
    const nowhere = new JobqClient({ url: "http://127.0.0.1:1", token: USER.token });
    const error = await nowhere.health().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobqUnreachableError);
    expect(error).not.toBeInstanceOf(JobqApiError);
  });
});
