import { listJobs } from "../../app/queries";
import { appContext } from "../../app/runtime";
import { listJobsQuerySchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, principalOf, queryParameters } from "../http";

const ctx = appContext();

/** GET /jobs: newest first, filtered, paginated. */
export const handler = apiHandler(async (event) => {
  const query = parseRequest(listJobsQuerySchema, queryParameters(event));
  return json(200, await listJobs(ctx, principalOf(event), query));
});
