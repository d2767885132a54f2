import { z } from "zod";
import { ForbiddenError, ValidationError } from "../core/errors";
import { projectNameSchema } from "../core/job";
import { type Policy, policySchema } from "../core/policy";
import type { Principal } from "../core/principal";
import {
  mayReadProjectQuota,
  PROJECT_QUOTA_PREFIX,
  projectOfQuotaKey,
  projectQuotaKey,
} from "../core/projects";
import { type QuotaLimits, type QuotaView, quotaLimitsSchema, quotaView } from "../core/quota";
import { ownerDimension } from "../core/stats";
import { parseRequest } from "../core/validation";
import { principalUsage } from "./quota-usage";
import type { AppContext } from "./runtime";
import { costTotals, statsContext } from "./stats";

/**
 * The scheduling policy (GET/PUT /admin/policy) and per-principal quotas (GET/PUT
 * /quotas/{principal}) of API.md. The policy is stored in the Policy table and read by every
 * scheduling pass, so a PUT takes effect at the next pass without a deploy.
 *
 * Who may do what: the policy is admin-only, read and write, since it exposes per-owner weights.
 * Quota limits are set by admins; a user may read their own. A user asking for another
 * principal's quota gets 403, not the 404 that hides other users' jobs: a quota is not an object
 * whose existence leaks anything (every principal "has" one, NO_QUOTA by default), so the honest
 * answer is "not allowed".
 */

export type PolicyContext = Pick<AppContext, "policies" | "defaultPolicy" | "clock">;
export type QuotaContext = PolicyContext & Parameters<typeof principalUsage>[0];

/** The policy as GET and PUT /admin/policy answer it: the policy plus who stored it when. */
export type PolicyView = Policy & { readonly updatedAt: string | null; readonly updatedBy: string | null };

/**
 * The request body, read only once the caller is known to be allowed: a user's PUT is a 403
 * whatever (or however large) its body.
 */
export type RequestBody = () => unknown;

/** Same rule as store/tokens.ts and JOBQ_API_TOKENS: anything else cannot be a principal. */
export const principalIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/, "must match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$");

/**
 * The `{principal}` path parameter, or a 400 naming it: a principal, or `project:<name>` for a
 * project's quota (issue 13; a principal never contains ":", so the two never meet).
 */
function principalParameter(subject: string): string {
  if (subject.startsWith(PROJECT_QUOTA_PREFIX)) {
    const project = projectNameSchema.safeParse(subject.slice(PROJECT_QUOTA_PREFIX.length));
    if (project.success) return projectQuotaKey(project.data);
    throw new ValidationError(
      project.error.issues.map((issue) => ({ path: "principal", message: `project ${issue.message}` })),
    );
  }
  const parsed = principalIdSchema.safeParse(subject);
  if (!parsed.success) {
    throw new ValidationError(
      parsed.error.issues.map((issue) => ({ path: "principal", message: issue.message })),
    );
  }
  return parsed.data;
}

function requireAdmin(principal: Principal, what: string): void {
  if (!principal.admin) throw new ForbiddenError(`only an admin may ${what}`);
}

/** GET /admin/policy */
export async function getPolicy(ctx: PolicyContext, principal: Principal): Promise<PolicyView> {
  requireAdmin(principal, "read the scheduling policy");
  const stored = await ctx.policies.getPolicy(ctx.defaultPolicy);
  return { ...stored.policy, updatedAt: stored.updatedAt, updatedBy: stored.updatedBy };
}

/**
 * PUT /admin/policy: replaces the whole policy; fields left out take core's defaults (not the
 * deployment's JOBQ_POLICY: what an admin PUTs is the policy, entire). Every field problem is
 * listed in one 400.
 */
export async function putPolicy(
  ctx: PolicyContext,
  principal: Principal,
  body: RequestBody,
): Promise<PolicyView> {
  requireAdmin(principal, "change the scheduling policy");
  const policy = parseRequest(policySchema, body());
  const stored = await ctx.policies.putPolicy(policy, principal.id, ctx.clock().toISOString());
  return { ...stored.policy, updatedAt: stored.updatedAt, updatedBy: stored.updatedBy };
}

/** GET /quotas/{principal}: the limits, what is used of them, what remains, and the 80 % warning. */
export async function getQuota(ctx: QuotaContext, caller: Principal, subject: string): Promise<QuotaView> {
  const principal = principalParameter(subject);
  const project = projectOfQuotaKey(principal);
  if (project !== null && !mayReadProjectQuota(caller, project)) {
    throw new ForbiddenError(`only an admin or a token bound to project ${project} may read its quota`);
  }
  if (project === null && !caller.admin && caller.id !== principal) {
    throw new ForbiddenError("a user may read only their own quota");
  }
  const limits = await ctx.policies.getQuota(principal);
  return view(ctx, principal, limits);
}

/** PUT /quotas/{principal}: replaces the principal's limits; one left out (or null) is no limit. */
export async function putQuota(
  ctx: QuotaContext,
  caller: Principal,
  subject: string,
  body: RequestBody,
): Promise<QuotaView> {
  requireAdmin(caller, "set quotas");
  const principal = principalParameter(subject);
  const limits = parseRequest(quotaLimitsSchema, body());
  if (projectOfQuotaKey(principal) !== null && limits.maxQueuedJobs !== null) {
    // Refused rather than stored and ignored: nothing counts a project's not-started jobs yet.
    throw new ValidationError([
      { path: "maxQueuedJobs", message: "is not supported on a project's quota (only on a principal's)" },
    ]);
  }
  const stored = await ctx.policies.putQuota(principal, limits, ctx.clock().toISOString(), caller.id);
  return view(ctx, principal, stored);
}

async function view(ctx: QuotaContext, principal: string, limits: QuotaLimits): Promise<QuotaView> {
  const [used, cost] = await Promise.all([
    principalUsage(ctx, principal),
    // A project's quota key is its cost dimension too (core/stats.ts#projectDimension).
    costTotals(
      statsContext().stats,
      projectOfQuotaKey(principal) === null ? ownerDimension(principal) : principal,
      ctx.clock(),
    ),
  ]);
  return { ...quotaView(principal, limits, used), cost };
}
