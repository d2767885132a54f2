import type { FinalizeRequestMiddleware, MetadataBearer } from "@smithy/types";

/**
 * Writes that must not be sent twice: an addition or a subtraction (a node's booking, a
 * release), which a retry after a lost answer would apply twice, and the scheduler's
 * admissions, whose refusal must mean the job moved rather than that an earlier try landed.
 */

/** Errors with which DynamoDB answers a request it did not carry out: a retry of it cannot write twice. */
const NOT_WRITTEN = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
]);

/** A write whose answer was lost, and which is therefore not sent again. */
class AnswerLostError extends Error {
  constructor(cause: unknown) {
    super("the answer to a write that may have landed was lost; it is not sent again", { cause });
    this.name = "AnswerLostError";
  }
}

/**
 * Placed inside the SDK's retry loop (finalizeRequest, low priority): each try passes through it.
 * A try that failed without an answer saying nothing was written makes every later try of the
 * same command fail with AnswerLostError instead of being sent.
 */
export function sendAtMostOnce<
  Input extends object,
  Output extends MetadataBearer,
>(): FinalizeRequestMiddleware<Input, Output> {
  let lost: unknown;
  return (next) => async (args) => {
    if (lost !== undefined) throw new AnswerLostError(lost);
    try {
      return await next(args);
    } catch (error) {
      if (!(error instanceof Error && NOT_WRITTEN.has(error.name)) && !isConditionFailure(error))
        lost = error;
      throw error;
    }
  };
}

function isConditionFailure(error: unknown): boolean {
  return error instanceof Error && error.name === "ConditionalCheckFailedException";
}
