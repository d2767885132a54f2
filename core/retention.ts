/**
 * How long an ended job's history (transitions, logs, attempts, result) and, optionally, the job
 * itself are kept: the `expiresAt` (epoch seconds, the Jobs table's TTL attribute) each item is
 * written with. docs/data-model.md#retention is the design and its cost.
 */

export interface Retention {
  /** Days a job's history is kept after the job ends (PRD-008: 90). */
  readonly historyDays: number;
  /** Days the job item itself is kept after it ends; null: kept for good. */
  readonly jobDays: number | null;
}

export const DEFAULT_RETENTION_DAYS = 90;
export const DEFAULT_RETENTION: Retention = { historyDays: DEFAULT_RETENTION_DAYS, jobDays: null };

/**
 * Added to the expiry of a history item written while its job still runs. Stamping every item
 * again at the job's end would cost a write per item (a job's logs alone can be hundreds); an
 * item written at `w` with `w + historyDays + margin` instead outlives the end by at least
 * `historyDays` whenever the job ends within `margin` of writing it, which is nearly every job,
 * for no write at all. The price: the history of a job that lives longer than that goes sooner
 * (see docs/data-model.md#retention for the bound).
 */
export const HISTORY_MARGIN_DAYS = 30;

const DAY_SECONDS = 86_400;

/** Whole epoch seconds of an ISO time plus some days. */
function epochPlusDays(at: string, days: number): number {
  return Math.floor(Date.parse(at) / 1000) + days * DAY_SECONDS;
}

/**
 * The `expiresAt` of a history item written at `at`: `historyDays` after it when the write ends
 * the job (the transition into a terminal status and what its transaction writes), `margin`
 * later when the job goes on.
 */
export function historyExpiresAt(retention: Retention, at: string, endsJob: boolean): number {
  return epochPlusDays(at, retention.historyDays + (endsJob ? 0 : HISTORY_MARGIN_DAYS));
}

/** The job item's `expiresAt` when it ends at `at`; null when jobs are kept for good. */
export function jobExpiresAt(retention: Retention, at: string): number | null {
  return retention.jobDays === null ? null : epochPlusDays(at, retention.jobDays);
}
