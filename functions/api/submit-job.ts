import { requestHash, validateKey } from "../../app/idempotency";
import { appContext } from "../../app/runtime";
import { assertPayloadSizes, lambdaBudget, submitJobs } from "../../app/submit";
import { submitJobSchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, header, json, jsonBody, principalOf } from "../http";

const ctx = appContext();

/** A job's body: its payload (≤ 256 KiB, checked on its own) plus room for every other field. */
export const MAX_SUBMIT_BODY_BYTES = 288 * 1024;

/** POST /jobs */
export const handler = apiHandler(async (event, context) => {
  const principal = principalOf(event);
  const body = jsonBody(event, MAX_SUBMIT_BODY_BYTES);
  assertPayloadSizes(body, false);
  const { array, ...request } = parseRequest(submitJobSchema, body);
  const key = header(event, "Idempotency-Key");
  const result = await submitJobs(ctx, {
    principal,
    // Answer before the function is stopped: finish, or roll back and say so (never a 500 for jobs that exist).
    budget: lambdaBudget(context),
    jobs: [request],
    // An array job (app/arrays.ts): the parent is answered, its children are written with it.
    array,
    idempotency:
      key === undefined ? undefined : { key: validateKey(key), requestHash: requestHash("POST /jobs", body) },
  });
  const job = result.jobs[0];
  return result.replayed ? json(200, job, { "Idempotent-Replayed": "true" }) : json(201, job);
});
