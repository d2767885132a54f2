import type { JobqClient } from "../../../client/index";

/**
 * What the shell hands every view: the signed-in principal's typed client and whether it is an
 * admin (admin-only controls are hidden for others; the API refuses them anyway).
 */
export interface ViewProps {
  readonly client: JobqClient;
  readonly admin: boolean;
}
