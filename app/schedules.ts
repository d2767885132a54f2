import { ulid } from "ulid";
import { z } from "zod";
import type { AuditAction } from "../core/audit";
import {
  ConcurrentUpdateError,
  ForbiddenError,
  JobqError,
  NotFoundError,
  QueueLimitError,
  TooManyRequestsError,
} from "../core/errors";
import type { Job } from "../core/job";
import type { Principal } from "../core/principal";
import { jobProject } from "../core/projects";
import {
  type CreateScheduleRequest,
  dueFire,
  fireIdempotencyKey,
  jitteredDueAt,
  jobTemplateSchema,
  type ListSchedulesQuery,
  nextFireTime,
  overlapSkipReason,
  SCHEDULE_ID_PATTERN,
  type Schedule,
  type ScheduleFire,
  type UpdateScheduleRequest,
  upcomingRuns,
  withFire,
} from "../core/schedule";
import { fieldProblems } from "../core/validation";
import { decodeCursor, encodeCursor, invalidCursor } from "../store/cursor";
import { createDocumentClient } from "../store/dynamo";
import { ScheduleRepository, scheduleSettings } from "../store/schedules";
import { config } from "./config";
import { Idempotency, requestHash } from "./idempotency";
import { logger } from "./logger";
import { appContext } from "./runtime";
import { checkRunnable, type SubmitContext, submitJobs } from "./submit";

/**
 * Recurring schedules (API.md "Schedules", docs/schedules.md): the routes' use cases and the
 * fires. A fire submits the schedule's job through the same submit use case as POST /jobs, as the
 * schedule's owner, with an Idempotency-Key made of the schedule id and the fire's cron time, so
 * two passes racing for one fire, or a pass replayed after a crash, create one job. Then the
 * schedule is advanced with a write conditional on the version read: the first pass to record
 * the fire wins, the other finds it recorded.
 */

export type ScheduleContext = SubmitContext & { readonly schedules: ScheduleRepository };

let cached: ScheduleContext | undefined;

/** The process's context: the app's, plus the schedules in the Policy table. */
export function scheduleContext(): ScheduleContext {
  if (!cached) {
    const c = config();
    cached = {
      ...appContext(),
      schedules: new ScheduleRepository(
        createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint }),
        c.policyTable,
      ),
    };
  }
  return cached;
}

/** GET's view: the schedule and its next NEXT_RUNS_SHOWN fire times. */
export interface ScheduleView extends Schedule {
  readonly nextRuns: readonly string[];
}

export function scheduleView(schedule: Schedule): ScheduleView {
  const { lastFires, lastJobId, createdAt, updatedAt, version, ...head } = schedule;
  return { ...head, nextRuns: upcomingRuns(schedule), lastFires, lastJobId, createdAt, updatedAt, version };
}

/** Writes retried after losing a race with another writer of the same schedule. */
const MAX_WRITE_ROUNDS = 5;

/**
 * The job template as the submit path takes it, and the refusals that need no I/O (an unknown
 * type, resources no pool could hold): at create and PATCH, a 400 then, never at fire time.
 */
function checkTemplate(ctx: ScheduleContext, template: Record<string, unknown>): void {
  const parsed = jobTemplateSchema.parse(template);
  checkRunnable(ctx, [parsed], false);
}

/**
 * The template as a project-bound token may store it (issue 13): its project stamped on, another
 * project refused (403). A fire submits as the owner alone, unbound, so the binding must be in
 * the template by then. Unbound callers' templates are stored as sent.
 */
function boundTemplate(principal: Principal, template: Record<string, unknown>): Record<string, unknown> {
  const project = jobProject(principal, jobTemplateSchema.parse(template).project);
  return project === null || template.project === project ? template : { ...template, project };
}

/** Another principal's schedule is a 404 exactly like a missing one (as for jobs). */
async function loadVisible(ctx: ScheduleContext, principal: Principal, id: string): Promise<Schedule> {
  const schedule = SCHEDULE_ID_PATTERN.test(id) ? await ctx.schedules.get(id) : undefined;
  if (!schedule || !(principal.admin || schedule.owner === principal.id)) {
    throw new NotFoundError(`schedule ${id} not found`);
  }
  return schedule;
}

function firstRunAfter(schedule: Pick<Schedule, "cron" | "timezone" | "enabled">, now: Date): string | null {
  if (!schedule.enabled) return null;
  return nextFireTime(schedule.cron, schedule.timezone, now)?.toISOString() ?? null;
}

