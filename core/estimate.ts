import { fitsIn, type NodeState } from "./admission";
import type { Resources } from "./job";

/**
 * estimatedStartAt for GET /queue and GET /jobs/{id}: a list-scheduling simulation of the queue
 * over the up nodes. Jobs are taken in queue order; each starts at the earliest time some node
 * has room for it for its whole expected run, given what is running (released at its expected
 * end) and what the simulation already started (a later job may go ahead of an earlier one
 * where it fits in a gap, as backfill does, but never delays it). Unknown durations hold their
 * resources forever, so whatever needs them has no estimate (null); so does a job no node can
 * ever hold.
 *
 * Each node's free capacity is kept as a step function over time: O(nodes × steps) per queued
 * job, the steps being that node's running and simulated jobs.
 */

export interface EstimateRunning {
  readonly nodeId: string;
  readonly resources: Resources;
  /** null: unknown, the job holds its resources for the whole simulation. */
  readonly expectedEndAt: Date | null;
}

export interface EstimateQueued {
  readonly id: string;
  readonly resources: Resources;
  /** null: unknown, once started the job holds its resources for the whole simulation. */
  readonly expectedDurationMs: number | null;
  /** The pools the job may run in; absent or null: any of the given nodes. */
  readonly pools?: readonly string[] | null;
}

export interface EstimateInput {
  readonly now: Date;
  /** Up nodes; `used` is what is reserved on each now (running jobs included, or not: see below). */
  readonly nodes: readonly NodeState[];
  readonly running: readonly EstimateRunning[];
  /** In queue order. */
  readonly queued: readonly EstimateQueued[];
}

interface Free {
  cpu: number;
  memoryMb: number;
  gpu: number;
}

/** A node's free capacity over time: free[i] holds from times[i] until times[i + 1] (or forever). */
interface Profile {
  readonly node: NodeState;
  readonly times: number[];
  readonly free: Free[];
}

/** Job id → when the simulation starts it (now at the earliest), or null if it never does. */
export function estimateStarts(input: EstimateInput): Map<string, Date | null> {
  const now = input.now.getTime();
  const profiles = input.nodes.map((node) => profileOf(node, input.running, now));
  const starts = new Map<string, Date | null>();
  for (const job of input.queued) {
    const duration =
      job.expectedDurationMs === null || !Number.isFinite(job.expectedDurationMs)
        ? Number.POSITIVE_INFINITY
        : Math.max(0, job.expectedDurationMs);
    let bestProfile: Profile | null = null;
    let bestIndex = -1;
    let bestTime = Number.POSITIVE_INFINITY;
    for (const profile of profiles) {
      if (job.pools && !job.pools.includes(profile.node.pool)) continue;
      if (!fitsIn(job.resources, profile.node.capacity)) continue;
      const index = earliestStart(profile, job.resources, duration);
      const time = index < 0 ? Number.POSITIVE_INFINITY : (profile.times[index] ?? Number.POSITIVE_INFINITY);
      if (time < bestTime) {
        bestProfile = profile;
        bestIndex = index;
        bestTime = time;
      }
    }
    if (!bestProfile) {
      starts.set(job.id, null);
      continue;
    }
    occupy(bestProfile, bestIndex, bestTime + duration, job.resources);
    starts.set(job.id, new Date(bestTime));
  }
  return starts;
}

/**
 * The node's free capacity from now on. `used` may or may not already count the running jobs
 * given for the node; whatever it holds beyond them (a reservation not in the list) stays held.
 * A running job past its expected end is overdue, not gone: it is taken to end now.
 */
function profileOf(node: NodeState, running: readonly EstimateRunning[], now: number): Profile {
  const mine = running.filter((run) => run.nodeId === node.nodeId);
  const held: Free = { cpu: 0, memoryMb: 0, gpu: 0 };
  for (const run of mine) add(held, run.resources, 1);
  const base: Free = {
    cpu: node.capacity.cpu - Math.max(node.used.cpu, held.cpu),
    memoryMb: node.capacity.memoryMb - Math.max(node.used.memoryMb, held.memoryMb),
    gpu: node.capacity.gpu - Math.max(node.used.gpu, held.gpu),
  };
  const releases = new Map<number, Free>();
  for (const run of mine) {
    if (run.expectedEndAt === null) continue;
    const end = Math.max(now, run.expectedEndAt.getTime());
    if (end === now) {
      add(base, run.resources, 1);
      continue;
    }
    const at = releases.get(end);
    if (at) add(at, run.resources, 1);
    else
      releases.set(end, { cpu: run.resources.cpu, memoryMb: run.resources.memoryMb, gpu: run.resources.gpu });
  }
  const times = [now];
  const free = [base];
  let level = base;
  for (const [time, released] of [...releases].sort((a, b) => a[0] - b[0])) {
    level = {
      cpu: level.cpu + released.cpu,
      memoryMb: level.memoryMb + released.memoryMb,
      gpu: level.gpu + released.gpu,
    };
    times.push(time);
    free.push(level);
  }
  return { node, times, free };
}

/** The first step at whose start the job fits for `duration` without a break, or -1. */
function earliestStart(profile: Profile, need: Resources, duration: number): number {
  const { times, free } = profile;
  let i = 0;
  while (i < times.length) {
    const step = free[i];
    const start = times[i];
    if (!step || start === undefined || !fitsIn(need, step)) {
      i++;
      continue;
    }
    const end = start + duration;
    let j = i + 1;
    let blocked = false;
    for (; j < times.length && (times[j] ?? Number.POSITIVE_INFINITY) < end; j++) {
      const later = free[j];
      if (!later || !fitsIn(need, later)) {
        blocked = true;
        break;
      }
    }
    if (!blocked) return i;
    // Any start before step j would still overlap it: the next candidate is the step after.
    i = j + 1;
  }
  return -1;
}

/** Takes `need` from the profile over [times[index], end), splitting a step at `end`. */
function occupy(profile: Profile, index: number, end: number, need: Resources): void {
  const { times, free } = profile;
  let j = index;
  for (; j < times.length && (times[j] ?? Number.POSITIVE_INFINITY) < end; j++) {
    const step = free[j];
    if (step) add(step, need, -1);
  }
  // The job releases at `end`: the step from there on keeps the level it had before.
  if (Number.isFinite(end) && times[j] !== end) {
    const before = free[j - 1];
    if (!before) return;
    times.splice(j, 0, end);
    free.splice(j, 0, {
      cpu: before.cpu + need.cpu,
      memoryMb: before.memoryMb + need.memoryMb,
      gpu: before.gpu + need.gpu,
    });
  }
}

function add(to: Free, resources: Resources, sign: 1 | -1): void {
  to.cpu += sign * resources.cpu;
  to.memoryMb += sign * resources.memoryMb;
  to.gpu += sign * resources.gpu;
}
