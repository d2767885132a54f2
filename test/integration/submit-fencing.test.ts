import { createHash, randomUUID } from "node:crypto";
import { describe, expect, inject, it } from "vitest";
import { requestHash } from "../../app/idempotency";
import { type SubmitBudget, type SubmitContext, type SubmitResult, submitJobs } from "../../app/submit";
import { SubmitTimeoutError, TooManyRequestsError } from "../../core/errors";
import { type BatchJobRequest, batchJobSchema } from "../../core/job";
import { DEFAULT_POOLS } from "../../core/pools";
import { LOCAL_REGION } from "../../local/config";
import { createDocumentClient } from "../../store/dynamo";
import { JobRepository } from "../../store/job-repository";
import { DEPENDENT_PREFIX, DEPENDS_ON_PREFIX, IDEMPOTENCY_SK, idempotencyPk } from "../../store/keys";
import { partitionItems } from "../support/partitions";

/**
 * Submissions that outlive their time (issue 12, defects 5 and 6), against DynamoDB Local: a
 * request held open after claiming its Idempotency-Key while a retry takes the claim over (the
 * claim's clock moved past its staleness), and a request whose budget runs out mid-write. Whatever
 * the timing, a key stands for exactly one set of jobs, every job an answer names exists, and a
 * request that ran out of time leaves nothing visible.
 */

type Pausable = "batchPut" | "transact" | "putIfAbsent";

/** The real repository, but the `nth` call of one kind waits until the test lets it go. */
class PausingRepository extends JobRepository {
  private readonly calls: Record<Pausable, number> = { batchPut: 0, transact: 0, putIfAbsent: 0 };
  private hold: { at: Pausable; nth: number; reached: () => void; released: Promise<void> } | undefined;

  /** Resolves once the call is held; `release` lets it go on. */
  pauseAt(at: Pausable, nth = 1): { reached: Promise<void>; release: () => void } {
    let reached = (): void => undefined;
    let release = (): void => undefined;
    const reachedPromise = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.hold = { at, nth, reached, released };
    return { reached: reachedPromise, release };
  }

  override async transact(...args: Parameters<JobRepository["transact"]>): Promise<void> {
    await this.maybeHold("transact");
    return super.transact(...args);
  }

  override async putIfAbsent(item: Record<string, unknown>): Promise<boolean> {
    await this.maybeHold("putIfAbsent");
    return super.putIfAbsent(item);
  }

  override async batchPut(items: readonly object[], stop?: () => boolean): Promise<void> {
    await this.maybeHold("batchPut");
    return super.batchPut(items, stop);
  }

  private async maybeHold(kind: Pausable): Promise<void> {
    this.calls[kind] += 1;
    const hold = this.hold;
    if (hold?.at === kind && hold.nth === this.calls[kind]) {
      hold.reached();
      await hold.released;
    }
  }
}

const tables = inject("tables");
const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });
const repo = new JobRepository(db, tables.Jobs ?? "");

const noEvents = { publish: async (): Promise<void> => undefined };
/** Submit starts no execution (the scheduler starts one per admission): a call would be a bug. */
const noExecutions = {
  start: async (): Promise<string | null> => {
    throw new Error("submit started an execution");
  },
  arnOf: (): string | null => null,
  stop: async (): Promise<void> => undefined,
};

/** Both requests of a race read one clock, which the test moves past the claim's staleness. */
function contexts(): {
  first: SubmitContext & { repo: PausingRepository };
  second: SubmitContext & { repo: PausingRepository };
  advance(ms: number): void;
} {
  let now = Date.parse("2026-12-01T10:00:00.000Z");
  const base = {
    pools: DEFAULT_POOLS,
    taskTypes: null,
    clock: () => new Date(now),
    executions: noExecutions,
    events: noEvents,
  };
  return {
    first: { ...base, repo: new PausingRepository(db, repo.tableName) },
    second: { ...base, repo: new PausingRepository(db, repo.tableName) },
    advance: (ms) => {
      now += ms;
    },
  };
}

