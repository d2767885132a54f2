import { z } from "zod";
import { pageQuerySchema } from "./job";

/**
 * The audit trail (GET /admin/audit): one record per change an operator made to how jobq runs —
 * the policy, a quota, a token, a schedule, a node drain — saying who, when, what, and the thing
 * before and after. Pure: the record is written in the same DynamoDB transaction as the change
 * (store/audit.ts), so a change is never unrecorded.
 */

export const AUDIT_KINDS = ["policy", "quota", "token", "schedule", "node", "circuit"] as const;
export type AuditKind = (typeof AUDIT_KINDS)[number];

export const AUDIT_ACTIONS = [
  "update",
  "create",
  "delete",
  "revoke",
  "enable",
  "disable",
  "drain",
  "reset",
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** Days an audit record is kept (DynamoDB TTL): a year and a bit, so last year's review can read it. */
export const AUDIT_RETENTION_DAYS = 400;

export interface AuditRecord {
  /** Opaque and unique: `<at>#<kind>#<subject>`, newest sorts last. */
  readonly id: string;
  /** When the change took effect (ISO-8601 UTC). */
  readonly at: string;
  /** Who made it: the token's principal. */
  readonly principal: string;
  readonly kind: AuditKind;
  /** Which one: `policy`, the quota's principal, the token id, the schedule id, `<pool>/<node id>`. */
  readonly subject: string;
  readonly action: AuditAction;
  /** The thing before the change; null when it did not exist (or, for the policy, none was stored). */
  readonly before: unknown;
  /** The thing after it; null when the change deleted it. Never a secret nor a token's hash. */
  readonly after: unknown;
}

/** Principals, ids and `policy` never contain `#`, so the id splits back unambiguously. */
export function auditId(at: string, kind: AuditKind, subject: string): string {
  return `${at}#${kind}#${subject}`;
}

export function auditRecord(fields: Omit<AuditRecord, "id">): AuditRecord {
  return { id: auditId(fields.at, fields.kind, fields.subject), ...fields };
}

/** GET /admin/audit's query: a page of records, newest first, of one kind and/or since a time. */
export const listAuditQuerySchema = pageQuerySchema.extend({
  kind: z.enum(AUDIT_KINDS).optional().describe("only records of this kind of change"),
  since: z.iso.datetime().optional().describe("only changes made at or after this time"),
});
export type ListAuditQuery = z.output<typeof listAuditQuerySchema>;

/** When a record written at `at` expires, in epoch seconds (the table's TTL attribute). */
export function auditExpiresAt(at: string, days: number = AUDIT_RETENTION_DAYS): number {
  return Math.floor(Date.parse(at) / 1000) + days * 86_400;
}
