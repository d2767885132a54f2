import { JobqApiError, JobqUnreachableError } from "../../client/index";

/**
 * What the dashboard shows for a failed call: the contract's error
 * code and message (API.md), and the field problems of a `validation_failed` so a form can put
 * each beside its control. Pure (no DOM), so it is unit-tested.
 */

export interface FieldProblem {
  /** Dotted path as the API reports it, e.g. `job.priority`; empty for the body itself. */
  readonly path: string;
  readonly message: string;
}

export interface ShownError {
  /** The contract's code (`validation_failed`, `forbidden` …), or `unreachable` / `client_error`. */
  readonly code: string;
  readonly message: string;
  readonly status: number | undefined;
  readonly problems: readonly FieldProblem[];
}

export function describeError(error: unknown): ShownError {
  if (error instanceof JobqApiError) {
    return {
      code: error.code,
      message: error.message,
      status: error.status,
      problems: fieldProblems(error.details),
    };
  }
  if (error instanceof JobqUnreachableError) {
    return { code: "unreachable", message: error.message, status: undefined, problems: [] };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: "client_error", message, status: undefined, problems: [] };
}

/** `validation_failed`'s details: a list of `{path, message}`; anything else has none. */
export function fieldProblems(details: unknown): FieldProblem[] {
  if (!Array.isArray(details)) return [];
  const problems: FieldProblem[] = [];
  for (const entry of details as unknown[]) {
    if (typeof entry !== "object" || entry === null) continue;
    const { path, message } = entry as { path?: unknown; message?: unknown };
    if (typeof message !== "string") continue;
    problems.push({ path: typeof path === "string" ? path : "", message });
  }
  return problems;
}

/**
 * The problems that belong to one control: its field exactly or anything under it
 * (`job` takes `job.priority` and `job.retry.maxAttempts`).
 */
export function problemsAt(problems: readonly FieldProblem[], field: string): FieldProblem[] {
  return problems.filter((p) => p.path === field || p.path.startsWith(`${field}.`));
}

/** The problems no control of the form claims, so none is dropped silently. */
export function unclaimedProblems(
  problems: readonly FieldProblem[],
  fields: readonly string[],
): FieldProblem[] {
  return problems.filter((p) => !fields.some((f) => p.path === f || p.path.startsWith(`${f}.`)));
}

export type JsonObjectParse =
  | { readonly ok: true; readonly value: Record<string, unknown> }
  | { readonly ok: false; readonly message: string };

/**
 * A textarea's JSON, checked before it is sent: a syntax error would otherwise come back as the
 * server's generic "body is not valid JSON", without saying which field held it.
 */
export function parseJsonObject(text: string): JsonObjectParse {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, message: `not valid JSON: ${(error as Error).message}` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, message: "must be a JSON object ({ … })" };
  }
  return { ok: true, value: value as Record<string, unknown> };
}
