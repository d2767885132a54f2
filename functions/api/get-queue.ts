import { getQueue, queueContext } from "../../app/queue";
import { queueQuerySchema } from "../../core/api-schemas";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, principalOf, queryParameters } from "../http";

const ctx = queueContext();

/** GET /queue?pool= — counts, pools and the first queued jobs in admission order. */
export const handler = apiHandler(async (event) => {
  const principal = principalOf(event);
  const query = parseRequest(queueQuerySchema, queryParameters(event));
  return json(200, await getQueue(ctx, principal, query.pool));
});
