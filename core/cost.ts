import type { JobStatus } from "./job";
import { PRICES } from "./prices";

/**
 * What a job's own life costs in AWS (docs/cost.md): the requests each lifecycle step makes, written
 * down once here (STEP_REQUESTS, matching docs/data-model.md "Writes and requests per job" and
 * docs/lifecycle.md's transition counts, calibrated on `npm run bench`), times how often the job
 * took each step — read from what its job item already records, so counting costs no write — at the
 * dated prices of core/prices.ts; plus its compute: the node time its attempts ran × the pool's
 * hourly price × the dominant share of the node it reserved.
 *
 * Time-driven requests (the scheduler's minute tick, the workers' empty long polls, node
 * heartbeats) belong to no job: GET /stats shows them as overhead (`overheadCost`).
 */

/** The AWS requests one step of a job's life makes. Fractions are shares of a batch or a pass. */
export interface StepRequests {
  /** Step Functions Standard state transitions. */
  readonly transitions: number;
  /** DynamoDB write request units (a transaction's counted twice, each index entry once). */
  readonly writeUnits: number;
  readonly readUnits: number;
  readonly sqsRequests: number;
  readonly lambdaInvocations: number;
  readonly eventEntries: number;
  readonly apiRequests: number;
}

const NONE: StepRequests = {
  transitions: 0,
  writeUnits: 0,
  readUnits: 0,
  sqsRequests: 0,
  lambdaInvocations: 0,
  eventEntries: 0,
  apiRequests: 0,
};

/**
 * The steps of a job's life and what each makes. The units are DynamoDB's billing of a ~1 KB job
 * (`npm run bench`: 9 WRU to submit, ≈ 9 to admit (16–20 for the few admissions still written
 * in a transaction: a breaker's probe, a rate-limited type), ≈ 5 to start, 6 to
 * complete; a failed attempt's AttemptFailed ≈ 14–28 and Requeue ≈ 8–10). Events are counted
 * apart, per status change (`eventsOf`).
 */
export const STEP_REQUESTS = {
  /**
   * POST /jobs: API Gateway, the API function, the job's put (a job born queued stores no
   * creation record: reads derive it; any other's is 1 WRU more). The quota read is the
   * API instance's copy, read at most once per principal per 5 s (PolicyRepository#recentQuota):
   * a cost by time, like the policy's, not by job.
   */
  submit: { ...NONE, apiRequests: 1, lambdaInvocations: 1, writeUnits: 9 },
  /**
   * The scheduler admits the attempt (its share of the node's booking, then the job's UpdateItem
   * and its transition; its share of the pass's reads, its lease and its invocation) and the
   * execution's `Dispatch` sends it to SQS.
   */
  admission: {
    ...NONE,
    transitions: 1,
    writeUnits: 9,
    readUnits: 2,
    sqsRequests: 1,
    lambdaInvocations: 0.3,
  },
  /**
   * The worker receives it and starts it: the job's UpdateItem, then its transition and attempt
   * record (a start that moves the booking from another node is one transaction: ≈ 12 WRU).
   */
  start: { ...NONE, writeUnits: 5, readUnits: 1, sqsRequests: 1 },
  /**
   * The worker completes it (the result; the job's UpdateItem, written against the job its start
   * left, so without a read; then the node's release, an UpdateItem guarded by the node's repair
   * count, read alongside the result; no transition record, and no end of the attempt record the
   * start stored: reads derive both from the job) and deletes the message. The dependents
   * consumer is invoked only for a job something waits on (functions/dependents-stream.ts), a
   * cost of the dependent's, not counted here. Its run time reaches the type's statistics
   * through the /stats consumer's transaction (`statusChange`).
   */
  completion: { ...NONE, writeUnits: 6, readUnits: 0.5, sqsRequests: 1 },
  /**
   * A failed, timed-out or lost attempt: `AttemptFailed`, `BackoffWait` and `Requeue` (which runs,
   * and ends the execution, even when the job ended), their two Lambda invocations, the attempt
   * ended and the capacity back in one transaction, the message's delete.
   */
  attemptFailed: {
    ...NONE,
    transitions: 3,
    writeUnits: 28,
    readUnits: 6,
    sqsRequests: 4,
    lambdaInvocations: 2,
  },
  /**
   * `Requeue`'s write when the job goes on: retrying → queued, the job's UpdateItem alone (into
   * the three queue views, out of `due`) and then its transition.
   */
  requeue: { ...NONE, writeUnits: 9, readUnits: 4 },
  /** A request that changes the job through the API (cancel, retry): the request and its reads. */
  apiRequest: { ...NONE, apiRequests: 1, lambdaInvocations: 1, readUnits: 1 },
  /**
   * A status change outside the run (released by its dependencies, come due, cancelled, paused,
   * resumed, retried by hand; a priority change too): the job's UpdateItem and then its transition
   * where only the job changes, a transaction where more does (capacity given back, another item).
   */
  otherChange: { ...NONE, writeUnits: 8 },
  /**
   * Every status change, as the Jobs table's stream consumers see it: the broadcaster's share of
   * an invocation and the /stats consumer's share of its transaction.
   */
  statusChange: { ...NONE, writeUnits: 0.1, lambdaInvocations: 0.4 },
} as const satisfies Record<string, StepRequests>;
export type Step = keyof typeof STEP_REQUESTS;

