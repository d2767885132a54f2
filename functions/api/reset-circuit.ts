import { circuitBreakers } from "../../app/circuits";
import { appContext } from "../../app/runtime";
import { apiHandler, json, pathParameter, principalOf, queryParameters } from "../http";

const ctx = appContext();

/** POST /admin/circuits/{type}/reset[?owner=] (admin): closes the breaker. */
export const handler = apiHandler(async (event) =>
  json(
    200,
    await circuitBreakers(ctx).reset(
      principalOf(event),
      pathParameter(event, "type"),
      queryParameters(event),
    ),
  ),
);
