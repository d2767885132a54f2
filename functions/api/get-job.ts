import { getJobView } from "../../app/queries";
import { queueContext } from "../../app/queue";
import { apiHandler, json, pathParameter, principalOf } from "../http";

const ctx = queueContext();

/** GET /jobs/{id} */
export const handler = apiHandler(async (event) => {
  const job = await getJobView(ctx, principalOf(event), pathParameter(event, "id"));
  return json(200, job);
});
