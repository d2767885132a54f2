import type { AdmissionPass, Admit, Hold, QueuedJob, Waiting } from "./admission";
import { MAX_PRIORITY, MIN_PRIORITY, type Resources } from "./job";
import type { Algorithm } from "./policy";

/**
 * The policy algorithms of API.md ("Queue, pools, policy, quotas") as the order in which one
 * pool's queued jobs are offered to admission. The scheduler reads the queue, builds an
 * AdmissionOrder and feeds AdmissionPass one job at a time (decideInOrder), telling the order
 * which jobs were admitted so fair-share and round-robin can react to what was placed.
 *
 * Every algorithm first bands the queue by effective priority (priority plus aging), highest
 * band first; the algorithm only decides the order within a band:
 * - `priority`: earliest deadline first (jobs without one last), then FIFO by job id (ULIDs sort
 *   by creation: the stored queue order).
 * - `fair-share`: Dominant Resource Fairness. The owner whose dominant share of the pool (usage
 *   over capacity, the largest of CPU, memory and GPU, divided by the owner's weight) is
 *   smallest offers its next job. Only admissions move shares, so an owner whose job does not
 *   fit keeps the turn and offers its next one.
 * - `round-robin`: owners take turns in name order, starting after the owner admitted last.
 *   A turn ends when the owner has a job admitted (or has none left in the band): one admitted
 *   job per turn, so an owner whose head job does not fit does not lose its turn to it.
 * Within an owner, jobs keep the `priority` order.
 */

/**
 * A queued job's place among the jobs of its priority, as a string whose order is the queue's:
 * its deadline (canonical ISO-8601, so string order is time order; none sorts last as `~`) then
 * its id — or, once an admin moved it (PATCH /jobs/{id} before), the key chosen then. The queue
 * index's sort key is the priority's rank followed by this, so the index and the in-memory
 * order below agree by construction.
 */
export function queuePosition(job: {
  readonly deadline?: string | null | undefined;
  readonly id: string;
  readonly orderKey?: string | null | undefined;
}): string {
  return job.orderKey ?? `${job.deadline ?? "~"}#${job.id}`;
}

/** Lowest and highest characters a position uses: printable ASCII, no space. */
const MIN_CHAR = 0x21;
const MAX_CHAR = 0x7e;

/**
 * A position strictly between `lo` and `hi` (`lo` < `hi`; "" for no lower bound): where a job
 * moved just ahead of the job at `hi` goes when the job at `lo` is the one before it. Fractional
 * indexing over strings, so nothing else in the queue is rewritten; keys grow by about one
 * character per move into the same gap.
 */
export function positionBetween(lo: string, hi: string): string {
  if (!(lo < hi)) throw new RangeError(`no position between ${JSON.stringify(lo)} and ${JSON.stringify(hi)}`);
  let prefix = "";
  for (let i = 0; ; i++) {
    // Past its end, `lo` is below every character; `hi` never ends first while they agree.
    const a = i < lo.length ? lo.charCodeAt(i) : MIN_CHAR - 1;
    const b = i < hi.length ? hi.charCodeAt(i) : MIN_CHAR - 1;
    if (a === b) {
      prefix += String.fromCharCode(a);
      continue;
    }
    if (b - a > 1 && Math.floor((a + b) / 2) >= MIN_CHAR) {
      return prefix + String.fromCharCode(Math.floor((a + b) / 2));
    }
    if (a >= MIN_CHAR) {
      // hi's character is right after lo's: keep lo's and go above the rest of lo.
      const rest = lo.slice(i + 1);
      return prefix + String.fromCharCode(a) + above(rest);
    }
    // lo ended and hi's character is the lowest: take it and go below the rest of hi.
    return positionBetween(prefix + String.fromCharCode(b), hi);
  }
}

/** A string above `s` (same prefix, then a higher character), with no upper bound to respect. */
function above(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < MAX_CHAR) return s.slice(0, i) + String.fromCharCode(Math.floor((c + MAX_CHAR + 1) / 2));
  }
  return `${s}${String.fromCharCode(Math.floor((MIN_CHAR + MAX_CHAR) / 2))}`;
}

/** Share differences below this are float noise (0.1 + 0.2), not a reason to prefer an owner. */
const SHARE_EPSILON = 1e-12;

