import { PutCommand } from "@aws-sdk/lib-dynamodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { DEFAULT_POLICY, type Policy } from "../../core/policy";
import { LOCAL_REGION } from "../../local/config";
import { createDocumentClient } from "../../store/dynamo";
import { POLICY_PK, POLICY_SK } from "../../store/keys";
import { PolicyRepository, StoredPolicyError } from "../../store/policy";
import { startTestApi, type TestApi } from "../support/api";
import { ADMIN, ALICE, expectError, problemPaths } from "../support/jobs";
import { ownTables, suffix } from "../support/scheduling";

/**
 * GET/PUT /admin/policy through HTTP against the shared tables, and the PolicyRepository on a
 * Policy table of its own. The policy is one item for the whole deployment: every test here
 * leaves the defaults stored when it is done, so no other file meets this one's policy.
 */

type PolicyView = Policy & { updatedAt: string | null; updatedBy: string | null };

let api: TestApi;

beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => {
  await api.request("PUT", "/admin/policy", { token: ADMIN.token, body: {} });
  await api.close();
});

const putPolicy = (body: unknown, token = ADMIN.token) =>
  api.request<PolicyView>("PUT", "/admin/policy", { token, body });
const getPolicy = (token = ADMIN.token) => api.request<PolicyView>("GET", "/admin/policy", { token });

describe("PUT /admin/policy", () => {
  it("stores the whole policy and GET answers it with who stored it when", async () => {
    // Prepare
    const policy = {
      algorithm: "fair-share",
      offPeak: { start: "22:30", end: "06:00", timezone: "Europe/Berlin" },
      preemption: { enabled: true, cooldownSeconds: 120 },
      typeConcurrency: { "train-model": 2 },
      agingSecondsPerStep: 60,
      weights: { alice: 2 },
    };
    const before = Date.now();

    // Act
    const put = await putPolicy(policy);
    const got = await getPolicy();

    // Assess
    expect(put.status).toBe(200);
    expect(put.json).toMatchObject({ ...policy, updatedBy: "ops" });
    expect(Date.parse(put.json.updatedAt ?? "")).toBeGreaterThanOrEqual(before - 1000);
    expect(got.status).toBe(200);
    expect(got.json).toEqual(put.json);
  });

  it("replaces the whole policy: fields left out take the defaults, not what was stored before", async () => {
    // Prepare
    await putPolicy({ algorithm: "round-robin", agingSecondsPerStep: 10, typeConcurrency: { echo: 1 } });

    // Act
    const put = await putPolicy({ algorithm: "priority" });
    const got = await getPolicy();

    // Assess
    const { updatedAt: _at, updatedBy: _by, ...stored } = got.json;
    expect(put.status).toBe(200);
    expect(stored).toEqual(DEFAULT_POLICY);
  });

  it("answers {} with the default policy, as GET then shows it", async () => {
    // Act
    const put = await putPolicy({});
    const got = await getPolicy();

    // Assess
    expect(put.json).toEqual({ ...DEFAULT_POLICY, updatedAt: expect.any(String), updatedBy: "ops" });
    expect(got.json).toEqual(put.json);
    expect(got.json).toMatchObject({
      algorithm: "priority",
      offPeak: { start: "22:00", end: "08:00", timezone: "UTC" },
      preemption: { enabled: false },
      typeConcurrency: {},
      agingSecondsPerStep: 300,
    });
  });

  it("lists every field problem in one validation_failed: algorithm, time zone, HH:MM, unknown keys", async () => {
    // Prepare
    await putPolicy({ algorithm: "round-robin" });
    const body = {
      algorithm: "lottery",
      offPeak: { start: "7:00", end: "24:00", timezone: "Mars/Olympus_Mons" },
      typeConcurrency: { "Not A Type": 1, echo: -1 },
      agingSecondsPerStep: 1.5,
      surprise: true,
    };

    // Act
    const response = await putPolicy(body);

    // Assess
    const error = expectError(response, 400, "validation_failed");
    const paths = problemPaths(error);
    expect(paths).toEqual(
      expect.arrayContaining([
        "algorithm",
        "offPeak.start",
        "offPeak.end",
        "offPeak.timezone",
        "typeConcurrency.echo",
        "agingSecondsPerStep",
      ]),
    );
    expect(JSON.stringify(error.error.details)).toContain("surprise");
    // Nothing was stored: the policy before the refused PUT is still in force.
    expect((await getPolicy()).json.algorithm).toBe("round-robin");
  });

  it("refuses a window that opens when it closes, naming offPeak.end", async () => {
    const response = await putPolicy({ offPeak: { start: "22:00", end: "22:00" } });

    expect(problemPaths(expectError(response, 400, "validation_failed"))).toEqual(["offPeak.end"]);
  });

  it.each([
    ["no body", undefined],
    ["malformed JSON", "{algorithm:"],
    ["a list", "[]"],
  ])("answers %s with validation_failed", async (_case, body) => {
    const response = await api.request("PUT", "/admin/policy", { token: ADMIN.token, body });

    expectError(response, 400, "validation_failed");
  });
});

