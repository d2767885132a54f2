import { putPolicy } from "../../app/policy";
import { appContext } from "../../app/runtime";
import { apiHandler, json, jsonBody, principalOf } from "../http";

const ctx = appContext();

/** A policy is a few settings and two maps; 64 KiB holds thousands of types and owners. */
export const MAX_POLICY_BODY_BYTES = 64 * 1024;

/** PUT /admin/policy (admin): replaces the whole policy. */
export const handler = apiHandler(async (event) => {
  const policy = await putPolicy(ctx, principalOf(event), () => jsonBody(event, MAX_POLICY_BODY_BYTES));
  return json(200, policy);
});
