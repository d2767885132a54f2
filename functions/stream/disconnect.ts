import middy from "@middy/core";
import { closeConnection } from "../../app/stream";
import { streamContext } from "../../app/stream-runtime";
import { observability } from "../observability";
import { ok, webSocketEventSchema } from "./events";

const ctx = streamContext();

/**
 * $disconnect: the connection's item goes. API Gateway calls it on a best-effort basis; a missed
 * one is cleaned up by the broadcaster's first 410 or by the item's TTL.
 */
export const handler = middy(async (event: unknown) => {
  const parsed = webSocketEventSchema.parse(event);
  await closeConnection(ctx, parsed.requestContext.connectionId);
  return ok();
}).use(observability());
