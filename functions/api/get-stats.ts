import { getStats, statsContext } from "../../app/stats";
import { statsQuerySchema } from "../../core/api-schemas";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, principalOf, queryParameters } from "../http";

const ctx = statsContext();

/** GET /stats?window= — counts, throughput, percentiles per pool and type, owners (docs/stats.md). */
export const handler = apiHandler(async (event) => {
  const principal = principalOf(event);
  const query = parseRequest(statsQuerySchema, queryParameters(event));
  return json(200, await getStats(ctx, principal, query.window));
});
