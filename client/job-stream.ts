import type { StreamClientMessage, StreamJob } from "../core/api-schemas";
import type { Job, JobqClient } from "./index";

/**
 * The job stream client (WebSocket /jobs/stream, API.md): connects with the token, subscribes to
 * some jobs or all, answers the server's job messages with each job at most once per version,
 * pings to notice a dead connection, and reconnects with backoff. The stream delivers at least
 * once and only while connected, so after a reconnect it catches up with GET /jobs?updatedSince=
 * (`resync`) and drops every version it has already seen, from either path.
 *
 * This module runs in browsers and in Node alike: it opens its sockets through a
 * `StreamSocketFactory`, by default the platform's own `WebSocket` (browsers, which cannot send an
 * Authorization header: use `tokenInQuery`). client/stream.ts is the Node entry, with `ws`.
 */

/** What the stream tells the socket's owner; the one shape both `ws` and a browser's WebSocket map to. */
export interface StreamSocketEvents {
  open(): void;
  message(text: string): void;
  close(): void;
  error(error: Error): void;
}

/** An open (or opening) socket, as the stream uses it. */
export interface StreamSocket {
  readonly isOpen: boolean;
  send(text: string): void;
  close(code: number): void;
  /** Drops a connection that stopped answering at once, without a closing handshake where possible. */
  terminate(): void;
}

/** Opens a socket to url; headers are empty when the token travels as `?token=`. */
export type StreamSocketFactory = (
  url: string,
  headers: Readonly<Record<string, string>>,
  events: StreamSocketEvents,
) => StreamSocket;

/** The part of the WHATWG WebSocket the stream uses (browsers; Node ≥ 22's global). */
interface PlatformWebSocket {
  readonly readyState: number;
  send(text: string): void;
  close(code?: number): void;
  addEventListener(type: string, listener: (event: { readonly data?: unknown }) => void): void;
}
type PlatformWebSocketConstructor = new (url: string) => PlatformWebSocket;

/** The platform's WebSocket (`globalThis.WebSocket`), which takes no headers: the token goes in the query. */
export const platformWebSocket: StreamSocketFactory = (url, headers, events) => {
  const Constructor = (globalThis as { WebSocket?: PlatformWebSocketConstructor }).WebSocket;
  if (!Constructor) throw new Error("this platform has no global WebSocket: pass a webSocket factory");
  if (Object.keys(headers).length > 0)
    throw new Error("a platform WebSocket cannot send headers: set tokenInQuery");
  const socket = new Constructor(url);
  socket.addEventListener("open", () => events.open());
  socket.addEventListener("message", (event) => {
    if (typeof event.data === "string") events.message(event.data);
  });
  socket.addEventListener("error", () =>
    events.error(new Error(`the stream at ${url.split("?")[0]} failed`)),
  );
  socket.addEventListener("close", () => events.close());
  const OPEN = 1;
  return {
    get isOpen() {
      return socket.readyState === OPEN;
    },
    send: (text) => socket.send(text),
    close: (code) => socket.close(code),
    terminate: () => socket.close(),
  };
};

export type { StreamJob };

export type Subscription = { readonly jobIds: readonly string[] } | { readonly all: true };

export type StreamState = "connecting" | "open" | "reconnecting" | "closed";

export interface JobStreamOptions {
  /** The stream's URL (`ws://` or `wss://`): GET /health's `streamUrl`. */
  readonly url: string;
  readonly token: string;
  /** Called once per job version, in the order versions arrive (older versions are dropped). */
  readonly onJob: (job: StreamJob) => void;
  /** @default every job the principal can see */
  readonly subscription?: Subscription;
  /** Jobs changed since an instant, to catch up after a reconnect; `resyncWith(client)` reads GET /jobs. */
  readonly resync?: (since: Date) => AsyncIterable<StreamJob | Job>;
  readonly onState?: (state: StreamState, error?: Error) => void;
  /** Send the token as `?token=` instead of the Authorization header (browsers cannot set it). @default false */
  readonly tokenInQuery?: boolean;
  /** How sockets are opened. @default platformWebSocket (client/stream.ts: `ws` in Node) */
  readonly webSocket?: StreamSocketFactory;
  /** First reconnect delay; doubled per failed try up to maxDelayMs, with jitter. @default 500 */
  readonly initialDelayMs?: number;
  /** @default 30000 */
  readonly maxDelayMs?: number;
  /** How often to ping while idle; a ping without a pong within this time drops the connection. @default 30000 */
  readonly pingIntervalMs?: number;
  /**
   * How far before the moment the connection dropped resync reads: covers messages in flight
   * when it dropped and clocks that differ. @default 10000
   */
  readonly resyncOverlapMs?: number;
}

