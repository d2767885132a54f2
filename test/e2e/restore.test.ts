import { execFile } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, inject, it, onTestFailed, vi } from "vitest";
import type { JobStatus } from "../../core/job";
import { type LocalStack, startLocalStack } from "../../local/stack";
import { request } from "../support/api";
import type { Ran } from "../support/cli";

/**
 * The restore drill (docs/operations.md, "Export and restore"): a stack with a mix of jobs — one
 * completed, one failed, a DAG whose parent is running and whose child waits on it, one queued
 * for capacity, one paused — and a schedule, a policy and a quota is exported with `jobq export`;
 * a fresh stack (its own tables, as a fresh JOBQ_DATA_DIR) gets it with `jobq import`. Every job
 * is there with its history, and the unfinished ones run to their end there.
 */

const USER_TOKEN = "restore-user-token";
const ADMIN_TOKEN = "restore-admin-token";
const PRINCIPAL = `restore-${Date.now()}`;
const DEADLINE_MS = 150_000;
const TERMINAL: readonly JobStatus[] = ["completed", "failed", "cancelled", "escalated"];

interface Job {
  readonly id: string;
  readonly status: JobStatus;
  readonly statusReason: string;
  readonly result: unknown;
  readonly error: { type: string } | null;
  readonly attempts: number;
}
interface Transition {
  readonly from: JobStatus | null;
  readonly to: JobStatus;
  readonly reason: string;
}

const stacks: LocalStack[] = [];
const workerLines: string[] = [];

afterAll(async () => {
  for (const stack of stacks) await stack.stop();
}, 60_000);

async function start(label: string): Promise<LocalStack> {
  // Handler modules read their configuration once: a new stack's are fresh imports, as in a new process.
  vi.resetModules();
  const stack = await startLocalStack({
    dynamoEndpoint: inject("dynamoEndpoint"),
    // Tables of their own: the second stack starts from nothing, as on a fresh data dir.
    tablePrefix: `jobq-restore-${label}-${Date.now()}-`,
    tokens: new Map([
      [USER_TOKEN, { principal: PRINCIPAL, role: "user" }],
      [ADMIN_TOKEN, { principal: "restore-ops", role: "admin" }],
    ]),
    // One small node: the parent's run keeps the queued job waiting for capacity.
    pools: [{ name: "cpu", labels: {}, nodes: 1, node: { cpu: 1, memoryMb: 1024, gpu: 0 } }],
    workerShutdownGraceSeconds: 1,
    workerPollWaitSeconds: 2,
    workerOutput: (line) => {
      workerLines.push(line);
      if (workerLines.length > 400) workerLines.shift();
    },
  });
  stacks.push(stack);
  return stack;
}

async function call<T>(stack: LocalStack, method: string, path: string, body?: unknown, token = USER_TOKEN) {
  return request<T>(stack.url, method, path, { token, body });
}

async function ok<T>(stack: LocalStack, method: string, path: string, body?: unknown, token = USER_TOKEN) {
  const response = await call<T>(stack, method, path, body, token);
  expect(response.status, `${method} ${path}: ${JSON.stringify(response.json)}`).toBeLessThan(300);
  return response.json;
}

