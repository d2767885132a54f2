import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run as jobq } from "../../cli/program";
import { ROUTES } from "../../functions/routes";
import { startTestApi, type TestApi, type TestResponse } from "../support/api";
import { type Actor, expectError, type Job, type ListPage } from "../support/jobs";
import { sharedNodes, suffix } from "../support/scheduling";
import { openStream } from "../support/stream";

/**
 * GET /admin/audit and the read-only roles through HTTP against the shared DynamoDB Local. The
 * audit partition is shared with every file of the run, so each test acts as an admin principal of
 * its own and reads only that principal's records since the test began.
 */

interface AuditRecord {
  id: string;
  at: string;
  principal: string;
  kind: string;
  subject: string;
  action: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

const run = suffix();
/** This file's admin, so the records it reads are its own. */
const OPS: Actor = { principal: `audit-ops-${run}`, token: `audit-ops-token-${run}` };
const USER: Actor = { principal: `audit-user-${run}`, token: `audit-user-token-${run}` };
/** Reads what USER sees, changes nothing. */
const READER: Actor = { principal: USER.principal, token: `audit-reader-token-${run}` };
/** Reads what an admin sees, changes nothing. */
const AUDITOR: Actor = { principal: `audit-auditor-${run}`, token: `audit-auditor-token-${run}` };

let api: TestApi;
let started: string;

beforeAll(async () => {
  started = new Date().toISOString();
  api = await startTestApi({
    [OPS.token]: { principal: OPS.principal, role: "admin" },
    [USER.token]: { principal: USER.principal, role: "user" },
    [READER.token]: { principal: READER.principal, role: "reader" },
    [AUDITOR.token]: { principal: AUDITOR.principal, role: "auditor" },
  });
});
afterAll(() => api?.close());

/** Every record of `kind` this file's admin left since the file began, newest first, page by page. */
async function recordsOf(kind: string, subject?: string): Promise<AuditRecord[]> {
  const items: AuditRecord[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const query: string = `?kind=${kind}&since=${encodeURIComponent(started)}&limit=2${
      cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""
    }`;
    const response: TestResponse<ListPage<AuditRecord>> = await api.request<ListPage<AuditRecord>>(
      "GET",
      `/admin/audit${query}`,
      {
        token: AUDITOR.token,
      },
    );
    expect(response.status, JSON.stringify(response.json)).toBe(200);
    items.push(...response.json.items);
    cursor = response.json.nextCursor;
    if (cursor === null) break;
  }
  return items.filter(
    (r) => r.principal === OPS.principal && (subject === undefined || r.subject === subject),
  );
}

async function send<T = unknown>(actor: Actor, method: string, path: string, body?: unknown) {
  return api.request<T>(method, path, { token: actor.token, ...(body === undefined ? {} : { body }) });
}

describe("GET /admin/audit: each kind of change leaves one record with before and after", () => {
  it("records a policy change once, however often the same PUT is retried", async () => {
    // Prepare
    const type = `audit-type-${run}`;
    const before = await send<Record<string, unknown>>(OPS, "GET", "/admin/policy");
    const policy = { algorithm: "priority", typeConcurrency: { [type]: 2 } };

    // Act
    const first = await send(OPS, "PUT", "/admin/policy", policy);
    const retried = await send(OPS, "PUT", "/admin/policy", policy);
    const records = (await recordsOf("policy")).filter(
      (r) => (r.after?.typeConcurrency as Record<string, number> | undefined)?.[type] === 2,
    );

    // Assess
    expect(first.status).toBe(200);
    expect(retried.status).toBe(200);
    expect(records).toHaveLength(1);
    const [record] = records;
    expect(record).toMatchObject({ kind: "policy", subject: "policy", action: "update" });
    expect(record?.after).toMatchObject({ algorithm: "priority", typeConcurrency: { [type]: 2 } });
    // Before is the stored policy, or null when none had been stored (the defaults applied).
    if (before.json.updatedAt === null) expect(record?.before).toBeNull();
    else expect(record?.before).not.toBeNull();
  });

  it("records each quota change with the limits before and after, a retried PUT once", async () => {
    // Prepare
    const subject = `audit-quota-${run}`;

    // Act
    await send(OPS, "PUT", `/quotas/${subject}`, { dailyGpuSeconds: 10 });
    await send(OPS, "PUT", `/quotas/${subject}`, { dailyGpuSeconds: 10 });
    await send(OPS, "PUT", `/quotas/${subject}`, { dailyGpuSeconds: 20, maxQueuedJobs: 5 });
    const records = await recordsOf("quota", subject);

    // Assess
    expect(records.map((r) => [r.before?.dailyGpuSeconds ?? null, r.after?.dailyGpuSeconds])).toEqual([
      [10, 20],
      [null, 10],
    ]);
    expect(records[1]?.before).toBeNull();
    expect(records[0]?.after).toMatchObject({
      dailyGpuSeconds: 20,
      maxQueuedJobs: 5,
      weeklyGpuSeconds: null,
    });
  });

  it("records a token's creation and its revocation once, never its secret or hash", async () => {
    // Prepare
    const created = await send<{ id: string; token: string }>(OPS, "POST", "/admin/tokens", {
      principal: `audit-tok-${run}`,
      role: "reader",
    });
    expect(created.status).toBe(201);

    // Act
    await send(OPS, "DELETE", `/admin/tokens/${created.json.id}`);
    await send(OPS, "DELETE", `/admin/tokens/${created.json.id}`);
    const records = await recordsOf("token", created.json.id);

    // Assess
    expect(records.map((r) => r.action)).toEqual(["revoke", "create"]);
    expect(records[1]).toMatchObject({ before: null, after: { role: "reader", revokedAt: null } });
    expect(records[0]?.before).toMatchObject({ revokedAt: null });
    expect(records[0]?.after?.revokedAt).toEqual(expect.any(String));
    const text = JSON.stringify(records);
    expect(text).not.toContain(created.json.token);
    expect(text).not.toMatch(/[0-9a-f]{64}/);
  });

  it("records a schedule's create, disable, update and delete; a repeated PATCH once", async () => {
    // Prepare
    const created = await send<{ id: string }>(OPS, "POST", "/schedules", {
      name: "audited",
      cron: "0 2 * * *",
      timezone: "UTC",
      job: { type: "echo" },
    });
    expect(created.status).toBe(201);
    const id = created.json.id;

    // Act
    await send(OPS, "PATCH", `/schedules/${id}`, { enabled: false });
    await send(OPS, "PATCH", `/schedules/${id}`, { enabled: false });
    await send(OPS, "PATCH", `/schedules/${id}`, { name: "renamed" });
    const deleted = await send(OPS, "DELETE", `/schedules/${id}`);
    const records = await recordsOf("schedule", id);

    // Assess
    expect(deleted.status).toBe(204);
    expect(records.map((r) => r.action)).toEqual(["delete", "update", "disable", "create"]);
    expect(records[3]).toMatchObject({ before: null, after: { name: "audited", enabled: true } });
    expect(records[2]).toMatchObject({ before: { enabled: true }, after: { enabled: false } });
    expect(records[1]).toMatchObject({ before: { name: "audited" }, after: { name: "renamed" } });
    expect(records[0]).toMatchObject({ before: { name: "renamed" }, after: null });
  });

  it("records a node drain once, a repeated drain not at all", async () => {
    // Prepare
    const nodeId = `node-audit-${run}`;
    await sharedNodes().register(
      { pool: "cpu", nodeId, workerId: `worker-${nodeId}`, capacity: { cpu: 1, memoryMb: 256, gpu: 0 } },
      new Date(),
    );
    try {
      // Act
      const first = await send(OPS, "POST", `/pools/cpu/nodes/${nodeId}/drain`);
      const again = await send(OPS, "POST", `/pools/cpu/nodes/${nodeId}/drain`);
      const records = await recordsOf("node", `cpu/${nodeId}`);

      // Assess
      expect([first.status, again.status]).toEqual([202, 200]);
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({
        action: "drain",
        before: { status: "up" },
        after: { status: "draining", drainedBy: OPS.principal },
      });
    } finally {
      await sharedNodes().deregister("cpu", nodeId);
    }
  });
});

describe("GET /admin/audit: who may read it, and bad input", () => {
  it("is 403 for a user and a reader, 200 for an admin and an auditor", async () => {
    const [user, reader, admin, auditor] = await Promise.all(
      [USER, READER, OPS, AUDITOR].map((actor) => send(actor, "GET", "/admin/audit")),
    );
    if (!user || !reader || !admin || !auditor) throw new Error("four answers expected");
    expectError(user, 403, "forbidden");
    expectError(reader, 403, "forbidden");
    expect([admin.status, auditor.status]).toEqual([200, 200]);
  });

  it("answers 400 for a cursor it did not write, an unknown kind, a bad since", async () => {
    const forged = Buffer.from(JSON.stringify({ before: "AUDIT" })).toString("base64url");
    for (const query of [`cursor=${forged}`, "cursor=%%%", "kind=job", "since=yesterday", "limit=0"]) {
      const response = await send(OPS, "GET", `/admin/audit?${query}`);
      expectError(response, 400, "validation_failed");
    }
  });
});

describe("reader tokens read everything their principal sees and change nothing", () => {
  it("reads jobs, a job and stats, and opens the stream", async () => {
    // Prepare
    const submitted = await send<Job>(USER, "POST", "/jobs", { type: "echo" });
    expect(submitted.status).toBe(201);

    // Act
    const list = await send<ListPage<Job>>(READER, "GET", "/jobs");
    const job = await send<Job>(READER, "GET", `/jobs/${submitted.json.id}`);
    const stats = await send(READER, "GET", "/stats");
    const stream = await openStream(api.streamUrl, READER.token);
    stream.send({ action: "ping" });
    const pong = await stream.waitFor((m) => m.type === "pong");
    stream.close();

    // Assess
    expect(list.status).toBe(200);
    expect(list.json.items.map((j) => j.id)).toContain(submitted.json.id);
    expect(job.status).toBe(200);
    expect(job.json.owner).toBe(USER.principal);
    expect(stats.status).toBe(200);
    expect(pong).toEqual({ type: "pong" });
  });

  it("is refused with 403 on POST /jobs, PATCH, cancel, and PUT /admin/policy (an auditor too)", async () => {
    // Prepare
    const submitted = await send<Job>(USER, "POST", "/jobs", { type: "echo", priority: "low" });

    // Act
    const answers = [
      await send(READER, "POST", "/jobs", { type: "echo" }),
      await send(READER, "PATCH", `/jobs/${submitted.json.id}`, { priority: "high" }),
      await send(READER, "PATCH", `/jobs/${submitted.json.id}/cancel`),
      await send(READER, "DELETE", "/admin/tokens/000000000000"),
      await send(READER, "PUT", "/admin/policy", { algorithm: "priority" }),
      await send(AUDITOR, "PUT", "/admin/policy", { algorithm: "priority" }),
      await send(AUDITOR, "POST", "/jobs", { type: "echo" }),
    ];
    const after = await send<Job>(USER, "GET", `/jobs/${submitted.json.id}`);

    // Assess
    for (const answer of answers) {
      const body = expectError(answer, 403, "forbidden");
      expect(body.error.message).toMatch(/read-only/);
    }
    expect(after.json.priority).toBe(-5);
  });

  it("every route of the table that is not a GET refuses a reader with 403", async () => {
    const mutating = ROUTES.filter((r) => r.authorized && r.method !== "GET");
    expect(mutating.length).toBeGreaterThan(10);
    for (const route of mutating) {
      const path = route.path.replace(/\{[^}]+\}/g, "x");
      const response = await send(READER, route.method, path, {});
      expect(response.status, `${route.method} ${route.path}`).toBe(403);
      expect((response.json as { error: { code: string } }).error.code).toBe("forbidden");
    }
  });
});

describe("jobq tokens create --reader", () => {
  it("makes a reader token, and with --admin an auditor token", async () => {
    // Prepare
    let out = "";
    const io = (env: Record<string, string>) => ({
      out: {
        isTTY: false,
        write: (chunk: string) => {
          out += chunk;
        },
      },
      err: { isTTY: false, write: () => undefined },
      env,
    });
    const env = { JOBQ_URL: api.url, JOBQ_TOKEN: OPS.token };

    // Act
    const reader = await jobq(
      ["tokens", "create", "--principal", `audit-cli-${run}`, "--reader", "--json"],
      io(env),
    );
    const readerAnswer = JSON.parse(out) as { role: string; token: string };
    out = "";
    const auditor = await jobq(
      ["tokens", "create", "--principal", `audit-cli-${run}`, "--reader", "--admin", "--json"],
      io(env),
    );
    const auditorAnswer = JSON.parse(out) as { role: string };
    const refused = await api.request("POST", "/jobs", { token: readerAnswer.token, body: { type: "echo" } });

    // Assess
    expect([reader, auditor]).toEqual([0, 0]);
    expect([readerAnswer.role, auditorAnswer.role]).toEqual(["reader", "auditor"]);
    expectError(refused, 403, "forbidden");
  });
});