/** Lambda run time assumed per invocation, and the memory it is billed at. */
export const LAMBDA_MS_PER_INVOCATION = 100;
export const LAMBDA_MEMORY_MB = 128;

/** Which "Job State Change" events are published (`jobq:stateChangeEvents`; none without a bus). */
export type EventsPublished = "all" | "terminal" | "none";

/** What a job item records that its cost is computed from. */
export interface JobCostFacts {
  readonly status: JobStatus;
  /** The item's version: one per status change (and per priority change). */
  readonly version: number;
  /** Attempts admitted so far (each one Step Functions execution). */
  readonly attempts: number;
  /** Attempts that failed, timed out or were lost (each went through AttemptFailed). */
  readonly failures: number;
  /** Manual retries (POST /jobs/{id}/retry): each an API request and a status change. */
  readonly retries: number;
  /** Node time its attempts ran, over all attempts, in ms. */
  readonly runMs: number;
  /** The largest of its cpu, memory and GPU shares of a node of the pool it ran in (0–1). */
  readonly share: number;
  /** What a node of that pool costs an hour. */
  readonly hourlyUsd: number;
  readonly events: EventsPublished;
}

export interface JobCost {
  readonly totalUsd: number;
  readonly requestsUsd: number;
  readonly computeUsd: number;
  readonly breakdown: {
    readonly stepFunctions: { readonly transitions: number; readonly usd: number };
    readonly dynamodb: { readonly writeUnits: number; readonly readUnits: number; readonly usd: number };
    readonly sqs: { readonly requests: number; readonly usd: number };
    readonly lambda: { readonly invocations: number; readonly gbSeconds: number; readonly usd: number };
    readonly eventBridge: { readonly entries: number; readonly usd: number };
    readonly api: { readonly requests: number; readonly usd: number };
    readonly compute: {
      readonly nodeSeconds: number;
      readonly share: number;
      readonly hourlyUsd: number;
      readonly usd: number;
    };
  };
  /** The price table's date and region (core/prices.ts). */
  readonly priceTable: string;
}

export const PRICE_TABLE = `${PRICES.date} ${PRICES.region}`;

const TERMINAL_FAILURE: ReadonlySet<JobStatus> = new Set(["failed", "escalated"]);
const ENDED: ReadonlySet<JobStatus> = new Set(["completed", "failed", "cancelled", "escalated"]);

/** How many times the job took each step, from what its item records. */
export function stepCounts(facts: JobCostFacts): Record<Step, number> {
  const admissions = facts.attempts;
  const failed = Math.min(facts.failures, admissions);
  // Every failed attempt is requeued but one that ended the job, and one still in its backoff.
  const notRequeued = TERMINAL_FAILURE.has(facts.status) || facts.status === "retrying" ? 1 : 0;
  const requeues = Math.max(0, failed - notRequeued);
  const completed = facts.status === "completed" ? 1 : 0;
  // Changes the run does not explain: dependencies met, runAt come, cancel, pause, priority.
  const lifecycleChanges = 1 + 2 * admissions + completed + failed + requeues;
  const otherChanges = Math.max(0, facts.version - lifecycleChanges);
  return {
    submit: 1,
    admission: admissions,
    // An attempt lost before a worker took it never started; the few that do are not told apart.
    start: admissions,
    completion: completed,
    attemptFailed: failed,
    requeue: requeues,
    apiRequest: (facts.status === "cancelled" ? 1 : 0) + facts.retries,
    otherChange: otherChanges,
    statusChange: Math.max(1, facts.version),
  };
}

/** "Job State Change" entries the job's changes published. */
export function eventsOf(facts: Pick<JobCostFacts, "events" | "version" | "status">): number {
  if (facts.events === "all") return Math.max(1, facts.version);
  if (facts.events === "terminal") return ENDED.has(facts.status) ? 1 : 0;
  return 0;
}

