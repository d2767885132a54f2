import { ulid } from "ulid";
import { z } from "zod";
import {
  type AdmissionGate,
  AdmissionPass,
  type Admit,
  type NodeState,
  type Waiting,
} from "../core/admission";
import { breakerRule, type Circuit, type CircuitStep, claimProbe } from "../core/circuit";
import { forEachConcurrent } from "../core/concurrency";
import { ConcurrentUpdateError } from "../core/errors";
import {
  type CircuitGate,
  capOverflow,
  circuitGate,
  gpuQuotaGate,
  offPeakGate,
  rateLimitGate,
  rateWindow,
  runningCapGate,
  runningCaps,
  typeConcurrencyGate,
  typeRunningLimits,
} from "../core/gates";
import { priorityTier, type Resources } from "../core/job";
import { AdmissionOrder, decideInOrder } from "../core/ordering";
import { type PoolGauges, poolGauges } from "../core/pass-metrics";
import type { Policy, RateLimit } from "../core/policy";
import { eligiblePools, type PoolConfig } from "../core/pools";
import { applyPlan, planPreemption } from "../core/preemption";
import { projectQuotaKey } from "../core/projects";
import { PENDING_REASON } from "../core/reasons";
import { canTransition } from "../core/status";
import { releaseCapacityItem, reservationFor, reserveCapacityItem } from "../store/capacity";
import { createDocumentClient } from "../store/dynamo";
import { dueJobIds } from "../store/job-indexes";
import type { JobItem, Reservation } from "../store/job-items";
import {
  applicableChange,
  MAX_TRANSACTION_ITEMS,
  type StatusChangeWrite,
  type TransactItem,
} from "../store/job-repository";
import { type LeaseItem, type NodeItem, NodeRepository } from "../store/nodes";
import { countStartsItem } from "../store/rate-limits";
import { JOB_INDEX } from "../store/tables";
import { type CircuitBreakers, circuitBreakers } from "./circuits";
import { config, type QueueUrls } from "./config";
import { deadlinePassed, expireDeadline } from "./deadlines";
import { EVENT_SOURCE, JOB_STATE_CHANGE, type JobStateChange, stateChange } from "./events";
import { createSfnClient } from "./executions";
import { keepLease } from "./lease";
import {
  type DispatchInput,
  type NotAdmittedOutput,
  requeueItem,
  StepFunctionsTaskTokens,
  type TaskTokens,
} from "./lifecycle";
import { applicableNow } from "./lifecycle-steps";
import { logger } from "./logger";
import { reportLostAttempts } from "./lost-attempts";
import { recordMetrics } from "./metrics";
import { PassState } from "./pass-state";
import { evict } from "./preemption";
import {
  leaseOwnerHints,
  MergedView,
  OwnerHeads,
  OwnerHints,
  queuedJob,
  queuePartitions,
  readsByOwner,
} from "./queue-reader";
import { type AppContext, appContext } from "./runtime";

/**
 * The scheduler: one pass per pool admits queued jobs onto free capacity (docs/lifecycle.md).
 *
 * A pass holds the pool's lease (Nodes table), so passes of one pool never overlap; a wake-up
 * that finds the lease taken marks it dirty and the holder runs once more before letting go.
 * Within the lease a pass: marks silent nodes lost; moves scheduled jobs whose runAt has come to
 * queued; reads the queue in admission order (the pool's partition and the any-pool one, merged)
 * page by page; asks core/admission where each job goes; and admits each with one transaction
 * (job queued → dispatched with its reservation, the node's `used` up) before releasing the
 * job's execution with SendTaskSuccess. Every write is conditional, so a pass run twice, or
 * alongside another after a lease expired, admits nothing twice and never over-fills a node.
 */

export type SchedulerContext = Pick<
  AppContext,
  "repo" | "clock" | "pools" | "nodesTable" | "events" | "executions" | "policies" | "usage"
> & {
  /** The policy in force while none is stored (functions/config.ts). */
  readonly defaultPolicy: Policy;
  readonly nodes: NodeRepository;
  /** Answers the AwaitAdmission tokens executions of the previous lifecycle left on jobs. */
  readonly tokens: TaskTokens;
  /** The SQS queue of each pool and priority tier: where the execution sends the attempt. */
  readonly queues: QueueUrls;
  /** How often the worker heartbeats an attempt (every third of this). */
  readonly heartbeatSeconds: number;
  /** The Dispatch state's HeartbeatSeconds: the backstop for an attempt nobody reports on. */
  readonly lostAfterSeconds: number;
  /** A node silent for this long is marked lost. */
  readonly nodeLostSeconds: number;
  readonly tuning?: Partial<SchedulerTuning>;
  /** Circuit breakers (app/circuits.ts): absent, none gates (tests of other things). */
  readonly circuits?: CircuitBreakers;
  /**
   * The owners earlier passes of this process found queued jobs of, for fair-share and
   * round-robin to read their heads side by side (app/queue-reader.ts): all of them, where the
   * lease keeps only those that fit in 600 bytes. Absent, a pass starts from the lease's alone.
   */
  readonly ownerHints?: OwnerHints;
};

export interface SchedulerTuning {
  /** A queued job waiting longer than this gets a node held for it. */
  readonly starvationSeconds: number;
  /** Queue items read per page (DynamoDB Query Limit). */
  readonly pageSize: number;
  /** Pages of the queue a pass reads at most: a pass costs O(what it can admit), not O(backlog). */
  readonly maxPages: number;
  /**
   * The pool lease's time to live; a pass renews it every third of that (app/lease.ts), so a
   * crashed holder blocks the pool this long at most.
   */
  readonly leaseSeconds: number;
  /** Passes per invocation at most, when wake-ups keep arriving (dirty lease) or writes raced. */
  readonly maxPasses: number;
  /** Waiting jobs, from the head of the queue, whose statusReason a pass refreshes (only those that changed are written). */
  readonly reasonUpdates: number;
  /** fair-share and round-robin: jobs read per owner and round. */
  readonly perOwner: number;
  /** fair-share and round-robin: owners visited per queue partition and pass. */
  readonly maxOwners: number;
  /** Nodes whose admissions are in flight at once (one node's go in one transaction: admitOnNode). */
  readonly concurrency: number;
}

export const DEFAULT_TUNING: SchedulerTuning = {
  starvationSeconds: 300,
  pageSize: 100,
  maxPages: 10,
  leaseSeconds: 15,
  maxPasses: 5,
  reasonUpdates: 100,
  perOwner: 25,
  maxOwners: 200,
  concurrency: 32,
};

/**
 * The Dispatch state's timeout beyond the job's own: the attempt also waits in the SQS queue
 * before a worker takes it. The worker enforces the job's timeoutSeconds itself; this is the
 * backstop, and it keeps TimeoutSeconds above HeartbeatSeconds as Step Functions requires.
 */
const DISPATCH_GRACE_SECONDS = 30;

let cached: SchedulerContext | undefined;

/** The scheduler's context from the process configuration, created once. */
export function schedulerContext(): SchedulerContext {
  if (!cached) {
    const c = config();
    const app = appContext();
    cached = {
      ...app,
      nodes: new NodeRepository(
        createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint }),
        c.nodesTable,
      ),
      tokens: new StepFunctionsTaskTokens(createSfnClient({ region: c.region, endpoint: c.sfnEndpoint })),
      queues: c.queues,
      heartbeatSeconds: c.heartbeatSeconds,
      lostAfterSeconds: c.lostAfterSeconds,
      nodeLostSeconds: c.nodeLostSeconds,
      defaultPolicy: c.defaultPolicy,
      circuits: circuitBreakers(app),
      ownerHints: new OwnerHints(),
    };
  }
  return cached;
}

