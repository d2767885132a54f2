import type { Pool } from "../../../client/index";

/**
 * The pools view's arithmetic: shares of capacity in use, heartbeat ages and how each is said in
 * words (the bars are drawn from these, and screen readers read the words). Pure, unit-tested.
 */

export type NodeStatus = Pool["nodes"][number]["status"];
export type ResourceName = "cpu" | "memoryMb" | "gpu";

export const RESOURCES: readonly ResourceName[] = ["cpu", "memoryMb", "gpu"];

/** How often the view reads GET /pools again: node heartbeats are seconds apart, so more is noise. */
export const POOLS_REFRESH_MS = 5_000;

/**
 * A node that has not heartbeat for this long is shown as late, before the server marks it lost.
 * Nodes beat every third of JOBQ_NODE_LOST_SECONDS (30 s in AWS: every 10 s; 15 s locally: every
 * 5 s), so 15 s is at least one missed beat in AWS and the edge of lost locally.
 */
export const LATE_HEARTBEAT_MS = 15_000;

/** used / capacity in 0..1 (over-use shown as full); null where there is no capacity of that kind. */
export function share(used: number, capacity: number): number | null {
  if (!(capacity > 0)) return null;
  return Math.min(1, Math.max(0, used / capacity));
}

export function resourceLabel(resource: ResourceName): string {
  return resource === "cpu" ? "CPU" : resource === "gpu" ? "GPU" : "Memory";
}

/** An amount in the resource's own unit: vCPU, GB (from MB) or GPUs. */
export function formatAmount(resource: ResourceName, amount: number): string {
  if (resource === "memoryMb") {
    return amount >= 1024 ? `${trim(amount / 1024)} GB` : `${trim(amount)} MB`;
  }
  return resource === "cpu" ? `${trim(amount)} vCPU` : `${trim(amount)} GPU`;
}

/** "3 of 8 vCPU in use (38 %)", or "no GPU" where the capacity is 0. */
export function usageText(resource: ResourceName, used: number, capacity: number): string {
  const s = share(used, capacity);
  if (s === null) return `no ${resourceLabel(resource) === "Memory" ? "memory" : resourceLabel(resource)}`;
  // Both amounts in the capacity's unit: "0.5 of 4 GB", never "512 of 4 GB".
  const inGb = resource === "memoryMb" && capacity >= 1024;
  const usedText = trim(inGb ? used / 1024 : used);
  return `${usedText} of ${formatAmount(resource, capacity)} in use (${Math.round(s * 100)}\u00a0%)`;
}

/** A bar's fill level, coarse enough to colour by: below 70 % calm, to 90 % warm, beyond hot. */
export function loadLevel(s: number | null): "none" | "low" | "high" | "full" {
  if (s === null) return "none";
  return s >= 0.9 ? "full" : s >= 0.7 ? "high" : "low";
}

/** Milliseconds since the last heartbeat (never negative: clocks of browser and server differ). */
export function heartbeatAgeMs(lastHeartbeatAt: string, now: Date): number | null {
  const at = Date.parse(lastHeartbeatAt);
  if (Number.isNaN(at)) return null;
  return Math.max(0, now.getTime() - at);
}

/** "4 s ago", "3 min ago", "2 h ago", "5 d ago". */
export function formatAge(ms: number | null): string {
  if (ms === null) return "never";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s ago`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ago`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} d ago`;
}

export function statusText(status: NodeStatus): string {
  return status === "up" ? "Up" : status === "draining" ? "Draining" : "Lost";
}

/** An admin can drain a node that is up; draining or lost ones have nothing left to drain. */
export function canDrain(status: NodeStatus): boolean {
  return status === "up";
}

/** Counts of the pool's nodes per status, for the pool's heading ("2 up, 1 draining"). */
export function nodeSummary(nodes: readonly { readonly status: NodeStatus }[]): string {
  if (nodes.length === 0) return "no nodes";
  const counts = new Map<NodeStatus, number>();
  for (const node of nodes) counts.set(node.status, (counts.get(node.status) ?? 0) + 1);
  return (["up", "draining", "lost"] as const)
    .filter((s) => counts.has(s))
    .map((s) => `${counts.get(s)} ${s}`)
    .join(", ");
}

/** At most one decimal, two below 1 (0.25 GB of memory is not "0.3"), no trailing zeros. */
function trim(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(Math.abs(n) < 1 ? 2 : 1).replace(/\.?0+$/, "");
}
