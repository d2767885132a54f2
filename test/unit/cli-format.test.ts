import { mkdtemp, readFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { configPath, resolveConnection, saveProfile } from "../../cli/config";
import {
  bar,
  colorEnabled,
  drainState,
  eta,
  formatDuration,
  type NodesOfPool,
  nodeRows,
  paint,
  progressLine,
  relative,
  stripAnsi,
  summaryBar,
  table,
  usageBar,
  visibleLength,
  type WatchedJob,
} from "../../cli/format";
import { jobFromFlags, run } from "../../cli/program";
import { watchExitCode } from "../../cli/watch";

const NOW = new Date("2026-12-06T10:00:00.000Z");

function job(overrides: Partial<WatchedJob> = {}): WatchedJob {
  return {
    id: "job_1",
    type: "echo",
    status: "running",
    statusReason: "running on node a-1",
    attempts: 1,
    retry: { maxAttempts: 3 },
    createdAt: "2026-12-06T09:59:00.000Z",
    startedAt: "2026-12-06T09:59:30.000Z",
    finishedAt: null,
    escalatedTo: null,
    ...overrides,
  };
}

function sink(isTTY = false): { write(text: string): void; text: () => string; readonly isTTY: boolean } {
  let text = "";
  return {
    isTTY,
    write(chunk: string) {
      text += chunk;
    },
    text: () => text,
  };
}

describe("colour", () => {
  it("is on only on a TTY without NO_COLOR", () => {
    expect(colorEnabled(true, {})).toBe(true);
    expect(colorEnabled(true, { NO_COLOR: "1" })).toBe(false);
    expect(colorEnabled(false, {})).toBe(false);
    expect(colorEnabled(undefined, {})).toBe(false);
  });

  it("leaves text plain when off, and escapes take no width when on", () => {
    expect(paint("failed", "red", false)).toBe("failed");
    const red = paint("failed", "red", true);
    expect(red).not.toBe("failed");
    expect(visibleLength(red)).toBe(6);
  });
});

describe("durations", () => {
  it.each([
    [0, "0ms"],
    [850, "850ms"],
    [42_000, "42s"],
    [185_000, "3m05s"],
    [7_620_000, "2h07m"],
    [273_600_000, "3d04h"],
    [-5, "0ms"],
  ])("%d ms reads %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("says how long ago or how far ahead an instant is", () => {
    expect(relative("2026-12-06T09:59:55.000Z", NOW)).toBe("5s ago");
    expect(relative("2026-12-06T10:02:00.000Z", NOW)).toBe("in 2m00s");
    expect(relative(null, NOW)).toBe("-");
  });
});

describe("tables and bars", () => {
  it("lines columns up by visible width, colour or not", () => {
    const text = table(
      ["ID", "STATUS", "REASON"],
      [
        ["job_1", paint("failed", "red", true), "x"],
        ["job_22", "queued", "y"],
      ],
    );
    const lines = text.split("\n").map((line) => stripAnsi(line));
    expect(lines).toEqual(["ID      STATUS  REASON", "job_1   failed  x", "job_22  queued  y"]);
  });

  it("fills a bar by the fraction, clamped", () => {
    expect(bar(0.5, 10)).toBe("[#####-----]");
    expect(bar(2, 4)).toBe("[####]");
    expect(bar(Number.NaN, 4)).toBe("[----]");
    expect(usageBar(1, 4, 4)).toBe("[#---]  25%");
    expect(usageBar(0, 0, 4)).toBe("[----]   0%");
  });
});

