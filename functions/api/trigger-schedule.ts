import { scheduleContext, triggerSchedule } from "../../app/schedules";
import { apiHandler, json, pathParameter, principalOf } from "../http";

/**
 * POST /schedules/{id}/trigger: fire once now. 201 with the job; 200 with the skipped fire when
 * overlap=skip holds it back; a refused submission (maxQueuedJobs: 429, a type or pool gone: 400)
 * answers its error, after the refused fire is recorded in lastFires.
 */
export const handler = apiHandler(async (event) => {
  const outcome = await triggerSchedule(scheduleContext(), principalOf(event), pathParameter(event, "id"));
  if (outcome.refusal) throw outcome.refusal;
  return outcome.job ? json(201, outcome.job) : json(200, outcome.fire);
});
