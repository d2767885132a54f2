import type { Resources } from "./job";
import type { PoolConfig } from "./pools";

/**
 * Admission: which queued jobs go to which node in one scheduling pass. Pure — the scheduler
 * (app/scheduler.ts) reads the queue and the nodes, asks here, and writes what was decided.
 *
 * The rules: jobs are walked in the order given (the queue index's admission order, or a
 * policy's reordering of it); a job fits a node when each of its resources fits the node's free
 * capacity; GPU jobs are placed best-fit (least free GPU that fits, keeping whole GPU nodes for
 * big GPU jobs), CPU jobs spread (most free CPU, GPU-less nodes first). Smaller jobs behind one
 * that cannot fit may go ahead (backfill), but a job that has waited past `starvationSeconds`
 * and still cannot fit has a node held for it — the one where it would fit soonest — and no
 * later job is placed there in this pass, so backfill can never starve it.
 *
 * Extension points for the policies that follow (fair-share, quotas, windows, type concurrency,
 * preemption, placement): reorder `queued` before calling, add `gates`, or swap `placement`.
 */

export const DEFAULT_STARVATION_SECONDS = 300;

/** Float sums of fractional CPUs (0.1 + 0.2) must not refuse a job that fits exactly. */
const EPSILON = 1e-9;

export interface QueuedJob {
  readonly id: string;
  readonly priority: number;
  readonly resources: Resources;
  /** The pool the job asked for; null: any pool whose labels and node size fit. */
  readonly pool: string | null;
  readonly constraints: Readonly<Record<string, string>>;
  /** When the job last entered `queued`: the start of the wait that starvation is measured on. */
  readonly queuedAt: string;
  readonly owner?: string;
  readonly type?: string;
  readonly deadline?: string | null;
}

/** An up node as admission sees it: what it has and what is already reserved on it. */
export interface NodeState {
  readonly nodeId: string;
  readonly pool: string;
  readonly capacity: Resources;
  readonly used: Resources;
}

/** A node during a pass: free capacity shrinks as jobs are placed. */
export interface NodeView {
  readonly nodeId: string;
  readonly pool: string;
  readonly capacity: Resources;
  readonly free: Resources;
}

/**
 * A rule that may keep a job waiting whatever the capacity (quota, off-peak window, type
 * concurrency). `admitted` tells it of every placement in the pass so it can count.
 */
export interface AdmissionGate {
  /** Why the job must wait now, or null to let it through. */
  check(job: QueuedJob, now: Date): string | null;
  admitted?(job: QueuedJob, node: NodeView): void;
}

/** Picks one of the nodes a job fits on (never empty). */
export type PlacementStrategy = (job: QueuedJob, fitting: readonly NodeView[]) => NodeView;

export interface AdmissionOptions {
  /** Up nodes only; draining and lost nodes take no new work. */
  readonly nodes: readonly NodeState[];
  /** The configured pools: their labels decide where a job without a pool may go. */
  readonly pools: readonly PoolConfig[];
  readonly now: Date;
  /** @default DEFAULT_STARVATION_SECONDS */
  readonly starvationSeconds?: number;
  readonly gates?: readonly AdmissionGate[];
  /** @default bestFitOrSpread */
  readonly placement?: PlacementStrategy;
}

export interface AdmissionInput extends AdmissionOptions {
  /** In admission order. */
  readonly queued: readonly QueuedJob[];
}

export interface Admit {
  readonly jobId: string;
  readonly pool: string;
  readonly nodeId: string;
}

/**
 * Why a job waits: `capacity` (no node has room), `held` (room exists only on a node held for a
 * starving job), `gate` (a policy said no), `ineligible` (none of the given nodes' pools may run
 * it — in a pass over one pool, the job belongs to another pool's pass).
 */
export type WaitKind = "capacity" | "held" | "gate" | "ineligible";

export interface Waiting {
  readonly jobId: string;
  readonly reason: string;
  readonly kind: WaitKind;
}

export interface Hold {
  readonly jobId: string;
  readonly pool: string;
  readonly nodeId: string;
}

export interface AdmissionDecision {
  /** In the order the jobs were offered. */
  readonly admit: Admit[];
  readonly waiting: Waiting[];
  /** Nodes held for starving jobs: no job after the holder was placed on them. */
  readonly held: Hold[];
}

