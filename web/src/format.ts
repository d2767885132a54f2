/** What the dashboard shows for times, durations and priorities. */

export { isTerminal, JOB_STATUSES } from "../../core/job-statuses";

export const PRIORITY_NAMES: readonly { readonly name: string; readonly value: number }[] = [
  { name: "critical", value: 10 },
  { name: "high", value: 5 },
  { name: "normal", value: 0 },
  { name: "low", value: -5 },
  { name: "background", value: -10 },
];

/** The theme's four priority colours, cool to hot. */
export function priorityBand(priority: number): "low" | "normal" | "high" | "urgent" {
  if (priority >= 10) return "urgent";
  if (priority >= 5) return "high";
  if (priority >= 0) return "normal";
  return "low";
}

export function priorityLabel(priority: number): string {
  const named = PRIORITY_NAMES.find((p) => p.value === priority);
  return named ? `${named.name} (${priority})` : String(priority);
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

/** "in 3 min", "12 s ago": the relative time people read a queue by. */
export function relativeTime(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "—";
  const ms = new Date(iso).getTime() - now;
  if (Number.isNaN(ms)) return iso;
  const text = formatDuration(Math.abs(ms));
  return Math.abs(ms) < 1000 ? "now" : ms > 0 ? `in ${text}` : `${text} ago`;
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function shortId(id: string): string {
  return id.length > 14 ? `${id.slice(0, 4)}…${id.slice(-8)}` : id;
}

/**
 * An amount in USD as people read a bill: a job's request charges are millionths of a dollar, so
 * small amounts keep six decimals instead of rounding to "$0.00" (the CLI's cli/format.ts#formatUsd).
 */
export function formatUsd(usd: number | null | undefined): string {
  if (usd === null || usd === undefined || !Number.isFinite(usd)) return "—";
  if (usd === 0) return "$0";
  if (usd < 0.000001) return "<$0.000001";
  if (usd < 0.01) return `$${usd.toFixed(6)}`;
  if (usd < 1) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}
