import { ConnectionRepository } from "../store/connections";
import { createDocumentClient } from "../store/dynamo";
import { ManagementApiSender } from "../store/stream-sender";
import { config, streamConfig } from "./config";
import { systemClock } from "./runtime";
import type { BroadcastContext, StreamContext } from "./stream";

/** The stream's use-case contexts, created once per process like app/runtime.ts's. */

let stream: StreamContext | undefined;
export function streamContext(): StreamContext {
  if (!stream) {
    const c = config();
    const db = createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint });
    stream = { connections: new ConnectionRepository(db, c.connectionsTable), clock: systemClock };
  }
  return stream;
}

/** The stream's configuration is missing: the broadcaster cannot reach any connection. */
export class StreamConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StreamConfigError";
  }
}

let broadcaster: BroadcastContext | undefined;
export function broadcastContext(): BroadcastContext {
  if (!broadcaster) {
    const c = config();
    const endpoint = streamConfig().managementEndpoint;
    // Loud at once (the broadcaster builds this at its init): without it every post would fail,
    // batch after batch.
    if (!endpoint) throw new StreamConfigError("JOBQ_STREAM_ENDPOINT is not set");
    broadcaster = {
      ...streamContext(),
      sender: new ManagementApiSender(endpoint, c.region, c.dynamoEndpoint !== undefined),
    };
  }
  return broadcaster;
}
