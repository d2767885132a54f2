import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { describe, expect, inject, it } from "vitest";
import { costLines, diffMeters, type Meters, readMeters, workerCapacity } from "../../bench/meters";
import type { JobCost } from "../../core/cost";
import { STATS_CONSUMER } from "../../functions/stats-settings";
import { startLocalStack } from "../../local/stack";
import { awsClientOptions } from "../../store/aws";
import { request } from "../support/api";

/**
 * Each job's own `cost` against what the local stack counted for it, with the bench's meters
 * (bench/meters.ts): a few echo jobs and a few retried ones run on the whole local stack; the
 * sum of their costs' request part must be within 10 % of the counted request charges, leaving
 * out what is time-driven (empty long polls) or not a count (Lambda run time: the in-process
 * handlers' wall time). The stack is started here, not by useLocalStack, because the workers log
 * their DynamoDB use only when they drain: the stack must stop inside the test.
 */

const TOKEN = "e2e-cost-token";
const DEADLINE_MS = 120_000;
const ECHO_JOBS = 4;
const RETRIED_JOBS = 2;
const TERMINAL = new Set(["completed", "failed", "cancelled", "escalated"]);

async function waitUntilEnded(raw: DynamoDBClient, table: string, ids: readonly string[]): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const states = await Promise.all(
      ids.map(async (id) => {
        const out = await raw.send(
          new GetItemCommand({ TableName: table, Key: { pk: { S: `JOB#${id}` }, sk: { S: "JOB" } } }),
        );
        return out.Item?.status?.S ?? "";
      }),
    );
    if (states.every((s) => TERMINAL.has(s))) return;
    if (Date.now() > deadline) throw new Error(`jobs still open: ${states.join(", ")}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Counted request charges, less the long polls that brought nothing (one receive per attempt is kept). */
function countedUsd(
  used: Meters,
  attempts: number,
  worker: { read: number; write: number },
  jobs: number,
): number {
  const receives = used.sqs.ReceiveMessage ?? 0;
  const trimmed: Meters = { ...used, sqs: { ...used.sqs, ReceiveMessage: Math.min(receives, attempts) } };
  return costLines(trimmed, jobs, worker)
    .filter(([label]) => !label.startsWith("Lambda duration"))
    .reduce((sum, [, , usd]) => sum + usd * jobs, 0);
}

describe("each job's cost against what the local stack counted", () => {
  it("adds up to the counted request charges within 10 %, a retried job's extra attempt included", async () => {
    // Prepare
    const lines: string[] = [];
    const stack = await startLocalStack({
      port: 0,
      host: "127.0.0.1",
      tablePrefix: "jobq-e2e-cost-",
      dynamoEndpoint: inject("dynamoEndpoint"),
      tokens: new Map([[TOKEN, { principal: `e2e-cost-${Date.now()}`, role: "admin" }]]),
      workerShutdownGraceSeconds: 2,
      workerOutput: (line) => void lines.push(line),
    });
    const table = stack.tables.Jobs ?? "";
    const raw = new DynamoDBClient(awsClientOptions(stack.dynamoEndpoint, "us-east-1"));
    const submit = async (body: object): Promise<string> => {
      const answer = await request<{ id: string }>(stack.url, "POST", "/jobs", { token: TOKEN, body });
      expect(answer.status).toBe(201);
      return answer.json.id;
    };
    let stopped = false;
    try {
      const before = readMeters(stack);

      // Act
      const ids: string[] = [];
      for (let i = 0; i < ECHO_JOBS; i++) ids.push(await submit({ type: "echo", payload: { i } }));
      const retried: string[] = [];
      for (let i = 0; i < RETRIED_JOBS; i++) {
        retried.push(
          await submit({
            type: "flaky",
            payload: { failTimes: 1 },
            retry: { maxAttempts: 2, initialDelaySeconds: 0 },
          }),
        );
      }
      await waitUntilEnded(raw, table, [...ids, ...retried]);
      // The stats consumer's batching window, so its transaction is counted too.
      await new Promise((resolve) =>
        setTimeout(resolve, 500 + STATS_CONSUMER.eventSource.maxBatchingWindowSeconds * 1000),
      );
      const used = diffMeters(readMeters(stack), before);
      const costs = new Map<string, JobCost>();
      for (const id of [...ids, ...retried]) {
        const answer = await request<{ cost: JobCost; attempts: number }>(stack.url, "GET", `/jobs/${id}`, {
          token: TOKEN,
        });
        costs.set(id, answer.json.cost);
      }
      const stats = await request<{ cost: { today: { jobs: number; totalUsd: number } } }>(
        stack.url,
        "GET",
        "/stats",
        { token: TOKEN },
      );
      stopped = true;
      await stack.stop();

      // Assess
      const jobs = ECHO_JOBS + RETRIED_JOBS;
      const attempts = ECHO_JOBS + 2 * RETRIED_JOBS;
      const workers = workerCapacity(lines);
      expect(workers.nodes, "every worker logs its DynamoDB use when it drains").toBeGreaterThan(0);
      const counted = countedUsd(
        used,
        attempts,
        { read: workers.read / jobs, write: workers.write / jobs },
        jobs,
      );
      const own = [...costs.values()].reduce((sum, cost) => sum + cost.requestsUsd, 0);
      console.log(`jobs' own request cost ÷ counted: ${(own / counted).toFixed(3)}`);
      expect(own / counted).toBeGreaterThan(0.9);
      expect(own / counted).toBeLessThan(1.1);
      // Step Functions transitions are counted exactly: 1 per echo job, 5 per job retried once.
      const transitions = [...costs.values()].reduce(
        (sum, c) => sum + c.breakdown.stepFunctions.transitions,
        0,
      );
      expect(transitions).toBe(used.transitions);
      const echo = costs.get(ids[0] ?? "");
      const flaky = costs.get(retried[0] ?? "");
      expect(echo?.breakdown.stepFunctions.transitions).toBe(1);
      expect(flaky?.breakdown.stepFunctions.transitions).toBe(5);
      expect(flaky?.requestsUsd ?? 0).toBeGreaterThan((echo?.requestsUsd ?? 0) * 2);
      expect(flaky?.breakdown.compute.nodeSeconds ?? 0).toBeGreaterThan(0);
      // GET /stats sums what ended today, these jobs among it.
      expect(stats.status).toBe(200);
      expect(stats.json.cost.today.jobs).toBeGreaterThanOrEqual(jobs);
      expect(stats.json.cost.today.totalUsd).toBeGreaterThan(0);
    } finally {
      raw.destroy();
      if (!stopped) await stack.stop();
    }
  }, 240_000);
});
