import { z } from "zod";
import { listPools, poolsContext } from "../../app/pools";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, principalOf, queryParameters } from "../http";

/**
 * `?lost=true` adds the nodes marked lost, which stay in the table until the reconciler prunes
 * them (up to an hour) and would otherwise crowd out the live ones.
 */
const poolsQuerySchema = z.strictObject({
  lost: z.enum(["true", "false"]).default("false"),
});

/** GET /pools: every pool, its capacity and nodes. Any authenticated principal may read it. */
export const handler = apiHandler(async (event) => {
  principalOf(event);
  const query = parseRequest(poolsQuerySchema, queryParameters(event));
  const items = await listPools(poolsContext(), { lost: query.lost === "true" });
  return json(200, { items, nextCursor: null });
});
