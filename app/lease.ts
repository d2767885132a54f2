import type { NodeRepository } from "../store/nodes";
import { logger } from "./logger";
import type { Clock } from "./runtime";

/**
 * Keeps a pool's lease while its holder works. The lease is short, so a holder that died (a
 * killed process, a Lambda that timed out) blocks the pool for seconds, not minutes; a live
 * holder renews it every third of its time to live, however long its pass takes. A renewal that
 * fails is only logged: leases keep passes from overlapping to save work, while every write a
 * pass makes is conditional, so an overlap is never incorrect.
 */
export function keepLease(
  nodes: Pick<NodeRepository, "renewLease">,
  pool: string,
  holder: string,
  ttlSeconds: number,
  clock: Clock,
): { stop(): void } {
  let renewing = false;
  const timer = setInterval(
    () => {
      // One renewal at a time: a slow store must not pile writes up behind each other.
      if (renewing) return;
      renewing = true;
      nodes
        .renewLease(pool, holder, clock(), ttlSeconds)
        .catch((error: unknown) => logger.warn("lease not renewed", { pool, holder, error: error as Error }))
        .finally(() => {
          renewing = false;
        });
    },
    (ttlSeconds * 1000) / 3,
  );
  // A timer must not keep a Lambda's (or a test's) event loop alive on its own.
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
