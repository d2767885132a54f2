import { ulid } from "ulid";
import type { ArrayRequest } from "../core/arrays";
import { forEachConcurrent } from "../core/concurrency";
import {
  applicableStatus,
  dependencyOutcome,
  initialStatus,
  resolveBatch,
  tallyDependencies,
  validateExternalDeps,
} from "../core/dependencies";
import {
  ConcurrentUpdateError,
  type FieldProblem,
  PayloadTooLargeError,
  QueueLimitError,
  SubmitTimeoutError,
  TooManyRequestsError,
  UnknownTypeError,
  UnsatisfiableResourcesError,
} from "../core/errors";
import {
  type BatchJobRequest,
  type Job,
  type JobStatus,
  MAX_PAYLOAD_BYTES,
  type ResolvedJobRequest,
} from "../core/job";
import { unsatisfiableReason } from "../core/pools";
import type { Principal } from "../core/principal";
import { assertProjectPriorityAllowed, jobProject, projectQuotaKey } from "../core/projects";
import { assertPriorityAllowed, NO_QUOTA, type QuotaLimits } from "../core/quota";
import { jobExpiresAt } from "../core/retention";
import { type JobSettings, resolveJobSettings, typeRulesOf } from "../core/type-rules";
import { fromJobItem, indexAttributes, type JobItem, toJobItem, transitionItem } from "../store/job-items";
import {
  applicableChange,
  type JobRepository,
  MAX_TRANSACTION_ITEMS,
  WriteStoppedError,
} from "../store/job-repository";
import { dependentSk, dependsOnSk, jobPk } from "../store/keys";
import { commitStagedJobs, createJobs, deleteStagedJob } from "../store/submissions";
import { arraySubmissionIds, planArraySubmission } from "./arrays";
import { stateChange } from "./events";
import { ClaimLostError, type ClaimPart, Idempotency, type IdempotencyRecord } from "./idempotency";
import { logger } from "./logger";
import { metricPool, recordMetrics } from "./metrics";
import { countNotStarted } from "./quota-usage";
import type { AppContext } from "./runtime";
import { canSee } from "./visibility";

/**
 * Submitting jobs: one job (POST /jobs) is a batch of one (POST /jobs/batch), so both share
 * one path. A submission is all-or-nothing as the user sees it: it fits one DynamoDB
 * transaction in the common case; a larger one is written invisible ("staged") first and then
 * made visible, which a retry with the same Idempotency-Key can finish after a crash.
 *
 * Every submission runs against a time budget (the API function's timeout): before its commit
 * point it either has the time to commit or it rolls back and answers a 429, never a 500 for
 * jobs that exist, nor jobs for a 500.
 */

export type SubmitContext = Pick<
  AppContext,
  "repo" | "pools" | "taskTypes" | "clock" | "executions" | "events"
> &
  // Without it no quota is read and maxQueuedJobs is not enforced (contexts built for tests),
  // nor are the policy's per-type defaults applied (policy.types; defaultPolicy's while none is stored).
  Partial<Pick<AppContext, "policies" | "defaultPolicy">>;

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
   * Not held to the principal's maxPriority: an escalation job takes the priority its job's
   * onFailure names, which was checked when that job was submitted.
   * @default false
   */
  readonly exemptFromMaxPriority?: boolean;
  /**
   * The schedule whose fire this is (app/schedules.ts): set on every job, indexed for GET
   * /jobs?scheduleId=. Only the system sets it; POST /jobs's schema has no such field.
   * @default null
   */
  readonly scheduleId?: string;
  /**
   * Where a setting left out by the job and by its type's rules comes from: an escalation job
   * inherits its failed job's retry and timeoutSeconds (core/type-rules.ts).
   * @default BUILT_IN_SETTINGS
   */
  readonly fallback?: JobSettings;
  /**
   * An escalation job (app/escalation.ts): its type's onFailure and onTimeout rules do not apply,
   * so escalations never chain (two types escalating to each other would loop for ever).
   * @default false
   */
  readonly escalation?: boolean;
  /**
   * The time this request may still take: an API handler passes `lambdaBudget(context)`.
   * @default no limit (a lifecycle step's escalation, a test)
   */
  readonly budget?: SubmitBudget | undefined;
  /**
   * An array job (POST /jobs with `array`, app/arrays.ts): `jobs` holds its one definition; the
   * parent and its children are written as one staged submission. The claim of an
   * Idempotency-Key holds the parent's id alone; the children's ids derive from it.
   * @default none
   */
  readonly array?: ArrayRequest | undefined;
}

