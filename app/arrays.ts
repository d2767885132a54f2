import { z } from "zod";
import {
  type ArrayRequest,
  arrayChildIds,
  arrayCompletedReason,
  arraySummary,
  arrayWaitingReason,
  MAX_ARRAY_SIZE,
} from "../core/arrays";
import { forEachConcurrent } from "../core/concurrency";
import { resolveBatch } from "../core/dependencies";
import { InvalidTransitionError } from "../core/errors";
import { isTerminal, type Job, type JobStatus, type ResolvedJobRequest } from "../core/job";
import type { Principal } from "../core/principal";
import { decodeCursor, encodeCursor } from "../store/cursor";
import { fromJobItem, type JobItem, toJobItem, transitionItem } from "../store/job-items";
import type { StatusChange } from "../store/job-repository";
import { dependsOnSk, jobPk } from "../store/keys";
import type { ListPage, QueryContext } from "./queries";
import { type PlannedJob, planSubmission, type SubmissionPlan, type SubmitContext } from "./submit";
import { canSee, loadVisibleJob } from "./visibility";

/**
 * Array jobs (core/arrays.ts) on the submit, completion, cancel and read paths. The parent is a
 * job item that waits, `blocked`, on its children through the ordinary dependency edges (a
 * `DEP#<child>` edge under the parent; the child's `DPT#<parent>` is derived from its id): the stream
 * consumer that releases dependents (app/completion.ts#releaseDependents) flips one edge per
 * completed child and decrements the parent's `unmet` in one conditional transaction, so a
 * redelivered stream record counts nothing twice. With `unmet` at 0 the parent completes
 * (`settleBlocked`); a child that ends failed or cancelled fails it through the cascade
 * (app/actions.ts#cascadeCancel), and the parent's own dependents are cancelled in turn.
 */

/** Whether a job item is an array job's parent (children carry arraySize too, and their parent). */
export function isArrayParent(item: Pick<JobItem, "arraySize" | "arrayParentId">): boolean {
  return typeof item.arraySize === "number" && item.arrayParentId === undefined;
}

/** Ids of the whole submission: the parent, then its children in index order. */
export function arraySubmissionIds(parentId: string, array: ArrayRequest): string[] {
  return [parentId, ...arrayChildIds(parentId, array.size)];
}

/**
 * The items of an array submission: the children planned as a batch of `size` copies of the
 * request (so each gets the initial status, dependency edges and transition any job would), then
 * the parent, `blocked` on all of them. Every child keeps its own copy of the payload: the worker
 * reads a job's payload from its item, and a child's writes cost what a lone job's do.
 */
export async function planArraySubmission(
  ctx: SubmitContext,
  principal: Principal,
  request: ResolvedJobRequest,
  array: ArrayRequest,
  ids: readonly string[],
  scheduleId: string | null,
): Promise<SubmissionPlan> {
  const [parentId, ...childIds] = ids;
  if (!parentId || childIds.length !== array.size) throw new RangeError("array ids do not match its size");
  const copies = childIds.map(() => request);
  const base = await planSubmission(ctx, principal, copies, resolveBatch(copies), childIds, scheduleId);
  const children = base.jobs.map((child, index): PlannedJob => {
    // The parent waits on every child (without a stored edge): none is created without dependents.
    const { noDependents: _waitedOn, ...item } = child.item;
    return { ...child, item: { ...item, arraySize: array.size, arrayIndex: index, arrayParentId: parentId } };
  });
  const first = children[0]?.item;
  if (!first) throw new RangeError("an array has at least one child");
  // Children cancelled at birth (a dependency failed already) end the parent at birth too.
  const doomed = first.status === "cancelled";
  const status: JobStatus = doomed ? "cancelled" : "blocked";
  const reason = doomed ? first.statusReason : arrayWaitingReason(array.size);
  const template = fromJobItem(first);
  const {
    array: _array,
    arrayIndex: _index,
    arrayParentId: _parent,
    ...fields
  } = template as Job & { array?: unknown; arrayIndex?: unknown; arrayParentId?: unknown };
  const parentJob: Job = {
    ...fields,
    id: parentId,
    status,
    statusReason: reason,
    reasonCode: doomed ? null : "dependency",
    // The children carry the deadline: a parent that passed one would fail with them still running.
    deadline: null,
    startedAt: null,
    finishedAt: doomed ? first.createdAt : null,
    version: 1,
  };
  const parentItem: JobItem = {
    ...toJobItem(parentJob, array.size, false),
    ...(first.expiresAt === undefined ? {} : { expiresAt: first.expiresAt }),
    arraySize: array.size,
  };
  // The parent's "waits on" edges only: a child's "waited on by" edge to its parent is derived
  // from the child's id (JobRepository#listDependentIds), one item fewer per child to stage.
  const edges = childIds.map((childId) => ({
    pk: jobPk(parentId),
    sk: dependsOnSk(childId),
    entity: "dependency",
    parentId: childId,
    met: false,
  }));
  const transition = transitionItem(
    parentId,
    1,
    { from: null, to: status, at: base.createdAt, reason, triggeredBy: principal.id, attempt: 0 },
    ctx.repo.historyExpiresAt(base.createdAt, doomed),
  );
  const parent: PlannedJob = { item: parentItem, transition, edges };
  const jobs = [parent, ...children];
  return {
    createdAt: base.createdAt,
    jobs,
    externals: base.externals,
    transactionSize: jobs.reduce((n, job) => n + 2 + job.edges.length, 0) + base.externals.length,
    bytes:
      base.bytes +
      Buffer.byteLength(JSON.stringify([parentItem, transition, edges]), "utf8") +
      64 * array.size,
  };
}

