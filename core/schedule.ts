import { createHash } from "node:crypto";
import { Cron } from "croner";
import { z } from "zod";
import { isTerminal, type JobStatus, submitJobSchema } from "./job";

/**
 * Recurring schedules (API.md, "Schedules"): the request schemas, cron evaluation in an IANA
 * timezone (croner: DST gaps and repeats handled), the catch-up rule after downtime, the
 * deterministic jitter and the overlap decision. Pure: no AWS, no I/O, the time is a parameter.
 */

export const OVERLAP_POLICIES = ["allow", "skip"] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

/** How many past fires a schedule keeps (API.md: the last 10). */
export const MAX_LAST_FIRES = 10;
/** How many upcoming fire times GET /schedules/{id} shows (API.md: the next 5). */
export const NEXT_RUNS_SHOWN = 5;
/** A jitter above an hour would blur an hourly schedule into the next one. */
export const MAX_JITTER_SECONDS = 3600;

/** `sch_` + ULID: sortable by creation time, like job ids. */
export const SCHEDULE_ID_PATTERN = /^sch_[0-9A-HJKMNP-TV-Z]{26}$/;

/**
 * A cron expression jobq can keep: five fields (minute hour day-of-month month day-of-week) or a
 * nickname (@hourly, @daily, @weekly, @monthly, @yearly). croner also takes a seconds field, but
 * the scheduler looks for due schedules once a minute in AWS, so a sub-minute schedule would only
 * be a promise it cannot keep: refused.
 */
export function cronProblem(expression: string): string | null {
  const trimmed = expression.trim();
  if (trimmed.length === 0) return "must not be empty";
  if (!trimmed.startsWith("@") && trimmed.split(/\s+/).length !== 5) {
    return 'must have 5 fields (minute hour day-of-month month day-of-week), e.g. "0 2 * * *"';
  }
  try {
    const cron = new Cron(trimmed, { paused: true, timezone: "UTC" });
    // A pattern like "0 0 31 2 *" parses but never fires.
    if (cron.nextRun(new Date(0)) === null) return "never fires (no date matches it)";
  } catch (error) {
    return `is not a valid cron expression: ${(error as Error).message.replace(/^CronPattern: /, "")}`;
  }
  return null;
}

/** Whether the runtime knows the IANA timezone (the one check that needs no list of names). */
export function timezoneProblem(timezone: string): string | null {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
    return null;
  } catch {
    return `is not an IANA timezone the server knows (e.g. "UTC", "Europe/Berlin", "America/New_York")`;
  }
}

