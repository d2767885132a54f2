import { ulid } from "ulid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeCursor } from "../../store/cursor";
import { startTestApi, type TestApi } from "../support/api";
import {
  ADMIN,
  ALICE,
  type Attempt,
  expectError,
  getJob,
  type ListPage,
  problemPaths,
  submitJob,
  type Transition,
  uniqueType,
} from "../support/jobs";

/**
 * GET /admin/export and POST /admin/import through HTTP against the shared DynamoDB Local: only
 * admins, cursors and lines checked before anything is read or written, the import create-only
 * (a second import skips everything), and a job the old stack was running restored as queued
 * with its history. The tables are shared with every file, so each test finds its own records by
 * id; the restore drill of a whole stack is test/e2e/restore.test.ts.
 */

let api: TestApi;

beforeAll(async () => {
  api = await startTestApi();
});
afterAll(() => api?.close());

interface Line {
  kind: string;
  jobId?: string;
  nextCursor?: string | null;
  item?: Record<string, unknown>;
  [field: string]: unknown;
}

async function exportText(
  query: string,
  token = ADMIN.token,
): Promise<{ status: number; text: string; type: string }> {
  const response = await fetch(`${api.url}/admin/export${query}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return {
    status: response.status,
    text: await response.text(),
    type: response.headers.get("content-type") ?? "",
  };
}

/** Every line of the export, following the cursors. */
async function exportAll(): Promise<Line[]> {
  const lines: Line[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 10_000; pages++) {
    const query: string = `?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const page = await exportText(query);
    expect(page.status, page.text.slice(0, 500)).toBe(200);
    const parsed = page.text
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Line);
    const last = parsed.at(-1);
    expect(last?.kind).toBe("cursor");
    lines.push(...parsed.slice(0, -1));
    cursor = last?.nextCursor ?? null;
    if (cursor === null) return lines;
  }
  throw new Error("the export never ended");
}

function importLines(lines: readonly unknown[], token = ADMIN.token) {
  return api.request<{
    imported: Record<string, number>;
    skipped: Record<string, number>;
    requeued: number;
  }>("POST", "/admin/import", {
    token,
    body: `${lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n")}\n`,
    headers: { "content-type": "application/x-ndjson" },
  });
}

describe("admin only", () => {
  it("answers a user's export and import with 403 in the contract's format", async () => {
    const page = await exportText("", ALICE.token);
    expect(page.status).toBe(403);
    expect(JSON.parse(page.text)).toMatchObject({ error: { code: "forbidden" } });
    expectError(await importLines(["not even json"], ALICE.token), 403, "forbidden");
  });
});

describe("GET /admin/export", () => {
  it("answers NDJSON, the header line first and the cursor line last", async () => {
    const page = await exportText("?limit=5");
    expect(page.status).toBe(200);
    expect(page.type).toMatch(/^application\/x-ndjson/);
    const lines = page.text
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Line);
    expect(lines[0]).toMatchObject({ kind: "header", format: "jobq-export", version: 1 });
    expect(lines.at(-1)).toMatchObject({ kind: "cursor", nextCursor: expect.any(String) });
  });

  it.each([
    ["not base64 JSON", "!!!"],
    ["JSON of another shape", encodeCursor({ after: "job_01ARZ3NDEKTSV4RRFFQ69G5FAV" })],
    ["a key no table holds", encodeCursor({ table: "jobs", pk: "JOB#x\u0000", sk: "JOB" })],
    ["an empty key", encodeCursor({ table: "policy", pk: "", sk: "POLICY" })],
    ["a key with more fields", encodeCursor({ table: "jobs", pk: "META", sk: "FIRST_DAY", extra: 1 })],
    ["an unknown table", encodeCursor({ table: "tokens", pk: "POLICY", sk: "POLICY" })],
  ])("refuses a cursor that is %s with a 400", async (_what, cursor) => {
    const page = await exportText(`?cursor=${encodeURIComponent(cursor)}`);
    expect(page.status).toBe(400);
    expect(JSON.parse(page.text)).toMatchObject({
      error: { code: "validation_failed", details: [{ path: "cursor" }] },
    });
  });

  it.each(["0", "1001", "ten"])("refuses limit=%s with a 400", async (limit) => {
    const page = await exportText(`?limit=${limit}`);
    expect(page.status).toBe(400);
    expect(JSON.parse(page.text)).toMatchObject({ error: { code: "validation_failed" } });
  });
});

