import { ulid } from "ulid";
import { forEachConcurrent } from "../core/concurrency";
import { initialStatus, resolveBatch, tallyDependencies, validateExternalDeps } from "../core/dependencies";
import {
  ConcurrentUpdateError,
  type FieldProblem,
  PayloadTooLargeError,
  TooManyRequestsError,
  UnknownTypeError,
  UnsatisfiableResourcesError,
} from "../core/errors";
import { type BatchJobRequest, isTerminal, type Job, type JobStatus, MAX_PAYLOAD_BYTES } from "../core/job";
import { unsatisfiableReason } from "../core/pools";
import type { Principal } from "../core/principal";
import { fromJobItem, indexAttributes, type JobItem, toJobItem, transitionItem } from "../store/job-items";
import { type JobRepository, MAX_TRANSACTION_ITEMS, type TransactItem } from "../store/job-repository";
import { dependentSk, dependsOnSk, JOB_SK, jobPk } from "../store/keys";
import { stateChange } from "./events";
import { type Claim, Idempotency, type IdempotencyRecord } from "./idempotency";
import { countNotStarted } from "./quota-usage";
import type { AppContext } from "./runtime";
import { canSee } from "./visibility";

/**
 * Submitting jobs: one job (POST /jobs) is a batch of one (POST /jobs/batch), so both share
 * one path. A submission is all-or-nothing as the user sees it: it fits one DynamoDB
 * transaction in the common case; a larger one is written invisible ("staged") first and then
 * made visible, which a retry with the same Idempotency-Key can finish after a crash.
 */

export type SubmitContext = Pick<
  AppContext,
  "repo" | "pools" | "taskTypes" | "clock" | "executions" | "events"
> &
  // Without it no quota is read and maxQueuedJobs is not enforced (contexts built for tests).
  Partial<Pick<AppContext, "policies">>;

export interface SubmitRequest {
  readonly principal: Principal;
  readonly jobs: readonly BatchJobRequest[];
  readonly idempotency?: { readonly key: string; readonly requestHash: string } | undefined;
  /**
   * Not held to the principal's maxQueuedJobs: a job the system creates on the principal's
   * behalf (an escalation replaces a job that failed), which must not be lost to a 429.
   * @default false
   */
  readonly exemptFromQueueLimit?: boolean;
  /**
   * The ids to create, one per job, when the caller fixed them beforehand: an escalation names
   * its job in the escalated job's own status change, before the job exists.
   * @default fresh `job_` + ULID ids
   */
  readonly ids?: readonly string[] | undefined;
}

export interface SubmitResult {
  readonly jobs: Job[];
  readonly refs: Record<string, string>;
  readonly replayed: boolean;
}

/** How long a staged job may wait for its batch to commit before DynamoDB's TTL collects it. */
const STAGED_TTL_SECONDS = 24 * 60 * 60;
/** DynamoDB refuses transactions over 4 MB; stay clear of it (item sizes are estimated from JSON). */
const MAX_TRANSACTION_BYTES = 3_500_000;
/** Re-reads after losing a race with a concurrent change to a dependency. */
const MAX_WRITE_ROUNDS = 5;

/**
 * Rejects any payload over 256 KiB serialized with a 413, before schema parsing: API.md makes
 * the size its own error, not a validation problem. Walks the raw body's `payload` fields.
 */
export function assertPayloadSizes(raw: unknown, batch: boolean): void {
  const entries: [string, unknown][] = [];
  if (batch) {
    const jobs = (raw as { jobs?: unknown })?.jobs;
    if (Array.isArray(jobs)) {
      jobs.forEach((job, i) => {
        entries.push([`jobs.${i}.payload`, (job as { payload?: unknown })?.payload]);
      });
    }
  } else if (raw !== null && typeof raw === "object") {
    entries.push(["payload", (raw as { payload?: unknown }).payload]);
  }
  const tooLarge: FieldProblem[] = [];
  for (const [path, payload] of entries) {
    if (payload === undefined) continue;
    const bytes = Buffer.byteLength(JSON.stringify(payload) ?? "", "utf8");
    if (bytes > MAX_PAYLOAD_BYTES)
      tooLarge.push({ path, message: `${bytes} bytes serialized; the limit is ${MAX_PAYLOAD_BYTES}` });
  }
  if (tooLarge.length > 0) {
    throw new PayloadTooLargeError(`payload larger than ${MAX_PAYLOAD_BYTES} bytes`, tooLarge);
  }
}

