import type { QueuedJob } from "../core/admission";
import type { Resources } from "../core/job";
import { queuePosition } from "../core/ordering";
import type { Algorithm } from "../core/policy";
import { type JobItem, jobConstraints } from "../store/job-items";
import { activePage, ownerHeadPage, ownerQueuePage, queuePage } from "../store/job-queries";
import type { JobRepository } from "../store/job-repository";
import { afterOwner, ownerOfQueueOwnerSk, positionOfQueueSk, queuePk } from "../store/keys";
import type { JOB_INDEX } from "../store/tables";

/**
 * Reading the queue the way a policy needs it, at a cost bounded by what a pass can use and
 * never by the backlog (docs/data-model.md):
 * - `priority`: the `queue` index in admission order, page by page while capacity remains;
 * - `fair-share`, `round-robin`: the head of each owner's queue (`queueByOwner`), so an owner
 *   who submitted after another's ten thousand jobs is seen at once;
 * - with aging on, also the longest-waiting jobs (`queueByAge`): whatever its priority, a job
 *   ends up among the oldest and, aged, at the front — no job waits forever.
 * Each view merges the pool's own partition with the any-pool one (`Q#*`).
 */

type Source = {
  readonly pk: string;
  buffer: JobItem[];
  startKey: Record<string, unknown> | undefined;
  done: boolean;
};

/** One queue index, its partitions merged by sort key, read a page at a time. */
export class MergedView {
  private readonly sources: Source[];

  constructor(
    private readonly repo: JobRepository,
    private readonly indexName: typeof JOB_INDEX.queue | typeof JOB_INDEX.queueByAge,
    private readonly sortAttribute: "queueSk" | "queueAgeSk",
    partitions: readonly string[],
    private readonly pageSize: number,
  ) {
    this.sources = partitions.map((pk) => ({ pk, buffer: [], startKey: undefined, done: false }));
  }

  /** Up to `count` more jobs, in order; fewer only when every partition ran out. */
  async next(count: number): Promise<JobItem[]> {
    const out: JobItem[] = [];
    while (out.length < count) {
      await Promise.all(this.sources.map((s) => this.fill(s)));
      let head: Source | undefined;
      for (const source of this.sources) {
        const first = source.buffer[0];
        if (!first) continue;
        const current = head?.buffer[0];
        if (!current || String(first[this.sortAttribute]) < String(current[this.sortAttribute]))
          head = source;
      }
      const item = head?.buffer.shift();
      if (!item) break;
      out.push(item);
    }
    return out;
  }

  get exhausted(): boolean {
    return this.sources.every((s) => s.done && s.buffer.length === 0);
  }

  private async fill(source: Source): Promise<void> {
    if (source.buffer.length > 0 || source.done) return;
    const page = await queuePage(this.repo, this.indexName, source.pk, {
      limit: this.pageSize,
      startKey: source.startKey,
    });
    source.buffer = page.items;
    source.startKey = page.lastKey;
    source.done = page.lastKey === undefined;
  }
}

export interface OwnerHeadsOptions {
  /** Jobs read per owner and round. */
  readonly perOwner: number;
  /** Owners visited per partition at most. */
  readonly maxOwners: number;
  /** Owners seen with queued jobs by earlier passes of this process (a warm scheduler's). */
  readonly hints?: OwnerHints;
}

/**
 * The owners each queue partition had queued jobs of when a pass last walked it, kept in memory
 * between the passes of one scheduler process: every one of them, where the pool's lease keeps
 * only those that fit (`leaseOwnerHints`), so many owners still read side by side. Only a hint
 * for where to start reading: a wrong or missing owner costs a round trip, never a job
 * (OwnerHeads reads every gap between them).
 */
export class OwnerHints {
  private readonly byPartition = new Map<string, readonly string[]>();

  get(partition: string): readonly string[] {
    return this.byPartition.get(partition) ?? [];
  }

  set(partition: string, owners: readonly string[]): void {
    this.byPartition.set(partition, owners);
  }
}

/** One owner's head of the queue in a partition, and where its next page starts if it has more. */
interface OwnerRun {
  readonly owner: string;
  readonly items: JobItem[];
  readonly startKey: Record<string, unknown> | undefined;
}