describe("ETA", () => {
  it("is a running job's start plus its type's typical run time", () => {
    expect(eta(job(), NOW, 60_000)).toBe("~30s");
    expect(eta(job(), NOW, 10_000)).toBe("overdue");
  });

  it("is a queued job's estimated start plus the run time, or the start alone", () => {
    const queued = job({ status: "queued", startedAt: null, estimatedStartAt: "2026-12-06T10:01:00.000Z" });
    expect(eta(queued, NOW, 60_000)).toBe("~2m00s");
    expect(eta(queued, NOW, null)).toBe("starts in 1m00s");
  });

  it("is unknown without figures, and done once terminal", () => {
    expect(eta(job({ status: "blocked", startedAt: null }), NOW, null)).toBe("?");
    expect(eta(job({ status: "completed" }), NOW, 1000)).toBe("done");
  });
});

describe("the watch view", () => {
  it("shows status, attempt, elapsed, ETA and the reason on one plain line", () => {
    const line = progressLine(job(), NOW, { color: false, typicalRunMs: 60_000 });
    expect(line).toMatch(/^job_1 echo +running +attempt 1\/3 +elapsed 1m00s +eta ~30s +running on node a-1$/);
  });

  it("stops elapsed at the end, names the escalation job, and cuts only the reason to the width", () => {
    const ended = job({ status: "escalated", finishedAt: "2026-12-06T09:59:40.000Z", escalatedTo: "job_2" });
    expect(progressLine(ended, NOW, { color: false })).toContain("elapsed 40s");
    expect(progressLine(ended, NOW, { color: false })).toContain("→ job_2");
    const long = job({ statusReason: "x".repeat(500) });
    const cut = progressLine(long, NOW, { color: true, width: 120 });
    expect(visibleLength(cut)).toBeLessThanOrEqual(120);
    expect(cut).toContain("elapsed 1m00s");
  });

  it("sums up the jobs with a bar of the share that has ended", () => {
    const jobs = [
      job(),
      job({ id: "job_2", status: "completed" }),
      job({ id: "job_3", status: "completed" }),
    ];
    expect(summaryBar(jobs, { color: false, width: 3 })).toBe("[##-] 2/3 done · 2 completed · 1 running");
  });
});

describe("exit codes", () => {
  it("is 1 when a watched job failed or was cancelled, and counts an escalation by its escalation job", () => {
    expect(watchExitCode([{ id: "a", status: "completed", escalatedTo: null }])).toBe(0);
    expect(watchExitCode([{ id: "a", status: "failed", escalatedTo: null }])).toBe(1);
    expect(watchExitCode([{ id: "a", status: "cancelled", escalatedTo: null }])).toBe(1);
    expect(
      watchExitCode([
        { id: "a", status: "escalated", escalatedTo: "b" },
        { id: "b", status: "completed", escalatedTo: null },
      ]),
    ).toBe(0);
    expect(
      watchExitCode([
        { id: "a", status: "escalated", escalatedTo: "b" },
        { id: "b", status: "failed", escalatedTo: null },
      ]),
    ).toBe(1);
  });

  it("is 2 for a usage error and 0 for help, before anything is sent", async () => {
    const err = sink();
    expect(await run(["submit", "echo", "--cpu", "lots"], { out: sink(), err, env: {} })).toBe(2);
    expect(err.text()).toContain("--cpu");
    expect(await run(["no-such-command"], { out: sink(), err: sink(), env: {} })).toBe(2);
    expect(await run(["submit"], { out: sink(), err: sink(), env: {} })).toBe(2);
    expect(await run(["schedules"], { out: sink(), err: sink(), env: {} })).toBe(2);
    expect(await run(["submit", "--help"], { out: sink(), err: sink(), env: {} })).toBe(0);
    const out = sink();
    expect(await run(["--help"], { out, err: sink(), env: {} })).toBe(0);
    expect(out.text()).toContain("watch");
  });
});

describe("submit flags", () => {
  it("send only what was given, so the API's defaults apply", () => {
    expect(jobFromFlags("echo", {})).toEqual({ type: "echo" });
    expect(
      jobFromFlags("train", {
        payload: '{"a":1}',
        priority: "high",
        gpu: 1,
        tag: ["team=vision"],
        dependsOn: "job_a, job_b",
        maxAttempts: 2,
      }),
    ).toEqual({
      type: "train",
      payload: { a: 1 },
      priority: "high",
      resources: { gpu: 1 },
      tags: { team: "vision" },
      dependsOn: ["job_a", "job_b"],
      retry: { maxAttempts: 2 },
    });
  });
});

