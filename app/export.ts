import { z } from "zod";
import { auditId } from "../core/audit";
import { forEachConcurrent } from "../core/concurrency";
import { ForbiddenError, PayloadTooLargeError, ValidationError } from "../core/errors";
import {
  EXPORT_FORMAT,
  EXPORT_VERSION,
  type ExportLine,
  importRank,
  type importSummarySchema,
  parseExportLines,
  RECORD_KINDS,
  type RecordKind,
} from "../core/export";
import type { JobStatus } from "../core/job";
import type { Principal } from "../core/principal";
import { historyExpiresAt, type Retention } from "../core/retention";
import { endedByCompletion } from "../store/attempts";
import { AUDIT_PK } from "../store/audit";
import { decodeCursor, encodeCursor } from "../store/cursor";
import { createDocumentClient } from "../store/dynamo";
import { StateStore, type StateTable, type TableKey } from "../store/export";
import { indexAttributes, type Reservation, transitionItem } from "../store/job-items";
import {
  attemptSk,
  dependentSk,
  dependsOnSk,
  JOB_SK,
  jobPk,
  logSk,
  POLICY_PK,
  POLICY_SK,
  principalPk,
  QUOTA_SK,
  RESULT_SK,
  SCHEDULE_DUE_PK,
  SCHEDULE_SK,
  SCHEDULES_PK,
  scheduleDueSk,
  scheduleItemPk,
  schedulesSk,
  transitionSk,
  versionOfTransitionSk,
} from "../store/keys";
import { dueAtOf } from "../store/schedules";
import { config } from "./config";
import type { LifecycleExecutions } from "./executions";
import { logger } from "./logger";
import { appContext, type Clock, systemClock } from "./runtime";

/**
 * Export and import of jobq's state (GET /admin/export, POST /admin/import; docs/admin-api.md and
 * docs/operations.md): what moves a deployment's jobs, their history, schedules, policy and
 * quotas into another stack. The line format is core/export.ts.
 *
 * Export answers bounded pages — a Scan page of the Jobs table, then of the Policy table — each
 * ending in a cursor line, because an API Gateway request cannot stay open for the hours a large
 * table takes. Import is create-only: every record is a conditional put of an item that must not
 * exist, so sending the same lines twice changes nothing and counts them as skipped.
 *
 * Imported jobs that had not ended are set on their way in the new stack: a job the old stack had
 * dispatched or was running has no worker and no execution here, so it comes back `queued` (its
 * running attempt recorded as lost, not counted against maxAttempts, as a preemption is not), with
 * a transition saying it was restored; every other unfinished job but a paused one gets a new
 * lifecycle execution at once, as a submission does. Should that start fail, the job is in the
 * `live` index and the reconciler starts one on its next run.
 */

export interface ExportContext {
  readonly store: StateStore;
  readonly executions: LifecycleExecutions;
  readonly clock: Clock;
  /** How long the history a restore writes (a requeued job's transition) is kept. */
  readonly retention: Retention;
}

let context: ExportContext | undefined;

export function exportContext(): ExportContext {
  if (!context) {
    const c = config();
    context = {
      store: new StateStore(createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint }), {
        jobs: c.jobsTable,
        policy: c.policyTable,
      }),
      executions: appContext().executions,
      clock: systemClock,
      retention: c.retention,
    };
  }
  return context;
}

function requireAdmin(principal: Principal, what: string): void {
  if (!principal.admin) throw new ForbiddenError(`only an admin may ${what}`);
}

// ---------------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------------

/** Items scanned per page by default: a few hundred KB of NDJSON, far below API Gateway's limits. */
export const DEFAULT_EXPORT_LIMIT = 200;
export const MAX_EXPORT_LIMIT = 1000;

const exportQuerySchema = z.strictObject({
  cursor: z.string().min(1).max(4096).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_EXPORT_LIMIT).default(DEFAULT_EXPORT_LIMIT),
});

/**
 * A key of the scanned table, as a cursor carries it. Scanned items are of many kinds, and other
 * features add kinds (a principal's name is a sort key under `STATS#OWNERS`), so the check is the
 * shape every jobq key has — a non-empty string of printable characters, short of DynamoDB's key
 * limits — not a list of prefixes that would refuse the cursor of a page ending on a new kind.
 * A forged key can only move where the admin's own Scan starts; it always makes a valid request.
 */
const scannedKey = z
  .string()
  .min(1)
  .max(1024)
  .regex(/^\P{Cc}+$/u, "is not a key this table holds");

const exportCursorSchema = z.union([
  z.strictObject({
    table: z.enum(["jobs", "policy"]),
    pk: scannedKey,
    sk: scannedKey,
  }),
  /** The start of the Policy table, once the Jobs table is done. */
  z.strictObject({ table: z.literal("policy") }),
]);
type ExportCursor = z.output<typeof exportCursorSchema>;

