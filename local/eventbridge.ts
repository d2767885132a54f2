import { randomUUID } from "node:crypto";
import { z } from "zod";
import { AwsApiError, startAwsJsonServer } from "./aws-json-server";
import { LOCAL_ACCOUNT } from "./lambda";

/**
 * The local EventBridge: an HTTP endpoint on loopback that answers `AWSEvents.PutEvents` (AWS
 * JSON 1.1, what app/events.ts sends) and delivers each matching event to its rule's target in
 * process, after the answer, as EventBridge invokes a Lambda asynchronously; and scheduled rules
 * as timers that deliver a "Scheduled Event". A target that fails is logged, not retried (AWS
 * retries twice): the scheduler's sweep catches up whatever a lost wake-up missed.
 */

export interface EventBridgeEvent {
  readonly version: "0";
  readonly id: string;
  readonly "detail-type": string;
  readonly source: string;
  readonly account: string;
  readonly time: string;
  readonly region: string;
  readonly resources: readonly string[];
  readonly detail: unknown;
}

export type EventTarget = (event: EventBridgeEvent) => Promise<unknown> | unknown;

/** EventBridge's pattern language, the part jobq uses: fields listing accepted values, nested objects. */
export interface EventPattern {
  readonly [field: string]: readonly (string | number | boolean | null)[] | EventPattern;
}

export interface LocalEventRule {
  readonly name: string;
  /** @default "default" */
  readonly eventBus?: string;
  readonly pattern: EventPattern;
  readonly target: EventTarget;
}

export interface LocalSchedule {
  readonly name: string;
  /** Delivers a Scheduled Event this often; a tick while the last delivery still runs is skipped. */
  readonly intervalMs: number;
  readonly target: EventTarget;
}

export interface LocalEventBridgeOptions {
  /** Custom event buses besides `default` and the rules' buses: PutEvents to any other is refused, as in AWS. */
  readonly buses?: readonly string[];
  readonly rules?: readonly LocalEventRule[];
  readonly schedules?: readonly LocalSchedule[];
  /** @default 0 (a free port) */
  readonly port?: number;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** @default "us-east-1" */
  readonly region?: string;
  /** Deliveries running at once; the rest wait their turn. @default 4 */
  readonly maxConcurrency?: number;
  /** Failed deliveries, one line each on stderr. @default true */
  readonly log?: boolean;
}

export interface LocalEventBridge {
  /** `http://127.0.0.1:<port>`: the EventBridgeClient's `endpoint`, JOBQ_EVENTS_ENDPOINT. */
  readonly endpoint: string;
  /** Delivers a Scheduled Event of the named schedule now and waits for its target. */
  fire(scheduleName: string): Promise<void>;
  /** Resolves once no delivery runs or waits. */
  idle(): Promise<void>;
  /** PutEvents calls and the entries they carried since start, from every process. */
  meter(): { readonly putEventsCalls: number; readonly entries: number };
  /** Stops the timers, closes the endpoint and waits briefly for running deliveries. Idempotent. */
  stop(): Promise<void>;
}

/** PutEvents takes at most 10 entries a call. */
const MAX_ENTRIES = 10;
const STOP_GRACE_MS = 5_000;

export function matchesPattern(pattern: EventPattern, value: unknown): boolean {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  return Object.entries(pattern).every(([field, expected]) => {
    const actual = record[field];
    if (isValueList(expected)) {
      const candidates = Array.isArray(actual) ? actual : [actual];
      return candidates.some((candidate) => expected.includes(candidate as string | number | boolean | null));
    }
    return matchesPattern(expected, actual);
  });
}

function isValueList(value: EventPattern[string]): value is readonly (string | number | boolean | null)[] {
  return Array.isArray(value);
}

