import type { AdmissionGate, QueuedJob } from "./admission";
import type { OffPeakWindow } from "./policy";
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
