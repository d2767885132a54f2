import type { Resources } from "./job";
import type { PoolConfig } from "./pools";
import { BEHIND_PREFIX, type Reason, type ReasonCode } from "./reasons";

/**
 * Admission: which queued jobs go to which node in one scheduling pass. Pure — the scheduler
 * (app/scheduler.ts) reads the queue and the nodes, asks here, and writes what was decided.
 *
 * The rules: jobs are walked in the order given (the queue index's admission order, or a
 * policy's reordering of it); a job fits a node when each of its resources fits the node's free
 * capacity; among the pools it may run in, it goes to the one with the most free capacity of its
 * dominant resource (CPU jobs to pools without GPUs first), and within that pool GPU jobs are
 * placed best-fit (least free GPU that fits, keeping whole GPU nodes for big GPU jobs), CPU jobs
 * spread (most free CPU, GPU-less nodes first). Smaller jobs behind one
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
  /** Admitted only inside the policy's off-peak window (see gates.ts). */
  readonly offPeakOnly?: boolean;
  /** Its place among its priority when an admin moved it (ordering.ts#queuePosition). */
  readonly orderKey?: string | null;
  /** The project whose quota it also counts against (issue 13); null or absent: none. */
  readonly project?: string | null;
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
 * concurrency; see gates.ts). `admitted` tells it of every placement in the pass so it can count.
 * A gated job takes no capacity: the jobs behind it may still be placed.
 */
export interface AdmissionGate {
  /** Why the job must wait now, or null to let it through. */
  check(job: QueuedJob, now: Date): Reason | null;
  admitted?(job: QueuedJob, node: NodeView): void;
}

/** A node chosen for a job, and why: the sentence its dispatched transition records. */
export interface Placement {
  readonly node: NodeView;
  readonly why: string;
}

/**
 * Picks one of the nodes a job fits on (never empty), all in the one pool the pass chose for it.
 * Must return one of the views it was given.
 */
export type PlacementStrategy = (job: QueuedJob, fitting: readonly NodeView[]) => Placement;

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
  /** Why this pool and node, e.g. "best fit for 2 GPU: node gpu-1 has the least free GPU that fits (2 of 8 free)". */
  readonly why: string;
}

/**
 * Why a job waits: `capacity` (no node has room), `held` (room exists only on a node held for a
 * starving job), `gate` (a policy said no), `ineligible` (none of the given nodes' pools may run
 * it — in a pass over one pool, the job belongs to another pool's pass).
 */
export type WaitKind = "capacity" | "held" | "gate" | "ineligible";

/**
 * A waiting job's reason. Codes: a gate's own; `resources` for the first job of the pass that
 * waits for capacity, `priority` for every later one (and for jobs kept off a held node), since
 * they also wait behind it; `no_nodes` when no node of a pool it may run in is up.
 */
export interface Waiting {
  readonly jobId: string;
  readonly reason: string;
  readonly kind: WaitKind;
  readonly code: ReasonCode;
  /**
   * It only waits its turn: jobs ahead of it take the room there is, and nothing about it in
   * particular (a gate, a held node, a node held for it) keeps it (`priority`, plain).
   */
  readonly behind?: true;
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
  /** The eligible pools that have nodes in this pass, in pool order: those placement chooses among. */
  readonly groups: PoolGroup[];
  /** The resource the pools are compared on: the job's dominant one over the eligible nodes. */
  readonly dominant: keyof Resources;
  /** Why the last job of this shape waited, as of `version`; `noHold`: a starving one found no node to hold. */
  wait?: { reason: string; kind: WaitKind; version: number; noHold: boolean; behind: string | undefined };
}

