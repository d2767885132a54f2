import { cancelJob } from "../../app/actions";
import { appContext } from "../../app/runtime";
import { apiHandler, json, pathParameter, principalOf } from "../http";

const ctx = appContext();

/** PATCH /jobs/{id}/cancel: the job and, transitively, its dependents. */
export const handler = apiHandler(async (event) => {
  return json(200, await cancelJob(ctx, principalOf(event), pathParameter(event, "id")));
});
