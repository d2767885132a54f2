import { ulid } from "ulid";
import { z } from "zod";
import { AdmissionPass, type NodeState, type QueuedJob, type Waiting } from "../core/admission";
import { applicableStatus } from "../core/dependencies";
import { ConcurrentUpdateError } from "../core/errors";
import { priorityTier } from "../core/job";
import type { PoolConfig } from "../core/pools";
import { canTransition } from "../core/status";
import { config, type QueueUrls } from "../functions/config";
import { releaseCapacityItem, reservationFor, reserveCapacityItem } from "../store/capacity";
import { createDocumentClient } from "../store/dynamo";
import { type JobItem, jobConstraints } from "../store/job-items";
import { duePk, JOB_SK, queuePk } from "../store/keys";
import { type NodeItem, NodeRepository } from "../store/nodes";
import { JOB_INDEX } from "../store/tables";
import { EVENT_SOURCE, JOB_STATE_CHANGE, type JobStateChange, stateChange } from "./events";
import { createSfnClient } from "./executions";
import { type AdmittedOutput, requeueItem, StepFunctionsTaskTokens, type TaskTokens } from "./lifecycle";
import { logger } from "./logger";
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

export type SchedulerContext = Pick<AppContext, "repo" | "clock" | "pools" | "nodesTable" | "events"> & {
  readonly nodes: NodeRepository;
  /** Releases AwaitAdmission task tokens (SendTaskSuccess). */
  readonly tokens: TaskTokens;
  /** The SQS queue of each pool and priority tier: where the execution sends the attempt. */
  readonly queues: QueueUrls;
  /** The Dispatch state's HeartbeatSeconds. */
  readonly heartbeatSeconds: number;
  /** A node silent for this long is marked lost. */
  readonly nodeLostSeconds: number;
  readonly tuning?: Partial<SchedulerTuning>;
};

export interface SchedulerTuning {
  /** A queued job waiting longer than this gets a node held for it. */
  readonly starvationSeconds: number;
  /** Queue items read per page (DynamoDB Query Limit). */
  readonly pageSize: number;
  /** Pages of the queue a pass reads at most: a pass costs O(what it can admit), not O(backlog). */
  readonly maxPages: number;
  /** Longer than the scheduler function's timeout, so a live pass never loses its lease. */
  readonly leaseSeconds: number;
  /** Passes per invocation at most, when wake-ups keep arriving (dirty lease) or writes raced. */
  readonly maxPasses: number;
  /** Waiting jobs, from the head of the queue, whose statusReason a pass refreshes. */
  readonly reasonUpdates: number;
  /** Admission writes in flight at once (one node's admissions always go one after another). */
  readonly concurrency: number;
}

export const DEFAULT_TUNING: SchedulerTuning = {
  starvationSeconds: 300,
  pageSize: 100,
  maxPages: 10,
  leaseSeconds: 90,
  maxPasses: 5,
  reasonUpdates: 20,
  concurrency: 8,
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
      nodeLostSeconds: c.nodeLostSeconds,
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
  readonly lostNodes: readonly string[];
  /** Admissions rolled back because the job's execution could not be told. */
  readonly undone: readonly string[];
  /** The last pass's waiting jobs (those it read), with their reasons. */
  readonly waiting: readonly Waiting[];
}

/** A pass for each pool, one after another. */
export async function runScheduler(
  ctx: SchedulerContext,
  pools: readonly string[],
): Promise<PoolPassSummary[]> {
  const summaries: PoolPassSummary[] = [];
  for (const pool of pools) summaries.push(await schedulePool(ctx, pool));
  return summaries;
}

/**
 * Takes the pool's lease and runs passes while there is news (a wake-up during the pass, a lost
 * race), at most `maxPasses`. If another pass holds the lease, tells it to run again and returns.
 */
