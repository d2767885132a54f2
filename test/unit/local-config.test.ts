import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_POLICY } from "../../core/policy";
import { DEFAULT_POOLS } from "../../core/pools";
import { readConfig } from "../../functions/config";
import {
  applyHandlerEnvironment,
  handlerEnvironment,
  LocalConfigError,
  parseApiTokens,
  parseConfigFile,
  readLocalConfig,
  tableVariable,
} from "../../local/config";
import { TABLES } from "../../store/tables";

describe("JOBQ_API_TOKENS", () => {
  it("defaults to one admin token for principal local when unset", () => {
    expect(parseApiTokens(undefined)).toEqual(
      new Map([["local-dev-token", { principal: "local", role: "admin" }]]),
    );
  });

  it("parses token=principal as a user and token=principal:admin as an admin", () => {
    const tokens = parseApiTokens("t1=alice, t2=bob,t3=ops:admin");

    expect(tokens).toEqual(
      new Map([
        ["t1", { principal: "alice", role: "user" }],
        ["t2", { principal: "bob", role: "user" }],
        ["t3", { principal: "ops", role: "admin" }],
      ]),
    );
  });

  it("splits at the last '=' so base64 tokens with padding work", () => {
    expect(parseApiTokens("YWJjZA===carol").get("YWJjZA==")).toEqual({ principal: "carol", role: "user" });
  });

  it.each([
    ["an entry without '='", "t1=alice,t2", /entry 2: missing "="/],
    ["an empty token", "=alice", /entry 1: the token is empty/],
    ["an empty principal", "t1=", /entry 1: principal "" must match/],
    ["a principal with spaces", "t1=al ice", /principal "al ice" must match/],
    ["a role other than admin", "t1=alice:root", /entry 1: after the principal only ":admin", ":reader"/],
    ["two roles", "t1=alice:admin:admin", /only ":admin", ":reader"/],
    ["a token listed twice", "t1=alice,t1=bob", /entry 2: the same token is listed twice/],
    ["an empty entry", "t1=alice,,t2=bob", /entry 2: missing "="/],
    ["an empty value", "  ", /set but empty/],
  ])("rejects %s with a message naming the entry", (_case, spec, message) => {
    expect(() => parseApiTokens(spec)).toThrow(LocalConfigError);
    expect(() => parseApiTokens(spec)).toThrow(message);
  });

  it("lists every malformed entry at once and never echoes a token", () => {
    const error = catchError(() => parseApiTokens("secret-one,secret-two=bob:root,ok=carol"));

    expect(error.message).toMatch(/entry 1:.*\n.*entry 2:/);
    expect(error.message).not.toContain("secret-");
  });
});

