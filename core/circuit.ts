import { z } from "zod";
import { jobTypeSchema } from "./job";
import type { CircuitBreakerPolicy, Policy } from "./policy";

/**
 * The circuit breaker of a task type (issue 13, docs/scheduling.md "Circuit breakers"): its state
 * machine and its counting window, pure. The store keeps one item per breaker (store/circuits.ts);
 * every step below returns the breaker as it must be written, or null when nothing changes, so a
 * replayed step writes nothing.
 *
 *   closed ──failures within the window reach `failures`──► open (openUntil = now + openSeconds)
 *   open ──openUntil passed──► half_open (no write: it is read off the clock)
 *   half_open ──the scheduler admits one job as the probe──► half_open with a probe
 *   probe succeeded ──► closed       probe failed or timed out ──► open again
 *   probe lost, preempted, cancelled, paused, retried ──► half_open without a probe (another is admitted)
 *   any ──admin reset──► closed
 */

/** What GET /admin/circuits shows. */
export const CIRCUIT_STATES = ["closed", "open", "half_open"] as const;
export type CircuitState = (typeof CIRCUIT_STATES)[number];

/** What a write did to a breaker: every one but probe_released is a change of state (an event). */
export const CIRCUIT_CHANGES = ["opened", "half_open", "closed", "reset", "probe_released"] as const;
export type CircuitChange = (typeof CIRCUIT_CHANGES)[number];

/** How many attempt ids a breaker remembers to recognise a replayed failure (it is replayed soon, if ever). */
export const REMEMBERED_ATTEMPTS = 10;

/** A breaker as stored. `phase` is what was written; the state readers see also depends on the clock. */
export interface Circuit {
  /** `<type>` or `<type>#<owner>` (types never hold `#`). */
  readonly key: string;
  readonly type: string;
  /** Set for a breaker of scope type+owner. */
  readonly owner: string | null;
  readonly phase: "closed" | "open" | "probing";
  /** When the counted failures happened (epoch ms), oldest first, within the window when written. */
  readonly failures: readonly number[];
  /** `<jobId>#<attempt>` of the last failures counted: a replay of one is not counted twice. */
  readonly recent: readonly string[];
  readonly openedAt: string | null;
  /** When an open breaker half-opens; kept while it is half-open (null when closed). */
  readonly openUntil: string | null;
  /** The job admitted as the probe, and its attempt (phase probing only). */
  readonly probeJobId: string | null;
  readonly probeAttempt: number | null;
  readonly changedAt: string;
  /** Bumped by every write: each write is conditional on the version read. */
  readonly version: number;
}

/** One change of a breaker, kept as its history (GET /admin/circuits?history=true) and published as an event. */
export interface CircuitTransition {
  readonly key: string;
  readonly type: string;
  readonly owner: string | null;
  readonly change: CircuitChange;
  readonly from: CircuitState;
  readonly to: CircuitState;
  readonly at: string;
  readonly reason: string;
  readonly jobId: string | null;
  /** Who reset it; null for the breaker's own changes. */
  readonly by: string | null;
}

export interface CircuitStep {
  readonly next: Circuit;
  /** null: only the window moved (a failure counted below the threshold). */
  readonly transition: CircuitTransition | null;
}

/** The breaker that applies to a type: the type's own, else the policy's; null: none (off). */
export function breakerRule(policy: Policy, type: string): CircuitBreakerPolicy | null {
  const own = Object.hasOwn(policy.types, type) ? policy.types[type]?.circuitBreaker : undefined;
  return own ?? policy.circuitBreaker ?? null;
}

/** Whether any type may have a breaker: only then does a pass read the breakers. */
export function anyBreaker(policy: Policy): boolean {
  return policy.circuitBreaker !== undefined || Object.values(policy.types).some((t) => t.circuitBreaker);
}

export function circuitKey(type: string, owner: string | null): string {
  return owner === null ? type : `${type}#${owner}`;
}