export interface ExportPage {
  /** The page's lines, the header first on the first page, the cursor line last. */
  readonly lines: ExportLine[];
  readonly nextCursor: string | null;
}

export async function exportPage(
  ctx: ExportContext,
  principal: Principal,
  query: Record<string, string>,
): Promise<ExportPage> {
  requireAdmin(principal, "export jobq's state");
  const parsed = exportQuerySchema.safeParse(query);
  if (!parsed.success) {
    throw new ValidationError(
      parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
    );
  }
  const { cursor, limit } = parsed.data;
  const at: ExportCursor | { table: "jobs" } = decodeCursor(cursor, exportCursorSchema) ?? { table: "jobs" };
  const startKey: TableKey | undefined = "pk" in at ? { pk: at.pk, sk: at.sk } : undefined;
  const page = await ctx.store.scan(at.table, startKey, limit);

  const lines: ExportLine[] = [];
  if (cursor === undefined) {
    lines.push({
      kind: "header",
      format: EXPORT_FORMAT,
      version: EXPORT_VERSION,
      exportedAt: ctx.clock().toISOString(),
    });
  }
  const items = at.table === "jobs" ? await attemptsAsRead(ctx, page.items) : page.items;
  for (const item of items) {
    const line = exportLine(at.table, item);
    if (line) lines.push(line);
  }
  const next: ExportCursor | null = page.lastKey
    ? { table: at.table, ...page.lastKey }
    : at.table === "jobs"
      ? { table: "policy" }
      : null;
  const nextCursor = next ? encodeCursor(next) : null;
  lines.push({ kind: "cursor", nextCursor });
  return { lines, nextCursor };
}

/** Job items read at once for a page's running attempt records whose job is not on the page. */
const JOB_READ_CONCURRENCY = 16;

/**
 * A page's attempt records as GET /jobs/{id}/attempts shows them: the one a completion ended
 * while its record still says running (the worker leaves it so: store/attempts.ts#endedByCompletion)
 * exported as succeeded, so the import, which takes a running attempt for one the old stack's
 * worker was running, does not call it lost. Its job is read from the page (a scan returns a
 * partition's `ATT#` items just before its `JOB`) or else from the table.
 */
async function attemptsAsRead(
  ctx: ExportContext,
  items: readonly Record<string, unknown>[],
): Promise<readonly Record<string, unknown>[]> {
  const running = items.filter((i) => String(i.sk).startsWith("ATT#") && i.status === "running");
  if (running.length === 0) return items;
  const jobs = new Map(items.filter((i) => i.sk === JOB_SK).map((i) => [String(i.pk), i]));
  const missing = [...new Set(running.map((i) => String(i.pk)).filter((pk) => !jobs.has(pk)))];
  await forEachConcurrent(missing, JOB_READ_CONCURRENCY, async (pk) => {
    const job = await ctx.store.get("jobs", { pk, sk: JOB_SK });
    if (job) jobs.set(pk, job);
  });
  return items.map((item) => {
    const job = jobs.get(String(item.pk));
    if (!job || !String(item.sk).startsWith("ATT#")) return item;
    return endedByCompletion(item, {
      status: String(job.status),
      attempts: Number(job.attempts),
      // Stored only when set (store/job-items.ts#STORED_WHEN_SET).
      finishedAt: typeof job.finishedAt === "string" ? job.finishedAt : null,
      updatedAt: String(job.updatedAt),
    });
  });
}

/**
 * Attributes the importer derives (keys, index keys) or that belong to the old stack alone (its
 * execution and its admission token, a staged batch's mark): never exported.
 */
const NOT_EXPORTED = new Set([
  "pk",
  "sk",
  "ownerPk",
  "ownerSk",
  "ownerStatusPk",
  "dayPk",
  "queuePk",
  "queueSk",
  "queueOwnerSk",
  "queueAgeSk",
  "duePk",
  "dueSk",
  "activePk",
  "activeSk",
  "livePk",
  "schedulePk",
  "projectPk",
  "updatedSk",
  "updatedDayPk",
  "schedulesPk",
  "schedulesSk",
  "scheduleDuePk",
  "scheduleDueSk",
  "executionArn",
  "admissionToken",
  "staged",
  "runToken",
]);

function record(item: Record<string, unknown>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(item)) if (!NOT_EXPORTED.has(name)) kept[name] = value;
  return kept;
}

