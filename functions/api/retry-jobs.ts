import { retryJobs } from "../../app/bulk";
import { appContext } from "../../app/runtime";
import { bulkRetrySchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, jsonBody, principalOf } from "../http";

const ctx = appContext();

const MAX_BODY_BYTES = 16 * 1024;

/** POST /jobs/retry: one page of the caller's jobs matching GET /jobs's filters, retried. */
export const handler = apiHandler(async (event) => {
  const principal = principalOf(event);
  const request = parseRequest(bulkRetrySchema, jsonBody(event, MAX_BODY_BYTES));
  return json(200, await retryJobs(ctx, principal, request));
});
