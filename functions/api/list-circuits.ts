import { circuitBreakers } from "../../app/circuits";
import { appContext } from "../../app/runtime";
import { apiHandler, json, principalOf, queryParameters } from "../http";

const ctx = appContext();

/** GET /admin/circuits (admin): the circuit breakers per task type, with their history on request. */
export const handler = apiHandler(async (event) =>
  json(200, await circuitBreakers(ctx).list(principalOf(event), queryParameters(event))),
);
