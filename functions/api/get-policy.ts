import { getPolicy } from "../../app/policy";
import { appContext } from "../../app/runtime";
import { apiHandler, json, principalOf } from "../http";

const ctx = appContext();

/** GET /admin/policy (admin) */
export const handler = apiHandler(async (event) => {
  return json(200, await getPolicy(ctx, principalOf(event)));
});
