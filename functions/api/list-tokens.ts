import { listApiTokens, tokensContext } from "../../app/tokens";
import { apiHandler, json, principalOf, queryParameters } from "../http";

/** GET /admin/tokens (admin): every token, oldest first; never a secret nor its hash. */
export const handler = apiHandler(async (event) =>
  json(200, await listApiTokens(tokensContext(), principalOf(event), queryParameters(event))),
);
