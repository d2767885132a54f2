/**
 * Why a job is where it is, as a stable code beside the human sentence (statusReason), like
 * Slurm's job reason codes: clients and dashboards switch on the code, people read the sentence.
 * A waiting job (scheduled, blocked, queued) always carries one; other statuses may.
 */
export const REASON_CODES = [
  /** scheduled: its runAt has not come. */
  "begin_time",
  /** blocked: dependencies not yet completed. */
  "dependency",
  /**
   * queued: just queued, or waiting its turn with nothing about it in particular holding it back
   * (read with the jobs ahead of it as `priority`: `queuedReason`), or its execution is starting.
   */
  "pending",
  /** queued: first in line for capacity that is not free now. */
  "resources",
  /**
   * queued: behind other jobs that go first (higher priority, an earlier deadline, a held node).
   * A job that only waits its turn keeps `pending` in storage (see `queuedReason`).
   */
  "priority",
  /** queued: its owner is over a GPU quota. */
  "quota",
  /** queued: offPeakOnly and the off-peak window is closed. */
  "off_peak_window",
  /** queued: its type is at its typeConcurrency limit. */
  "type_limit",
  /** queued: no node of any pool it may run in is up. */
  "no_nodes",
  /** queued: evicted by a higher-priority job. */
  "preempted",
  /** queued: its type's circuit breaker is open (too many recent failures); says when it half-opens. */
  "circuit_open",
  /** queued: its type started as many jobs as its rateLimit allows in the current period. */
  "rate_limit",
  /** queued: the policy's maxRunning cap (whole system or the pool) is reached. */
  "running_cap",
  /** failed: not started by its deadline. */
  "deadline_exceeded",
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];

/** A status reason: the code and the sentence. */
export interface Reason {
  readonly code: ReasonCode;
  readonly message: string;
}

/** The reason a job is queued with: no pass has said more of it yet. */
export const PENDING_REASON: Reason = { code: "pending", message: "waiting for admission" };

/** How a reason of a job that waits behind others starts; the count of them is added when read. */
export const BEHIND_PREFIX = "waiting behind jobs ahead of it";

/**
 * A queued job's reason as GET /jobs/{id} and GET /queue show it, `ahead` jobs being ahead of it
 * in line (null: some, not counted). Stored reasons leave that count out: it changes with every
 * admission, and a reason is written only when it changes. For the same reason a pass leaves a
 * job that only waits its turn with the reason it was queued with, `pending`, rather than write
 * "waiting behind jobs ahead of it" into every job of a backlog (the job and its three queue
 * views, 4 write units each): read, with jobs ahead of it, that job waits for `priority`. A
 * reason without a code is as stored.
 */
export function queuedReason<R extends { readonly code: ReasonCode | null; readonly message: string }>(
  stored: R,
  ahead: number | null,
): R | Reason {
  if (ahead === 0 || stored.code === null) return stored;
  const count = ahead === null ? "jobs" : `${ahead} job${ahead === 1 ? "" : "s"}`;
  const counted = `waiting behind ${count} ahead of it`;
  if (stored.code === PENDING_REASON.code && stored.message === PENDING_REASON.message) {
    return { code: "priority", message: `${counted} in the queue` };
  }
  if (!stored.message.startsWith(BEHIND_PREFIX)) return stored;
  return { code: stored.code, message: `${counted}${stored.message.slice(BEHIND_PREFIX.length)}` };
}