// ---------------------------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------------------------

const jobStateChangeEvent = z.object({
  source: z.literal(EVENT_SOURCE),
  "detail-type": z.literal(JOB_STATE_CHANGE),
  detail: z.object({ pool: z.string().nullable() }),
});

/**
 * The pools an invocation should schedule: a "Job State Change" event's pool (every pool when
 * the job named none: it may run anywhere); for the minutely Scheduled Event, or anything
 * else, every pool.
 */
export function poolsToSchedule(event: unknown, pools: readonly PoolConfig[]): string[] {
  const all = pools.map((p) => p.name);
  const change = jobStateChangeEvent.safeParse(event);
  if (!change.success || change.data.detail.pool === null) return all;
  const pool = change.data.detail.pool;
  return all.includes(pool) ? [pool] : all;
}

// ---------------------------------------------------------------------------------------------
// Passes
// ---------------------------------------------------------------------------------------------

export interface PoolPassSummary {
  readonly pool: string;
  /** `busy`: another pass held the lease; it was told to run again. */
  readonly outcome: "ran" | "busy";
  readonly passes: number;
  readonly admitted: readonly { readonly jobId: string; readonly nodeId: string }[];
  /** Scheduled jobs whose runAt came, now queued (or blocked). */
  readonly promoted: readonly string[];
  /** Jobs failed because their deadline passed before they started. */
  readonly expired: readonly string[];
  /** Running jobs evicted for higher-priority ones, with their preemptor. */
  readonly preempted: readonly { readonly jobId: string; readonly preemptor: string }[];
  readonly lostNodes: readonly string[];
  /** Admissions rolled back because the job's execution could not be told. */
  readonly undone: readonly string[];
  /** The last pass's waiting jobs (those it read), with their reasons. */
  readonly waiting: readonly Waiting[];
  /** The last pass's figures for the pool's metrics; null when no pass ran. */
  readonly gauges: PoolGauges | null;
  /** Wall time of the whole call (every pass), ms. */
  readonly durationMs: number;
}

/** A pass for each pool, one after another. */
export async function runScheduler(
  ctx: SchedulerContext,
  pools: readonly string[],
): Promise<PoolPassSummary[]> {
  const summaries: PoolPassSummary[] = [];
  for (const pool of pools) summaries.push(await schedulePool(ctx, pool));
  // The heartbeat: its alarm breaches when no invocation ran for a while (missing data).
  recordMetrics({}, { schedulerPasses: 1 });
  return summaries;
}

/**
 * Takes the pool's lease and runs passes while there is news (a wake-up during the pass, a lost
 * race), at most `maxPasses`. If another pass holds the lease, tells it to run again and returns.
 */
export async function schedulePool(ctx: SchedulerContext, poolName: string): Promise<PoolPassSummary> {
  const started = performance.now();
  const tuning = { ...DEFAULT_TUNING, ...ctx.tuning };
  const pool = ctx.pools.find((p) => p.name === poolName);
  const summary = {
    pool: poolName,
    outcome: "ran" as "ran" | "busy",
    passes: 0,
    admitted: [] as { jobId: string; nodeId: string }[],
    promoted: [] as string[],
    expired: [] as string[],
    preempted: [] as { jobId: string; preemptor: string }[],
    lostNodes: [] as string[],
    undone: [] as string[],
    waiting: [] as Waiting[],
    gauges: null as PoolGauges | null,
    durationMs: 0,
  };
  if (!pool) {
    logger.warn("no such pool configured; nothing to schedule", { pool: poolName });
    return summary;
  }
  const holder = ulid();
  let taken = await takeLease(ctx, poolName, holder, tuning.leaseSeconds);
  if (!taken) return { ...summary, outcome: "busy" };
  const lease = keepLease(ctx.nodes, poolName, holder, tuning.leaseSeconds, ctx.clock);
  try {
    for (;;) {
      summary.passes++;
      let result: PassResult;
      try {
        result = await pass(ctx, pool, tuning, taken, (leave) =>
          ctx.nodes.releaseLease(poolName, holder, leave),
        );
      } catch (error) {
        // Unless the pass let go already: then this finds another holder, or none, and does nothing.
        await ctx.nodes.releaseLease(poolName, holder).catch(() => undefined);
        throw error;
      }
      summary.admitted.push(...result.admitted);
      summary.promoted.push(...result.promoted);
      summary.expired.push(...result.expired);
      summary.preempted.push(...result.preempted);
      summary.lostNodes.push(...result.lostNodes);
      summary.undone.push(...result.undone);
      summary.waiting = result.waiting;
      summary.gauges = result.gauges;
      // The pass let go of the lease; it runs again if something arrived meanwhile (the release
      // says so atomically) or if it lost a race.
      if (!(result.dirty || result.raced) || summary.passes >= tuning.maxPasses) break;
      // Taken by another pass in between: that pass reads everything fresh.
      taken = await takeLease(ctx, poolName, holder, tuning.leaseSeconds);
      if (!taken) break;
    }
  } finally {
    lease.stop();
  }
  summary.durationMs = Math.round(performance.now() - started);
  recordPassMetrics(summary);
  if (
    summary.admitted.length > 0 ||
    summary.promoted.length > 0 ||
    summary.expired.length > 0 ||
    summary.preempted.length > 0 ||
    summary.lostNodes.length > 0
  ) {
    logger.info("scheduling pass", {
      pool: poolName,
      passes: summary.passes,
      admitted: summary.admitted.length,
      promoted: summary.promoted.length,
      expired: summary.expired.length,
      preempted: summary.preempted,
      lostNodes: summary.lostNodes,
      undone: summary.undone.length,
    });
  }
  return summary;
}

/** The lease as taken, or — when a live pass holds it — null and a note to that pass to run again. */
async function takeLease(
  ctx: SchedulerContext,
  pool: string,
  holder: string,
  seconds: number,
): Promise<LeaseItem | null> {
  for (let round = 0; round < 3; round++) {
    const lease = await ctx.nodes.acquireLease(pool, holder, ctx.clock(), seconds);
    if (lease) return lease;
    // False when the holder let go in between: try to take it again.
    if (await ctx.nodes.markDirty(pool, ctx.clock())) return null;
  }
  return null;
}

interface PassResult {
  readonly gauges: PoolGauges;
  readonly admitted: { jobId: string; nodeId: string }[];
  readonly promoted: string[];
  readonly expired: string[];
  readonly preempted: { jobId: string; preemptor: string }[];
  readonly lostNodes: string[];
  readonly undone: string[];
  readonly waiting: Waiting[];
  /** Some write lost a race: what it read was stale, so another pass is worth it. */
  readonly raced: boolean;
  /** A wake-up arrived while the pass held the lease: the release said so. */
  readonly dirty: boolean;
}

