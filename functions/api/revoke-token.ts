import { revokeApiToken, tokensContext } from "../../app/tokens";
import { apiHandler, json, pathParameter, principalOf } from "../http";

const ctx = tokensContext();

/** DELETE /admin/tokens/{id} (admin): 200 with the revoked token; again, the same answer. */
export const handler = apiHandler(async (event) => {
  const token = await revokeApiToken(ctx, principalOf(event), pathParameter(event, "id"));
  return json(200, token);
});
