import type { JobStatus } from "../core/job";
import { queuePosition } from "../core/ordering";

/**
 * Key builders for the jobs table. A job's partition `JOB#<id>` holds the job item and
 * everything that belongs to it (result, attempts, logs, transitions, dependency edges), so
 * one Query reads any of them in order. See docs/data-model.md.
 */

export const jobPk = (id: string): string => `JOB#${id}`;
export const JOB_SK = "JOB";
/** Begins with JOB_SK so one Query reads the job and its result together. */
export const RESULT_SK = "JOB#RESULT";

/** The child's edge: what it waits on. */
export const dependsOnSk = (parentId: string): string => `DEP#${parentId}`;
export const DEPENDS_ON_PREFIX = "DEP#";
/** The parent's edge: who waits on it. */
export const dependentSk = (childId: string): string => `DPT#${childId}`;
export const DEPENDENT_PREFIX = "DPT#";

export const attemptSk = (attempt: number): string => `ATT#${String(attempt).padStart(4, "0")}`;
export const ATTEMPT_PREFIX = "ATT#";

/** Keyed by the job version the change produced: unique, ordered, and a replay collides. */
export const transitionSk = (version: number): string => `TRN#${String(version).padStart(10, "0")}`;
export const TRANSITION_PREFIX = "TRN#";
/** The version a transition record's sort key names (transitionSk's inverse). */
export const versionOfTransitionSk = (sk: string): number => Number(sk.slice(TRANSITION_PREFIX.length));

export const logSk = (ulid: string): string => `LOG#${ulid}`;
export const LOG_PREFIX = "LOG#";

export const idempotencyPk = (principal: string, keyHash: string): string => `IDEM#${principal}#${keyHash}`;
export const IDEMPOTENCY_SK = "IDEM";

/** GSI keys of a job item, derived from the job itself so no writer can let them drift. */
export const ownerPk = (owner: string): string => `O#${owner}`;
/**
 * byOwnerStatus's partition for a status. Dispatched and running share one (`#running`), so a
 * worker's start moves no key of the index and, with nothing it projects changed, writes no entry
 * of it at all (2 write units a job); a list of one of the two checks the status on the job items
 * it reads anyway (app/queries.ts).
 */
export const ownerStatusPk = (owner: string, status: JobStatus): string =>
  `O#${owner}#${status === "dispatched" ? "running" : status}`;
/**
 * The byOwnerStatus partitions a list of `status` reads: its own, and for `dispatched` also the one
 * of its own name, where a job dispatched before the two shared a partition still is until it
 * starts (or is requeued).
 */
export const ownerStatusPartitions = (owner: string, status: JobStatus): string[] =>
  status === "dispatched"
    ? [ownerStatusPk(owner, status), `O#${owner}#dispatched`]
    : [ownerStatusPk(owner, status)];
export const dayPk = (day: string): string => `DAY#${day}`;
/**
 * GET /jobs?updatedSince=: by the minute of the job's last change, then its id (unique). The
 * minute, not the instant: changes within one minute leave the index entry as it is (DynamoDB
 * writes an index only when its keys or projected attributes change), so a job that runs its
 * course within a minute costs one entry write per index, not a delete and a put per change. The
 * list reads from the minute of `updatedSince` and checks the exact time on the job items.
 */
export const updatedSk = (updatedAt: string, id: string): string => `${updatedMinute(updatedAt)}#${id}`;
/** `yyyy-mm-ddThh:mm` of an ISO time. */
export const updatedMinute = (at: string): string => at.slice(0, 16);
export const updatedDayPk = (day: string): string => `UPD#${day}`;
export const queuePk = (pool: string | null): string => `Q#${pool ?? "*"}`;
export const duePk = (pool: string | null): string => `DUE#${pool ?? "*"}`;