/** priority + one step per `agingSecondsPerStep` waited since queuedAt, at most MAX_PRIORITY. */
export function effectivePriority(
  job: { priority: number; queuedAt: string },
  now: Date,
  agingSecondsPerStep: number,
): number {
  if (agingSecondsPerStep <= 0 || job.priority >= MAX_PRIORITY) return job.priority;
  const since = Date.parse(job.queuedAt);
  if (Number.isNaN(since)) return job.priority;
  const waitedMs = now.getTime() - since;
  if (waitedMs <= 0) return job.priority;
  const steps = Math.floor(waitedMs / (agingSecondsPerStep * 1000));
  return Math.min(MAX_PRIORITY, job.priority + steps);
}

/**
 * effectivePriority for many jobs against one clock, without parsing each queuedAt: timestamps
 * in toISOString's form (what the store writes) order as strings, so a job's steps are found by
 * comparing its queuedAt with the precomputed step boundaries. Parsing 100k timestamps costs more
 * than the rest of ordering them; other forms fall back to effectivePriority.
 */
class Aging {
  /** boundaries[k]: now minus k steps; a job queued at or before it has waited k steps. */
  private readonly boundaries: string[] = [];

  constructor(
    private readonly now: Date,
    private readonly stepSeconds: number,
  ) {
    if (stepSeconds <= 0) return;
    for (let k = 0; k <= MAX_PRIORITY - MIN_PRIORITY; k++) {
      const boundary = new Date(now.getTime() - k * stepSeconds * 1000);
      if (Number.isNaN(boundary.getTime())) break;
      const text = boundary.toISOString();
      if (!isCanonicalTime(text)) break;
      this.boundaries.push(text);
    }
  }

  priority(job: { priority: number; queuedAt: string }): number {
    if (this.stepSeconds <= 0 || job.priority >= MAX_PRIORITY) return job.priority;
    const limit = MAX_PRIORITY - job.priority;
    const at = job.queuedAt;
    if (!isCanonicalTime(at) || limit >= this.boundaries.length) {
      return effectivePriority(job, this.now, this.stepSeconds);
    }
    let steps = 0;
    for (;;) {
      const boundary = this.boundaries[steps + 1];
      if (steps >= limit || boundary === undefined || at > boundary) break;
      steps++;
    }
    return job.priority + steps;
  }
}

/** YYYY-MM-DDTHH:MM:SS.sssZ, the one form whose string order is its time order. */
function isCanonicalTime(text: string): boolean {
  return (
    text.length === 24 &&
    text.charCodeAt(4) === 45 &&
    text.charCodeAt(10) === 84 &&
    text.charCodeAt(19) === 46 &&
    text.charCodeAt(23) === 90
  );
}

export interface OrderingInput {
  readonly algorithm: Algorithm;
  readonly agingSecondsPerStep: number;
  readonly weights: Readonly<Record<string, number>>;
  readonly now: Date;
  readonly jobs: readonly QueuedJob[];
  /** resources in use per owner in the pool (running + dispatched), for DRF */
  readonly usage: ReadonlyMap<string, Resources>;
  /** the pool's total capacity (sum of up nodes), for DRF shares */
  readonly capacity: Resources;
  /** round-robin: the owner whose turn was last (previous pass); turns continue after it */
  readonly lastOwner?: string | null;
}

/**
 * The jobs of one effective priority as read. Jobs with a deadline all go before those without,
 * so the two are kept apart: the few with one are sorted by it, and the rest usually arrive in
 * id order already (the queue index's order), which is noticed on the way in and spares a sort.
 */
interface Band {
  readonly dated: { readonly job: QueuedJob; readonly deadline: number }[];
  readonly undated: QueuedJob[];
  undatedInOrder: boolean;
  /** Jobs an admin moved (an orderKey): rare, merged into the rest by position. */
  readonly placed: { readonly job: QueuedJob; readonly position: string }[];
}

/** One owner's jobs within a band, in priority order, and how far it has got. */
interface OwnerQueue {
  readonly owner: string;
  readonly jobs: QueuedJob[];
  /** ranks[i]: jobs[i]'s position in the band's priority order, the tie-break between owners. */
  readonly ranks: number[];
  pos: number;
  /** Dominant share / weight as of the owner's last push onto the heap. */
  share: number;
}