interface PoolGroup {
  readonly pool: string;
  /** No node of the pool has a GPU: where CPU jobs go first. */
  readonly gpuless: boolean;
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
  /**
   * Shapes by pool, CPU, memory, GPU and constraints, one map level each: number keys need no
   * string built per job, which is most of what a big pass costs.
   */
  private readonly eligibleCache = new Map<
    string | null,
    Map<number, Map<number, Map<number, Map<string, Shape>>>>
  >();
  /** Bumped whenever a job is placed or a node held: cached "no room" answers older than it are stale. */
  private version = 0;
  private readonly now: Date;
  private readonly starvationMs: number;
  private readonly gates: readonly AdmissionGate[];
  private readonly placement: PlacementStrategy;
  /** Whether a job of this pass already waits for capacity: every later one waits behind it. */
  private capacityWaiter = false;

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
        waiting.push({ jobId: job.id, reason: refusal.message, kind: "gate", code: refusal.code });
        continue;
      }
      // Nothing was placed or held since a job of the same shape found no room: neither will this one.
      // (Whether it starves is asked only when it matters: parsing its queuedAt is a cost per job.)
      const known = shape.wait;
      if (known && known.version === this.version && (known.noHold || !this.isStarving(job))) {
        // The sentence is built once per shape, not per job: a big backlog is mostly these.
        if (known.kind !== "capacity" || this.capacityWaiter) {
          known.behind ??= behindReason(known.reason);
          waiting.push({
            jobId: job.id,
            reason: known.behind,
            kind: known.kind,
            code: "priority",
            ...(known.kind === "capacity" ? { behind: true as const } : {}),
          });
        } else waiting.push(this.waiter(job, known.reason, known.kind));
        continue;
      }
      const starving = this.isStarving(job);
      const fitting: Slot[] = [];
      let fitsHeld: Slot | null = null;
      for (const slot of shape.slots) {
        if (!fitsIn(job.resources, slot.free)) continue;
        if (slot.heldBy === null) fitting.push(slot);
        else fitsHeld ??= slot;
      }
      if (fitting.length > 0) {
        const pool = shape.groups.length > 1 ? choosePool(job, shape, fitting) : null;
        const candidates = pool ? fitting.filter((s) => s.pool === pool.name) : fitting;
        // Slots are handed out as read-only views: no copy per job, which keeps big passes fast.
        const placed = this.placement(job, candidates);
        const slot = candidates.find((s) => s === placed.node);
        if (!slot)
          throw new RangeError(`placement chose node ${placed.node.nodeId}, which the job does not fit`);
        const why = pool ? `${pool.why}; ${placed.why}` : placed.why;
        slot.free.cpu -= job.resources.cpu;
        slot.free.memoryMb -= job.resources.memoryMb;
        slot.free.gpu -= job.resources.gpu;
        this.version++;
        admit.push({ jobId: job.id, pool: slot.pool, nodeId: slot.nodeId, why });
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
          waiting.push(
            this.waiter(
              job,
              `${need}; node ${target.nodeId} is held for it (waiting since ${job.queuedAt})`,
              "capacity",
              false,
            ),
          );
          continue;
        }
      }
      const wait: { reason: string; kind: WaitKind } = fitsHeld?.heldBy
        ? {
            reason: `${need} (node ${fitsHeld.nodeId} is held for ${fitsHeld.heldBy}, which has waited longer)`,
            kind: "held",
          }
        : { reason: need, kind: "capacity" };
      shape.wait = { ...wait, version: this.version, noHold: starving, behind: undefined };
      waiting.push(this.waiter(job, wait.reason, wait.kind));
    }
    return { admit, waiting, held };
  }

  /**
   * A job that waits for room: the first of the pass waits for `resources`; every later one also
   * waits behind the jobs ahead of it, and says so in words that do not change from pass to pass.
   */
  private waiter(job: QueuedJob, need: string, kind: WaitKind, plain = true): Waiting {
    if (kind === "capacity" && !this.capacityWaiter) {
      this.capacityWaiter = true;
      return { jobId: job.id, reason: need, kind, code: "resources" };
    }
    return {
      jobId: job.id,
      reason: behindReason(need),
      kind,
      code: "priority",
      ...(kind === "capacity" && plain ? { behind: true as const } : {}),
    };
  }

  private gateRefusal(job: QueuedJob): Reason | null {
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
    const byConstraints = level(level(level(level(this.eligibleCache, job.pool), cpu), memoryMb), gpu);
    const key = constraintKey(job.constraints);
    let found = byConstraints.get(key);
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
      const slots = pools.flatMap((name) => this.slotsByPool.get(name) ?? []);
      const groups = pools.flatMap((name) => {
        const members = this.slotsByPool.get(name) ?? [];
        return members.length === 0
          ? []
          : [{ pool: name, gpuless: members.every((s) => s.capacity.gpu <= 0) }];
      });
      const total = { cpu: 0, memoryMb: 0, gpu: 0 };
      for (const slot of slots) {
        total.cpu += slot.capacity.cpu;
        total.memoryMb += slot.capacity.memoryMb;
        total.gpu += slot.capacity.gpu;
      }
      found = { pools, slots, groups, dominant: dominantResource(job.resources, total) };
      byConstraints.set(key, found);
    }
    return found;
  }
}

