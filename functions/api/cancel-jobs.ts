import { cancelJobs } from "../../app/bulk";
import { appContext } from "../../app/runtime";
import { bulkCancelSchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, jsonBody, principalOf } from "../http";

const ctx = appContext();

const MAX_BODY_BYTES = 16 * 1024;

/** POST /jobs/cancel: one page of the caller's jobs matching GET /jobs's filters, cancelled. */
export const handler = apiHandler(async (event) => {
  const principal = principalOf(event);
  const request = parseRequest(bulkCancelSchema, jsonBody(event, MAX_BODY_BYTES));
  return json(200, await cancelJobs(ctx, principal, request));
});
