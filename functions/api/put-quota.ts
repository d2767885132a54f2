import { putQuota } from "../../app/policy";
import { appContext } from "../../app/runtime";
import { apiHandler, json, jsonBody, pathParameter, principalOf } from "../http";

const ctx = appContext();

const MAX_QUOTA_BODY_BYTES = 4 * 1024;

/** PUT /quotas/{principal} (admin): replaces the principal's limits. */
export const handler = apiHandler(async (event) => {
  const quota = await putQuota(ctx, principalOf(event), pathParameter(event, "principal"), () =>
    jsonBody(event, MAX_QUOTA_BODY_BYTES),
  );
  return json(200, quota);
});
