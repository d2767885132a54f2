import { z } from "zod";
import { ValidationError } from "../core/errors";

/**
 * Opaque pagination cursors: base64url JSON of where the next page starts. Decoding validates
 * the shape so a forged or stale cursor is a 400, never a DynamoDB error surfacing as a 500.
 */
const keySchema = z.record(z.string(), z.union([z.string(), z.number()]));
export type StartKey = z.infer<typeof keySchema>;

export function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
}

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
  throw new ValidationError([{ path: "cursor", message: "is not a cursor this list returned" }]);
}

export const startKeySchema = keySchema;
