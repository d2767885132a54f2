import { JobqApiError, type JobqClient, JobqUnreachableError, type LogLine } from "../client";
import { type JobStream, openJobStream, type StreamJob } from "../client/stream";
import { NON_TERMINAL_STATUSES } from "../core/job-statuses";
import { isTerminal, logLine, progressLine, summaryBar, type WatchedJob } from "./format";

/**
 * `jobq watch` and `jobq logs --follow`: the two commands that wait for jobs to end.
 */

export interface Output {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
  readonly rows?: number;
}

export interface WatchOptions {
  readonly client: JobqClient;
  readonly token: string;
  /** JOBQ_STREAM_URL; else GET /health's streamUrl. */
  readonly streamUrl?: string;
  /** The jobs to watch; undefined: every non-terminal job the caller can see, and new ones. */
  readonly ids?: readonly string[];
  readonly out: Output;
  readonly err: Output;
  /** A redrawn block (TTY) or one line per change (piped). */
  readonly tty: boolean;
  readonly color: boolean;
  /** One JSON object per job change (NDJSON) instead of lines. */
  readonly json: boolean;
  /**
   * How often jobs not yet terminal are read over HTTP too. The stream is the live path; this is
   * the safety net for a stream that cannot be reached at all (a proxy that drops WebSockets).
   * @default 5000
   */
  readonly pollMs?: number;
}

type Tracked = WatchedJob & { readonly version: number };

/**
 * How a set of ended jobs ends the command: 1 if any failed or was cancelled, else 0; an
 * escalated job counts by how its escalation job ended (which is in the set, as watch follows it).
 */
export function watchExitCode(jobs: readonly Pick<WatchedJob, "id" | "status" | "escalatedTo">[]): 0 | 1 {
  const byId = new Map(jobs.map((job) => [job.id, job]));
  for (const job of jobs) {
    if (job.status === "failed" || job.status === "cancelled") return 1;
    if (job.status === "escalated" && (!job.escalatedTo || !byId.has(job.escalatedTo))) return 1;
  }
  return 0;
}

