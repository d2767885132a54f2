import type { AdmissionGate, NodeView, QueuedJob } from "./admission";
import { type Circuit, circuitOpenReason, circuitState, keyFor } from "./circuit";
import type { CircuitBreakerPolicy, OffPeakWindow, RateLimit } from "./policy";
import { projectGpuQuotaRefusal, projectQuotaKey } from "./projects";
import { gpuQuotaRefusal, type QuotaLimits } from "./quota";
import type { Reason } from "./reasons";
import { offPeakReason } from "./windows";

/**
 * The policy rules that keep a job waiting whatever the capacity, as AdmissionGates the
 * scheduler composes into a pass. A gate belongs to one pass: the type-concurrency gate counts
 * the pass's placements, and each gate may remember answers that hold for the pass.
 */

/** `offPeakOnly` jobs wait while the policy's off-peak window is closed (reason off_peak_window). */
export function offPeakGate(window: OffPeakWindow): AdmissionGate {
  // One answer per clock reading: a pass asks with one `now` for every job.
  let askedAt = Number.NaN;
  let refusal: Reason | null = null;
  return {
    check(job: QueuedJob, now: Date): Reason | null {
      if (job.offPeakOnly !== true) return null;
      if (now.getTime() !== askedAt) {
        askedAt = now.getTime();
        const message = offPeakReason(now, window);
        refusal = message === null ? null : { code: "off_peak_window", message };
      }
      return refusal;
    },
  };
}

export interface GpuQuotaState {
  readonly limits: QuotaLimits;
  readonly used: { readonly todayGpuSeconds: number; readonly weekGpuSeconds: number };
}

/**
 * GPU jobs of an owner over a GPU quota wait (reason quota); their CPU jobs still run. `quotas`
 * holds the owners that have limits, with their usage as the pass read it, and the projects
 * that have limits under their quota keys (`project:<name>`, issue 13): a job of a project waits
 * if either its owner's or its project's quota is spent, and its reason says which (the owner's
 * first).
 */
export function gpuQuotaGate(quotas: ReadonlyMap<string, GpuQuotaState>): AdmissionGate {
  const answers = new Map<string, Reason | null>();
  const answer = (key: string, refuse: (quota: GpuQuotaState) => Reason | null): Reason | null => {
    let known = answers.get(key);
    if (known === undefined) {
      const quota = quotas.get(key);
      known = quota ? refuse(quota) : null;
      answers.set(key, known);
    }
    return known;
  };
  return {
    check(job: QueuedJob): Reason | null {
      if (!(job.resources.gpu > 0)) return null;
      const owner =
        job.owner === undefined ? null : answer(job.owner, (q) => gpuQuotaRefusal(q.limits, q.used));
      if (owner !== null || !job.project) return owner;
      const project = job.project;
      return answer(projectQuotaKey(project), (q) => projectGpuQuotaRefusal(project, q.limits, q.used));
    },
  };
}

/**
 * At most `limits[type]` jobs of a type dispatched or running at once, across all pools (reason
 * type_limit). `active` counts those already dispatched or running per type; the gate adds the
 * jobs this pass places.
 */
export function typeConcurrencyGate(
  limits: Readonly<Record<string, number>>,
  active: ReadonlyMap<string, number>,
): AdmissionGate {
  const placed = new Map<string, number>();
  const limitOf = (type: string | undefined): number | undefined =>
    type !== undefined && Object.hasOwn(limits, type) ? limits[type] : undefined;
  return {
    check(job: QueuedJob): Reason | null {
      const limit = limitOf(job.type);
      if (limit === undefined || job.type === undefined) return null;
      const running = (active.get(job.type) ?? 0) + (placed.get(job.type) ?? 0);
      if (running < limit) return null;
      return {
        code: "type_limit",
        message: `type ${job.type} is at its concurrency limit: ${running} of ${limit} dispatched or running`,
      };
    },
    admitted(job: QueuedJob): void {
      if (limitOf(job.type) === undefined || job.type === undefined) return;
      placed.set(job.type, (placed.get(job.type) ?? 0) + 1);
    },
  };
}

/** The circuit gate's answer beyond check(): the jobs it let through as probes, by breaker key. */
export interface CircuitGate extends AdmissionGate {
  /** job id → breaker key, for the jobs of half-open breakers admitted this pass (one per breaker). */
  probes(): ReadonlyMap<string, string>;
}

