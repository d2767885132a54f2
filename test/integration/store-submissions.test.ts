import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, inject, it } from "vitest";
import { LOCAL_REGION } from "../../local/config";
import { createDocumentClient } from "../../store/dynamo";
import { IdempotencyClaims, type IdempotencyRecord } from "../../store/idempotency-claims";
import { type JobItem, toJobItem, transitionItem } from "../../store/job-items";
import { countQueued, jobHistoryPage, listIdsBetween, queuedBetween } from "../../store/job-queries";
import { JobRepository } from "../../store/job-repository";
import {
  dependsOnSk,
  IDEMPOTENCY_SK,
  JOB_SK,
  jobPk,
  LOG_PREFIX,
  logSk,
  ownerPk,
  queuePk,
  queueRankPrefix,
} from "../../store/keys";
import { commitStagedJobs, createJobs, deleteStagedJob, type NewJob } from "../../store/submissions";
import { JOB_INDEX } from "../../store/tables";
import { seededJob } from "../support/jobs";
import { partitionItems } from "../support/partitions";

/**
 * The store's submission verbs (store/submissions.ts, store/idempotency-claims.ts,
 * JobRepository#markDependencyMet, store/job-queries.ts) against DynamoDB Local: each typed
 * outcome produced by the real condition that makes it, so a use case can rely on the outcome
 * instead of reading DynamoDB's cancellation reasons itself.
 */

const tables = inject("tables");
const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
const repo = new JobRepository(db, tables.Jobs ?? "");
const claims = new IdempotencyClaims(repo);
afterAll(() => db.destroy());

const AT = "2026-12-06T12:00:00.000Z";

function newId(): string {
  // Job ids are ULID-shaped (26 characters); the queue and list keys sort by them.
  return `job_${randomUUID().replaceAll("-", "").slice(0, 26).toUpperCase()}`;
}

function jobItem(
  fields: { id?: string; owner?: string; status?: JobItem["status"]; priority?: number; pool?: string } = {},
  unmet = 0,
  staged = false,
): JobItem {
  const job = seededJob({
    id: fields.id ?? newId(),
    type: "echo",
    status: fields.status ?? "queued",
    owner: fields.owner ?? "store-submissions",
    createdAt: AT,
    priority: fields.priority ?? 0,
    pool: fields.pool ?? null,
    finishedAt: null,
  });
  return toJobItem(job, unmet, staged);
}

function newJob(item: JobItem, edges: Record<string, unknown>[] = []): NewJob {
  const transition = transitionItem(
    item.id,
    item.version,
    { from: null, to: item.status, at: AT, reason: "submitted", triggeredBy: item.owner, attempt: 0 },
    repo.historyExpiresAt(AT, false),
  );
  return { item, transition, edges };
}

function claimRecord(state: IdempotencyRecord["state"] = "pending"): IdempotencyRecord {
  return {
    pk: `IDEM#store-submissions#${randomUUID()}`,
    sk: IDEMPOTENCY_SK,
    requestHash: "hash",
    state,
    jobIds: [newId()],
    token: randomUUID(),
    claimedAt: Date.parse(AT),
    expiresAt: Math.floor(Date.parse(AT) / 1000) + 86_400,
  };
}

async function jobOf(id: string): Promise<Record<string, unknown> | undefined> {
  return repo.getItem({ pk: jobPk(id), sk: JOB_SK });
}

describe("IdempotencyClaims", () => {
  it("creates a claim once; a second create of the key answers false", async () => {
    // Prepare
    const record = claimRecord();

    // Act
    const first = await claims.create(record);
    const second = await claims.create({ ...record, token: randomUUID() });

    // Assess
    expect(first).toBe(true);
    expect(second).toBe(false);
    expect(await claims.read(record.pk)).toMatchObject({ token: record.token, state: "pending" });
  });

  it("moves, reassigns and releases only the owner's claim; a lost claim answers false and stays", async () => {
    // Prepare
    const record = claimRecord();
    await claims.create(record);
    const stranger: IdempotencyRecord = { ...record, token: randomUUID() };

    // Act
    const strangerMoved = await claims.move(stranger, "pending", "committing");
    const strangerReassigned = await claims.reassign(stranger, ["job_X"]);
    const strangerReleased = await claims.release(stranger);
    const reassigned = await claims.reassign(record, ["job_A", "job_B"]);
    const moved = await claims.move(record, "pending", "committing");
    const releasedOnceCommitting = await claims.release(record);

    // Assess
    expect([strangerMoved, strangerReassigned, strangerReleased]).toEqual([false, false, false]);
    expect([reassigned, moved, releasedOnceCommitting]).toEqual([true, true, false]);
    expect(await claims.read(record.pk)).toMatchObject({ state: "committing", jobIds: ["job_A", "job_B"] });
  });

  it("replaces a claim only while it is as read (state and token)", async () => {
    // Prepare
    const record = claimRecord();
    await claims.create(record);
    const takeover: IdempotencyRecord = { ...record, token: randomUUID(), claimedAt: record.claimedAt + 1 };

    // Act
    const first = await claims.replace(record, takeover);
    const again = await claims.replace(record, { ...takeover, token: randomUUID() });

    // Assess
    expect([first, again]).toEqual([true, false]);
    expect((await claims.read(record.pk))?.token).toBe(takeover.token);
  });

  it("fences a claim written before tokens by its claimedAt", async () => {
    // Prepare
    const { token: _token, ...legacy } = claimRecord();
    await claims.create(legacy);

    // Act
    const wrongTime = await claims.move(
      { ...legacy, claimedAt: legacy.claimedAt + 1 },
      "pending",
      "complete",
    );
    const moved = await claims.move(legacy, "pending", "complete");

    // Assess
    expect([wrongTime, moved]).toEqual([false, true]);
  });
});

