import { z } from "zod";
import type { Principal } from "../core/principal";
import type { Dependent } from "../core/tokens";
import { cursorSortKeySchema, decodeCursor, encodeCursor } from "../store/cursor";
import { DEPENDENT_PREFIX, jobPk } from "../store/keys";
import type { ListPage, QueryContext } from "./queries";
import { canSee, loadVisibleJob } from "./visibility";

/**
 * GET /jobs/{id}/dependents: the jobs that wait on this one (the reverse of dependsOn), for the
 * dashboard's DAG view and `jobq dependents`. Read from the parent's own "waited on by" edges
 * (`DPT#<child>` items in its partition: one Query, in child-id order, so by creation time),
 * then the page's children (BatchGetItem of their job items) and their "waits on" edges
 * (BatchGetItem of `DEP#<parent>` in each child's partition) for `met`. Never a Scan.
 *
 * Visibility is GET /jobs/{id}'s: the caller must see the job (else 404). An admin may make a job
 * of theirs depend on a user's job; that user does not see the admin's dependent (it is left out
 * of the page, as another user's job is left out of every list), so a page may hold fewer than
 * `limit` items while nextCursor goes on.
 */

/** Where the next page starts: the last `DPT#<child>` sort key read, nothing else (store/cursor.ts). */
const dependentsCursorSchema = z.strictObject({
  after: cursorSortKeySchema(/^DPT#job_[0-9A-HJKMNP-TV-Z]{26}(-\d{1,4})?$/),
});

export async function listDependents(
  ctx: QueryContext,
  principal: Principal,
  id: string,
  options: { limit: number; cursor?: string | undefined },
): Promise<ListPage<Dependent>> {
  const cursor = decodeCursor(options.cursor, dependentsCursorSchema);
  await loadVisibleJob(ctx.repo, principal, id);
  const page = await ctx.repo.queryJobPartition(id, DEPENDENT_PREFIX, {
    limit: options.limit,
    startKey: cursor ? { pk: jobPk(id), sk: cursor.after } : undefined,
  });
  const childIds = page.items.map((edge) => String(edge.sk).slice(DEPENDENT_PREFIX.length));
  const [children, met] = await Promise.all([
    ctx.repo.getJobItems(childIds, false),
    ctx.repo.dependencyEdgesMet(id, childIds),
  ]);
  const items: Dependent[] = [];
  for (const childId of childIds) {
    const child = children.get(childId);
    // A staged child belongs to a batch not committed yet: it does not exist for readers.
    if (!child || child.staged || !canSee(principal, child)) continue;
    items.push({
      id: child.id,
      type: child.type,
      name: child.name ?? null,
      status: child.status,
      owner: child.owner,
      met: met.get(childId) ?? false,
    });
  }
  return {
    items,
    nextCursor: page.lastKey ? encodeCursor({ after: String(page.lastKey.sk) }) : null,
  };
}
