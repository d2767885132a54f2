import WebSocket from "ws";
import type { StreamClientMessage, StreamJob } from "../core/api-schemas";
import type { Job, JobqClient } from "./index";

/**
 * The job stream client (WebSocket /jobs/stream, API.md): connects with the token, subscribes to
 * some jobs or all, answers the server's job messages with each job at most once per version,
 * pings to notice a dead connection, and reconnects with backoff. The stream delivers at least
 * once and only while connected, so after a reconnect it catches up with GET /jobs?updatedSince=
 * (`resync`) and drops every version it has already seen, from either path.
 */

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
  private socket: WebSocket | undefined;
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
    if (!socket || socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      socket.once("close", () => resolve());
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
    const socket = new WebSocket(url, { headers });
    this.socket = socket;
    socket.on("open", () => this.onOpen(socket));
    socket.on("message", (data) => this.onMessage(data.toString()));
    socket.on("error", (error) => this.options.onState?.(this.state, error));
    socket.on("close", () => this.onClose(socket));
  }

  private onOpen(socket: WebSocket): void {
    if (socket !== this.socket || this.state === "closed") return;
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

  private onClose(socket: WebSocket): void {
    if (socket !== this.socket) return;
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
    if (this.state !== "open" || this.socket?.readyState !== WebSocket.OPEN) return false;
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
