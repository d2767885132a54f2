import WebSocket from "ws";
import type { JobqClient } from "./index";
import {
  JobStream as BaseJobStream,
  type JobStreamOptions,
  openJobStream as openBaseJobStream,
  type StreamSocketFactory,
} from "./job-stream";

/**
 * The job stream client for Node: client/job-stream.ts with its sockets opened by `ws`, which
 * (unlike Node 20, which has no global WebSocket) can send the token in the Authorization header.
 * Browsers import client/job-stream.ts, which has no Node dependency.
 */

export {
  platformWebSocket,
  resyncWith,
  type StreamJob,
  type StreamSocket,
  type StreamSocketEvents,
  type StreamSocketFactory,
  type StreamState,
  type Subscription,
} from "./job-stream";
export type { JobStreamOptions };

/** Opens sockets with `ws`. */
export const nodeWebSocket: StreamSocketFactory = (url, headers, events) => {
  const socket = new WebSocket(url, { headers });
  socket.on("open", () => events.open());
  socket.on("message", (data) => events.message(data.toString()));
  socket.on("error", (error) => events.error(error));
  socket.on("close", () => events.close());
  return {
    get isOpen() {
      return socket.readyState === WebSocket.OPEN;
    },
    send: (text) => socket.send(text),
    close: (code) => socket.close(code),
    terminate: () => socket.terminate(),
  };
};

export class JobStream extends BaseJobStream {
  constructor(options: JobStreamOptions) {
    super({ webSocket: nodeWebSocket, ...options });
  }
}

/** Connects to the stream GET /health names, with resync through the same client. */
export function openJobStream(
  client: JobqClient,
  options: Omit<JobStreamOptions, "url" | "resync"> & { readonly url?: string },
): Promise<BaseJobStream> {
  return openBaseJobStream(client, { webSocket: nodeWebSocket, ...options });
}