/** The key of the breaker a job of `type` and `owner` counts against under `rule`. */
export function keyFor(rule: CircuitBreakerPolicy, type: string, owner: string | null | undefined): string {
  return circuitKey(type, rule.scope === "type+owner" ? (owner ?? null) : null);
}

export function parseCircuitKey(key: string): { type: string; owner: string | null } {
  const at = key.indexOf("#");
  return at < 0 ? { type: key, owner: null } : { type: key.slice(0, at), owner: key.slice(at + 1) };
}

/** The state at `now`: an open breaker whose openUntil passed is half-open. */
export function circuitState(circuit: Circuit | null | undefined, now: Date): CircuitState {
  if (!circuit || circuit.phase === "closed") return "closed";
  if (circuit.phase === "probing") return "half_open";
  return circuit.openUntil !== null && Date.parse(circuit.openUntil) <= now.getTime() ? "half_open" : "open";
}

/** A breaker never written: closed, nothing counted (version 0: its first write creates it). */
export function closedCircuit(key: string, at: string): Circuit {
  const { type, owner } = parseCircuitKey(key);
  return {
    key,
    type,
    owner,
    ...CLOSED,
    changedAt: at,
    version: 0,
  };
}

function step(
  circuit: Circuit,
  next: Omit<Circuit, "key" | "type" | "owner" | "version" | "changedAt">,
  at: Date,
  change: { change: CircuitChange; reason: string; jobId: string | null; by?: string } | null,
): CircuitStep {
  const written: Circuit = {
    ...next,
    key: circuit.key,
    type: circuit.type,
    owner: circuit.owner,
    changedAt: at.toISOString(),
    version: circuit.version + 1,
  };
  return {
    next: written,
    transition: change
      ? {
          key: circuit.key,
          type: circuit.type,
          owner: circuit.owner,
          change: change.change,
          from: circuitState(circuit, at),
          to: circuitState(written, at),
          at: written.changedAt,
          reason: change.reason,
          jobId: change.jobId,
          by: change.by ?? null,
        }
      : null,
  };
}

const CLOSED = {
  phase: "closed",
  failures: [],
  recent: [],
  openedAt: null,
  openUntil: null,
  probeJobId: null,
  probeAttempt: null,
} as const;

function opened(circuit: Circuit, rule: CircuitBreakerPolicy, at: Date) {
  return {
    ...circuit,
    phase: "open" as const,
    openedAt: at.toISOString(),
    openUntil: new Date(at.getTime() + rule.openSeconds * 1000).toISOString(),
    probeJobId: null,
    probeAttempt: null,
  };
}

/**
 * An attempt of the breaker's type (and owner) ended `failed` or `timed_out` at `at`. A closed
 * breaker counts it (the window keeps the failures of the last windowSeconds, at most `failures`
 * of them: that is all the threshold needs) and opens when the count reaches `failures`; the
 * probe's failure opens it again. Failures of other jobs while open or half-open are not counted:
 * they were admitted before it opened, and the probe alone decides what follows.
 */
export function recordFailure(
  circuit: Circuit,
  rule: CircuitBreakerPolicy,
  failure: { readonly jobId: string; readonly attempt: number; readonly outcome: "failed" | "timed_out" },
  at: Date,
): CircuitStep | null {
  const id = `${failure.jobId}#${failure.attempt}`;
  if (circuit.phase === "probing") {
    if (circuit.probeJobId !== failure.jobId || circuit.probeAttempt !== failure.attempt) return null;
    return step(circuit, { ...opened(circuit, rule, at), recent: remember(circuit.recent, id) }, at, {
      change: "opened",
      reason: `probe job ${failure.jobId} ${describe(failure.outcome)}; open for another ${rule.openSeconds} s`,
      jobId: failure.jobId,
    });
  }
  if (circuit.phase !== "closed" || circuit.recent.includes(id)) return null;
  const now = at.getTime();
  const since = now - rule.windowSeconds * 1000;
  const failures = [...circuit.failures.filter((t) => t > since), now].slice(-rule.failures);
  const recent = remember(circuit.recent, id);
  if (failures.length < rule.failures) return step(circuit, { ...circuit, failures, recent }, at, null);
  return step(circuit, { ...opened(circuit, rule, at), failures, recent }, at, {
    change: "opened",
    reason: `${failures.length} attempts failed or timed out within ${rule.windowSeconds} s (the last: job ${failure.jobId} ${describe(failure.outcome)}); open for ${rule.openSeconds} s`,
    jobId: failure.jobId,
  });
}

