import { arraySummary } from "../core/arrays";
import { BUILT_IN_RETRY, type Job, type JobStatus, TERMINAL_STATUSES } from "../core/job";
import { PENDING_REASON } from "../core/reasons";
import {
  activePk,
  activeSk,
  dayPk,
  duePk,
  dueSk,
  JOB_SK,
  jobPk,
  NEVER_DUE,
  ownerPk,
  ownerStatusPk,
  projectPk,
  queueAgeSk,
  queueOwnerSk,
  queuePk,
  queueSk,
  schedulePk,
  transitionSk,
  updatedDayPk,
  updatedSk,
} from "./keys";

/**
 * What the jobs table stores for a job. The user's own JSON — payload, tags, constraints — is
 * stored as JSON text: DynamoDB's document types refuse some valid JSON (numbers like 5e-324,
 * nesting past 32 levels, a map key named "constructor" trips the SDK's marshaller), and text
 * round-trips exactly. Read them through `fromJobItem` / `jobConstraints`.
 */
export interface JobItem
  extends Omit<
    Job,
    | "result"
    | "payload"
    | "tags"
    | "constraints"
    | "onTimeout"
    | "project"
    | "array"
    | "arrayIndex"
    | "arrayParentId"
  > {
  /** Absent unless the job has one (issue 13): items written before it existed have none either. */
  readonly onTimeout?: Job["onTimeout"];
  readonly payloadJson: string;
  readonly tagsJson: string;
  readonly constraintsJson: string;
  readonly pk: string;
  readonly sk: string;
  readonly entity: "job";
  /** Dependencies not yet completed; the job leaves `blocked` when it reaches 0. */
  readonly unmet: number;
  /** Part of a batch being written: invisible to every read until committed. */
  readonly staged?: boolean;
  /**
   * TTL (epoch seconds) that collects a staged job whose batch never committed, or an ended job
   * when jobRetentionDays is set (docs/data-model.md#retention).
   */
  readonly expiresAt?: number;
  readonly ownerPk?: string;
  readonly ownerSk?: string;
  readonly ownerStatusPk?: string;
  readonly dayPk?: string;
  readonly queuePk?: string;
  readonly queueSk?: string;
  readonly duePk?: string;
  readonly dueSk?: string;
  readonly activePk?: string;
  readonly activeSk?: string;
  readonly schedulePk?: string;
  /** When it last entered `queued`: the start of its queue wait. */
  readonly queuedAt?: string;
  /** The status it was paused from. */
  readonly pausedFrom?: JobStatus;
  /** Task token of the lifecycle execution waiting for this job's admission. */
  readonly admissionToken?: string;
  /** The lifecycle execution that drives the job now. */
  readonly executionArn?: string;
  /** Capacity held on a node while dispatched or running; released in the write that ends the attempt. */
  readonly reservation?: Reservation;
  /** When the current attempt started running. */
  readonly attemptStartedAt?: string;
  /**
   * The worker that started the current (or last) attempt: with the reservation's node, what its
   * attempt record is written from when the start's own put of it was lost (store/capacity.ts
   * endAttemptItem), and how a worker recognises its own start after an unanswered write.
   */
  readonly attemptWorkerId?: string;
  /** Attempts that count against retry.maxAttempts (preempted and paused ones do not). */
  readonly failures?: number;
  /** When the job was last preempted: it is not preempted again within the policy's cool-down. */
  readonly preemptedAt?: string;
  readonly queueOwnerSk?: string;
  readonly queueAgeSk?: string;
  /**
   * Its place among queued jobs of its priority when an admin moved it (PATCH before): replaces
   * the deadline-and-id part of `queueSk` (core/ordering.ts#queuePosition). Only while queued.
   */
  readonly orderKey?: string;
  /** Manual retries so far (POST /jobs/{id}/retry): keeps each round's escalation job its own. */
  readonly retries?: number;
  readonly updatedSk?: string;
  readonly updatedDayPk?: string;
  /**
   * The key of the circuit breaker this job is the half-open probe of (app/circuits.ts): set by
   * the admission that claimed the probe, removed by any other admission. Only a probe's
   * completion touches its breaker, so other jobs' completions write nothing more.
   */
  readonly circuitProbe?: string;
  /**
   * Set at creation on a job that nothing waits on yet, and removed by the write that gives it its
   * first dependent (a submission's edge, an escalation's rewiring): a completion whose new image
   * carries it has no `DPT#` edges to query, so the dependents consumer is not even invoked for it
   * (functions/dependents-stream.ts). Absent means "ask": items written before it existed, an
   * array's children (their parent waits on them without an edge), jobs created by other paths.
   */
  readonly noDependents?: true;
  /** Present only on a project's jobs (issue 13): a job without one stores no attribute. */
  readonly project?: string;
  readonly projectPk?: string;
  /** An array job's size: on its parent and on each child (core/arrays.ts). */
  readonly arraySize?: number;
  /** An array child's index 0..arraySize-1. */
  readonly arrayIndex?: number;
  /** An array child's parent. */
  readonly arrayParentId?: string;
  /** Node time of its ended attempts, in ms, summed as each leaves `running` (core/cost.ts). */
  readonly runMs?: number;
  /** The pool its last ended attempt ran in: whose node its compute is a share of. */
  readonly runPool?: string;
}

