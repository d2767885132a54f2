import { EventBridgeClient, PutEventsCommand, type PutEventsRequestEntry } from "@aws-sdk/client-eventbridge";
import { isTerminal, type JobStatus } from "../core/job";
import { awsClientOptions } from "../store/aws";
import { installFaultInjection } from "../store/faults";
import { traced } from "../store/tracing";
import { logger } from "./logger";

/**
 * "Job State Change" events, shaped like AWS Batch's: every status change (or, with
 * `jobq:stateChangeEvents=terminal`, every end) is published to EventBridge for users' own rules.
 * jobq itself needs none of them (its wake-ups ride the Jobs table's stream), so publishing is
 * best effort: refused entries are sent again a few times, then logged.
 */

export const EVENT_SOURCE = "jobq";
export const JOB_STATE_CHANGE = "Job State Change";

export interface JobStateChange {
  readonly jobId: string;
  readonly owner: string;
  readonly type: string;
  readonly pool: string | null;
  readonly priority: number;
  readonly previousStatus: JobStatus | null;
  readonly status: JobStatus;
  readonly statusReason: string;
  readonly at: string;
  readonly version: number;
}

export interface JobEventPublisher {
  publish(changes: readonly JobStateChange[]): Promise<void>;
  /** "Circuit State Change" events (app/circuits.ts); a publisher without it publishes none. */
  publishCircuitChanges?(changes: readonly CircuitStateChange[]): Promise<void>;
}

export const CIRCUIT_STATE_CHANGE = "Circuit State Change";

/** A circuit breaker's change of state (docs/scheduling.md "Circuit breakers"): opened, half_open, closed, reset. */
export interface CircuitStateChange {
  readonly type: string;
  readonly owner: string | null;
  readonly change: "opened" | "half_open" | "closed" | "reset";
  readonly previousState: "closed" | "open" | "half_open";
  readonly state: "closed" | "open" | "half_open";
  readonly reason: string;
  /** The job that caused it (the failure that opened it, the probe); null for a reset. */
  readonly jobId: string | null;
  /** When an opened breaker half-opens; null otherwise. */
  readonly halfOpensAt: string | null;
  readonly at: string;
}

/** PutEvents takes at most 10 entries a call. */
const PUT_EVENTS_LIMIT = 10;

export class EventBridgePublisher implements JobEventPublisher {
  constructor(
    private readonly client: EventBridgeClient,
    /** Unset: nothing is published (see JOBQ_EVENT_BUS). */
    private readonly eventBus: string | undefined,
    /** `terminal`: only changes into completed, failed, cancelled or escalated (JOBQ_STATE_CHANGE_EVENTS). */
    private readonly which: "all" | "terminal" = "all",
  ) {}

  async publish(all: readonly JobStateChange[]): Promise<void> {
    const eventBus = this.eventBus;
    if (!eventBus) return;
    const changes = this.which === "terminal" ? all.filter((c) => isTerminal(c.status)) : all;
    const chunks: JobStateChange[][] = [];
    for (let i = 0; i < changes.length; i += PUT_EVENTS_LIMIT)
      chunks.push(changes.slice(i, i + PUT_EVENTS_LIMIT));
    // Every chunk at once: a scheduler pass's fifty admissions wait one round trip, not five.
    await Promise.all(chunks.map((chunk) => this.put(chunk, eventBus)));
  }

  /** Always published, whatever `which` says: breakers change rarely and each change matters. */
  async publishCircuitChanges(changes: readonly CircuitStateChange[]): Promise<void> {
    const eventBus = this.eventBus;
    if (!eventBus || changes.length === 0) return;
    try {
      const out = await this.client.send(
        new PutEventsCommand({
          Entries: changes.slice(0, PUT_EVENTS_LIMIT).map((change) => ({
            Source: EVENT_SOURCE,
            DetailType: CIRCUIT_STATE_CHANGE,
            EventBusName: eventBus,
            Resources: change.jobId ? [change.jobId] : [],
            Detail: JSON.stringify(change),
            Time: new Date(change.at),
          })),
        }),
      );
      if (out.FailedEntryCount)
        logger.warn("some circuit events were not published", { failed: out.FailedEntryCount });
    } catch (error) {
      // Best effort like job events: the breaker's history (GET /admin/circuits?history=true) keeps the change.
      logger.warn("circuit events not published", { error: error as Error });
    }
  }

  private async put(chunk: readonly JobStateChange[], eventBus: string): Promise<void> {
    const entries: PutEventsRequestEntry[] = chunk.map((change) => ({
      Source: EVENT_SOURCE,
      DetailType: JOB_STATE_CHANGE,
      EventBusName: eventBus,
      Resources: [change.jobId],
      Detail: JSON.stringify(change),
      Time: new Date(change.at),
    }));
    try {
      let pending = entries;
      for (let attempt = 1; ; attempt++) {
        const out = await this.client.send(new PutEventsCommand({ Entries: pending }));
        if (!out.FailedEntryCount) return;
        // PutEvents answers 200 with some entries refused (throttled, or an internal failure):
        // the SDK's own retries never see those, so the refused entries are sent again here.
        pending = refusedEntries(pending, out.Entries ?? []);
        if (pending.length === 0 || attempt >= PUT_EVENTS_ATTEMPTS) {
          logger.warn("some job events were not published", {
            failed: out.FailedEntryCount,
            errors: [...new Set((out.Entries ?? []).flatMap((e) => (e.ErrorCode ? [e.ErrorCode] : [])))],
          });
          return;
        }
        await sleep(PUT_EVENTS_BACKOFF_MS * 2 ** (attempt - 1) * (0.5 + Math.random() / 2));
      }
    } catch (error) {
      logger.warn("job events not published; the sweep will catch up", { error: error as Error });
    }
  }
}

/** Tries of one chunk when PutEvents refuses some of its entries; each waits twice the last. */
const PUT_EVENTS_ATTEMPTS = 3;
const PUT_EVENTS_BACKOFF_MS = 50;

/**
 * The entries PutEvents refused: its result entries line up with the request's, and a refused one
 * carries an ErrorCode. A result shorter than the request (not seen in practice) counts the
 * missing tail as refused, so no event is dropped without a retry.
 */
export function refusedEntries<T>(
  sent: readonly T[],
  results: readonly { ErrorCode?: string | undefined }[],
): T[] {
  return sent.filter((_, i) => results[i] === undefined || results[i]?.ErrorCode !== undefined);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function createEventBridgeClient(options: {
  region: string;
  endpoint?: string | undefined;
}): EventBridgeClient {
  const client = traced(new EventBridgeClient(awsClientOptions(options.endpoint, options.region)));
  // The soak harness's throttling (store/faults.ts); inert unless turned on, and never in AWS.
  installFaultInjection(client.middlewareStack, "eventbridge", options.endpoint);
  return client;
}

/** The event for a job that just went from `previous` to its current status. */
export function stateChange(
  previous: JobStatus | null,
  job: {
    readonly id: string;
    readonly owner: string;
    readonly type: string;
    readonly pool: string | null;
    readonly priority: number;
    readonly status: JobStatus;
    readonly statusReason: string;
    readonly updatedAt: string;
    readonly version: number;
  },
): JobStateChange {
  return {
    jobId: job.id,
    owner: job.owner,
    type: job.type,
    pool: job.pool,
    priority: job.priority,
    previousStatus: previous,
    status: job.status,
    statusReason: job.statusReason,
    at: job.updatedAt,
    version: job.version,
  };
}