describe("JOBQ_CONFIG", () => {
  it("accepts pools, a policy and task types, filling in the policy's defaults", () => {
    const file = parseConfigFile(
      JSON.stringify({
        pools: [{ name: "cpu", labels: { zone: "a" }, nodes: 2, node: { cpu: 2, memoryMb: 4096 } }],
        policy: { algorithm: "fair-share", offPeak: { start: "23:00", end: "06:00" } },
        taskTypes: ["train-model"],
      }),
      "jobq.json",
    );

    expect(file.pools).toEqual([
      { name: "cpu", labels: { zone: "a" }, nodes: 2, node: { cpu: 2, memoryMb: 4096, gpu: 0 } },
    ]);
    expect(file.policy).toEqual({
      ...DEFAULT_POLICY,
      algorithm: "fair-share",
      offPeak: { start: "23:00", end: "06:00", timezone: "UTC" },
    });
    expect(file.taskTypes).toEqual(["train-model"]);
  });

  it("fails on a bad policy with a message naming each field", () => {
    const error = catchError(() =>
      parseConfigFile(
        JSON.stringify({
          policy: {
            algorithm: "lottery",
            offPeak: { start: "25:00", end: "08:00", timezone: "Mars/Olympus" },
            agingSecondsPerStep: -1,
            sharing: true,
          },
        }),
        "jobq.json",
      ),
    );

    expect(error).toBeInstanceOf(LocalConfigError);
    expect(error.message).toContain("JOBQ_CONFIG jobq.json is invalid");
    expect(error.message).toMatch(/policy\.algorithm: /);
    expect(error.message).toMatch(/policy\.offPeak\.start: must be HH:MM/);
    expect(error.message).toMatch(/policy\.offPeak\.timezone: is not a known IANA time zone/);
    expect(error.message).toMatch(/policy\.agingSecondsPerStep: /);
    expect(error.message).toMatch(/policy.*sharing/);
  });

  it("names the file and the problem when it is not JSON", () => {
    expect(() => parseConfigFile("{pools: []", "jobq.json")).toThrow(
      /JOBQ_CONFIG jobq\.json is not valid JSON/,
    );
  });

  it("lists every invalid field with its path", () => {
    const error = catchError(() =>
      parseConfigFile(
        JSON.stringify({
          pools: [{ name: "GPU!", node: { cpu: 0, memoryMb: 1 } }],
          taskTypes: ["Bad Type"],
          pool: [],
        }),
        "jobq.json",
      ),
    );

    expect(error).toBeInstanceOf(LocalConfigError);
    expect(error.message).toContain("JOBQ_CONFIG jobq.json is invalid");
    expect(error.message).toMatch(/pools\.0\.name: must match/);
    expect(error.message).toMatch(/pools\.0\.node\.cpu:/);
    expect(error.message).toMatch(/taskTypes\.0: must match/);
    expect(error.message).toMatch(/pool/);
  });

  it("rejects duplicate pool names and an empty pool list", () => {
    const pool = { name: "cpu", node: { cpu: 1, memoryMb: 512 } };

    expect(() => parseConfigFile(JSON.stringify({ pools: [pool, pool] }), "f")).toThrow(
      /pool names must be unique/,
    );
    expect(() => parseConfigFile(JSON.stringify({ pools: [] }), "f")).toThrow(/pools/);
  });
});

describe("readLocalConfig", () => {
  const dir = mkdtempSync(join(tmpdir(), "jobq-local-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("defaults as API.md says", () => {
    const config = readLocalConfig({});

    expect(config).toMatchObject({ port: 3000, host: "127.0.0.1", dataDir: ".jobq/", pools: DEFAULT_POOLS });
    expect(config.policy).toBeUndefined();
    expect(config.taskTypes).toBeUndefined();
    expect(config.tokens.get("local-dev-token")).toEqual({ principal: "local", role: "admin" });
  });

  it("reads PORT, HOST, JOBQ_DATA_DIR and the JOBQ_CONFIG file", () => {
    const path = join(dir, "jobq.json");
    writeFileSync(path, JSON.stringify({ taskTypes: ["train-model"], policy: { algorithm: "round-robin" } }));

    const config = readLocalConfig({
      PORT: "8080",
      HOST: "0.0.0.0",
      JOBQ_DATA_DIR: "/var/jobq",
      JOBQ_CONFIG: path,
    });

    expect(config).toMatchObject({
      port: 8080,
      host: "0.0.0.0",
      dataDir: "/var/jobq",
      taskTypes: ["train-model"],
      policy: { ...DEFAULT_POLICY, algorithm: "round-robin" },
    });
  });

  it("fails the start on a bad policy in JOBQ_CONFIG, naming the field", () => {
    const path = join(dir, "bad-policy.json");
    writeFileSync(path, JSON.stringify({ policy: { preemption: { enabled: "yes" } } }));

    expect(() => readLocalConfig({ JOBQ_CONFIG: path })).toThrow(LocalConfigError);
    expect(() => readLocalConfig({ JOBQ_CONFIG: path })).toThrow(/policy\.preemption\.enabled: /);
  });

  it.each([
    ["PORT", { PORT: "http" }, /PORT: must be a port number/],
    ["PORT", { PORT: "70000" }, /PORT: must be at most 65535/],
    ["PORT", { PORT: "" }, /PORT: must be a port number/],
    [
      "JOBQ_CONFIG",
      { JOBQ_CONFIG: "/no/such/jobq.json" },
      /JOBQ_CONFIG \/no\/such\/jobq\.json cannot be read/,
    ],
  ])("fails fast on a bad %s", (_name, env, message) => {
    expect(() => readLocalConfig(env)).toThrow(LocalConfigError);
    expect(() => readLocalConfig(env)).toThrow(message);
  });
});

