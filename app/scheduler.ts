import { ulid } from "ulid";
import { z } from "zod";
import {
  type AdmissionGate,
  AdmissionPass,
  type Admit,
  type NodeState,
  type Waiting,
} from "../core/admission";
import { breakerRule } from "../core/circuit";
import { forEachConcurrent } from "../core/concurrency";
import { ConcurrentUpdateError } from "../core/errors";
import {
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
import type { Resources } from "../core/job";
import { AdmissionOrder, decideInOrder } from "../core/ordering";
import { type PoolGauges, poolGauges } from "../core/pass-metrics";
import type { Policy } from "../core/policy";
import { eligiblePools, type PoolConfig } from "../core/pools";
import { applyPlan, planPreemption } from "../core/preemption";
import { projectQuotaKey } from "../core/projects";
import { PENDING_REASON } from "../core/reasons";
import { canTransition } from "../core/status";
import { createDocumentClient } from "../store/dynamo";
import { dueJobIds } from "../store/job-indexes";
import type { JobItem } from "../store/job-items";
import { applicableChange, type TransactItem } from "../store/job-repository";
import { type LeaseItem, type NodeItem, NodeRepository } from "../store/nodes";
import { JOB_INDEX } from "../store/tables";
import {
  admitOnNode,
  type Placement,
  probeClaim,
  rateCounting,
  rateLimitsOf,
  recordAdmissions,
} from "./admissions";
import { type CircuitBreakers, circuitBreakers } from "./circuits";
import { config, type QueueUrls } from "./config";
import { deadlinePassed, expireDeadline } from "./deadlines";
import { EVENT_SOURCE, JOB_STATE_CHANGE, type JobStateChange, stateChange } from "./events";
import { createSfnClient } from "./executions";
import { keepLease } from "./lease";
import { requeueItem, StepFunctionsTaskTokens, type TaskTokens } from "./lifecycle";
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
 * page by page; asks core/admission where each job goes; and, once its pages are read, writes
 * what it placed (app/admissions.ts: each node booked, then its jobs queued → dispatched with
 * their reservations, then each job's execution started). Every write is conditional, so a pass
 * run twice, or alongside another after a lease expired, admits nothing twice and never
 * over-fills a node.
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
  /** Nodes whose admissions are in flight at once (one node's go together: app/admissions.ts admitOnNode). */
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

/**
 * Runs `work` once per node with that node's admissions: different nodes in parallel (up to
 * `concurrency`); one node's admissions go together (app/admissions.ts admitOnNode), since writes of one
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