/**
 * Jobs of a type whose circuit breaker is open wait (reason circuit_open, saying when it
 * half-opens). A half-open breaker without a probe lets exactly one job through: the first the
 * pass places becomes its probe (the scheduler claims the probe on the breaker item in the job's
 * admission transaction, so two passes or pools cannot both probe); the rest wait for its
 * outcome. `circuits` holds the breakers the pass read, by key; `rules` says which breaker (if
 * any) a type has.
 */
export function circuitGate(
  circuits: ReadonlyMap<string, Circuit>,
  rules: (type: string) => CircuitBreakerPolicy | null,
  now: Date,
): CircuitGate {
  const probes = new Map<string, string>();
  const probeOf = new Map<string, string>();
  const keyOf = (job: QueuedJob): string | null => {
    if (job.type === undefined) return null;
    const rule = rules(job.type);
    return rule ? keyFor(rule, job.type, job.owner) : null;
  };
  return {
    check(job: QueuedJob): Reason | null {
      const key = keyOf(job);
      const circuit = key === null ? undefined : circuits.get(key);
      if (!circuit || key === null) return null;
      const state = circuitState(circuit, now);
      if (state === "closed") return null;
      const probe = probeOf.get(key) ?? null;
      if (state === "half_open" && circuit.phase === "open" && (probe === null || probe === job.id))
        return null;
      return { code: "circuit_open", message: circuitOpenReason(circuit, now, probe) };
    },
    admitted(job: QueuedJob): void {
      const key = keyOf(job);
      const circuit = key === null ? undefined : circuits.get(key);
      if (!circuit || key === null || probeOf.has(key)) return;
      if (circuit.phase === "open" && circuitState(circuit, now) === "half_open") {
        probeOf.set(key, job.id);
        probes.set(job.id, key);
      }
    },
    probes: () => probes,
  };
}

/**
 * The per-type running limits a pass applies (reason type_limit): `typeConcurrency[type]` and
 * `types[type].maxRunning` are the same limit set in two places (issue 13); the smaller wins.
 */
export function typeRunningLimits(policy: {
  readonly typeConcurrency: Readonly<Record<string, number>>;
  readonly types: Readonly<Record<string, { readonly maxRunning?: number | undefined }>>;
}): Record<string, number> {
  const limits: Record<string, number> = Object.fromEntries(Object.entries(policy.typeConcurrency));
  for (const [type, rules] of Object.entries(policy.types)) {
    if (rules.maxRunning === undefined) continue;
    const other = Object.hasOwn(limits, type) ? limits[type] : undefined;
    limits[type] = other === undefined ? rules.maxRunning : Math.min(other, rules.maxRunning);
  }
  return limits;
}

/** The policy's maxRunning, one shape: the whole system's cap and each capped pool's. */
export interface RunningCaps {
  readonly total: number | undefined;
  readonly pools: Readonly<Record<string, number>>;
}

/** null: no cap is configured, and a pass reads nothing for one. */
export function runningCaps(
  maxRunning:
    | number
    | { readonly total?: number | undefined; readonly pools: Readonly<Record<string, number>> }
    | undefined,
): RunningCaps | null {
  if (maxRunning === undefined) return null;
  const caps =
    typeof maxRunning === "number"
      ? { total: maxRunning, pools: {} }
      : { total: maxRunning.total, pools: maxRunning.pools };
  return caps.total === undefined && Object.keys(caps.pools).length === 0 ? null : caps;
}

/** What holds capacity now (dispatched or running), in all and per pool. */
export interface ActiveCounts {
  readonly total: number;
  readonly byPool: ReadonlyMap<string, number>;
}

/**
 * Running caps (policy maxRunning, reason running_cap): at most `total` jobs dispatched or
 * running in the whole system, and at most `pools[p]` in pool p. The gate adds the pass's
 * placements to `active`. A job waits for a pool's cap only when every pool it may run in is
 * at its cap (`poolsOf`: the job's pool, or the pools its constraints allow); a job that may
 * also run elsewhere goes through, and the scheduler holds its placement on a capped pool back
 * (capOverflow) rather than over-filling it.
 */
