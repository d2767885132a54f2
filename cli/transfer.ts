import { JobqApiError, type JobqClient } from "../client";
import { importRank, RECORD_KINDS, type RecordKind } from "../core/export";
import type { Output } from "./watch";

/**
 * `jobq export` and `jobq import` (docs/cli.md, docs/operations.md): the paging and chunking
 * around GET /admin/export and POST /admin/import.
 */

/** Follows the export's cursors to the end; answers the lines written (cursor lines are not). */
export async function exportState(
  client: JobqClient,
  options: {
    readonly cursor: string | undefined;
    readonly limit: number | undefined;
    readonly write: (text: string) => Promise<void>;
    readonly err: Output;
  },
): Promise<number> {
  let cursor = options.cursor;
  let written = 0;
  do {
    let page: { text: string; nextCursor: string | null };
    try {
      page = await client.exportPage({ cursor, limit: options.limit });
    } catch (error) {
      // Everything before this page is written: say how to pick up from here.
      if (cursor) options.err.write(`export interrupted; resume with: jobq export --cursor ${cursor}\n`);
      throw error;
    }
    const lines = page.text.split("\n").filter((line) => line !== "" && !line.startsWith('{"kind":"cursor"'));
    if (lines.length > 0) await options.write(`${lines.join("\n")}\n`);
    written += lines.length;
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return written;
}

/** Lines per request: below the server's 2,000, so a request ends well inside API Gateway's 29 s. */
export const IMPORT_CHUNK_LINES = 500;
/** Bytes per request: below API Gateway's 10 MB. */
export const IMPORT_CHUNK_BYTES = 4 * 1024 * 1024;

type Summary = Awaited<ReturnType<JobqClient["importLines"]>>;

/**
 * Sends a file's lines in chunks, jobs after everything else (core/export.ts#importRank: a job
 * admitted at once must find its edges), and adds up the counts. Sending the file again is safe.
 */
export async function importState(client: JobqClient, text: string, file: string): Promise<Summary> {
  const lines = text
    .split("\n")
    .map((line, index) => ({ line, number: index + 1 }))
    .filter(({ line }) => line.trim() !== "");
  const rank = (line: string): number => {
    try {
      return importRank((JSON.parse(line) as { kind: Parameters<typeof importRank>[0] }).kind);
    } catch {
      return 0; // the server names the bad line
    }
  };
  const ordered = lines
    .map((entry) => ({ ...entry, rank: rank(entry.line) }))
    .sort((a, b) => a.rank - b.rank || a.number - b.number);
  let total: Summary | undefined;
  for (let start = 0; start < ordered.length; ) {
    let end = start;
    let bytes = 0;
    while (end < ordered.length && end - start < IMPORT_CHUNK_LINES) {
      const size = Buffer.byteLength(ordered[end]?.line ?? "", "utf8") + 1;
      if (end > start && bytes + size > IMPORT_CHUNK_BYTES) break;
      bytes += size;
      end++;
    }
    const chunk = ordered.slice(start, end);
    let summary: Summary;
    try {
      summary = await client.importLines(`${chunk.map((c) => c.line).join("\n")}\n`);
    } catch (error) {
      // The server numbers the lines of the chunk it got; name the file's lines instead.
      if (error instanceof JobqApiError && Array.isArray(error.details)) {
        const details = (error.details as { path?: unknown; message?: unknown }[]).map((d) => {
          const n = typeof d.path === "string" ? /^line (\d+)$/.exec(d.path)?.[1] : undefined;
          const fileLine = n === undefined ? undefined : chunk[Number(n) - 1]?.number;
          return fileLine === undefined ? d : { ...d, path: `${file} line ${fileLine}` };
        });
        throw new JobqApiError(error.status, error.code, error.message, details, error.retryAfterSeconds);
      }
      throw error;
    }
    total = total ? add(total, summary) : summary;
    start = end;
  }
  return total ?? emptySummary();
}

function add(a: Summary, b: Summary): Summary {
  const sum = (x: Record<string, number>, y: Record<string, number>) =>
    Object.fromEntries(Object.keys(x).map((k) => [k, (x[k] ?? 0) + (y[k] ?? 0)]));
  return {
    imported: sum(a.imported, b.imported) as Summary["imported"],
    skipped: sum(a.skipped, b.skipped) as Summary["skipped"],
    requeued: a.requeued + b.requeued,
  };
}

function emptySummary(): Summary {
  const zero = Object.fromEntries(RECORD_KINDS.map((kind) => [kind, 0])) as Record<RecordKind, number>;
  return { imported: { ...zero }, skipped: { ...zero }, requeued: 0 };
}
