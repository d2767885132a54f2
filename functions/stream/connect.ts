import middy from "@middy/core";
import { openConnection } from "../../app/stream";
import { streamContext } from "../../app/stream-runtime";
import { errorResponse } from "../http";
import { observability } from "../observability";
import { ok, principalOfConnection, webSocketEventSchema } from "./events";

const ctx = streamContext();

/**
 * $connect of WS /jobs/stream, after the authorizer (functions/stream/authorizer.ts) accepted the
 * token: records the connection under its principal. A non-2xx answer refuses the handshake.
 */
export const handler = middy(async (event: unknown) => {
  try {
    const parsed = webSocketEventSchema.parse(event);
    await openConnection(ctx, parsed.requestContext.connectionId, principalOfConnection(parsed));
    return ok();
  } catch (error) {
    return errorResponse(error);
  }
}).use(observability());