/** One pass over a pool, under the lease `lease` (as taken); it lets go with `release` at its end. */
async function pass(
  ctx: SchedulerContext,
  pool: PoolConfig,
  tuning: SchedulerTuning,
  lease: LeaseItem,
  release: (leave: { lastOwner: string | null; queueOwners: readonly string[] | null }) => Promise<{
    dirty: boolean;
  }>,
): Promise<PassResult> {
  const now = ctx.clock();
  const state = new PassState(ctx, now);
  // What the pass reads before the queue, all at once: each is a round trip, and none needs
  // another's answer. The sweep finishes first too, so a job it promotes is admitted this pass.
  const [lost, listedBefore, { promoted, expired }, { policy }, usage] = await Promise.all([
    ctx.nodes.markLostNodes(pool.name, now, ctx.nodeLostSeconds),
    // Every pool's nodes: a job that may run in several pools goes to the one with the most
    // free of what it needs most, so this pass must see them all; it admits only onto its own.
    Promise.all(ctx.pools.map((p) => ctx.nodes.listNodes(p.name))),
    sweepDueJobs(ctx, pool.name, tuning),
    ctx.policies.getPolicy(ctx.defaultPolicy),
    state.usageByOwner(pool.name),
  ]);
  for (const node of lost) {
    logger.warn("node lost: no heartbeat", {
      pool: pool.name,
      nodeId: node.nodeId,
      lastHeartbeatAt: node.lastHeartbeatAt,
    });
  }
  // Read alongside the marking: a node it marked may have been listed before the write landed.
  const marked = new Set(lost.map((n) => n.nodeId));
  const listed = listedBefore
    .flat()
    .map((n) => (n.pool === pool.name && marked.has(n.nodeId) ? { ...n, status: "lost" as const } : n));
  const allNodes = listed.filter((n) => n.status === "up");
  // A lost node that still has something booked may have had attempts running: report them.
  await Promise.all(
    listed
      .filter((n) => n.pool === pool.name && n.status === "lost" && holdsCapacity(n))
      .map((n) =>
        reportLostAttempts(ctx, n).catch((error: unknown) => {
          // Step Functions' heartbeat timeout is the backstop; the next pass tries again.
          logger.warn("lost node's attempts not reported", { nodeId: n.nodeId, error: error as Error });
        }),
      ),
  );
  const ownNodes = allNodes.filter((n) => n.pool === pool.name);
  const byId = new Map(ownNodes.map((n) => [n.nodeId, n]));
  const gates: AdmissionGate[] = [offPeakGate(policy.offPeak), gpuQuotaGate(state.quotas)];
  // typeConcurrency and types[type].maxRunning: one limit per type, the smaller of the two.
  const typeLimits = typeRunningLimits(policy);
  if (Object.keys(typeLimits).length > 0) {
    gates.push(typeConcurrencyGate(typeLimits, await state.activeByType()));
  }
  // Read only when the policy gives some type a breaker: one Query of the breakers' partition.
  const circuits = ctx.circuits
    ? await ctx.circuits.forPass(policy, (ids) => ctx.repo.getJobItems(ids))
    : null;
  const circuit = circuits ? circuitGate(circuits, (type) => breakerRule(policy, type), now) : null;
  if (circuit) gates.push(circuit);
  // Running caps and rate limits cost reads only when the policy has them.
  const caps = runningCaps(policy.maxRunning);
  if (caps) {
    gates.push(
      runningCapGate(caps, await state.activeCounts(), (job) =>
        eligiblePools(ctx.pools, job).map((p) => p.name),
      ),
    );
  }
  const rates = rateLimitsOf(policy);
  if (Object.keys(rates).length > 0) {
    const started = await ctx.policies.getRateStarts(
      Object.entries(rates).map(([type, limit]) => ({ type, windowStart: rateWindow(limit, now).start })),
    );
    gates.push(rateLimitGate(rates, started));
  }
  const counting = rateCounting(ctx, rates, now);
  const admission = new AdmissionPass({
    nodes: allNodes.map(nodeState),
    pools: ctx.pools,
    now,
    starvationSeconds: tuning.starvationSeconds,
    gates,
  });
  const capacity = totalCapacity(ownNodes);
  let lastOwner = lease.lastOwner ?? null;

  // Where the owner-by-owner read starts: the owners holding capacity, likely to have more
  // queued, and those the last pass found, from the lease (it may have run in another process).
  const reader = new CandidateReader(ctx, pool.name, policy, tuning, [
    ...usage.keys(),
    ...(lease.queueOwners ?? []),
  ]);
  const admitted: { jobId: string; nodeId: string }[] = [];
  const undone: string[] = [];
  const waiting: Waiting[] = [];
  const read = new Map<string, JobItem>();
  const publishing: Promise<Settled>[] = [];
  /** What the pages' decisions placed on this pool's nodes, written once the reading is done. */
  const placed: Admit[] = [];
  let raced = false;

  // The first batch is read even when nothing can fit: its jobs learn why they wait (and may
  // preempt). With no room anywhere, the head of the queue in stored order is enough for that:
  // a full pool costs one page, whatever the policy and the backlog.
  let batch = admission.exhausted ? await reader.head() : await reader.first();
  for (let round = 0; batch.length > 0 && round < tuning.maxPages; round++) {
    const ready = batch.filter((j) => j.status === "queued" && !read.has(j.id) && !deadlinePassed(j, now));
    for (const j of ready) read.set(j.id, j);
    // A project's quota too (issue 13): only GPU jobs that carry a project add a key to look up.
    await state.loadQuotas(
      ready
        .filter((j) => j.resources.gpu > 0)
        .flatMap((j) => (j.project ? [j.owner, projectQuotaKey(j.project)] : [j.owner])),
    );
    const order = new AdmissionOrder({
      algorithm: policy.algorithm,
      agingSecondsPerStep: policy.agingSecondsPerStep,
      weights: policy.weights,
      now,
      jobs: ready.map(queuedJob),
      usage,
      capacity,
      lastOwner,
    });
    const decision = decideInOrder(admission, order);
    lastOwner = order.lastOwner ?? lastOwner;
    waiting.push(...decision.waiting.filter((w) => w.kind !== "ineligible"));

    // Placements on other pools' nodes are that pool's pass to make.
    let own = decision.admit.filter((a) => a.pool === pool.name);
    if (caps) {
      // A job that could also have run elsewhere may be placed here past this pool's cap.
      const active = (await state.activeIn(pool.name)).length + placed.length;
      const { keep, held, reason } = capOverflow(caps, pool.name, active, own);
      own = [...keep];
      if (reason) {
        for (const a of held)
          waiting.push({ jobId: a.jobId, reason: reason.message, kind: "gate", code: reason.code });
      }
    }
    placed.push(...own);
    // The next page, unless this one filled the pool or was the last a pass reads.
    if (admission.exhausted || round + 1 >= tuning.maxPages) break;
    batch = await reader.more();
  }

  // The placements of every page are written together, once the reading is done: one
  // transaction per node for all its jobs of the pass, where one per node and page cost a round
  // trip in a row per page and a request per node and page (`npm run bench:scheduler`). The
  // decisions never waited for the writes: the pass books what it places in memory as it
  // decides, and a write that loses a race only leaves that capacity to the next pass.
  if (placed.length > 0) {
    const events: JobStateChange[] = [];
    const records: TransactItem[] = [];
    await forEachNodeGroup(placed, tuning.concurrency, async (group) => {
      const node = byId.get(group[0]?.nodeId ?? "");
      if (!node) return;
      const placements = group.flatMap((a): Placement[] => {
        const item = read.get(a.jobId);
        if (!item) return [];
        const probe = probeClaim(circuit, circuits, item, now);
        // Its breaker changed under the pass: the next pass decides again.
        if (probe === null) return [];
        return [{ item, why: a.why, ...(probe ? { probe } : {}) }];
      });
      for (const { item, outcome, probe } of await admitOnNode(
        ctx,
        node,
        placements,
        now,
        counting,
        records,
      )) {
        if (outcome.kind === "admitted") {
          admitted.push({ jobId: item.id, nodeId: node.nodeId });
          events.push(outcome.event);
          if (probe) await ctx.circuits?.probeAdmitted(probe.step);
        } else if (outcome.kind === "undone") {
          undone.push(item.id);
          events.push(outcome.event);
        } else if (outcome.kind === "raced") {
          raced = true;
        }
      }
    });
    // Not awaited here: the preemptions and the pass's closing writes go meanwhile.
    publishing.push(settle(ctx.events.publish(events)), settle(recordAdmissions(ctx, records)));
  }

  const preempted = policy.preemption.enabled
    ? await preemptFor(ctx, pool, state, admission, waiting, read, policy.preemption.cooldownSeconds, now)
    : [];
  // An eviction freed capacity for its preemptor: the next pass admits it.
  if (preempted.length > 0) raced = true;
  const newOwner = lastOwner !== (lease.lastOwner ?? null) ? lastOwner : null;
  // The pass's closing writes and its events, side by side: none depends on another.
  const closing = await Promise.all([
    settle(refreshReasons(ctx, waiting.slice(0, tuning.reasonUpdates), read)),
    ...publishing,
  ]);
  const failed = closing.find((c) => c.failed);
  if (failed) throw failed.error;
  // Then the lease goes, with what the next pass starts from. (Let go alongside the closing
  // writes, it saved their round trip, but wake-ups that arrived meanwhile started passes of
  // their own instead of folding into this one's rerun: `npm run bench` measured 0.6 more
  // control-plane requests per job.)
  const found = reader.owners;
  const { dirty } = await release({
    lastOwner: newOwner,
    queueOwners: found ? leaseOwnerHints(found, lease.queueOwners) : null,
  });
  const gauges = poolGauges({
    waiting,
    jobs: new Map(
      [...read.values()].map((j) => [j.id, { priority: j.priority, queuedAt: j.queuedAt ?? j.createdAt }]),
    ),
    // Up and draining nodes both hold bookings; a lost node's capacity is gone.
    nodes: listed.filter((n) => n.pool === pool.name && n.status !== "lost"),
    admitted: admitted.flatMap((a) => {
      const item = read.get(a.jobId);
      return item ? [item.resources] : [];
    }),
    gpuPool: pool.node.gpu > 0,
    now,
  });
  return {
    admitted,
    promoted,
    expired,
    preempted,
    lostNodes: lost.map((n) => n.nodeId),
    undone,
    waiting,
    gauges,
    raced,
    dirty,
  };
}