/**
 * What settleBlocked does for an array parent: nothing while children are left (the summary is
 * read, not written, so a child's end costs no reason write on the parent), `completed` when the
 * last child completed.
 */
export function arrayParentSettlement(item: JobItem, at: string): StatusChange | null {
  if (item.unmet > 0) return null;
  return {
    to: "completed",
    reason: arrayCompletedReason(item.arraySize ?? 0),
    reasonCode: null,
    triggeredBy: null,
    set: { finishedAt: at, nextAttemptAt: null },
  };
}

/** Refuses what makes no sense on a parent that never runs: pause, resume, manual retry. */
export function refuseOnArrayParent(item: JobItem, action: string, to: JobStatus): void {
  if (!isArrayParent(item)) return;
  throw new InvalidTransitionError(
    item.status,
    to,
    `job ${item.id} is an array job's parent, which never runs itself; ${action} its children instead`,
  );
}

/** Children read or cancelled at once. */
const CHILD_CONCURRENCY = 8;
/** Children read per BatchGetItem round. */
const CHILD_READ_CHUNK = 100;

/** Reads every child's item, in index order (missing ones, e.g. an unfinished commit, left out). */
export async function readArrayChildren(
  ctx: Pick<SubmitContext, "repo">,
  parentId: string,
  size: number,
): Promise<JobItem[]> {
  const ids = arrayChildIds(parentId, size);
  const chunks: string[][] = [];
  for (let i = 0; i < ids.length; i += CHILD_READ_CHUNK) chunks.push(ids.slice(i, i + CHILD_READ_CHUNK));
  const found = new Map<string, JobItem>();
  await forEachConcurrent(chunks, CHILD_CONCURRENCY, async (chunk) => {
    const items = await ctx.repo.getJobItems(chunk, false);
    for (const [id, item] of items) if (!item.staged) found.set(id, item);
  });
  return ids.map((id) => found.get(id)).filter((item): item is JobItem => item !== undefined);
}

/**
 * GET /jobs/{id} of a parent: the summary with every child's status counted. Reads each child's
 * item (BatchGetItem, eventually consistent: ≈ 0.5 RCU a child), so only the single job's view
 * does it; lists and the stream show the summary without counts.
 */
export async function withArrayCounts(
  ctx: Pick<SubmitContext, "repo">,
  item: JobItem,
  job: Job,
): Promise<Job> {
  if (!isArrayParent(item)) return job;
  const size = item.arraySize ?? 0;
  const children = await readArrayChildren(ctx, item.id, size);
  return {
    ...job,
    array: arraySummary(
      size,
      item.unmet,
      children.map((child) => child.status),
    ),
  };
}

/**
 * Cancels the children that have not ended, each with the cascade to its own dependents but
 * never back to the parent (the caller cancels the parent last, so a cancel cut short by a
 * timeout is finished by sending it again: the parent is still not terminal). Returns how many.
 */
export async function cancelArrayChildren(
  ctx: Pick<SubmitContext, "repo">,
  item: JobItem,
  cancelChild: (child: JobItem) => Promise<boolean>,
): Promise<number> {
  const children = await readArrayChildren(ctx, item.id, item.arraySize ?? 0);
  let cancelled = 0;
  await forEachConcurrent(
    children.filter((child) => !isTerminal(child.status)),
    CHILD_CONCURRENCY,
    async (child) => {
      if (await cancelChild(child)) cancelled++;
    },
  );
  return cancelled;
}

/** Where GET /jobs/{id}/children's next page starts: the next index. */
const childrenCursorSchema = z.strictObject({
  next: z
    .number()
    .int()
    .min(1)
    .max(MAX_ARRAY_SIZE - 1),
});

/**
 * GET /jobs/{id}/children: the children of an array job in index order, a page at a time. The
 * ids are derived from the parent's, so a page is one BatchGetItem of `limit` items, no index.
 * A job that is not an array parent has no children: an empty page.
 */
export async function listArrayChildren(
  ctx: QueryContext,
  principal: Principal,
  id: string,
  options: { limit: number; cursor?: string | undefined },
): Promise<ListPage<Job>> {
  const cursor = decodeCursor(options.cursor, childrenCursorSchema);
  const { item } = await loadVisibleJob(ctx.repo, principal, id);
  if (!isArrayParent(item)) return { items: [], nextCursor: null };
  const size = item.arraySize ?? 0;
  const from = cursor?.next ?? 0;
  const to = Math.min(size, from + options.limit);
  const ids = arrayChildIds(id, size, from, to);
  const children = await ctx.repo.getJobItems(ids, false);
  const items = ids
    .map((childId) => children.get(childId))
    .filter((child): child is JobItem => child !== undefined && !child.staged && canSee(principal, child))
    .map((child) => fromJobItem(child));
  return { items, nextCursor: to < size ? encodeCursor({ next: to }) : null };
}