describe("connection", () => {
  it("defaults to a fresh npm start, then the default profile, then the environment, and a named profile wins", async () => {
    const home = await mkdtemp(join(tmpdir(), "jobq-cli-"));
    expect(await resolveConnection({}, { HOME: home })).toEqual({
      url: "http://127.0.0.1:3000",
      token: "local-dev-token",
      streamUrl: undefined,
    });
    const path = configPath({ HOME: home });
    await saveProfile(path, "default", { url: "http://127.0.0.1:4000", token: "t-default" });
    await saveProfile(path, "ops", { url: "http://127.0.0.1:5000", token: "t-ops" });
    expect((await resolveConnection({}, { HOME: home })).token).toBe("t-default");
    expect((await resolveConnection({}, { HOME: home, JOBQ_TOKEN: "t-env" })).token).toBe("t-env");
    expect(await resolveConnection({ profile: "ops" }, { HOME: home, JOBQ_TOKEN: "t-env" })).toMatchObject({
      url: "http://127.0.0.1:5000",
      token: "t-ops",
    });
    await expect(resolveConnection({ profile: "nope" }, { HOME: home })).rejects.toThrow(/no profile "nope"/);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(path, "utf8")).profiles.ops.token).toBe("t-ops");
  });
});

describe("nodes", () => {
  const size = { cpu: 2, memoryMb: 4096, gpu: 0 };
  const pools: NodesOfPool[] = [
    {
      name: "cpu",
      nodes: [
        {
          id: "cpu-1-a",
          status: "up",
          capacity: size,
          used: { cpu: 1, memoryMb: 512, gpu: 0 },
          lastHeartbeatAt: "2026-12-06T09:59:55.000Z",
          drainedBy: null,
        },
        {
          id: "cpu-2-b",
          status: "draining",
          capacity: size,
          used: { cpu: 2, memoryMb: 512, gpu: 0 },
          lastHeartbeatAt: "2026-12-06T09:59:58.000Z",
          drainedBy: "ops",
        },
      ],
    },
    {
      name: "gpu",
      nodes: [
        {
          id: "gpu-1-c",
          status: "lost",
          capacity: size,
          used: size,
          lastHeartbeatAt: "2026-12-06T09:50:00.000Z",
        },
      ],
    },
  ];

  it("lists pool, id, status, used/capacity, heartbeat age and who drained it, one row per node", () => {
    expect(nodeRows(pools, NOW)).toEqual([
      ["cpu", "cpu-1-a", "up", "1/2", "512/4096", "0/0", "5s ago", "-"],
      ["cpu", "cpu-2-b", "draining", "2/2", "512/4096", "0/0", "2s ago", "ops"],
      ["gpu", "gpu-1-c", "lost", "2/2", "4096/4096", "0/0", "10m00s ago", "-"],
    ]);
    expect(nodeRows(pools, NOW, "gpu").map((row) => row[1])).toEqual(["gpu-1-c"]);
  });

  it("says a drain is done once the node is gone or lost, and what it still holds before", () => {
    expect(drainState(pools, "cpu", "cpu-2-b")).toEqual({
      done: false,
      status: "draining",
      line: "node cpu-2-b of pool cpu: draining, in use cpu 2 mem 512 MB gpu 0",
    });
    expect(drainState(pools, "cpu", "cpu-9-z")).toMatchObject({ done: true, status: "gone" });
    expect(drainState(pools, "nope", "cpu-2-b")).toMatchObject({ done: true, status: "gone" });
    expect(drainState(pools, "gpu", "gpu-1-c")).toMatchObject({ done: true, status: "lost" });
  });
});