/**
 * Yields one pool's queued jobs in policy order. Not reusable: one instance per pass. Each job
 * is yielded once; `admitted(job)` must be called for a yielded job that was admitted, before
 * the next `next()`.
 */
export class AdmissionOrder {
  private readonly algorithm: Algorithm;
  private readonly weights: Readonly<Record<string, number>>;
  private readonly capacity: Resources;
  private readonly usage = new Map<string, { cpu: number; memoryMb: number; gpu: number }>();
  /** Bands by effective priority, highest first; each band is consumed then dropped. */
  private readonly bands: (Band | null)[];
  private bandIndex = -1;
  private last: string | null;

  // priority: the current band and a cursor into it.
  private band: QueuedJob[] = [];
  private cursor = 0;

  // fair-share: owners of the current band by share; the owner yielded last is out of the heap.
  private heap: OwnerQueue[] = [];
  private current: OwnerQueue | null = null;
  /** An admission changed the share of an owner still in the heap: rebuild before popping. */
  private heapStale = false;

  // round-robin: owners of the current band in turn order and whose turn it is.
  private ring: OwnerQueue[] = [];
  private turn = 0;
  private turnOver = false;

  constructor(input: OrderingInput) {
    this.algorithm = input.algorithm;
    this.weights = input.weights;
    this.capacity = input.capacity;
    this.last = input.lastOwner ?? null;
    for (const [owner, used] of input.usage) {
      this.usage.set(owner, { cpu: used.cpu, memoryMb: used.memoryMb, gpu: used.gpu });
    }
    const aging = new Aging(input.now, input.agingSecondsPerStep);
    const seen = new Set<string>();
    const byPriority = new Map<number, Band>();
    for (const job of input.jobs) {
      // One hash lookup, not two: has-then-add on 100k ids shows in the profile.
      const before = seen.size;
      seen.add(job.id);
      if (seen.size === before) continue;
      const priority = aging.priority(job);
      let band = byPriority.get(priority);
      if (!band) {
        band = { dated: [], undated: [], undatedInOrder: true, placed: [] };
        byPriority.set(priority, band);
      }
      if (job.orderKey) {
        band.placed.push({ job, position: job.orderKey });
        continue;
      }
      const deadline = job.deadline ? Date.parse(job.deadline) : Number.NaN;
      if (!Number.isNaN(deadline)) {
        band.dated.push({ job, deadline });
        continue;
      }
      const previous = band.undated[band.undated.length - 1];
      if (previous && previous.id > job.id) band.undatedInOrder = false;
      band.undated.push(job);
    }
    this.bands = [...byPriority.entries()].sort((a, b) => b[0] - a[0]).map(([, band]) => band);
  }

  /** The owner whose job was admitted last (or the input's, if none was): where turns resume. */
  get lastOwner(): string | null {
    return this.last;
  }

  next(): QueuedJob | undefined {
    switch (this.algorithm) {
      case "priority":
        return this.nextByPriority();
      case "fair-share":
        return this.nextFairShare();
      case "round-robin":
        return this.nextRoundRobin();
    }
  }

  /** Tells the order that `job` (just yielded) was admitted: its owner's usage grows, its turn ends. */
  admitted(job: QueuedJob): void {
    const owner = job.owner ?? "";
    this.last = owner;
    if (this.algorithm === "round-robin") {
      this.turnOver = true;
      return;
    }
    if (this.algorithm !== "fair-share") return;
    const used = this.usage.get(owner);
    if (used) {
      used.cpu += job.resources.cpu;
      used.memoryMb += job.resources.memoryMb;
      used.gpu += job.resources.gpu;
    } else {
      this.usage.set(owner, {
        cpu: job.resources.cpu,
        memoryMb: job.resources.memoryMb,
        gpu: job.resources.gpu,
      });
    }
    // The owner just yielded is out of the heap: re-keyed here. Anyone else is in it: rebuild.
    if (this.current?.owner === owner) this.current.share = this.shareOf(owner);
    else this.heapStale = true;
  }

