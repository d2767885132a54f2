import { DependencyCycleError, type FieldProblem, UnknownDependencyError, ValidationError } from "./errors";
import type { JobStatus } from "./job";
import { PENDING_REASON, type ReasonCode } from "./reasons";

/**
 * The dependency graph of API.md: resolving a batch's refs, refusing cycles and unknown ids,
 * and the rule that says which waiting status applies to a job. Pure: the caller loads jobs.
 */

export interface BatchJobDependencies {
  readonly ref?: string;
  readonly dependsOn: readonly string[];
}

export interface ResolvedBatchJob {
  /** Indices of the jobs of the same batch this job waits on, deduped, in the order given. */
  readonly batchDeps: readonly number[];
  /** dependsOn entries that name no ref of the batch: ids of existing jobs, yet to be checked. */
  readonly externalDeps: readonly string[];
}

export interface ResolvedBatch {
  /** One entry per submitted job, at the same index. */
  readonly jobs: readonly ResolvedBatchJob[];
  /** Every job index once, each after all the batch jobs it depends on: the order to create them in. */
  readonly order: readonly number[];
  /** Every external id of the whole batch, deduped, in first-seen order: one lookup for all. */
  readonly externalDeps: readonly string[];
}

/**
 * Splits each job's dependsOn into jobs of this batch (by `ref`) and existing ids, refuses
 * duplicate refs (ValidationError) and cycles (DependencyCycleError), and orders the batch so
 * that dependencies come before their dependents.
 *
 * A dependsOn entry that equals a ref of the batch always means that job, even if an existing
 * job had the same id: refs are the batch's own namespace.
 */
export function resolveBatch(jobs: readonly BatchJobDependencies[]): ResolvedBatch {
  const indexByRef = indexRefs(jobs);
  const seenExternal = new Set<string>();
  const allExternal: string[] = [];

  const resolved = jobs.map((job): ResolvedBatchJob => {
    const batchDeps = new Set<number>();
    const externalDeps = new Set<string>();
    for (const dependency of job.dependsOn) {
      const index = indexByRef.get(dependency);
      if (index === undefined) externalDeps.add(dependency);
      else batchDeps.add(index);
    }
    for (const id of externalDeps) {
      if (!seenExternal.has(id)) {
        seenExternal.add(id);
        allExternal.push(id);
      }
    }
    return { batchDeps: [...batchDeps], externalDeps: [...externalDeps] };
  });

  const order = topologicalOrder(resolved.map((job) => job.batchDeps));
  if (!Array.isArray(order)) {
    throw new DependencyCycleError(order.cycle.map((index) => batchLabel(jobs, index)));
  }
  return { jobs: resolved, order, externalDeps: allExternal };
}

/**
 * Refuses dependencies the principal cannot see. `found` holds only the requested jobs the
 * principal may see, so another user's job is reported as unknown, never as forbidden.
 */
export function validateExternalDeps(
  requested: readonly string[],
  found: ReadonlyMap<string, { readonly status: JobStatus; readonly escalatedTo: string | null }>,
): void {
  const missing = [...new Set(requested)].filter((id) => !found.has(id));
  if (missing.length > 0) throw new UnknownDependencyError(missing);
}

export type DependencyOutcome = "met" | "unmet" | "doomed";

/**
 * What a dependency's status means for its dependents. An escalated dependency is `unmet`: its
 * dependents now wait on the job in its `escalatedTo`, which the caller follows.
 */
export function dependencyOutcome(status: JobStatus): DependencyOutcome {
  switch (status) {
    case "completed":
      return "met";
    case "failed":
    case "cancelled":
      return "doomed";
    default:
      return "unmet";
  }
}

export interface DependencyTally {
  readonly unmet: number;
  readonly total: number;
  /** The first dependency, in the order given, that can never complete. */
  readonly doomedBy: { readonly id: string; readonly status: "failed" | "cancelled" } | null;
}

/**
 * Counts dependencies for `applicableStatus`. Pass the statuses after following `escalatedTo`,
 * so an escalated dependency stands for its replacement.
 */
export function tallyDependencies(
  dependencies: readonly { readonly id: string; readonly status: JobStatus }[],
): DependencyTally {
  let unmet = 0;
  let doomedBy: DependencyTally["doomedBy"] = null;
  for (const { id, status } of dependencies) {
    if (dependencyOutcome(status) === "met") continue;
    unmet++;
    if (doomedBy === null && (status === "failed" || status === "cancelled")) doomedBy = { id, status };
  }
  return { unmet, total: dependencies.length, doomedBy };
}

export interface ApplicableStatusInput extends DependencyTally {
  readonly now: Date;
  /** The job's runAt as stored (ISO-8601), or null. */
  readonly runAt: string | null;
}

