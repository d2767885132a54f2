/**
 * Who is calling: a user id, whether it may see (and, unless read-only, act on) every principal's
 * jobs, and whether it may change anything at all.
 */
export interface Principal {
  readonly id: string;
  readonly admin: boolean;
  /**
   * A read-only token (role `reader` or `auditor`): it reads what its scope shows and changes
   * nothing. The HTTP edge refuses its every mutating request (functions/http.ts), so use cases
   * need not check it. Absent: false.
   */
  readonly readOnly?: boolean;
  /**
   * The project its token is bound to (issue 13): every job it submits gets this project, and
   * naming another is refused (core/projects.ts). Absent: an unbound token, which may tag any.
   */
  readonly project?: string;
}

/**
 * A token's role: two independent things in one word, what the token may see (its principal's
 * jobs, or everyone's) and whether it may change anything.
 * - `user`: its principal's jobs, read and act.
 * - `admin`: everything, read and act.
 * - `reader`: what `user` reads, read-only.
 * - `auditor`: what `admin` reads (the audit trail, tokens, policy included), read-only.
 */
export const ROLES = ["user", "admin", "reader", "auditor"] as const;
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === "string" && (ROLES as readonly string[]).includes(value);
}

/**
 * The caller a token's role makes of its principal; an unknown role is a plain user. `project`:
 * the token's binding as the authorizer passed it (a non-empty string, else unbound).
 */
export function principalOfRole(id: string, role: unknown, project?: unknown): Principal {
  const admin = role === "admin" || role === "auditor";
  const readOnly = role === "reader" || role === "auditor";
  const bound = typeof project === "string" && project.length > 0 ? { project } : {};
  return readOnly ? { id, admin, readOnly, ...bound } : { id, admin, ...bound };
}

/** Whether a role may only read. */
export function isReadOnlyRole(role: unknown): boolean {
  return role === "reader" || role === "auditor";
}