function jobsOf(count: number, extra: Partial<Record<string, unknown>> = {}): BatchJobRequest[] {
  return Array.from({ length: count }, (_, i) =>
    batchJobSchema.parse({ type: "echo", ref: `j${i}`, payload: { i }, ...extra }),
  );
}

function request(owner: string, key: string, jobs: BatchJobRequest[], budget?: SubmitBudget) {
  return {
    principal: { id: owner, admin: false },
    jobs,
    idempotency: { key, requestHash: requestHash("POST /jobs/batch", jobs) },
    budget,
  };
}

/** Every item under a job's partition: the job, its transition, its edges. */
async function partition(id: string): Promise<Record<string, unknown>[]> {
  return partitionItems(db, repo.tableName, id);
}

async function claimOf(owner: string, key: string): Promise<Record<string, unknown> | undefined> {
  return repo.getItem({
    pk: idempotencyPk(owner, createHash("sha256").update(key).digest("hex")),
    sk: IDEMPOTENCY_SK,
  });
}

/** Each job the answer names exists, visible, and the key stands for exactly those jobs. */
async function expectOneOutcome(owner: string, key: string, answers: SubmitResult[]): Promise<string[]> {
  const claim = await claimOf(owner, key);
  expect(claim).toMatchObject({ state: "complete" });
  const ids = claim?.jobIds as string[];
  for (const answer of answers) expect(answer.jobs.map((job) => job.id)).toEqual(ids);
  for (const id of ids) expect(await repo.getJob(id), `job ${id}`).not.toBeNull();
  return ids;
}

describe("a request held open while a retry takes its Idempotency-Key over", () => {
  it("one transaction: the first request's write fails on the claim and it answers the retry's job", async () => {
    // Prepare
    const { first, second, advance } = contexts();
    const owner = `fence-a-${randomUUID()}`;
    const key = randomUUID();
    const jobs = jobsOf(1);
    const held = first.repo.pauseAt("transact");
    const one = submitJobs(first, request(owner, key, jobs));
    await held.reached;
    const firstIds = ((await claimOf(owner, key))?.jobIds as string[]) ?? [];

    // Act
    advance(31_000);
    const two = await submitJobs(second, request(owner, key, jobs));
    held.release();
    const oneAnswer = await one;

    // Assess
    const ids = await expectOneOutcome(owner, key, [two, oneAnswer]);
    expect(two.replayed).toBe(false);
    expect(oneAnswer.replayed).toBe(true);
    expect(ids).not.toEqual(firstIds);
    for (const id of firstIds) expect(await partition(id)).toEqual([]);
  });

  it.each([
    ["before it stages its jobs", "batchPut" as const],
    ["after staging, before its commit", "transact" as const],
  ])("a staged batch held %s: it removes only its own items and answers the retry's jobs", async (_, at) => {
    // Prepare: 60 jobs in a chain are 60 × 3 items, too many for one transaction.
    const { first, second, advance } = contexts();
    const owner = `fence-b-${randomUUID()}`;
    const key = randomUUID();
    const jobs = jobsOf(60).map((job, i) => (i === 0 ? job : { ...job, dependsOn: [`j${i - 1}`] }));
    const held = first.repo.pauseAt(at);
    const one = submitJobs(first, request(owner, key, jobs));
    await held.reached;
    const firstIds = ((await claimOf(owner, key))?.jobIds as string[]) ?? [];

    // Act
    advance(31_000);
    const two = await submitJobs(second, request(owner, key, jobs));
    held.release();
    const oneAnswer = await one;

    // Assess
    const ids = await expectOneOutcome(owner, key, [two, oneAnswer]);
    expect(oneAnswer.replayed).toBe(true);
    expect(new Set([...ids, ...firstIds]).size).toBe(120);
    for (const id of firstIds) expect(await partition(id), `items of ${id}`).toEqual([]);
    // The retry's chain is whole: every job but the first waits on the one before it.
    for (const id of ids.slice(1)) {
      const items = await partition(id);
      expect(items.filter((item) => String(item.sk).startsWith(DEPENDS_ON_PREFIX))).toHaveLength(1);
    }
    expect(
      (await partition(ids[0] ?? "")).filter((item) => String(item.sk).startsWith(DEPENDENT_PREFIX)),
    ).toHaveLength(1);
  });

  it("a large batch held after its commit point is finished by the retry, under the same ids", async () => {
    // Prepare: 120 jobs commit in two transactions; the first request stops after the first.
    const { first, second, advance } = contexts();
    const owner = `fence-c-${randomUUID()}`;
    const key = randomUUID();
    const jobs = jobsOf(120);
    const held = first.repo.pauseAt("transact", 2);
    const one = submitJobs(first, request(owner, key, jobs));
    await held.reached;
    expect(await claimOf(owner, key)).toMatchObject({ state: "committing" });

    // Act
    advance(31_000);
    const two = await submitJobs(second, request(owner, key, jobs));
    held.release();
    const oneAnswer = await one;

    // Assess
    const ids = await expectOneOutcome(owner, key, [two, oneAnswer]);
    expect(ids).toHaveLength(120);
    expect(two.replayed).toBe(false);
  });

  it("a retry within the claim's lifetime waits and answers 429 rather than taking over", async () => {
    // Prepare
    const { first, second, advance } = contexts();
    const owner = `fence-d-${randomUUID()}`;
    const key = randomUUID();
    const jobs = jobsOf(1);
    const held = first.repo.pauseAt("transact");
    const one = submitJobs(first, request(owner, key, jobs));
    await held.reached;

    // Act: the shared clock jumps past the wait, not past the claim's staleness, once the retry
    // has started waiting (its first claim attempt: the wait's deadline is set by then).
    const waiting = second.repo.pauseAt("putIfAbsent");
    const poll = submitJobs(second, request(owner, key, jobs));
    await waiting.reached;
    advance(25_000);
    waiting.release();
    const refused = await poll.catch((error: unknown) => error);
    held.release();
    const oneAnswer = await one;

    // Assess
    expect(refused).toBeInstanceOf(TooManyRequestsError);
    await expectOneOutcome(owner, key, [oneAnswer]);
    expect(oneAnswer.replayed).toBe(false);
  });
});