/** Decides a whole pass at once. */
export function decideAdmission(input: AdmissionInput): AdmissionDecision {
  return new AdmissionPass(input).offer(input.queued);
}

/** Jobs of one shape (pool, constraints, resources) share where they may go and why they wait. */
interface Shape {
  readonly pools: string[];
  readonly slots: Slot[];
  /** Why the last job of this shape waited, as of `version`; `noHold`: a starving one found no node to hold. */
  wait?: { reason: string; kind: WaitKind; version: number; noHold: boolean };
}

interface Slot {
  readonly nodeId: string;
  readonly pool: string;
  readonly capacity: Resources;
  free: { cpu: number; memoryMb: number; gpu: number };
  heldBy: string | null;
}

/**
 * One pass, fed in chunks: the scheduler reads the queue page by page and offers each page,
 * stopping once `exhausted`. Offering the pages one by one decides exactly what offering them
 * all at once would.
 */
export class AdmissionPass {
  private readonly slots: Slot[];
  private readonly slotsByPool = new Map<string, Slot[]>();
  private readonly poolsByName = new Map<string, PoolConfig>();
  private readonly eligibleCache = new Map<string, Shape>();
  /** Bumped whenever a job is placed or a node held: cached "no room" answers older than it are stale. */
  private version = 0;
  private readonly now: Date;
  private readonly starvationMs: number;
  private readonly gates: readonly AdmissionGate[];
  private readonly placement: PlacementStrategy;

  constructor(options: AdmissionOptions) {
    this.now = options.now;
    this.starvationMs = (options.starvationSeconds ?? DEFAULT_STARVATION_SECONDS) * 1000;
    this.gates = options.gates ?? [];
    this.placement = options.placement ?? bestFitOrSpread;
    for (const pool of options.pools) this.poolsByName.set(pool.name, pool);
    this.slots = options.nodes.map((node) => ({
      nodeId: node.nodeId,
      pool: node.pool,
      capacity: node.capacity,
      free: {
        cpu: node.capacity.cpu - node.used.cpu,
        memoryMb: node.capacity.memoryMb - node.used.memoryMb,
        gpu: node.capacity.gpu - node.used.gpu,
      },
      heldBy: null,
    }));
    for (const slot of this.slots) {
      const list = this.slotsByPool.get(slot.pool);
      if (list) list.push(slot);
      else this.slotsByPool.set(slot.pool, [slot]);
    }
  }

  /** True when no node that is not held has room for even the smallest possible job. */
  get exhausted(): boolean {
    return !this.slots.some((s) => s.heldBy === null && s.free.cpu > EPSILON && s.free.memoryMb >= 1);
  }

  /** Free capacity per node as it stands after the jobs offered so far. */
  nodes(): NodeView[] {
    return this.slots.map(view);
  }

