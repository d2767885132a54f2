import { ulid } from "ulid";
import { describe, expect, inject, it } from "vitest";
import { type AttemptContext, startAttempt, type WorkerNode } from "../../app/attempts";
import type { JobStateChange } from "../../app/events";
import { ConcurrentUpdateError } from "../../core/errors";
import type { Job, JobStatus } from "../../core/job";
import { LOCAL_REGION } from "../../local/config";
import { newAttemptItem } from "../../store/attempts";
import { rebookItem, reservationFor } from "../../store/capacity";
import { createDocumentClient } from "../../store/dynamo";
import {
  activeInPool,
  countOwnerStatus,
  dueJobIds,
  retryDueJobIds,
  runningInPoolFor,
} from "../../store/job-indexes";
import { type JobItem, toJobItem } from "../../store/job-items";
import { JobRepository } from "../../store/job-repository";
import { attemptSk, dependentSk, dependsOnSk, JOB_SK, jobPk, RESULT_SK } from "../../store/keys";
import { NodeRepository } from "../../store/nodes";
import { admitOnNode } from "../support/attempts";
import { seededJob } from "../support/jobs";

/**
 * The run side's store operations (issue 14 item 3) against DynamoDB Local: each verb's typed
 * outcomes, and the index reads the scheduler, the reconciler and the quota checks walk.
 */

const tables = inject("tables");
const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
const repo = new JobRepository(db, tables.Jobs ?? "");
const nodes = new NodeRepository(db, tables.Nodes ?? "");

function jobOf(fields: Partial<Job> & { readonly status: JobStatus }): Job {
  return seededJob({
    id: `job_${ulid()}`,
    type: "store-run",
    owner: `owner-${ulid()}`,
    createdAt: new Date().toISOString(),
    resources: { cpu: 1, memoryMb: 512, gpu: 0 },
    retry: {
      maxAttempts: 1,
      strategy: "immediate",
      initialDelaySeconds: 1,
      backoffMultiplier: 1,
      maxDelaySeconds: 1,
    },
    finishedAt: null,
    ...fields,
  });
}

/** A job item as a submission (or an admission, with `extra`) leaves it. */
async function putJob(
  fields: Partial<Job> & { readonly status: JobStatus },
  unmet = 0,
  extra: Partial<JobItem> = {},
): Promise<JobItem> {
  const job = jobOf(fields);
  const item = { ...toJobItem(job, unmet, false), ...extra } as JobItem;
  await repo.batchPut([item]);
  return item;
}

/** The child's `DEP#` edge to its parent and the parent's `DPT#` edge to it, as a submission writes them. */
async function putEdge(parentId: string, childId: string, met: boolean): Promise<void> {
  await repo.batchPut([
    { pk: jobPk(childId), sk: dependsOnSk(parentId), entity: "dependency", parentId, met },
    { pk: jobPk(parentId), sk: dependentSk(childId), entity: "dependent", childId },
  ]);
}

async function jobItem(id: string): Promise<JobItem | undefined> {
  return (await repo.getItem({ pk: jobPk(id), sk: JOB_SK })) as JobItem | undefined;
}

