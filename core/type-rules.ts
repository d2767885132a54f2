import { BUILT_IN_RETRY, BUILT_IN_TIMEOUT_SECONDS, type Escalation, type RetryPolicy } from "./job";
import type { TypeRules } from "./policy";

/**
 * Per-type defaults at submit (issue 13, policy.types): a job's retry, timeoutSeconds, onFailure
 * and onTimeout are what the caller gave; a field left out takes its type's rule from the
 * policy in force at submit, then the built-in default (retry and timeoutSeconds; the
 * escalations have none). The result is stored with the job and never changes under it: a later
 * policy change applies only to jobs submitted after it.
 *
 * A field is the unit: a caller's `retry: {maxAttempts: 5}` is a whole retry (its other members
 * take retrySchema's defaults), never merged with the type's retry.
 */

/** The settings type rules may default. */
export interface JobSettings {
  readonly retry: RetryPolicy;
  readonly timeoutSeconds: number;
  readonly onFailure?: Escalation;
  readonly onTimeout?: Escalation;
}

/** What a request carries of them: any may be left out. */
export type GivenSettings = Partial<JobSettings>;

/** Where a field left out by both the caller and the type's rules comes from. */
export const BUILT_IN_SETTINGS: JobSettings = {
  retry: BUILT_IN_RETRY,
  timeoutSeconds: BUILT_IN_TIMEOUT_SECONDS,
};

/**
 * The job with every setting resolved: the caller's, else the type's rule, else `fallback`'s
 * (the built-ins, or for an escalation job what its failed job had). An escalation left out
 * everywhere stays absent.
 */
export function resolveJobSettings<T extends GivenSettings>(
  job: T,
  rules: TypeRules | undefined,
  fallback: JobSettings = BUILT_IN_SETTINGS,
): T & JobSettings {
  const onFailure = job.onFailure ?? rules?.onFailure ?? fallback.onFailure;
  const onTimeout = job.onTimeout ?? rules?.onTimeout ?? fallback.onTimeout;
  return {
    ...job,
    retry: job.retry ?? rules?.retry ?? fallback.retry,
    timeoutSeconds: job.timeoutSeconds ?? rules?.timeoutSeconds ?? fallback.timeoutSeconds,
    ...(onFailure ? { onFailure } : {}),
    ...(onTimeout ? { onTimeout } : {}),
  };
}

/** The type's rules in a policy's `types`, own keys only ("constructor" is no type's rules). */
export function typeRulesOf(types: Readonly<Record<string, TypeRules>>, type: string): TypeRules | undefined {
  return Object.hasOwn(types, type) ? types[type] : undefined;
}

/**
 * Where a job out of attempts escalates: `onTimeout` when its last attempt timed out and it has
 * one, `onFailure` otherwise (also after a timeout when onTimeout is absent: the behaviour
 * before onTimeout existed). Null: the job fails.
 */
export function escalationFor(
  job: { readonly onFailure: Escalation | null; readonly onTimeout?: Escalation | null },
  lastAttemptTimedOut: boolean,
): Escalation["escalateTo"] | null {
  if (lastAttemptTimedOut && job.onTimeout) return job.onTimeout.escalateTo;
  return job.onFailure?.escalateTo ?? null;
}