/**
 * The pool's figures after a call that ran (core/metrics.ts): what the worker pools scale on
 * (QueuedJobs), admissions, the queue by tier, the oldest job waiting for capacity, capacity in
 * use, lost nodes and the call's duration. Lines grouped by dimension set.
 */
function recordPassMetrics(summary: PoolPassSummary): void {
  const { pool, gauges } = summary;
  if (summary.outcome !== "ran" || !gauges) return;
  recordMetrics(
    { pool },
    {
      queuedJobs: gauges.queuedJobs,
      admittedJobs: summary.admitted.length,
      oldestCapacityWaitAge: gauges.oldestCapacityWaitSeconds,
      schedulerPassDuration: summary.durationMs,
      lostNodes: summary.lostNodes.length,
    },
  );
  for (const [tier, count] of Object.entries(gauges.waitingByTier)) {
    recordMetrics({ pool, tier }, { waitingJobs: count });
  }
  for (const [resource, fraction] of Object.entries(gauges.capacityInUse)) {
    recordMetrics({ pool, resource }, { capacityInUse: fraction });
  }
}

function holdsCapacity(node: NodeItem): boolean {
  return node.used.cpu > 0 || node.used.memoryMb > 0 || node.used.gpu > 0;
}

/**
 * Preemption (API.md): a queued job that cannot fit may evict running jobs of strictly lower
 * priority in this pool. Waiting jobs are considered in the order they were offered, at most
 * MAX_PREEMPTORS_PER_PASS of them; each plan is applied to the pass's view before the next, so
 * no job is evicted twice and two preemptors never count on the same freed capacity.
 */
async function preemptFor(
  ctx: SchedulerContext,
  pool: PoolConfig,
  state: PassState,
  admission: AdmissionPass,
  waiting: readonly Waiting[],
  read: ReadonlyMap<string, JobItem>,
  cooldownSeconds: number,
  now: Date,
): Promise<{ jobId: string; preemptor: string }[]> {
  const evicted: { jobId: string; preemptor: string }[] = [];
  let nodes = admission.nodes().filter((n) => n.pool === pool.name);
  let running = await state.running(pool.name);
  let preemptors = 0;
  for (const w of waiting) {
    if (preemptors >= MAX_PREEMPTORS_PER_PASS) break;
    if (w.kind !== "capacity" && w.kind !== "held") continue;
    const item = read.get(w.jobId);
    if (!item) continue;
    const job = queuedJob(item);
    const eligible = eligiblePools(ctx.pools, job).map((p) => p.name);
    if (!eligible.includes(pool.name)) continue;
    const plan = planPreemption({ job, nodes, running, now, cooldownSeconds });
    if (!plan) continue;
    preemptors++;
    for (const victim of plan.victims) {
      const attempts = (await state.activeIn(pool.name)).find((a) => a.id === victim.id)?.attempts;
      if (attempts === undefined) continue;
      if (await evict(ctx, { id: victim.id, attempts }, job.id)) {
        evicted.push({ jobId: victim.id, preemptor: job.id });
      }
    }
    ({ nodes, running } = applyPlan(nodes, running, plan, job));
  }
  return evicted;
}

/** At most this many queued jobs preempt per pass: evictions are disruptive, and the next pass sees their effect. */
const MAX_PREEMPTORS_PER_PASS = 5;

function totalCapacity(nodes: readonly NodeItem[]): Resources {
  return nodes.reduce(
    (sum, n) => ({
      cpu: sum.cpu + n.capacity.cpu,
      memoryMb: sum.memoryMb + n.capacity.memoryMb,
      gpu: sum.gpu + n.capacity.gpu,
    }),
    { cpu: 0, memoryMb: 0, gpu: 0 },
  );
}

/**
 * The queue as the policy reads it (app/queue-reader.ts): in admission order for `priority`,
 * owner by owner for `fair-share` and `round-robin`; plus, with aging on, the longest-waiting
 * jobs once per pass.
 */
class CandidateReader {
  private readonly ordered: MergedView | null;
  private readonly byOwner: OwnerHeads | null;
  private readonly aged: MergedView | null;

  private readonly partitions: string[];
  private readonly repo: SchedulerContext["repo"];
  private readonly knownOwners: string[];

  constructor(
    ctx: Pick<SchedulerContext, "repo" | "ownerHints">,
    pool: string,
    policy: Policy,
    private readonly tuning: SchedulerTuning,
    knownOwners: Iterable<string>,
  ) {
    const { repo } = ctx;
    this.repo = repo;
    this.knownOwners = [...knownOwners];
    const partitions = queuePartitions(pool);
    this.partitions = partitions;
    const byOwner = readsByOwner(policy.algorithm);
    this.ordered = byOwner
      ? null
      : new MergedView(repo, JOB_INDEX.queue, "queueSk", partitions, tuning.pageSize);
    this.byOwner = byOwner
      ? new OwnerHeads(repo, partitions, {
          perOwner: tuning.perOwner,
          maxOwners: tuning.maxOwners,
          ...(ctx.ownerHints ? { hints: ctx.ownerHints } : {}),
        })
      : null;
    this.aged =
      policy.agingSecondsPerStep > 0
        ? new MergedView(repo, JOB_INDEX.queueByAge, "queueAgeSk", partitions, tuning.pageSize)
        : null;
  }