/** The line of a stored item, or null for what is not exported (see core/export.ts). */
function exportLine(table: StateTable, item: Record<string, unknown>): ExportLine | null {
  const pk = String(item.pk);
  const sk = String(item.sk);
  if (table === "policy") {
    if (pk === POLICY_PK && sk === POLICY_SK) return { kind: "policy", item: record(item) } as ExportLine;
    if (pk.startsWith("PRINCIPAL#") && sk === QUOTA_SK)
      return { kind: "quota", item: record(item) } as ExportLine;
    if (pk.startsWith("SCHEDULE#") && sk === SCHEDULE_SK)
      return { kind: "schedule", item: record(item) } as ExportLine;
    if (pk === AUDIT_PK) return { kind: "audit", item: record(item) } as ExportLine;
    return null;
  }
  if (!pk.startsWith("JOB#")) return null;
  const jobId = pk.slice("JOB#".length);
  const fields = record(item);
  if (sk === JOB_SK) return item.staged ? null : ({ kind: "job", item: fields } as ExportLine);
  if (sk === RESULT_SK) return { kind: "result", jobId, item: fields };
  if (sk.startsWith("ATT#")) return { kind: "attempt", jobId, item: fields } as ExportLine;
  if (sk.startsWith("TRN#"))
    return { kind: "transition", jobId, version: versionOfTransitionSk(sk), item: fields } as ExportLine;
  if (sk.startsWith("LOG#")) return { kind: "log", jobId, logId: sk.slice(4), item: fields };
  if (sk.startsWith("DEP#")) return { kind: "dependency", jobId, on: sk.slice(4), item: fields };
  if (sk.startsWith("DPT#")) return { kind: "dependent", jobId, by: sk.slice(4), item: fields };
  return null;
}

/** A page as NDJSON: one line per object, each ending in a newline. */
export function toNdjson(lines: readonly ExportLine[]): string {
  return lines.map((line) => `${JSON.stringify(line)}\n`).join("");
}

// ---------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------

/** Lines per request: each is a write, and the whole request must finish inside API Gateway's 29 s. */
export const MAX_IMPORT_LINES = 2000;
/** Records written at once. */
const IMPORT_CONCURRENCY = 16;

export type KindCounts = Record<RecordKind, number>;

export type ImportSummary = z.output<typeof importSummarySchema>;

function zeroCounts(): KindCounts {
  return Object.fromEntries(RECORD_KINDS.map((k) => [k, 0])) as KindCounts;
}

/** `body` is read once the caller is known to be an admin: a user's request is a 403 whatever it sends. */
export async function importPage(
  ctx: ExportContext,
  principal: Principal,
  body: () => string,
): Promise<ImportSummary> {
  requireAdmin(principal, "import jobq's state");
  const { lines, problems } = parseExportLines(body());
  if (problems.length > 0) {
    // Nothing of a page with a bad line is written: the admin fixes the file and sends it again.
    throw new ValidationError(problems.map((p) => ({ path: `line ${p.line}`, message: p.message })));
  }
  if (lines.length > MAX_IMPORT_LINES) {
    throw new PayloadTooLargeError(`${lines.length} lines; at most ${MAX_IMPORT_LINES} per request`, {
      limitLines: MAX_IMPORT_LINES,
    });
  }
  const imported = zeroCounts();
  const skipped = zeroCounts();
  let requeued = 0;
  const now = ctx.clock().toISOString();
  const records = lines.filter((l) => importRank(l.kind) > 0);
  const jobs = records.filter((l) => l.kind === "job");
  const others = records.filter((l) => l.kind !== "job");

  await forEachConcurrent(others, IMPORT_CONCURRENCY, async (line) => {
    const kind = line.kind as RecordKind;
    const [table, item] = storedItem(line, now);
    if (await ctx.store.putIfAbsent(table, item)) imported[kind]++;
    else skipped[kind]++;
  });

  await forEachConcurrent(jobs, IMPORT_CONCURRENCY, async (line) => {
    if (line.kind !== "job") return;
    const restored = restoredJob(line.item, principal, now, ctx.retention);
    if (!(await ctx.store.putAllIfAbsent(restored.items))) {
      skipped.job++;
      return;
    }
    imported.job++;
    // No execution to start: the scheduler starts one when it admits the job.
    if (restored.requeued) requeued++;
  });

  const days = jobs.flatMap((l) => (l.kind === "job" ? [l.item.createdAt.slice(0, 10)] : []));
  const firstDay = days.sort()[0];
  if (firstDay) await ctx.store.recordFirstDayNoLaterThan(firstDay);

  logger.info("state imported", { imported, skipped, requeued });
  return { imported, skipped, requeued };
}

