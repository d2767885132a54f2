import { describe, expect, it } from "vitest";
import { policySchema } from "../../core/policy";
import { ok, useCli } from "../support/cli";
import { TERMINAL, untilWithin, useLocalStack } from "../support/e2e";

/**
 * Issue 13's safeguards through the `jobq` CLI, run as a user runs it (a child process, `node
 * cli/bin.mjs`) against the whole local stack: an array job submitted with `--array` and a
 * `--project`, read back with `get` (its children's summary and its cost), `children` (paged) and
 * `list --project`; the project's quota and the cost sums in `stats`; and a circuit breaker that
 * opens on a type that always fails, listed by `circuits` (with `--history`) and closed by
 * `circuits reset`. Every wait polls the API with a deadline; nothing asserts on timing.
 */

const ADMIN = "e2e-cli-safeguards-admin";
const USER = "e2e-cli-safeguards-user";
const run = Date.now().toString(36);
const PROJECT = `vision-${run}`;
const CHILD_DEADLINE_MS = 60_000;
const DEADLINE_MS = 120_000;

const e2e = useLocalStack(ADMIN, {
  tablePrefix: "jobq-e2e-cli-safeguards-",
  tokens: new Map([
    [ADMIN, { principal: `e2e-cli-safeguards-admin-${run}`, role: "admin" }],
    [USER, { principal: `e2e-cli-safeguards-user-${run}`, role: "user" }],
  ]),
  policy: policySchema.parse({
    types: { fail: { circuitBreaker: { failures: 5, windowSeconds: 600, openSeconds: 3600 } } },
  }),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
});

const cli = useCli(e2e, {
  token: ADMIN,
  homePrefix: "jobq-cli-safeguards-e2e-",
  deadlineMs: CHILD_DEADLINE_MS,
});
const jobq = cli.jobq;
const until = untilWithin(DEADLINE_MS);

