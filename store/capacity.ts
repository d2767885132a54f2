import type { Resources } from "../core/job";
import type { JobItem, Reservation } from "./job-items";
import type { TransactItem } from "./job-repository";
import { activeSk, attemptSk, JOB_SK, jobPk, nodeSk } from "./keys";

/**
 * The items that move capacity and end attempts. They go into the same TransactWriteItems as the
 * job's status change, so capacity can never be reserved by a job that is not dispatched or
 * running, nor stay reserved by one that left those statuses; the one exception is the worker's
 * completion, which releases right after the job's own write, guarded by the node's repair count
 * (releaseCapacityItem, docs/lifecycle.md "The worker's completion").
 */

export interface NodeCapacity {
  readonly cpu: number;
  readonly memoryMb: number;
  readonly gpu: number;
}

/**
 * Reserves a job's resources on a node, only if the node is up and they still fit: the
 * condition compares `used` with capacity minus the request, so two schedulers (or a retried
 * pass) can never overfill a node.
 */
export function reserveCapacityItem(
  nodesTable: string,
  reservation: Reservation,
  nodeCapacity: NodeCapacity,
): TransactItem {
  return {
    Update: {
      TableName: nodesTable,
      Key: { pool: reservation.pool, sk: nodeSk(reservation.nodeId) },
      UpdateExpression:
        "SET used.cpu = used.cpu + :cpu, used.memoryMb = used.memoryMb + :mem, used.gpu = used.gpu + :gpu",
      ConditionExpression:
        "#status = :up AND used.cpu <= :cpuLimit AND used.memoryMb <= :memLimit AND used.gpu <= :gpuLimit",
      ExpressionAttributeNames: { "#status": "status" },
      ExpressionAttributeValues: {
        ":up": "up",
        ":cpu": reservation.cpu,
        ":mem": reservation.memoryMb,
        ":gpu": reservation.gpu,
        ":cpuLimit": nodeCapacity.cpu - reservation.cpu,
        ":memLimit": nodeCapacity.memoryMb - reservation.memoryMb,
        ":gpuLimit": nodeCapacity.gpu - reservation.gpu,
      },
    },
  };
}

/**
 * Gives a reservation back to its node (whatever the node's status: a lost node's books still
 * balance). In the job's own transaction, `repairsSeen` is left out. A release written after its
 * job's change (the worker's completion, app/completion.ts) passes the node's repair count as read
 * before that change: should the reconciler have repaired `used` since, that repair may already
 * have counted the job out, so the release is refused rather than given twice, and the next proof
 * repairs whatever it leaves.
 */
export function releaseCapacityItem(
  nodesTable: string,
  reservation: Reservation,
  repairsSeen?: number,
): TransactItem {
  const unrepaired =
    repairsSeen === undefined
      ? ""
      : repairsSeen === 0
        ? " AND attribute_not_exists(repairs)"
        : " AND repairs = :repairs";
  return {
    Update: {
      TableName: nodesTable,
      Key: { pool: reservation.pool, sk: nodeSk(reservation.nodeId) },
      UpdateExpression:
        "SET used.cpu = used.cpu - :cpu, used.memoryMb = used.memoryMb - :mem, used.gpu = used.gpu - :gpu",
      ConditionExpression: `attribute_exists(sk)${unrepaired}`,
      ExpressionAttributeValues: {
        ":cpu": reservation.cpu,
        ":mem": reservation.memoryMb,
        ":gpu": reservation.gpu,
        ...(repairsSeen ? { ":repairs": repairsSeen } : {}),
      },
    },
  };
}

export function reservationFor(pool: string, nodeId: string, resources: Resources): Reservation {
  return { pool, nodeId, cpu: resources.cpu, memoryMb: resources.memoryMb, gpu: resources.gpu };
}

/**
 * Ends a running job's attempt record. The worker's start puts that record after the job's own
 * write, outside any transaction (app/attempts.ts), so it can be missing — the worker died in
 * between — or not there yet: this writes it whole from the job as read, only where it is absent
 * or still running, and the start's later put of it, conditional on its absence, then does
 * nothing. (A dispatched attempt that never started has no record; unstartedAttemptItem writes
 * that one.)
 */
export function endAttemptItem(
  jobsTable: string,
  job: Pick<JobItem, "id" | "attemptStartedAt" | "attemptWorkerId" | "reservation">,
  attempt: number,
  end: {
    status: string;
    finishedAt: string;
    durationMs: number | null;
    error: { type: string; message: string } | null;
    /** TTL of the attempt record: the expiry its job's status change gives history items. */
    expiresAt: number;
  },
): TransactItem {
  // What the start's record would have said, kept where the record has it already.
  const started: Record<string, unknown> = {
    entity: "attempt",
    attempt,
    startedAt: job.attemptStartedAt ?? null,
    workerId: job.attemptWorkerId ?? null,
    nodeId: job.reservation?.nodeId ?? null,
    pool: job.reservation?.pool ?? null,
  };
  const names: Record<string, string> = { "#status": "status", "#error": "error" };
  const values: Record<string, unknown> = {
    ":status": end.status,
    ":finishedAt": end.finishedAt,
    ":durationMs": end.durationMs,
    ":error": end.error,
    ":expiresAt": end.expiresAt,
    ":running": "running",
  };
  const keep = Object.entries(started).map(([name, value], i) => {
    names[`#k${i}`] = name;
    values[`:k${i}`] = value;
    return `#k${i} = if_not_exists(#k${i}, :k${i})`;
  });
  return {
    Update: {
      TableName: jobsTable,
      Key: { pk: jobPk(job.id), sk: attemptSk(attempt) },
      UpdateExpression: `SET #status = :status, finishedAt = :finishedAt, durationMs = :durationMs, #error = :error, expiresAt = :expiresAt, ${keep.join(", ")}`,
      ConditionExpression: "attribute_not_exists(pk) OR #status = :running",
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    },
  };
}

/**
 * Moves a dispatched job's booking from one node to another (a worker's start that swaps
 * bookings, app/attempts.ts): only while the job is still dispatched for that attempt and booked
 * on `from`. The version goes up so that a start of that job which read the old booking fails its
 * condition and reads it again.
 */
export function rebookItem(
  jobsTable: string,
  rebook: {
    readonly jobId: string;
    readonly attempts: number;
    readonly from: string;
    readonly to: string;
    readonly at: string;
  },
): TransactItem {
  return {
    Update: {
      TableName: jobsTable,
      Key: { pk: jobPk(rebook.jobId), sk: JOB_SK },
      UpdateExpression:
        "SET reservation.nodeId = :to, activeSk = :activeSk, updatedAt = :at ADD #version :one",
      ConditionExpression: "#status = :dispatched AND reservation.nodeId = :from AND attempts = :attempts",
      ExpressionAttributeNames: { "#status": "status", "#version": "version" },
      ExpressionAttributeValues: {
        ":to": rebook.to,
        ":from": rebook.from,
        ":activeSk": activeSk(rebook.to, rebook.jobId),
        ":at": rebook.at,
        ":one": 1,
        ":dispatched": "dispatched",
        ":attempts": rebook.attempts,
      },
    },
  };
}