export async function schedulePool(ctx: SchedulerContext, poolName: string): Promise<PoolPassSummary> {
  const tuning = { ...DEFAULT_TUNING, ...ctx.tuning };
  const pool = ctx.pools.find((p) => p.name === poolName);
  const summary = {
    pool: poolName,
    outcome: "ran" as "ran" | "busy",
    passes: 0,
    admitted: [] as { jobId: string; nodeId: string }[],
    promoted: [] as string[],
    lostNodes: [] as string[],
    undone: [] as string[],
    waiting: [] as Waiting[],
  };
  if (!pool) {
    logger.warn("no such pool configured; nothing to schedule", { pool: poolName });
    return summary;
  }
  const holder = ulid();
  if (!(await takeLease(ctx, poolName, holder, tuning.leaseSeconds))) return { ...summary, outcome: "busy" };
  for (;;) {
    summary.passes++;
    let result: PassResult;
    try {
      result = await pass(ctx, pool, tuning);
    } catch (error) {
      await ctx.nodes.releaseLease(poolName, holder).catch(() => undefined);
      throw error;
    }
    summary.admitted.push(...result.admitted);
    summary.promoted.push(...result.promoted);
    summary.lostNodes.push(...result.lostNodes);
    summary.undone.push(...result.undone);
    summary.waiting = result.waiting;
    // Let go only when nothing arrived meanwhile: the release says so atomically.
    const { dirty } = await ctx.nodes.releaseLease(poolName, holder);
    if (!(dirty || result.raced) || summary.passes >= tuning.maxPasses) break;
    // Taken by another pass in between: that pass reads everything fresh.
    if (!(await takeLease(ctx, poolName, holder, tuning.leaseSeconds))) break;
  }
  if (summary.admitted.length > 0 || summary.promoted.length > 0 || summary.lostNodes.length > 0) {
    logger.info("scheduling pass", {
      pool: poolName,
      passes: summary.passes,
      admitted: summary.admitted.length,
      promoted: summary.promoted.length,
      lostNodes: summary.lostNodes,
      undone: summary.undone.length,
    });
  }
  return summary;
}

/** The lease, or — when a live pass holds it — a note to that pass to run again. */
async function takeLease(
  ctx: SchedulerContext,
  pool: string,
  holder: string,
  seconds: number,
): Promise<boolean> {
  for (let round = 0; round < 3; round++) {
    if (await ctx.nodes.acquireLease(pool, holder, ctx.clock(), seconds)) return true;
    // False when the holder let go in between: try to take it again.
    if (await ctx.nodes.markDirty(pool, ctx.clock())) return false;
  }
  return false;
}

interface PassResult {
  readonly admitted: { jobId: string; nodeId: string }[];
  readonly promoted: string[];
  readonly lostNodes: string[];
  readonly undone: string[];
  readonly waiting: Waiting[];
  /** Some write lost a race: what it read was stale, so another pass is worth it. */
  readonly raced: boolean;
}