/**
 * The head of every owner's queue in the given partitions, from `queueByOwner` (one Query per
 * owner), reading `perOwner` jobs of each; `more()` reads the next jobs of the owners whose last
 * read was full. Owners are found by skipping from one to the next (the start key `<owner>$`),
 * which is one round trip per owner in a row; with owners known beforehand (`hints`, the owners
 * holding capacity) the gaps between them are walked side by side, so a pass over a steady set
 * of owners takes one or two round trips however many owners there are.
 */
export class OwnerHeads {
  private readonly cursors: { pk: string; owner: string; startKey: Record<string, unknown> }[] = [];
  private readonly seen = new Set<string>();
  private walked = false;

  constructor(
    private readonly repo: JobRepository,
    private readonly partitions: readonly string[],
    private readonly options: OwnerHeadsOptions,
  ) {}

  /** The heads; `known`: owners likely to have queued jobs (say, those holding capacity). */
  async first(known: Iterable<string> = []): Promise<JobItem[]> {
    const owners = [...known];
    const lists = await Promise.all(this.partitions.map((pk) => this.walkOwners(pk, owners)));
    this.walked = true;
    return lists.flat();
  }

  /** The owners `first()` found queued jobs of, in every partition, in key order; null before it ran. */
  get owners(): string[] | null {
    return this.walked ? [...this.seen].sort(byOwnerKey) : null;
  }

  /** The next jobs of every owner that has more; [] when none has. */
  async more(): Promise<JobItem[]> {
    const pending = this.cursors.splice(0);
    const lists = await Promise.all(
      pending.map(async (cursor) => {
        const page = await ownerQueuePage(this.repo, cursor.pk, cursor.owner, {
          limit: this.options.perOwner,
          startKey: cursor.startKey,
        });
        if (page.lastKey) this.cursors.push({ ...cursor, startKey: page.lastKey });
        return page.items;
      }),
    );
    return lists.flat();
  }

  private async walkOwners(pk: string, known: readonly string[]): Promise<JobItem[]> {
    const hinted = [...new Set([...(this.options.hints?.get(pk) ?? []), ...known])]
      .sort(byOwnerKey)
      .slice(0, this.options.maxOwners);
    // The gaps before, between and after the hinted owners; each ends with the owner after it.
    const gaps = [null, ...hinted].map((start, i) => this.walkGap(pk, start, hinted[i] ?? null));
    // In key order, as one walk from the start would have found them, and as many.
    const runs = (await Promise.all(gaps)).flat().slice(0, this.options.maxOwners);
    this.options.hints?.set(
      pk,
      runs.map((r) => r.owner),
    );
    for (const run of runs) {
      this.seen.add(run.owner);
      if (run.startKey) this.cursors.push({ pk, owner: run.owner, startKey: run.startKey });
    }
    return runs.flatMap((r) => r.items);
  }

  /** The owners after `start` (from the first when null) up to and including `end` (or the last). */
  private async walkGap(pk: string, start: string | null, end: string | null): Promise<OwnerRun[]> {
    const runs: OwnerRun[] = [];
    let after = start === null ? null : afterOwner(start);
    for (let owners = 0; owners < this.options.maxOwners; owners++) {
      const page = await ownerHeadPage(this.repo, pk, after, this.options.perOwner);
      const first = page.items[0];
      if (!first?.queueOwnerSk) break;
      const owner = ownerOfQueueOwnerSk(first.queueOwnerSk);
      // `end` has no queued jobs left: this owner belongs to the next gap, which reads it.
      if (end !== null && byOwnerKey(owner, end) > 0) break;
      const own = page.items.filter((i) => i.owner === owner);
      // The page ran into the next owner: this owner has nothing more. Otherwise it may.
      const full = own.length === page.items.length;
      runs.push({ owner, items: own, startKey: full ? page.lastKey : undefined });
      // Every item left in the partition was this owner's: no next owner.
      if (owner === end || (full && !page.lastKey)) break;
      after = afterOwner(owner);
    }
    return runs;
  }
}

/**
 * The owners a pass leaves on the pool's lease item for the next pass, which may run in another
 * process: as many of `owners` (in key order) as fit in about 600 bytes, so the item stays under
 * 1 KB and every take and release of the lease stays one write unit. Null when they are the ones
 * the lease has (nothing to write).
 */
