import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { type WebSocket, WebSocketServer } from "ws";
import { JobqClient } from "../../client";
import { JobStream, openJobStream, type StreamJob } from "../../client/stream";

/**
 * The stream client (client/stream.ts) against a small real server on loopback that speaks the
 * stream protocol of API.md — `{type: "job", job}` out, `{action: "ping"}` → `{type: "pong"}`,
 * `{action: "subscribe", ...}` in — and serves GET /health (streamUrl) and GET /jobs?updatedSince=
 * for the catch-up after a reconnect. The jobq server side of the stream is built elsewhere; this
 * holds the client to the protocol until the two meet in an end-to-end test.
 */

const TOKEN = "stream-token";

interface JobFixture {
  readonly id: string;
  readonly version: number;
  readonly status: string;
  readonly payload?: unknown;
  readonly result?: unknown;
}

class ProtocolServer {
  readonly connections: { readonly request: IncomingMessage; readonly socket: WebSocket }[] = [];
  readonly received: unknown[][] = [];
  readonly listRequests: URL[] = [];
  /** GET /jobs answers these pages in turn, following `cursor` = the page's index. */
  listPages: JobFixture[][] = [[]];
  private constructor(
    private readonly http: Server,
    private readonly wss: WebSocketServer,
    readonly url: string,
  ) {}

  static async start(options: { readonly tokenInQuery?: boolean } = {}): Promise<ProtocolServer> {
    let self: ProtocolServer | undefined;
    const http = createServer((request, response) => {
      const url = new URL(request.url ?? "/", "http://local");
      response.setHeader("content-type", "application/json");
      if (url.pathname === "/health") {
        response.end(
          JSON.stringify({ status: "ok", streamUrl: `${self?.url.replace("http", "ws")}/jobs/stream` }),
        );
        return;
      }
      if (url.pathname === "/jobs" && request.headers.authorization === `Bearer ${TOKEN}`) {
        self?.listRequests.push(url);
        const pages = self?.listPages ?? [[]];
        const index = Number(url.searchParams.get("cursor") ?? 0);
        const next = index + 1 < pages.length ? String(index + 1) : null;
        response.end(JSON.stringify({ items: pages[index] ?? [], nextCursor: next }));
        return;
      }
      response.statusCode = 404;
      response.end(JSON.stringify({ error: { code: "not_found", message: "no route" } }));
    });
    const wss = new WebSocketServer({
      server: http,
      path: "/jobs/stream",
      verifyClient: ({ req }: { req: IncomingMessage }) => {
        const query = new URL(req.url ?? "/", "http://local").searchParams.get("token");
        return options.tokenInQuery ? query === TOKEN : req.headers.authorization === `Bearer ${TOKEN}`;
      },
    });
    wss.on("connection", (socket, request) => {
      const messages: unknown[] = [];
      self?.connections.push({ request, socket });
      self?.received.push(messages);
      socket.on("message", (data) => {
        const message = JSON.parse(data.toString()) as { action?: string };
        messages.push(message);
        if (message.action === "ping") socket.send(JSON.stringify({ type: "pong" }));
      });
    });
    http.listen(0, "127.0.0.1");
    await new Promise<void>((ready) => http.once("listening", ready));
    self = new ProtocolServer(http, wss, `http://127.0.0.1:${(http.address() as AddressInfo).port}`);
    return self;
  }

  /** Sends to the newest connection. */
  sendJob(job: JobFixture): void {
    this.connections.at(-1)?.socket.send(JSON.stringify({ type: "job", job }));
  }

  /** Drops every connection without a closing handshake, as a network failure would. */
  dropAll(): void {
    for (const { socket } of this.connections) socket.terminate();
  }

  async stop(): Promise<void> {
    for (const client of this.wss.clients) client.terminate();
    await new Promise<void>((done) => this.wss.close(() => done()));
    this.http.closeAllConnections();
    await new Promise<void>((done) => this.http.close(() => done()));
  }
}