async function pass(ctx: SchedulerContext, pool: PoolConfig, tuning: SchedulerTuning): Promise<PassResult> {
  const now = ctx.clock();
  const lost = await ctx.nodes.markLostNodes(pool.name, now, ctx.nodeLostSeconds);
  for (const node of lost) {
    logger.warn("node lost: no heartbeat", {
      pool: pool.name,
      nodeId: node.nodeId,
      lastHeartbeatAt: node.lastHeartbeatAt,
    });
  }
  const promoted = await promoteDueJobs(ctx, pool.name, tuning);

  const nodes = (await ctx.nodes.listNodes(pool.name)).filter((n) => n.status === "up");
  const byId = new Map(nodes.map((n) => [n.nodeId, n]));
  const admission = new AdmissionPass({
    nodes: nodes.map(nodeState),
    pools: ctx.pools,
    now,
    starvationSeconds: tuning.starvationSeconds,
  });
  const queue = new MergedQueue(ctx, [queuePk(pool.name), queuePk(null)], tuning.pageSize);
  const admitted: { jobId: string; nodeId: string }[] = [];
  const undone: string[] = [];
  const waiting: Waiting[] = [];
  const read = new Map<string, JobItem>();
  let raced = false;

  // The first page is read even when nothing can fit: its jobs learn why they wait.
  for (let page = 0; page < tuning.maxPages && (page === 0 || !admission.exhausted); page++) {
    const jobs = await queue.next(tuning.pageSize);
    if (jobs.length === 0) break;
    // A job whose execution has not parked its token yet cannot be released: it waits its turn.
    const ready = jobs.filter((j) => j.status === "queued" && typeof j.admissionToken === "string");
    for (const j of ready) read.set(j.id, j);
    const decision = admission.offer(ready.map(queuedJob));
    waiting.push(...decision.waiting.filter((w) => w.kind !== "ineligible"));

    const events: JobStateChange[] = [];
    await forEachNodeGroup(decision.admit, tuning.concurrency, async (a) => {
      const item = read.get(a.jobId);
      const node = byId.get(a.nodeId);
      if (!item || !node) return;
      const outcome = await admit(ctx, item, node, now);
      if (outcome.kind === "admitted") {
        admitted.push({ jobId: item.id, nodeId: node.nodeId });
        events.push(outcome.event);
      } else if (outcome.kind === "undone") {
        undone.push(item.id);
        events.push(outcome.event);
      } else if (outcome.kind === "raced") {
        raced = true;
      }
    });
    await ctx.events.publish(events);
  }

  await refreshReasons(ctx, waiting.slice(0, tuning.reasonUpdates), read);
  return { admitted, promoted, lostNodes: lost.map((n) => n.nodeId), undone, waiting, raced };
}

function nodeState(node: NodeItem): NodeState {
  return { nodeId: node.nodeId, pool: node.pool, capacity: node.capacity, used: node.used };
}

function queuedJob(item: JobItem): QueuedJob {
  return {
    id: item.id,
    priority: item.priority,
    resources: item.resources,
    pool: item.pool ?? null,
    constraints: jobConstraints(item),
    queuedAt: item.queuedAt ?? item.createdAt,
    owner: item.owner,
    type: item.type,
    deadline: item.deadline ?? null,
  };
}

type AdmitOutcome =
  | { readonly kind: "admitted"; readonly event: JobStateChange }
  | { readonly kind: "undone"; readonly event: JobStateChange }
  /** A write lost a race: what the pass read is stale. */
  | { readonly kind: "raced" }
  | { readonly kind: "skipped" };

/**
 * One job onto one node: the conditional transaction (job queued → dispatched at the version
 * read, reservation, attempt count, token removed; node `used` up if it still fits), then the
 * execution is released with the AdmissionOutput. If the execution cannot be told, the
 * admission is undone in one transaction so the capacity is not held by a job nobody runs.
 */
