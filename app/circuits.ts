import { auditRecord } from "../core/audit";
import {
  anyBreaker,
  breakerRule,
  type Circuit,
  type CircuitStep,
  type CircuitTransition,
  circuitKey,
  circuitState,
  closedCircuit,
  listCircuitsQuerySchema,
  probeSucceeded,
  recordFailure,
  releaseProbe,
  resetCircuit,
  resetCircuitQuerySchema,
} from "../core/circuit";
import { ConcurrentUpdateError, ForbiddenError, NotFoundError } from "../core/errors";
import { jobTypeSchema } from "../core/job";
import type { Policy } from "../core/policy";
import type { Principal } from "../core/principal";
import { parseRequest } from "../core/validation";
import { auditPutItem } from "../store/audit";
import type { CircuitRepository } from "../store/circuits";
import type { JobItem } from "../store/job-items";
import { POLICY_CACHE_MS } from "../store/policy";
import type { CircuitStateChange } from "./events";
import type { AttemptOutcome } from "./lifecycle";
import { logger } from "./logger";
import { recordMetrics } from "./metrics";
import type { AppContext } from "./runtime";

/**
 * Circuit breakers per task type (issue 13; docs/scheduling.md "Circuit breakers"): the use
 * cases around core/circuit.ts's state machine. Failures are counted where attempts end
 * (app/attempt-failure.ts), the scheduler gates and claims probes (app/scheduler.ts with
 * core/gates.ts#circuitGate), a probe's completion closes its breaker from the Jobs table's
 * stream (functions/dependents-stream.ts), and admins list and reset them (GET /admin/circuits,
 * POST /admin/circuits/{type}/reset). Every change of state is announced here: a "Circuit State
 * Change" event and a metric; its history record is written with the breaker (store/circuits.ts).
 */

export type CircuitsContext = Pick<AppContext, "clock" | "policies" | "defaultPolicy" | "events">;

/** Rounds of read-decide-write when another writer moved the breaker in between. */
const WRITE_ROUNDS = 5;
/** A probe whose job ended failed or escalated this long ago without its breaker hearing of it is released. */
const ORPHANED_PROBE_MS = 60_000;

export class CircuitBreakers {
  readonly repo: CircuitRepository;

  constructor(private readonly ctx: CircuitsContext) {
    this.repo = ctx.policies.circuitRepository();
  }

  /**
   * The policy in force, as the process's one policy copy has it (PolicyRepository#recentPolicy,
   * read at most every POLICY_CACHE_MS): failures are counted against the breaker rules it names.
   */
  policy(): Promise<Policy> {
    return this.ctx.policies.recentPolicy(
      this.ctx.defaultPolicy,
      POLICY_CACHE_MS,
      this.ctx.clock().getTime(),
    );
  }

  /**
   * An attempt ended without success (the AttemptFailed step, after its transaction). `failed` and
   * `timed_out` count against the type's breaker — one conditional write, none when the type has no
   * breaker; a probe's `lost` (or a stop by its worker shutting down) releases the probe slot.
   */
  async attemptEnded(
    item: Pick<JobItem, "id" | "type" | "owner" | "circuitProbe">,
    attempt: number,
    outcome: AttemptOutcome,
    evictedByWorker: boolean,
  ): Promise<void> {
    const probeKey = item.circuitProbe;
    if (outcome === "lost" || evictedByWorker) {
      if (probeKey !== undefined) {
        await this.release(probeKey, item.id, outcome === "lost" ? "was lost" : "was stopped by its worker");
      }
      return;
    }
    const rule = breakerRule(await this.policy(), item.type);
    if (!rule) {
      // The breaker was turned off while its probe ran: let the slot go rather than hold it.
      if (probeKey !== undefined) await this.release(probeKey, item.id, "ended while its breaker is off");
      return;
    }
    const key = probeKey ?? circuitKey(item.type, rule.scope === "type+owner" ? item.owner : null);
    await this.apply(key, (circuit, at) =>
      recordFailure(circuit, rule, { jobId: item.id, attempt, outcome }, at),
    );
  }

  /** The probe job completed (seen on the Jobs table's stream): its breaker closes. */
  async probeCompleted(jobId: string, key: string): Promise<void> {
    await this.apply(key, (circuit, at) => probeSucceeded(circuit, jobId, at));
  }

  /** The probe's attempt ended without a verdict on the type: half-open again, without a probe. */
  async release(key: string, jobId: string, why: string): Promise<void> {
    await this.apply(key, (circuit, at) => releaseProbe(circuit, jobId, why, at));
  }