describe("markDependencyMet", () => {
  it("flips the edge and counts the parent once: ok, then already_met on a replay", async () => {
    // Prepare
    const parent = await putJob({ status: "completed" });
    const child = await putJob({ status: "blocked", dependsOn: [parent.id] }, 1);
    await putEdge(parent.id, child.id, false);
    const at = new Date().toISOString();

    // Act
    const first = await repo.markDependencyMet(parent.id, child.id, at);
    const replay = await repo.markDependencyMet(parent.id, child.id, at);

    // Assess
    expect(first).toEqual({ ok: true });
    expect(replay).toEqual({ ok: false, reason: "already_met" });
    expect(await repo.getItem({ pk: jobPk(child.id), sk: dependsOnSk(parent.id) })).toMatchObject({
      met: true,
    });
    expect(await jobItem(child.id)).toMatchObject({ unmet: 0, version: child.version + 1, updatedAt: at });
  });

  it("says already_met when the edge is gone (moved to an escalation's job)", async () => {
    const child = await putJob({ status: "blocked" }, 1);

    const outcome = await repo.markDependencyMet(`job_${ulid()}`, child.id, new Date().toISOString());

    expect(outcome).toEqual({ ok: false, reason: "already_met" });
    expect(await jobItem(child.id)).toMatchObject({ unmet: 1, version: child.version });
  });

  it("says not_waiting when the child counts nothing unmet, and leaves the edge unmet", async () => {
    const parent = await putJob({ status: "completed" });
    const child = await putJob({ status: "queued" }, 0);
    await putEdge(parent.id, child.id, false);

    const outcome = await repo.markDependencyMet(parent.id, child.id, new Date().toISOString());

    expect(outcome).toEqual({ ok: false, reason: "not_waiting" });
    expect(await repo.getItem({ pk: jobPk(child.id), sk: dependsOnSk(parent.id) })).toMatchObject({
      met: false,
    });
  });
});

describe("transactParts", () => {
  it("writes every part, or names the parts that refused and writes none", async () => {
    const job = await putJob({ status: "running", attempts: 1 });
    const taken = { pk: jobPk(job.id), sk: attemptSk(1), entity: "attempt", attempt: 1, status: "running" };
    const fresh = { pk: jobPk(job.id), sk: attemptSk(2), entity: "attempt", attempt: 2, status: "running" };

    const first = await repo.transactParts({ taken: [newAttemptItem(repo.tableName, taken)] });
    const second = await repo.transactParts({
      fresh: [newAttemptItem(repo.tableName, fresh)],
      taken: [newAttemptItem(repo.tableName, taken)],
      none: [],
    });

    expect(first).toEqual({ ok: true });
    expect(second.ok).toBe(false);
    if (second.ok) return;
    expect([...second.refused]).toEqual(["taken"]);
    expect([...second.conditionFailed]).toEqual(["taken"]);
    expect(second.error).toBeInstanceOf(ConcurrentUpdateError);
    expect(await repo.getItem({ pk: jobPk(job.id), sk: attemptSk(2) })).toBeUndefined();
  });
});

describe("job item verbs", () => {
  it("setBlockedReason writes only while the job is blocked at the version read, without a version bump", async () => {
    const child = await putJob({ status: "blocked" }, 2);

    const written = await repo.setBlockedReason(child, "waiting on 2 dependencies");
    const stale = await repo.setBlockedReason({ pk: child.pk, version: child.version + 1 }, "stale");

    expect(written).toBe(true);
    expect(stale).toBe(false);
    expect(await jobItem(child.id)).toMatchObject({
      statusReason: "waiting on 2 dependencies",
      version: child.version,
    });
  });

  it("setEscalatedTo records the escalation's job once, at the version read", async () => {
    const job = await putJob({ status: "escalated" });
    const at = new Date().toISOString();

    const written = await repo.setEscalatedTo(job, "job_new", "escalated to job_new", at);
    const again = await repo.setEscalatedTo(job, "job_other", "escalated to job_other", at);

    expect(written).toBe(true);
    expect(again).toBe(false);
    expect(await jobItem(job.id)).toMatchObject({
      escalatedTo: "job_new",
      statusReason: "escalated to job_new",
      version: job.version + 1,
      updatedAt: at,
    });
  });

  it("setEscalatedTo refuses a job that is not escalated", async () => {
    const job = await putJob({ status: "failed" });

    expect(await repo.setEscalatedTo(job, "job_new", "escalated to job_new", new Date().toISOString())).toBe(
      false,
    );
  });

  it("removeDependentEdge removes the parent's edge once", async () => {
    const parentId = `job_${ulid()}`;
    const childId = `job_${ulid()}`;
    await putEdge(parentId, childId, false);

    expect(await repo.removeDependentEdge(parentId, childId)).toBe(true);
    expect(await repo.removeDependentEdge(parentId, childId)).toBe(false);
    expect(await repo.getItem({ pk: jobPk(parentId), sk: dependentSk(childId) })).toBeUndefined();
  });
});

