import { monotonicFactory } from "ulid";
import { LOG_LEVELS, type LogLevel } from "../core/job";
import type { JobRepository } from "../store/job-repository";
import { jobPk, logSk } from "../store/keys";

/**
 * The lines a task writes, buffered and stored in batches (BatchWriteItem of `LOG#<ulid>` items
 * under the job's partition): a chatty task costs one request per 25 lines instead of one per
 * line, and never waits for DynamoDB. Flushed every second, before a success is stored and when
 * the attempt ends.
 */

/** A longer line is cut: items stay far below DynamoDB's 400 KB and a page of logs stays readable. */
export const MAX_LOG_MESSAGE_CHARS = 16 * 1024;
/** Lines kept while DynamoDB is slow or down; beyond this they are counted and dropped. */
const MAX_BUFFERED_LINES = 10_000;
/** A burst this large is written at once instead of waiting for the next tick. */
const EAGER_FLUSH_LINES = 250;
const LEVELS: ReadonlySet<string> = new Set(LOG_LEVELS);

export class AttemptLog {
  private buffer: Record<string, unknown>[] = [];
  private dropped = 0;
  private closed = false;
  private writing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private readonly nextId = monotonicFactory();

  constructor(
    private readonly repo: JobRepository,
    private readonly jobId: string,
    private readonly attempt: number,
    private readonly clock: () => Date,
    private readonly onError: (error: unknown) => void,
    flushMs = 1000,
  ) {
    this.timer = setInterval(() => void this.flush(), flushMs);
    this.timer.unref();
  }

  add(level: LogLevel, message: string): void {
    if (this.closed) return;
    if (this.buffer.length >= MAX_BUFFERED_LINES) {
      this.dropped++;
      return;
    }
    this.buffer.push(this.line(level, message));
    if (this.buffer.length >= EAGER_FLUSH_LINES) void this.flush();
  }

  /** Writes what is buffered; writes never overlap, so lines land in order. */
  flush(): Promise<void> {
    this.writing = this.writing.then(() => this.write());
    return this.writing;
  }

  /** The last flush; later lines (a task that ignored its abort) are ignored. */
  async close(): Promise<void> {
    if (this.dropped > 0) {
      const dropped = this.dropped;
      this.dropped = 0;
      this.buffer.push(
        this.line(
          "warn",
          `${dropped} log lines were dropped: the task wrote faster than they could be stored`,
        ),
      );
    }
    this.closed = true;
    clearInterval(this.timer);
    await this.flush();
  }

  private line(level: LogLevel, message: string): Record<string, unknown> {
    const now = this.clock();
    const text = typeof message === "string" ? message : String(message);
    return {
      pk: jobPk(this.jobId),
      sk: logSk(this.nextId(now.getTime())),
      entity: "log",
      timestamp: now.toISOString(),
      level: LEVELS.has(level) ? level : "info",
      message: text.length > MAX_LOG_MESSAGE_CHARS ? `${text.slice(0, MAX_LOG_MESSAGE_CHARS)}… (cut)` : text,
      attempt: this.attempt,
      // Written while the job runs: retention plus its margin, so no write at the job's end.
      expiresAt: this.repo.historyExpiresAt(now.toISOString(), false),
    };
  }

  private async write(): Promise<void> {
    if (this.buffer.length === 0) return;
    const lines = this.buffer;
    this.buffer = [];
    try {
      await this.repo.batchPut(lines);
    } catch (error) {
      this.onError(error);
      // Kept for the next tick while there is room; after close there is no next tick.
      if (!this.closed) this.buffer = [...lines, ...this.buffer].slice(0, MAX_BUFFERED_LINES);
    }
  }
}
