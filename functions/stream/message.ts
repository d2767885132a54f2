import middy from "@middy/core";
import { clientMessage } from "../../app/stream";
import { streamContext } from "../../app/stream-runtime";
import { observability } from "../observability";
import { ok, webSocketEventSchema } from "./events";

const ctx = streamContext();

/**
 * $default: every message a client sends (`ping`, `subscribe`). The route returns its answer
 * (a route response in AWS), so the reply needs no post through the management API.
 */
export const handler = middy(async (event: unknown) => {
  const parsed = webSocketEventSchema.parse(event);
  const reply = await clientMessage(ctx, parsed.requestContext.connectionId, parsed.body);
  return ok(JSON.stringify(reply));
}).use(observability());
