import WebSocket from "ws";

/**
 * A WebSocket client of WS /jobs/stream for tests: every message it receives, in order, and waits
 * that poll what has arrived with a deadline (a wait that runs out fails with what did arrive;
 * nothing asserts on timing).
 */

export interface StreamJob {
  readonly id: string;
  readonly status: string;
  readonly version: number;
  readonly owner: string;
  readonly [field: string]: unknown;
}

export type StreamMessage =
  | { readonly type: "job"; readonly job: StreamJob }
  | { readonly type: "pong" }
  | { readonly type: "subscribed"; readonly jobIds: readonly string[] | null }
  | { readonly type: "error"; readonly error: { readonly code: string; readonly message: string } };

export interface StreamClient {
  readonly ws: WebSocket;
  readonly messages: StreamMessage[];
  /** The job messages about one job, in arrival order. */
  jobMessages(id: string): StreamJob[];
  send(message: unknown): void;
  /** Resolves with the first message (from `from` on) the predicate accepts. */
  waitFor(predicate: (message: StreamMessage) => boolean, from?: number): Promise<StreamMessage>;
  /** The close code and reason, once closed. */
  closed: Promise<{ code: number; reason: string }>;
  close(): void;
}

const WAIT_MS = 30_000;

export function openStream(
  url: string,
  token: string | undefined,
  via: "header" | "query" = "header",
): Promise<StreamClient> {
  const target = token !== undefined && via === "query" ? `${url}?token=${encodeURIComponent(token)}` : url;
  const headers = token !== undefined && via === "header" ? { authorization: `Bearer ${token}` } : undefined;
  const ws = new WebSocket(target, { headers });
  const messages: StreamMessage[] = [];
  ws.on("message", (data) => messages.push(JSON.parse(String(data)) as StreamMessage));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once("close", (code, reason) => resolve({ code, reason: String(reason) })),
  );
  return new Promise((resolve, reject) => {
    ws.once("open", () =>
      resolve({
        ws,
        messages,
        jobMessages: (id) => messages.flatMap((m) => (m.type === "job" && m.job.id === id ? [m.job] : [])),
        send: (message) => ws.send(JSON.stringify(message)),
        waitFor: (predicate, from = 0) => waitFor(messages, predicate, from),
        closed,
        close: () => ws.close(),
      }),
    );
    ws.once("unexpected-response", (_request, response) => {
      reject(new HandshakeRefused(response.statusCode ?? 0));
      response.resume();
    });
    ws.once("error", reject);
  });
}

export class HandshakeRefused extends Error {
  constructor(readonly status: number) {
    super(`handshake refused with ${status}`);
    this.name = "HandshakeRefused";
  }
}

async function waitFor(
  messages: readonly StreamMessage[],
  predicate: (message: StreamMessage) => boolean,
  from: number,
): Promise<StreamMessage> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const found = messages.slice(from).find(predicate);
    if (found) return found;
    if (Date.now() > deadline) {
      throw new Error(
        `no such stream message within ${WAIT_MS} ms; got ${JSON.stringify(messages.slice(from))}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Polls a condition until it holds or the deadline passes. */
export async function eventually<T>(read: () => Promise<T>, holds: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await read();
    if (holds(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${WAIT_MS} ms: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
