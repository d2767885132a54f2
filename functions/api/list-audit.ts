import { auditContext, listAudit } from "../../app/audit";
import { apiHandler, json, principalOf, queryParameters } from "../http";

/** GET /admin/audit (admin, auditor): changes to policy, quotas, tokens, schedules, nodes; newest first. */
export const handler = apiHandler(async (event) =>
  json(200, await listAudit(auditContext(), principalOf(event), queryParameters(event))),
);
