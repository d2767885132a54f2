import type { TransactItem } from "./job-repository";

/**
 * Rate-limit counters (policy types[type].rateLimit; core/gates.ts#rateLimitGate), in the Policy
 * table: one item per type and window, `pk` = `RATE#<type>`, `sk` = `W#<window start, ISO>`,
 * holding `starts`, the jobs of the type admitted in the window. Written only for types that
 * have a rateLimit, in the admission's own transaction, and conditional on the count staying
 * within the limit: passes of different pools sharing a type never start more than it allows.
 * TTL collects a window's item a day after it ended.
 */

export function rateCounterKey(type: string, windowStart: Date): { pk: string; sk: string } {
  return { pk: `RATE#${type}`, sk: `W#${windowStart.toISOString()}` };
}

/** How long a window's counter is kept after the window ended (TTL). */
const KEEP_SECONDS = 86_400;

/**
 * The transaction item that counts `count` more starts of `type` in the window, refused
 * (the whole admission with it) when that would pass `limit`.
 */
export function countStartsItem(
  table: string,
  counter: { readonly type: string; readonly windowStart: Date; readonly windowEnd: Date },
  count: number,
  limit: number,
): TransactItem {
  return {
    Update: {
      TableName: table,
      Key: rateCounterKey(counter.type, counter.windowStart),
      UpdateExpression: "SET entity = :entity, expiresAt = :expires ADD starts :count",
      ConditionExpression: "attribute_not_exists(starts) OR starts <= :room",
      ExpressionAttributeValues: {
        ":entity": "rateCounter",
        ":expires": Math.floor(counter.windowEnd.getTime() / 1000) + KEEP_SECONDS,
        ":count": count,
        ":room": limit - count,
      },
    },
  };
}