async function until(stack: LocalStack, ids: readonly string[], done: (job: Job) => boolean): Promise<Job[]> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const jobs = await Promise.all(ids.map((id) => ok<Job>(stack, "GET", `/jobs/${id}`)));
    if (jobs.every(done)) return jobs;
    if (Date.now() > deadline) {
      throw new Error(
        `after ${DEADLINE_MS} ms: ${jobs.map((j) => `${j.id} ${j.status} (${j.statusReason})`).join("; ")}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** `jobq <args>` as an admin runs it against `stack`: the package's bin in a child process. */
function jobq(stack: LocalStack, home: string, args: readonly string[]): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["cli/bin.mjs", ...args],
      {
        cwd: process.cwd(),
        timeout: 120_000,
        env: { PATH: process.env.PATH ?? "", HOME: home, JOBQ_URL: stack.url, JOBQ_TOKEN: ADMIN_TOKEN },
      },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
      },
    );
  });
}

const edges = (items: readonly Transition[]) => items.map((t) => `${t.from}→${t.to}`);

describe("export, then import into a fresh stack", () => {
  it("keeps every job with its history and drives the unfinished ones to their end", async () => {
    const ids: string[] = [];
    onTestFailed(() => {
      console.error(`--- last worker output ---\n${workerLines.slice(-120).join("\n")}`);
    });
    const home = await mkdtemp(join(tmpdir(), "jobq-restore-"));
    const file = join(home, "state.ndjson");

    // Prepare: the mix, on the old stack
    const old = await start("old");
    const submit = (body: Record<string, unknown>) => ok<Job>(old, "POST", "/jobs", body);
    const completed = await submit({ type: "echo", payload: { n: 1 }, resources: { cpu: 1 } });
    await until(old, [completed.id], (j) => j.status === "completed");
    const failed = await submit({ type: "fail", resources: { cpu: 1 }, retry: { maxAttempts: 1 } });
    await until(old, [failed.id], (j) => j.status === "failed");
    const parent = await submit({
      type: "sleep",
      payload: { seconds: 20 },
      resources: { cpu: 1 },
      retry: { maxAttempts: 3, initialDelaySeconds: 0 },
    });
    await until(old, [parent.id], (j) => j.status === "running");
    const child = await submit({ type: "echo", payload: { n: 3 }, dependsOn: [parent.id] });
    const queued = await submit({ type: "echo", payload: { n: 4 }, resources: { cpu: 1 } });
    const paused = await submit({ type: "echo", payload: { n: 5 }, resources: { cpu: 1 } });
    await ok(old, "POST", `/jobs/${paused.id}/pause`);
    ids.push(completed.id, failed.id, parent.id, child.id, queued.id, paused.id);
    const schedule = await ok<{ id: string }>(old, "POST", "/schedules", {
      name: "nightly",
      cron: "0 2 * * *",
      job: { type: "echo", payload: { from: "schedule" } },
    });
    await ok(old, "PUT", "/admin/policy", { algorithm: "fair-share" }, ADMIN_TOKEN);
    await ok(old, "PUT", `/quotas/${PRINCIPAL}`, { maxQueuedJobs: 100 }, ADMIN_TOKEN);
    const before = await until(old, ids, () => true);
    expect(before.map((j) => j.status)).toEqual([
      "completed",
      "failed",
      "running",
      "blocked",
      "queued",
      "paused",
    ]);
    const history = new Map<string, string[]>();
    for (const id of ids) {
      history.set(
        id,
        edges((await ok<{ items: Transition[] }>(old, "GET", `/jobs/${id}/transitions`)).items),
      );
    }

    // Act: export with the CLI, stop the old stack, import into a fresh one
    const exported = await jobq(old, home, ["export", "--out", file, "--limit", "50"]);
    expect(exported.code, exported.stderr).toBe(0);
    const text = await readFile(file, "utf8");
    expect(text.split("\n")[0]).toContain('"kind":"header"');
    expect(text).not.toContain('"kind":"cursor"');
    await old.stop();

    const fresh = await start("new");
    const imported = await jobq(fresh, home, ["--json", "import", file]);
    expect(imported.code, imported.stderr).toBe(0);
    const summary = JSON.parse(imported.stdout) as {
      imported: Record<string, number>;
      requeued: number;
    };
    expect(summary.imported).toMatchObject({ job: 6, schedule: 1, policy: 1, quota: 1, result: 1 });
    expect(summary.requeued).toBe(1);
    // Importing again changes nothing.
    const again = await jobq(fresh, home, ["--json", "import", file]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      imported: { job: 0, transition: 0 },
      skipped: { job: 6 },
    });

    // Assess: every job there with its history; the finished ones as they ended
    for (const id of ids) {
      const now = edges((await ok<{ items: Transition[] }>(fresh, "GET", `/jobs/${id}/transitions`)).items);
      expect(now.slice(0, history.get(id)?.length)).toEqual(history.get(id));
    }
    expect(await ok<Job>(fresh, "GET", `/jobs/${completed.id}`)).toMatchObject({
      status: "completed",
      result: { n: 1 },
    });
    expect(await ok<Job>(fresh, "GET", `/jobs/${failed.id}`)).toMatchObject({
      status: "failed",
      error: { type: "task_failed" },
    });
    const attempts = await ok<{ items: { status: string }[] }>(fresh, "GET", `/jobs/${failed.id}/attempts`);
    expect(attempts.items.map((a) => a.status)).toEqual(["failed"]);
    // Its worker left the attempt record as its start wrote it (running): exported as the reads
    // show it, it is not taken for an attempt the old stack's worker was still running.
    const ran = await ok<{ items: { status: string }[] }>(fresh, "GET", `/jobs/${completed.id}/attempts`);
    expect(ran.items.map((a) => a.status)).toEqual(["succeeded"]);
    expect(await ok(fresh, "GET", `/schedules/${schedule.id}`)).toMatchObject({ cron: "0 2 * * *" });
    expect(await ok(fresh, "GET", "/admin/policy", undefined, ADMIN_TOKEN)).toMatchObject({
      algorithm: "fair-share",
    });
    expect(JSON.stringify(await ok(fresh, "GET", `/quotas/${PRINCIPAL}`, undefined, ADMIN_TOKEN))).toContain(
      '"maxQueuedJobs":100',
    );

    // …and the unfinished ones run to their end in the new stack (the paused one once resumed)
    await ok(fresh, "POST", `/jobs/${paused.id}/resume`);
    const after = await until(fresh, ids, (j) => TERMINAL.includes(j.status));
    expect(after.map((j) => j.status)).toEqual([
      "completed",
      "failed",
      "completed",
      "completed",
      "completed",
      "completed",
    ]);
    expect(after[3]?.result).toEqual({ n: 3 });
    const parentHistory = (await ok<{ items: Transition[] }>(fresh, "GET", `/jobs/${parent.id}/transitions`))
      .items;
    expect(parentHistory.find((t) => t.from === "running" && t.to === "queued")?.reason).toMatch(
      /restored from an export/,
    );
    const parentAttempts = await ok<{ items: { status: string }[] }>(
      fresh,
      "GET",
      `/jobs/${parent.id}/attempts`,
    );
    expect(parentAttempts.items.map((a) => a.status)).toEqual(["lost", "succeeded"]);
  }, 400_000);
});
