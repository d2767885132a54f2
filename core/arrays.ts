import { z } from "zod";
import { JOB_STATUSES, type JobStatus } from "./job-statuses";

/**
 * Array jobs (AWS Batch array jobs, Slurm `--array`): one submission makes a parent and `size`
 * children that share its definition. The parent is never dispatched: it is a summary that waits
 * on its children through the ordinary dependency edges, so a job that depends on the parent
 * waits for all of them, and a child that ends failed or cancelled dooms it as any failed
 * dependency does. Pure: ids, limits and the summary's arithmetic.
 */

/** AWS Batch's limit, and the issue's. */
export const MAX_ARRAY_SIZE = 10_000;

export const arraySchema = z.strictObject({
  size: z.number().int().min(1).max(MAX_ARRAY_SIZE),
});
export type ArrayRequest = z.infer<typeof arraySchema>;

/**
 * A child's id: `<parentId>-<index>`. Derived, never stored apart, so a child is found from its
 * parent without an index (GET /jobs/{parent}-{i}), an idempotent retry plans the same ids, and
 * the children sort right after their parent in every by-id index. A hyphen, not Slurm's `_` nor
 * a colon: Step Functions execution names (`<jobId>-<version>`) and ARNs refuse colons, and a
 * hyphen needs no escaping in a URL.
 */
export function arrayChildId(parentId: string, index: number): string {
  return `${parentId}-${index}`;
}

export function arrayChildIds(parentId: string, size: number, from = 0, to = size): string[] {
  const ids: string[] = [];
  for (let index = Math.max(0, from); index < Math.min(size, to); index++)
    ids.push(arrayChildId(parentId, index));
  return ids;
}

/** The parent and index of a child id, or null for any other id. */
export function parseArrayChildId(id: string): { readonly parentId: string; readonly index: number } | null {
  const match = /^(job_[0-9A-HJKMNP-TV-Z]{26})-(0|[1-9]\d{0,4})$/.exec(id);
  if (!match?.[1] || match[2] === undefined) return null;
  const index = Number(match[2]);
  return index < MAX_ARRAY_SIZE ? { parentId: match[1], index } : null;
}

/** How many children are in each status; every status is present, 0 when none. */
export type ArrayCounts = Record<JobStatus, number>;

/** The parent's `array` in the API: its size and, on GET /jobs/{id}, its children's statuses. */
export interface ArraySummary {
  readonly size: number;
  /** Children not yet completed (the parent's own count, exact at every read). */
  readonly pending: number;
  /** Per status; null where the view did not read the children (lists, the stream). */
  readonly counts: ArrayCounts | null;
}

export function countArrayChildren(statuses: Iterable<JobStatus>): ArrayCounts {
  const counts = Object.fromEntries(JOB_STATUSES.map((status) => [status, 0])) as ArrayCounts;
  for (const status of statuses) counts[status]++;
  return counts;
}

/** The summary from the parent's own fields, and the children's statuses when they were read. */
export function arraySummary(size: number, unmet: number, children?: Iterable<JobStatus>): ArraySummary {
  return {
    size,
    pending: Math.max(0, Math.min(size, unmet)),
    counts: children === undefined ? null : countArrayChildren(children),
  };
}

/** The parent's statusReason while its children run. */
export function arrayWaitingReason(size: number): string {
  return `array of ${size} children: completes when all of them have completed`;
}

/** The parent's statusReason once the last child completed. */
export function arrayCompletedReason(size: number): string {
  return `all ${size} children completed`;
}

/**
 * The parent's statusReason when a child ended without completing: AWS Batch's rule, the parent
 * fails as soon as any child fails (after that child's own retries and escalation).
 */
export function arrayFailedReason(childId: string, how: string): string {
  return `child ${childId} ${how}`;
}
