import { listPools, poolsContext } from "../../app/pools";
import { apiHandler, json, principalOf } from "../http";

/** GET /pools: every pool, its capacity and nodes. Any authenticated principal may read it. */
export const handler = apiHandler(async (event) => {
  principalOf(event);
  const items = await listPools(poolsContext());
  return json(200, { items, nextCursor: null });
});