/**
 * Admission order within a pool: priority high→low, then the job's place among its priority
 * (core/ordering.ts#queuePosition: earliest deadline, none last, then oldest — job ids are ULIDs —
 * unless an admin moved it).
 */
export function queueSk(job: {
  priority: number;
  deadline: string | null;
  id: string;
  orderKey?: string | undefined;
}): string {
  return `${queueRankPrefix(job.priority)}${queuePosition(job)}`;
}

/** The part of `queueSk` before the position: all of one priority's keys start with it. */
export const queueRankPrefix = (priority: number): string => `${String(10 - priority).padStart(2, "0")}#`;

/** The position part of a `queueSk` (the rank prefix is always three characters). */
export const positionOfQueueSk = (sk: string): string => sk.slice(3);

export const dueSk = (runAt: string, id: string): string => `${runAt}#${id}`;
/** A waiting job with nothing due (blocked without a deadline, paused): sorts after every time. */
export const NEVER_DUE = "~";

/**
 * The queue by owner (fair-share, round-robin): each owner's queued jobs together, in admission
 * order. Principals never contain `#` or `$`, so `<owner>$` sorts right after all of an owner's
 * keys: the start key that skips to the next owner.
 */
export const queueOwnerSk = (owner: string, sk: string): string => `${owner}#${sk}`;
export const afterOwner = (owner: string): string => `${owner}$`;
export const ownerOfQueueOwnerSk = (sk: string): string => sk.slice(0, sk.indexOf("#"));
/** The queue by how long a job has waited (aging): oldest first. */
export const queueAgeSk = (queuedAt: string, id: string): string => `${queuedAt}#${id}`;

/** Policy table keys: the policy, each principal's quota limits and GPU usage, run-time stats. */
export const POLICY_PK = "POLICY";
export const POLICY_SK = "POLICY";
export const principalPk = (principal: string): string => `PRINCIPAL#${principal}`;
export const QUOTA_SK = "QUOTA";
/** GPU-seconds of finished attempts in one UTC day (`yyyy-mm-dd`) or week (its Monday). */
export const dayUsageSk = (day: string): string => `USAGE#D#${day}`;
export const weekUsageSk = (monday: string): string => `USAGE#W#${monday}`;
/** Completed attempts' run times per job type and UTC day: what estimatedStartAt learns from. */
export const runtimePk = (type: string): string => `RUNTIME#${type}`;
export const runtimeSk = (day: string): string => `D#${day}`;

export const activePk = (pool: string): string => `ACT#${pool}`;
export const activeSk = (nodeId: string, jobId: string): string => `${nodeId}#${jobId}`;

/** Nodes table keys. */
export const nodeSk = (nodeId: string): string => `NODE#${nodeId}`;
export const NODE_PREFIX = "NODE#";
export const LEASE_SK = "LEASE";

/** The earliest day bucket holding any job: the admin listing stops there. */
export const META_PK = "META";
export const FIRST_DAY_SK = "FIRST_DAY";

/** A fired job's entry in the bySchedule index (GET /jobs?scheduleId=). */
export const schedulePk = (scheduleId: string): string => `SCH#${scheduleId}`;
/** A project's job's entry in the byProject index (GET /jobs?project=; issue 13). */
export const projectPk = (project: string): string => `PRJ#${project}`;

/** Policy table keys of a recurring schedule and its two indexes (docs/schedules.md). */
export const scheduleItemPk = (id: string): string => `SCHEDULE#${id}`;
export const SCHEDULE_SK = "SCHEDULE";
/** One partition for every schedule: a deployment has hundreds, not millions. */
export const SCHEDULES_PK = "SCHEDULES";
/** Principals never contain `#`, so `<owner>#` prefixes exactly that owner's schedules. */
export const schedulesSk = (owner: string, id: string): string => `${owner}#${id}`;
export const SCHEDULE_DUE_PK = "SCHEDULE_DUE";
export const scheduleDueSk = (dueAt: string, id: string): string => `${dueAt}#${id}`;
