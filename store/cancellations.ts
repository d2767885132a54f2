import type { ConcurrentUpdateError } from "../core/errors";

/**
 * The per-item codes of a cancelled transaction, in the order its items were sent, as
 * JobRepository#transact keeps them on the ConcurrentUpdateError ("None" for an item that was
 * fine). Only store/ reads them: the verbs that send a transaction know which item is which and
 * answer a typed outcome, so no use case reads a cancellation by position.
 */
export function cancellationCodes(error: ConcurrentUpdateError): string[] {
  const details = error.details as { reasons?: unknown } | undefined;
  return Array.isArray(details?.reasons) ? details.reasons.map(String) : [];
}

/** DynamoDB's code for an item whose condition did not hold. */
export const CONDITION_FAILED = "ConditionalCheckFailed";
