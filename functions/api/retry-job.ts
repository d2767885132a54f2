import { retryJob } from "../../app/retry";
import { appContext } from "../../app/runtime";
import { retryJobSchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, jsonBody, pathParameter, principalOf } from "../http";

const ctx = appContext();

const MAX_BODY_BYTES = 16 * 1024;

/**
 * POST /jobs/{id}/retry: a failed, cancelled or escalated job back to waiting with a new attempt
 * budget. The body is optional (`{}`: the job's own maxAttempts, its dependents left as they are).
 */
export const handler = apiHandler(async (event) => {
  const principal = principalOf(event);
  const empty = event.body === null || event.body === undefined || event.body.trim() === "";
  const request = parseRequest(retryJobSchema, empty ? {} : jsonBody(event, MAX_BODY_BYTES));
  return json(200, await retryJob(ctx, principal, pathParameter(event, "id"), request));
});