describe("POST /admin/import", () => {
  it("refuses a request with bad lines, naming each, and writes none of its lines", async () => {
    const id = `job_${ulid()}`;
    const good = jobLine(id, { status: "completed" });
    const response = await importLines([
      good,
      "{not json",
      { kind: "job", item: { ...good.item, id: "job_forged" } },
      { kind: "attempt", jobId: id, item: { attempt: 0, status: "running" } },
      { kind: "tokens", item: {} },
    ]);
    const body = expectError(response, 400, "validation_failed");
    expect(problemPaths(body)).toEqual(["line 2", "line 3", "line 4", "line 5"]);
    expectError(await api.request("GET", `/jobs/${id}`, { token: ADMIN.token }), 404, "not_found");
  });

  it("refuses an empty body with a 400", async () => {
    expectError(await importLines([]), 400, "validation_failed");
  });

  it("round-trips exported lines: importing them again skips every one", async () => {
    const type = uniqueType("export");
    // Born scheduled, so its creation record is stored (a job born queued has none: reads derive it).
    const job = await submitJob(api, ALICE, {
      type,
      payload: { keep: [1, 2, 3] },
      runAt: "2099-01-01T00:00:00Z",
    });
    const mine = (await exportAll()).filter((l) => l.jobId === job.id || l.item?.id === job.id);
    expect(mine.map((l) => l.kind).sort()).toEqual(["job", "transition"]);
    expect(JSON.parse(String(mine.find((l) => l.kind === "job")?.item?.payloadJson))).toEqual({
      keep: [1, 2, 3],
    });

    const again = await importLines(mine);
    expect(again.status, JSON.stringify(again.json)).toBe(200);
    expect(again.json.imported).toMatchObject({ job: 0, transition: 0 });
    expect(again.json.skipped).toMatchObject({ job: 1, transition: 1 });
  });

  it("carries the audit trail: an exported record skips on re-import, a new one lands in GET /admin/audit", async () => {
    // Prepare: an audited change (a quota of a principal of this test's own)
    const subject = `export-audit-${ulid().toLowerCase()}`;
    const put = await api.request("PUT", `/quotas/${subject}`, {
      token: ADMIN.token,
      body: { maxQueuedJobs: 7 },
    });
    expect(put.status, JSON.stringify(put.json)).toBe(200);

    // Act
    const audit = (await exportAll()).filter((l) => l.kind === "audit" && l.item?.subject === subject);
    const again = await importLines(audit);
    const moved = { kind: "audit", item: { ...audit[0]?.item, subject: `${subject}-moved` } };
    const fresh = await importLines([moved]);

    // Assess
    expect(audit).toHaveLength(1);
    expect(audit[0]?.item).toMatchObject({ kind: "quota", action: "update", principal: ADMIN.principal });
    expect(again.json.skipped).toMatchObject({ audit: 1 });
    expect(fresh.json.imported).toMatchObject({ audit: 1 });
    const listed = await api.request<{ items: { subject: string; after: unknown }[] }>(
      "GET",
      "/admin/audit?kind=quota&limit=200",
      { token: ADMIN.token },
    );
    const record = listed.json.items.find((r) => r.subject === `${subject}-moved`);
    expect(record?.after).toMatchObject({ maxQueuedJobs: 7 });
  });

  it("restores a job the old stack was running as queued, its attempt lost, with its history", async () => {
    const id = `job_${ulid()}`;
    const startedAt = new Date(Date.now() - 60_000).toISOString();
    const lines = [
      jobLine(id, {
        status: "running",
        version: 3,
        attempts: 1,
        startedAt,
        attemptStartedAt: startedAt,
        reservation: { pool: "cpu", nodeId: "node-old", cpu: 1, memoryMb: 128, gpu: 0 },
        executionArn: "arn:aws:states:us-east-1:123456789012:execution:old:x",
      }),
      transition(id, 1, null, "queued"),
      transition(id, 2, "queued", "dispatched"),
      transition(id, 3, "dispatched", "running"),
      {
        kind: "attempt",
        jobId: id,
        item: {
          attempt: 1,
          status: "running",
          startedAt,
          finishedAt: null,
          durationMs: null,
          nodeId: "node-old",
        },
      },
    ];
    const first = await importLines(lines);
    expect(first.status, JSON.stringify(first.json)).toBe(200);
    expect(first.json).toMatchObject({
      imported: { job: 1, transition: 3, attempt: 1 },
      skipped: { job: 0 },
      requeued: 1,
    });

    const restored = await getJob(api, ADMIN, id);
    expect(restored).toMatchObject({ status: "queued", version: 4, owner: "alice" });
    expect(restored.statusReason).toMatch(/restored from an export/);
    const transitions = await api.request<ListPage<Transition>>("GET", `/jobs/${id}/transitions`, {
      token: ADMIN.token,
    });
    expect(transitions.json.items.map((t) => `${t.from}→${t.to}`)).toEqual([
      "null→queued",
      "queued→dispatched",
      "dispatched→running",
      "running→queued",
    ]);
    const attempts = await api.request<ListPage<Attempt>>("GET", `/jobs/${id}/attempts`, {
      token: ALICE.token,
    });
    expect(attempts.json.items).toMatchObject([{ attempt: 1, status: "lost", error: { type: "lost" } }]);

    // The same lines again: nothing changes, everything is counted as already there.
    const second = await importLines(lines);
    expect(second.json).toMatchObject({
      imported: { job: 0, transition: 0, attempt: 0 },
      skipped: { job: 1, transition: 3, attempt: 1 },
      requeued: 0,
    });
    expect(await getJob(api, ADMIN, id)).toMatchObject({ status: "queued", version: 4 });
  });
});