  async first(): Promise<JobItem[]> {
    const [main, aged] = await Promise.all([
      this.ordered ? this.ordered.next(this.tuning.pageSize) : (this.byOwner?.first(this.knownOwners) ?? []),
      this.aged ? this.aged.next(this.tuning.pageSize) : [],
    ]);
    return [...main, ...aged];
  }

  /** One page of the queue in stored order (priority, deadline, age), from both partitions. */
  async head(): Promise<JobItem[]> {
    return new MergedView(this.repo, JOB_INDEX.queue, "queueSk", this.partitions, this.tuning.pageSize).next(
      this.tuning.pageSize,
    );
  }

  async more(): Promise<JobItem[]> {
    if (this.ordered) return this.ordered.exhausted ? [] : this.ordered.next(this.tuning.pageSize);
    return this.byOwner ? this.byOwner.more() : [];
  }

  /**
   * The owners the owner-by-owner read found queued jobs of; null when the pass made none (the
   * policy reads no such view, or the pool was full and the pass read the queue's head instead).
   */
  get owners(): string[] | null {
    return this.byOwner ? this.byOwner.owners : null;
  }
}

function nodeState(node: NodeItem): NodeState {
  return { nodeId: node.nodeId, pool: node.pool, capacity: node.capacity, used: node.used };
}

type AdmitOutcome =
  | { readonly kind: "admitted"; readonly event: JobStateChange }
  | { readonly kind: "undone"; readonly event: JobStateChange }
  /** A write lost a race: what the pass read is stale. */
  | { readonly kind: "raced" }
  | { readonly kind: "skipped" };

/**
 * One job onto one node: the conditional transaction (job queued → dispatched at the version
 * read, reservation, attempt count, the execution's ARN; node `used` up if it still fits), then
 * the attempt's lifecycle execution is started with the admission as its input. If it cannot be
 * started, the admission is undone in one transaction so the capacity is not held by a job
 * nobody runs; a later pass admits the job again, under a new version and so a new execution.
 */
async function admit(
  ctx: SchedulerContext,
  item: JobItem,
  node: NodeItem,
  why: string,
  now: Date,
  probe: ProbeClaim | undefined,
  counting: RateCounting,
  records: TransactItem[],
): Promise<AdmitOutcome> {
  const queueUrl = ctx.queues[node.pool]?.[priorityTier(item.priority)];
  if (!queueUrl) {
    logger.error("no queue configured for this pool and tier; the job cannot be dispatched", {
      pool: node.pool,
      tier: priorityTier(item.priority),
      jobId: item.id,
      attempt: item.attempts + 1,
    });
    return { kind: "skipped" };
  }
  const { items, record, next, reservation, attempt } = admissionChange(ctx, item, node, why, now, probe);
  try {
    await ctx.repo.transact([
      ...items,
      reserveCapacityItem(ctx.nodesTable, reservation, node.capacity),
      ...counting([item]),
    ]);
  } catch (error) {
    // Someone moved the job (cancel, pause, a priority change), the node filled up, or its
    // type's rate limit was used up by another pass: skip it.
    if (error instanceof ConcurrentUpdateError) return { kind: "raced" };
    throw error;
  }

  records.push(record);
  return startAdmitted(ctx, { item, node, next, reservation, attempt, queueUrl });
}

/**
 * The transition records of a pass's admissions whose transactions committed, put once the
 * admissions are written, while the pass goes on (a BatchWriteItem per 25: 1 write unit each,
 * where the transaction billed 2; one request for the pass rather than one per node).
 * Unconditional: each is keyed by the version its committed change wrote, which nothing else
 * writes. Never rejects. Lost with a scheduler that dies in between, or refused past the client's retries:
 * then `/transitions` lacks that job's `dispatched` row, never a later one (as the worker's start,
 * docs/lifecycle.md), and the admission stands.
 */
async function recordAdmissions(ctx: SchedulerContext, records: readonly TransactItem[]): Promise<void> {
  try {
    await ctx.repo.batchPut(records.flatMap((r) => (r.Put?.Item ? [r.Put.Item] : [])));
  } catch (error) {
    logger.warn("admissions' transition records not written", {
      jobIds: records.map((r) => r.Put?.Item?.pk),
      error: error as Error,
    });
  }
}

/**
 * The admission's change of one job (queued → dispatched: reservation on the node, attempts + 1,
 * the execution's ARN) and, apart, its transition record, which records where and why it was
 * placed. Executions are named by the version this change writes (the read version + 1).
 * The record is not in the admission's transaction, which bills every write twice: it is put
 * once the transaction committed (`recordAdmissions`).
 */
function admissionChange(
  ctx: SchedulerContext,
  item: JobItem,
  node: NodeItem,
  why: string,
  now: Date,
  probe?: ProbeClaim,
): {
  items: TransactItem[];
  write: StatusChangeWrite;
  record: TransactItem;
  next: JobItem;
  reservation: Reservation;
  attempt: number;
} {
  const attempt = item.attempts + 1;
  const reservation = reservationFor(node.pool, node.nodeId, item.resources);
  const executionArn = ctx.executions.arnOf(item.id, item.version + 1);
  const { update, write, record, next } = ctx.repo.statusChangeItems(
    item,
    {
      to: "dispatched",
      // Why that node is the transition's to say: the job item stays under 1 KB (docs/data-model.md).
      reason: `dispatched to node ${node.nodeId} in pool ${node.pool}`,
      recordReason: `dispatched to node ${node.nodeId} in pool ${node.pool}: ${why}`,
      triggeredBy: null,
      set: {
        reservation,
        attempts: attempt,
        ...(executionArn ? { executionArn } : {}),
        ...(probe ? { circuitProbe: probe.key } : {}),
      },
      // A mark left from an earlier attempt as a probe goes: only this admission's probe is one.
      remove: probe ? ["admissionToken"] : ["admissionToken", "circuitProbe"],
    },
    now.toISOString(),
  );
  // The probe is claimed on its breaker in the same transaction: conditional on the breaker as
  // the pass read it, so two passes (or pools) can never both admit a probe.
  const claim = probe && ctx.circuits ? ctx.circuits.repo.stepItems(probe.step) : [];
  return { items: [update, ...claim], write, record, next, reservation, attempt };
}

/** A job whose admission was written (apart, or its transaction committed): what starting its execution needs. */
interface Committed {
  readonly item: JobItem;
  readonly node: NodeItem;
  /** The job item as the admission left it. */
  readonly next: JobItem;
  readonly reservation: Reservation;
  readonly attempt: number;
  readonly queueUrl: string;
}

/**
 * After the admission's write: the attempt's execution is started with the admission as
 * its input. If it cannot be started, the admission is undone in one transaction so the capacity
 * is not held by a job nobody runs. (admit()'s second half, shared with admitOnNode's batches.)
 */
