import { requestHash, validateKey } from "../../app/idempotency";
import { appContext } from "../../app/runtime";
import { assertPayloadSizes, lambdaBudget, submitJobs } from "../../app/submit";
import { submitBatchSchema } from "../../core/job";
import { parseRequest } from "../../core/validation";
import { apiHandler, header, json, jsonBody, principalOf } from "../http";

const ctx = appContext();

/** Lambda's own limit for a synchronous request; each payload is still held to 256 KiB. */
export const MAX_BATCH_BODY_BYTES = 6 * 1024 * 1024 - 1024;

/** POST /jobs/batch: a DAG, all or nothing. */
export const handler = apiHandler(async (event, context) => {
  const principal = principalOf(event);
  const body = jsonBody(event, MAX_BATCH_BODY_BYTES);
  assertPayloadSizes(body, true);
  const request = parseRequest(submitBatchSchema, body);
  const key = header(event, "Idempotency-Key");
  const result = await submitJobs(ctx, {
    principal,
    // Answer before the function is stopped: finish, or roll back and say so (never a 500 for jobs that exist).
    budget: lambdaBudget(context),
    jobs: request.jobs,
    idempotency:
      key === undefined
        ? undefined
        : { key: validateKey(key), requestHash: requestHash("POST /jobs/batch", body) },
  });
  const response = { jobs: result.jobs, refs: result.refs };
  return result.replayed ? json(200, response, { "Idempotent-Replayed": "true" }) : json(201, response);
});