export interface Reservation {
  readonly pool: string;
  readonly nodeId: string;
  readonly cpu: number;
  readonly memoryMb: number;
  readonly gpu: number;
}

/**
 * GSI attributes for a job in its current status. Staged jobs get none, so no index (and so no
 * list and no scheduler) sees them; sparse indexes get theirs only in the status they serve.
 */
export function indexAttributes(
  job: Pick<
    Job,
    | "id"
    | "owner"
    | "status"
    | "createdAt"
    | "priority"
    | "deadline"
    | "pool"
    | "runAt"
    | "nextAttemptAt"
    | "startedAt"
    | "scheduleId"
    | "updatedAt"
  > & {
    readonly project?: string | null | undefined;
    readonly queuedAt?: string | undefined;
    readonly orderKey?: string | undefined;
    readonly reservation?: Reservation | undefined;
  },
  staged: boolean,
): Record<string, string> {
  if (staged) return {};
  const attrs: Record<string, string> = {
    ownerPk: ownerPk(job.owner),
    ownerSk: job.id,
    ownerStatusPk: ownerStatusPk(job.owner, job.status),
    dayPk: dayPk(job.createdAt.slice(0, 10)),
    // GET /jobs?updatedSince=: moved by every write that sets updatedAt through here (status and
    // priority changes, submission), not by bookkeeping updates (execution token, booking swap).
    updatedSk: updatedSk(job.updatedAt, job.id),
    updatedDayPk: updatedDayPk(job.updatedAt.slice(0, 10)),
  };
  if (job.scheduleId) attrs.schedulePk = schedulePk(job.scheduleId);
  // Keys written once, at creation: a project never changes, so no status change rewrites it.
  if (job.project) attrs.projectPk = projectPk(job.project);
  if (job.status === "queued") {
    attrs.queuePk = queuePk(job.pool);
    attrs.queueSk = queueSk(job);
    attrs.queueOwnerSk = queueOwnerSk(job.owner, attrs.queueSk);
    attrs.queueAgeSk = queueAgeSk(job.queuedAt ?? job.createdAt, job.id);
  }
  const due = dueAt(job);
  if (due !== null) {
    attrs.duePk = duePk(job.pool);
    attrs.dueSk = dueSk(due, job.id);
  }
  if (job.reservation && (job.status === "dispatched" || job.status === "running")) {
    attrs.activePk = activePk(job.reservation.pool);
    attrs.activeSk = activeSk(job.reservation.nodeId, job.id);
  }
  return attrs;
}

/**
 * When the scheduler's sweep must next look at a job, or null when never:
 * - scheduled: its runAt, or its deadline if that comes first (then it fails, never started);
 * - blocked, queued: its deadline while it has not started (NEVER_DUE for a blocked job
 *   without one, so GET /queue can count blocked jobs per pool from this index);
 * - retrying: nextAttemptAt — its execution requeues it after the backoff, and the sweep does
 *   if that execution is gone (a crash, a local restart);
 * - paused: NEVER_DUE, counted only.
 */
function dueAt(
  job: Pick<Job, "status" | "runAt" | "deadline" | "nextAttemptAt" | "startedAt">,
): string | null {
  const deadline = job.startedAt ? null : job.deadline;
  switch (job.status) {
    case "scheduled": {
      const times = [job.runAt, deadline].filter((t): t is string => typeof t === "string");
      return times.length > 0 ? times.reduce((a, b) => (Date.parse(b) < Date.parse(a) ? b : a)) : NEVER_DUE;
    }
    case "blocked":
      return deadline ?? NEVER_DUE;
    case "queued":
      return deadline;
    case "retrying":
      return job.nextAttemptAt ?? NEVER_DUE;
    case "paused":
      return NEVER_DUE;
    default:
      return null;
  }
}

