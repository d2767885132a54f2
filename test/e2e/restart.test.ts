import { afterAll, describe, expect, inject, it, onTestFailed, vi } from "vitest";
import type { JobStatus } from "../../core/job";
import { LOCAL_REGION } from "../../local/config";
import { type LocalStack, startLocalStack } from "../../local/stack";
import { createDocumentClient } from "../../store/dynamo";
import { NodeRepository } from "../../store/nodes";
import { request } from "../support/api";

/**
 * A restart loses nothing: executions, queues and workers live in the stack's processes and
 * memory, jobs in DynamoDB. A job running when the stack stops, one waiting on it and one waiting
 * for capacity all finish after the next start, which gives each a new execution. Both stacks
 * share the run's DynamoDB Local under one table prefix, as two `npm start`s share JOBQ_DATA_DIR.
 */

const TOKEN = "restart-token";
const PRINCIPAL = `restart-${Date.now()}`;
const DEADLINE_MS = 120_000;

interface Job {
  readonly id: string;
  readonly status: JobStatus;
  readonly statusReason: string;
  readonly result: unknown;
  readonly attempts: number;
}

const stacks: LocalStack[] = [];
/** The workers' output of both stacks, shown when the test fails. */
const workerLines: string[] = [];

afterAll(async () => {
  for (const stack of stacks) await stack.stop();
}, 60_000);

async function start(): Promise<LocalStack> {
  // Handler modules read their configuration once; the new stack's must be fresh imports, as
  // in a new process.
  vi.resetModules();
  const stack = await startLocalStack({
    dynamoEndpoint: inject("dynamoEndpoint"),
    tablePrefix: "jobq-restart-",
    tokens: new Map([[TOKEN, { principal: PRINCIPAL, role: "user" }]]),
    // One small node: the second job has to wait for the first's capacity.
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

async function getJob(stack: LocalStack, id: string): Promise<Job> {
  const response = await request<Job>(stack.url, "GET", `/jobs/${id}`, { token: TOKEN });
  expect(response.status).toBe(200);
  return response.json;
}

async function until(stack: LocalStack, ids: readonly string[], done: (job: Job) => boolean): Promise<Job[]> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const jobs = await Promise.all(ids.map((id) => getJob(stack, id)));
    if (jobs.every(done)) return jobs;
    if (Date.now() > deadline) {
      throw new Error(
        `after ${DEADLINE_MS} ms: ${jobs.map((j) => `${j.id} ${j.status} (${j.statusReason})`).join("; ")}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe("restarting the local stack", () => {
  it("finishes every job that had not ended when it stopped", async () => {
    const ids: string[] = [];
    onTestFailed(async () => {
      const stack = stacks.at(-1);
      const history = stack
        ? await Promise.all(
            ids.map(async (id) => {
              const transitions = await request(stack.url, "GET", `/jobs/${id}/transitions`, {
                token: TOKEN,
              });
              return `${id}: ${JSON.stringify(transitions.json)}`;
            }),
          )
        : [];
      console.error(
        `--- transitions ---\n${history.join("\n")}\n--- last worker output ---\n${workerLines.slice(-120).join("\n")}`,
      );
    });
    // Prepare: a long job running, one waiting for its capacity, one waiting on it
    const first = await start();
    const submit = async (body: Record<string, unknown>) => {
      const response = await request<Job>(first.url, "POST", "/jobs", { token: TOKEN, body });
      expect(response.status).toBe(201);
      return response.json;
    };
    // No backoff: a job restarted in the middle of its backoff waits for the reconciler's next
    // periodic run (a minute or two locally), which is a question of latency, not of loss.
    const running = await submit({
      type: "sleep",
      payload: { seconds: 20 },
      resources: { cpu: 1 },
      retry: { initialDelaySeconds: 0 },
    });
    const waiting = await submit({ type: "echo", payload: { n: 2 }, resources: { cpu: 1 } });
    const dependent = await submit({ type: "echo", payload: { n: 3 }, dependsOn: [running.id] });
    ids.push(running.id, waiting.id, dependent.id);
    await until(first, [running.id], (job) => job.status === "running");

    // Act: stop in the middle of the attempt, start again on the same data
    await first.stop();
    const second = await start();
    const jobs = await until(second, [running.id, waiting.id, dependent.id], (job) =>
      ["completed", "failed", "cancelled", "escalated"].includes(job.status),
    );

    // Assess: the interrupted attempt is retried; nothing is lost
    expect(jobs.map((job) => job.status)).toEqual(["completed", "completed", "completed"]);
    expect(jobs[0]?.attempts).toBeGreaterThanOrEqual(2);
    expect(jobs[1]?.result).toEqual({ n: 2 });
  }, 300_000);

  it("schedules at once after a hard kill left the pool's lease held for an hour", async () => {
    const first = await start();
    const nodes = new NodeRepository(
      createDocumentClient({ region: LOCAL_REGION, endpoint: first.dynamoEndpoint }),
      nodesTable(first),
    );
    await first.stop();
    // What a SIGKILLed process leaves behind: its pass's lease, with the whole time to live ahead.
    expect(await nodes.acquireLease("cpu", "killed-process", new Date(), 3600)).toMatchObject({
      holder: "killed-process",
    });

    const second = await start();
    const submitted = await request<Job>(second.url, "POST", "/jobs", {
      token: TOKEN,
      body: { type: "echo", payload: { after: "kill" }, resources: { cpu: 1 } },
    });
    expect(submitted.status).toBe(201);
    const [job] = await until(second, [submitted.json.id], (j) => j.status === "completed");

    expect(job?.result).toEqual({ after: "kill" });
    expect((await nodes.getLease("cpu"))?.holder).not.toBe("killed-process");
  }, 300_000);
});

function nodesTable(stack: LocalStack): string {
  const name = stack.tables.Nodes;
  if (!name) throw new Error("the stack has no Nodes table");
  return name;
}