  offer(jobs: readonly QueuedJob[]): AdmissionDecision {
    const admit: Admit[] = [];
    const waiting: Waiting[] = [];
    const held: Hold[] = [];
    for (const job of jobs) {
      const shape = this.eligible(job);
      if (shape.slots.length === 0) {
        waiting.push(noNodeReason(job, shape.pools));
        continue;
      }
      const refusal = this.gateRefusal(job);
      if (refusal !== null) {
        waiting.push({ jobId: job.id, reason: refusal, kind: "gate" });
        continue;
      }
      const starving = this.isStarving(job);
      // Nothing was placed or held since a job of the same shape found no room: neither will this one.
      const known = shape.wait;
      if (known && known.version === this.version && (!starving || known.noHold)) {
        waiting.push({ jobId: job.id, reason: known.reason, kind: known.kind });
        continue;
      }
      const fitting: Slot[] = [];
      let fitsHeld: Slot | null = null;
      for (const slot of shape.slots) {
        if (!fitsIn(job.resources, slot.free)) continue;
        if (slot.heldBy === null) fitting.push(slot);
        else fitsHeld ??= slot;
      }
      if (fitting.length > 0) {
        // Slots are handed out as read-only views: no copy per job, which keeps big passes fast.
        const chosen = this.placement(job, fitting);
        const slot = fitting.find((s) => s === chosen);
        if (!slot) throw new RangeError(`placement chose node ${chosen.nodeId}, which the job does not fit`);
        slot.free.cpu -= job.resources.cpu;
        slot.free.memoryMb -= job.resources.memoryMb;
        slot.free.gpu -= job.resources.gpu;
        this.version++;
        admit.push({ jobId: job.id, pool: slot.pool, nodeId: slot.nodeId });
        for (const gate of this.gates) gate.admitted?.(job, view(slot));
        continue;
      }
      const need = shortfall(job, shape.slots, shape.pools);
      if (starving) {
        const target = this.holdTarget(job, shape.slots);
        if (target) {
          target.heldBy = job.id;
          this.version++;
          held.push({ jobId: job.id, pool: target.pool, nodeId: target.nodeId });
          waiting.push({
            jobId: job.id,
            reason: `${need}; node ${target.nodeId} is held for it (waiting since ${job.queuedAt})`,
            kind: "capacity",
          });
          continue;
        }
      }
      const wait: { reason: string; kind: WaitKind } = fitsHeld?.heldBy
        ? {
            reason: `${need} (node ${fitsHeld.nodeId} is held for ${fitsHeld.heldBy}, which has waited longer)`,
            kind: "held",
          }
        : { reason: need, kind: "capacity" };
      shape.wait = { ...wait, version: this.version, noHold: starving };
      waiting.push({ jobId: job.id, ...wait });
    }
    return { admit, waiting, held };
  }

  private gateRefusal(job: QueuedJob): string | null {
    for (const gate of this.gates) {
      const reason = gate.check(job, this.now);
      if (reason !== null) return reason;
    }
    return null;
  }

  private isStarving(job: QueuedJob): boolean {
    const since = Date.parse(job.queuedAt);
    return !Number.isNaN(since) && this.now.getTime() - since > this.starvationMs;
  }

  /**
   * Where a starving job would fit soonest: among free (not yet held) nodes big enough to ever
   * hold it, the one with the most free of the job's dominant resource.
   */
  private holdTarget(job: QueuedJob, slots: readonly Slot[]): Slot | null {
    let best: Slot | null = null;
    let bestFree = Number.NEGATIVE_INFINITY;
    for (const slot of slots) {
      if (slot.heldBy !== null || !fitsIn(job.resources, slot.capacity)) continue;
      const free = slot.free[dominantResource(job.resources, slot.capacity)];
      if (free > bestFree) {
        best = slot;
        bestFree = free;
      }
    }
    return best;
  }

  /**
   * The nodes of every pool the job may run in: the pool it names, or each pool whose labels
   * match its constraints and whose configured node size could hold it. Cached per shape.
   */
  private eligible(job: QueuedJob): Shape {
    const { cpu, memoryMb, gpu } = job.resources;
    const key = `${job.pool ?? "*"}|${cpu}|${memoryMb}|${gpu}|${constraintKey(job.constraints)}`;
    let found = this.eligibleCache.get(key);
    if (!found) {
      const names = job.pool
        ? [job.pool]
        : [...new Set([...this.poolsByName.keys(), ...this.slotsByPool.keys()])];
      const pools = names.filter((name) => {
        const pool = this.poolsByName.get(name);
        const labels = pool?.labels ?? {};
        const labelled = Object.entries(job.constraints).every(([k, v]) => labels[k] === v);
        // A job that named its pool is judged by that pool's nodes, so the reason says why it waits.
        return labelled && (job.pool !== null || !pool || fitsIn(job.resources, pool.node));
      });
      found = { pools, slots: pools.flatMap((name) => this.slotsByPool.get(name) ?? []) };
      this.eligibleCache.set(key, found);
    }
    return found;
  }
}

/**
 * The default placement. GPU jobs: best fit, the node with the least free GPU that fits, so
 * fragments are used and whole nodes stay whole for big GPU jobs. CPU jobs: spread, GPU-less
 * nodes first, then the most free CPU, then the most free memory. Ties go to the earlier node.
 */