  /**
   * The breakers a scheduling pass gates on (one Query), or null when the policy configures none
   * (then nothing is read). A probe whose job no longer runs its probe attempt (cancelled, paused,
   * preempted, retried, or completed without its breaker hearing of it) is settled first, so a
   * vanished probe never wedges a breaker: one GetItem per breaker with a probe out.
   */
  async forPass(
    policy: Policy,
    readJobs: (ids: readonly string[]) => Promise<ReadonlyMap<string, ProbeJob>>,
  ): Promise<Map<string, Circuit> | null> {
    if (!anyBreaker(policy)) return null;
    const circuits = await this.repo.list();
    const probing = [...circuits.values()].filter((c) => c.phase === "probing" && c.probeJobId !== null);
    if (probing.length === 0) return circuits;
    const jobs = await readJobs(probing.flatMap((c) => (c.probeJobId ? [c.probeJobId] : [])));
    const now = this.ctx.clock();
    for (const circuit of probing) {
      const jobId = circuit.probeJobId ?? "";
      const job = jobs.get(jobId);
      const settle = probeSettlement(circuit, job, now);
      if (settle === null) continue;
      try {
        const step =
          settle === "completed"
            ? await this.apply(circuit.key, (c, at) => probeSucceeded(c, jobId, at))
            : await this.apply(circuit.key, (c, at) => releaseProbe(c, jobId, settle, at));
        if (step) circuits.set(circuit.key, step.next);
      } catch (error) {
        logger.warn("circuit probe not settled; the next pass tries again", {
          circuit: circuit.key,
          error: error as Error,
        });
      }
    }
    return circuits;
  }

  /** GET /admin/circuits: every breaker written so far, with its state now. */
  async list(principal: Principal, query: unknown): Promise<CircuitListView> {
    if (!principal.admin) throw new ForbiddenError("only an admin may read the circuit breakers");
    const options = parseRequest(listCircuitsQuerySchema, query);
    const [circuits, policy] = await Promise.all([this.repo.list(), this.policy()]);
    const now = this.ctx.clock();
    const items = [...circuits.values()]
      .sort((a, b) => a.key.localeCompare(b.key))
      .map((c) => circuitView(c, policy, now));
    if (options.history !== "true") return { items };
    const key = options.type === undefined ? undefined : circuitKey(options.type, options.owner ?? null);
    return { items, history: await this.repo.history(options.limit, key) };
  }

  /** POST /admin/circuits/{type}/reset[?owner=]: closes the breaker; 404 when it was never written. */
  async reset(principal: Principal, type: string, query: unknown): Promise<CircuitView> {
    if (!principal.admin) throw new ForbiddenError("only an admin may reset a circuit breaker");
    const validType = parseRequest(jobTypeSchema, type);
    const { owner } = parseRequest(resetCircuitQuerySchema, query);
    const key = circuitKey(validType, owner ?? null);
    for (let round = 1; ; round++) {
      const circuit = await this.repo.get(key);
      if (!circuit) {
        throw new NotFoundError(
          owner === undefined
            ? `no circuit breaker for type ${validType}`
            : `no circuit breaker for type ${validType} and owner ${owner}`,
        );
      }
      const now = this.ctx.clock();
      const step = resetCircuit(circuit, principal.id, now);
      const policy = await this.policy();
      // An operator's change: recorded in the audit trail too, in the same transaction.
      const audit = auditPutItem({
        tableName: this.repo.tableName,
        record: auditRecord({
          at: now.toISOString(),
          principal: principal.id,
          kind: "circuit",
          subject: owner === undefined ? validType : `${validType}/${owner}`,
          action: "reset",
          before: circuitView(circuit, policy, now),
          after: circuitView(step.next, policy, now),
        }),
      });
      try {
        await this.repo.save(step, [audit]);
      } catch (error) {
        if (error instanceof ConcurrentUpdateError && round < WRITE_ROUNDS) continue;
        throw error;
      }
      await this.announce(step.transition, step.next);
      return circuitView(step.next, await this.policy(), this.ctx.clock());
    }
  }

  /** After a probe's admission transaction committed: its half_open change is announced. */
  async probeAdmitted(step: CircuitStep): Promise<void> {
    await this.announce(step.transition, step.next);
  }

