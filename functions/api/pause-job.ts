import { pauseJob } from "../../app/actions";
import { appContext } from "../../app/runtime";
import { apiHandler, json, pathParameter, principalOf } from "../http";

/** POST /jobs/{id}/pause */
export const handler = apiHandler(async (event) => {
  return json(200, await pauseJob(appContext(), principalOf(event), pathParameter(event, "id")));
});