/** resync through the HTTP client: every job changed since, across pages. */
export function resyncWith(client: JobqClient): (since: Date) => AsyncIterable<Job> {
  return (since) => client.jobs({ updatedSince: since });
}

/** Connects to the stream GET /health names, with resync through the same client. */
export async function openJobStream(
  client: JobqClient,
  options: Omit<JobStreamOptions, "url" | "resync"> & { readonly url?: string },
): Promise<JobStream> {
  const url = options.url ?? (await client.health()).streamUrl;
  if (!url) throw new Error("this jobq API names no stream (GET /health has no streamUrl)");
  return new JobStream({ ...options, url, resync: resyncWith(client) });
}

export class JobStream {
  private socket: StreamSocket | undefined;
  private socketOpen = false;
  private closeWaiters: (() => void)[] = [];
  private subscription: Subscription | undefined;
  private readonly seen = new Map<string, number>();
  private state: StreamState = "connecting";
  private failures = 0;
  private droppedAt: Date | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private pongWaiters: (() => void)[] = [];
  private openWaiters: (() => void)[] = [];

  constructor(private readonly options: JobStreamOptions) {
    this.subscription = options.subscription;
    this.connect();
  }

  /** Resolves once the stream is open (at once if it is). */
  opened(): Promise<void> {
    if (this.state === "open") return Promise.resolve();
    return new Promise((resolve) => this.openWaiters.push(resolve));
  }

  /** Narrows (or, with `{all: true}`, widens) the stream; kept for reconnects. */
  subscribe(subscription: Subscription): void {
    this.subscription = subscription;
    this.sendSubscription();
  }