/** Refusals that need no I/O: unknown types and resources no eligible pool could ever hold. */
function checkRunnable(ctx: SubmitContext, jobs: readonly BatchJobRequest[], batch: boolean): void {
  jobs.forEach((job, i) => {
    for (const type of [job.type, job.onFailure?.escalateTo.type]) {
      if (type !== undefined && ctx.taskTypes && !ctx.taskTypes.has(type)) throw new UnknownTypeError(type);
    }
    const reason = unsatisfiableReason(ctx.pools, job);
    if (reason) {
      throw new UnsatisfiableResourcesError(reason, {
        path: batch ? `jobs.${i}` : "",
        resources: job.resources,
      });
    }
  });
}

/** `job_` + ULID: sortable by creation time (API.md). */
export function newJobId(): string {
  return `job_${ulid()}`;
}

export async function submitJobs(ctx: SubmitContext, request: SubmitRequest): Promise<SubmitResult> {
  const { principal, jobs, idempotency } = request;
  checkRunnable(ctx, jobs, jobs.length > 1 || jobs[0]?.ref !== undefined);
  const resolved = resolveBatch(jobs);

  let plannedIds = request.ids ? [...request.ids] : jobs.map(() => newJobId());
  let record: IdempotencyRecord | undefined;
  const idem = new Idempotency(ctx.repo);
  if (idempotency) {
    const claim: Claim = await idem.claim(
      principal,
      idempotency.key,
      idempotency.requestHash,
      plannedIds,
      ctx.clock,
    );
    if (claim.kind === "replay") return replay(ctx, jobs, claim.jobIds);
    record = claim.record;
    plannedIds = [...record.jobIds];
  }

  try {
    // After the replay above: a replayed submission created its jobs already and is never refused.
    if (!request.exemptFromQueueLimit) await assertQueueRoom(ctx, principal, jobs.length);
    for (let round = 1; ; round++) {
      const plan = await planSubmission(ctx, principal, jobs, resolved, plannedIds);
      try {
        if (
          plan.transactionSize + (record ? 1 : 0) <= MAX_TRANSACTION_ITEMS &&
          plan.bytes <= MAX_TRANSACTION_BYTES
        ) {
          await writeInOneTransaction(ctx.repo, plan, record ? idem.completeItem(record) : undefined);
        } else {
          await writeStaged(ctx.repo, plan, record ? idem.completeItem(record) : undefined);
        }
      } catch (error) {
        // A dependency changed between our read and our write: read again and re-plan.
        if (error instanceof ConcurrentUpdateError && round < MAX_WRITE_ROUNDS) continue;
        throw error;
      }
      await ctx.repo.recordFirstDay(plan.createdAt.slice(0, 10));
      await ctx.events.publish(plan.jobs.map((job) => stateChange(null, job.item)));
      await startExecutions(
        ctx,
        plan.jobs.map((job) => job.item),
      );
      return {
        jobs: plan.jobs.map((j) => fromJobItem(j.item)),
        refs: refsOf(jobs, plannedIds),
        replayed: false,
      };
    }
  } catch (error) {
    // Nothing became visible: give the key back so a corrected retry is not refused.
    if (record) await idem.release(record).catch(() => undefined);
    throw error;
  }
}

/**
 * How long a client refused by maxQueuedJobs should wait. Room appears when a scheduling pass
 * admits one of the principal's jobs (or the principal cancels one); passes run on every job
 * event and at least every minute, so half a sweep is a fair first wait without inviting a
 * retry storm.
 */
export const QUEUE_LIMIT_RETRY_AFTER_SECONDS = 30;

/**
 * API.md's maxQueuedJobs: a principal's jobs that have not started (scheduled, blocked, queued,
 * retrying, paused) plus this submission may not exceed it. One GetItem of the quota item per
 * submission; the count runs only when there is a limit and stops at what the decision needs.
 * The count reads an index (eventually consistent), so two submissions racing at the limit may
 * both pass: the limit guards against runaway submitters, not against a one-job overshoot.
 */