/** The job's cost so far (all of it once it ended). Pure and deterministic. */
export function jobCost(facts: JobCostFacts): JobCost {
  const counts = stepCounts(facts);
  const sum = { ...NONE } as { -readonly [K in keyof StepRequests]: number };
  for (const step of Object.keys(STEP_REQUESTS) as Step[]) {
    const requests: StepRequests = STEP_REQUESTS[step];
    const n = counts[step];
    for (const key of Object.keys(sum) as (keyof StepRequests)[]) sum[key] += n * requests[key];
  }
  sum.eventEntries += eventsOf(facts);
  const gbSeconds = ((sum.lambdaInvocations * LAMBDA_MS_PER_INVOCATION) / 1000) * (LAMBDA_MEMORY_MB / 1024);
  const stepFunctions = sum.transitions * PRICES.stateTransition;
  const dynamodb = sum.writeUnits * PRICES.writeUnit + sum.readUnits * PRICES.readUnit;
  const sqs = sum.sqsRequests * PRICES.sqsRequest;
  const lambda = sum.lambdaInvocations * PRICES.lambdaRequest + gbSeconds * PRICES.lambdaGbSecond;
  const eventBridge = sum.eventEntries * PRICES.eventEntry;
  const api = sum.apiRequests * PRICES.apiRequest;
  const requestsUsd = stepFunctions + dynamodb + sqs + lambda + eventBridge + api;
  const nodeSeconds = Math.max(0, facts.runMs) / 1000;
  const share = Math.min(1, Math.max(0, facts.share));
  const computeUsd = (nodeSeconds / 3600) * facts.hourlyUsd * share;
  return {
    totalUsd: requestsUsd + computeUsd,
    requestsUsd,
    computeUsd,
    breakdown: {
      stepFunctions: { transitions: sum.transitions, usd: stepFunctions },
      dynamodb: { writeUnits: sum.writeUnits, readUnits: sum.readUnits, usd: dynamodb },
      sqs: { requests: sum.sqsRequests, usd: sqs },
      lambda: { invocations: sum.lambdaInvocations, gbSeconds, usd: lambda },
      eventBridge: { entries: sum.eventEntries, usd: eventBridge },
      api: { requests: sum.apiRequests, usd: api },
      compute: { nodeSeconds, share, hourlyUsd: facts.hourlyUsd, usd: computeUsd },
    },
    priceTable: PRICE_TABLE,
  };
}

/**
 * The share of a node a job reserved: the largest of its cpu, memory and GPU shares (its dominant
 * share, as fair-share weighs it): a job that takes a node's only GPU takes the node whatever CPU
 * it asks for, and one that takes all its memory leaves its CPUs idle.
 */
export function dominantShare(
  resources: { readonly cpu: number; readonly memoryMb: number; readonly gpu: number },
  node: { readonly cpu: number; readonly memoryMb: number; readonly gpu: number },
): number {
  const part = (used: number, of: number): number => (of > 0 ? used / of : 0);
  return Math.min(
    1,
    Math.max(
      part(resources.cpu, node.cpu),
      part(resources.memoryMb, node.memoryMb),
      part(resources.gpu, node.gpu),
    ),
  );
}

/**
 * Time-driven requests over `seconds`, attributed to no job: the scheduler's minute tick (one
 * invocation per pool, its lease and its reads), each node's empty long polls (one ReceiveMessage
 * per tier per `pollSeconds` when idle: an upper bound, a busy node polls less) and heartbeats
 * (a node-item update every `heartbeatSeconds`).
 */
export function overheadCost(settings: {
  readonly seconds: number;
  readonly pools: number;
  readonly nodes: number;
  readonly tiers: number;
  readonly pollSeconds: number;
  readonly heartbeatSeconds: number;
}): {
  readonly usd: number;
  readonly invocations: number;
  readonly sqsRequests: number;
  readonly writeUnits: number;
} {
  const ticks = (settings.seconds / 60) * settings.pools;
  const polls =
    settings.pollSeconds > 0
      ? (settings.seconds / settings.pollSeconds) * settings.nodes * settings.tiers
      : 0;
  const beats =
    settings.heartbeatSeconds > 0 ? (settings.seconds / settings.heartbeatSeconds) * settings.nodes : 0;
  // A tick: its invocation, the lease taken and released (2 WRU), its reads of the queue (≈ 2 RRU).
  const writeUnits = 2 * ticks + beats;
  const readUnits = 2 * ticks;
  const gbSeconds = ((ticks * LAMBDA_MS_PER_INVOCATION) / 1000) * (LAMBDA_MEMORY_MB / 1024);
  const usd =
    ticks * PRICES.lambdaRequest +
    gbSeconds * PRICES.lambdaGbSecond +
    writeUnits * PRICES.writeUnit +
    readUnits * PRICES.readUnit +
    polls * PRICES.sqsRequest;
  return { usd, invocations: ticks, sqsRequests: polls, writeUnits };
}
