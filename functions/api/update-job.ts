import { reprioritizeJob } from "../../app/actions";
import { moveJobBefore } from "../../app/reorder";
import { appContext } from "../../app/runtime";
import { ValidationError } from "../../core/errors";
import { updateJobSchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, jsonBody, pathParameter, principalOf } from "../http";

const MAX_BODY_BYTES = 16 * 1024;

const ctx = appContext();

/**
 * PATCH /jobs/{id}: change the priority of a job that has not ended, or (admins) move a queued
 * job just ahead of another (`before`).
 */
export const handler = apiHandler(async (event) => {
  const principal = principalOf(event);
  const request = parseRequest(updateJobSchema, jsonBody(event, MAX_BODY_BYTES));
  const id = pathParameter(event, "id");
  if (request.before !== undefined) return json(200, await moveJobBefore(ctx, principal, id, request.before));
  if (request.priority !== undefined)
    return json(200, await reprioritizeJob(ctx, principal, id, request.priority));
  // The schema already refuses a body with neither; kept so the types need no assertion.
  throw new ValidationError([{ path: "priority", message: "give priority or before" }]);
});
