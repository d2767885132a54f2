/**
 * The job statuses of API.md and which of them are terminal. Kept apart from job.ts (which
 * imports zod) so the dashboard and the CLI can import the list without bundling a schema library.
 */

export const JOB_STATUSES = [
  "scheduled",
  "blocked",
  "queued",
  "dispatched",
  "running",
  "retrying",
  "paused",
  "completed",
  "failed",
  "cancelled",
  "escalated",
] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  "completed",
  "failed",
  "cancelled",
  "escalated",
]);

/** Takes any string (a stream message, a URL parameter): an unknown status is not terminal. */
export const isTerminal = (status: string): boolean => TERMINAL_STATUSES.has(status as JobStatus);

/** Every status a job can still leave on its own, in the list's order. */
export const NON_TERMINAL_STATUSES: readonly JobStatus[] = JOB_STATUSES.filter(
  (s) => !TERMINAL_STATUSES.has(s),
);