async function admit(ctx: SchedulerContext, item: JobItem, node: NodeItem, now: Date): Promise<AdmitOutcome> {
  const token = item.admissionToken;
  const queueUrl = ctx.queues[node.pool]?.[priorityTier(item.priority)];
  if (!token) return { kind: "skipped" };
  if (!queueUrl) {
    logger.error("no queue configured for this pool and tier; the job cannot be dispatched", {
      pool: node.pool,
      tier: priorityTier(item.priority),
      jobId: item.id,
    });
    return { kind: "skipped" };
  }
  const at = now.toISOString();
  const attempt = item.attempts + 1;
  const reservation = reservationFor(node.pool, node.nodeId, item.resources);
  const { items, next } = ctx.repo.statusChangeItems(
    item,
    {
      to: "dispatched",
      reason: `dispatched to node ${node.nodeId} in pool ${node.pool}`,
      triggeredBy: null,
      set: { reservation, attempts: attempt },
      remove: ["admissionToken"],
    },
    at,
  );
  try {
    await ctx.repo.transact([...items, reserveCapacityItem(ctx.nodesTable, reservation, node.capacity)]);
  } catch (error) {
    // Someone moved the job (cancel, pause, a newer token) or the node filled up: skip it.
    if (error instanceof ConcurrentUpdateError) return { kind: "raced" };
    throw error;
  }

  const output: AdmittedOutput = {
    admitted: true,
    pool: node.pool,
    nodeId: node.nodeId,
    queueUrl,
    attempt,
    timeoutSeconds: item.timeoutSeconds + ctx.heartbeatSeconds + DISPATCH_GRACE_SECONDS,
    heartbeatSeconds: ctx.heartbeatSeconds,
  };
  let released: boolean;
  let failure: unknown;
  try {
    released = await ctx.tokens.succeed(token, output);
  } catch (error) {
    released = false;
    failure = error;
  }
  if (released) return { kind: "admitted", event: stateChange(item.status, next) };

  // No execution waits on the token (it ended or timed out), or Step Functions could not be
  // reached. Put the job back: without the token when it is dead (the reconciler gives the job
  // a new execution), with it when the call merely failed (the next pass tries again).
  const tokenDead = failure === undefined;
  logger.warn("admitted job's execution could not be released; admission undone", {
    jobId: item.id,
    tokenDead,
    error: failure as Error | undefined,
  });
  const undo = ctx.repo.statusChangeItems(
    next,
    {
      to: "queued",
      reason: tokenDead
        ? "waiting for admission (its execution ended before it was admitted)"
        : "waiting for admission (its execution could not be reached)",
      triggeredBy: null,
      set: { attempts: item.attempts, ...(tokenDead ? {} : { admissionToken: token }) },
      remove: tokenDead ? ["admissionToken"] : [],
    },
    ctx.clock().toISOString(),
  );
  try {
    await ctx.repo.transact([...undo.items, releaseCapacityItem(ctx.nodesTable, reservation)]);
  } catch (error) {
    // The job moved on from dispatched (a worker took it after all): the admission stands.
    if (error instanceof ConcurrentUpdateError)
      return { kind: "admitted", event: stateChange(item.status, next) };
    throw error;
  }
  return { kind: "undone", event: stateChange(item.status, undo.next) };
}

/**
 * Runs `work` for every admission: different nodes in parallel (up to `concurrency`), one node's
 * admissions one after another, since transactions on one node item would only conflict.
 */
async function forEachNodeGroup<T extends { readonly nodeId: string }>(
  admits: readonly T[],
  concurrency: number,
  work: (admit: T) => Promise<void>,
): Promise<void> {
  const groups = new Map<string, T[]>();
  for (const a of admits) {
    const group = groups.get(a.nodeId);
    if (group) group.push(a);
    else groups.set(a.nodeId, [a]);
  }
  const pending = [...groups.values()];
  const runner = async (): Promise<void> => {
    for (let group = pending.shift(); group; group = pending.shift()) {
      for (const a of group) await work(a);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, pending.length) }, runner));
}

/**
 * A waiting job's statusReason says why it waits ("needs 4 GPU in pool gpu, 2 free"). Only for
 * the head of the queue, only when it changed, and without a version bump: the reason is
 * advisory, and bumping the version would make the job's other writers lose races for nothing.
 */
async function refreshReasons(
  ctx: SchedulerContext,
  waiting: readonly Waiting[],
  read: ReadonlyMap<string, JobItem>,
): Promise<void> {
  for (const w of waiting) {
    const item = read.get(w.jobId);
    if (!item || item.statusReason === w.reason) continue;
    await ctx.repo.updateIf(
      { pk: item.pk, sk: JOB_SK },
      "SET statusReason = :reason",
      "#status = :queued AND #version = :version",
      {
        names: { "#status": "status", "#version": "version" },
        values: { ":reason": w.reason, ":queued": "queued", ":version": item.version },
      },
    );
  }
}

