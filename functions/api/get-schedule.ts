import { getSchedule, scheduleContext } from "../../app/schedules";
import { apiHandler, json, pathParameter, principalOf } from "../http";

const ctx = scheduleContext();

/** GET /schedules/{id}: the schedule with nextRunAt, nextRuns and lastFires. */
export const handler = apiHandler(async (event) => {
  return json(200, await getSchedule(ctx, principalOf(event), pathParameter(event, "id")));
});