/** Sparse index attributes a status change must remove when the job leaves their status. */
export function indexAttributesToRemove(status: JobStatus): string[] {
  const remove: string[] = [];
  // A job written before the `live` index was dropped still carries its key: it goes when the
  // job ends, as it always did (a REMOVE of an absent attribute costs nothing).
  if (TERMINAL_STATUSES.has(status)) remove.push("livePk");
  // A moved job's place (orderKey) holds only while it stays queued: back in line later, it
  // takes its default place again.
  if (status !== "queued") remove.push("queuePk", "queueSk", "queueOwnerSk", "queueAgeSk", "orderKey");
  // Whether a job is due depends on more than its status (a queued job only with a deadline):
  // always listed, and the caller keeps whatever indexAttributes sets.
  remove.push("duePk", "dueSk");
  if (status !== "dispatched" && status !== "running") remove.push("activePk", "activeSk", "reservation");
  return remove;
}

export function toJobItem(job: Job, unmet: number, staged: boolean, expiresAt?: number): JobItem {
  const {
    result: _result,
    payload,
    tags,
    constraints,
    onTimeout,
    project,
    // Views only: the item keeps arraySize, arrayIndex and arrayParentId (set by app/arrays.ts).
    array: _array,
    arrayIndex: _arrayIndex,
    arrayParentId: _arrayParentId,
    ...rest
  } = job;
  return {
    ...rest,
    // Stored only when set: a job without one costs not a byte more (fromJobItem reads null).
    ...(onTimeout ? { onTimeout } : {}),
    // No attribute at all without a project: such a job's item is byte for byte what it was.
    ...(project !== null ? { project } : {}),
    payloadJson: JSON.stringify(payload ?? null),
    tagsJson: JSON.stringify(tags),
    constraintsJson: JSON.stringify(constraints),
    pk: jobPk(job.id),
    sk: JOB_SK,
    entity: "job",
    unmet,
    ...(staged ? { staged: true, expiresAt } : {}),
    ...indexAttributes(job, staged),
  };
}

/**
 * Job fields a job item stores only while they hold a value: absent reads as null, as API.md
 * shows them. DynamoDB bills a write per started KB of the item, and a small job's item crossed
 * 1 KB from the moment it was admitted, a dozen of its attributes holding null (about 100 bytes).
 * Items written before hold them as null, which reads the same.
 */
export const STORED_WHEN_SET = [
  "name",
  "reasonCode",
  "error",
  "pool",
  "runAt",
  "deadline",
  "onFailure",
  "escalatedTo",
  "scheduleId",
  "startedAt",
  "finishedAt",
  "nextAttemptAt",
] as const satisfies readonly (keyof Job)[];

const STORED_WHEN_SET_NAMES: ReadonlySet<string> = new Set(STORED_WHEN_SET);

/** Whether a job item stores no attribute when this field is null (STORED_WHEN_SET). */
export function storedWhenSet(field: string): boolean {
  return STORED_WHEN_SET_NAMES.has(field);
}

/**
 * The job item as it is written: without the STORED_WHEN_SET fields that are null, and without a
 * `retry` equal to the built-in one (API.md's default, which most jobs take: about 100 bytes).
 * Anything that is not a job item is returned as it is.
 */
export function storedJobItem<T extends object>(item: T): T {
  const record = item as Record<string, unknown>;
  if (record.entity !== "job" || record.sk !== JOB_SK) return item;
  const stored: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(record)) {
    if (value === null && STORED_WHEN_SET_NAMES.has(name)) continue;
    if (name === "retry" && isBuiltInRetry(value)) continue;
    stored[name] = value;
  }
  return stored as T;
}

/**
 * A job item (or an index's projection of one) as read from DynamoDB, with what storedJobItem
 * left out put back: the STORED_WHEN_SET fields as null, `retry` as the built-in one. Every read
 * of job items in store/ returns them so, so the rest of jobq sees the fields it always saw.
 */
export function withStoredDefaults<T extends object>(item: T): T {
  const record = item as Record<string, unknown>;
  if (record.entity !== "job") return item;
  const filled: Record<string, unknown> = withNullFields(record);
  if (filled.retry === undefined) filled.retry = { ...BUILT_IN_RETRY };
  return filled as T;
}

/**
 * An index entry of a job (a projection: no `entity`, no `retry`) with its STORED_WHEN_SET fields
 * that are absent as null, as withStoredDefaults does for a whole item.
 */
export function withNullFields<T extends object>(entry: T): T {
  const filled: Record<string, unknown> = { ...(entry as Record<string, unknown>) };
  for (const name of STORED_WHEN_SET) if (filled[name] === undefined) filled[name] = null;
  return filled as T;
}

