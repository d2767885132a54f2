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
  /** queued: not yet looked at by a scheduling pass (just queued, or its execution is starting). */
  "pending",
  /** queued: first in line for capacity that is not free now. */
  "resources",
  /** queued: behind other jobs that go first (higher priority, an earlier deadline, a held node). */
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