  /** Moves to the next band; false when none is left. */
  private nextBand(): boolean {
    this.bandIndex++;
    const read = this.bands[this.bandIndex];
    if (!read) return false;
    this.bands[this.bandIndex] = null;
    if (!read.undatedInOrder) read.undated.sort(byId);
    const band =
      read.dated.length === 0
        ? read.undated
        : read.dated
            .sort(byDeadlineThenId)
            .map((d) => d.job)
            .concat(read.undated);
    this.band = read.placed.length === 0 ? band : mergePlaced(band, read.placed);
    this.cursor = 0;
    if (this.algorithm === "priority") return true;
    const owners = groupByOwner(band);
    if (this.algorithm === "fair-share") {
      for (const queue of owners) queue.share = this.shareOf(queue.owner);
      this.heap = owners;
      heapify(this.heap, fairer);
      this.current = null;
      this.heapStale = false;
    } else {
      owners.sort((a, b) => (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0));
      const last = this.last;
      const start = last === null ? 0 : owners.findIndex((q) => q.owner > last);
      this.ring = owners;
      this.turn = Math.max(start, 0);
      this.turnOver = false;
    }
    return true;
  }

  private nextByPriority(): QueuedJob | undefined {
    for (;;) {
      const job = this.band[this.cursor];
      if (job) {
        this.cursor++;
        return job;
      }
      if (!this.nextBand()) return undefined;
    }
  }

  private nextFairShare(): QueuedJob | undefined {
    const current = this.current;
    if (current) {
      this.current = null;
      if (current.pos < current.jobs.length) {
        const top = this.heap[0];
        if (!this.heapStale) {
          // Still the fairest (the common case when its job was not admitted): no heap work.
          // Otherwise it takes the top's place in one sift instead of a push and a pop.
          const next = !top || fairer(current, top) ? current : heapReplaceTop(this.heap, current, fairer);
          const job = next.jobs[next.pos++];
          if (job) {
            this.current = next;
            return job;
          }
        } else {
          heapPush(this.heap, current, fairer);
        }
      }
    }
    for (;;) {
      if (this.heapStale) {
        for (const queue of this.heap) queue.share = this.shareOf(queue.owner);
        heapify(this.heap, fairer);
        this.heapStale = false;
      }
      const queue = heapPop(this.heap, fairer);
      if (queue) {
        const job = queue.jobs[queue.pos++];
        if (!job) continue;
        this.current = queue;
        return job;
      }
      if (!this.nextBand()) return undefined;
    }
  }

  private nextRoundRobin(): QueuedJob | undefined {
    for (;;) {
      if (this.ring.length === 0) {
        if (!this.nextBand()) return undefined;
        continue;
      }
      if (this.turnOver) {
        this.turn = (this.turn + 1) % this.ring.length;
        this.turnOver = false;
      }
      const queue = this.ring[this.turn];
      const job = queue?.jobs[queue.pos];
      if (!queue || !job) {
        // Out of jobs in this band: drop it from the ring; the turn passes to whoever is next.
        this.ring.splice(this.turn, 1);
        if (this.turn >= this.ring.length) this.turn = 0;
        continue;
      }
      queue.pos++;
      return job;
    }
  }

  /** The owner's dominant share of the pool divided by its weight. */
  private shareOf(owner: string): number {
    const used = this.usage.get(owner);
    if (!used) return 0;
    const weight = this.weights[owner];
    return dominantShare(used, this.capacity) / (weight !== undefined && weight > 0 ? weight : 1);
  }
}

/** The largest of usage/capacity over CPU, memory and GPU; a resource the pool lacks counts 0. */
export function dominantShare(used: Resources, capacity: Resources): number {
  const part = (u: number, c: number): number => (c > 0 ? u / c : 0);
  return Math.max(
    part(used.cpu, capacity.cpu),
    part(used.memoryMb, capacity.memoryMb),
    part(used.gpu, capacity.gpu),
  );
}

/**
 * Offers the jobs to the pass in the order's sequence, one at a time, and tells the order which
 * were admitted. Decides every job (so each waiting one gets its reason), in offer order.
 */
