import { listPools, poolsContext } from "../../app/pools";
import { poolsQuerySchema } from "../../core/api-schemas";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, principalOf, queryParameters } from "../http";

const ctx = poolsContext();

/** GET /pools: every pool, its capacity and nodes. Any authenticated principal may read it. */
export const handler = apiHandler(async (event) => {
  principalOf(event);
  const query = parseRequest(poolsQuerySchema, queryParameters(event));
  const items = await listPools(ctx, { lost: query.lost === "true" });
  return json(200, { items, nextCursor: null });
});