  /**
   * Read, decide, write conditionally on the version read; again when another writer won. The
   * step is null when nothing changes (a replay, a probe already settled): no write.
   */
  private async apply(
    key: string,
    decide: (circuit: Circuit, at: Date) => CircuitStep | null,
  ): Promise<CircuitStep | null> {
    for (let round = 1; ; round++) {
      const at = this.ctx.clock();
      const circuit = (await this.repo.get(key)) ?? closedCircuit(key, at.toISOString());
      const step = decide(circuit, at);
      if (!step) return null;
      try {
        await this.repo.save(step);
      } catch (error) {
        if (error instanceof ConcurrentUpdateError && round < WRITE_ROUNDS) continue;
        throw error;
      }
      await this.announce(step.transition, step.next);
      return step;
    }
  }

  /** The event and the metric of a change of state (probe_released is none: the breaker stays half-open). */
  private async announce(transition: CircuitTransition | null, next: Circuit): Promise<void> {
    if (!transition || transition.change === "probe_released") return;
    logger.info("circuit breaker changed state", {
      circuit: transition.key,
      change: transition.change,
      from: transition.from,
      to: transition.to,
      reason: transition.reason,
    });
    if (transition.change === "opened") {
      recordMetrics({}, { circuitsOpened: 1 });
      recordMetrics({ type: transition.type }, { circuitsOpenedByType: 1 });
    }
    if (transition.change === "closed" || transition.change === "reset")
      recordMetrics({}, { circuitsClosed: 1 });
    const change: CircuitStateChange = {
      type: transition.type,
      owner: transition.owner,
      change: transition.change,
      previousState: transition.from,
      state: transition.to,
      reason: transition.reason,
      jobId: transition.jobId,
      halfOpensAt: transition.change === "opened" ? next.openUntil : null,
      at: transition.at,
    };
    await this.ctx.events.publishCircuitChanges?.([change]);
  }
}

/**
 * What a pass does about a breaker whose probe is out: `completed` (close it), a reason to release
 * the probe, or null (the probe still runs, or its failure is the AttemptFailed step's to record).
 */
export type ProbeJob = Pick<JobItem, "status" | "attempts" | "updatedAt" | "circuitProbe">;

export function probeSettlement(circuit: Circuit, job: ProbeJob | undefined, now: Date): string | null {
  if (!job) return "no longer exists";
  if (job.attempts !== circuit.probeAttempt) {
    return job.status === "completed" && job.circuitProbe === circuit.key
      ? "completed"
      : `is not running its probe attempt ${circuit.probeAttempt} any more`;
  }
  switch (job.status) {
    case "dispatched":
    case "running":
    case "retrying":
      return null;
    case "completed":
      return "completed";
    case "failed":
    case "escalated": {
      const since = now.getTime() - Date.parse(job.updatedAt);
      return since > ORPHANED_PROBE_MS ? `${job.status} without its breaker hearing of it` : null;
    }
    default:
      return `was ${job.status}`;
  }
}

export interface CircuitView {
  readonly type: string;
  readonly owner: string | null;
  readonly state: "closed" | "open" | "half_open";
  /** Failures counted within the window that applies now (all kept ones when the type has no breaker now). */
  readonly failures: number;
  readonly openedAt: string | null;
  /** When it half-opens (open) or half-opened (half_open); null when closed. */
  readonly halfOpensAt: string | null;
  readonly probeJobId: string | null;
  readonly changedAt: string;
  /** Whether the policy in force still gives this key a breaker (a scope or rule change can orphan one). */
  readonly configured: boolean;
}

export interface CircuitListView {
  readonly items: CircuitView[];
  readonly history?: CircuitTransition[];
}

export function circuitView(circuit: Circuit, policy: Policy, now: Date): CircuitView {
  const rule = breakerRule(policy, circuit.type);
  const since = rule ? now.getTime() - rule.windowSeconds * 1000 : Number.NEGATIVE_INFINITY;
  const state = circuitState(circuit, now);
  return {
    type: circuit.type,
    owner: circuit.owner,
    state,
    failures: circuit.failures.filter((t) => t > since).length,
    openedAt: state === "closed" ? null : circuit.openedAt,
    halfOpensAt: state === "closed" ? null : circuit.openUntil,
    probeJobId: circuit.phase === "probing" ? circuit.probeJobId : null,
    changedAt: circuit.changedAt,
    configured: rule !== null && (rule.scope === "type+owner") === (circuit.owner !== null),
  };
}

const byContext = new WeakMap<CircuitsContext, CircuitBreakers>();

/** The breakers of a context, made once per context (its policy cache is then shared by its callers). */
export function circuitBreakers(ctx: CircuitsContext): CircuitBreakers {
  let breakers = byContext.get(ctx);
  if (!breakers) {
    breakers = new CircuitBreakers(ctx);
    byContext.set(ctx, breakers);
  }
  return breakers;
}
