import { scheduleContext, updateSchedule } from "../../app/schedules";
import { assertPayloadSizes } from "../../app/submit";
import { updateScheduleSchema } from "../../core/schedule";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, jsonBody, pathParameter, principalOf } from "../http";

const ctx = scheduleContext();

/** A schedule's body: its job template (payload ≤ 256 KiB, as POST /jobs) plus room for the rest. */
export const MAX_SCHEDULE_BODY_BYTES = 288 * 1024;

/** PATCH /schedules/{id}: any of name, cron, timezone, enabled, overlap, jitterSeconds, job. */
export const handler = apiHandler(async (event) => {
  const body = jsonBody(event, MAX_SCHEDULE_BODY_BYTES);
  assertPayloadSizes((body as { job?: unknown } | null)?.job, false);
  const patch = parseRequest(updateScheduleSchema, body);
  return json(200, await updateSchedule(ctx, principalOf(event), pathParameter(event, "id"), patch));
});
