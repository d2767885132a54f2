import { auditContext, listAudit } from "../../app/audit";
import { apiHandler, json, principalOf, queryParameters } from "../http";

const ctx = auditContext();

/** GET /admin/audit (admin, auditor): changes to policy, quotas, tokens, schedules, nodes; newest first. */
export const handler = apiHandler(async (event) =>
  json(200, await listAudit(ctx, principalOf(event), queryParameters(event))),
);
