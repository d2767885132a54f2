import { getJobView } from "../../app/queries";
import { appContext } from "../../app/runtime";
import { apiHandler, json, pathParameter, principalOf } from "../http";

/** GET /jobs/{id} */
export const handler = apiHandler(async (event) => {
  const job = await getJobView(appContext(), principalOf(event), pathParameter(event, "id"));
  return json(200, job);
});