describe("jobq and issue 13's safeguards", () => {
  it("submits an array job in a project; get, children, list --project, quota and stats show it", async () => {
    e2e.showWorkersOnFailure();
    // Prepare: an array of 3 echo children, tagged with a project
    const parent = ok(
      await jobq(["submit", "echo", "--array", "3", "--project", PROJECT, "--payload", '{"from":"cli"}']),
    ).stdout.trim();
    expect(parent).toMatch(/^job_/);
    await until(
      "the array's parent completes",
      () => e2e.getJob(parent),
      (job) => TERMINAL.includes(job.status),
    );
    // The cost sums follow the jobs' end (the stats consumer): wait for the project's.
    await until(
      "the project's cost sums count its jobs",
      () => e2e.client.stats(),
      (stats) => (stats.cost.today.byProject[PROJECT]?.jobs ?? 0) >= 3,
    );

    // Act
    const got = ok(await jobq(["get", parent]));
    const child = ok(await jobq(["get", `${parent}-1`]));
    const first = ok(await jobq(["children", parent, "--limit", "2"]));
    const cursor = /more: --cursor (\S+)/.exec(first.stdout)?.[1] ?? "";
    const rest = ok(await jobq(["children", parent, "--limit", "2", "--cursor", cursor]));
    const asJson = ok(await jobq(["--json", "children", parent]));
    const listed = ok(await jobq(["list", "--project", PROJECT, "--json"]));
    const none = ok(await jobq(["children", `${parent}-0`]));
    const quota = ok(await jobq(["quota", "get", `project:${PROJECT}`]));
    const stats = ok(await jobq(["stats"]));
    const refusedArray = await jobq(["submit", "echo", "--array", "0"]);

    // Assess: the parent's children and cost
    expect((await e2e.getJob(parent)).status).toBe("completed");
    expect(got.stdout).toMatch(/^array: +3 children · 0 pending · 3 completed$/m);
    expect(got.stdout).toMatch(new RegExp(`^project: +${PROJECT}$`, "m"));
    expect(got.stdout).toMatch(/^cost: +\$\S+ \(requests \$\S+ · compute \$\S+; prices \S+ \S+\)$/m);
    for (const part of ["step functions", "dynamodb", "sqs", "lambda", "eventbridge", "api", "compute"])
      expect(got.stdout).toMatch(new RegExp(`^  ${part}: +<?\\$`, "m"));
    expect(child.stdout).toMatch(new RegExp(`^array parent: +${parent} \\(index 1\\)$`, "m"));
    expect(child.stdout).toMatch(/^cost: +\$/m);
    // children: a table paged like list
    const firstLines = first.stdout.trim().split("\n");
    expect(firstLines[0]).toMatch(/^ID +INDEX +STATUS +ATTEMPTS +CREATED +REASON$/);
    expect(firstLines[1]).toMatch(new RegExp(`^${parent}-0 +0 +completed +1/\\d+ `));
    expect(firstLines[2]).toMatch(new RegExp(`^${parent}-1 +1 +completed +1/\\d+ `));
    expect(cursor).not.toBe("");
    expect(rest.stdout).toMatch(new RegExp(`^${parent}-2 +2 +completed`, "m"));
    expect(rest.stdout).not.toContain("more: --cursor");
    const page = JSON.parse(asJson.stdout) as { items: { id: string; arrayIndex: number }[] };
    expect(page.items.map((j) => j.arrayIndex)).toEqual([0, 1, 2]);
    expect(none.stdout.trim()).toBe("no children (not an array job's parent)");
    // list --project: the parent and its children, all of the project
    const jobs = (JSON.parse(listed.stdout) as { items: { id: string; project: string | null }[] }).items;
    expect(jobs.map((j) => j.id).sort()).toEqual(
      [parent, `${parent}-0`, `${parent}-1`, `${parent}-2`].sort(),
    );
    expect(new Set(jobs.map((j) => j.project))).toEqual(new Set([PROJECT]));
    // The project's quota, with its cost
    expect(quota.stdout).toMatch(new RegExp(`^principal: +project:${PROJECT}$`, "m"));
    expect(quota.stdout).toMatch(/^cost today: +\$\S+ \(\d+ jobs?\)$/m);
    expect(quota.stdout).toMatch(/^cost this week: +\$\S+ \(\d+ jobs?\)$/m);
    // stats: the cost sums, and the project's row
    expect(stats.stdout).toMatch(
      /^cost of ended jobs: today \$\S+ \(\d+ jobs?\) · this week \$\S+ \(\d+ jobs?\) · overhead over 1h \S+$/m,
    );
    expect(stats.stdout).toMatch(/^PROJECT +COST TODAY +COST THIS WEEK$/m);
    expect(stats.stdout).toMatch(new RegExp(`^${PROJECT} +\\$\\S+ \\([3-9]\\d* jobs\\) +\\$\\S+ \\(`, "m"));
    expect(stats.stdout).toMatch(/^OWNER +COST TODAY +COST THIS WEEK$/m);
    // A bad size is the API's 400, exit 3
    expect(refusedArray.code).toBe(3);
    expect(refusedArray.stderr).toMatch(/^error: validation_failed: /);
  }, 240_000);

  it("lists the breaker a failing type opened, with its history, and resets it (admins only)", async () => {
    e2e.showWorkersOnFailure();
    // Prepare: five attempts of a type that always fails open its breaker
    const failing: string[] = [];
    for (let i = 0; i < 5; i++)
      failing.push(ok(await jobq(["submit", "fail", "--max-attempts", "1"])).stdout.trim());
    const opened = await until(
      "the fifth failure opens the breaker",
      () => e2e.client.listCircuits(),
      (list) => list.items.some((c) => c.type === "fail" && c.state === "open"),
    );
    const open = opened.items.find((c) => c.type === "fail");

    // Act
    const listed = ok(await jobq(["circuits"]));
    const history = ok(await jobq(["circuits", "--history", "--type", "fail"]));
    const asJson = ok(await jobq(["circuits", "--json"]));
    const asUser = await jobq(["circuits"], { JOBQ_TOKEN: USER });
    const userReset = await jobq(["circuits", "reset", "fail"], { JOBQ_TOKEN: USER });
    const reset = ok(await jobq(["circuits", "reset", "fail"]));
    const after = ok(await jobq(["circuits"]));
    const missing = await jobq(["circuits", "reset", "echo"]);
    const filterAlone = await jobq(["circuits", "--type", "fail"]);

    // Assess
    const lines = listed.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^TYPE +OWNER +STATE +FAILURES +HALF-OPENS AT +PROBE$/);
    expect(lines[1]).toMatch(
      new RegExp(`^fail +- +open +5 +${open?.halfOpensAt?.replace(/\./g, "\\.")} \\(in \\S+\\) +-$`),
    );
    expect(history.stdout).toMatch(/^AT +TYPE +OWNER +CHANGE +FROM → TO +BY +JOB +REASON$/m);
    expect(history.stdout).toMatch(/ fail +- +opened +closed → open +system +job_/);
    const list = JSON.parse(asJson.stdout) as { items: { type: string; state: string }[] };
    expect(list.items).toContainEqual(expect.objectContaining({ type: "fail", state: "open" }));
    expect(asUser.code).toBe(3);
    expect(asUser.stderr).toMatch(/^error: forbidden: /);
    expect(userReset.code).toBe(3);
    expect(reset.stdout.trim()).toBe("circuit fail: closed");
    expect(after.stdout).toMatch(/^fail +- +closed +0 +- +-$/m);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/^error: not_found: /);
    expect(filterAlone.code).toBe(2);
    expect(failing).toHaveLength(5);
  }, 240_000);
});
