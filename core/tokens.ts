import { z } from "zod";
import { type JobStatus, projectNameSchema } from "./job";
import { ROLES, type Role } from "./principal";

/**
 * The admin token routes' requests (POST /admin/tokens) and the views they and GET
 * /jobs/{id}/dependents answer with. Pure: the secret is made and hashed in store/tokens.ts.
 */

/** Same rule as store/tokens.ts and JOBQ_API_TOKENS: anything else cannot be a principal. */
const principalSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/, "must match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$");

export const createTokenSchema = z
  .strictObject({
    principal: principalSchema.describe("the user id the token acts as"),
    admin: z
      .boolean()
      .optional()
      .describe(
        "the admin role (the older spelling of role: admin): sees and acts on every principal's jobs",
      ),
    role: z
      .enum(ROLES)
      .optional()
      .describe(
        "user (default): its principal's jobs; admin: everything; reader: what user reads, read-only; auditor: what admin reads, read-only",
      ),
    project: projectNameSchema
      .optional()
      .describe(
        "binds the token to a project: its jobs get this project and may not name another (403), and it may read the project's quota",
      ),
  })
  .refine((r) => r.admin === undefined || r.role === undefined || (r.role === "admin") === r.admin, {
    path: ["role"],
    message: "contradicts admin; give one of them",
  })
  .transform((r): { principal: string; role: Role; project?: string } => ({
    principal: r.principal,
    role: r.role ?? (r.admin === true ? "admin" : "user"),
    ...(r.project !== undefined ? { project: r.project } : {}),
  }));
export type CreateTokenRequest = z.output<typeof createTokenSchema>;

/** A token as GET /admin/tokens lists it: never the secret, never its hash. */
export interface TokenView {
  /** The first 12 hex characters of the secret's SHA-256: how a human names and revokes it. */
  readonly id: string;
  readonly principal: string;
  readonly role: Role;
  readonly createdAt: string;
  readonly revokedAt: string | null;
  /** The project the token is bound to, or null (issue 13). */
  readonly project: string | null;
}

/** POST /admin/tokens's answer: the view plus the secret, the one time it is ever shown. */
export interface CreatedToken extends TokenView {
  readonly token: string;
}

/** One job that waits on another, and whether that wait is over (GET /jobs/{id}/dependents). */
export interface Dependent {
  readonly id: string;
  readonly type: string;
  readonly name: string | null;
  readonly status: JobStatus;
  readonly owner: string;
  /** The edge is met: the job it waits on completed. */
  readonly met: boolean;
}
