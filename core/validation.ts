import type { z } from "zod";
import { type FieldProblem, ValidationError } from "./errors";

/** Every problem zod found, as API.md's `details` list (path dotted, root as ""). */
export function fieldProblems(error: z.ZodError): FieldProblem[] {
  return error.issues.map((issue) => ({
    path: issue.path.map(String).join("."),
    message: issue.message,
  }));
}

/** Parse or throw a ValidationError listing every field problem. */
export function parseRequest<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new ValidationError(fieldProblems(result.error));
  return result.data;
}