export const bestFitOrSpread: PlacementStrategy = (job, fitting) => {
  let best = fitting[0];
  if (!best) throw new RangeError("placement needs at least one node");
  for (const node of fitting) {
    if (job.resources.gpu > 0) {
      if (node.free.gpu < best.free.gpu || (node.free.gpu === best.free.gpu && node.free.cpu < best.free.cpu))
        best = node;
      continue;
    }
    const gpuRank = Number(node.capacity.gpu > 0) - Number(best.capacity.gpu > 0);
    if (
      gpuRank < 0 ||
      (gpuRank === 0 &&
        (node.free.cpu > best.free.cpu ||
          (node.free.cpu === best.free.cpu && node.free.memoryMb > best.free.memoryMb)))
    )
      best = node;
  }
  return best;
};

export function fitsIn(request: Resources, room: Resources): boolean {
  return (
    request.cpu <= room.cpu + EPSILON &&
    request.memoryMb <= room.memoryMb + EPSILON &&
    request.gpu <= room.gpu + EPSILON
  );
}

/** The resource the job needs the largest share of a node's capacity of. */
export function dominantResource(request: Resources, capacity: Resources): keyof Resources {
  const share = (need: number, have: number): number => (need <= 0 ? 0 : have <= 0 ? Infinity : need / have);
  const cpu = share(request.cpu, capacity.cpu);
  const memoryMb = share(request.memoryMb, capacity.memoryMb);
  const gpu = share(request.gpu, capacity.gpu);
  if (gpu >= cpu && gpu >= memoryMb && request.gpu > 0) return "gpu";
  return memoryMb > cpu ? "memoryMb" : "cpu";
}

const RESOURCE_WORDS: Readonly<Record<keyof Resources, (n: number) => string>> = {
  cpu: (n) => `${round(n)} CPU`,
  memoryMb: (n) => `${round(n)} MB memory`,
  gpu: (n) => `${round(n)} GPU`,
};

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function poolWords(pools: readonly string[]): string {
  return pools.length === 1 ? `pool ${pools[0]}` : `pools ${pools.join(", ")}`;
}

function noNodeReason(job: QueuedJob, pools: readonly string[]): Waiting {
  if (pools.length === 0) {
    const what = job.pool ? `pool ${job.pool}` : `a pool with labels ${JSON.stringify(job.constraints)}`;
    return { jobId: job.id, reason: `no node of ${what} is up`, kind: "ineligible" };
  }
  return { jobId: job.id, reason: `no node of ${poolWords(pools)} is up`, kind: "capacity" };
}

/**
 * The statusReason of a job that fits no node now, in API.md's words: the first resource no
 * node has enough of ("needs 4 GPU in pool gpu, 2 free"), or that no single node has all of it.
 */
function shortfall(job: QueuedJob, slots: readonly Slot[], pools: readonly string[]): string {
  const where = poolWords([...new Set(slots.map((s) => s.pool))].filter((p) => pools.includes(p)));
  if (!slots.some((s) => fitsIn(job.resources, s.capacity))) {
    const biggest = (r: keyof Resources) => Math.max(...slots.map((s) => s.capacity[r]));
    const r =
      (["gpu", "cpu", "memoryMb"] as const).find((k) => job.resources[k] > biggest(k) + EPSILON) ?? "cpu";
    return `needs ${RESOURCE_WORDS[r](job.resources[r])}; no node of ${where} has more than ${round(biggest(r))}`;
  }
  // Room on a node held for a starving job is not room for anyone else.
  const open = slots.filter((s) => s.heldBy === null);
  for (const r of ["gpu", "cpu", "memoryMb"] as const) {
    const mostFree = Math.max(0, ...open.map((s) => s.free[r]));
    if (job.resources[r] > mostFree + EPSILON) {
      return `needs ${RESOURCE_WORDS[r](job.resources[r])} in ${where}, ${round(mostFree)} free`;
    }
  }
  const { cpu, memoryMb, gpu } = job.resources;
  return `needs ${round(cpu)} CPU, ${round(memoryMb)} MB memory, ${round(gpu)} GPU on one node in ${where}; no node has all of it free`;
}

function view(slot: Slot): NodeView {
  return { nodeId: slot.nodeId, pool: slot.pool, capacity: slot.capacity, free: { ...slot.free } };
}

function constraintKey(constraints: Readonly<Record<string, string>>): string {
  const keys = Object.keys(constraints);
  if (keys.length === 0) return "";
  return JSON.stringify(keys.sort().map((k) => [k, constraints[k]]));
}