describe("transaction part builders", () => {
  it("rewireDependencyItems moves the child's dependency to the new parent, met and counted", async () => {
    const oldParent = await putJob({ status: "escalated" });
    const newParent = await putJob({ status: "completed" });
    const child = await putJob({ status: "blocked", dependsOn: [oldParent.id, "job_other"] }, 2);
    await putEdge(oldParent.id, child.id, false);
    const at = new Date().toISOString();

    await repo.transact(
      repo.rewireDependencyItems({
        child,
        oldParentId: oldParent.id,
        newParent,
        met: true,
        decrement: true,
        at,
      }),
    );

    expect(await repo.getItem({ pk: jobPk(child.id), sk: dependsOnSk(oldParent.id) })).toBeUndefined();
    expect(await repo.getItem({ pk: jobPk(oldParent.id), sk: dependentSk(child.id) })).toBeUndefined();
    expect(await repo.getItem({ pk: jobPk(child.id), sk: dependsOnSk(newParent.id) })).toMatchObject({
      parentId: newParent.id,
      met: true,
    });
    expect(await repo.getItem({ pk: jobPk(newParent.id), sk: dependentSk(child.id) })).toMatchObject({
      childId: child.id,
    });
    expect(await jobItem(child.id)).toMatchObject({
      dependsOn: [newParent.id, "job_other"],
      unmet: 1,
      version: child.version + 1,
    });
  });

  it("rewireDependencyItems is refused when the new parent changed since read", async () => {
    const oldParent = await putJob({ status: "escalated" });
    const newParent = await putJob({ status: "queued" });
    const child = await putJob({ status: "blocked", dependsOn: [oldParent.id] }, 1);
    await putEdge(oldParent.id, child.id, false);

    const rewire = repo.rewireDependencyItems({
      child,
      oldParentId: oldParent.id,
      newParent: { ...newParent, version: newParent.version + 1 },
      met: false,
      decrement: false,
      at: new Date().toISOString(),
    });

    await expect(repo.transact(rewire)).rejects.toBeInstanceOf(ConcurrentUpdateError);
    expect(await repo.getItem({ pk: jobPk(child.id), sk: dependsOnSk(oldParent.id) })).toBeDefined();
  });

  it("putResult stores the result that getJob reads back once the job is completed, never over its own or a later attempt's", async () => {
    const running = await putJob({ status: "running", attempts: 2 });
    const completed = await putJob({ status: "completed", attempts: 2 });
    const result = (attempt: number, answer: number) => {
      const json = JSON.stringify({ answer });
      return {
        resultJson: json,
        attempt,
        bytes: json.length,
        writtenAt: new Date().toISOString(),
        expiresAt: 4_000_000_000,
      };
    };

    expect(await repo.putResult(running.id, result(2, 41))).toBe("stored");
    expect(await repo.putResult(completed.id, result(2, 42))).toBe("stored");
    // A replay of attempt 2's completion finds its first result, which stands.
    expect(await repo.putResult(completed.id, result(2, 43))).toBe("kept");
    // A stale worker of attempt 1 comes late: the later attempt's result stays.
    expect(await repo.putResult(completed.id, result(1, 1))).toBe("later");
    // Only a completed job shows its result: the running one's completion may yet be refused.
    expect((await repo.getJob(running.id))?.result).toBeNull();
    expect((await repo.getJob(completed.id))?.result).toEqual({ answer: 42 });

    // Taken back only for the attempt that put it.
    await repo.deleteResult(completed.id, 1);
    expect((await repo.getJob(completed.id))?.result).toEqual({ answer: 42 });
    await repo.deleteResult(running.id, 2);
    expect(await repo.getItem({ pk: jobPk(running.id), sk: RESULT_SK })).toBeUndefined();
  });

  it("rebookItem moves a dispatched job's booking once; a second move from the old node is refused", async () => {
    const pool = `pool-${ulid()}`;
    const reservation = reservationFor(pool, "node-a", { cpu: 1, memoryMb: 512, gpu: 0 });
    const job = await putJob({ status: "dispatched", attempts: 1, pool }, 0, {
      reservation,
      activePk: `ACT#${pool}`,
    });
    const move = { jobId: job.id, attempts: 1, from: "node-a", to: "node-b", at: new Date().toISOString() };

    await repo.transact([rebookItem(repo.tableName, move)]);

    await expect(repo.transact([rebookItem(repo.tableName, move)])).rejects.toBeInstanceOf(
      ConcurrentUpdateError,
    );
    expect(await jobItem(job.id)).toMatchObject({
      reservation: { nodeId: "node-b" },
      version: job.version + 1,
    });
  });
});