describe("createJobs", () => {
  it("writes a lone job and its transition; the same job again answers changed", async () => {
    // Prepare
    const job = newJob(jobItem());

    // Act
    const first = await createJobs(repo, [job], []);
    const again = await createJobs(repo, [job], []);

    // Assess
    expect(first).toEqual({ ok: true });
    expect(again).toMatchObject({ ok: false, reason: "changed" });
    expect((await partitionItems(db, repo.tableName, job.item.id)).map((i) => i.sk)).toEqual([
      JOB_SK,
      "TRN#0000000001",
    ]);
  });

  it("answers changed, writing nothing, when a dependency's version moved since it was read", async () => {
    // Prepare
    const parent = jobItem({ status: "running" });
    await createJobs(repo, [newJob(parent)], []);
    const asRead = { ...parent, version: parent.version - 1 } as JobItem;
    const child = jobItem({ status: "blocked" }, 1);
    const edge = { pk: jobPk(child.id), sk: dependsOnSk(parent.id), entity: "dependency", met: false };

    // Act
    const outcome = await createJobs(repo, [newJob(child, [edge])], [asRead]);

    // Assess
    expect(outcome).toMatchObject({ ok: false, reason: "changed" });
    expect(await partitionItems(db, repo.tableName, child.id)).toEqual([]);
  });

  it("answers claim_lost, writing nothing, when the claim is not the request's any more", async () => {
    // Prepare
    const record = claimRecord();
    await claims.create(record);
    const lost: IdempotencyRecord = { ...record, token: randomUUID() };
    const job = newJob(jobItem());

    // Act
    const outcome = await createJobs(repo, [job], [], claims.movePart(lost, "pending", "complete"));

    // Assess
    expect(outcome).toMatchObject({ ok: false, reason: "claim_lost" });
    expect(await jobOf(job.item.id)).toBeUndefined();
    expect((await claims.read(record.pk))?.state).toBe("pending");
  });

  it("writes the jobs and completes the claim in one transaction", async () => {
    // Prepare
    const record = claimRecord();
    await claims.create(record);
    const jobs = [newJob(jobItem()), newJob(jobItem())];

    // Act
    const outcome = await createJobs(repo, jobs, [], claims.movePart(record, "pending", "complete"));

    // Assess
    expect(outcome).toEqual({ ok: true });
    expect((await claims.read(record.pk))?.state).toBe("complete");
    for (const job of jobs) expect(await jobOf(job.item.id)).toMatchObject({ status: "queued" });
  });
});

describe("commitStagedJobs and deleteStagedJob", () => {
  it("makes staged jobs visible with their index keys; committed again it answers changed", async () => {
    // Prepare
    const staged = jobItem({}, 0, true);
    await repo.batchPut([{ ...staged, staged: true, expiresAt: 1 }]);

    // Act
    const first = await commitStagedJobs(repo, [staged]);
    const again = await commitStagedJobs(repo, [staged]);

    // Assess
    expect(first).toEqual({ ok: true });
    expect(again).toMatchObject({ ok: false, reason: "changed" });
    const item = await jobOf(staged.id);
    expect(item).toMatchObject({ ownerPk: ownerPk(staged.owner), queuePk: queuePk(null) });
    expect(item).not.toHaveProperty("staged");
    expect(item).not.toHaveProperty("expiresAt");
  });

  it("answers claim_lost when the claim it checks has moved on, committing none of the jobs", async () => {
    // Prepare
    const record = claimRecord("committing");
    await claims.create(record);
    await claims.move(record, "committing", "complete");
    const staged = jobItem({}, 0, true);
    await repo.batchPut([{ ...staged, staged: true }]);

    // Act
    const outcome = await commitStagedJobs(repo, [staged], claims.checkPart(record, "committing"));

    // Assess
    expect(outcome).toMatchObject({ ok: false, reason: "claim_lost" });
    expect(await jobOf(staged.id)).toMatchObject({ staged: true });
  });

  it("deletes a job only while it is staged", async () => {
    // Prepare
    const staged = jobItem({}, 0, true);
    const visible = jobItem();
    await repo.batchPut([{ ...staged, staged: true }, visible]);

    // Act
    const deleted = await deleteStagedJob(repo, staged);
    const kept = await deleteStagedJob(repo, visible);

    // Assess
    expect([deleted, kept]).toEqual([true, false]);
    expect(await jobOf(staged.id)).toBeUndefined();
    expect(await jobOf(visible.id)).toBeDefined();
  });
});

