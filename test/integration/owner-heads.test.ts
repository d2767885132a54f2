import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OwnerHeads, OwnerHints, queuePartitions } from "../../app/queue-reader";
import { schedulePool } from "../../app/scheduler";
import type { JobRepository } from "../../store/job-repository";
import { queuePk } from "../../store/keys";
import { JOB_INDEX } from "../../store/tables";
import {
  type Harness,
  ownTables,
  registerNode,
  schedulerFor,
  startHarness,
  submitWaitingBatch,
  suffix,
} from "../support/scheduling";

/**
 * The owner-by-owner read of the queue that fair-share and round-robin passes make
 * (app/queue-reader.ts OwnerHeads), against DynamoDB Local: with no hints it finds owners one
 * after another; with hints (owners an earlier pass found, owners holding capacity) it walks the
 * gaps between them side by side and finds exactly the same heads, whatever the hints get wrong.
 */

const RUN = suffix();
let h: Harness;

beforeAll(async () => {
  h = await startHarness(await ownTables(`jobq-heads-${RUN}-`));
});
afterAll(() => h?.close());

/**
 * The repository, its queries run in rounds: a round starts once every query of the one before
 * has been answered and the code waiting on them has run, so `rounds()` is the number of queries
 * in a row on the read's critical path (independent queries share a round, whatever DynamoDB
 * Local's timing).
 */
function inRounds(
  repo: JobRepository,
  counts: (input: Parameters<JobRepository["queryIndex"]>[0]) => boolean = () => true,
): { repo: JobRepository; rounds(): number } {
  let rounds = 0;
  let inFlight = 0;
  let scheduled = false;
  const waiting: (() => void)[] = [];
  const next = (): void => {
    scheduled = false;
    if (inFlight > 0 || waiting.length === 0) return;
    rounds++;
    for (const go of waiting.splice(0)) go();
  };
  // After the answers' continuations: setImmediate runs once the microtasks are done.
  const schedule = (): void => {
    if (!scheduled) {
      scheduled = true;
      setImmediate(next);
    }
  };
  const wrapped = Object.create(repo) as JobRepository;
  wrapped.queryIndex = async (input) => {
    if (!counts(input)) return repo.queryIndex(input);
    await new Promise<void>((go) => {
      waiting.push(go);
      schedule();
    });
    inFlight++;
    try {
      return await repo.queryIndex(input);
    } finally {
      inFlight--;
      schedule();
    }
  };
  return { repo: wrapped, rounds: () => rounds };
}

/** A pool of its own with three queued jobs for each of five owners, named so they sort a, c, e, g, i. */
async function fiveOwners(): Promise<{ pool: string; owners: string[]; jobs: Map<string, string[]> }> {
  const pool = `p${suffix()}`;
  h.addPool({ name: pool, labels: {}, nodes: 1, node: { cpu: 2, memoryMb: 4096, gpu: 0 } });
  const s = suffix();
  const owners = ["a", "c", "e", "g", "i"].map((letter) => `${letter}-${s}`);
  const jobs = new Map<string, string[]>();
  for (const owner of owners) {
    const ids = await submitWaitingBatch(
      h,
      owner,
      Array.from({ length: 3 }, () => ({ pool, resources: { cpu: 1, memoryMb: 256, gpu: 0 } })),
    );
    jobs.set(owner, ids.sort());
  }
  return { pool, owners, jobs };
}

function heads(repo: JobRepository, pool: string, options: { maxOwners?: number; hints?: OwnerHints } = {}) {
  return new OwnerHeads(repo, queuePartitions(pool), {
    perOwner: 2,
    maxOwners: options.maxOwners ?? 200,
    ...(options.hints ? { hints: options.hints } : {}),
  });
}