async function assertQueueRoom(ctx: SubmitContext, principal: Principal, submitting: number): Promise<void> {
  if (!ctx.policies) return;
  const { maxQueuedJobs } = await ctx.policies.getQuota(principal.id);
  if (maxQueuedJobs === null) return;
  // Refused when waiting + submitting > max, i.e. waiting >= room; counting past room is waste.
  const room = maxQueuedJobs - submitting + 1;
  const waiting = room > 0 ? await countNotStarted(ctx, principal.id, room) : 0;
  if (room <= 0 || waiting >= room) {
    throw new TooManyRequestsError(
      room <= 0
        ? `this submission of ${submitting} jobs exceeds the maxQueuedJobs quota of ${maxQueuedJobs}`
        : `${waiting} or more jobs of ${principal.id} have not started; ${submitting} more would exceed the maxQueuedJobs quota of ${maxQueuedJobs}`,
      QUEUE_LIMIT_RETRY_AFTER_SECONDS,
    );
  }
}

/** Parallel StartExecution calls per submission: enough to hide latency, few enough not to be throttled. */
const START_CONCURRENCY = 16;

/** One lifecycle execution per job that can still run; a failure to start is repaired by the reconciler. */
async function startExecutions(ctx: SubmitContext, jobs: readonly JobItem[]): Promise<void> {
  const pending = jobs.filter((job) => !isTerminal(job.status));
  await forEachConcurrent(pending, START_CONCURRENCY, async (job) => {
    await ctx.executions.start(job.id, job.version);
  });
}

function refsOf(jobs: readonly BatchJobRequest[], ids: readonly string[]): Record<string, string> {
  const refs: Record<string, string> = {};
  jobs.forEach((job, i) => {
    const id = ids[i];
    if (job.ref !== undefined && id !== undefined) refs[job.ref] = id;
  });
  return refs;
}

async function replay(
  ctx: SubmitContext,
  jobs: readonly BatchJobRequest[],
  ids: readonly string[],
): Promise<SubmitResult> {
  const items = await ctx.repo.getJobItems(ids);
  const found = ids.map((id) => items.get(id)).filter((item): item is JobItem => item !== undefined);
  return { jobs: found.map((item) => fromJobItem(item)), refs: refsOf(jobs, ids), replayed: true };
}

interface PlannedJob {
  readonly item: JobItem;
  readonly transition: Record<string, unknown>;
  readonly edges: Record<string, unknown>[];
}

interface SubmissionPlan {
  readonly createdAt: string;
  readonly jobs: PlannedJob[];
  /** Existing dependencies as read, so the write can insist they have not changed since. */
  readonly externals: JobItem[];
  readonly transactionSize: number;
  /** Estimated size of all the items, to keep a transaction under DynamoDB's 4 MB. */
  readonly bytes: number;
}

/**
 * Reads the existing dependencies and builds every item of the submission. Each job's initial
 * status follows core's rule from the dependencies' statuses, batch parents included (a job
 * whose batch parent is cancelled at once is cancelled too).
 */
