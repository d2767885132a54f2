import { createSchedule, scheduleContext } from "../../app/schedules";
import { assertPayloadSizes } from "../../app/submit";
import { createScheduleSchema } from "../../core/schedule";
import { parseRequest } from "../../core/validation";
import { apiHandler, json, jsonBody, principalOf } from "../http";
import { MAX_SCHEDULE_BODY_BYTES } from "./update-schedule";

const ctx = scheduleContext();

/** POST /schedules */
export const handler = apiHandler(async (event) => {
  const body = jsonBody(event, MAX_SCHEDULE_BODY_BYTES);
  // The template's payload is held to POST /jobs's limit, with POST /jobs's 413.
  assertPayloadSizes((body as { job?: unknown } | null)?.job, false);
  const request = parseRequest(createScheduleSchema, body);
  return json(201, await createSchedule(ctx, principalOf(event), request));
});
