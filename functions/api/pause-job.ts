import { pauseJob } from "../../app/actions";
import { appContext } from "../../app/runtime";
import { apiHandler, json, pathParameter, principalOf } from "../http";

const ctx = appContext();

/** POST /jobs/{id}/pause */
export const handler = apiHandler(async (event) => {
  return json(200, await pauseJob(ctx, principalOf(event), pathParameter(event, "id")));
});