function describe(outcome: "failed" | "timed_out"): string {
  return outcome === "failed" ? "failed" : "timed out";
}

function remember(recent: readonly string[], id: string): string[] {
  return [...recent, id].slice(-REMEMBERED_ATTEMPTS);
}

/**
 * The scheduler admits `jobId` (its attempt `attempt`) as the probe of a half-open breaker. Null
 * when the breaker is not half-open without a probe at `at`: another pass claimed it, or it closed.
 */
export function claimProbe(circuit: Circuit, jobId: string, attempt: number, at: Date): CircuitStep | null {
  if (circuit.phase !== "open" || circuitState(circuit, at) !== "half_open") return null;
  return step(circuit, { ...circuit, phase: "probing", probeJobId: jobId, probeAttempt: attempt }, at, {
    change: "half_open",
    reason: `job ${jobId} admitted as the probe; its success closes the breaker, its failure opens it again`,
    jobId,
  });
}

/** The probe completed: closed, the window emptied. Null when `jobId` is not the probe (any more). */
export function probeSucceeded(circuit: Circuit, jobId: string, at: Date): CircuitStep | null {
  if (circuit.phase !== "probing" || circuit.probeJobId !== jobId) return null;
  return step(circuit, CLOSED, at, { change: "closed", reason: `probe job ${jobId} completed`, jobId });
}

/**
 * The probe's attempt ended without telling anything about the type (lost, preempted, cancelled,
 * paused, or it is not running that attempt any more): the breaker stays half-open and the next
 * pass admits another probe, so a vanished probe never wedges it.
 */
export function releaseProbe(circuit: Circuit, jobId: string, why: string, at: Date): CircuitStep | null {
  if (circuit.phase !== "probing" || circuit.probeJobId !== jobId) return null;
  return step(circuit, { ...circuit, phase: "open", probeJobId: null, probeAttempt: null }, at, {
    change: "probe_released",
    reason: `probe job ${jobId} ${why}; another job will be admitted as the probe`,
    jobId,
  });
}

/** An admin closes the breaker, whatever its state; its window is emptied. */
export function resetCircuit(circuit: Circuit, by: string, at: Date): CircuitStep {
  return step(circuit, CLOSED, at, { change: "reset", reason: `reset by ${by}`, jobId: null, by });
}

/** Why a job of an open or half-open breaker waits (reason circuit_open): worded to stay the same while the breaker does. */
export function circuitOpenReason(circuit: Circuit, now: Date, probe: string | null): string {
  const who = circuit.owner === null ? `type ${circuit.type}` : `type ${circuit.type} for ${circuit.owner}`;
  if (circuitState(circuit, now) === "open") {
    return `circuit breaker of ${who} is open (too many recent failures); it half-opens at ${circuit.openUntil}`;
  }
  const job = circuit.probeJobId ?? probe;
  return `circuit breaker of ${who} is half-open since ${circuit.openUntil}: waiting for the outcome of probe job ${job}`;
}

/** GET /admin/circuits's query. */
export const listCircuitsQuerySchema = z.strictObject({
  history: z.enum(["true", "false"]).optional(),
  type: jobTypeSchema.optional(),
  owner: z.string().min(1).max(128).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

/** POST /admin/circuits/{type}/reset's query: the owner of a type+owner breaker. */
export const resetCircuitQuerySchema = z.strictObject({ owner: z.string().min(1).max(128).optional() });
