import { fitsIn, type NodeView, type QueuedJob } from "./admission";
import type { Resources } from "./job";

/**
 * Preemption (API.md "Queue, pools, policy, quotas"; policy.preemption): a queued job that
 * cannot fit may evict running jobs of strictly lower priority in its pool — lowest priority
 * first, then most recently started. Pure: the scheduler plans here and then aborts the victims'
 * executions and dispatches the preemptor.
 *
 * No ping-pong: a plan exists only if the preemptor fits once its victims are gone (evicting
 * without a place to go would free capacity for nobody in particular), victims are strictly
 * lower in priority (so a victim can never plan to evict its preemptor back), and a job
 * preempted within the cool-down is not a candidate again. Priorities here are the jobs' own,
 * not aged: aging orders the queue, but letting a long-waiting job evict work of the priority it
 * aged past would trade one starvation for a cycle of evictions.
 */

export interface RunningJob {
  readonly id: string;
  readonly owner: string;
  readonly type: string;
  readonly priority: number;
  readonly pool: string;
  readonly nodeId: string;
  readonly resources: Resources;
  readonly startedAt: string | null;
  readonly preemptedAt: string | null;
}

export interface PreemptionPlan {
  readonly preemptor: string;
  readonly pool: string;
  readonly nodeId: string;
  readonly victims: readonly RunningJob[];
}

export interface PreemptionInput {
  readonly job: QueuedJob;
  /** Up nodes of the job's eligible pools, with their current free capacity. */
  readonly nodes: readonly NodeView[];
  /** Dispatched and running jobs on those nodes. */
  readonly running: readonly RunningJob[];
  readonly now: Date;
  readonly cooldownSeconds: number;
}

/** As in admission: float sums of fractional CPUs must not make a resource look short. */
const EPSILON = 1e-9;

interface Candidate {
  readonly nodeId: string;
  readonly pool: string;
  readonly victims: RunningJob[];
  readonly highest: number;
  readonly workLostMs: number;
}

/**
 * The cheapest eviction that makes room for the job, or null when none does. On each node that
 * could hold the job at all but has no room now, candidates (strictly lower priority, not
 * preempted within the cool-down) are taken lowest priority first, then most recently started
 * (a dispatched job that has not started loses nothing and goes first among equals), skipping
 * any that frees none of what is still short, until the job fits; then victims the job turns out
 * not to need (a later, bigger victim covered them) are spared, latest first. Among nodes, the
 * one needing the fewest victims wins, then the lowest highest victim priority, then the least
 * work lost (victims' run time so far), then the earlier node. A node where the job already fits
 * is not a preemption target: admission left the job there only for a held node or a gate, which
 * evicting would not change.
 */
export function planPreemption(input: PreemptionInput): PreemptionPlan | null {
  const { job, now } = input;
  const cooldownMs = input.cooldownSeconds * 1000;
  const byNode = new Map<string, RunningJob[]>();
  for (const run of input.running) {
    if (run.priority >= job.priority || coolingDown(run, now, cooldownMs)) continue;
    const list = byNode.get(run.nodeId);
    if (list) list.push(run);
    else byNode.set(run.nodeId, [run]);
  }
  let best: Candidate | null = null;
  for (const node of input.nodes) {
    if (!fitsIn(job.resources, node.capacity) || fitsIn(job.resources, node.free)) continue;
    const candidates = byNode.get(node.nodeId)?.filter((run) => run.pool === node.pool);
    if (!candidates || candidates.length === 0) continue;
    candidates.sort(evictionOrder);
    const victims = victimsOn(node.free, job.resources, candidates);
    if (!victims) continue;
    const candidate: Candidate = {
      nodeId: node.nodeId,
      pool: node.pool,
      victims,
      highest: Math.max(...victims.map((v) => v.priority)),
      workLostMs: victims.reduce((sum, v) => sum + elapsedMs(v, now), 0),
    };
    if (!best || cheaper(candidate, best)) best = candidate;
  }
  if (!best) return null;
  return { preemptor: job.id, pool: best.pool, nodeId: best.nodeId, victims: best.victims };
}

