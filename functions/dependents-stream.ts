import middy from "@middy/core";
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from "aws-lambda";
import { lifecycleContext, releaseDependents } from "../app/lifecycle";
import { logger } from "../app/logger";
import { completedJobOf, completedProbeOf, completedWithoutDependents } from "../store/job-stream";
import { observability } from "./observability";

/**
 * Releases the dependents of every job that became `completed`, from the Jobs table's change
 * stream: the worker completes a job in its own transaction and the execution ends there, so no
 * lifecycle step is left to do it. Stream records are written with the item, so no completion can
 * be missed the way an event published after the write could be. Its event source filters on the
 * job item becoming `completed`, except a job marked as having no dependents that is no breaker's
 * probe (store/job-stream.ts#asksDependentsConsumer, lib/job-lifecycle.ts): nothing else invokes
 * it, and most jobs, which nothing waits on, cost it no invocation.
 *
 * It also closes the circuit breaker whose half-open probe the completed job was (app/circuits.ts).
 *
 * Records are handled in order; on a failure the batch reports that record, and Lambda delivers it
 * (and the rest) again. A redelivered completion finds its edges met and changes nothing.
 */

// Built at import, Lambda's init: a bad variable fails the cold start, not every batch.
const ctx = lifecycleContext();

export const handler = middy<DynamoDBStreamEvent, DynamoDBBatchResponse>()
  .use(observability())
  .handler(async (event) => {
    for (const record of event.Records ?? []) {
      const jobId = completedJobOf(record);
      if (!jobId) continue;
      try {
        // A probe nothing waits on reaches this consumer for its breaker alone.
        if (!completedWithoutDependents(record)) {
          const released = await releaseDependents(ctx, jobId);
          if (released > 0) logger.info("dependents released", { jobId, released });
        }
        // The half-open probe of a circuit breaker completed: the breaker closes. Only probes
        // carry the mark, so other completions cost nothing more.
        const probe = completedProbeOf(record);
        if (probe) await ctx.circuits?.probeCompleted(probe.jobId, probe.key);
      } catch (error) {
        logger.error("dependents not released; the record is retried", { jobId, error: error as Error });
        const sequence = record.dynamodb?.SequenceNumber;
        return { batchItemFailures: sequence ? [{ itemIdentifier: sequence }] : [] };
      }
    }
    return { batchItemFailures: [] };
  });