describe("JobRepository#markDependencyMet", () => {
  async function blockedChild(parentId: string, unmet: number): Promise<JobItem> {
    const child = jobItem({ status: "blocked" }, unmet);
    const edge = { pk: jobPk(child.id), sk: dependsOnSk(parentId), entity: "dependency", met: false };
    await repo.batchPut([child, edge]);
    return child;
  }

  it("flips the edge and counts the parent once: a replay answers already_met", async () => {
    // Prepare
    const parentId = newId();
    const child = await blockedChild(parentId, 2);

    // Act
    const first = await repo.markDependencyMet(parentId, child.id, AT);
    const replay = await repo.markDependencyMet(parentId, child.id, AT);

    // Assess
    expect(first).toEqual({ ok: true });
    expect(replay).toEqual({ ok: false, reason: "already_met" });
    expect(await jobOf(child.id)).toMatchObject({ unmet: 1, version: child.version + 1 });
  });

  it("answers already_met for an edge that is gone, and not_waiting for a child with nothing unmet", async () => {
    // Prepare
    const parentId = newId();
    const counted = await blockedChild(parentId, 0);

    // Act
    const gone = await repo.markDependencyMet(newId(), counted.id, AT);
    const nothingUnmet = await repo.markDependencyMet(parentId, counted.id, AT);

    // Assess
    expect(gone).toEqual({ ok: false, reason: "already_met" });
    expect(nothingUnmet).toEqual({ ok: false, reason: "not_waiting" });
    expect(await repo.getItem({ pk: jobPk(counted.id), sk: dependsOnSk(parentId) })).toMatchObject({
      met: false,
    });
  });
});

describe("job index reads", () => {
  it("counts a pool's queue up to the cap, and the jobs ahead of one", async () => {
    // Prepare
    const pool = `pool-${randomUUID()}`;
    const items = [jobItem({ pool }), jobItem({ pool }), jobItem({ pool })].sort((a, b) =>
      String(a.queueSk) < String(b.queueSk) ? -1 : 1,
    );
    await repo.batchPut(items);

    // Act
    const all = await countQueued(repo, pool, 10);
    const capped = await countQueued(repo, pool, 2);
    const aheadOfLast = await countQueued(repo, pool, 10, items[2]?.queueSk);

    // Assess
    expect(all).toEqual({ count: 3, complete: true });
    expect(capped.count).toBe(2);
    expect(aheadOfLast).toEqual({ count: 2, complete: true });
  });

  it("reads a priority band newest first, and an owner's list filtered by type", async () => {
    // Prepare
    const pool = `pool-${randomUUID()}`;
    const owner = `owner-${randomUUID()}`;
    const items = [jobItem({ pool, owner, priority: 3 }), jobItem({ pool, owner, priority: 3 })];
    await repo.batchPut(items);
    const his = [...items].sort((a, b) => (String(a.queueSk) < String(b.queueSk) ? -1 : 1));

    // Act
    const band = await queuedBetween(repo, pool, { lo: queueRankPrefix(3), hi: String(his[1]?.queueSk) }, 10);
    const ofType = (type: string) =>
      listIdsBetween(repo, {
        index: JOB_INDEX.byOwner,
        partition: { attribute: "ownerPk", value: ownerPk(owner) },
        lo: " ",
        hi: "~",
        filter: { type },
        limit: 10,
      });
    const echo = await ofType("echo");
    const other = await ofType("not-echo");

    // Assess
    expect(band.items.map((i) => i.id)).toEqual([his[1]?.id, his[0]?.id]);
    expect(echo.items.map((i) => i.ownerSk).sort()).toEqual(items.map((i) => i.id).sort());
    expect(other.items).toEqual([]);
  });

  it("reads a job's log lines of one attempt and level", async () => {
    // Prepare
    const id = newId();
    const line = (n: number, attempt: number, level: string) => ({
      pk: jobPk(id),
      sk: logSk(String(n).padStart(26, "0")),
      attempt,
      level,
      message: `line ${n}`,
    });
    await repo.batchPut([line(1, 1, "info"), line(2, 2, "info"), line(3, 2, "error")]);

    // Act
    const page = await jobHistoryPage(repo, id, LOG_PREFIX, {
      limit: 10,
      startKey: undefined,
      attempt: 2,
      level: "info",
    });

    // Assess
    expect(page.items.map((i) => i.message)).toEqual(["line 2"]);
  });
});