describe("the handlers' environment", () => {
  const tables = Object.fromEntries(TABLES.map((def) => [def.id, `jobq-${def.id}`]));

  it("is what functions/config.ts reads: tables, endpoint, pools, region", () => {
    const env = handlerEnvironment({ tables, dynamoEndpoint: "http://127.0.0.1:8000" });

    const config = readConfig(definedOnly(env));

    expect(config).toMatchObject({
      jobsTable: "jobq-Jobs",
      tokensTable: "jobq-Tokens",
      dynamoEndpoint: "http://127.0.0.1:8000",
      region: "us-east-1",
      pools: DEFAULT_POOLS,
      taskTypes: null,
    });
    expect(env).toMatchObject({ AWS_EC2_METADATA_DISABLED: "true", AWS_ACCESS_KEY_ID: "local" });
    for (const def of TABLES) expect(env[tableVariable(def.id)]).toBe(`jobq-${def.id}`);
  });

  it("hands JOBQ_CONFIG's policy to the handlers as JOBQ_POLICY, and none when unset", () => {
    const policy = {
      ...DEFAULT_POLICY,
      algorithm: "round-robin" as const,
      typeConcurrency: { "train-model": 2 },
    };

    const withPolicy = handlerEnvironment({ tables, dynamoEndpoint: "http://127.0.0.1:8000", policy });
    const without = handlerEnvironment({ tables, dynamoEndpoint: "http://127.0.0.1:8000" });

    expect(readConfig(definedOnly(withPolicy)).defaultPolicy).toEqual(policy);
    expect(without.JOBQ_POLICY).toBeUndefined();
    expect(readConfig(definedOnly(without)).defaultPolicy).toEqual(DEFAULT_POLICY);
  });

  it("sets JOBQ_POLICY_TABLE from the Policy table", () => {
    const env = handlerEnvironment({ tables, dynamoEndpoint: "http://127.0.0.1:8000" });

    expect(env.JOBQ_POLICY_TABLE).toBe("jobq-Policy");
    expect(readConfig(definedOnly(env)).policyTable).toBe("jobq-Policy");
  });

  it("names a table's variable after its id", () => {
    expect(tableVariable("Jobs")).toBe("JOBQ_JOBS_TABLE");
    expect(tableVariable("JobEvents")).toBe("JOBQ_JOB_EVENTS_TABLE");
  });

  it("allows the example task types whenever task types are configured", () => {
    const env = handlerEnvironment({
      tables,
      dynamoEndpoint: "http://127.0.0.1:8000",
      taskTypes: ["train-model", "echo"],
    });

    expect(readConfig(definedOnly(env)).taskTypes).toEqual(
      new Set(["train-model", "echo", "sleep", "flaky", "fail", "log"]),
    );
  });

  it("replaces real credentials and a stale task list when applied", () => {
    const env: NodeJS.ProcessEnv = {
      AWS_ACCESS_KEY_ID: "AKIAREAL",
      AWS_SESSION_TOKEN: "real-session",
      JOBQ_TASK_TYPES: '["only-this"]',
      PATH: "/usr/bin",
    };

    applyHandlerEnvironment({ tables, dynamoEndpoint: "http://127.0.0.1:8000" }, env);

    expect(env.AWS_ACCESS_KEY_ID).toBe("local");
    expect(env.AWS_SESSION_TOKEN).toBeUndefined();
    expect(env.JOBQ_TASK_TYPES).toBeUndefined();
    expect(env.PATH).toBe("/usr/bin");
  });

  it("refuses tables that lack a table of store/tables.ts", () => {
    expect(() => handlerEnvironment({ tables: { Jobs: "x" }, dynamoEndpoint: "http://127.0.0.1:1" })).toThrow(
      LocalConfigError,
    );
  });
});

function definedOnly(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined));
}

function catchError(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    if (error instanceof Error) return error;
    throw error;
  }
  throw new Error("expected an error");
}
