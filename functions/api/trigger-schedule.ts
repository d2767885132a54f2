import { validateKey } from "../../app/idempotency";
import { scheduleContext, triggerSchedule } from "../../app/schedules";
import { apiHandler, header, json, pathParameter, principalOf } from "../http";

const ctx = scheduleContext();

/**
 * POST /schedules/{id}/trigger: fire once now. 201 with the job; 200 with the skipped fire when
 * overlap=skip holds it back; a refused submission (maxQueuedJobs: 429, a type or pool gone: 400)
 * answers its error, after the refused fire is recorded in lastFires. With an Idempotency-Key, a
 * retry answers the first trigger's job with 200 and `Idempotent-Replayed: true`, as POST /jobs.
 */
export const handler = apiHandler(async (event) => {
  const key = header(event, "Idempotency-Key");
  const outcome = await triggerSchedule(
    ctx,
    principalOf(event),
    pathParameter(event, "id"),
    key === undefined ? undefined : validateKey(key),
  );
  if (outcome.refusal) throw outcome.refusal;
  if (!outcome.job) return json(200, outcome.fire);
  return outcome.replayed
    ? json(200, outcome.job, { "Idempotent-Replayed": "true" })
    : json(201, outcome.job);
});
