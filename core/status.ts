import { InvalidTransitionError } from "./errors";
import { isTerminal, JOB_STATUSES, type JobStatus } from "./job";

/**
 * The job status machine of API.md, as one table: every status change anywhere in jobq (API,
 * scheduler, lifecycle, reconciler) goes through `transition`, so a change the table does not
 * list is refused instead of silently applied.
 */
export const ALLOWED_TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  // `failed` from the waiting statuses is the deadline passing before the job started.
  scheduled: ["queued", "blocked", "paused", "cancelled", "failed"],
  // `completed` straight from `blocked` only for an array job's parent, which never runs: it
  // completes when its last child does (core/arrays.ts).
  blocked: ["scheduled", "queued", "paused", "cancelled", "failed", "completed"],
  queued: ["dispatched", "blocked", "paused", "cancelled", "failed"],
  // Back to `queued` when preempted or when the worker never picked the attempt up.
  dispatched: ["running", "queued", "retrying", "paused", "cancelled", "failed", "escalated"],
  running: ["completed", "retrying", "queued", "paused", "cancelled", "failed", "escalated"],
  // After the backoff the job takes whatever status now applies, by the same rule as at submit.
  retrying: ["queued", "blocked", "paused", "cancelled", "failed", "escalated"],
  // Resume lands on whatever status now applies (see `applicableStatus` in dependencies.ts).
  paused: ["scheduled", "blocked", "queued", "cancelled", "failed"],
  completed: [],
  // The one way out of a terminal status: a manual retry (POST /jobs/{id}/retry) puts the job
  // back where the dependency rule says it waits. `transition` refuses these exits to every
  // other caller, so no lifecycle step can revive a job by accident.
  failed: ["scheduled", "blocked", "queued"],
  cancelled: ["scheduled", "blocked", "queued"],
  escalated: ["scheduled", "blocked", "queued"],
};

/** Statuses a manual retry takes a job out of: the terminal ones that have exits. */
export const RETRYABLE: ReadonlySet<JobStatus> = new Set(
  JOB_STATUSES.filter((status) => isTerminal(status) && ALLOWED_TRANSITIONS[status].length > 0),
);

/** Statuses a job can be paused from; derived so it cannot drift from the table. */
export const PAUSABLE: ReadonlySet<JobStatus> = statusesThatCanReach("paused");

/** Statuses a job can be cancelled from: every non-terminal one. */
export const CANCELLABLE: ReadonlySet<JobStatus> = statusesThatCanReach("cancelled");

export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return ALLOWED_TRANSITIONS[from].includes(to);
}

/**
 * The status a job moves to, or an InvalidTransitionError (409 `invalid_transition`) naming
 * both ends so the client learns why its request was refused. A terminal status is left only
 * `via: "retry"` (the manual retry's use case): the table lists those exits, every other caller
 * is refused them.
 */
export function transition(from: JobStatus, to: JobStatus, via?: "retry"): JobStatus {
  if (!canTransition(from, to) || (isTerminal(from) && via !== "retry")) {
    throw new InvalidTransitionError(
      from,
      to,
      `job is ${from}; ${article(from)} ${from} job cannot ${becoming(to)}`,
    );
  }
  return to;
}

function statusesThatCanReach(target: JobStatus): ReadonlySet<JobStatus> {
  return new Set(JOB_STATUSES.filter((status) => canTransition(status, target)));
}

function article(status: JobStatus): "a" | "an" {
  return /^[aeiou]/.test(status) ? "an" : "a";
}

/** The refused change in the words a user would use for the action they attempted. */
function becoming(to: JobStatus): string {
  switch (to) {
    case "cancelled":
      return "be cancelled";
    case "paused":
      return "be paused";
    case "escalated":
      return "be escalated";
    case "scheduled":
      return "be scheduled";
    case "blocked":
      return "wait on dependencies";
    case "queued":
      return "be queued";
    case "dispatched":
      return "be dispatched";
    case "running":
      return "start running";
    case "retrying":
      return "be retried";
    case "completed":
      return "complete";
    case "failed":
      return "fail";
  }
}