function isBuiltInRetry(value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const retry = value as Record<string, unknown>;
  const keys = Object.keys(retry);
  return (
    keys.length === Object.keys(BUILT_IN_RETRY).length &&
    keys.every((key) => retry[key] === BUILT_IN_RETRY[key as keyof typeof BUILT_IN_RETRY])
  );
}

/** API.md's job fields, in its order, so responses read the same every time. */
const JOB_FIELDS = [
  "id",
  "name",
  "type",
  "status",
  "statusReason",
  "reasonCode",
  "priority",
  "owner",
  "payload",
  "result",
  "error",
  "resources",
  "pool",
  "constraints",
  "dependsOn",
  "retry",
  "timeoutSeconds",
  "attempts",
  "runAt",
  "deadline",
  "offPeakOnly",
  "onFailure",
  "onTimeout",
  "tags",
  "escalatedTo",
  "scheduleId",
  "createdAt",
  "updatedAt",
  "startedAt",
  "finishedAt",
  "nextAttemptAt",
  "version",
  "project",
  "array",
  "arrayIndex",
  "arrayParentId",
] as const satisfies readonly (keyof Job)[];

/** The API's Job from a stored item (and the result item, when there is one). */
export function fromJobItem(item: object, result: unknown = null): Job {
  // What storedJobItem left out, back in place (the stream's images are read raw).
  const stored = withStoredDefaults(item as Record<string, unknown>);
  const fromText: Record<string, unknown> = {
    result,
    payload: parseStored(stored.payloadJson, null),
    tags: parseStored(stored.tagsJson, {}),
    constraints: parseStored(stored.constraintsJson, {}),
    // A parent's summary from its own fields; GET /jobs/{id} adds the children's counts.
    array:
      typeof stored.arraySize === "number" && typeof stored.arrayParentId !== "string"
        ? arraySummary(stored.arraySize, Number(stored.unmet ?? 0))
        : null,
  };
  const job: Record<string, unknown> = {};
  for (const field of JOB_FIELDS) job[field] = field in fromText ? fromText[field] : (stored[field] ?? null);
  return job as unknown as Job;
}

/** The labels a job's pool must carry, from a job item or a queue-index projection of one. */
export function jobConstraints(item: { readonly constraintsJson?: unknown }): Record<string, string> {
  return parseStored(item.constraintsJson, {}) as Record<string, string>;
}

function parseStored(text: unknown, fallback: unknown): unknown {
  return typeof text === "string" ? JSON.parse(text) : fallback;
}

/**
 * The creation record (version 1) of a job born `queued`, which every such job's is: from
 * nothing to `queued` at its creation, for the reason every queued job starts with, by its
 * owner (who submitted it). The submission leaves it unwritten (store/submissions.ts) and reads
 * derive it from the job (app/queries.ts): one write unit and one request less per job.
 */
export function queuedCreationRecord(
  job: Pick<JobItem, "id" | "createdAt" | "owner">,
): Record<string, unknown> {
  const t = {
    from: null,
    to: "queued",
    at: job.createdAt,
    reason: PENDING_REASON.message,
    triggeredBy: job.owner,
    attempt: 0,
  } as const;
  return transitionItem(job.id, 1, t, 0);
}

/**
 * Whether a planned creation record says exactly what queuedCreationRecord derives for its job
 * (its TTL aside), so it can be left unwritten with nothing lost.
 */
export function isQueuedCreationRecord(record: Record<string, unknown>, job: JobItem): boolean {
  if (job.status !== "queued" || job.version !== 1) return false;
  const derived = queuedCreationRecord(job);
  const names = new Set([...Object.keys(derived), ...Object.keys(record)]);
  names.delete("expiresAt");
  return [...names].every((name) => record[name] === derived[name]);
}

/** A transition record as stored under the job's partition. */
export function transitionItem(
  jobId: string,
  version: number,
  t: {
    from: JobStatus | null;
    to: JobStatus;
    at: string;
    reason: string;
    triggeredBy: string | null;
    attempt: number;
    /** A priority change's two priorities (the status stays: from = to). */
    fromPriority?: number;
    toPriority?: number;
  },
  /** TTL (epoch seconds): JobRepository#historyExpiresAt, docs/data-model.md#retention. */
  expiresAt: number,
): Record<string, unknown> {
  // Stored with a level so GET /logs can show transitions as lifecycle lines and filter them.
  const level = t.to === "failed" ? "error" : t.to === "retrying" || t.to === "escalated" ? "warn" : "info";
  return { pk: jobPk(jobId), sk: transitionSk(version), entity: "transition", level, ...t, expiresAt };
}