export function scheduledEvent(scheduleName: string, region: string, now = new Date()): EventBridgeEvent {
  return {
    version: "0",
    id: randomUUID(),
    "detail-type": "Scheduled Event",
    source: "aws.events",
    account: LOCAL_ACCOUNT,
    time: isoSeconds(now),
    region,
    resources: [`arn:aws:events:${region}:${LOCAL_ACCOUNT}:rule/${scheduleName}`],
    detail: {},
  };
}

export async function startLocalEventBridge(
  options: LocalEventBridgeOptions = {},
): Promise<LocalEventBridge> {
  const region = options.region ?? "us-east-1";
  const log = options.log !== false;
  const rules = options.rules ?? [];
  const schedules = new Map((options.schedules ?? []).map((schedule) => [schedule.name, schedule]));
  const buses = new Set([
    "default",
    ...(options.buses ?? []),
    ...rules.map((rule) => rule.eventBus ?? "default"),
  ]);
  const deliveries = new DeliveryQueue(options.maxConcurrency ?? 4);
  let stopped = false;
  let putEventsCalls = 0;
  let putEventsEntries = 0;

  const deliver = async (name: string, target: EventTarget, event: EventBridgeEvent): Promise<void> => {
    try {
      await target(event);
    } catch (error) {
      if (log) console.error(`local events: ${name} failed on a ${event["detail-type"]} event:`, error);
    }
  };

  const putEvents = (request: unknown): Record<string, unknown> => {
    const parsed = putEventsRequest.safeParse(request);
    if (!parsed.success)
      throw new EventsApiError("ValidationException", parsed.error.issues[0]?.message ?? "invalid");
    const entries = parsed.data.Entries;
    if (entries.length === 0 || entries.length > MAX_ENTRIES) {
      throw new EventsApiError("ValidationException", `Entries must hold 1 to ${MAX_ENTRIES} entries`);
    }
    // EventBridge bills per entry (64 KB chunk): counted for the benchmark.
    putEventsCalls += 1;
    putEventsEntries += entries.length;
    let failed = 0;
    const results = entries.map((entry) => {
      const outcome = acceptEntry(entry, buses, region);
      if ("ErrorCode" in outcome) {
        failed += 1;
        return outcome;
      }
      const bus = busName(entry.EventBusName);
      for (const rule of rules) {
        if ((rule.eventBus ?? "default") === bus && matchesPattern(rule.pattern, outcome.event)) {
          // After the answer: PutEvents never waits for a target.
          deliveries.add(() => deliver(`rule ${rule.name}`, rule.target, outcome.event));
        }
      }
      return { EventId: outcome.event.id };
    });
    return { FailedEntryCount: failed, Entries: results };
  };

  const server = await startAwsJsonServer({
    name: "local events",
    port: options.port,
    host: options.host,
    protocol: "1.1",
    targetPrefix: "AWSEvents.",
    internalErrorType: "InternalException",
    operations: { PutEvents: putEvents },
  });

  const timers = new Map<string, NodeJS.Timeout>();
  /** Schedules with a delivery queued or running: a tick meanwhile is skipped, never stacked. */
  const due = new Set<string>();
  for (const schedule of schedules.values()) {
    const arm = () => {
      const timer = setTimeout(() => {
        if (stopped) return;
        if (!due.has(schedule.name)) {
          due.add(schedule.name);
          deliveries.add(() =>
            deliver(
              `schedule ${schedule.name}`,
              schedule.target,
              scheduledEvent(schedule.name, region),
            ).finally(() => due.delete(schedule.name)),
          );
        }
        arm();
      }, schedule.intervalMs);
      timers.set(schedule.name, timer);
    };
    arm();
  }

  let stopping: Promise<void> | undefined;
  return {
    endpoint: server.endpoint,
    fire: async (scheduleName) => {
      const schedule = schedules.get(scheduleName);
      if (!schedule) throw new Error(`local events: no schedule named ${scheduleName}`);
      await schedule.target(scheduledEvent(schedule.name, region));
    },
    idle: () => deliveries.idle(),
    meter: () => ({ putEventsCalls, entries: putEventsEntries }),
    stop: () => {
      stopping ??= (async () => {
        stopped = true;
        for (const timer of timers.values()) clearTimeout(timer);
        deliveries.close();
        await server.close();
        let grace: NodeJS.Timeout | undefined;
        await Promise.race([
          deliveries.idle(),
          new Promise<void>((done) => {
            grace = setTimeout(done, STOP_GRACE_MS);
          }),
        ]);
        clearTimeout(grace);
      })();
      return stopping;
    },
  };
}