async function startAdmitted(
  ctx: SchedulerContext,
  committed: Committed,
  /** Runs the undo's transaction: one at a time per node when a batch's jobs are started together. */
  undoing: Serial = (work) => work(),
): Promise<AdmitOutcome> {
  const { item, node, next, reservation, attempt, queueUrl } = committed;
  const input: DispatchInput = {
    jobId: item.id,
    pool: node.pool,
    nodeId: node.nodeId,
    queueUrl,
    attempt,
    // The queue wait comes before the job's own time: the worker times the job from its start.
    timeoutSeconds: item.timeoutSeconds + ctx.lostAfterSeconds + DISPATCH_GRACE_SECONDS,
    heartbeatSeconds: ctx.heartbeatSeconds,
    lostAfterSeconds: ctx.lostAfterSeconds,
  };
  let started: string | null;
  try {
    started = await ctx.executions.start(item.id, next.version, input);
  } catch (error) {
    logger.warn("lifecycle execution not started", { jobId: item.id, error: error as Error });
    started = null;
  }
  if (started) {
    logger.info("job dispatched", { jobId: item.id, attempt, pool: node.pool, nodeId: node.nodeId });
    // An execution of the previous lifecycle parked at AwaitAdmission (a stack upgraded while the
    // job waited) must not wait for ever: it is told the job needs it no more.
    if (item.admissionToken) {
      const output: NotAdmittedOutput = {
        admitted: false,
        reason: `superseded by execution ${started}, started at admission`,
      };
      await ctx.tokens.succeed(item.admissionToken, output).catch((error: unknown) => {
        logger.warn("previous lifecycle's execution not released", { jobId: item.id, error: error as Error });
      });
    }
    return { kind: "admitted", event: stateChange(item.status, next) };
  }

  // Step Functions could not be reached: put the job back so its capacity is not held.
  logger.warn("admitted job's execution could not be started; admission undone", { jobId: item.id, attempt });
  const undo = ctx.repo.statusChangeItems(
    next,
    {
      to: "queued",
      reason: "waiting for admission (its execution could not be started)",
      reasonCode: "pending",
      triggeredBy: null,
      // A token of the previous lifecycle goes back with the job: the admission that starts its
      // new execution is the one that answers it, or its execution waits for ever.
      set: {
        attempts: item.attempts,
        ...(item.admissionToken ? { admissionToken: item.admissionToken } : {}),
      },
      remove: ["executionArn"],
    },
    ctx.clock().toISOString(),
  );
  try {
    // Two undos on one node at once would cancel each other (TransactionConflict), and a
    // cancelled undo reads as a job that moved on: leaving its capacity held by nobody.
    await undoing(() => ctx.repo.transact([...undo.items, releaseCapacityItem(ctx.nodesTable, reservation)]));
  } catch (error) {
    // The job moved on from dispatched (its execution started after all, and a worker took it).
    if (error instanceof ConcurrentUpdateError)
      return { kind: "admitted", event: stateChange(item.status, next) };
    throw error;
  }
  return { kind: "undone", event: stateChange(item.status, undo.next) };
}

/**
 * One node's admissions of a round. Most go apart (admitApart): the node booked once for all of
 * them, then each job's own conditional write, no transaction. A breaker's probe, whose claim on
 * its breaker must land with the job, and a job of a rate-limited type, whose counter must, go
 * in a transaction, batched: as many jobs as fit go in one TransactWriteItems — each job's
 * conditional change, as admit() writes it, and ONE update of the node adding up their
 * reservations (DynamoDB refuses two operations on one item in a transaction; the node's
 * condition checks the sum still fits) — then every job's execution is started at once.
 * The transaction is all or nothing. Cancelled by jobs that moved meanwhile (their conditions
 * alone), it is sent again without them: they lost their race, and the others cost one more
 * round trip. Cancelled by anything else (the node filled up or went away, a rate limit, a
 * conflict), the jobs are admitted one by one as admit() does, so those that still fit go. A
 * job admit() would skip (no queue for its tier), or alone in its batch, goes through admit()
 * itself. A pass writes each node's admissions once its pages are read (pass()), so a batch
 * holds all the node's jobs of the pass, up to a transaction's 100 items. Every admission's
 * transition record goes to `records`, for the pass to put once they are written.
 */
async function admitOnNode(
  ctx: SchedulerContext,
  node: NodeItem,
  placements: readonly Placement[],
  now: Date,
  counting: RateCounting,
  /** Where the transition records of the admissions that committed go (recordAdmissions). */
  records: TransactItem[],
): Promise<Admission[]> {
  const outcomes: Admission[] = [];
  const oneByOne = async (batch: readonly Placement[]) => {
    for (const { item, why, probe } of batch)
      outcomes.push({
        item,
        outcome: await admit(ctx, item, node, why, now, probe, counting, records),
        ...(probe ? { probe } : {}),
      });
  };
  const apart: Change[] = [];
  const batches: Change[][] = [];
  let batch: Change[] = [];
  let size = 1; // the node's update
  // A rate-limited type's counter: one item per type in a transaction, whatever its jobs.
  let counted = new Set<string>();
  const alone: Placement[] = [];
  for (const placement of placements) {
    const { item, why, probe } = placement;
    const queueUrl = ctx.queues[node.pool]?.[priorityTier(item.priority)];
    if (!queueUrl) {
      alone.push(placement);
      continue;
    }
    const { items, write, record, next, reservation, attempt } = admissionChange(
      ctx,
      item,
      node,
      why,
      now,
      probe,
    );
    const committed = { item, node, next, reservation, attempt, queueUrl };
    const limited = counting([item]).length > 0;
    if (!probe && !limited) {
      apart.push({ ...placement, items, write, record, committed });
      continue;
    }
    if (
      size + items.length + (limited && !counted.has(item.type) ? 1 : 0) > MAX_TRANSACTION_ITEMS &&
      batch.length > 0
    ) {
      batches.push(batch);
      batch = [];
      size = 1;
      counted = new Set();
    }
    const counter = limited && !counted.has(item.type) ? 1 : 0;
    if (limited) counted.add(item.type);
    batch.push({ ...placement, items, write, record, committed });
    size += items.length + counter;
  }
  if (batch.length > 0) batches.push(batch);
  await oneByOne(alone);
  if (apart.length > 0) outcomes.push(...(await admitApart(ctx, node, apart, records)));

  for (const jobs of batches) {
    let left = jobs;
    while (left.length > 1) {
      const total = reservationFor(node.pool, node.nodeId, resourcesOf(left));
      const written = await ctx.repo.transactParts<string>({
        ...Object.fromEntries(left.map((j) => [j.item.id, j.items])),
        [NODE_PART]: [reserveCapacityItem(ctx.nodesTable, total, node.capacity)],
        [COUNTERS_PART]: counting(left.map((j) => j.item)),
      });
      if (written.ok) {
        records.push(...left.map((j) => j.record));
        const undoing = serial();
        const started = await Promise.all(left.map((j) => startAdmitted(ctx, j.committed, undoing)));
        left.forEach((j, i) => {
          const outcome = started[i];
          if (outcome) outcomes.push({ item: j.item, outcome, ...(j.probe ? { probe: j.probe } : {}) });
        });
        left = [];
        break;
      }
      // Refused only by jobs that moved since the pass read them (a cancel, a priority change):
      // they lost their race, and the others go again together, without them. Refused by
      // anything else (the node filled up, its type's rate limit, a conflict): each job goes
      // alone, so one that still fits is not held back by one that does not.
      const moved = left.filter((j) => written.conditionFailed.has(j.item.id));
      if (moved.length === 0 || moved.length !== written.refused.size) break;
      for (const j of moved) outcomes.push({ item: j.item, outcome: { kind: "raced" } });
      left = left.filter((j) => !moved.includes(j));
    }
    await oneByOne(left);
  }
  return outcomes;
}