describe("a submission whose budget runs out", () => {
  it("stops staging, removes what it staged, gives the key back and answers 429", async () => {
    // Prepare: the budget is gone once staging has begun.
    const { first, second } = contexts();
    const owner = `budget-${randomUUID()}`;
    const key = randomUUID();
    const jobs = jobsOf(60).map((job, i) => (i === 0 ? job : { ...job, dependsOn: [`j${i - 1}`] }));
    let left = 60_000;
    const held = first.repo.pauseAt("batchPut");
    const one = submitJobs(first, request(owner, key, jobs, { remainingMs: () => left }));
    await held.reached;
    const stagedIds = ((await claimOf(owner, key))?.jobIds as string[]) ?? [];

    // Act
    left = 1_500;
    held.release();
    const refused = await one.catch((error: unknown) => error);

    // Assess
    expect(refused).toBeInstanceOf(SubmitTimeoutError);
    expect(refused).toMatchObject({ code: "too_many_requests" });
    expect(await claimOf(owner, key)).toBeUndefined();
    for (const id of stagedIds) expect(await partition(id)).toEqual([]);
    const retried = await submitJobs(second, request(owner, key, jobs));
    expect(retried.replayed).toBe(false);
    await expectOneOutcome(owner, key, [retried]);
  });

  it("refuses before its commit point, never after: a one-transaction job is all or nothing", async () => {
    // Prepare
    const { second } = contexts();
    const owner = `budget-one-${randomUUID()}`;
    const key = randomUUID();
    const jobs = jobsOf(1);

    // Act
    const refused = await submitJobs(second, request(owner, key, jobs, { remainingMs: () => 500 })).catch(
      (error: unknown) => error,
    );

    // Assess
    expect(refused).toBeInstanceOf(SubmitTimeoutError);
    expect(await claimOf(owner, key)).toBeUndefined();
  });
});