/** Watches jobs until each has ended (following escalations); resolves with the exit code. */
export async function watchJobs(options: WatchOptions): Promise<0 | 1> {
  const { client } = options;
  const jobs = new Map<string, Tracked>();
  const wanted = new Set(options.ids ?? []);
  const all = options.ids === undefined;
  const typicalRunMs = await typicalRunTimes(client);
  let drawn = 0;
  let finish: (() => void) | undefined;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let stream: JobStream | undefined;

  const done = (): boolean =>
    wanted.size > 0 &&
    [...wanted].every((id) => {
      const job = jobs.get(id);
      return (
        job !== undefined &&
        isTerminal(job.status) &&
        !(job.status === "escalated" && job.escalatedTo && !wanted.has(job.escalatedTo))
      );
    });

  const render = (changed: Tracked | undefined): void => {
    const now = new Date();
    if (options.json) {
      if (changed) options.out.write(`${JSON.stringify(changed)}\n`);
      return;
    }
    if (!options.tty) {
      if (changed)
        options.out.write(
          `${progressLine(changed, now, { color: false, typicalRunMs: typicalRunMs.get(changed.type) })}\n`,
        );
      return;
    }
    const width = (options.out.columns || 100) - 1;
    const room = Math.max(1, (options.out.rows || 24) - 2);
    const shown = [...jobs.values()];
    // Jobs still running first when they do not all fit: they are what is being watched.
    const ordered =
      shown.length > room
        ? [...shown.filter((j) => !isTerminal(j.status)), ...shown.filter((j) => isTerminal(j.status))]
        : shown;
    const lines = ordered
      .slice(0, room)
      .map((job) =>
        progressLine(job, now, { color: options.color, typicalRunMs: typicalRunMs.get(job.type), width }),
      );
    if (ordered.length > room) lines.push(`… ${ordered.length - room} more`);
    lines.push(summaryBar(shown, { color: options.color }));
    const clear = drawn > 0 ? `\u001b[${drawn}A\u001b[J` : "";
    options.out.write(`${clear}${lines.join("\n")}\n`);
    drawn = lines.length;
  };

  const follow = (id: string): void => {
    if (wanted.has(id)) return;
    wanted.add(id);
    if (!all) stream?.subscribe({ jobIds: [...wanted] });
    void refresh(id);
  };

  const update = (job: Tracked): void => {
    if (!wanted.has(job.id)) {
      // Watching all: a job that shows up unfinished is one more to wait for.
      if (!all || isTerminal(job.status)) return;
      wanted.add(job.id);
    }
    const known = jobs.get(job.id);
    if (known && known.version >= job.version) return;
    jobs.set(job.id, job);
    if (job.status === "escalated" && job.escalatedTo) follow(job.escalatedTo);
    render(job);
    if (done()) finish?.();
  };

  const refresh = async (id: string): Promise<void> => {
    try {
      update((await client.getJob(id)) as Tracked);
    } catch (error) {
      options.err.write(`warning: could not read ${id}: ${(error as Error).message}\n`);
    }
  };

  try {
    stream = await openJobStream(client, {
      url: options.streamUrl,
      token: options.token,
      subscription: all ? { all: true } : { jobIds: [...wanted] },
      onJob: (job: StreamJob) => update(job as Tracked),
    });
  } catch (error) {
    // No answer from the API at all is the caller's exit 4; an API that names no stream
    // (GET /health without streamUrl) is still watched, over HTTP alone.
    if (error instanceof JobqUnreachableError || error instanceof JobqApiError) throw error;
    options.err.write(`warning: ${(error as Error).message}; reading jobs over HTTP only\n`);
  }
  try {
    const opened =
      stream === undefined ||
      (await Promise.race([
        stream.opened().then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 10_000).unref()),
      ]));
    if (!opened)
      options.err.write("warning: the job stream is not open yet; reading jobs over HTTP meanwhile\n");
    // Read after subscribing, so a change between the read and the subscription is not missed;
    // a version already seen is dropped either way. An unknown id fails the command here.
    if (all) {
      for await (const job of client.jobs({ status: NON_TERMINAL_STATUSES })) update(job as Tracked);
      if (wanted.size === 0) {
        if (!options.json) options.out.write("no unfinished jobs to watch\n");
        return 0;
      }
    } else {
      for (const id of [...wanted]) update((await client.getJob(id)) as Tracked);
    }
    const poll = setInterval(() => {
      for (const job of jobs.values()) if (!isTerminal(job.status)) void refresh(job.id);
    }, options.pollMs ?? 5000);
    const tick = options.tty && !options.json ? setInterval(() => render(undefined), 1000) : undefined;
    if (!done()) await finished;
    clearInterval(poll);
    clearInterval(tick);
    if (options.tty && !options.json) render(undefined);
    else if (!options.json) options.out.write(`${summaryBar([...jobs.values()], { color: false })}\n`);
    return watchExitCode([...jobs.values()]);
  } finally {
    await stream?.close();
  }
}

/** The p50 run time per type over the last hour (admins see byType), for ETAs; none if unknown. */
async function typicalRunTimes(client: JobqClient): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  try {
    const stats = await client.stats("1h");
    for (const [type, figures] of Object.entries(stats.byType ?? {}))
      if (figures.runMs.p50 !== null) times.set(type, figures.runMs.p50);
  } catch {
    // ETAs are a nicety: without stats the view shows `?`.
  }
  return times;
}

export interface FollowOptions {
  readonly client: JobqClient;
  readonly id: string;
  readonly out: Output;
  readonly color: boolean;
  readonly json: boolean;
  /** @default 1000 */
  readonly pollMs?: number;
}

/**
 * `logs --follow`: prints the job's log lines as they appear until the job has ended and its log
 * is read out. GET /logs answers no cursor once a log is read out (there is no "tail" position),
 * so each poll reads the log again from the start and prints only lines not printed before; the
 * stream carries no log lines.
 */
export async function followLogs(options: FollowOptions): Promise<void> {
  const { client, id } = options;
  const printed = new Map<string, number>();
  const readAll = async (): Promise<void> => {
    const seen = new Map<string, number>();
    let cursor: string | undefined;
    do {
      const page = await client.logs(id, { cursor, limit: 200 });
      for (const line of page.items) {
        const key = lineKey(line);
        const count = (seen.get(key) ?? 0) + 1;
        seen.set(key, count);
        // Identical lines are told apart by how many of them came before.
        if (count > (printed.get(key) ?? 0)) {
          printed.set(key, count);
          options.out.write(`${options.json ? JSON.stringify(line) : logLine(line, options.color)}\n`);
        }
      }
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
  };
  for (;;) {
    // Read the status first: lines written before the job ended are then all in the read after it.
    const ended = isTerminal((await client.getJob(id)).status);
    await readAll();
    if (ended) return;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 1000));
  }
}

function lineKey(line: LogLine): string {
  return `${line.timestamp}\u0000${line.level}\u0000${line.attempt}\u0000${line.message}`;
}
