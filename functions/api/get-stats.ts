import { z } from "zod";
import { getStats, statsContext } from "../../app/stats";
import { STATS_WINDOWS } from "../../core/stats";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, principalOf, queryParameters } from "../http";

const statsQuerySchema = z.strictObject({ window: z.enum(STATS_WINDOWS).default("1h") });

/** GET /stats?window= — counts, throughput, percentiles per pool and type, owners (docs/stats.md). */
export const handler = apiHandler(async (event) => {
  const principal = principalOf(event);
  const query = parseRequest(statsQuerySchema, queryParameters(event));
  return json(200, await getStats(statsContext(), principal, query.window));
});
