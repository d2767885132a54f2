import { listSchedules, scheduleContext } from "../../app/schedules";
import { listSchedulesQuerySchema } from "../../core/schedule";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, principalOf, queryParameters } from "../http";

const ctx = scheduleContext();

/** GET /schedules: the caller's schedules (admins: everyone's, or `?owner=`'s). */
export const handler = apiHandler(async (event) => {
  const query = parseRequest(listSchedulesQuerySchema, queryParameters(event));
  return json(200, await listSchedules(ctx, principalOf(event), query));
});
