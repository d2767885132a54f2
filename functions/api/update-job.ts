import { reprioritizeJob } from "../../app/actions";
import { appContext } from "../../app/runtime";
import { updateJobSchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, jsonBody, pathParameter, principalOf } from "../http";

const MAX_BODY_BYTES = 16 * 1024;

/** PATCH /jobs/{id}: change the priority of a job that has not ended. */
export const handler = apiHandler(async (event) => {
  const principal = principalOf(event);
  const request = parseRequest(updateJobSchema, jsonBody(event, MAX_BODY_BYTES));
  return json(
    200,
    await reprioritizeJob(appContext(), principal, pathParameter(event, "id"), request.priority),
  );
});