/** One admission as admissionChange() makes it, and what starting its execution needs once written. */
type Change = Placement & {
  items: TransactItem[];
  /** The job's change as data, for admitApart's write of many (JobRepository#changeEach). */
  write: StatusChangeWrite;
  record: TransactItem;
  committed: Committed;
};

type Admission = { item: JobItem; outcome: AdmitOutcome; probe?: ProbeClaim };

/** What the jobs of these admissions take together. */
function resourcesOf(changes: readonly Change[]): Resources {
  return changes.reduce(
    (sum, j) => ({
      cpu: sum.cpu + j.item.resources.cpu,
      memoryMb: sum.memoryMb + j.item.resources.memoryMb,
      gpu: sum.gpu + j.item.resources.gpu,
    }),
    { cpu: 0, memoryMb: 0, gpu: 0 },
  );
}

/**
 * One node's plain admissions (no breaker probe, no rate-limited type), written apart rather than
 * in a transaction, which DynamoDB bills twice with every index entry the job moves
 * (docs/data-model.md): first the node booked for all of them (one conditional UpdateItem, `used`
 * up by their sum if it still fits: NodeRepository#book), then each job's conditional change, side
 * by side (PartiQL, 25 to a request: JobRepository#changeEach), then what was booked for the jobs
 * whose change was refused is given back.
 *
 * In that order a job is never dispatched on capacity its node does not count. A pass that dies
 * between the writes leaves capacity booked for nobody, which the reconciler's proof gives back
 * (it leaves a recent booking's excess alone for a while, as its jobs' writes may be landing):
 * a node idle for a while, never one that takes more than it has. The give-back is conditional
 * on the node's repair count as the booking left it, like a completion's release.
 *
 * The node refusing the sum (it filled up, or is no longer up), the jobs go one by one, so those
 * that still fit go. The jobs' writes are sent at most once, so a refused one means its job
 * moved (a cancel, a pause, a priority change). One whose answer was lost is read back
 * (landedAfterAll): found as it made the job, it landed and goes on like the others; otherwise
 * its booking is left to the proof, and the pass runs again.
 */
async function admitApart(
  ctx: SchedulerContext,
  node: NodeItem,
  changes: readonly Change[],
  records: TransactItem[],
): Promise<Admission[]> {
  const raced = (list: readonly Change[]): Admission[] =>
    list.map((c) => ({ item: c.item, outcome: { kind: "raced" } }));
  const booking = await ctx.nodes.book(
    reservationFor(node.pool, node.nodeId, resourcesOf(changes)),
    node.capacity,
    ctx.clock(),
  );
  if (booking.outcome === "refused") {
    if (changes.length === 1) return raced(changes);
    const outcomes: Admission[] = [];
    for (const change of changes) outcomes.push(...(await admitApart(ctx, node, [change], records)));
    return outcomes;
  }
  if (booking.outcome === "unknown") {
    logger.warn("a node's booking may or may not have landed; its admissions wait for the next pass", {
      pool: node.pool,
      nodeId: node.nodeId,
      jobIds: changes.map((c) => c.item.id),
    });
    return raced(changes);
  }

  const sent = await ctx.repo.changeEach(changes.map((change) => change.write));
  const landed = await landedAfterAll(
    ctx,
    node,
    changes.filter((_, i) => sent[i] === "unknown"),
  );
  const written = sent.map((outcome, i) =>
    outcome === "unknown" && landed.has(changes[i]?.item.id ?? "") ? "written" : outcome,
  );
  const moved = changes.filter((_, i) => written[i] === "refused");
  if (moved.length > 0) {
    const refund = reservationFor(node.pool, node.nodeId, resourcesOf(moved));
    const released = await ctx.nodes.releaseOnce(refund, booking.repairs);
    if (released !== "released") {
      logger.warn("the booking of admissions that lost their race is left to the reconciler's proof", {
        pool: node.pool,
        nodeId: node.nodeId,
        refund,
        released,
      });
    }
  }
  const undoing = serial();
  return Promise.all(
    changes.map(async (change, i): Promise<Admission> => {
      if (written[i] !== "written") return { item: change.item, outcome: { kind: "raced" } };
      records.push(change.record);
      return { item: change.item, outcome: await startAdmitted(ctx, change.committed, undoing) };
    }),
  );
}

/**
 * Of admissions whose writes' answers were lost, those known to have landed: the job read back
 * (strongly consistent) exactly as the write made it — its version, status and time, its node and
 * execution — which nothing but that write makes. Anything else proves nothing: a job still as
 * read may yet receive a write that lands late, and one moved on may be this write landed and
 * then cancelled (whose cancel gave the capacity back). Those keep their booking, for the
 * reconciler's proof to settle, rather than risk giving it back twice; should one have landed
 * after all, its job is dispatched without an execution, which the reconciler finds as it finds
 * one whose pass died before StartExecution.
 */
async function landedAfterAll(
  ctx: SchedulerContext,
  node: NodeItem,
  unknown: readonly Change[],
): Promise<Set<string>> {
  const landed = new Set<string>();
  if (unknown.length === 0) return landed;
  let found = new Map<string, JobItem>();
  try {
    found = await ctx.repo.getJobItems(unknown.map((c) => c.item.id));
  } catch (error) {
    logger.warn("admissions whose answers were lost could not be read back", { error: error as Error });
  }
  for (const change of unknown) {
    const job = found.get(change.item.id);
    const next = change.committed.next;
    if (
      job?.version === next.version &&
      job.status === next.status &&
      job.updatedAt === next.updatedAt &&
      job.reservation?.nodeId === node.nodeId &&
      job.executionArn === next.executionArn
    )
      landed.add(change.item.id);
  }
  const left = unknown.filter((c) => !landed.has(c.item.id));
  if (left.length > 0) {
    logger.warn(
      "admissions' writes may or may not have landed; their booking is left to the reconciler's proof",
      {
        pool: node.pool,
        nodeId: node.nodeId,
        jobIds: left.map((c) => c.item.id),
      },
    );
  }
  return landed;
}

/** The node's and the rate counters' parts of a batch's transaction, beside one part per job id. */
const NODE_PART = "#node";
const COUNTERS_PART = "#counters";

/** One job the pass places on a node, and the probe it claims when it is a half-open breaker's probe. */
interface Placement {
  readonly item: JobItem;
  readonly why: string;
  readonly probe?: ProbeClaim;
}

/** A half-open breaker's probe slot, claimed by the job's admission: the breaker's key and its step. */
interface ProbeClaim {
  readonly key: string;
  readonly step: CircuitStep;
}

/**
 * The probe claim of a job the circuit gate let through as a half-open breaker's probe; undefined
 * for any other job; null when the breaker, as read, cannot take it (then the job is not admitted).
 */
function probeClaim(
  gate: CircuitGate | null,
  circuits: ReadonlyMap<string, Circuit> | null,
  item: JobItem,
  now: Date,
): ProbeClaim | null | undefined {
  const key = gate?.probes().get(item.id);
  if (key === undefined) return undefined;
  const circuit = circuits?.get(key);
  const step = circuit ? claimProbe(circuit, item.id, item.attempts + 1, now) : null;
  return step ? { key, step } : null;
}