describe("who may read and change the policy", () => {
  it("refuses a user's GET and PUT with 403 forbidden, whatever the body", async () => {
    // Prepare
    await putPolicy({ algorithm: "round-robin" });

    // Act
    const get = await getPolicy(ALICE.token);
    const put = await putPolicy({ algorithm: "priority" }, ALICE.token);
    const bad = await putPolicy({ algorithm: "lottery" }, ALICE.token);

    // Assess
    expectError(get, 403, "forbidden");
    expectError(put, 403, "forbidden");
    expectError(bad, 403, "forbidden");
    expect((await getPolicy()).json.algorithm).toBe("round-robin");
  });

  it("refuses a caller without a token with 401", async () => {
    expectError(await api.request("GET", "/admin/policy"), 401, "unauthorized");
    expectError(await api.request("PUT", "/admin/policy", { body: {} }), 401, "unauthorized");
  });
});

describe("PolicyRepository", () => {
  let repo: PolicyRepository;
  let table: string;
  const db = createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") });

  beforeAll(async () => {
    ({ policy: table } = await ownTables(`jobq-policy-${suffix()}-`));
    repo = new PolicyRepository(db, table);
  });
  afterAll(() => db.destroy());

  it("answers the fallback, with no author, while no policy is stored", async () => {
    // Prepare
    const fallback: Policy = { ...DEFAULT_POLICY, algorithm: "fair-share" };

    // Act
    const stored = await repo.getPolicy(fallback);

    // Assess
    expect(stored).toEqual({ policy: fallback, updatedAt: null, updatedBy: null });
  });

  it("gives a policy stored before a field existed that field's default", async () => {
    // Prepare: an item as an older jobq wrote it, without preemption, weights or aging.
    await db.send(
      new PutCommand({
        TableName: table,
        Item: {
          pk: POLICY_PK,
          sk: POLICY_SK,
          policyJson: JSON.stringify({ algorithm: "round-robin", typeConcurrency: { echo: 3 } }),
          updatedAt: "2026-01-01T00:00:00.000Z",
          updatedBy: "ops",
        },
      }),
    );

    // Act
    const stored = await repo.getPolicy(DEFAULT_POLICY);

    // Assess
    expect(stored).toEqual({
      policy: { ...DEFAULT_POLICY, algorithm: "round-robin", typeConcurrency: { echo: 3 } },
      updatedAt: "2026-01-01T00:00:00.000Z",
      updatedBy: "ops",
    });
  });

  it("refuses a stored policy core no longer accepts, saying a PUT replaces it", async () => {
    // Prepare
    await db.send(
      new PutCommand({
        TableName: table,
        Item: { pk: POLICY_PK, sk: POLICY_SK, policyJson: JSON.stringify({ algorithm: "lottery" }) },
      }),
    );

    // Act
    const read = repo.getPolicy(DEFAULT_POLICY);

    // Assess
    await expect(read).rejects.toBeInstanceOf(StoredPolicyError);
    await expect(repo.getPolicy(DEFAULT_POLICY)).rejects.toThrow(
      /algorithm.*PUT \/admin\/policy replaces it/,
    );
  });

  it("reads many principals' quotas at once, only those that have one", async () => {
    // Prepare
    const principals = Array.from({ length: 130 }, (_, i) => `p${i}`);
    await repo.putQuota("p7", { dailyGpuSeconds: 10, weeklyGpuSeconds: null, maxQueuedJobs: null }, "t");
    await repo.putQuota("p120", { dailyGpuSeconds: null, weeklyGpuSeconds: 5, maxQueuedJobs: 2 }, "t");

    // Act
    const quotas = await repo.getQuotas([...principals, "p7"]);

    // Assess
    expect(quotas).toEqual(
      new Map([
        ["p7", { dailyGpuSeconds: 10, weeklyGpuSeconds: null, maxQueuedJobs: null, maxPriority: null }],
        ["p120", { dailyGpuSeconds: null, weeklyGpuSeconds: 5, maxQueuedJobs: 2, maxPriority: null }],
      ]),
    );
    expect(await repo.getQuota("p8")).toEqual({
      dailyGpuSeconds: null,
      weeklyGpuSeconds: null,
      maxQueuedJobs: null,
      maxPriority: null,
    });
  });
});
