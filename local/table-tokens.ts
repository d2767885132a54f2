import type { APIGatewayAuthorizerResult } from "aws-lambda";
import { isRole, type Role } from "../core/principal";
import { AUTH_CONTEXT_KEYS } from "../functions/routes";
import { TOKEN_PATTERN } from "../store/tokens";

/**
 * The local servers' bridge to the Tokens table (tokens that POST /admin/tokens made): they ask
 * the same authorizer modules API Gateway invokes in AWS, and only for a token of the table's
 * shape, as API Gateway's validation lets only those reach the authorizer. Unlike API Gateway,
 * nothing caches the decision here: a revoked token is refused at its very next request.
 */

export interface TableCaller {
  readonly principal: string;
  readonly role: Role;
  /** The project the token is bound to (issue 13); absent: unbound. */
  readonly project?: string;
}

/** Whether a token could be one of the Tokens table's (else the authorizer is not asked at all). */
export function isTableToken(token: string): boolean {
  return TOKEN_PATTERN.test(token);
}

/**
 * The caller an authorizer's decision names, or undefined when it refused the token. "Unauthorized"
 * is an authorizer's one answer for an unknown or revoked token (a 401); any other failure is API
 * Gateway's 500 for a broken authorizer, so it propagates.
 */
export async function callerOf(
  decide: () => Promise<APIGatewayAuthorizerResult>,
): Promise<TableCaller | undefined> {
  try {
    const result = await decide();
    const principal = result.context?.[AUTH_CONTEXT_KEYS.principal];
    const role = result.context?.[AUTH_CONTEXT_KEYS.role];
    const project = result.context?.[AUTH_CONTEXT_KEYS.project];
    if (typeof principal !== "string" || !isRole(role)) return undefined;
    return typeof project === "string" ? { principal, role, project } : { principal, role };
  } catch (error) {
    if (error instanceof Error && error.message === "Unauthorized") return undefined;
    throw error;
  }
}
