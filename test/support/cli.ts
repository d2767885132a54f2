import { execFile } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, expect } from "vitest";
import type { E2eStack } from "./e2e";

/**
 * The `jobq` CLI run as a user runs it, for an e2e test file: a child process (`node cli/bin.mjs`,
 * the package's bin) against the file's local stack, connected through JOBQ_URL / JOBQ_TOKEN, with
 * HOME in a temporary directory of the file's own (so saved profiles never touch the real one).
 * Output is piped, so it is the plain-line form.
 */

export interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Cli {
  /** The child's HOME (set once the file's beforeAll has run). */
  readonly home: string;
  /** Runs `jobq <args>`; `env` adds to (or overrides) the child's environment. */
  jobq(args: readonly string[], env?: Record<string, string>): Promise<Ran>;
}

/** Makes the HOME directory before the file's tests; each child is killed after `deadlineMs`. */
export function useCli(
  e2e: E2eStack,
  options: { readonly token: string; readonly homePrefix: string; readonly deadlineMs: number },
): Cli {
  let home = "";
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), options.homePrefix));
  });
  return {
    get home() {
      return home;
    },
    jobq(args, env = {}) {
      return new Promise((resolve) => {
        execFile(
          process.execPath,
          ["cli/bin.mjs", ...args],
          {
            cwd: process.cwd(),
            timeout: options.deadlineMs,
            env: {
              PATH: process.env.PATH ?? "",
              HOME: home,
              JOBQ_URL: e2e.stack.url,
              JOBQ_TOKEN: options.token,
              ...env,
            },
          },
          (error, stdout, stderr) => {
            const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
            resolve({ code, stdout, stderr });
          },
        );
      });
    },
  };
}

/** Fails the test, with the child's stderr, unless the CLI exited 0. */
export function ok(ran: Ran): Ran {
  expect(ran, `jobq failed:\n${ran.stderr}`).toMatchObject({ code: 0 });
  return ran;
}