/** POST /schedules */
export async function createSchedule(
  ctx: ScheduleContext,
  principal: Principal,
  request: CreateScheduleRequest,
): Promise<ScheduleView> {
  checkTemplate(ctx, request.job);
  const now = ctx.clock();
  const at = now.toISOString();
  const schedule: Schedule = {
    id: `sch_${ulid()}`,
    name: request.name,
    owner: principal.id,
    cron: request.cron,
    timezone: request.timezone,
    enabled: request.enabled,
    overlap: request.overlap,
    jitterSeconds: request.jitterSeconds,
    job: boundTemplate(principal, request.job),
    nextRunAt: firstRunAfter(request, now),
    lastFires: [],
    lastJobId: null,
    createdAt: at,
    updatedAt: at,
    version: 1,
  };
  await ctx.schedules.create(schedule, principal.id);
  return scheduleView(schedule);
}

/** GET /schedules/{id} */
export async function getSchedule(
  ctx: ScheduleContext,
  principal: Principal,
  id: string,
): Promise<ScheduleView> {
  return scheduleView(await loadVisible(ctx, principal, id));
}

const listCursorSchema = z.strictObject({
  after: z
    .string()
    .max(200)
    .regex(/^[^#]{1,128}#sch_[0-9A-HJKMNP-TV-Z]{26}$/),
});

/** GET /schedules: the caller's schedules (an admin: everyone's, or `owner`'s), by owner and age. */
export async function listSchedules(
  ctx: ScheduleContext,
  principal: Principal,
  query: ListSchedulesQuery,
): Promise<{ items: ScheduleView[]; nextCursor: string | null }> {
  if (!principal.admin && query.owner !== undefined && query.owner !== principal.id) {
    throw new ForbiddenError("only an admin may list another principal's schedules");
  }
  const owner = principal.admin ? query.owner : principal.id;
  const cursor = decodeCursor(query.cursor, listCursorSchema);
  // The cursor's position must lie inside the list asked for, or it is not this list's cursor.
  if (cursor && owner !== undefined && !cursor.after.startsWith(`${owner}#`)) throw invalidCursor();
  const page = await ctx.schedules.list({ owner, after: cursor?.after, limit: query.limit });
  return {
    items: page.items.map(scheduleView),
    nextCursor: page.lastSortKey ? encodeCursor({ after: page.lastSortKey }) : null,
  };
}

/**
 * PATCH /schedules/{id}. A new cron, timezone or enabled starts the schedule afresh from now
 * (re-enabling does not catch up on the time it was off); other changes keep its next fire.
 */
export async function updateSchedule(
  ctx: ScheduleContext,
  principal: Principal,
  id: string,
  patch: UpdateScheduleRequest,
): Promise<ScheduleView> {
  if (patch.job !== undefined) checkTemplate(ctx, patch.job);
  const job = patch.job === undefined ? undefined : boundTemplate(principal, patch.job);
  for (let round = 1; ; round++) {
    const current = await loadVisible(ctx, principal, id);
    const now = ctx.clock();
    const merged: Schedule = {
      ...current,
      ...Object.fromEntries(Object.entries({ ...patch, job }).filter(([, v]) => v !== undefined)),
      updatedAt: now.toISOString(),
      version: current.version + 1,
    };
    const restarts =
      merged.cron !== current.cron ||
      merged.timezone !== current.timezone ||
      merged.enabled !== current.enabled;
    const next: Schedule = restarts ? { ...merged, nextRunAt: firstRunAfter(merged, now) } : merged;
    // Nothing a person set would change (a retried PATCH): no write, no audit record.
    if (JSON.stringify(scheduleSettings(next)) === JSON.stringify(scheduleSettings(current))) {
      return scheduleView(current);
    }
    try {
      await ctx.schedules.replace(next, current.version, {
        by: principal.id,
        action: auditAction(current, next),
        before: current,
      });
      return scheduleView(next);
    } catch (error) {
      if (error instanceof ConcurrentUpdateError && round < MAX_WRITE_ROUNDS) continue;
      throw error;
    }
  }
}

/** A PATCH that only flips `enabled` is recorded as what it is: enable or disable. */
function auditAction(current: Schedule, next: Schedule): AuditAction {
  const onlyEnabled =
    JSON.stringify({ ...scheduleSettings(next), enabled: current.enabled }) ===
    JSON.stringify(scheduleSettings(current));
  if (onlyEnabled) return next.enabled ? "enable" : "disable";
  return "update";
}

/** DELETE /schedules/{id}: 204. Jobs it fired stay (and keep their scheduleId). */
export async function deleteSchedule(ctx: ScheduleContext, principal: Principal, id: string): Promise<void> {
  for (let round = 1; ; round++) {
    const current = await loadVisible(ctx, principal, id);
    const change = {
      by: principal.id,
      action: "delete" as const,
      before: current,
      at: ctx.clock().toISOString(),
    };
    if (await ctx.schedules.delete(id, current.version, change)) return;
    if (round >= MAX_WRITE_ROUNDS) throw new ConcurrentUpdateError(`schedule ${id} kept changing; retry`);
  }
}

/** What one fire did: the job it submitted, or the skipped fire with its reason. */
export interface FireOutcome {
  readonly fire: ScheduleFire;
  readonly job: Job | null;
  /** The refusal, when the submission was refused (quota, type, resources): recorded, not lost. */
  readonly refusal: JobqError | null;
  /** The fire's key had already created its job (a racing or retried fire): nothing new. */
  readonly replayed: boolean;
}

/**
 * Submits the schedule's job for the fire at `at` under `key`, or says why not. A refusal that a
 * retry would meet again (maxQueuedJobs, a type or pool gone since the template was checked, a
 * priority above the owner's limit) is a skipped fire; anything else (throttling, an outage, a
 * duplicate still in flight) is thrown, and the fire is retried at the next pass.
 */
async function submitFire(
  ctx: ScheduleContext,
  schedule: Schedule,
  at: string,
  key: string,
): Promise<FireOutcome> {
  const skipped = (reason: string, refusal: JobqError | null = null): FireOutcome => ({
    fire: { at, skipped: reason },
    job: null,
    refusal,
    replayed: false,
  });
  const principal = { id: schedule.owner, admin: false };
  // A fire already made (a retried trigger, a replayed pass) answers its job, whatever the
  // overlap rule says now: that job is the previous fire's, still running.
  if (
    schedule.overlap === "skip" &&
    schedule.lastJobId !== null &&
    !(await new Idempotency(ctx.repo).isComplete(principal, key, ctx.clock))
  ) {
    const previous = (await ctx.repo.getJobItems([schedule.lastJobId])).get(schedule.lastJobId);
    const reason = overlapSkipReason(schedule.overlap, previous ?? null);
    if (reason) return skipped(reason);
  }
  const template = jobTemplateSchema.safeParse(schedule.job);
  if (!template.success) {
    // Checked at create and PATCH; only a schema grown stricter since can get here.
    const problems = fieldProblems(template.error).map((p) => `job.${p.path}: ${p.message}`);
    return skipped(`invalid job template: ${problems.join("; ")}`);
  }
  try {
    const result = await submitJobs(ctx, {
      principal,
      jobs: [template.data],
      // One hash per key: a replay always answers the fire's job, even after a PATCH of the template.
      idempotency: { key, requestHash: requestHash("schedule fire", key) },
      scheduleId: schedule.id,
    });
    const job = result.jobs[0];
    if (!job) throw new Error(`schedule ${schedule.id}: the submission answered no job`);
    return { fire: { at, jobId: job.id }, job, refusal: null, replayed: result.replayed };
  } catch (error) {
    const transient = error instanceof TooManyRequestsError && !(error instanceof QueueLimitError);
    if (error instanceof JobqError && !transient) return skipped(error.message, error);
    throw error;
  }
}

/**
 * Appends the fire to the schedule and, for a cron fire, moves `nextRunAt` on, conditional on the
 * version read. For a cron fire, false when another pass recorded it first (nextRunAt moved).
 */
async function recordFire(
  ctx: ScheduleContext,
  id: string,
  fire: ScheduleFire,
  advance: { readonly from: string; readonly to: string | null } | null,
): Promise<boolean> {
  for (let round = 1; ; round++) {
    const current = await ctx.schedules.get(id);
    if (!current) return false; // deleted meanwhile: nothing left to record on
    if (advance && current.nextRunAt !== advance.from) return false;
    const next: Schedule = {
      ...current,
      ...(advance ? { nextRunAt: advance.to } : {}),
      lastFires: withFire(current.lastFires, fire),
      lastJobId: "jobId" in fire ? fire.jobId : current.lastJobId,
      updatedAt: ctx.clock().toISOString(),
      version: current.version + 1,
    };
    try {
      await ctx.schedules.replace(next, current.version);
      return true;
    } catch (error) {
      if (error instanceof ConcurrentUpdateError && round < MAX_WRITE_ROUNDS) continue;
      throw error;
    }
  }
}

/**
 * POST /schedules/{id}/trigger: one fire now, whatever the cron says (and whether or not the
 * schedule is enabled); the cron's next fire is unchanged. Overlap and quotas apply as to any
 * fire, and the fire is recorded in lastFires with `trigger: "manual"`. With the caller's
 * Idempotency-Key, a retried trigger answers the job the first one created and records nothing
 * new (a skipped fire created nothing, so its retry is a fire of its own).
 */
export async function triggerSchedule(
  ctx: ScheduleContext,
  principal: Principal,
  id: string,
  clientKey?: string,
): Promise<FireOutcome> {
  const schedule = await loadVisible(ctx, principal, id);
  const at = ctx.clock().toISOString();
  // Without the caller's key each trigger is a fire of its own: the instant and a random part.
  const key =
    clientKey === undefined
      ? `${fireIdempotencyKey(id, at)}:manual:${ulid()}`
      : `schedule:${id}:trigger:${clientKey}`;
  const outcome = await submitFire(ctx, schedule, at, key);
  const fire: ScheduleFire = { ...outcome.fire, trigger: "manual" };
  if (!outcome.replayed) await recordFire(ctx, id, fire, null);
  return { ...outcome, fire };
}

/**
 * The cron fire of one schedule, if due at `now`: after downtime, only the latest missed fire
 * time (core/schedule.ts#dueFire). Null when nothing was due or another pass recorded it first.
 */
export async function fireSchedule(ctx: ScheduleContext, id: string, now: Date): Promise<FireOutcome | null> {
  const schedule = await ctx.schedules.get(id);
  if (!schedule?.enabled || schedule.nextRunAt === null) return null;
  if (Date.parse(jitteredDueAt(id, schedule.nextRunAt, schedule.jitterSeconds)) > now.getTime()) return null;
  const due = dueFire(schedule, now);
  if (!due) return null;
  const outcome = await submitFire(ctx, schedule, due.fireAt, fireIdempotencyKey(id, due.fireAt));
  const fire: ScheduleFire = due.missed > 0 ? { ...outcome.fire, missed: due.missed } : outcome.fire;
  const recorded = await recordFire(ctx, id, fire, { from: schedule.nextRunAt, to: due.next });
  return recorded ? { ...outcome, fire } : null;
}

/** Schedules one tick fires at most; the rest are due at the next tick (a minute, or a sweep). */
export const FIRES_PER_TICK = 25;

export interface TickSummary {
  readonly fired: readonly { readonly scheduleId: string; readonly jobId: string }[];
  readonly skipped: readonly { readonly scheduleId: string; readonly reason: string }[];
  readonly failed: readonly string[];
}

/**
 * The scheduler tick's part for schedules: one Query of the sparse due index (Limit
 * FIRES_PER_TICK), then each due schedule's fire. One schedule's failure is logged and retried at
 * the next tick; it never stops the others, nor the scheduling pass after it.
 */
export async function fireDueSchedules(ctx: ScheduleContext, now: Date = ctx.clock()): Promise<TickSummary> {
  const summary = { fired: [], skipped: [], failed: [] } as {
    fired: { scheduleId: string; jobId: string }[];
    skipped: { scheduleId: string; reason: string }[];
    failed: string[];
  };
  let ids: string[];
  try {
    ids = await ctx.schedules.dueIds(now, FIRES_PER_TICK);
  } catch (error) {
    // The scheduling pass after this must still run: the schedules wait for the next tick.
    logger.error("due schedules not read; retried at the next tick", { error: error as Error });
    return summary;
  }
  for (const id of ids) {
    try {
      const outcome = await fireSchedule(ctx, id, now);
      if (!outcome) continue;
      if ("jobId" in outcome.fire) {
        summary.fired.push({ scheduleId: id, jobId: outcome.fire.jobId });
        logger.info("schedule fired", { scheduleId: id, ...outcome.fire });
      } else {
        summary.skipped.push({ scheduleId: id, reason: outcome.fire.skipped });
        logger.warn("schedule fire skipped", { scheduleId: id, ...outcome.fire });
      }
    } catch (error) {
      logger.error("schedule fire failed; retried at the next tick", {
        scheduleId: id,
        error: error as Error,
      });
      summary.failed.push(id);
    }
  }
  return summary;
}
