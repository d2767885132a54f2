import { z } from "zod";
import { ValidationError } from "../core/errors";

/**
 * Opaque pagination cursors: base64url JSON of where the next page starts.
 *
 * A cursor never carries a DynamoDB key. It holds only the position (the last job id, log or
 * transition sort key, the day being walked), each field checked here against the exact format
 * the server writes; the list rebuilds the key or key condition itself from the request's
 * principal, path and filters. So an edited cursor can at most move the reader within a list it
 * may read anyway, and any cursor that passes these schemas makes a valid DynamoDB request:
 * forged input is a 400, never a ValidationException surfacing as a 500. (Signing cursors with
 * an HMAC was the alternative; it needs a secret to provision, rotate and share between
 * Lambdas, and the server would still have to validate every field against its own request.)
 */

/** `job_` + a ULID (Crockford base32, 26 characters): what submit assigns (app/submit.ts). */
export const cursorJobIdSchema = z
  .string()
  .regex(/^job_[0-9A-HJKMNP-TV-Z]{26}(-\d{1,4})?$/, "is not a job id");

/** A UTC calendar day, `yyyy-mm-dd`, that exists (no 2025-02-30). */
export const cursorDaySchema = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, "is not a day")
  .refine((d) => {
    const ms = Date.parse(`${d}T00:00:00.000Z`);
    return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 10) === d;
  }, "is not a day");

/** A sort key in a job's partition: its prefix and then only what the writer produces. */
export function cursorSortKeySchema(pattern: RegExp): z.ZodString {
  return z.string().max(64).regex(pattern, "is not a position in this list");
}

export function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
}

/** The decoded cursor, or a ValidationError (400) for anything this server did not write. */
export function decodeCursor<S extends z.ZodType>(
  cursor: string | undefined,
  schema: S,
): z.output<S> | undefined {
  if (cursor === undefined) return undefined;
  try {
    const parsed = schema.safeParse(JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")));
    if (parsed.success) return parsed.data;
  } catch {
    // fall through to the validation error
  }
  throw invalidCursor();
}

export function invalidCursor(): ValidationError {
  return new ValidationError([{ path: "cursor", message: "is not a cursor this list returned" }]);
}