/** Real time left to a request: a Lambda is stopped by the wall clock, never by ctx.clock. */
export interface SubmitBudget {
  remainingMs(): number;
}

/**
 * Time kept back for the commit point: one transaction, or for a large batch one transaction,
 * the rest in parallel, and the claim's completion. Short of it, a submission rolls back instead.
 */
export const COMMIT_RESERVE_MS = 2_000;
/** Time the answer itself needs after the last write, taken off what the Lambda context says is left. */
export const ANSWER_MARGIN_MS = 1_000;
/** Retry-After of a submission that ran out of time: long enough for a burst to drain. */
const TIMEOUT_RETRY_AFTER_SECONDS = 2;

const UNLIMITED: SubmitBudget = { remainingMs: () => Number.POSITIVE_INFINITY };

/**
 * What a Lambda invocation has left, less the answer's margin: 10 s in AWS (the API function's
 * timeout, lib/job-api.ts), 29 s locally (the local front's context says API Gateway's limit). A
 * context without the method (a test's stand-in) sets no limit.
 */
export function lambdaBudget(context: { getRemainingTimeInMillis?: () => number } | undefined): SubmitBudget {
  const remaining = context?.getRemainingTimeInMillis?.bind(context);
  return remaining ? { remainingMs: () => remaining() - ANSWER_MARGIN_MS } : UNLIMITED;
}

