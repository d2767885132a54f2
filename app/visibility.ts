import { NotFoundError } from "../core/errors";
import type { Principal } from "../core/principal";
import type { JobItem } from "../store/job-items";
import type { JobRepository, StoredJob } from "../store/job-repository";

/** Whether the principal may see the job: its owner, or an admin. */
export function canSee(principal: Principal, job: Pick<JobItem, "owner">): boolean {
  return principal.admin || job.owner === principal.id;
}

/**
 * The job if the principal may see it. Another principal's job is a 404 exactly like a missing
 * one, so its existence never leaks.
 */
export async function loadVisibleJob(
  repo: JobRepository,
  principal: Principal,
  id: string,
): Promise<StoredJob> {
  const stored = await repo.getJob(id);
  if (!stored || !canSee(principal, stored.item)) throw new NotFoundError(`job ${id} not found`);
  return stored;
}