const cronSchema = z
  .string()
  .max(256)
  .superRefine((expression, ctx) => {
    const problem = cronProblem(expression);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .transform((s) => s.trim());

const timezoneSchema = z
  .string()
  .min(1)
  .max(64)
  .superRefine((timezone, ctx) => {
    // An empty or overlong name is already reported by min/max.
    if (timezone.length === 0 || timezone.length > 64) return;
    const problem = timezoneProblem(timezone);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

/**
 * The job a schedule submits at each fire: POST /jobs's body, checked by the same schema at
 * create and PATCH so a bad template is a 400 then, never a failure at fire time. Two fields make
 * no sense in a template that outlives its author's intent: `dependsOn` (a recurring job cannot
 * wait on the same finished job every night; once the parent is gone every fire would be refused)
 * and `runAt` (an absolute time, in the past after the first fire); `deadline` is refused for the
 * same reason.
 */
export const jobTemplateSchema = submitJobSchema.superRefine((template, ctx) => {
  for (const problem of recurringProblems(template)) ctx.addIssue({ code: "custom", ...problem });
});

/** What a recurring template may not hold (see jobTemplateSchema), checked on the raw template too. */
function recurringProblems(template: Record<string, unknown>): { path: string[]; message: string }[] {
  const problems: { path: string[]; message: string }[] = [];
  const dependsOn = template.dependsOn;
  if (dependsOn !== undefined && !(Array.isArray(dependsOn) && dependsOn.length === 0)) {
    problems.push({
      path: ["dependsOn"],
      message: "a schedule's job cannot depend on other jobs: each fire would wait on the same jobs",
    });
  }
  if (template.array !== undefined) {
    problems.push({ path: ["array"], message: "a schedule cannot fire array jobs" });
  }
  for (const field of ["runAt", "deadline"]) {
    if (template[field] !== undefined) {
      problems.push({
        path: [field],
        message:
          "an absolute time makes no sense in a recurring job; the schedule's cron decides when it runs",
      });
    }
  }
  return problems;
}

/**
 * The template as stored: what the user sent, checked with jobTemplateSchema (every problem
 * under `job.`); defaults are applied at each fire, as POST /jobs applies them.
 */
const rawTemplate = z
  .custom<Record<string, unknown>>(
    (v) => v !== null && typeof v === "object" && !Array.isArray(v),
    "must be an object: a job as in POST /jobs",
  )
  .superRefine((template, ctx) => {
    // Both lists in full: zod stops before refinements when the base schema already failed.
    const parsed = submitJobSchema.safeParse(template);
    const issues = parsed.success ? [] : parsed.error.issues;
    const reported = new Set(issues.map((issue) => issue.path.join(".")));
    for (const issue of issues) {
      ctx.addIssue({ code: "custom", path: issue.path.map(String), message: issue.message });
    }
    for (const problem of recurringProblems(template)) {
      if (!reported.has(problem.path.join("."))) ctx.addIssue({ code: "custom", ...problem });
    }
  })
  .describe("a job as POST /jobs's body (SubmitJobRequest), without dependsOn, runAt or deadline");

const scheduleFields = {
  name: z.string().min(1).max(256),
  cron: cronSchema,
  timezone: timezoneSchema,
  enabled: z.boolean(),
  overlap: z.enum(OVERLAP_POLICIES),
  jitterSeconds: z.number().int().min(0).max(MAX_JITTER_SECONDS),
  job: rawTemplate,
};

export const createScheduleSchema = z.strictObject({
  ...scheduleFields,
  timezone: scheduleFields.timezone.default("UTC"),
  enabled: scheduleFields.enabled.default(true),
  overlap: scheduleFields.overlap.default("allow"),
  jitterSeconds: scheduleFields.jitterSeconds.default(0),
});
export type CreateScheduleRequest = z.infer<typeof createScheduleSchema>;

export const updateScheduleSchema = z
  .strictObject({
    name: scheduleFields.name.optional(),
    cron: scheduleFields.cron.optional(),
    timezone: scheduleFields.timezone.optional(),
    enabled: scheduleFields.enabled.optional(),
    overlap: scheduleFields.overlap.optional(),
    jitterSeconds: scheduleFields.jitterSeconds.optional(),
    job: scheduleFields.job.optional(),
  })
  .refine((patch) => Object.values(patch).some((v) => v !== undefined), "name at least one field to change");
export type UpdateScheduleRequest = z.infer<typeof updateScheduleSchema>;

export const listSchedulesQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().min(1).max(2048).optional(),
  owner: z.string().min(1).max(128).optional(),
});
export type ListSchedulesQuery = z.infer<typeof listSchedulesQuerySchema>;

/** One fire as GET shows it: the job it submitted, or why it submitted none. */
export type ScheduleFire = (
  | { readonly at: string; readonly jobId: string }
  | { readonly at: string; readonly skipped: string }
) & {
  /** A POST /schedules/{id}/trigger, not the cron. */
  readonly trigger?: "manual";
  /** Earlier fire times passed over by this catch-up fire (downtime). */
  readonly missed?: number;
};

/** The schedule as API.md shows it. */
export interface Schedule {
  readonly id: string;
  readonly name: string;
  readonly owner: string;
  readonly cron: string;
  readonly timezone: string;
  readonly enabled: boolean;
  readonly overlap: OverlapPolicy;
  readonly jitterSeconds: number;
  readonly job: Record<string, unknown>;
  /** The cron time of the next fire; null while disabled. */
  readonly nextRunAt: string | null;
  /** Newest first, at most MAX_LAST_FIRES. */
  readonly lastFires: readonly ScheduleFire[];
  /** The job of the last fire that submitted one: what overlap=skip looks at. */
  readonly lastJobId: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly version: number;
}

function cronOf(expression: string, timezone: string): Cron {
  return new Cron(expression, { paused: true, timezone });
}

/** The first `count` fire times strictly after `after`. */
export function nextFireTimes(expression: string, timezone: string, after: Date, count: number): Date[] {
  return cronOf(expression, timezone).nextRuns(count, after);
}

/** The first fire time strictly after `after`, or null if the cron never fires again. */
export function nextFireTime(expression: string, timezone: string, after: Date): Date | null {
  return cronOf(expression, timezone).nextRun(after);
}

/**
 * Catch-up after downtime (API.md: "fires at most once to catch up"): of every fire time from
 * `nextRunAt` up to `now`, only the latest is fired; the earlier ones are passed over. Returns
 * the time to fire (null when nothing is due yet) and the schedule's next fire time after it.
 */
export function dueFire(
  schedule: Pick<Schedule, "cron" | "timezone" | "nextRunAt">,
  now: Date,
): { fireAt: string; missed: number; next: string | null } | null {
  if (schedule.nextRunAt === null || Date.parse(schedule.nextRunAt) > now.getTime()) return null;
  const cron = cronOf(schedule.cron, schedule.timezone);
  // The latest cron time at or before now. croner's previousRuns counts back from a reference it
  // excludes, so the reference is a millisecond after now.
  const latest = cron.previousRuns(1, new Date(now.getTime() + 1))[0];
  const fireAt =
    latest && latest.getTime() >= Date.parse(schedule.nextRunAt) ? latest.toISOString() : schedule.nextRunAt;
  const missed = countBetween(cron, schedule.nextRunAt, fireAt);
  const next = cron.nextRun(new Date(Math.max(now.getTime(), Date.parse(fireAt))));
  return { fireAt, missed, next: next ? next.toISOString() : null };
}

/** How many earlier fire times the catch-up passed over (counted up to a bound, for the record). */
function countBetween(cron: Cron, from: string, to: string): number {
  const LIMIT = 1000;
  if (from === to) return 0;
  let count = 0;
  for (let t: Date | null = new Date(from); t && t.toISOString() < to && count < LIMIT; ) {
    count++;
    t = cron.nextRun(t);
  }
  return count;
}

/**
 * When a fire is actually due: its cron time plus a jitter in [0, jitterSeconds], drawn from the
 * schedule id and the fire time. Deterministic, so a replayed or racing pass computes the same
 * instant, and spread, so a thousand "0 * * * *" schedules do not all submit in the same second.
 */
export function jitteredDueAt(scheduleId: string, fireAt: string, jitterSeconds: number): string {
  if (jitterSeconds <= 0) return fireAt;
  const digest = createHash("sha256").update(`${scheduleId}|${fireAt}`).digest();
  const offsetMs = digest.readUInt32BE(0) % (jitterSeconds * 1000 + 1);
  return new Date(Date.parse(fireAt) + offsetMs).toISOString();
}

/**
 * overlap=skip: no new job while the previous fired job has not ended. The reason recorded in
 * lastFires, or null when the fire may submit.
 */
export function overlapSkipReason(
  overlap: OverlapPolicy,
  previous: { readonly id: string; readonly status: JobStatus } | null,
): string | null {
  if (overlap !== "skip" || previous === null || isTerminal(previous.status)) return null;
  return `overlap: previous job ${previous.id} is still ${previous.status}`;
}

/** The new fire first, the list cut to MAX_LAST_FIRES. */
export function withFire(lastFires: readonly ScheduleFire[], fire: ScheduleFire): ScheduleFire[] {
  return [fire, ...lastFires].slice(0, MAX_LAST_FIRES);
}

/** The Idempotency-Key of a fire: the same schedule and cron time always name the same job. */
export function fireIdempotencyKey(scheduleId: string, fireAt: string): string {
  return `schedule:${scheduleId}:${fireAt}`;
}

/** GET /schedules/{id}'s upcoming times: the due one (possibly overdue) and the ones after it. */
export function upcomingRuns(schedule: Pick<Schedule, "cron" | "timezone" | "nextRunAt">): string[] {
  if (schedule.nextRunAt === null) return [];
  const after = nextFireTimes(
    schedule.cron,
    schedule.timezone,
    new Date(schedule.nextRunAt),
    NEXT_RUNS_SHOWN - 1,
  );
  return [schedule.nextRunAt, ...after.map((d) => d.toISOString())];
}
