import { z } from "zod";
import { apiResponses } from "./api-schemas";
import { AUDIT_KINDS } from "./audit";
import { JOB_STATUSES } from "./job-statuses";

/**
 * The export format of GET /admin/export and POST /admin/import (docs/admin-api.md): NDJSON, one
 * object per line, each with a `kind`. Records are the stored items of the Jobs and Policy tables
 * without their keys and index attributes: the importer rebuilds those from the record, so a line
 * can only ever land where its kind and id say, and no index can disagree with its item.
 *
 * Deliberately left out: API tokens (their hashes are as good as the tokens for anyone who can
 * write a Tokens table; a restored stack gets new ones with `jobq tokens bootstrap`), idempotency
 * claims (24 h), GPU usage, run-time statistics and /stats figures (derived, and expiring within
 * days), and nodes and leases (they belong to the old stack's workers).
 */

export const EXPORT_FORMAT = "jobq-export";
export const EXPORT_VERSION = 1;

/** The largest item DynamoDB stores (400 KB, names included): a bigger record is refused as a bad line. */
const MAX_RECORD_BYTES = 400 * 1000;
/** DynamoDB refuses documents nested deeper than 32 levels; the stored items nest a few at most. */
const MAX_RECORD_DEPTH = 32;

const ulid = /[0-9A-HJKMNP-TV-Z]{26}/;
export const exportJobIdSchema = z.string().regex(new RegExp(`^job_${ulid.source}$`), "is not a job id");
const isoTime = z.iso.datetime({ offset: true });

/**
 * A stored record: any JSON object whose values DynamoDB can hold (finite numbers, bounded
 * nesting and size). Its keys and index attributes are dropped on import whatever it carries.
 */
const recordSchema = z.record(z.string().min(1).max(255), z.unknown()).superRefine((record, ctx) => {
  const problem = storableProblem(record);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

function storableProblem(record: Record<string, unknown>): string | null {
  if (JSON.stringify(record).length > MAX_RECORD_BYTES) return `is larger than ${MAX_RECORD_BYTES} bytes`;
  const stack: [unknown, number][] = [[record, 0]];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [value, depth] = next;
    if (typeof value === "number" && !Number.isFinite(value)) return "holds a number DynamoDB cannot store";
    if (value === null || typeof value !== "object") continue;
    if (depth >= MAX_RECORD_DEPTH) return `nests deeper than ${MAX_RECORD_DEPTH} levels`;
    for (const child of Object.values(value)) stack.push([child, depth + 1]);
  }
  return null;
}

/** JSON text that parses: how payloads, tags, constraints and templates are stored. */
const jsonText = z.string().refine((text) => {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}, "is not JSON text");

/** What a job record must hold for every reader of the job (app/queries.ts, the scheduler) to work. */
export const jobRecordSchema = z.looseObject({
  id: exportJobIdSchema,
  type: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/),
  status: z.enum(JOB_STATUSES),
  statusReason: z.string(),
  owner: z.string().min(1),
  priority: z.number().int().min(-10).max(10),
  version: z.number().int().min(1),
  attempts: z.number().int().min(0),
  unmet: z.number().int().min(0),
  createdAt: isoTime,
  updatedAt: isoTime,
  /** Absent when null: a job item stores it only when set (store/job-items.ts STORED_WHEN_SET). */
  pool: z.string().min(1).nullable().optional(),
  resources: z.looseObject({ cpu: z.number(), memoryMb: z.number(), gpu: z.number() }),
  payloadJson: jsonText,
  tagsJson: jsonText,
  constraintsJson: jsonText,
  /** Absent on a job without a project (issue 13); a name as POST /jobs accepts it otherwise. */
  project: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/)
    .optional(),
});

const jobPartition = { jobId: exportJobIdSchema, item: recordSchema };

