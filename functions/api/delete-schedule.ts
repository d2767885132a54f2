import { deleteSchedule, scheduleContext } from "../../app/schedules";
import { apiHandler, pathParameter, principalOf } from "../http";

const ctx = scheduleContext();

/** DELETE /schedules/{id}: 204 with no body; the jobs it fired stay. */
export const handler = apiHandler(async (event) => {
  await deleteSchedule(ctx, principalOf(event), pathParameter(event, "id"));
  return { statusCode: 204, headers: {}, body: "" };
});