/** Runs deliveries at most `limit` at a time, in arrival order. */
class DeliveryQueue {
  private readonly waiting: (() => Promise<void>)[] = [];
  private active = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  add(delivery: () => Promise<void>): void {
    if (this.closed) return;
    this.waiting.push(delivery);
    this.pump();
  }

  close(): void {
    this.closed = true;
    this.waiting.length = 0;
    this.settle();
  }

  idle(): Promise<void> {
    if (this.active === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.active < this.limit) {
      const next = this.waiting.shift();
      if (!next) break;
      this.active += 1;
      // Deliveries catch their own errors; setImmediate keeps PutEvents' answer first.
      setImmediate(() => {
        next().finally(() => {
          this.active -= 1;
          this.pump();
          this.settle();
        });
      });
    }
  }

  private settle(): void {
    if (this.active > 0 || this.waiting.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

// ---------------------------------------------------------------------------------------------
// PutEvents

const putEventsRequest = z.object({
  Entries: z.array(
    z.object({
      Source: z.string().optional(),
      DetailType: z.string().optional(),
      Detail: z.string().optional(),
      Resources: z.array(z.string()).optional(),
      EventBusName: z.string().optional(),
      // JSON 1.1 timestamps are epoch seconds.
      Time: z.number().optional(),
    }),
  ),
});
type PutEventsEntry = z.infer<typeof putEventsRequest>["Entries"][number];

function busName(nameOrArn: string | undefined): string {
  if (!nameOrArn) return "default";
  const arn = /^arn:aws[a-z-]*:events:[^:]*:[^:]*:event-bus\/(.+)$/.exec(nameOrArn);
  return arn?.[1] ?? nameOrArn;
}

function acceptEntry(
  entry: PutEventsEntry,
  buses: ReadonlySet<string>,
  region: string,
): { event: EventBridgeEvent } | { ErrorCode: string; ErrorMessage: string } {
  if (!entry.Source || !entry.DetailType || entry.Detail === undefined) {
    return { ErrorCode: "InvalidArgument", ErrorMessage: "Source, DetailType and Detail are required" };
  }
  let detail: unknown;
  try {
    detail = JSON.parse(entry.Detail);
  } catch {
    return { ErrorCode: "MalformedDetail", ErrorMessage: "Detail is not valid JSON" };
  }
  if (typeof detail !== "object" || detail === null || Array.isArray(detail)) {
    return { ErrorCode: "MalformedDetail", ErrorMessage: "Detail must be a JSON object" };
  }
  const bus = busName(entry.EventBusName);
  if (!buses.has(bus)) {
    return { ErrorCode: "ResourceNotFoundException", ErrorMessage: `Event bus ${bus} does not exist.` };
  }
  return {
    event: {
      version: "0",
      id: randomUUID(),
      "detail-type": entry.DetailType,
      source: entry.Source,
      account: LOCAL_ACCOUNT,
      time: isoSeconds(entry.Time === undefined ? new Date() : new Date(entry.Time * 1000)),
      region,
      resources: entry.Resources ?? [],
      detail,
    },
  };
}

/** EventBridge's `time`: ISO 8601 to the second. */
function isoSeconds(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

/** An EventBridge error answer (`__type` is what the SDK maps to its exception class). */
class EventsApiError extends AwsApiError {}