async function planSubmission(
  ctx: SubmitContext,
  principal: Principal,
  jobs: readonly BatchJobRequest[],
  resolved: ReturnType<typeof resolveBatch>,
  ids: readonly string[],
): Promise<SubmissionPlan> {
  const now = ctx.clock();
  const createdAt = now.toISOString();
  const externals = await loadVisibleDependencies(ctx.repo, principal, resolved.externalDeps);
  validateExternalDeps(resolved.externalDeps, externals.byRequestedId);

  const planned: (PlannedJob | undefined)[] = new Array(jobs.length);
  for (const index of resolved.order) {
    const request = jobs[index];
    const id = ids[index];
    const deps = resolved.jobs[index];
    if (!request || !id || !deps) throw new RangeError(`batch index ${index} out of range`);

    const dependencies: { id: string; status: JobStatus }[] = [];
    for (const parentIndex of deps.batchDeps) {
      const parent = planned[parentIndex];
      if (parent) dependencies.push({ id: parent.item.id, status: parent.item.status });
    }
    for (const requested of deps.externalDeps) {
      const parent = externals.byRequestedId.get(requested);
      if (parent) dependencies.push({ id: parent.id, status: parent.status });
    }
    const unique = [...new Map(dependencies.map((d) => [d.id, d])).values()];
    const tally = tallyDependencies(unique);
    const initial = initialStatus({ ...tally, now, runAt: request.runAt ?? null });

    const job: Job = {
      id,
      name: request.name ?? null,
      type: request.type,
      status: initial.status,
      statusReason: initial.reason,
      reasonCode: initial.code,
      priority: request.priority,
      owner: principal.id,
      payload: request.payload ?? null,
      result: null,
      error: null,
      resources: request.resources,
      pool: request.pool ?? null,
      constraints: request.constraints ?? {},
      dependsOn: unique.map((d) => d.id),
      retry: request.retry,
      timeoutSeconds: request.timeoutSeconds,
      attempts: 0,
      runAt: request.runAt ?? null,
      deadline: request.deadline ?? null,
      offPeakOnly: request.offPeakOnly,
      onFailure: request.onFailure ?? null,
      tags: request.tags ?? {},
      escalatedTo: null,
      scheduleId: null,
      createdAt,
      updatedAt: createdAt,
      startedAt: null,
      finishedAt: initial.status === "cancelled" ? createdAt : null,
      nextAttemptAt: null,
      version: 1,
    };
    const item = {
      ...toJobItem(job, tally.unmet, false),
      ...(initial.status === "queued" ? { queuedAt: createdAt } : {}),
    } as JobItem;
    const edges = unique.flatMap((d) => {
      const met = d.status === "completed";
      return [
        { pk: jobPk(id), sk: dependsOnSk(d.id), entity: "dependency", parentId: d.id, met },
        { pk: jobPk(d.id), sk: dependentSk(id), entity: "dependent", childId: id },
      ];
    });
    const transition = transitionItem(id, 1, {
      from: null,
      to: initial.status,
      at: createdAt,
      reason: initial.reason,
      triggeredBy: principal.id,
      attempt: 0,
    });
    planned[index] = { item, transition, edges };
  }

  const plannedJobs = planned.filter((p): p is PlannedJob => p !== undefined);
  const transactionSize = plannedJobs.reduce((n, p) => n + 2 + p.edges.length, 0) + externals.items.length;
  const bytes = plannedJobs.reduce(
    (n, p) => n + Buffer.byteLength(JSON.stringify([p.item, p.transition, p.edges]), "utf8"),
    0,
  );
  return { createdAt, jobs: plannedJobs, externals: externals.items, transactionSize, bytes };
}

/**
 * The existing dependencies the principal can see, keyed by the id asked for. An escalated job
 * stands for the job it escalated to (API.md: dependents wait on the new job instead).
 */
async function loadVisibleDependencies(
  repo: JobRepository,
  principal: Principal,
  requested: readonly string[],
): Promise<{ byRequestedId: Map<string, JobItem>; items: JobItem[] }> {
  const byRequestedId = new Map<string, JobItem>();
  const items = new Map<string, JobItem>();
  let pending = new Map(requested.map((id) => [id, id])); // requested id → id to read now
  for (let hops = 0; pending.size > 0 && hops < 10; hops++) {
    const read = await repo.getJobItems([...pending.values()]);
    const next = new Map<string, string>();
    for (const [asked, current] of pending) {
      const item = read.get(current);
      if (!item || item.staged || !canSee(principal, item)) continue;
      if (item.status === "escalated" && item.escalatedTo) {
        next.set(asked, item.escalatedTo);
        continue;
      }
      byRequestedId.set(asked, item);
      items.set(item.id, item);
    }
    pending = next;
  }
  return { byRequestedId, items: [...items.values()] };
}