export interface ApplicableStatus {
  readonly status: "scheduled" | "blocked" | "queued" | "cancelled";
  /** The job's statusReason. */
  readonly reason: string;
  /** Its code; null for a cancelled job. */
  readonly code: ReasonCode | null;
}

/**
 * The status a job waits in, wherever it (re)enters the queue: at submit, when its last
 * dependency completes, when it resumes from `paused`, and after a retry's backoff. One rule so
 * those paths cannot disagree:
 * a failed or cancelled dependency → cancelled; else unmet dependencies → blocked; else a runAt
 * in the future → scheduled; else queued, waiting for admission.
 */
export function applicableStatus(input: ApplicableStatusInput): ApplicableStatus {
  const { now, runAt, unmet, total, doomedBy } = input;
  if (!Number.isInteger(unmet) || !Number.isInteger(total) || unmet < 0 || unmet > total) {
    throw new RangeError(`unmet must be an integer 0..total, got ${unmet} of ${total}`);
  }
  if (doomedBy !== null) {
    const verb = doomedBy.status === "failed" ? "failed" : "was cancelled";
    return { status: "cancelled", reason: `dependency ${doomedBy.id} ${verb}`, code: null };
  }
  if (unmet > 0) {
    return { status: "blocked", reason: `waiting for ${unmet} of ${total} dependencies`, code: "dependency" };
  }
  if (runAt !== null) {
    const runAtMs = Date.parse(runAt);
    if (Number.isNaN(runAtMs)) throw new RangeError(`runAt is not a timestamp: ${runAt}`);
    if (runAtMs > now.getTime()) {
      return {
        status: "scheduled",
        reason: `scheduled to run at ${new Date(runAtMs).toISOString()}`,
        code: "begin_time",
      };
    }
  }
  return { status: "queued", reason: PENDING_REASON.message, code: PENDING_REASON.code };
}

/** `applicableStatus` under the name the submit path reads best with. */
export const initialStatus = applicableStatus;

function indexRefs(jobs: readonly BatchJobDependencies[]): Map<string, number> {
  const indexByRef = new Map<string, number>();
  const problems: FieldProblem[] = [];
  jobs.forEach((job, index) => {
    if (job.ref === undefined) return;
    const first = indexByRef.get(job.ref);
    if (first === undefined) indexByRef.set(job.ref, index);
    else
      problems.push({
        path: `jobs.${index}.ref`,
        message: `ref "${job.ref}" is already used by jobs.${first}`,
      });
  });
  if (problems.length > 0) throw new ValidationError(problems);
  return indexByRef;
}

/**
 * How a cycle names a job: its ref, or its position when it has none. A job without a ref cannot
 * be named in dependsOn, so it never closes a cycle; the fallback keeps the label total anyway.
 */
function batchLabel(jobs: readonly BatchJobDependencies[], index: number): string {
  return jobs[index]?.ref ?? `#${index}`;
}

/**
 * Depth-first post-order over "depends on" edges, with an explicit stack so a chain of any length
 * cannot overflow the call stack. Returns the order, or the first cycle met as indices where
 * each one depends on the next and the last repeats the first, rotated to start at the cycle's
 * lowest index so the same graph always reports the same cycle.
 */
function topologicalOrder(dependencies: readonly (readonly number[])[]): number[] | { cycle: number[] } {
  const UNVISITED = 0;
  const ON_PATH = 1;
  const DONE = 2;
  const state = new Uint8Array(dependencies.length);
  const order: number[] = [];

  for (let root = 0; root < dependencies.length; root++) {
    if (state[root] !== UNVISITED) continue;
    // The jobs being visited, root first; nextEdge is the next of a job's dependencies to look at.
    const path: { job: number; nextEdge: number }[] = [{ job: root, nextEdge: 0 }];
    state[root] = ON_PATH;

    for (let frame = path.at(-1); frame !== undefined; frame = path.at(-1)) {
      const dependency = dependencies[frame.job]?.[frame.nextEdge];
      if (dependency === undefined) {
        state[frame.job] = DONE;
        order.push(frame.job);
        path.pop();
        continue;
      }
      frame.nextEdge++;
      if (state[dependency] === ON_PATH) {
        const members = path.map((visiting) => visiting.job);
        return { cycle: canonicalCycle(members.slice(members.indexOf(dependency))) };
      }
      if (state[dependency] === UNVISITED) {
        state[dependency] = ON_PATH;
        path.push({ job: dependency, nextEdge: 0 });
      }
    }
  }
  return order;
}

function canonicalCycle(members: readonly number[]): number[] {
  const start = members.indexOf(Math.min(...members));
  const rotated = [...members.slice(start), ...members.slice(0, start)];
  return [...rotated, ...rotated.slice(0, 1)];
}