export function runningCapGate(
  caps: RunningCaps,
  active: ActiveCounts,
  poolsOf: (job: QueuedJob) => readonly string[],
): AdmissionGate {
  let placedTotal = 0;
  const placed = new Map<string, number>();
  const inPool = (pool: string) => (active.byPool.get(pool) ?? 0) + (placed.get(pool) ?? 0);
  const capOf = (pool: string) => (Object.hasOwn(caps.pools, pool) ? caps.pools[pool] : undefined);
  return {
    check(job: QueuedJob): Reason | null {
      const running = active.total + placedTotal;
      if (caps.total !== undefined && running >= caps.total) {
        return {
          code: "running_cap",
          message: `the system's running cap is reached: ${running} of ${caps.total} dispatched or running`,
        };
      }
      const pools = job.pool ? [job.pool] : poolsOf(job);
      if (pools.length === 0) return null;
      const full: string[] = [];
      for (const pool of pools) {
        const cap = capOf(pool);
        if (cap === undefined || inPool(pool) < cap) return null;
        full.push(pool);
      }
      const [first] = full;
      if (first === undefined) return null;
      return {
        code: "running_cap",
        message:
          full.length === 1
            ? `pool ${first}'s running cap is reached: ${inPool(first)} of ${capOf(first)} dispatched or running`
            : `the running caps of pools ${full.join(", ")} are reached`,
      };
    },
    admitted(_job: QueuedJob, node: NodeView): void {
      placedTotal++;
      placed.set(node.pool, (placed.get(node.pool) ?? 0) + 1);
    },
  };
}

/**
 * A pool's own placements beyond its running cap (the backstop for jobs that could have run in
 * another pool; see runningCapGate): the first ones up to the cap are kept, the rest wait.
 */
export function capOverflow<T>(
  caps: RunningCaps | null,
  pool: string,
  active: number,
  placements: readonly T[],
): { readonly keep: readonly T[]; readonly held: readonly T[]; readonly reason: Reason | null } {
  const cap = caps && Object.hasOwn(caps.pools, pool) ? caps.pools[pool] : undefined;
  if (cap === undefined || active + placements.length <= cap)
    return { keep: placements, held: [], reason: null };
  const room = Math.max(0, cap - active);
  return {
    keep: placements.slice(0, room),
    held: placements.slice(room),
    reason: {
      code: "running_cap",
      message: `pool ${pool}'s running cap is reached: ${active + room} of ${cap} dispatched or running`,
    },
  };
}

/** The fixed window a rate limit counts starts in: aligned to epoch multiples of perSeconds. */
export function rateWindow(limit: RateLimit, now: Date): { readonly start: Date; readonly end: Date } {
  const ms = limit.perSeconds * 1000;
  const start = Math.floor(now.getTime() / ms) * ms;
  return { start: new Date(start), end: new Date(start + ms) };
}

/**
 * Rate limits per type (policy types[type].rateLimit, reason rate_limit): at most `starts` jobs
 * of the type admitted per window of `perSeconds` (rateWindow: fixed windows, like BullMQ's
 * limiter). `started` holds each limited type's count in the current window as the pass read
 * it; the gate adds the pass's placements. The counter itself is raised, conditionally, in the
 * admission's transaction (store/rate-limits.ts), so passes of different pools never overshoot.
 */
export function rateLimitGate(
  limits: Readonly<Record<string, RateLimit>>,
  started: ReadonlyMap<string, number>,
): AdmissionGate {
  const placed = new Map<string, number>();
  const limitOf = (type: string | undefined): RateLimit | undefined =>
    type !== undefined && Object.hasOwn(limits, type) ? limits[type] : undefined;
  return {
    check(job: QueuedJob, now: Date): Reason | null {
      const limit = limitOf(job.type);
      if (limit === undefined || job.type === undefined) return null;
      const count = (started.get(job.type) ?? 0) + (placed.get(job.type) ?? 0);
      if (count < limit.starts) return null;
      const { end } = rateWindow(limit, now);
      return {
        code: "rate_limit",
        message: `type ${job.type} started ${count} of ${limit.starts} jobs allowed per ${limit.perSeconds} s; next start at ${end.toISOString()}`,
      };
    },
    admitted(job: QueuedJob): void {
      if (limitOf(job.type) === undefined || job.type === undefined) return;
      placed.set(job.type, (placed.get(job.type) ?? 0) + 1);
    },
  };
}
