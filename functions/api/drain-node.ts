import { drainNode, poolsContext } from "../../app/pools";
import { systemClock } from "../../app/runtime";
import { apiHandler, json, pathParameter, principalOf } from "../http";

const ctx = poolsContext();

/**
 * POST /pools/{pool}/nodes/{id}/drain (admin): 202 with the node now draining, 200 with it when
 * it already was (a repeated drain changes nothing).
 */
export const handler = apiHandler(async (event) => {
  const principal = principalOf(event);
  const answer = await drainNode(
    { ...ctx, clock: systemClock },
    principal,
    pathParameter(event, "pool"),
    pathParameter(event, "id"),
  );
  return json(answer.started ? 202 : 200, answer.node);
});