/** Refuses to pass a commit point (or start writing) without the time to finish it. */
function requireTime(budget: SubmitBudget, stage: string): void {
  const left = budget.remainingMs();
  if (left < COMMIT_RESERVE_MS) {
    throw new SubmitTimeoutError(
      `the submission could not be written in time (${Math.max(0, Math.round(left))} ms left ${stage}); nothing was created`,
      TIMEOUT_RETRY_AFTER_SECONDS,
    );
  }
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
export function checkRunnable(ctx: SubmitContext, jobs: readonly BatchJobRequest[], batch: boolean): void {
  jobs.forEach((job, i) => {
    for (const type of [job.type, job.onFailure?.escalateTo.type, job.onTimeout?.escalateTo.type]) {
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

/**
 * Each job's retry, timeoutSeconds, onFailure and onTimeout: the caller's, else its type's rule
 * in the policy in force (policy.types, read through the repository's short-lived copy so a
 * submission costs no read of its own), else the fallback. Fixed from here on: stored with the job.
 */
async function withTypeDefaults(
  ctx: SubmitContext,
  jobs: readonly BatchJobRequest[],
  fallback: JobSettings | undefined,
  escalation: boolean,
): Promise<ResolvedJobRequest[]> {
  const policy =
    ctx.policies && ctx.defaultPolicy ? await ctx.policies.recentPolicy(ctx.defaultPolicy) : null;
  return jobs.map((job) => {
    const rules = policy ? typeRulesOf(policy.types, job.type) : undefined;
    const applied = rules && escalation ? { ...rules, onFailure: undefined, onTimeout: undefined } : rules;
    return resolveJobSettings(job, applied, fallback);
  });
}

/** `job_` + ULID: sortable by creation time (API.md). */
function newJobId(): string {
  return `job_${ulid()}`;
}

export async function submitJobs(ctx: SubmitContext, request: SubmitRequest): Promise<SubmitResult> {
  const { principal, idempotency } = request;
  const budget = request.budget ?? UNLIMITED;
  checkRunnable(ctx, request.jobs, request.jobs.length > 1 || request.jobs[0]?.ref !== undefined);
  const jobs = await withTypeDefaults(ctx, request.jobs, request.fallback, request.escalation === true);
  // Before any write or claim: a bound token naming another project is a 403 (core/projects.ts).
  const projects = [...new Set(jobs.map((job) => jobProject(principal, job.project)))].filter(
    (p): p is string => p !== null,
  );
  const resolved = resolveBatch(jobs);

  let ids = newIds(jobs.length);
  // Every id the submission writes: an array's parent and children from the parent's id alone.
  const { array } = request;
  const allIds = (planned: readonly string[]): string[] =>
    array && planned[0] ? arraySubmissionIds(planned[0], array) : [...planned];
  // The answer: an array submission answers its parent.
  const answered = (items: readonly JobItem[]): Job[] =>
    (array ? items.slice(0, 1) : items).map((item) => fromJobItem(item));
  let claim: ClaimFence | undefined;
  if (idempotency) {
    const idem = new Idempotency(ctx.repo);
    const claimed = await idem.claim(principal, idempotency.key, idempotency.requestHash, ids, ctx.clock);
    if (claimed.kind === "replay") return replay(ctx, jobs, claimed.jobIds);
    claim = { idem, record: claimed.record };
    ids = [...claimed.record.jobIds];
    if (claimed.kind === "resume") {
      // A dead owner's commit: its ids are final and partly visible; finish, never start over.
      try {
        const items = await commitStaged(ctx.repo, allIds(ids), { ...claim, opened: true });
        await afterCommit(ctx, items, budget);
        return { jobs: answered(items), refs: refsOf(jobs, ids), replayed: false };
      } catch (error) {
        if (error instanceof ClaimLostError) return answerFromClaim(ctx, claim, jobs);
        throw error;
      }
    }
  }

  try {
    // After the replay above: a replayed submission created its jobs already and is never refused.
    if (!request.exemptFromQueueLimit || !request.exemptFromMaxPriority) {
      const limits = await quotaLimits(ctx, principal);
      if (!request.exemptFromMaxPriority) {
        for (const job of jobs) assertPriorityAllowed(limits, principal, job.priority);
      }
      if (!request.exemptFromQueueLimit)
        await assertQueueRoom(ctx, principal, array ? array.size + 1 : jobs.length, limits);
    }
    if (!request.exemptFromMaxPriority && projects.length > 0)
      await assertProjectPriorities(ctx, principal, jobs);
    const written = await writeSubmission(ctx, {
      scheduleId: request.scheduleId ?? null,
      principal,
      jobs,
      resolved,
      ids,
      budget,
      claim,
      array,
    });
    await afterCommit(ctx, written.items, budget);
    return {
      jobs: answered(written.items),
      refs: refsOf(jobs, written.ids),
      replayed: false,
    };
  } catch (error) {
    // Another request owns the key now: answer what the key stands for, never our own jobs.
    if (claim && error instanceof ClaimLostError) return answerFromClaim(ctx, claim, jobs);
    // Nothing became visible: give the key back so a retry is not refused. (A no-op once the
    // claim is committing or not ours.)
    if (claim) await claim.idem.release(claim.record).catch(() => undefined);
    throw error;
  }
}

/** A claim this request holds, and the means to fence its writes with it. */
interface ClaimFence {
  readonly idem: Idempotency;
  record: IdempotencyRecord;
}

function newIds(count: number): string[] {
  return Array.from({ length: count }, () => newJobId());
}

/** After losing the claim: the key's jobs if they exist, else "in progress" (the new owner's). */
async function answerFromClaim(
  ctx: SubmitContext,
  claim: ClaimFence,
  jobs: readonly BatchJobRequest[],
): Promise<SubmitResult> {
  const now = await claim.idem.current(claim.record);
  if (now?.state === "complete") return replay(ctx, jobs, now.jobIds);
  throw new TooManyRequestsError("a request with this Idempotency-Key is still in progress", 1);
}

interface WriteInput {
  readonly scheduleId: string | null;
  readonly principal: Principal;
  readonly jobs: readonly ResolvedJobRequest[];
  readonly resolved: ReturnType<typeof resolveBatch>;
  readonly ids: readonly string[];
  readonly budget: SubmitBudget;
  readonly claim: ClaimFence | undefined;
  readonly array?: ArrayRequest | undefined;
}

/**
 * Plans and writes the submission; returns the jobs as committed. A dependency that changed
 * under a one-transaction write is re-read and re-planned; one that changed under a staged write
 * is too, with fresh ids after rolling back the staged items (so no item is written twice).
 */
async function writeSubmission(
  ctx: SubmitContext,
  input: WriteInput,
): Promise<{ items: JobItem[]; ids: readonly string[] }> {
  const { principal, jobs, resolved, budget, claim } = input;
  let ids = input.ids;
  for (let round = 1; ; round++) {
    requireTime(budget, "before writing");
    const [arrayJob] = jobs;
    const plan =
      input.array && arrayJob
        ? await planArraySubmission(
            ctx,
            principal,
            arrayJob,
            input.array,
            arraySubmissionIds(ids[0] ?? "", input.array),
            input.scheduleId,
          )
        : await planSubmission(ctx, principal, jobs, resolved, ids, input.scheduleId);
    if (
      plan.transactionSize + (claim ? 1 : 0) <= MAX_TRANSACTION_ITEMS &&
      plan.bytes <= MAX_TRANSACTION_BYTES
    ) {
      requireTime(budget, "before the commit");
      const written = await writeInOneTransaction(
        ctx.repo,
        plan,
        claim ? claim.idem.moveItem(claim.record, "pending", "complete") : undefined,
      );
      if (written.ok) return { items: plan.jobs.map((job) => job.item), ids };
      if (written.reason === "claim_lost") throw new ClaimLostError({ cause: written.error });
      // A dependency changed between our read and our write: read again and re-plan.
      if (round < MAX_WRITE_ROUNDS) continue;
      throw written.error;
    }

    // Staging stops while a rollback still fits: deleting takes about as long as writing did.
    const started = performance.now();
    const stop = () => budget.remainingMs() < performance.now() - started + COMMIT_RESERVE_MS;
    let opened = false;
    let rolledBack = false;
    const rollBack = async (release: boolean): Promise<void> => {
      rolledBack = true;
      // The key first: a retry may claim it at once (its fresh ids never meet ours).
      if (claim && release) await claim.idem.release(claim.record).catch(() => undefined);
      await withinBudget(unstage(ctx.repo, plan), budget);
    };
    try {
      try {
        await stage(ctx.repo, plan, stop);
      } catch (error) {
        if (!(error instanceof WriteStoppedError)) throw error;
        throw new SubmitTimeoutError(
          `the submission could not be written in time (${plan.jobs.length} jobs staged in ${Math.round(performance.now() - started)} ms); nothing was created`,
          TIMEOUT_RETRY_AFTER_SECONDS,
          { cause: error },
        );
      }
      if (!(await settleDependencies(ctx, plan))) {
        await rollBack(false);
        if (round >= MAX_WRITE_ROUNDS) {
          throw new TooManyRequestsError(
            "the dependencies kept changing while the jobs were written; retry",
            1,
          );
        }
        ids = newIds(jobs.length);
        if (claim) claim.record = await claim.idem.reassign(claim.record, ids);
        continue;
      }
      requireTime(budget, "before the commit");
      const items = await commitStaged(
        ctx.repo,
        plan.jobs.map((job) => job.item.id),
        claim,
        () => {
          opened = true;
        },
      );
      return { items, ids };
    } catch (error) {
      // Before the commit point our staged items are ours alone (fresh ids): remove them. Past
      // it, they are the claim's jobs, which whoever owns the claim now finishes.
      const committed = opened && !(error instanceof ClaimLostError && !error.afterCommitPoint);
      if (!committed && !rolledBack) await rollBack(true);
      throw error;
    }
  }
}

/**
 * Waits for `work` while the budget lasts, then goes on without it: a rollback that cannot finish
 * in time leaves staged items, which nothing reads and DynamoDB's TTL collects (job items) or
 * nothing reaches (their edges point at jobs that never became visible).
 */
async function withinBudget(work: Promise<void>, budget: SubmitBudget): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const left = budget.remainingMs();
  const timeout = new Promise<void>((resolve) => {
    if (Number.isFinite(left)) timer = setTimeout(resolve, Math.max(0, left));
  });
  try {
    await Promise.race([
      work.catch((error: unknown) =>
        logger.warn("rollback of staged jobs failed", { error: error as Error }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What follows the commit: nothing here may fail the request, whose jobs exist now. Events are a
 * wake-up (the scheduler's sweep finds every job); an execution that is not started in time is
 * started by the reconciler.
 */
async function afterCommit(
  ctx: SubmitContext,
  items: readonly JobItem[],
  _budget: SubmitBudget,
): Promise<void> {
  countSubmitted(items);
  const first = items[0];
  try {
    if (first) await ctx.repo.recordFirstDay(first.createdAt.slice(0, 10));
    await ctx.events.publish(items.map((item) => stateChange(null, item)));
  } catch (error) {
    logger.error("jobs created, but their events were not published", { error: error as Error });
  }
}

/** JobsSubmitted, one line per pool the jobs named. */
function countSubmitted(items: readonly JobItem[]): void {
  const byPool = new Map<string, number>();
  for (const item of items) byPool.set(metricPool(item), (byPool.get(metricPool(item)) ?? 0) + 1);
  for (const [pool, count] of byPool) recordMetrics({ pool }, { jobsSubmitted: count });
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
async function assertQueueRoom(
  ctx: SubmitContext,
  principal: Principal,
  submitting: number,
  limits: QuotaLimits,
): Promise<void> {
  const { maxQueuedJobs } = limits;
  if (maxQueuedJobs === null) return;
  // Refused when waiting + submitting > max, i.e. waiting >= room; counting past room is waste.
  const room = maxQueuedJobs - submitting + 1;
  const waiting = room > 0 ? await countNotStarted(ctx, principal.id, room) : 0;
  if (room <= 0 || waiting >= room) {
    throw new QueueLimitError(
      room <= 0
        ? `this submission of ${submitting} jobs exceeds the maxQueuedJobs quota of ${maxQueuedJobs}`
        : `${waiting} or more jobs of ${principal.id} have not started; ${submitting} more would exceed the maxQueuedJobs quota of ${maxQueuedJobs}`,
      QUEUE_LIMIT_RETRY_AFTER_SECONDS,
    );
  }
}

/**
 * The principal's quota limits, shared by maxQueuedJobs and maxPriority: the process's copy, at
 * most 5 s old (PolicyRepository#recentQuota), so a burst of submissions reads them once. Admins
 * are held to maxQueuedJobs but not to maxPriority.
 */
async function quotaLimits(ctx: SubmitContext, principal: Principal): Promise<QuotaLimits> {
  return ctx.policies ? ctx.policies.recentQuota(principal.id) : NO_QUOTA;
}

/**
 * A project quota's maxPriority holds too (issue 13): one BatchGetItem of the projects' quota
 * items, only for a submission whose jobs have a project; admins are not held to it, as with a
 * principal's.
 */
async function assertProjectPriorities(
  ctx: SubmitContext,
  principal: Principal,
  jobs: readonly BatchJobRequest[],
): Promise<void> {
  if (principal.admin || !ctx.policies) return;
  const named = jobs.map((job) => ({ job, project: jobProject(principal, job.project) }));
  const keys = [
    ...new Set(named.flatMap(({ project }) => (project === null ? [] : [projectQuotaKey(project)]))),
  ];
  const quotas = await ctx.policies.getQuotas(keys);
  for (const { job, project } of named) {
    const limits = project === null ? undefined : quotas.get(projectQuotaKey(project));
    if (project !== null && limits) assertProjectPriorityAllowed(limits, project, job.priority);
  }
}

/** Parallel StartExecution calls per submission: enough to hide latency, few enough not to be throttled. */
const _START_CONCURRENCY = 16;

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

export interface PlannedJob {
  readonly item: JobItem;
  readonly transition: Record<string, unknown>;
  readonly edges: Record<string, unknown>[];
}

export interface SubmissionPlan {
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
export async function planSubmission(
  ctx: SubmitContext,
  principal: Principal,
  jobs: readonly ResolvedJobRequest[],
  resolved: ReturnType<typeof resolveBatch>,
  ids: readonly string[],
  scheduleId: string | null = null,
): Promise<SubmissionPlan> {
  const now = ctx.clock();
  const createdAt = now.toISOString();
  const externals = await loadVisibleDependencies(ctx.repo, principal, resolved.externalDeps);
  validateExternalDeps(resolved.externalDeps, externals.byRequestedId);

  const planned: (PlannedJob | undefined)[] = new Array(jobs.length);
  // Jobs of this batch that others of it wait on: the rest are created marked as having no dependents.
  const waitedOn = new Set<number>();
  for (const index of resolved.order) {
    const request = jobs[index];
    const id = ids[index];
    const deps = resolved.jobs[index];
    if (!request || !id || !deps) throw new RangeError(`batch index ${index} out of range`);

    const dependencies: { id: string; status: JobStatus }[] = [];
    for (const parentIndex of deps.batchDeps) {
      waitedOn.add(parentIndex);
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
      onTimeout: request.onTimeout ?? null,
      tags: request.tags ?? {},
      escalatedTo: null,
      scheduleId,
      project: jobProject(principal, request.project),
      createdAt,
      updatedAt: createdAt,
      startedAt: null,
      finishedAt: initial.status === "cancelled" ? createdAt : null,
      nextAttemptAt: null,
      version: 1,
    };
    // Cancelled at birth (a dependency already failed): ended, so retention applies at once.
    const ended = initial.status === "cancelled";
    const jobExpiry = ended ? jobExpiresAt(ctx.repo.retention, createdAt) : null;
    const item = {
      ...toJobItem(job, tally.unmet, false),
      ...(initial.status === "queued" ? { queuedAt: createdAt } : {}),
      ...(jobExpiry === null ? {} : { expiresAt: jobExpiry }),
    } as JobItem;
    const edges = unique.flatMap((d) => {
      const met = d.status === "completed";
      return [
        { pk: jobPk(id), sk: dependsOnSk(d.id), entity: "dependency", parentId: d.id, met },
        { pk: jobPk(d.id), sk: dependentSk(id), entity: "dependent", childId: id },
      ];
    });
    const transition = transitionItem(
      id,
      1,
      {
        from: null,
        to: initial.status,
        at: createdAt,
        reason: initial.reason,
        triggeredBy: principal.id,
        attempt: 0,
      },
      ctx.repo.historyExpiresAt(createdAt, ended),
    );
    planned[index] = { item, transition, edges };
  }

  const plannedJobs = planned
    .map((p, index) =>
      p && !waitedOn.has(index) ? { ...p, item: { ...p.item, noDependents: true as const } } : p,
    )
    .filter((p): p is PlannedJob => p !== undefined);
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

/**
 * The submission's one-transaction write (store/submissions.ts#createJobs): its jobs, insisting
 * the existing dependencies are as read, with the claim's move when there is one.
 */
function writeInOneTransaction(
  repo: JobRepository,
  plan: SubmissionPlan,
  complete?: ClaimPart,
): ReturnType<typeof createJobs> {
  return createJobs(repo, plan.jobs, plan.externals, complete);
}

/** Parallel transactions when committing a large batch or marking dependencies met. */
const COMMIT_CONCURRENCY = 8;
/** Conditional deletes in flight when a staged submission is rolled back. */
const UNSTAGE_CONCURRENCY = 16;

/**
 * A submission too large for one transaction, first written invisible: the job items carry
 * `staged` and a TTL and no index keys, so neither GET, lists nor the scheduler see them. The
 * ids are this attempt's alone (a retry or a takeover uses fresh ones), so plain batch writes
 * cannot overwrite anyone else's items.
 */
async function stage(repo: JobRepository, plan: SubmissionPlan, stop: () => boolean): Promise<void> {
  const expiresAt = Math.floor(Date.parse(plan.createdAt) / 1000) + STAGED_TTL_SECONDS;
  const staged = plan.jobs.map((job) => {
    const { ownerPk, ownerSk, ownerStatusPk, dayPk, queuePk, queueSk, duePk, dueSk, ...rest } = job.item;
    return { ...rest, staged: true, expiresAt } as JobItem;
  });
  await repo.batchPut([...staged, ...plan.jobs.flatMap((job) => [job.transition, ...job.edges])], stop);
}

/**
 * Removes what `stage` wrote. A job item only while still staged: a committed job is never
 * deleted, whoever committed it.
 */
async function unstage(repo: JobRepository, plan: SubmissionPlan): Promise<void> {
  await Promise.all([
    forEachConcurrent(plan.jobs, UNSTAGE_CONCURRENCY, async (job) => {
      await deleteStagedJob(repo, job.item);
    }),
    repo.batchDelete(
      plan.jobs
        .flatMap((job) => [job.transition, ...job.edges])
        .map((item) => ({ pk: item.pk, sk: item.sk })),
    ),
  ]);
}

type Outcome = ReturnType<typeof dependencyOutcome> | "escalated";

function outcomeOf(item: JobItem): Outcome {
  return item.status === "escalated" ? "escalated" : dependencyOutcome(item.status);
}

/**
 * The staged write's stand-in for the one-transaction write's ConditionChecks: with every edge
 * written, the existing dependencies are read again. A change after this read reaches our jobs
 * through the edges (the lifecycle walks them, staged jobs included); a change between the plan's
 * read and now may not have. A dependency that completed meanwhile is marked met here, exactly
 * as the lifecycle would (the edge's `met` flag makes the two agree on one decrement), and a job
 * left with nothing unmet moves on from `blocked`. Any other change (failed, cancelled,
 * escalated, retried) returns false: the caller rolls back and plans again.
 */
async function settleDependencies(ctx: SubmitContext, plan: SubmissionPlan): Promise<boolean> {
  if (plan.externals.length === 0) return true;
  const now = await ctx.repo.getJobItems(plan.externals.map((parent) => parent.id));
  const completed = new Set<string>();
  for (const before of plan.externals) {
    const after = now.get(before.id);
    if (!after || after.staged) return false;
    if (after.version === before.version) continue;
    const was = outcomeOf(before);
    const is = outcomeOf(after);
    if (was === is) continue;
    if (was === "unmet" && is === "met") completed.add(before.id);
    else return false;
  }
  if (completed.size === 0) return true;

  const edges = plan.jobs.flatMap((job) =>
    job.edges
      .filter((edge) => edge.entity === "dependency" && completed.has(String(edge.parentId)))
      .map((edge) => ({ childId: job.item.id, parentId: String(edge.parentId) })),
  );
  await forEachConcurrent(edges, COMMIT_CONCURRENCY, (edge) => markMet(ctx, edge.childId, edge.parentId));
  await settleUnblocked(ctx, [...new Set(edges.map((edge) => edge.childId))]);
  return true;
}

/** The lifecycle's decrement for one edge, conditional the same way so only one of us counts it. */
async function markMet(ctx: SubmitContext, childId: string, parentId: string): Promise<void> {
  for (let round = 1; ; round++) {
    try {
      // Not ok: already met (the lifecycle counted it first) or nothing left to count.
      await ctx.repo.markDependencyMet(parentId, childId, ctx.clock().toISOString());
      return;
    } catch (error) {
      // A conflict with another transaction on the same items: try again.
      if (!(error instanceof ConcurrentUpdateError) || round >= MAX_WRITE_ROUNDS) throw error;
    }
  }
}

/** Staged jobs left blocked with nothing unmet take the status that now applies, still staged. */
async function settleUnblocked(ctx: SubmitContext, ids: readonly string[]): Promise<void> {
  for (let round = 1; ; round++) {
    const items = await ctx.repo.getJobItems(ids);
    const settled = [...items.values()].filter((item) => item.status === "blocked" && item.unmet <= 0);
    try {
      await forEachConcurrent(settled, COMMIT_CONCURRENCY, async (item) => {
        const now = ctx.clock();
        const at = now.toISOString();
        const applies = applicableStatus({ now, runAt: item.runAt, unmet: 0, total: 0, doomedBy: null });
        await ctx.repo.changeStatus(item, applicableChange(applies, at, null), at);
      });
      return;
    } catch (error) {
      // The lifecycle settled one first: read again.
      if (!(error instanceof ConcurrentUpdateError) || round >= MAX_WRITE_ROUNDS) throw error;
    }
  }
}

/** How the commit is fenced by an Idempotency-Key's claim. */
interface CommitFence extends ClaimFence {
  /** The claim is `committing` already (a takeover finishing a dead owner's commit). */
  readonly opened?: boolean;
}

/**
 * Makes staged jobs visible, resumable: it reads what is still staged and commits only that, so
 * running it again after a crash finishes the batch. With a claim, the first transaction moves it
 * to `committing` (or straight to `complete` when one transaction holds every job): that is the
 * commit point. The other transactions then run in parallel, each checking the claim is still
 * ours, and the claim is completed last. `onCommit` is called before the first commit is sent:
 * from then on the staged items may be visible jobs. Returns the jobs as committed.
 */
export async function commitStaged(
  repo: JobRepository,
  ids: readonly string[],
  fence?: CommitFence,
  onCommit?: () => void,
): Promise<JobItem[]> {
  const chunk = MAX_TRANSACTION_ITEMS - (fence ? 1 : 0);
  let opened = fence?.opened === true;
  for (let round = 0; ; round++) {
    const items = await repo.getJobItems(ids);
    const stillStaged = ids
      .map((id) => items.get(id))
      .filter((item): item is JobItem => item?.staged === true);
    const chunks: JobItem[][] = [];
    for (let i = 0; i < stillStaged.length; i += chunk) chunks.push(stillStaged.slice(i, i + chunk));
    onCommit?.();
    if (fence && !opened) {
      const first = chunks.shift() ?? [];
      const single = chunks.length === 0;
      const claim = fence.idem.moveItem(fence.record, "pending", single ? "complete" : "committing");
      const written = await commitStagedJobs(repo, first, claim);
      if (!written.ok) {
        // Cancelled as a whole: nothing of ours is visible.
        if (written.reason === "claim_lost") {
          throw new ClaimLostError({ cause: written.error, afterCommitPoint: false });
        }
        // A job changed while staged (a cascade reached it): read again, commit it as it is.
        if (round < MAX_WRITE_ROUNDS) continue;
        throw written.error;
      }
      opened = true;
      if (single) return committed(ids, items);
    }
    const check = fence ? fence.idem.checkItem(fence.record, "committing") : undefined;
    try {
      await forEachConcurrent(chunks, COMMIT_CONCURRENCY, async (slice) => {
        const written = await commitStagedJobs(repo, slice, check);
        if (written.ok) return;
        // Another request finishes this commit now (it took the claim over).
        if (written.reason === "claim_lost") {
          throw new ClaimLostError({ cause: written.error, afterCommitPoint: true });
        }
        throw written.error;
      });
      if (fence) await fence.idem.move(fence.record, "committing", "complete");
      return committed(ids, items);
    } catch (error) {
      if (error instanceof ClaimLostError) {
        throw error.afterCommitPoint ? error : new ClaimLostError({ cause: error, afterCommitPoint: true });
      }
      if (!(error instanceof ConcurrentUpdateError)) throw error;
      if (round < MAX_WRITE_ROUNDS) continue;
      throw error;
    }
  }
}

/** The jobs as the commit leaves them: as read, visible. */
function committed(ids: readonly string[], items: ReadonlyMap<string, JobItem>): JobItem[] {
  return ids
    .map((id) => items.get(id))
    .filter((item): item is JobItem => item !== undefined)
    .map((item) => {
      const { staged: _staged, expiresAt: _expiresAt, ...rest } = item;
      return { ...rest, ...indexAttributes(item, false) } as JobItem;
    });
}
