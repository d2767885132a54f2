import type { CreateScheduleRequest, Schedule, ScheduleFire } from "../../../client/index";
import { type FieldProblem, parseJsonObject } from "../errors";

/**
 * The schedules view's pure parts: how a fire is said, and the create form turned into
 * POST /schedules's body. The server validates everything (cron, timezone, the template); the form
 * checks only what it must to build a body at all (the template's JSON), so the API's own messages
 * are the ones shown. Unit-tested.
 */

export interface ScheduleForm {
  readonly name: string;
  readonly cron: string;
  readonly timezone: string;
  readonly overlap: "allow" | "skip";
  readonly enabled: boolean;
  /** The job template as JSON text. */
  readonly job: string;
}

export const EMPTY_SCHEDULE_FORM: ScheduleForm = {
  name: "",
  cron: "0 2 * * *",
  timezone: "UTC",
  overlap: "allow",
  enabled: true,
  job: '{\n  "type": "echo",\n  "payload": {}\n}',
};

export type FormResult =
  | { readonly ok: true; readonly request: CreateScheduleRequest }
  | { readonly ok: false; readonly problems: FieldProblem[] };

/** The form as POST /schedules's body; problems use the API's paths so one display serves both. */
export function scheduleRequest(form: ScheduleForm): FormResult {
  const job = parseJsonObject(form.job);
  if (!job.ok) return { ok: false, problems: [{ path: "job", message: job.message }] };
  return {
    ok: true,
    request: {
      name: form.name.trim(),
      cron: form.cron.trim(),
      // Left empty, the server's default (UTC) applies.
      ...(form.timezone.trim() === "" ? {} : { timezone: form.timezone.trim() }),
      overlap: form.overlap,
      enabled: form.enabled,
      job: job.value as CreateScheduleRequest["job"],
    },
  };
}

/** "job job_01… (manual)", "skipped: overlap: previous job … (3 missed)". */
export function describeFire(fire: ScheduleFire): string {
  const extras: string[] = [];
  if (fire.trigger === "manual") extras.push("manual");
  if (fire.missed !== undefined && fire.missed > 0) extras.push(`${fire.missed} missed`);
  const what = "jobId" in fire ? `job ${fire.jobId}` : `skipped: ${fire.skipped}`;
  return extras.length === 0 ? what : `${what} (${extras.join(", ")})`;
}

/** A timestamp as the reader's local date and time, with the UTC original kept for a tooltip. */
export function formatTime(iso: string | null, timeZone?: string): string {
  if (iso === null) return "—";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  return at.toLocaleString("en-GB", {
    dateStyle: "medium",
    timeStyle: "short",
    ...(timeZone === undefined ? {} : { timeZone }),
  });
}

/** "in 5 min", "in 3 h", "2 min ago": how far a time is from now. */
export function relativeTime(iso: string | null, now: Date): string {
  if (iso === null) return "";
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return "";
  const ms = at - now.getTime();
  const abs = Math.abs(ms);
  const amount =
    abs < 60_000
      ? `${Math.round(abs / 1000)} s`
      : abs < 3_600_000
        ? `${Math.round(abs / 60_000)} min`
        : abs < 172_800_000
          ? `${Math.round(abs / 3_600_000)} h`
          : `${Math.round(abs / 86_400_000)} d`;
  return ms >= 0 ? `in ${amount}` : `${amount} ago`;
}

/** The last fire, or none. */
export function lastFire(schedule: Schedule): ScheduleFire | undefined {
  return schedule.lastFires[0];
}