export function leaseOwnerHints(
  owners: readonly string[],
  onLease: readonly string[] | undefined,
): string[] | null {
  const kept: string[] = [];
  let bytes = 0;
  for (const owner of owners) {
    // A list entry: the string and a few bytes of DynamoDB's overhead.
    bytes += Buffer.byteLength(owner) + 3;
    if (bytes > LEASE_HINT_BYTES) break;
    kept.push(owner);
  }
  const same =
    onLease !== undefined && onLease.length === kept.length && kept.every((o, i) => o === onLease[i]);
  return same ? null : kept;
}

const LEASE_HINT_BYTES = 600;

/**
 * Owners in the order `queueByOwner` keeps them: by `<owner>#`, as the sort key starts, in
 * DynamoDB's order for strings (their UTF-8 bytes, which JavaScript's UTF-16 order can differ
 * from). A gap's walk stops at the first owner past its end, so the two must agree.
 */
function byOwnerKey(a: string, b: string): number {
  return Buffer.compare(Buffer.from(`${a}#`), Buffer.from(`${b}#`));
}

/** The queue partitions a pool's pass reads: its own and the any-pool one. */
export function queuePartitions(pool: string): string[] {
  return [queuePk(pool), queuePk(null)];
}

/** Whether an algorithm orders by owner, and so reads each owner's head. */
export function readsByOwner(algorithm: Algorithm): boolean {
  return algorithm === "fair-share" || algorithm === "round-robin";
}

/** A queued job (item or queue-index projection) as admission and the policy orders see it. */
export function queuedJob(item: JobItem): QueuedJob {
  return {
    id: item.id,
    priority: item.priority,
    resources: item.resources,
    pool: item.pool ?? null,
    constraints: jobConstraints(item),
    queuedAt: item.queuedAt ?? item.createdAt,
    owner: item.owner,
    type: item.type,
    deadline: item.deadline ?? null,
    offPeakOnly: item.offPeakOnly === true,
    orderKey: movedPosition(item),
    project: item.project ?? null,
  };
}

/**
 * A moved job's position (PATCH before). A job item carries it; an index entry carries it in
 * its key (`queue`: queueSk; `queueByOwner`: owner#queueSk), which every entry has, so the
 * projection needs no new attribute. `queueByAge` entries have neither: a moved job read only
 * from there sorts at its default place within its band until the `queue` read reaches it.
 */
function movedPosition(item: JobItem): string | null {
  if (item.orderKey) return item.orderKey;
  const sk =
    item.queueSk ?? (item.queueOwnerSk ? item.queueOwnerSk.slice(item.queueOwnerSk.indexOf("#") + 1) : null);
  if (!sk) return null;
  const position = positionOfQueueSk(sk);
  return position === queuePosition({ id: item.id, deadline: item.deadline ?? null }) ? null : position;
}

/** A job holding capacity, as the `active` index projects it. */
export interface ActiveItem {
  readonly id: string;
  readonly status: string;
  readonly reservation: { pool: string; nodeId: string; cpu: number; memoryMb: number; gpu: number };
  readonly attempts: number;
  readonly executionArn?: string;
  readonly owner: string;
  readonly type: string;
  readonly priority: number;
  readonly timeoutSeconds?: number;
  readonly attemptStartedAt?: string;
  readonly preemptedAt?: string;
  readonly updatedAt?: string;
  /** The job's project (issue 13), for its project's running GPU-seconds. */
  readonly project?: string;
}

/** Resources held per owner: the "in use" of Dominant Resource Fairness. */
export function heldByOwner(active: readonly ActiveItem[]): Map<string, Resources> {
  const held = new Map<string, Resources>();
  for (const item of active) {
    const sum = held.get(item.owner) ?? { cpu: 0, memoryMb: 0, gpu: 0 };
    held.set(item.owner, {
      cpu: sum.cpu + item.reservation.cpu,
      memoryMb: sum.memoryMb + item.reservation.memoryMb,
      gpu: sum.gpu + item.reservation.gpu,
    });
  }
  return held;
}

/** Every job holding capacity in a pool: bounded by the pool's capacity, not by any backlog. */
export async function readActive(repo: JobRepository, pool: string): Promise<ActiveItem[]> {
  const items: ActiveItem[] = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await activePage(repo, pool, startKey);
    for (const item of page.items) {
      if (item.reservation && typeof item.id === "string") items.push(item as unknown as ActiveItem);
    }
    startKey = page.lastKey;
  } while (startKey);
  return items;
}
