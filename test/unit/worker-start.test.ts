import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { readWorkerConfig, WorkerConfigError } from "../../worker/config";

/**
 * The worker reads its configuration before it makes a client or registers a node: a bad variable
 * stops the process at start (exit 1, the variable named on stderr, which ECS shows as the task's
 * stopped reason in its logs) instead of a node that registers and then fails every attempt.
 */

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TSX = fileURLToPath(new URL("../../node_modules/.bin/tsx", import.meta.url));

/** A worker's environment as the local stack gives it, every endpoint on loopback. */
const GOOD_ENV: Readonly<Record<string, string>> = {
  JOBQ_POOL: "cpu",
  JOBQ_QUEUES: JSON.stringify({ cpu: { normal: "http://127.0.0.1:3/000000000000/jobq-cpu-normal" } }),
  JOBQ_DYNAMODB_ENDPOINT: "http://127.0.0.1:1",
  JOBQ_SFN_ENDPOINT: "http://127.0.0.1:2",
  JOBQ_SQS_ENDPOINT: "http://127.0.0.1:3",
  JOBQ_EVENTS_ENDPOINT: "http://127.0.0.1:4",
  JOBQ_NODE_CPU: "1",
  JOBQ_NODE_MEMORY_MB: "1024",
  JOBQ_NODE_GPU: "0",
  AWS_REGION: "us-east-1",
  AWS_ACCESS_KEY_ID: "local",
  AWS_SECRET_ACCESS_KEY: "local",
  AWS_EC2_METADATA_DISABLED: "true",
};

/** worker/main.ts started as the local stack starts it, with only the given environment. */
function startWorker(
  env: Readonly<Record<string, string>>,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      TSX,
      ["worker/main.ts"],
      // A worker that got past its configuration would run until stopped: the kill ends it.
      {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
        timeout: 50_000,
      },
      (error, _stdout, stderr) => resolve({ code: error ? (error.code as number | null) : 0, stderr }),
    );
  });
}

describe("worker configuration at start", () => {
  it("reads a good environment", () => {
    // Act
    const config = readWorkerConfig(GOOD_ENV);

    // Assess
    expect(config.pool).toBe("cpu");
    expect(config.shared.queues.cpu?.normal).toContain("127.0.0.1");
  });

  it.each([
    ["JOBQ_HEARTBEAT_SECONDS", "abc"],
    ["JOBQ_POOLS", "not json"],
    ["JOBQ_POLL_WAIT_SECONDS", "99"],
    ["JOBQ_POOL", "CPU!"],
  ])("refuses %s=%s with a WorkerConfigError naming it", (name, value) => {
    // Act
    const read = () => readWorkerConfig({ ...GOOD_ENV, [name]: value });

    // Assess
    expect(read).toThrow(WorkerConfigError);
    expect(read).toThrow(name);
  });

  it("refuses a pool with no queue in JOBQ_QUEUES", () => {
    expect(() => readWorkerConfig({ ...GOOD_ENV, JOBQ_POOL: "gpu" })).toThrow(/JOBQ_QUEUES.*gpu/);
  });

  // A process start on a busy 2-core machine: several seconds, so a longer limit than a unit test's.
  it("exits 1 at start, before any client or node, naming the bad variable", {
    timeout: 60_000,
  }, async () => {
    // Act
    const { code, stderr } = await startWorker({ ...GOOD_ENV, JOBQ_HEARTBEAT_SECONDS: "abc" });

    // Assess
    expect(code).toBe(1);
    expect(stderr).toMatch(/WorkerConfigError: invalid environment: JOBQ_HEARTBEAT_SECONDS/);
  });
});
