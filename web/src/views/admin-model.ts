import type { PolicyView, QuotaLimitsInput, QuotaView } from "../../../client/index";
import { type FieldProblem, parseJsonObject } from "../errors";

/**
 * The admin view's pure parts: the policy as editable text, and quotas as rows of usage against
 * limits with API.md's 80 % warning. Unit-tested.
 */

/** API.md: a quota warns at 80 % of a limit. */
export const QUOTA_WARNING_SHARE = 0.8;

/**
 * GET /admin/policy's answer as PUT's body: `updatedAt`/`updatedBy` are the server's bookkeeping
 * and PUT's strict schema refuses them, so they are shown beside the editor, not in it.
 */
export function policyText(view: PolicyView): string {
  const { updatedAt: _at, updatedBy: _by, ...policy } = view;
  return JSON.stringify(policy, null, 2);
}

export type PolicyParse =
  | { readonly ok: true; readonly policy: Record<string, unknown> }
  | { readonly ok: false; readonly problems: FieldProblem[] };

export function parsePolicy(text: string): PolicyParse {
  const parsed = parseJsonObject(text);
  return parsed.ok
    ? { ok: true, policy: parsed.value }
    : { ok: false, problems: [{ path: "", message: parsed.message }] };
}

export interface QuotaRow {
  readonly key: "todayGpuSeconds" | "weekGpuSeconds" | "queuedJobs";
  readonly label: string;
  readonly used: number;
  readonly limit: number | null;
  /** used / limit, 0.. (may pass 1: a running attempt's share counts); null: no limit. */
  readonly share: number | null;
  /** At or past 80 % of the limit. */
  readonly warning: boolean;
  readonly exceeded: boolean;
}

export function quotaRows(view: QuotaView): QuotaRow[] {
  const row = (key: QuotaRow["key"], label: string, used: number, limit: number | null): QuotaRow => {
    // A limit of 0 is wholly used from the start: nothing may be used.
    const share =
      limit === null ? null : limit === 0 ? (used > 0 ? Number.POSITIVE_INFINITY : 1) : used / limit;
    return {
      key,
      label,
      used,
      limit,
      share,
      warning: share !== null && share >= QUOTA_WARNING_SHARE,
      exceeded: limit !== null && used >= limit,
    };
  };
  return [
    row("todayGpuSeconds", "GPU-seconds today", view.used.todayGpuSeconds, view.limits.dailyGpuSeconds),
    row("weekGpuSeconds", "GPU-seconds this week", view.used.weekGpuSeconds, view.limits.weeklyGpuSeconds),
    row("queuedJobs", "Jobs not yet started", view.used.queuedJobs, view.limits.maxQueuedJobs),
  ];
}

/** The limit fields of the quota form, as typed: an empty field is no limit. */
export interface QuotaForm {
  readonly dailyGpuSeconds: string;
  readonly weeklyGpuSeconds: string;
  readonly maxQueuedJobs: string;
  readonly maxPriority: string;
}

export function quotaForm(view: QuotaView): QuotaForm {
  const text = (v: number | null): string => (v === null ? "" : String(v));
  return {
    dailyGpuSeconds: text(view.limits.dailyGpuSeconds),
    weeklyGpuSeconds: text(view.limits.weeklyGpuSeconds),
    maxQueuedJobs: text(view.limits.maxQueuedJobs),
    maxPriority: text(view.limits.maxPriority),
  };
}

/**
 * PUT /quotas's body from the form. Numbers are passed as numbers even when the server would
 * refuse them (negative, fractional): its messages are the ones shown. A priority may be a name
 * (`high`), as the API takes it. Only text that is not a number at all is refused here.
 */
export function quotaLimits(
  form: QuotaForm,
):
  | { readonly ok: true; readonly limits: QuotaLimitsInput }
  | { readonly ok: false; readonly problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const number = (field: keyof QuotaForm): number | null => {
    const text = form[field].trim();
    if (text === "") return null;
    const n = Number(text);
    if (!Number.isFinite(n)) {
      problems.push({ path: field, message: "must be a number, or empty for no limit" });
      return null;
    }
    return n;
  };
  const priorityText = form.maxPriority.trim();
  const maxPriority: number | string | null =
    priorityText === "" ? null : Number.isFinite(Number(priorityText)) ? Number(priorityText) : priorityText;
  const limits = {
    dailyGpuSeconds: number("dailyGpuSeconds"),
    weeklyGpuSeconds: number("weeklyGpuSeconds"),
    maxQueuedJobs: number("maxQueuedJobs"),
    maxPriority: maxPriority as QuotaLimitsInput["maxPriority"],
  };
  return problems.length > 0 ? { ok: false, problems } : { ok: true, limits };
}

/** "1,234 s (1 % of 3,600 s)". */
export function formatQuotaAmount(row: QuotaRow): string {
  const unit = row.key === "queuedJobs" ? "" : " s";
  const used = `${Math.round(row.used).toLocaleString("en-US")}${unit}`;
  if (row.limit === null) return `${used} (no limit)`;
  const pct =
    row.share === null || !Number.isFinite(row.share) ? "over" : `${Math.round(row.share * 100)}\u00a0%`;
  return `${used} of ${row.limit.toLocaleString("en-US")}${unit} (${pct})`;
}
