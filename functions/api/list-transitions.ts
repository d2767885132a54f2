import { listTransitions } from "../../app/queries";
import { appContext } from "../../app/runtime";
import { pageQuerySchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, pathParameter, principalOf, queryParameters } from "../http";

const ctx = appContext();

/** GET /jobs/{id}/transitions */
export const handler = apiHandler(async (event) => {
  const query = parseRequest(pageQuerySchema, queryParameters(event));
  return json(200, await listTransitions(ctx, principalOf(event), pathParameter(event, "id"), query));
});
