import type { Resources } from "../core/job";
import type { PoolConfig } from "../core/pools";
import type { RunningJob } from "../core/preemption";
import { projectOfQuotaKey } from "../core/projects";
import { currentGpuSeconds, type QuotaLimits } from "../core/quota";
import type { JobRepository } from "../store/job-repository";
import type { PolicyRepository } from "../store/policy";
import type { UsageRepository } from "../store/usage";
import { type ActiveItem, heldByOwner, readActive } from "./queue-reader";

/**
 * What a scheduling pass learns besides the queue, read lazily and once per pass: the jobs
 * holding capacity (per pool, from the sparse `active` index — bounded by capacity, never by
 * the backlog), and the quotas and GPU usage of the owners whose GPU jobs it looks at.
 */
export class PassState {
  private readonly active = new Map<string, Promise<ActiveItem[]>>();
  /** Owners whose GPU quota is known, with their usage: what the quota gate reads. */
  readonly quotas = new Map<
    string,
    { readonly limits: QuotaLimits; readonly used: { todayGpuSeconds: number; weekGpuSeconds: number } }
  >();
  private readonly quotaLooked = new Set<string>();

  constructor(
    private readonly ctx: {
      readonly repo: JobRepository;
      readonly pools: readonly PoolConfig[];
      readonly policies: PolicyRepository;
      readonly usage: UsageRepository;
    },
    private readonly now: Date,
  ) {}

  activeIn(pool: string): Promise<ActiveItem[]> {
    let found = this.active.get(pool);
    if (!found) {
      found = readActive(this.ctx.repo, pool);
      this.active.set(pool, found);
    }
    return found;
  }

  async activeEverywhere(pools: readonly PoolConfig[] = this.ctx.pools): Promise<ActiveItem[]> {
    return (await Promise.all(pools.map((p) => this.activeIn(p.name)))).flat();
  }

  /** Jobs dispatched or running per type, across every pool: what typeConcurrency limits. */
  async activeByType(): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    for (const item of await this.activeEverywhere()) counts.set(item.type, (counts.get(item.type) ?? 0) + 1);
    return counts;
  }

  /** Jobs dispatched or running, in all and per pool: what the running caps (policy maxRunning) count. */
  async activeCounts(): Promise<{ total: number; byPool: Map<string, number> }> {
    const byPool = new Map<string, number>();
    let total = 0;
    for (const item of await this.activeEverywhere()) {
      total++;
      byPool.set(item.reservation.pool, (byPool.get(item.reservation.pool) ?? 0) + 1);
    }
    return { total, byPool };
  }

  /** Resources held per owner in a pool: the "in use" of Dominant Resource Fairness. */
  async usageByOwner(pool: string): Promise<Map<string, Resources>> {
    return heldByOwner(await this.activeIn(pool));
  }

  /** The jobs holding capacity in a pool, as preemption sees them. */
  async running(pool: string): Promise<RunningJob[]> {
    return (await this.activeIn(pool)).map((item) => ({
      id: item.id,
      owner: item.owner,
      type: item.type,
      priority: item.priority,
      pool: item.reservation.pool,
      nodeId: item.reservation.nodeId,
      resources: {
        cpu: item.reservation.cpu,
        memoryMb: item.reservation.memoryMb,
        gpu: item.reservation.gpu,
      },
      startedAt: item.attemptStartedAt ?? null,
      preemptedAt: item.preemptedAt ?? null,
    }));
  }

  /**
   * Loads the GPU quota and usage of owners not looked up yet: finished attempts from the usage
   * items, running ones from the GPU pools' active jobs. Owners without a GPU limit are left out
   * of `quotas`, so the gate lets their jobs through without further reads. An "owner" may be a
   * project's quota key (`project:<name>`, core/projects.ts): its running jobs are the project's.
   */
  async loadQuotas(owners: Iterable<string>): Promise<void> {
    const fresh = [...new Set(owners)].filter((o) => !this.quotaLooked.has(o));
    if (fresh.length === 0) return;
    for (const owner of fresh) this.quotaLooked.add(owner);
    const limits = await this.ctx.policies.getQuotas(fresh);
    const limited = fresh.filter((o) => {
      const l = limits.get(o);
      return l !== undefined && (l.dailyGpuSeconds !== null || l.weeklyGpuSeconds !== null);
    });
    if (limited.length === 0) return;
    const finished = await this.ctx.usage.readGpuUsage(limited, this.now);
    const gpuPools = this.ctx.pools.filter((p) => p.node.gpu > 0);
    const running = await this.activeEverywhere(gpuPools);
    for (const owner of limited) {
      const used = { ...(finished.get(owner) ?? { todayGpuSeconds: 0, weekGpuSeconds: 0 }) };
      const project = projectOfQuotaKey(owner);
      for (const item of running) {
        const theirs = project === null ? item.owner === owner : item.project === project;
        if (!theirs || item.reservation.gpu <= 0 || !item.attemptStartedAt) continue;
        const share = currentGpuSeconds(item.reservation.gpu, new Date(item.attemptStartedAt), this.now);
        used.todayGpuSeconds += share.todayGpuSeconds;
        used.weekGpuSeconds += share.weekGpuSeconds;
      }
      const ownerLimits = limits.get(owner);
      if (ownerLimits) this.quotas.set(owner, { limits: ownerLimits, used });
    }
  }
}