export function decideInOrder(
  pass: AdmissionPass,
  order: AdmissionOrder,
): { admit: Admit[]; waiting: Waiting[]; held: Hold[] } {
  const admit: Admit[] = [];
  const waiting: Waiting[] = [];
  const held: Hold[] = [];
  const single: QueuedJob[] = [];
  for (let job = order.next(); job !== undefined; job = order.next()) {
    single[0] = job;
    const decision = pass.offer(single);
    for (const a of decision.admit) admit.push(a);
    for (const w of decision.waiting) waiting.push(w);
    for (const h of decision.held) held.push(h);
    if (decision.admit.length > 0) order.admitted(job);
  }
  return { admit, waiting, held };
}

/**
 * A band in queue order with the moved jobs put at their positions: `band` is already in
 * position order (deadline, then id), so one merge suffices.
 */
function mergePlaced(
  band: readonly QueuedJob[],
  placed: { readonly job: QueuedJob; readonly position: string }[],
): QueuedJob[] {
  placed.sort((a, b) =>
    a.position !== b.position ? (a.position < b.position ? -1 : 1) : byId(a.job, b.job),
  );
  const merged: QueuedJob[] = [];
  let p = 0;
  for (const job of band) {
    const position = queuePosition(job);
    for (let next = placed[p]; next && next.position < position; next = placed[++p]) merged.push(next.job);
    merged.push(job);
  }
  for (; p < placed.length; p++) merged.push((placed[p] as { job: QueuedJob }).job);
  return merged;
}

function byId(a: QueuedJob, b: QueuedJob): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function byDeadlineThenId(
  a: { readonly job: QueuedJob; readonly deadline: number },
  b: { readonly job: QueuedJob; readonly deadline: number },
): number {
  if (a.deadline !== b.deadline) return a.deadline < b.deadline ? -1 : 1;
  return byId(a.job, b.job);
}

function groupByOwner(band: readonly QueuedJob[]): OwnerQueue[] {
  const byOwner = new Map<string, OwnerQueue>();
  let last: OwnerQueue | undefined;
  for (let rank = 0; rank < band.length; rank++) {
    const job = band[rank];
    if (!job) continue;
    const owner = job.owner ?? "";
    // Runs of one owner's jobs are common (a batch submitted at once): skip the lookup for them.
    let queue = last !== undefined && last.owner === owner ? last : byOwner.get(owner);
    if (!queue) {
      queue = { owner, jobs: [], ranks: [], pos: 0, share: 0 };
      byOwner.set(owner, queue);
    }
    queue.jobs.push(job);
    queue.ranks.push(rank);
    last = queue;
  }
  return [...byOwner.values()];
}

/** Fair-share heap order: smaller share first; equal shares, the owner whose next job ranks first. */
function fairer(a: OwnerQueue, b: OwnerQueue): boolean {
  if (Math.abs(a.share - b.share) > SHARE_EPSILON) return a.share < b.share;
  return headRank(a) < headRank(b);
}

function headRank(queue: OwnerQueue): number {
  return queue.ranks[queue.pos] ?? Number.POSITIVE_INFINITY;
}

// A binary min-heap over an array, `before(a, b)` meaning a comes out first.

function heapify<T>(heap: T[], before: (a: T, b: T) => boolean): void {
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(heap, i, before);
}

function heapPush<T>(heap: T[], item: T, before: (a: T, b: T) => boolean): void {
  heap.push(item);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    const p = heap[parent] as T;
    if (!before(item, p)) break;
    heap[i] = p;
    i = parent;
  }
  heap[i] = item;
}

/** Pops the top and pushes `item` in one sift (the heap must not be empty). */
function heapReplaceTop<T>(heap: T[], item: T, before: (a: T, b: T) => boolean): T {
  const top = heap[0] as T;
  heap[0] = item;
  siftDown(heap, 0, before);
  return top;
}

function heapPop<T>(heap: T[], before: (a: T, b: T) => boolean): T | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length > 0 && last !== undefined) {
    heap[0] = last;
    siftDown(heap, 0, before);
  }
  return top;
}

function siftDown<T>(heap: T[], start: number, before: (a: T, b: T) => boolean): void {
  const n = heap.length;
  const item = heap[start] as T;
  let i = start;
  for (;;) {
    const left = 2 * i + 1;
    if (left >= n) break;
    const right = left + 1;
    let child = left;
    if (right < n && before(heap[right] as T, heap[left] as T)) child = right;
    const c = heap[child] as T;
    if (!before(c, item)) break;
    heap[i] = c;
    i = child;
  }
  heap[i] = item;
}