function jobLine(
  id: string,
  fields: Record<string, unknown>,
): { kind: "job"; item: Record<string, unknown> } {
  const at = new Date(Date.now() - 120_000).toISOString();
  return {
    kind: "job",
    item: {
      id,
      name: null,
      type: "export-test",
      status: "queued",
      statusReason: "waiting",
      reasonCode: null,
      priority: 0,
      owner: "alice",
      error: null,
      resources: { cpu: 1, memoryMb: 128, gpu: 0 },
      pool: "cpu",
      dependsOn: [],
      retry: {
        maxAttempts: 1,
        strategy: "exponential",
        initialDelaySeconds: 1,
        backoffMultiplier: 2,
        maxDelaySeconds: 60,
      },
      timeoutSeconds: 60,
      attempts: 0,
      runAt: null,
      deadline: null,
      offPeakOnly: false,
      onFailure: null,
      escalatedTo: null,
      scheduleId: null,
      createdAt: at,
      updatedAt: at,
      startedAt: null,
      finishedAt: null,
      nextAttemptAt: null,
      version: 1,
      unmet: 0,
      entity: "job",
      payloadJson: "null",
      tagsJson: "{}",
      constraintsJson: "{}",
      ...fields,
    },
  };
}

function transition(id: string, version: number, from: string | null, to: string) {
  return {
    kind: "transition",
    jobId: id,
    version,
    item: {
      entity: "transition",
      level: "info",
      from,
      to,
      at: new Date().toISOString(),
      reason: "test",
      triggeredBy: null,
      attempt: 0,
    },
  };
}
