import { stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { watchJobs } from "../../cli/watch";
import { JobqClient } from "../../client";
import { ok, useCli } from "../support/cli";
import { useLocalStack } from "../support/e2e";

/**
 * The `jobq` CLI run as a user runs it: a child process (`node cli/bin.mjs`, the package's bin)
 * against the whole local stack, connected through JOBQ_URL / JOBQ_TOKEN or a saved profile,
 * with HOME in a temporary directory. Output is piped, so it is the plain-line form. Every wait
 * is the CLI's own (watch, logs --follow) under the child's deadline; nothing asserts on timing.
 */

const TOKEN = "e2e-cli-token";
const CHILD_DEADLINE_MS = 120_000;

const e2e = useLocalStack(TOKEN, {
  tablePrefix: "jobq-e2e-cli-",
  tokens: new Map([[TOKEN, { principal: `e2e-cli-${Date.now()}`, role: "admin" }]]),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
});

const cli = useCli(e2e, { token: TOKEN, homePrefix: "jobq-cli-e2e-", deadlineMs: CHILD_DEADLINE_MS });
const jobq = cli.jobq;

describe("the jobq CLI against the local stack", () => {
  it("submits a job and watches it to completed, exit 0", async () => {
    e2e.showWorkersOnFailure();
    const submitted = ok(await jobq(["submit", "echo", "--payload", '{"hello":"cli"}']));
    const id = submitted.stdout.trim();
    expect(id).toMatch(/^job_/);

    const watched = ok(await jobq(["watch", id]));
    const lines = watched.stdout.trim().split("\n");
    expect(lines.at(-2)).toMatch(new RegExp(`^${id} echo +completed +attempt 1/`));
    expect(lines.at(-1)).toMatch(/^\[#+\] 1\/1 done · 1 completed$/);
    // Piped: plain lines, no colour escapes
    expect(watched.stdout).not.toContain("\u001b[");
    expect((await e2e.getJob(id)).status).toBe("completed");
  }, 150_000);

  it("exits 1 when a watched job fails, and 0 when it escalated to a job that completed", async () => {
    e2e.showWorkersOnFailure();
    const failed = await jobq(["submit", "fail", "--max-attempts", "1", "--watch"]);
    expect(failed.code, failed.stderr).toBe(1);
    expect(failed.stdout).toMatch(/ failed +attempt 1\/1/);

    const file = join(cli.home, "escalating.json");
    await writeFile(
      file,
      JSON.stringify({
        type: "fail",
        retry: { maxAttempts: 1 },
        onFailure: { escalateTo: { type: "echo" } },
      }),
    );
    const escalated = await jobq(["submit", "-f", file, "--watch"]);
    expect(escalated.code, escalated.stderr).toBe(0);
    expect(escalated.stdout).toMatch(/ escalated .*→ job_/);
    expect(escalated.stdout).toMatch(/2\/2 done · 1 completed · 1 escalated/);
  }, 150_000);

  it("submits a DAG from a file and watches all its jobs", async () => {
    e2e.showWorkersOnFailure();
    const dag = join(cli.home, "dag.json");
    await writeFile(
      dag,
      JSON.stringify({
        jobs: [
          { ref: "a", type: "echo" },
          { ref: "b", type: "echo", dependsOn: ["a"] },
          { ref: "c", type: "log", payload: { lines: 2 }, dependsOn: ["a"] },
        ],
      }),
    );
    const submitted = ok(await jobq(["--json", "submit", "-f", dag]));
    const answer = JSON.parse(submitted.stdout) as { refs: Record<string, string> };
    expect(Object.keys(answer.refs).sort()).toEqual(["a", "b", "c"]);
    const answerFile = join(cli.home, "dag-answer.json");
    await writeFile(answerFile, submitted.stdout);

    const watched = ok(await jobq(["watch", "-f", answerFile]));
    expect(watched.stdout.trim().split("\n").at(-1)).toMatch(/3\/3 done · 3 completed$/);
  }, 150_000);

  it("redraws a block with colour on a TTY, ending with the summary bar", async () => {
    e2e.showWorkersOnFailure();
    const job = await e2e.submit({ type: "echo" });
    let text = "";
    const screen = { isTTY: true, columns: 120, rows: 20, write: (chunk: string) => (text += chunk) };
    const code = await watchJobs({
      // Not e2e.client: its contract recorder would flag GET /stats, which has no OpenAPI entry yet.
      client: new JobqClient({ url: e2e.stack.url, token: TOKEN }),
      token: TOKEN,
      ids: [job.id],
      out: screen,
      err: screen,
      tty: true,
      color: true,
      json: false,
    });
    expect(code).toBe(0);
    // Each redraw moves the cursor up over the previous block and clears below it
    expect(text).toContain("\u001b[2A\u001b[J");
    expect(text).toContain("\u001b[32mcompleted\u001b[0m");
    expect(text.trimEnd().split("\n").at(-1)).toMatch(/1\/1 done/);
  }, 150_000);

  it("follows a log job's lines until it ends", async () => {
    e2e.showWorkersOnFailure();
    const id = ok(await jobq(["submit", "log", "--payload", '{"lines": 5}'])).stdout.trim();
    const followed = ok(await jobq(["logs", id, "--follow"]));
    for (let i = 1; i <= 5; i++) expect(followed.stdout).toContain(`log line ${i} of 5`);
    expect(followed.stdout).toContain("→ completed");
    // Each line once, though the log is read again at every poll
    expect(followed.stdout.split("log line 3 of 5").length).toBe(2);
  }, 150_000);

  it("prints JSON that parses with --json for get, list and stats", async () => {
    const id = ok(await jobq(["submit", "echo"])).stdout.trim();
    const job = JSON.parse(ok(await jobq(["get", id, "--json"])).stdout) as { id: string };
    expect(job.id).toBe(id);
    const page = JSON.parse(ok(await jobq(["--json", "list", "--type", "echo", "--limit", "5"])).stdout) as {
      items: { id: string }[];
    };
    expect(page.items.map((j) => j.id)).toContain(id);
    const stats = JSON.parse(ok(await jobq(["stats", "--json"])).stdout) as { counts: unknown };
    expect(stats.counts).toBeDefined();
    // The human forms run too
    expect(ok(await jobq(["list", "--limit", "3"])).stdout).toMatch(/^ID +TYPE +STATUS/);
    expect(ok(await jobq(["pools"])).stdout).toContain("cpu [");
    expect(ok(await jobq(["queue"])).stdout).toContain("POS");
  }, 60_000);

  it("exits 3 with the code when the API refuses, 4 when unreachable, 2 on a usage error", async () => {
    const refused = await jobq(["get", "job_01HZZZZZZZZZZZZZZZZZZZZZZZ"]);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/^error: not_found: /);

    const unreachable = await jobq(["list"], { JOBQ_URL: "http://127.0.0.1:9" });
    expect(unreachable.code).toBe(4);
    expect(unreachable.stderr).toContain("unreachable");

    const usage = await jobq(["submit", "echo", "--max-attempts", "many"]);
    expect(usage.code).toBe(2);
  }, 60_000);

  it("saves a profile with login (mode 0600) and uses it with --profile", async () => {
    const login = await jobq(["login", "--url", e2e.stack.url, "--token", TOKEN, "--profile", "local"], {
      JOBQ_URL: "",
      JOBQ_TOKEN: "",
    });
    expect(login.code, login.stderr).toBe(0);
    const config = join(cli.home, ".config", "jobq", "config.json");
    expect((await stat(config)).mode & 0o777).toBe(0o600);

    const id = ok(await jobq(["submit", "echo"])).stdout.trim();
    // The environment points nowhere: the profile is what connects
    const got = await jobq(["--profile", "local", "get", id, "--json"], { JOBQ_URL: "http://127.0.0.1:9" });
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout).id).toBe(id);

    const badToken = await jobq(["login", "--url", e2e.stack.url, "--token", "wrong"], {
      JOBQ_URL: "",
      JOBQ_TOKEN: "",
    });
    expect(badToken.code).toBe(3);
    expect(badToken.stderr).toContain("unauthorized");
  }, 60_000);
});
