import { listLogs } from "../../app/queries";
import { appContext } from "../../app/runtime";
import { listLogsQuerySchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, pathParameter, principalOf, queryParameters } from "../http";

const ctx = appContext();

/** GET /jobs/{id}/logs: task lines and lifecycle lines, in time order. */
export const handler = apiHandler(async (event) => {
  const query = parseRequest(listLogsQuerySchema, queryParameters(event));
  return json(200, await listLogs(ctx, principalOf(event), pathParameter(event, "id"), query));
});