describe("OwnerHeads", () => {
  it("with no hints, finds each owner's head one owner after another", async () => {
    // Prepare
    const { pool, owners, jobs } = await fiveOwners();
    const reads = inRounds(h.repo);

    // Act
    const found = await heads(reads.repo, pool).first();

    // Assess: each owner's first two jobs, in owner order; one query per owner in a row, and
    // the one that finds nothing after the last.
    expect(found.map((j) => j.id)).toEqual(owners.flatMap((o) => jobs.get(o)?.slice(0, 2) ?? []));
    expect(reads.rounds()).toBe(owners.length + 1);
  });

  it("with hints, reads the same heads side by side: hinted owners, owners between them, and hinted owners with nothing queued", async () => {
    // Prepare: the hints know c and g, and b, which has nothing queued; i holds capacity.
    const { pool, owners, jobs } = await fiveOwners();
    const [a, c, e, g, i] = owners as [string, string, string, string, string];
    const s = a.slice(2);
    const hints = new OwnerHints();
    hints.set(queuePk(pool), [g, `b-${s}`, c]);
    const reads = inRounds(h.repo);
    const withHints = heads(reads.repo, pool, { hints });

    // Act
    const found = await withHints.first([i]);
    const rounds = reads.rounds();
    const more = await withHints.more();

    // Assess: the same heads as one walk from the start; the widest gap (before b: a, then c
    // past it) is two queries in a row; the hints are now exactly the owners found.
    expect(found.map((j) => j.id)).toEqual(owners.flatMap((o) => jobs.get(o)?.slice(0, 2) ?? []));
    expect(rounds).toBe(2);
    expect(hints.get(queuePk(pool))).toEqual([a, c, e, g, i]);
    expect(more.map((j) => j.id).sort()).toEqual(owners.map((o) => jobs.get(o)?.[2]).sort());
  });

  it("keeps to maxOwners, the first owners in key order, hinted or not", async () => {
    // Prepare
    const { pool, owners, jobs } = await fiveOwners();
    const hints = new OwnerHints();
    hints.set(queuePk(pool), [owners[4] ?? "", owners[3] ?? ""]);

    // Act
    const plain = await heads(h.repo, pool, { maxOwners: 3 }).first();
    const hinted = await heads(h.repo, pool, { maxOwners: 3, hints }).first();

    // Assess
    const firstThree = owners.slice(0, 3).flatMap((o) => jobs.get(o)?.slice(0, 2) ?? []);
    expect(plain.map((j) => j.id)).toEqual(firstThree);
    expect(hinted.map((j) => j.id)).toEqual(firstThree);
  });
});

describe("a fair-share pass and the owners it found", () => {
  it("leaves them on the pool's lease, so a pass of another process reads their heads side by side", async () => {
    // Prepare: five owners with queued jobs; room for two jobs, then two more. The harness's
    // scheduler keeps nothing in memory between passes, as a new scheduler process would not.
    const { pool, owners } = await fiveOwners();
    const ctx = schedulerFor(h, [pool], { algorithm: "fair-share", agingSecondsPerStep: 0 });
    await registerNode(h, pool, { cpu: 2, memoryMb: 4096, gpu: 0 });
    const byOwnerReads = (first: JobRepository) =>
      inRounds(first, (input) => input.IndexName === JOB_INDEX.queueByOwner);
    const cold = byOwnerReads(h.repo);
    const firstPass = await schedulePool({ ...ctx, repo: cold.repo }, pool);
    // The pool full: a pass reads the queue's head, not owner by owner, and leaves the owners be.
    const fullPass = await schedulePool(ctx, pool);
    const lease = await h.nodes.getLease(pool);
    await registerNode(h, pool, { cpu: 2, memoryMb: 4096, gpu: 0 });
    const warm = byOwnerReads(h.repo);

    // Act
    const secondPass = await schedulePool({ ...ctx, repo: warm.repo }, pool);

    // Assess: the first pass walked owner after owner (the last owner's page ended the
    // partition); the second started from the owners on the lease, each gap read at once.
    expect(firstPass.admitted).toHaveLength(2);
    expect(fullPass.admitted).toEqual([]);
    expect(lease?.queueOwners).toEqual(owners);
    expect(cold.rounds()).toBe(owners.length);
    expect(secondPass.admitted).toHaveLength(2);
    expect(warm.rounds()).toBe(1);
  });
});