/**
 * Placement among pools (API.md, issue 4): of the eligible pools with nodes up, the one with the
 * most free capacity of the job's dominant resource, summed over the nodes in it the job fits on
 * now. A CPU job looks at pools without GPUs first, so GPU nodes stay free for GPU work. Ties go
 * to the pool configured first. Called only when the job fits somewhere.
 */
function choosePool(job: QueuedJob, shape: Shape, fitting: readonly Slot[]): { name: string; why: string } {
  let groups = shape.groups;
  let among = "the eligible pools";
  if (job.resources.gpu <= 0 && groups.some((g) => !g.gpuless)) {
    const gpuless = groups.filter((g) => g.gpuless);
    if (fitting.some((s) => gpuless.some((g) => g.pool === s.pool))) {
      groups = gpuless;
      among = "the eligible pools without GPUs";
    }
  }
  const r = shape.dominant;
  let best: string | null = null;
  let bestFree = Number.NEGATIVE_INFINITY;
  for (const group of groups) {
    let free = 0;
    let fits = false;
    for (const slot of fitting) {
      if (slot.pool !== group.pool) continue;
      free += slot.free[r];
      fits = true;
    }
    if (fits && free > bestFree + EPSILON) {
      best = group.pool;
      bestFree = free;
    }
  }
  if (best === null) throw new RangeError(`job ${job.id} fits no node of pools ${poolList(groups)}`);
  return {
    name: best,
    why: `pool ${best} has the most free ${RESOURCE_NAMES[r]} of ${among} (${poolList(groups)})`,
  };
}

function poolList(groups: readonly PoolGroup[]): string {
  return groups.map((g) => g.pool).join(", ");
}

/**
 * The default placement within a pool. GPU jobs: best fit, the node with the least free GPU that
 * fits, so fragments are used and whole nodes stay whole for big GPU jobs. CPU jobs: spread,
 * GPU-less nodes first, then the most free CPU, then the most free memory. Ties go to the
 * earlier node.
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
  const free = (r: keyof Resources) => `${round(best.free[r])} of ${round(best.capacity[r])} free`;
  if (job.resources.gpu > 0) {
    return {
      node: best,
      why: `best fit for ${RESOURCE_WORDS.gpu(job.resources.gpu)}: node ${best.nodeId} has the least free GPU that fits (${free("gpu")})`,
    };
  }
  const onGpuNode = best.capacity.gpu > 0 ? "no node without GPUs fits; " : "";
  return {
    node: best,
    why: `spread: ${onGpuNode}node ${best.nodeId} has the most free CPU (${free("cpu")})`,
  };
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

const RESOURCE_NAMES: Readonly<Record<keyof Resources, string>> = {
  cpu: "CPU",
  memoryMb: "memory",
  gpu: "GPU",
};

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function poolWords(pools: readonly string[]): string {
  return pools.length === 1 ? `pool ${pools[0]}` : `pools ${pools.join(", ")}`;
}

/** No count of the jobs ahead: it would change every pass, and reasons are written only on change. */
function behindReason(need: string): string {
  return `${BEHIND_PREFIX} in the queue; ${need}`;
}

function noNodeReason(job: QueuedJob, pools: readonly string[]): Waiting {
  if (pools.length === 0) {
    const what = job.pool ? `pool ${job.pool}` : `a pool with labels ${JSON.stringify(job.constraints)}`;
    return { jobId: job.id, reason: `no node of ${what} is up`, kind: "ineligible", code: "no_nodes" };
  }
  return {
    jobId: job.id,
    reason: `no node of ${poolWords(pools)} is up`,
    kind: "capacity",
    code: "no_nodes",
  };
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

/** The inner map under `key`, made on first use. */
function level<K, IK, V>(map: Map<K, Map<IK, V>>, key: K): Map<IK, V> {
  let next = map.get(key);
  if (!next) {
    next = new Map<IK, V>();
    map.set(key, next);
  }
  return next;
}

function constraintKey(constraints: Readonly<Record<string, string>>): string {
  const keys = Object.keys(constraints);
  if (keys.length === 0) return "";
  return JSON.stringify(keys.sort().map((k) => [k, constraints[k]]));
}