/**
 * Scheduled jobs of this pool (and of any pool) whose runAt has come, and retrying jobs whose
 * backoff is over, move to the status that now applies — queued, by core's rule — page by page
 * over the `due` index, each with a conditional status change; a job another pass (or its own
 * execution) moved first is skipped.
 */
async function promoteDueJobs(
  ctx: SchedulerContext,
  pool: string,
  tuning: SchedulerTuning,
): Promise<string[]> {
  const now = ctx.clock();
  const at = now.toISOString();
  const promoted: string[] = [];
  for (const pk of [duePk(pool), duePk(null)]) {
    let startKey: Record<string, unknown> | undefined;
    for (let page = 0; page < tuning.maxPages; page++) {
      const out = await ctx.repo.queryIndex({
        IndexName: JOB_INDEX.due,
        KeyConditionExpression: "duePk = :pk AND dueSk <= :bound",
        // dueSk is `<runAt>#<id>`: every key of a runAt up to now sorts below `<now>#~`.
        ExpressionAttributeValues: { ":pk": pk, ":bound": `${at}#~` },
        Limit: tuning.pageSize,
        ExclusiveStartKey: startKey,
      });
      const ids = out.items.map((i) => String(i.pk).slice("JOB#".length));
      const items = await ctx.repo.getJobItems(ids);
      const events: JobStateChange[] = [];
      for (const id of ids) {
        const item = items.get(id);
        if (!item || item.staged) continue;
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
        const applies = applicableStatus({
          now,
          runAt: item.runAt,
          unmet: Math.max(0, item.unmet),
          total: Math.max(item.unmet, item.dependsOn.length),
          doomedBy: null,
        });
        if (applies.status === "scheduled" || !canTransition(item.status, applies.status)) continue;
        try {
          const next = await ctx.repo.changeStatus(
            item,
            {
              to: applies.status,
              reason: applies.reason,
              reasonCode: applies.code,
              triggeredBy: null,
              set: applies.status === "queued" ? { queuedAt: at } : {},
            },
            at,
          );
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
  }
  return promoted;
}

/**
 * The queue of a pool in admission order: the pool's own partition and the any-pool partition,
 * each read a page at a time and merged by sort key (both use the same `queueSk` order).
 */
class MergedQueue {
  private readonly sources: {
    pk: string;
    buffer: JobItem[];
    startKey: Record<string, unknown> | undefined;
    done: boolean;
  }[];

  constructor(
    private readonly ctx: SchedulerContext,
    partitions: readonly string[],
    private readonly pageSize: number,
  ) {
    this.sources = partitions.map((pk) => ({ pk, buffer: [], startKey: undefined, done: false }));
  }

  /** Up to `count` more jobs, in order; fewer only when both partitions ran out. */
  async next(count: number): Promise<JobItem[]> {
    const out: JobItem[] = [];
    while (out.length < count) {
      await Promise.all(this.sources.map((s) => this.fill(s)));
      let head: (typeof this.sources)[number] | undefined;
      for (const source of this.sources) {
        const first = source.buffer[0];
        if (!first) continue;
        if (!head || String(first.queueSk) < String(head.buffer[0]?.queueSk)) head = source;
      }
      const item = head?.buffer.shift();
      if (!item) break;
      out.push(item);
    }
    return out;
  }

  private async fill(source: MergedQueue["sources"][number]): Promise<void> {
    if (source.buffer.length > 0 || source.done) return;
    const page = await this.ctx.repo.queryIndex({
      IndexName: JOB_INDEX.queue,
      KeyConditionExpression: "queuePk = :pk",
      ExpressionAttributeValues: { ":pk": source.pk },
      Limit: this.pageSize,
      ExclusiveStartKey: source.startKey,
    });
    source.buffer = page.items as unknown as JobItem[];
    source.startKey = page.lastKey;
    source.done = page.lastKey === undefined;
  }
}