/** Polls until the condition holds; fails with the message after a generous deadline. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await sleep(10);
  }
}

const versions = (jobs: readonly StreamJob[]) => jobs.map((job) => `${job.id}@${job.version}`);

let server: ProtocolServer | undefined;
let stream: JobStream | undefined;
afterEach(async () => {
  await stream?.close();
  await server?.stop();
});

describe("the job stream client", () => {
  it("subscribes, hands on each version once, pings, and after a drop reconnects and catches up", async () => {
    // Prepare
    server = await ProtocolServer.start();
    const live = server;
    const client = new JobqClient({ url: live.url, token: TOKEN });
    const jobs: StreamJob[] = [];
    const states: string[] = [];
    stream = await openJobStream(client, {
      token: TOKEN,
      subscription: { jobIds: ["job_a", "job_b"] },
      onJob: (job) => jobs.push(job),
      onState: (state) => states.push(state),
      initialDelayMs: 10,
      maxDelayMs: 50,
    });
    await stream.opened();
    await until(() => live.received[0]?.length === 1, "the subscription");

    // Act: duplicates and a stale version arrive, as an at-least-once stream may send them
    for (const [id, version] of [
      ["job_a", 1],
      ["job_a", 2],
      ["job_a", 1],
      ["job_b", 1],
      ["job_a", 2],
    ] as const) {
      live.sendJob({ id, version, status: "running" });
    }
    // The pong comes after the job messages on the same connection: they have all been read.
    await stream.ping();

    // Assess
    expect(live.connections[0]?.request.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(live.received[0]).toEqual([
      { action: "subscribe", jobIds: ["job_a", "job_b"] },
      { action: "ping" },
    ]);
    expect(versions(jobs)).toEqual(["job_a@1", "job_a@2", "job_b@1"]);

    // Prepare: what GET /jobs?updatedSince= answers after the drop, over two pages
    live.listPages = [
      [{ id: "job_a", version: 3, status: "completed", payload: { big: true }, result: { ok: 1 } }],
      [
        { id: "job_b", version: 1, status: "running" },
        { id: "job_c", version: 1, status: "queued" },
      ],
    ];
    const droppedAt = Date.now();

    // Act
    live.dropAll();
    await until(() => versions(jobs).includes("job_a@3"), "the catch-up after the reconnect");

    // Assess: reconnected, subscribed again, caught up from before the drop, nothing twice,
    // nothing outside the subscription, and no payload or result (the stream's job shape)
    expect(live.connections).toHaveLength(2);
    await until(() => live.received[1]?.length === 1, "the subscription on the new connection");
    expect(live.received[1]).toEqual([{ action: "subscribe", jobIds: ["job_a", "job_b"] }]);
    await until(() => live.listRequests.length === 2, "both pages of the catch-up");
    const since = Date.parse(live.listRequests[0]?.searchParams.get("updatedSince") ?? "");
    expect(since).toBeLessThanOrEqual(droppedAt);
    expect(live.listRequests[1]?.searchParams.get("cursor")).toBe("1");
    expect(versions(jobs)).toEqual(["job_a@1", "job_a@2", "job_b@1", "job_a@3"]);
    expect(jobs.at(-1)).toEqual({ id: "job_a", version: 3, status: "completed" });
    expect(states).toEqual(expect.arrayContaining(["open", "reconnecting"]));

    // Act: widen the stream again, then stop
    stream.subscribe({ all: true });
    await until(() => live.received[1]?.length === 2, "the wider subscription");
    await stream.close();
    live.dropAll();
    await sleep(100);

    // Assess
    expect(live.received[1]?.[1]).toEqual({ action: "subscribe", all: true });
    expect(live.connections).toHaveLength(2);
    expect(states.at(-1)).toBe("closed");
  });

  it("can send the token as ?token= for clients that cannot set headers", async () => {
    server = await ProtocolServer.start({ tokenInQuery: true });
    const jobs: StreamJob[] = [];
    stream = new JobStream({
      url: `${server.url.replace("http", "ws")}/jobs/stream`,
      token: TOKEN,
      tokenInQuery: true,
      onJob: (job) => jobs.push(job),
    });
    await stream.opened();
    server.sendJob({ id: "job_q", version: 7, status: "queued" });
    await stream.ping();
    expect(versions(jobs)).toEqual(["job_q@7"]);
  });
});