  /** Resolves on the server's pong; rejects after timeoutMs or when not open. */
  ping(timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.send({ action: "ping" })) return reject(new Error("the stream is not open"));
      const timer = setTimeout(() => {
        this.pongWaiters = this.pongWaiters.filter((w) => w !== waiter);
        reject(new Error(`no pong within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = () => {
        clearTimeout(timer);
        resolve();
      };
      this.pongWaiters.push(waiter);
    });
  }

  /** Stops for good: no reconnect. */
  close(): Promise<void> {
    this.setState("closed");
    clearTimeout(this.reconnectTimer);
    clearInterval(this.pingTimer);
    const socket = this.socket;
    if (!socket || !this.socketOpen) {
      socket?.terminate();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.closeWaiters.push(resolve);
      socket.close(1000);
    });
  }

  /** Hands a job on if this version is new; the one place both the stream and resync go through. */
  private deliver(job: StreamJob | Job): void {
    const last = this.seen.get(job.id);
    if (last !== undefined && job.version <= last) return;
    this.seen.set(job.id, job.version);
    const { payload: _payload, result: _result, ...rest } = job as Job;
    this.options.onJob(rest);
  }

  private connect(): void {
    const headers: Record<string, string> = {};
    let url = this.options.url;
    if (this.options.tokenInQuery) {
      const target = new URL(url);
      target.searchParams.set("token", this.options.token);
      url = target.toString();
    } else headers.authorization = `Bearer ${this.options.token}`;
    // The events name the socket they came from: a late event of a replaced socket is ignored.
    let socket: StreamSocket | undefined;
    const open = this.options.webSocket ?? platformWebSocket;
    try {
      socket = open(url, headers, {
        open: () => socket && this.onOpen(socket),
        message: (text) => socket === this.socket && this.onMessage(text),
        // A socket dropped by close() may still report its abort: nobody is listening any more.
        error: (error) => this.state !== "closed" && this.options.onState?.(this.state, error),
        close: () => socket && this.onClose(socket),
      });
    } catch (error) {
      this.options.onState?.("closed", error as Error);
      this.setState("closed");
      return;
    }
    this.socket = socket;
    this.socketOpen = false;
  }

  private onOpen(socket: StreamSocket): void {
    if (socket !== this.socket) return;
    this.socketOpen = true;
    if (this.state === "closed") return;
    this.failures = 0;
    this.setState("open");
    this.sendSubscription();
    this.startPinging();
    for (const waiter of this.openWaiters.splice(0)) waiter();
    const droppedAt = this.droppedAt;
    this.droppedAt = undefined;
    if (droppedAt && this.options.resync) void this.catchUp(droppedAt);
  }

  private async catchUp(droppedAt: Date): Promise<void> {
    const since = new Date(droppedAt.getTime() - (this.options.resyncOverlapMs ?? 10_000));
    try {
      for await (const job of this.options.resync?.(since) ?? []) {
        if (this.state === "closed") return;
        if (this.wanted(job.id)) this.deliver(job);
      }
    } catch (error) {
      // The stream itself is fine; what was missed is retried at the next reconnect at the latest.
      this.options.onState?.(this.state, error as Error);
    }
  }

  /** Resync reads every job the principal can see; a narrowed stream hands on only its own. */
  private wanted(id: string): boolean {
    const subscription = this.subscription;
    return !subscription || "all" in subscription || subscription.jobIds.includes(id);
  }

  private onMessage(text: string): void {
    let message: { type?: unknown; job?: unknown };
    try {
      message = JSON.parse(text) as typeof message;
    } catch {
      return;
    }
    if (message.type === "pong") {
      for (const waiter of this.pongWaiters.splice(0)) waiter();
      return;
    }
    if (message.type === "job" && isJob(message.job)) this.deliver(message.job);
  }

  private onClose(socket: StreamSocket): void {
    if (socket !== this.socket) return;
    this.socketOpen = false;
    for (const waiter of this.closeWaiters.splice(0)) waiter();
    clearInterval(this.pingTimer);
    if (this.state === "closed") return;
    // Only the first drop of a run of failed tries counts: resync reads from when jobs were last seen.
    this.droppedAt ??= new Date();
    this.setState("reconnecting");
    const initial = this.options.initialDelayMs ?? 500;
    const max = this.options.maxDelayMs ?? 30_000;
    const delay = Math.min(max, initial * 2 ** this.failures);
    this.failures++;
    // Jitter: many clients dropped at once must not come back at once.
    this.reconnectTimer = setTimeout(() => this.connect(), delay * (0.5 + Math.random() / 2));
  }

  private startPinging(): void {
    clearInterval(this.pingTimer);
    const interval = this.options.pingIntervalMs ?? 30_000;
    this.pingTimer = setInterval(() => {
      this.ping(interval).catch(() => {
        // A connection that does not answer is dead even if TCP has not noticed: start over.
        if (this.state === "open") this.socket?.terminate();
      });
    }, interval);
    this.pingTimer.unref?.();
  }

  private sendSubscription(): void {
    const subscription = this.subscription;
    if (!subscription) return;
    this.send(
      "all" in subscription
        ? { action: "subscribe", all: true }
        : { action: "subscribe", jobIds: [...subscription.jobIds] },
    );
  }

  private send(message: StreamClientMessage): boolean {
    if (this.state !== "open" || !this.socket?.isOpen) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  private setState(state: StreamState): void {
    if (this.state === state) return;
    this.state = state;
    this.options.onState?.(state);
  }
}

function isJob(value: unknown): value is StreamJob {
  const job = value as { id?: unknown; version?: unknown } | null;
  return (
    typeof job === "object" && job !== null && typeof job.id === "string" && typeof job.version === "number"
  );
}
