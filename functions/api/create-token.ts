import { createApiToken, tokensContext } from "../../app/tokens";
import { apiHandler, json, jsonBody, principalOf } from "../http";

const ctx = tokensContext();

/** A principal and a flag: a few dozen bytes. */
const MAX_TOKEN_BODY_BYTES = 4 * 1024;

/** POST /admin/tokens (admin): 201 with the new token's secret, shown this once. */
export const handler = apiHandler(async (event) => {
  const created = await createApiToken(ctx, principalOf(event), () => jsonBody(event, MAX_TOKEN_BODY_BYTES));
  // The secret must not linger in a cache between the server and the admin who asked for it.
  return json(201, created, { "cache-control": "no-store" });
});