/**
 * The rate-limit counter updates an admission of these jobs adds to its transaction
 * (store/rate-limits.ts): one per rate-limited type among them, none for other types.
 */
type RateCounting = (jobs: readonly JobItem[]) => TransactItem[];

const NO_RATE_LIMITS: RateCounting = () => [];

/** The types of the policy that have a rateLimit, with it. */
function rateLimitsOf(policy: Policy): Record<string, RateLimit> {
  const limits: Record<string, RateLimit> = {};
  for (const [type, rules] of Object.entries(policy.types))
    if (rules.rateLimit) limits[type] = rules.rateLimit;
  return limits;
}

function rateCounting(
  ctx: SchedulerContext,
  rates: Readonly<Record<string, RateLimit>>,
  now: Date,
): RateCounting {
  if (Object.keys(rates).length === 0) return NO_RATE_LIMITS;
  return (jobs) => {
    const counts = new Map<string, number>();
    for (const job of jobs) {
      if (Object.hasOwn(rates, job.type)) counts.set(job.type, (counts.get(job.type) ?? 0) + 1);
    }
    return [...counts].flatMap(([type, count]) => {
      const limit = rates[type];
      if (!limit) return [];
      const window = rateWindow(limit, now);
      return [
        countStartsItem(
          ctx.policies.tableName,
          { type, windowStart: window.start, windowEnd: window.end },
          count,
          limit.starts,
        ),
      ];
    });
  };
}

type Serial = <T>(work: () => Promise<T>) => Promise<T>;

/** Runs the works it is given one after another, in the order given, whatever each one's outcome. */
function serial(): Serial {
  let last: Promise<unknown> = Promise.resolve();
  return <T>(work: () => Promise<T>): Promise<T> => {
    const run = last.then(
      () => work(),
      () => work(),
    );
    last = run.catch(() => undefined);
    return run;
  };
}

/**
 * Runs `work` once per node with that node's admissions: different nodes in parallel (up to
 * `concurrency`); one node's admissions go together (admitOnNode), since transactions on one
 * node item would only conflict.
 */
async function forEachNodeGroup<T extends { readonly nodeId: string }>(
  admits: readonly T[],
  concurrency: number,
  work: (group: readonly T[]) => Promise<void>,
): Promise<void> {
  const groups = new Map<string, T[]>();
  for (const a of admits) {
    const group = groups.get(a.nodeId);
    if (group) group.push(a);
    else groups.set(a.nodeId, [a]);
  }
  await forEachConcurrent([...groups.values()], concurrency, work);
}

/** A promise's outcome, for work started now and awaited later with a failure kept, not lost. */
type Settled = { readonly failed: false } | { readonly failed: true; readonly error: unknown };

function settle(work: Promise<unknown>): Promise<Settled> {
  return work.then(
    (): Settled => ({ failed: false }),
    (error: unknown): Settled => ({ failed: true, error }),
  );
}

/**
 * A waiting job's statusReason and reasonCode say why it waits ("needs 4 GPU in pool gpu, 2
 * free"). Written only when they changed — reasons are worded to stay the same from pass to
 * pass while the situation does, so a steady queue costs no writes — and without a version
 * bump: the reason is advisory, and bumping the version would make the job's other writers
 * lose races for nothing.
 */
async function refreshReasons(
  ctx: SchedulerContext,
  waiting: readonly Waiting[],
  read: ReadonlyMap<string, JobItem>,
): Promise<void> {
  const now = ctx.clock().getTime();
  const stale = waiting.filter((w) => {
    const item = read.get(w.jobId);
    if (item === undefined || (item.statusReason === w.reason && item.reasonCode === w.code)) return false;
    // A job that only waits its turn keeps the reason it was queued with; read, it says how many
    // jobs are ahead of it (core/reasons.ts queuedReason). Most of a backlog is such jobs.
    if (w.behind && item.reasonCode === PENDING_REASON.code && item.statusReason === PENDING_REASON.message)
      return false;
    // An evicted job is admit-able at once, so the passes right after its eviction read it as
    // waiting: "preempted by job_x" (API.md) stays its reason for a while before it is replaced.
    // (The queue index projects queuedAt, which the eviction set, and not preemptedAt.)
    const evictedAt =
      item.reasonCode === "preempted" && item.queuedAt ? Date.parse(item.queuedAt) : Number.NaN;
    return !(now - evictedAt < PREEMPTED_REASON_HOLD_MS);
  });
  // Twenty-five to a request (store: setWaitingReasons), each still conditional on the job
  // being queued at the version read.
  const failed = await ctx.repo.setWaitingReasons(
    stale.flatMap((w) => {
      const item = read.get(w.jobId);
      return item ? [{ id: item.id, version: item.version, reason: w.reason, code: w.code }] : [];
    }),
  );
  // Advisory: a reason not written now is written by a later pass, which finds it still stale.
  if (failed > 0) logger.warn("some waiting jobs' reasons were not written", { failed });
}

/** How long an evicted job keeps "preempted by job_x" as its reason: one sweep interval. */
const PREEMPTED_REASON_HOLD_MS = 60_000;

/**
 * The sweep over the `due` index (jobs of this pool and of any pool whose time has come):
 * scheduled jobs whose runAt came move to the status that now applies (queued, by core's rule);
 * retrying jobs whose backoff is over and whose execution did not come back for them are
 * requeued; and jobs not started by their deadline fail (app/deadlines.ts). Page by page, each
 * with a conditional write; a job another pass (or its own execution) moved first is skipped.
 */
async function sweepDueJobs(
  ctx: SchedulerContext,
  pool: string,
  tuning: SchedulerTuning,
): Promise<{ promoted: string[]; expired: string[] }> {
  const now = ctx.clock();
  const at = now.toISOString();
  const promoted: string[] = [];
  const expired: string[] = [];
  // The pool's partition and the any-pool one side by side: a pass waits for one page, not two.
  const sweep = async (duePool: string | null): Promise<void> => {
    let startKey: Record<string, unknown> | undefined;
    for (let page = 0; page < tuning.maxPages; page++) {
      const out = await dueJobIds(ctx.repo, duePool, at, { limit: tuning.pageSize, startKey });
      const ids = out.ids;
      const items = await ctx.repo.getJobItems(ids);
      const events: JobStateChange[] = [];
      for (const id of ids) {
        const item = items.get(id);
        if (!item || item.staged) continue;
        if (deadlinePassed(item, now)) {
          if (await expireDeadline(ctx, item)) expired.push(id);
          continue;
        }
        if (item.status === "retrying") {
          // Its backoff is over (the index says so) and its execution has not requeued it.
          try {
            const next = await requeueItem(ctx, item);
            promoted.push(id);
            events.push(stateChange(item.status, next));
          } catch (error) {
            if (!(error instanceof ConcurrentUpdateError)) throw error;
          }
          continue;
        }
        if (item.status !== "scheduled") continue;
        const applies = applicableNow(item, now);
        if (applies.status === "scheduled" || !canTransition(item.status, applies.status)) continue;
        try {
          const next = await ctx.repo.changeStatus(item, applicableChange(applies, at, null), at);
          promoted.push(id);
          events.push(stateChange(item.status, next));
        } catch (error) {
          if (!(error instanceof ConcurrentUpdateError)) throw error;
        }
      }
      await ctx.events.publish(events);
      startKey = out.lastKey;
      if (!startKey) break;
    }
  };
  await Promise.all([sweep(pool), sweep(null)]);
  return { promoted, expired };
}