describe("index reads", () => {
  it("dueJobIds finds a pool's scheduled job once its time has come, and not before", async () => {
    const pool = `pool-${ulid()}`;
    const runAt = new Date(Date.now() - 60_000).toISOString();
    const job = await putJob({ status: "scheduled", pool, runAt });

    const now = await dueJobIds(repo, pool, new Date().toISOString(), { limit: 10 });
    const before = await dueJobIds(repo, pool, new Date(Date.now() - 120_000).toISOString(), {});

    expect(now.ids).toEqual([job.id]);
    expect(before.ids).toEqual([]);
  });

  it("retryDueJobIds finds a pool's retrying job once its backoff is over, and no other due job", async () => {
    const pool = `pool-${ulid()}`;
    const over = new Date(Date.now() - 60_000).toISOString();
    const retrying = await putJob({ status: "retrying", pool, attempts: 1, nextAttemptAt: over });
    const waiting = await putJob({
      status: "retrying",
      pool,
      attempts: 1,
      nextAttemptAt: new Date(Date.now() + 600_000).toISOString(),
    });
    const scheduled = await putJob({ status: "scheduled", pool, runAt: over });

    const ids: string[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      // A page of 1 item evaluated: the filter leaves pages empty, and the walk goes on.
      const page = await retryDueJobIds(repo, pool, new Date().toISOString(), { limit: 1, startKey });
      ids.push(...page.ids);
      startKey = page.lastKey;
    } while (startKey);

    expect(ids).toEqual([retrying.id]);
    expect(ids).not.toContain(waiting.id);
    expect(ids).not.toContain(scheduled.id);
  });

  it("activeInPool and runningInPoolFor read the pool's bookings, the latter a principal's running ones", async () => {
    const pool = `pool-${ulid()}`;
    const owner = `owner-${ulid()}`;
    const booked = (nodeId: string) => reservationFor(pool, nodeId, { cpu: 1, memoryMb: 512, gpu: 1 });
    const running = await putJob({ status: "running", attempts: 1, pool, owner }, 0, {
      reservation: booked("n1"),
      activePk: `ACT#${pool}`,
      activeSk: `n1#x`,
    });
    const dispatched = await putJob({ status: "dispatched", attempts: 1, pool, owner }, 0, {
      reservation: booked("n2"),
      activePk: `ACT#${pool}`,
      activeSk: `n2#x`,
    });
    const someoneElse = await putJob({ status: "running", attempts: 1, pool }, 0, {
      reservation: booked("n3"),
      activePk: `ACT#${pool}`,
      activeSk: `n3#x`,
    });

    const active = await activeInPool(repo, pool, {});
    const mine = await runningInPoolFor(repo, pool, { owner }, {});

    expect(active.items.map((i) => i.id).sort()).toEqual([running.id, dispatched.id, someoneElse.id].sort());
    expect(mine.items.map((i) => i.id)).toEqual([running.id]);
    expect(mine.items[0]?.reservation).toMatchObject({ gpu: 1, nodeId: "n1" });
  });

  it("countOwnerStatus counts a principal's jobs in one status, at most `limit` a page", async () => {
    const owner = `owner-${ulid()}`;
    for (let i = 0; i < 3; i++) await putJob({ status: "queued", owner });
    await putJob({ status: "running", owner });

    const all = await countOwnerStatus(repo, owner, "queued", {});
    const capped = await countOwnerStatus(repo, owner, "queued", { limit: 2 });

    expect(all.count).toBe(3);
    expect(capped.count).toBe(2);
    expect(capped.lastKey).toBeDefined();
  });
});