/** Insists an existing dependency is exactly as read, so its status cannot change unseen. */
function unchanged(repo: JobRepository, parent: JobItem): TransactItem {
  return {
    ConditionCheck: {
      TableName: repo.tableName,
      Key: { pk: parent.pk, sk: JOB_SK },
      ConditionExpression: "#version = :version",
      ExpressionAttributeNames: { "#version": "version" },
      ExpressionAttributeValues: { ":version": parent.version },
    },
  };
}

async function writeInOneTransaction(
  repo: JobRepository,
  plan: SubmissionPlan,
  complete?: TransactItem,
): Promise<void> {
  const table = repo.tableName;
  const items: TransactItem[] = [];
  for (const job of plan.jobs) {
    items.push({
      Put: { TableName: table, Item: job.item, ConditionExpression: "attribute_not_exists(pk)" },
    });
    items.push({ Put: { TableName: table, Item: job.transition } });
    for (const edge of job.edges) items.push({ Put: { TableName: table, Item: edge } });
  }
  for (const parent of plan.externals) items.push(unchanged(repo, parent));
  if (complete) items.push(complete);
  await repo.transact(items);
}

/**
 * A submission too large for one transaction. Every item is first written staged: the job
 * items carry `staged` and a TTL and no index keys, so neither GET, lists nor the scheduler see
 * them. Then the jobs are committed — made visible — in transactions of up to 100. A job that
 * someone changed meanwhile (a cascade from a cancelled dependency) is committed as it now is.
 */
async function writeStaged(
  repo: JobRepository,
  plan: SubmissionPlan,
  complete?: TransactItem,
): Promise<void> {
  const expiresAt = Math.floor(Date.parse(plan.createdAt) / 1000) + STAGED_TTL_SECONDS;
  const staged = plan.jobs.map((job) => {
    const { ownerPk, ownerSk, ownerStatusPk, dayPk, queuePk, queueSk, duePk, dueSk, livePk, ...rest } =
      job.item;
    return { ...rest, staged: true, expiresAt } as JobItem;
  });
  try {
    await repo.batchPut([...staged, ...plan.jobs.flatMap((job) => [job.transition, ...job.edges])]);
    await commitStaged(
      repo,
      plan.jobs.map((job) => job.item.id),
      complete,
    );
  } catch (error) {
    await repo.batchDelete(plan.jobs.map((job) => ({ pk: job.item.pk, sk: JOB_SK }))).catch(() => undefined);
    throw error;
  }
}

/**
 * Makes staged jobs visible, resumable: it reads what is still staged and commits only that, so
 * running it again after a crash finishes the batch.
 */
export async function commitStaged(
  repo: JobRepository,
  ids: readonly string[],
  complete?: TransactItem,
): Promise<void> {
  const chunk = MAX_TRANSACTION_ITEMS - (complete ? 1 : 0);
  for (let round = 0; ; round++) {
    const items = await repo.getJobItems(ids);
    const stillStaged = ids
      .map((id) => items.get(id))
      .filter((item): item is JobItem => item?.staged === true);
    try {
      for (let i = 0; i < stillStaged.length; i += chunk) {
        const slice = stillStaged.slice(i, i + chunk);
        const writes = slice.map((item) => commitItem(repo, item));
        if (i + chunk >= stillStaged.length && complete) writes.push(complete);
        await repo.transact(writes);
      }
      if (stillStaged.length === 0 && complete) await repo.transact([complete]);
      return;
    } catch (error) {
      if (error instanceof ConcurrentUpdateError && round < MAX_WRITE_ROUNDS) continue;
      throw error;
    }
  }
}

function commitItem(repo: JobRepository, item: JobItem): TransactItem {
  const attrs = indexAttributes(item, false);
  const names: Record<string, string> = { "#version": "version" };
  const values: Record<string, unknown> = { ":version": item.version, ":true": true };
  const clauses = Object.entries(attrs).map(([name, value], i) => {
    names[`#k${i}`] = name;
    values[`:k${i}`] = value;
    return `#k${i} = :k${i}`;
  });
  return {
    Update: {
      TableName: repo.tableName,
      Key: { pk: item.pk, sk: JOB_SK },
      UpdateExpression: `SET ${clauses.join(", ")} REMOVE staged, expiresAt`,
      ConditionExpression: "#version = :version AND staged = :true",
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    },
  };
}
