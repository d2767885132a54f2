import { describe, expect, inject, it } from "vitest";
import { ok, useCli } from "../support/cli";
import { useLocalStack } from "../support/e2e";

/**
 * `jobq tokens …` and `jobq dependents` run as a user runs them: a child process (`node
 * cli/bin.mjs`) against the whole local stack. `tokens bootstrap` writes the first admin token
 * straight into the stack's Tokens table (here DynamoDB Local, through JOBQ_DYNAMODB_ENDPOINT, as
 * an operator would with AWS credentials); every other command goes through the API, and the
 * tokens it makes are honored by the local API as the authorizer honors them in AWS.
 */

const TOKEN = "e2e-cli-admin-token";
const CHILD_DEADLINE_MS = 60_000;
const run = Date.now().toString(36);

const e2e = useLocalStack(TOKEN, {
  tablePrefix: "jobq-e2e-cli-admin-",
  tokens: new Map([[TOKEN, { principal: `e2e-cli-admin-${run}`, role: "admin" }]]),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
});

const cli = useCli(e2e, { token: TOKEN, homePrefix: "jobq-cli-admin-e2e-", deadlineMs: CHILD_DEADLINE_MS });
const jobq = cli.jobq;

describe("jobq tokens", () => {
  it("bootstraps the first admin token into the Tokens table, once, and that token drives the API", async () => {
    // Prepare: what an operator has after `cdk deploy` (the table's name) and AWS credentials.
    const aws = {
      JOBQ_TOKENS_TABLE: e2e.stack.tables.Tokens ?? "",
      JOBQ_DYNAMODB_ENDPOINT: inject("dynamoEndpoint"),
      AWS_REGION: "us-east-1",
      AWS_EC2_METADATA_DISABLED: "true",
    };

    // Act
    const first = await jobq(["tokens", "bootstrap", "--principal", `root-${run}`], aws);
    const token = first.stdout.trim();
    const listed = await jobq(["tokens", "list", "--json"], { JOBQ_TOKEN: token });
    const second = await jobq(["tokens", "bootstrap", "--principal", `root2-${run}`], aws);
    const forced = await jobq(["tokens", "bootstrap", "--principal", `root3-${run}`, "--force"], aws);
    const noTable = await jobq(["tokens", "bootstrap", "--principal", "x"]);

    // Assess
    ok(first);
    expect(token).toMatch(/^jq_[A-Za-z0-9_-]{43}$/);
    expect(first.stderr).toMatch(
      /created token [0-9a-f]{12} for root-.* \(admin\); store it now: it is shown only this once/,
    );
    const tokens = JSON.parse(ok(listed).stdout) as { principal: string; role: string }[];
    expect(tokens).toContainEqual(expect.objectContaining({ principal: `root-${run}`, role: "admin" }));
    expect(listed.stdout).not.toContain(token);
    expect(second.code, second.stderr).toBe(2);
    expect(second.stderr).toMatch(/already holds 1 working admin token/);
    ok(forced);
    expect(noTable.code).toBe(2);
  }, 120_000);

  it("creates, lists and revokes tokens through the API; a revoked token is refused at once", async () => {
    // Act
    const created = ok(await jobq(["tokens", "create", "--principal", `alice-${run}`]));
    const secret = created.stdout.trim();
    const asJson = ok(await jobq(["tokens", "create", "--principal", `ops-${run}`, "--admin", "--json"]));
    const admin = JSON.parse(asJson.stdout) as { id: string; token: string; role: string };
    const table = ok(await jobq(["tokens", "list"], { JOBQ_TOKEN: admin.token }));
    const userList = await jobq(["tokens", "list"], { JOBQ_TOKEN: secret });
    const userWorks = await jobq(["list", "--limit", "1"], { JOBQ_TOKEN: secret });
    const id = /created token ([0-9a-f]{12})/.exec(created.stderr)?.[1] ?? "";
    const revoked = ok(await jobq(["tokens", "revoke", id]));
    const again = ok(await jobq(["tokens", "revoke", id]));
    const refused = await jobq(["list", "--limit", "1"], { JOBQ_TOKEN: secret });
    const unknown = await jobq(["tokens", "revoke", "000000000000"]);

    // Assess
    expect(secret).toMatch(/^jq_/);
    expect(created.stderr).toMatch(/shown only this once/);
    expect(admin.role).toBe("admin");
    expect(admin.token).toMatch(/^jq_/);
    expect(table.stdout).toMatch(/^ID +PRINCIPAL +ROLE +CREATED +REVOKED/);
    expect(table.stdout).toContain(id);
    expect(table.stdout).toContain(`alice-${run}`);
    expect(table.stdout).not.toContain(secret);
    expect(table.stdout).not.toContain(admin.token);
    expect(userList.code).toBe(3);
    expect(userList.stderr).toMatch(/^error: forbidden: /);
    ok(userWorks);
    expect(revoked.stdout).toMatch(new RegExp(`^revoked ${id} \\(alice-${run}\\) at \\d{4}-`));
    expect(again.stdout).toBe(revoked.stdout);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/^error: unauthorized: /);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/^error: not_found: /);
  }, 120_000);
});

describe("jobq dependents", () => {
  it("lists the jobs that wait on a job, with each edge's state", async () => {
    // Prepare: a parent that will not run for a long time, and two jobs waiting on it.
    const parent = ok(await jobq(["submit", "echo", "--run-at", "2099-01-01T00:00:00Z"])).stdout.trim();
    const first = ok(await jobq(["submit", "echo", "--name", "first", "--depends-on", parent])).stdout.trim();
    const second = ok(await jobq(["submit", "echo", "--depends-on", parent])).stdout.trim();

    // Act
    const shown = ok(await jobq(["dependents", parent]));
    const paged = ok(await jobq(["dependents", parent, "--limit", "1", "--json"]));
    const none = ok(await jobq(["dependents", first]));
    const missing = await jobq(["dependents", "job_01J00000000000000000000000"]);

    // Assess
    const lines = shown.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^ID +TYPE +NAME +STATUS +OWNER +EDGE$/);
    expect(lines[1]).toMatch(new RegExp(`^${first} +echo +first +blocked +e2e-cli-admin-\\S+ +waiting$`));
    expect(lines[2]).toMatch(new RegExp(`^${second} +echo +blocked +e2e-cli-admin-\\S+ +waiting$`));
    const page = JSON.parse(paged.stdout) as {
      items: { id: string; met: boolean }[];
      nextCursor: string | null;
    };
    expect(page.items).toEqual([expect.objectContaining({ id: first, met: false })]);
    expect(page.nextCursor).not.toBeNull();
    expect(none.stdout.trim()).toBe("no dependents");
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/^error: not_found: /);
  }, 120_000);
});