export const exportLineSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("header"),
    format: z.literal(EXPORT_FORMAT),
    version: z.literal(EXPORT_VERSION),
    exportedAt: isoTime,
  }),
  /** The last line of each page of GET /admin/export; ignored by the import. */
  z.strictObject({ kind: z.literal("cursor"), nextCursor: z.string().nullable() }),
  z.strictObject({ kind: z.literal("job"), item: z.intersection(recordSchema, jobRecordSchema) }),
  z.strictObject({ kind: z.literal("result"), ...jobPartition }),
  z.strictObject({
    kind: z.literal("attempt"),
    ...jobPartition,
    item: z.intersection(
      recordSchema,
      z.looseObject({ attempt: z.number().int().min(1).max(9999), status: z.string().min(1) }),
    ),
  }),
  z.strictObject({
    kind: z.literal("transition"),
    ...jobPartition,
    item: z.intersection(
      recordSchema,
      z.looseObject({ to: z.enum(JOB_STATUSES), at: isoTime, reason: z.string() }),
    ),
    version: z.number().int().min(0).max(9_999_999_999),
  }),
  z.strictObject({
    kind: z.literal("log"),
    ...jobPartition,
    logId: z.string().regex(new RegExp(`^${ulid.source}$`), "is not a log line id"),
  }),
  /** A "waits on" (`on`: the parent) or "waited on by" (`by`: the child) edge in the job's partition. */
  z.strictObject({ kind: z.literal("dependency"), ...jobPartition, on: exportJobIdSchema }),
  z.strictObject({ kind: z.literal("dependent"), ...jobPartition, by: exportJobIdSchema }),
  z.strictObject({
    kind: z.literal("schedule"),
    item: z.intersection(
      recordSchema,
      z.looseObject({
        id: z.string().min(1).max(128),
        owner: z.string().min(1),
        enabled: z.boolean(),
        nextRunAt: isoTime.nullable(),
        jitterSeconds: z.number().int().min(0).optional(),
        version: z.number().int().min(0),
        jobJson: jsonText,
      }),
    ),
  }),
  z.strictObject({
    kind: z.literal("policy"),
    item: z.intersection(recordSchema, z.looseObject({ policyJson: jsonText })),
  }),
  z.strictObject({
    kind: z.literal("quota"),
    item: z.intersection(recordSchema, z.looseObject({ principal: z.string().min(1) })),
  }),
  /** A record of the audit trail (GET /admin/audit): who changed what, when, before and after. */
  z.strictObject({
    kind: z.literal("audit"),
    item: z.intersection(
      recordSchema,
      z.looseObject({
        at: isoTime,
        kind: z.enum(AUDIT_KINDS),
        // The record's key is `<at>#<kind>#<subject>`: a subject never holds `#`.
        subject: z
          .string()
          .min(1)
          .max(512)
          .regex(/^[^#]*$/, "may not contain #"),
        principal: z.string().min(1),
      }),
    ),
  }),
]);

exportLineSchema.register(apiResponses, { id: "ExportLine" });

export type ExportLine = z.output<typeof exportLineSchema>;
export type ExportKind = ExportLine["kind"];
/** The kinds that are state (counted by the import), as opposed to the header and cursor lines. */
export type RecordKind = Exclude<ExportKind, "header" | "cursor">;
export const RECORD_KINDS = [
  "job",
  "result",
  "attempt",
  "transition",
  "log",
  "dependency",
  "dependent",
  "schedule",
  "policy",
  "quota",
  "audit",
] as const satisfies readonly RecordKind[];

/**
 * The order an import applies a page's records in, and the CLI sends a file's: a job last, after
 * the edges, attempts and history that belong to it. An imported job may be admitted and finish
 * at once, and its completion walks its `dependent` edges: they must be there by then.
 */
export function importRank(kind: ExportKind): number {
  return kind === "job" ? 2 : kind === "header" || kind === "cursor" ? 0 : 1;
}

/** One problem per bad line, numbered from 1 as an editor shows them. */
export interface LineProblem {
  readonly line: number;
  readonly message: string;
}

/** Parses an NDJSON page: the lines, or every line's problem (blank lines are skipped). */
export function parseExportLines(text: string): { lines: ExportLine[]; problems: LineProblem[] } {
  const lines: ExportLine[] = [];
  const problems: LineProblem[] = [];
  text.split("\n").forEach((raw, index) => {
    if (raw.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (error) {
      problems.push({ line: index + 1, message: `is not JSON: ${(error as Error).message}` });
      return;
    }
    const parsed = exportLineSchema.safeParse(value);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      const where = first?.path.length ? `${first.path.join(".")}: ` : "";
      problems.push({ line: index + 1, message: `${where}${first?.message ?? "is not an export line"}` });
      return;
    }
    lines.push(parsed.data);
  });
  return { lines, problems };
}

const kindCountsSchema = z.object(
  Object.fromEntries(RECORD_KINDS.map((kind) => [kind, z.number().int().min(0)])) as Record<
    RecordKind,
    z.ZodNumber
  >,
);

/** POST /admin/import's answer. */
export const importSummarySchema = z
  .object({
    imported: kindCountsSchema.describe("records written, per kind"),
    skipped: kindCountsSchema.describe("records already present (same key), left as they were, per kind"),
    requeued: z
      .number()
      .int()
      .min(0)
      .describe("jobs the old stack had dispatched or running, imported as queued"),
  })
  .register(apiResponses, { id: "ImportSummary" });
