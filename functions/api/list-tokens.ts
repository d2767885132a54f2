import { listApiTokens, tokensContext } from "../../app/tokens";
import { pageQuerySchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, principalOf, queryParameters } from "../http";

/** GET /admin/tokens (admin): every token, oldest first; never a secret nor its hash. */
export const handler = apiHandler(async (event) => {
  const principal = principalOf(event);
  const query = parseRequest(pageQuerySchema, queryParameters(event));
  return json(200, await listApiTokens(tokensContext(), principal, query));
});