/**
 * startAttempt decides on the named parts of its transaction (transactParts): these are its
 * outcomes when the attempt part, the reservation part or the job part refuses.
 */
describe("startAttempt on named parts", () => {
  const SLOT = { cpu: 1, memoryMb: 512, gpu: 0 };
  const published: JobStateChange[] = [];
  const ctx: AttemptContext = {
    repo,
    clock: () => new Date(),
    nodesTable: tables.Nodes ?? "",
    events: {
      publish: async (changes) => {
        published.push(...changes);
      },
    },
  };

  async function nodeOf(pool: string): Promise<WorkerNode> {
    const nodeId = `node-${ulid()}`;
    const node = { pool, nodeId, workerId: `worker-${nodeId}`, capacity: SLOT };
    await nodes.register(node, new Date());
    return node;
  }

  async function queued(pool: string): Promise<JobItem> {
    return putJob({ status: "queued", pool, resources: SLOT });
  }

  it("a duplicate delivery of a started attempt is stale", async () => {
    const pool = `pool-${ulid()}`;
    const node = await nodeOf(pool);
    const job = await queued(pool);
    const attempt = await admitOnNode(ctx, job.id, node);

    const first = await startAttempt(ctx, { jobId: job.id, attempt, node });
    const duplicate = await startAttempt(ctx, { jobId: job.id, attempt, node });

    expect(first.outcome).toBe("started");
    expect(duplicate.outcome).toBe("stale");
  });

  it("a job booked elsewhere that does not fit here, with nothing to swap, is left to another node", async () => {
    const pool = `pool-${ulid()}`;
    const [x, y] = [await nodeOf(pool), await nodeOf(pool)];
    const [onX, onY] = [await queued(pool), await queued(pool)];
    await admitOnNode(ctx, onX.id, x);
    const onYAttempt = await admitOnNode(ctx, onY.id, y);
    // y's own booking starts: y is full and holds nothing it could swap.
    expect((await startAttempt(ctx, { jobId: onY.id, attempt: onYAttempt, node: y })).outcome).toBe(
      "started",
    );

    const refused = await startAttempt(ctx, { jobId: onX.id, attempt: 1, node: y });

    expect(refused.outcome).toBe("no_capacity");
    expect(await jobItem(onX.id)).toMatchObject({ status: "dispatched", reservation: { nodeId: x.nodeId } });
    expect((await nodes.getNode(pool, y.nodeId))?.used).toEqual(SLOT);
  });

  it("a job booked elsewhere starts here by swapping with a booking here not yet started", async () => {
    const pool = `pool-${ulid()}`;
    const [x, y] = [await nodeOf(pool), await nodeOf(pool)];
    const [onX, onY] = [await queued(pool), await queued(pool)];
    await admitOnNode(ctx, onX.id, x);
    await admitOnNode(ctx, onY.id, y);

    const swapped = await startAttempt(ctx, { jobId: onX.id, attempt: 1, node: y });

    expect(swapped.outcome).toBe("started");
    expect(await jobItem(onX.id)).toMatchObject({ status: "running", reservation: { nodeId: y.nodeId } });
    expect(await jobItem(onY.id)).toMatchObject({ status: "dispatched", reservation: { nodeId: x.nodeId } });
    expect((await nodes.getNode(pool, x.nodeId))?.used).toEqual(SLOT);
    expect((await nodes.getNode(pool, y.nodeId))?.used).toEqual(SLOT);
  });
});
