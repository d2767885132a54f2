import type { AdmissionGate, QueuedJob } from "./admission";
import { type Circuit, circuitOpenReason, circuitState, keyFor } from "./circuit";
import type { CircuitBreakerPolicy, OffPeakWindow } from "./policy";
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
 * holds the owners that have limits, with their usage as the pass read it.
 */
export function gpuQuotaGate(quotas: ReadonlyMap<string, GpuQuotaState>): AdmissionGate {
  const answers = new Map<string, Reason | null>();
  return {
    check(job: QueuedJob): Reason | null {
      if (!(job.resources.gpu > 0) || job.owner === undefined) return null;
      let answer = answers.get(job.owner);
      if (answer === undefined) {
        const quota = quotas.get(job.owner);
        answer = quota ? gpuQuotaRefusal(quota.limits, quota.used) : null;
        answers.set(job.owner, answer);
      }
      return answer;
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
