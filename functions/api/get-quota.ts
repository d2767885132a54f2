import { getQuota } from "../../app/policy";
import { appContext } from "../../app/runtime";
import { apiHandler, json, pathParameter, principalOf } from "../http";

const ctx = appContext();

/** GET /quotas/{principal} (self or admin): limits, usage, what remains, the 80 % warning. */
export const handler = apiHandler(async (event) => {
  const quota = await getQuota(ctx, principalOf(event), pathParameter(event, "principal"));
  return json(200, quota);
});
