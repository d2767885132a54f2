import { type Circuit, type CircuitStep, claimProbe } from "../core/circuit";
import { ConcurrentUpdateError } from "../core/errors";
import { type CircuitGate, rateWindow } from "../core/gates";
import { priorityTier, type Resources } from "../core/job";
import type { Policy, RateLimit } from "../core/policy";
import { releaseCapacityItem, reservationFor, reserveCapacityItem } from "../store/capacity";
import type { JobItem, Reservation } from "../store/job-items";
import { MAX_TRANSACTION_ITEMS, type StatusChangeWrite, type TransactItem } from "../store/job-repository";
import type { NodeItem } from "../store/nodes";
import { countStartsItem } from "../store/rate-limits";
import { type JobStateChange, stateChange } from "./events";
import type { DispatchInput, NotAdmittedOutput } from "./lifecycle";
import { logger } from "./logger";
import type { SchedulerContext } from "./scheduler";

/**
 * How a scheduling pass writes what it decided (app/scheduler.ts decides): each node's
 * admissions booked and written (apart, or in one transaction where another item must land with
 * the job), their transition records put after, each admitted job's lifecycle execution started,
 * and an admission undone when its execution cannot be. docs/lifecycle.md, "The admission's
 * writes", says why in this order.
 */

/**
 * The Dispatch state's timeout beyond the job's own: the attempt also waits in the SQS queue
 * before a worker takes it. The worker enforces the job's timeoutSeconds itself; this is the
 * backstop, and it keeps TimeoutSeconds above HeartbeatSeconds as Step Functions requires.
 */
const DISPATCH_GRACE_SECONDS = 30;

export type AdmitOutcome =
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
export async function recordAdmissions(
  ctx: SchedulerContext,
  records: readonly TransactItem[],
): Promise<void> {
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
export async function admitOnNode(
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
export interface Placement {
  readonly item: JobItem;
  readonly why: string;
  readonly probe?: ProbeClaim;
}

/** A half-open breaker's probe slot, claimed by the job's admission: the breaker's key and its step. */
export interface ProbeClaim {
  readonly key: string;
  readonly step: CircuitStep;
}

/**
 * The probe claim of a job the circuit gate let through as a half-open breaker's probe; undefined
 * for any other job; null when the breaker, as read, cannot take it (then the job is not admitted).
 */
export function probeClaim(
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
export type RateCounting = (jobs: readonly JobItem[]) => TransactItem[];

const NO_RATE_LIMITS: RateCounting = () => [];

/** The types of the policy that have a rateLimit, with it. */
export function rateLimitsOf(policy: Policy): Record<string, RateLimit> {
  const limits: Record<string, RateLimit> = {};
  for (const [type, rules] of Object.entries(policy.types))
    if (rules.rateLimit) limits[type] = rules.rateLimit;
  return limits;
}

export function rateCounting(
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
