import { resumeJob } from "../../app/actions";
import { appContext } from "../../app/runtime";
import { apiHandler, json, pathParameter, principalOf } from "../http";

const ctx = appContext();

/** POST /jobs/{id}/resume: paused → whatever status now applies. */
export const handler = apiHandler(async (event) => {
  return json(200, await resumeJob(ctx, principalOf(event), pathParameter(event, "id")));
});
