import { z } from "zod";
import { AUDIT_KINDS, type AuditRecord, listAuditQuerySchema } from "../core/audit";
import { ForbiddenError } from "../core/errors";
import type { Principal } from "../core/principal";
import { parseRequest } from "../core/validation";
import { AuditLog } from "../store/audit";
import { decodeCursor, encodeCursor } from "../store/cursor";
import { createDocumentClient } from "../store/dynamo";
import { config } from "./config";

/**
 * GET /admin/audit: the audit trail, newest first. Admins and auditors (an admin's read-only
 * token) read it; users and readers get 403 — the trail names every principal's quotas and tokens,
 * so it is an admin's view, and "not allowed" is the honest answer (nothing here can leak a job).
 */

export interface AuditContext {
  readonly audit: AuditLog;
}

let cached: AuditContext | undefined;

export function auditContext(): AuditContext {
  if (!cached) {
    const c = config();
    cached = {
      audit: new AuditLog(
        createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint }),
        c.policyTable,
      ),
    };
  }
  return cached;
}

/** Only what the store writes as a record's id: a time, a kind, a subject without `#`. */
const auditCursorSchema = z.strictObject({
  before: z
    .string()
    .max(400)
    .regex(
      new RegExp(
        `^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z#(${AUDIT_KINDS.join("|")})#[A-Za-z0-9._@/-]{1,300}$`,
      ),
      "is not a position in the audit trail",
    ),
});

export async function listAudit(
  ctx: AuditContext,
  principal: Principal,
  query: unknown,
): Promise<{ items: AuditRecord[]; nextCursor: string | null }> {
  if (!principal.admin) throw new ForbiddenError("only an admin or an auditor may read the audit trail");
  const options = parseRequest(listAuditQuerySchema, query);
  const cursor = decodeCursor(options.cursor, auditCursorSchema);
  const page = await ctx.audit.list({
    kind: options.kind,
    // Normalized to the stored form, so `...:00Z` and `...:00.000Z` mean the same instant.
    since: options.since === undefined ? undefined : new Date(options.since).toISOString(),
    before: cursor?.before,
    limit: options.limit,
  });
  return {
    items: page.items,
    nextCursor: page.lastId === undefined ? null : encodeCursor({ before: page.lastId }),
  };
}