/**
 * The nodes and running jobs as they stand once `plan` is carried out: the victims are gone and
 * the preemptor holds its resources on the plan's node (as a dispatched job, not started). Feed
 * the result to the next planPreemption of the same pass: no job is evicted twice, no capacity
 * is promised twice, and — preemptors being planned highest priority first, as the scheduler
 * offers them — a later preemptor never evicts an earlier one (it would need a strictly higher
 * priority). Returns new arrays; the inputs are left as they were.
 */
export function applyPlan(
  nodes: readonly NodeView[],
  running: readonly RunningJob[],
  plan: PreemptionPlan,
  job: QueuedJob,
): { nodes: NodeView[]; running: RunningJob[] } {
  const evicted = new Set(plan.victims.map((v) => v.id));
  const nextNodes = nodes.map((node) => {
    if (node.nodeId !== plan.nodeId || node.pool !== plan.pool) return node;
    const free = { ...node.free };
    for (const victim of plan.victims) {
      free.cpu += victim.resources.cpu;
      free.memoryMb += victim.resources.memoryMb;
      free.gpu += victim.resources.gpu;
    }
    free.cpu -= job.resources.cpu;
    free.memoryMb -= job.resources.memoryMb;
    free.gpu -= job.resources.gpu;
    return { ...node, free };
  });
  const nextRunning = running.filter((run) => !evicted.has(run.id));
  nextRunning.push({
    id: job.id,
    owner: job.owner ?? "",
    type: job.type ?? "",
    priority: job.priority,
    pool: plan.pool,
    nodeId: plan.nodeId,
    resources: job.resources,
    startedAt: null,
    preemptedAt: null,
  });
  return { nodes: nextNodes, running: nextRunning };
}

function coolingDown(run: RunningJob, now: Date, cooldownMs: number): boolean {
  if (run.preemptedAt === null) return false;
  const at = Date.parse(run.preemptedAt);
  return !Number.isNaN(at) && now.getTime() - at < cooldownMs;
}

/** Lowest priority first; then most recently started, not-yet-started first; then by id. */
function evictionOrder(a: RunningJob, b: RunningJob): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const started = (run: RunningJob): number => {
    const at = run.startedAt === null ? Number.NaN : Date.parse(run.startedAt);
    return Number.isNaN(at) ? Number.POSITIVE_INFINITY : at;
  };
  const sa = started(a);
  const sb = started(b);
  if (sa !== sb) return sa > sb ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function victimsOn(free: Resources, need: Resources, candidates: readonly RunningJob[]): RunningJob[] | null {
  const room = { cpu: free.cpu, memoryMb: free.memoryMb, gpu: free.gpu };
  const victims: RunningJob[] = [];
  for (const run of candidates) {
    if (fitsIn(need, room)) break;
    const helps =
      (need.cpu > room.cpu + EPSILON && run.resources.cpu > 0) ||
      (need.memoryMb > room.memoryMb + EPSILON && run.resources.memoryMb > 0) ||
      (need.gpu > room.gpu + EPSILON && run.resources.gpu > 0);
    if (!helps) continue;
    victims.push(run);
    room.cpu += run.resources.cpu;
    room.memoryMb += run.resources.memoryMb;
    room.gpu += run.resources.gpu;
  }
  if (!fitsIn(need, room)) return null;
  // Spare victims a later one made unnecessary, trying the most valuable (last taken) first.
  for (let i = victims.length - 1; i >= 0; i--) {
    const run = victims[i];
    if (!run) continue;
    const without = {
      cpu: room.cpu - run.resources.cpu,
      memoryMb: room.memoryMb - run.resources.memoryMb,
      gpu: room.gpu - run.resources.gpu,
    };
    if (fitsIn(need, without)) {
      victims.splice(i, 1);
      room.cpu = without.cpu;
      room.memoryMb = without.memoryMb;
      room.gpu = without.gpu;
    }
  }
  return victims;
}

function cheaper(a: Candidate, b: Candidate): boolean {
  if (a.victims.length !== b.victims.length) return a.victims.length < b.victims.length;
  if (a.highest !== b.highest) return a.highest < b.highest;
  return a.workLostMs < b.workLostMs;
}

function elapsedMs(run: RunningJob, now: Date): number {
  if (run.startedAt === null) return 0;
  const at = Date.parse(run.startedAt);
  return Number.isNaN(at) ? 0 : Math.max(0, now.getTime() - at);
}
