import { listApiTokens, tokensContext } from "../../app/tokens";
import { apiHandler, json, principalOf, queryParameters } from "../http";

const ctx = tokensContext();

/** GET /admin/tokens (admin): every token, oldest first; never a secret nor its hash. */
export const handler = apiHandler(async (event) =>
  json(200, await listApiTokens(ctx, principalOf(event), queryParameters(event))),
);
