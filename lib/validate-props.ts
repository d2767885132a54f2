import { type Duration, Token } from "aws-cdk-lib";
import type { IConstruct } from "constructs";

/**
 * A construct prop outside its documented limit, refused at synth (aws-cdk's `validateProps`
 * convention, aws-sqs/lib/validate-props.ts): the message names the construct, the prop, the
 * limit and the value, so a wrong setting stops `cdk synth` instead of failing half-way through a
 * deploy or, worse, deploying something that misbehaves (a worker SIGKILLed mid-handback).
 */
export class PropValidationError extends Error {
  public override readonly name = "ValidationError";

  constructor(
    /** The construct's path in the tree (`Jobq/Compute/Workers`). */
    public readonly construct: string,
    public readonly prop: string,
    /** The rule broken, as the message says it (`at most 120 s`). */
    public readonly limit: string,
    public readonly value: string,
    why?: string,
  ) {
    super(`${construct}: ${prop} must be ${limit}${why ? ` (${why})` : ""}; got ${value}`);
  }
}

export interface NumberLimit {
  readonly min?: number;
  readonly max?: number;
  readonly integer?: boolean;
  /** Appended to the numbers in the message (` s`, ` days`). */
  readonly unit?: string;
  /** Where the limit comes from, for the message. */
  readonly why?: string;
}

function range(limit: NumberLimit): string {
  const unit = limit.unit ?? "";
  const kind = limit.integer ? "a whole number " : "";
  if (limit.min !== undefined && limit.max !== undefined)
    return `${kind}from ${limit.min}${unit} to ${limit.max}${unit}`;
  if (limit.min !== undefined) return `${kind}at least ${limit.min}${unit}`;
  if (limit.max !== undefined) return `${kind}at most ${limit.max}${unit}`;
  return limit.integer ? "a whole number" : "a number";
}

/** Refuses a number outside the limit; an unset prop (its default applies) or a token passes. */
export function checkNumber(
  scope: IConstruct,
  prop: string,
  value: number | undefined,
  limit: NumberLimit,
): void {
  if (value === undefined || Token.isUnresolved(value)) return;
  const outside =
    Number.isNaN(value) ||
    (limit.integer === true && !Number.isInteger(value)) ||
    (limit.min !== undefined && value < limit.min) ||
    (limit.max !== undefined && value > limit.max);
  if (outside)
    throw new PropValidationError(
      scope.node.path,
      prop,
      range(limit),
      `${value}${limit.unit ?? ""}`,
      limit.why,
    );
}

/** Refuses a duration outside [min, max], compared in seconds. */
export function checkDuration(
  scope: IConstruct,
  prop: string,
  value: Duration | undefined,
  limit: {
    readonly min?: Duration;
    readonly max?: Duration;
    readonly wholeMinutes?: boolean;
    readonly why?: string;
  },
): void {
  if (value === undefined || value.isUnresolved()) return;
  const seconds = value.toSeconds();
  const min = limit.min?.toSeconds();
  const max = limit.max?.toSeconds();
  if (limit.wholeMinutes === true && seconds % 60 !== 0)
    throw new PropValidationError(scope.node.path, prop, "whole minutes", `${seconds} s`, limit.why);
  checkNumber(scope, prop, seconds, { min, max, unit: " s", why: limit.why });
}

/** Refuses a string that does not match the pattern or is longer than `maxLength`. */
export function checkName(
  scope: IConstruct,
  prop: string,
  value: string | undefined,
  limit: { readonly pattern: RegExp; readonly maxLength: number; readonly describe: string },
): void {
  if (value === undefined || Token.isUnresolved(value)) return;
  if (value.length === 0 || value.length > limit.maxLength || !limit.pattern.test(value))
    throw new PropValidationError(
      scope.node.path,
      prop,
      `1 to ${limit.maxLength} characters of ${limit.describe}`,
      JSON.stringify(value),
    );
}