/** The item a record other than a job becomes, keyed from its kind and id alone. */
function storedItem(line: ExportLine, now: string): [StateTable, Record<string, unknown>] {
  switch (line.kind) {
    case "result":
      return ["jobs", { ...record(line.item), pk: jobPk(line.jobId), sk: RESULT_SK }];
    case "attempt":
      return [
        "jobs",
        { ...lostIfRunning(record(line.item), now), pk: jobPk(line.jobId), sk: attemptSk(line.item.attempt) },
      ];
    case "transition":
      return ["jobs", { ...record(line.item), pk: jobPk(line.jobId), sk: transitionSk(line.version) }];
    case "log":
      return ["jobs", { ...record(line.item), pk: jobPk(line.jobId), sk: logSk(line.logId) }];
    case "dependency":
      return [
        "jobs",
        { ...record(line.item), pk: jobPk(line.jobId), sk: dependsOnSk(line.on), parentId: line.on },
      ];
    case "dependent":
      return [
        "jobs",
        { ...record(line.item), pk: jobPk(line.jobId), sk: dependentSk(line.by), childId: line.by },
      ];
    case "policy":
      return ["policy", { ...record(line.item), pk: POLICY_PK, sk: POLICY_SK }];
    case "quota":
      return ["policy", { ...record(line.item), pk: principalPk(line.item.principal), sk: QUOTA_SK }];
    case "audit":
      return [
        "policy",
        { ...record(line.item), pk: AUDIT_PK, sk: auditId(line.item.at, line.item.kind, line.item.subject) },
      ];
    case "schedule": {
      const s = line.item;
      const dueAt = dueAtOf({
        id: s.id,
        enabled: s.enabled,
        nextRunAt: s.nextRunAt,
        jitterSeconds: s.jitterSeconds ?? 0,
      });
      return [
        "policy",
        {
          ...record(s),
          pk: scheduleItemPk(s.id),
          sk: SCHEDULE_SK,
          entity: "schedule",
          schedulesPk: SCHEDULES_PK,
          schedulesSk: schedulesSk(s.owner, s.id),
          ...(dueAt === null
            ? {}
            : { scheduleDuePk: SCHEDULE_DUE_PK, scheduleDueSk: scheduleDueSk(dueAt, s.id) }),
        },
      ];
    }
    default:
      throw new Error(`no stored item for a ${line.kind} line`);
  }
}

/** An attempt the old stack's worker was running has no worker here: it ended, lost, at the import. */
function lostIfRunning(attempt: Record<string, unknown>, now: string): Record<string, unknown> {
  if (attempt.status !== "running") return attempt;
  const started = typeof attempt.startedAt === "string" ? Date.parse(attempt.startedAt) : Number.NaN;
  return {
    ...attempt,
    status: "lost",
    finishedAt: now,
    durationMs: Number.isNaN(started) ? null : Math.max(0, Date.parse(now) - started),
    error: { type: "lost", message: "restored from an export: the old stack's worker is gone" },
  };
}

type JobRecord = Extract<ExportLine, { kind: "job" }>["item"];

interface RestoredJob {
  readonly id: string;
  readonly status: JobStatus;
  readonly version: number;
  readonly requeued: boolean;
  /** The job item, and for a requeued job the transition that says so: written together or not at all. */
  readonly items: Record<string, unknown>[];
}

const RESERVING: ReadonlySet<JobStatus> = new Set(["dispatched", "running"]);
export const RESTORED_REASON = "restored from an export: its attempt was lost with the old stack";

function restoredJob(job: JobRecord, principal: Principal, now: string, retention: Retention): RestoredJob {
  const fields = record(job);
  const items: Record<string, unknown>[] = [];
  let status: JobStatus = job.status;
  let version = job.version;
  if (RESERVING.has(job.status)) {
    // The reservation names a node of the old stack, which nothing here could release.
    delete fields.reservation;
    delete fields.attemptStartedAt;
    delete fields.reasonCode;
    status = "queued";
    version = job.version + 1;
    Object.assign(fields, { status, version, statusReason: RESTORED_REASON, queuedAt: now, updatedAt: now });
    items.push(
      transitionItem(
        job.id,
        version,
        {
          from: job.status,
          to: status,
          at: now,
          reason: RESTORED_REASON,
          triggeredBy: principal.id,
          attempt: job.attempts,
        },
        historyExpiresAt(retention, now, false),
      ),
    );
  }
  const text = (name: string): string | null =>
    typeof fields[name] === "string" ? (fields[name] as string) : null;
  const index = indexAttributes(
    {
      id: job.id,
      owner: job.owner,
      status,
      createdAt: job.createdAt,
      updatedAt: String(fields.updatedAt),
      priority: job.priority,
      pool: job.pool ?? null,
      deadline: text("deadline"),
      runAt: text("runAt"),
      nextAttemptAt: text("nextAttemptAt"),
      startedAt: text("startedAt"),
      scheduleId: text("scheduleId"),
      project: text("project"),
      queuedAt: text("queuedAt") ?? undefined,
      orderKey: text("orderKey") ?? undefined,
      reservation: fields.reservation as Reservation | undefined,
    },
    false,
  );
  items.unshift({ ...fields, pk: jobPk(job.id), sk: JOB_SK, entity: "job", ...index });
  return { id: job.id, status, version, requeued: items.length > 1, items };
}
