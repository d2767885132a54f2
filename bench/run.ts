/**
 * Run benchmark (`npm run bench`, `npm run bench -- --jobs 500`): no-op `echo` jobs through the
 * whole local stack (API, lifecycle executions on the local Step Functions, scheduler on
 * EventBridge, SQS, one worker process per node), in memory on free loopback ports.
 *
 * - throughput: N jobs (default 300) submitted 16 in flight, jobs/s from the first submission to
 *   the last completion (the jobs' own finishedAt);
 * - submit→running latency on an idle stack: jobs submitted one at a time, each waited for to end
 *   before the next, latency = startedAt − createdAt from GET /jobs/{id};
 * - status change → WebSocket message on that idle stack: a client on WS /jobs/stream, each
 *   message's receipt − the change's updatedAt (p50/p99);
 * - per job over the throughput run: Step Functions state transitions, DynamoDB read and write
 *   units (and what each consumer of the Jobs table's stream adds: the /stats fold, the
 *   broadcaster), SQS requests, Lambda invocations and run time, EventBridge entries, and the AWS request
 *   cost per million jobs these imply at the dated list prices below.
 *
 * Where the counts come from: the local Step Functions, SQS and EventBridge count what they serve
 * (so the workers' calls, made from child processes, are in them); store/dynamo.ts's capacityMeter
 * and local/lambda.ts's lambdaMeter count this process (API handlers, lifecycle, scheduler,
 * reconciler); each worker logs its own capacityMeter when it drains, at the end of the run.
 * Completion is watched with an unmetered DynamoDB client, so the benchmark's own polling is not
 * in the figures. Bounded (every wait has a deadline), stops by itself, talks to 127.0.0.1 only.
 */
import { once } from "node:events";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { BatchGetItemCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import WebSocket from "ws";
import { STATS_CONSUMER } from "../functions/stats-settings";
import type { LocalStack } from "../local/stack";
import { awsClientOptions } from "../store/aws";

// The in-process handlers' INFO lines would bury the report. Powertools fixes a logger's level
// when it is built (and goes back to it on every invocation), so the modules that build it are
// imported only now, and the variable is gone again before the worker processes start: their
// environment is this process's, and each worker logs its DynamoDB use at INFO when it drains.
process.env.POWERTOOLS_LOG_LEVEL = "WARN";
await import("../app/logger");
const { startLocalStack } = await import("../local/stack");
const { lambdaMeter } = await import("../local/lambda");
const { capacityMeter } = await import("../store/dynamo");
delete process.env.POWERTOOLS_LOG_LEVEL;

const IN_FLIGHT = 16;
const WARMUP_JOBS = 10;
const IDLE_JOBS_MAX = 50;
const RETRIED_JOBS_MAX = 60;
const TOKEN = "bench-token";
const DEADLINE_MS = 180_000;
const TERMINAL = new Set(["completed", "failed", "cancelled", "escalated"]);

/**
 * us-east-1 list prices as of 2026-11 (they change: check the AWS pricing pages). Free tiers
 * are left out.
 */
const PRICES = {
  date: "2026-11",
  /** Step Functions Standard, per state transition. */
  stateTransition: 25 / 1e6,
  /** DynamoDB on-demand: one WRU per KB written (2 in a transaction), one RRU per 4 KB read. */
  writeUnit: 0.625 / 1e6,
  readUnit: 0.125 / 1e6,
  /** SQS standard, per request (each 64 KB chunk; empty receives count). */
  sqsRequest: 0.4 / 1e6,
  /** Lambda, per request and per GB-second on arm64. */
  lambdaRequest: 0.2 / 1e6,
  lambdaGbSecond: 0.0000133334,
  /** EventBridge custom events, per entry (64 KB chunk). */
  eventEntry: 1.0 / 1e6,
  /**
   * API Gateway REST API (what lib/job-api.ts deploys), per request (first 333 million a month).
   * Its token authorizer's answers are cached 5 minutes per token: no authorizer call per job.
   */
  apiRequest: 3.5 / 1e6,
} as const;

interface JobState {
  readonly status: string;
  readonly createdAt: string | undefined;
  readonly startedAt: string | undefined;
  readonly finishedAt: string | undefined;
}

interface Meters {
  readonly transitions: number;
  readonly executions: number;
  readonly read: number;
  readonly write: number;
  readonly dynamoRequests: number;
  /** DynamoDB use per function (store/dynamo.ts#meteredFunction). */
  readonly dynamoByFunction: ReadonlyMap<string, { read: number; write: number; requests: number }>;
  readonly sqs: Readonly<Record<string, number>>;
  readonly eventEntries: number;
  readonly putEventsCalls: number;
  readonly lambda: ReadonlyMap<string, { invocations: number; durationMs: number }>;
}

function readMeters(stack: LocalStack): Meters {
  const execution = stack.execution;
  if (!execution) throw new Error("the stack runs no jobs");
  const sfn = execution.meters.stepFunctions();
  const events = execution.meters.events();
  const dynamo = capacityMeter.snapshot();
  return {
    transitions: sfn.stateTransitions,
    executions: sfn.executions,
    read: dynamo.read,
    write: dynamo.write,
    dynamoRequests: dynamo.requests,
    dynamoByFunction: new Map([...capacityMeter.byFunction].map(([name, entry]) => [name, { ...entry }])),
    sqs: execution.meters.sqsRequests(),
    eventEntries: events.entries,
    putEventsCalls: events.putEventsCalls,
    lambda: new Map([...lambdaMeter].map(([name, entry]) => [name, { ...entry }])),
  };
}

function diffMeters(after: Meters, before: Meters): Meters {
  const sqs: Record<string, number> = {};
  for (const [action, count] of Object.entries(after.sqs)) sqs[action] = count - (before.sqs[action] ?? 0);
  const lambda = new Map<string, { invocations: number; durationMs: number }>();
  for (const [name, entry] of after.lambda) {
    const earlier = before.lambda.get(name) ?? { invocations: 0, durationMs: 0 };
    lambda.set(name, {
      invocations: entry.invocations - earlier.invocations,
      durationMs: entry.durationMs - earlier.durationMs,
    });
  }
  const dynamoByFunction = new Map<string, { read: number; write: number; requests: number }>();
  for (const [name, entry] of after.dynamoByFunction) {
    const earlier = before.dynamoByFunction.get(name) ?? { read: 0, write: 0, requests: 0 };
    dynamoByFunction.set(name, {
      read: entry.read - earlier.read,
      write: entry.write - earlier.write,
      requests: entry.requests - earlier.requests,
    });
  }
  return {
    transitions: after.transitions - before.transitions,
    executions: after.executions - before.executions,
    read: after.read - before.read,
    write: after.write - before.write,
    dynamoRequests: after.dynamoRequests - before.dynamoRequests,
    dynamoByFunction,
    sqs,
    eventEntries: after.eventEntries - before.eventEntries,
    putEventsCalls: after.putEventsCalls - before.putEventsCalls,
    lambda,
  };
}

/**
 * A job that fails its first attempt and succeeds on its second, with no backoff: what one retried
 * attempt adds to a job, measured against the echo jobs of the throughput run.
 */
const RETRIED_JOB = {
  type: "flaky",
  payload: { failTimes: 1 },
  retry: { maxAttempts: 2, initialDelaySeconds: 0 },
} as const;

async function submit(
  url: string,
  i: number,
  job: object = { type: "echo", payload: { i } },
): Promise<string> {
  const response = await fetch(`${url}/jobs`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: `bench run ${i}`, ...job }),
  });
  const text = await response.text();
  if (response.status !== 201) throw new Error(`POST /jobs: ${response.status} ${text.slice(0, 200)}`);
  return (JSON.parse(text) as { id: string }).id;
}

async function getJob(url: string, id: string): Promise<JobState> {
  const response = await fetch(`${url}/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /jobs/${id}: ${response.status} ${text.slice(0, 200)}`);
  const job = JSON.parse(text) as {
    status: string;
    createdAt: string;
    startedAt: string | null;
    finishedAt: string | null;
  };
  return {
    status: job.status,
    createdAt: job.createdAt,
    startedAt: job.startedAt ?? undefined,
    finishedAt: job.finishedAt ?? undefined,
  };
}

/** Job items read straight from the table, outside every meter. */
async function readJobs(client: DynamoDBClient, table: string, ids: readonly string[]): Promise<JobState[]> {
  const states: JobState[] = [];
  for (let at = 0; at < ids.length; at += 100) {
    let keys = ids.slice(at, at + 100).map((id) => ({ pk: { S: `JOB#${id}` }, sk: { S: "JOB" } }));
    while (keys.length > 0) {
      const out = await client.send(
        new BatchGetItemCommand({
          RequestItems: {
            [table]: {
              Keys: keys,
              ProjectionExpression: "#status, createdAt, startedAt, finishedAt",
              ExpressionAttributeNames: { "#status": "status" },
            },
          },
        }),
      );
      for (const item of out.Responses?.[table] ?? []) {
        states.push({
          status: item.status?.S ?? "",
          createdAt: item.createdAt?.S,
          startedAt: item.startedAt?.S,
          finishedAt: item.finishedAt?.S,
        });
      }
      keys = (out.UnprocessedKeys?.[table]?.Keys ?? []) as typeof keys;
    }
  }
  return states;
}

async function waitUntilEnded(
  client: DynamoDBClient,
  table: string,
  ids: readonly string[],
): Promise<JobState[]> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const states = await readJobs(client, table, ids);
    if (states.length === ids.length && states.every((s) => TERMINAL.has(s.status))) return states;
    if (Date.now() > deadline) {
      const open = states.filter((s) => !TERMINAL.has(s.status)).length;
      throw new Error(`${open} of ${ids.length} jobs still open after ${DEADLINE_MS} ms`);
    }
    await sleep(50);
  }
}

async function submitAll(url: string, count: number, offset: number, job?: object): Promise<string[]> {
  const ids: string[] = new Array(count);
  let next = 0;
  const sender = async (): Promise<void> => {
    for (let i = next++; i < count; i = next++) ids[i] = await submit(url, offset + i, job);
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, count) }, sender));
  return ids;
}

/** The Jobs table stream's consumers (local/stack.ts#JOB_STREAM_CONSUMERS), by function name. */
const STREAM_CONSUMERS: readonly (readonly [string, string])[] = [
  ["jobq-stats", "GET /stats's stream consumer"],
  ["jobq-stream-broadcaster", "the job stream's broadcaster"],
];

/** A stream client on every job of the bench's principal: the delays of each job's messages. */
async function openStream(url: string): Promise<{ socket: WebSocket; delays: Map<string, number[]> }> {
  const health = (await (await fetch(`${url}/health`)).json()) as { streamUrl?: string | null };
  if (!health.streamUrl) throw new Error("GET /health names no streamUrl");
  const socket = new WebSocket(health.streamUrl, { headers: { authorization: `Bearer ${TOKEN}` } });
  const delays = new Map<string, number[]>();
  socket.on("message", (data) => {
    const received = Date.now();
    const message = JSON.parse(String(data)) as { type?: string; job?: { id: string; updatedAt: string } };
    if (message.type !== "job" || !message.job) return;
    const list = delays.get(message.job.id) ?? [];
    list.push(received - Date.parse(message.job.updatedAt));
    delays.set(message.job.id, list);
  });
  await once(socket, "open");
  return { socket, delays };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? Number.NaN;
}

function statusCounts(states: readonly JobState[]): string {
  const counts = new Map<string, number>();
  for (const s of states) counts.set(s.status, (counts.get(s.status) ?? 0) + 1);
  return [...counts].map(([status, n]) => `${n} ${status}`).join(", ");
}

/** The workers' own DynamoDB use, from the line each logs when it drains. */
function workerCapacity(lines: readonly string[]): {
  read: number;
  write: number;
  requests: number;
  nodes: number;
} {
  const total = { read: 0, write: 0, requests: 0, nodes: 0 };
  for (const line of lines) {
    const json = line.slice(line.indexOf("{"));
    try {
      const parsed = JSON.parse(json) as { message?: string; capacity?: Record<string, unknown> };
      if (parsed.message !== "capacity consumed" || !parsed.capacity) continue;
      const { read, write, requests } = parsed.capacity;
      total.read += typeof read === "number" ? read : 0;
      total.write += typeof write === "number" ? write : 0;
      total.requests += typeof requests === "number" ? requests : 0;
      total.nodes += 1;
    } catch {
      // not a JSON log line
    }
  }
  return total;
}

const f = (value: number, digits = 2): string => (Number.isFinite(value) ? value.toFixed(digits) : "n/a");

function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join("  "),
    )
    .join("\n");
}

/** The AWS request cost lines of `jobs` jobs' meters (Lambda at 128 MB), per job. */
function costLines(
  used: Meters,
  jobs: number,
  worker: { readonly read: number; readonly write: number },
): [string, string, number][] {
  const per = (n: number): number => n / jobs;
  const sqsTotal = Object.values(used.sqs).reduce((a, b) => a + b, 0);
  const lambdaRows = [...used.lambda].filter(([, e]) => e.invocations > 0);
  const lambdaRequests = 1 + per(lambdaRows.reduce((a, [, e]) => a + e.invocations, 0));
  const lambdaMs = per(lambdaRows.reduce((a, [, e]) => a + e.durationMs, 0));
  const readUnits = per(used.read) + worker.read;
  const writeUnits = per(used.write) + worker.write;
  return [
    [
      "Step Functions Standard",
      `${f(per(used.transitions))} transitions`,
      per(used.transitions) * PRICES.stateTransition,
    ],
    ["DynamoDB writes", `${f(writeUnits)} WRU`, writeUnits * PRICES.writeUnit],
    ["DynamoDB reads", `${f(readUnits)} RRU`, readUnits * PRICES.readUnit],
    ["SQS", `${f(per(sqsTotal))} requests`, per(sqsTotal) * PRICES.sqsRequest],
    ["Lambda requests", `${f(lambdaRequests)} invocations`, lambdaRequests * PRICES.lambdaRequest],
    [
      "Lambda duration at 128 MB",
      `${f(lambdaMs, 1)} ms`,
      (lambdaMs / 1000) * (128 / 1024) * PRICES.lambdaGbSecond,
    ],
    [
      "EventBridge custom events",
      `${f(per(used.eventEntries))} entries`,
      per(used.eventEntries) * PRICES.eventEntry,
    ],
    ["API Gateway REST API (submit)", "1 request", PRICES.apiRequest],
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { jobs: { type: "string", default: "300" } } });
  const jobs = Number(values.jobs);
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 100_000)
    throw new Error("--jobs takes a whole number, 1 to 100000");
  const idleJobs = Math.min(IDLE_JOBS_MAX, jobs);

  const workerLines: string[] = [];
  const capacityLines: string[] = [];
  const stack = await startLocalStack({
    port: 0,
    host: "127.0.0.1",
    tokens: new Map([[TOKEN, { principal: "bench", role: "user" }]]),
    workerShutdownGraceSeconds: 2,
    workerOutput: (line) => {
      if (line.includes("capacity consumed")) capacityLines.push(line);
      workerLines.push(line);
      if (workerLines.length > 200) workerLines.shift();
    },
  });
  const jobsTable = stack.tables.Jobs;
  if (!jobsTable) throw new Error("the stack has no Jobs table");
  const raw = new DynamoDBClient(awsClientOptions(stack.dynamoEndpoint, "us-east-1"));
  let stopped = false;
  try {
    console.log(`jobq run benchmark — local stack at ${stack.url} (DynamoDB Local in memory)`);
    console.log(
      `node ${process.version}, ${availableParallelism()} CPUs, ${stack.execution?.workers.length ?? 0} worker nodes`,
    );

    // Cold imports, JIT, worker start-up and DynamoDB Local's first requests are not measured.
    const warmIds = await submitAll(stack.url, WARMUP_JOBS, 0);
    await waitUntilEnded(raw, jobsTable, warmIds);

    // Throughput: N jobs, 16 submissions in flight.
    const before = readMeters(stack);
    const firstSubmit = Date.now();
    const ids = await submitAll(stack.url, jobs, WARMUP_JOBS);
    const submittedMs = Date.now() - firstSubmit;
    const ended = await waitUntilEnded(raw, jobsTable, ids);
    // The last events' deliveries, the executions' final states, and the /stats consumer's last
    // batching window (it folds what its window gathered, as in AWS).
    await sleep(500 + STATS_CONSUMER.eventSource.maxBatchingWindowSeconds * 1000);
    const used = diffMeters(readMeters(stack), before);
    const lastFinish = Math.max(...ended.map((s) => Date.parse(s.finishedAt ?? "")));
    const wallMs = lastFinish - firstSubmit;

    // Latency on an idle stack: one job at a time, each to its end before the next. A stream
    // client watches all of them: each status change's message, received − the change's updatedAt
    // (the same clock: everything runs on this machine).
    const stream = await openStream(stack.url);
    const latencies: number[] = [];
    const idleIds: string[] = [];
    for (let i = 0; i < idleJobs; i += 1) {
      const id = await submit(stack.url, WARMUP_JOBS + jobs + i);
      idleIds.push(id);
      await waitUntilEnded(raw, jobsTable, [id]);
      const job = await getJob(stack.url, id);
      if (job.createdAt && job.startedAt)
        latencies.push(Date.parse(job.startedAt) - Date.parse(job.createdAt));
    }
    latencies.sort((a, b) => a - b);

    // Retries: jobs whose first attempt fails and second succeeds, over the same meters.
    const retriedJobs = Math.max(1, Math.min(RETRIED_JOBS_MAX, Math.floor(jobs / 5)));
    const beforeRetries = readMeters(stack);
    const retriedIds = await submitAll(stack.url, retriedJobs, WARMUP_JOBS + jobs + idleJobs, RETRIED_JOB);
    const retriedEnded = await waitUntilEnded(raw, jobsTable, retriedIds);
    await sleep(500 + STATS_CONSUMER.eventSource.maxBatchingWindowSeconds * 1000);
    const retriedUsed = diffMeters(readMeters(stack), beforeRetries);
    await sleep(1000); // the last changes' messages
    stream.socket.close();
    const streamLatencies = idleIds.flatMap((id) => stream.delays.get(id) ?? []).sort((a, b) => a - b);
    // Every change of an echo job: queued, dispatched, running, completed.
    const streamMessages = idleIds.reduce((n, id) => n + (stream.delays.get(id)?.length ?? 0), 0);

    stopped = true;
    await stack.stop();
    await sleep(200); // the workers' last lines
    const workers = workerCapacity(capacityLines);
    const jobsRun = WARMUP_JOBS + jobs + idleJobs + retriedJobs;
    // Worker DynamoDB is logged once per node, for the whole run: spread over attempts (a retried
    // job has two), the best split the figures allow.
    const attemptsRun = jobsRun + retriedJobs;

    console.log("\nThroughput");
    console.log(
      table([
        ["jobs", String(jobs)],
        ["outcome", statusCounts(ended)],
        ["submission (16 in flight)", `${f(submittedMs / 1000)} s`],
        ["first submit → last completion", `${f(wallMs / 1000)} s`],
        ["throughput", `${f((jobs / wallMs) * 1000, 1)} jobs/s`],
      ]),
    );
    console.log(`\nSubmit → running on an idle stack (${latencies.length} jobs, one at a time)`);
    console.log(
      table([
        ["p50", `${f(percentile(latencies, 50), 0)} ms`],
        ["p99", `${f(percentile(latencies, 99), 0)} ms`],
        ["max", `${f(percentile(latencies, 100), 0)} ms`],
      ]),
    );

    console.log(
      `\nStatus change → its WebSocket message on an idle stack (${streamMessages} messages, ${idleIds.length} jobs)`,
    );
    console.log(
      table([
        ["p50", `${f(percentile(streamLatencies, 50), 0)} ms`],
        ["p99", `${f(percentile(streamLatencies, 99), 0)} ms`],
        ["max", `${f(percentile(streamLatencies, 100), 0)} ms`],
      ]),
    );

    // Per job, over the throughput run (worker DynamoDB: over the whole run, see below).
    const per = (n: number): number => n / jobs;
    const sqsTotal = Object.values(used.sqs).reduce((a, b) => a + b, 0);
    const lambdaRows = [...used.lambda].filter(([, e]) => e.invocations > 0);
    const lambdaMs = lambdaRows.reduce((a, [, e]) => a + e.durationMs, 0);
    const workerRead = workers.read / attemptsRun;
    const workerWrite = workers.write / attemptsRun;

    console.log(`\nPer job (throughput run of ${jobs})`);
    const rows: string[][] = [["", "per job"]];
    rows.push(["Step Functions executions", f(per(used.executions))]);
    rows.push(["Step Functions state transitions", f(per(used.transitions))]);
    rows.push(["DynamoDB RRU, control plane (API, lifecycle, scheduler, reconciler)", f(per(used.read))]);
    rows.push(["DynamoDB WRU, control plane", f(per(used.write))]);
    rows.push(["DynamoDB requests, control plane", f(per(used.dynamoRequests))]);
    for (const [name, label] of STREAM_CONSUMERS) {
      const entry = used.dynamoByFunction.get(name) ?? { read: 0, write: 0, requests: 0 };
      rows.push([
        `  of which ${label}: WRU / RRU / requests`,
        `${f(per(entry.write))} / ${f(per(entry.read))} / ${f(per(entry.requests))}`,
      ]);
    }
    rows.push([
      `DynamoDB RRU, workers (${workers.nodes} nodes, over all ${attemptsRun} attempts of ${jobsRun} jobs)`,
      f(workerRead),
    ]);
    rows.push(["DynamoDB WRU, workers", f(workerWrite)]);
    rows.push(["DynamoDB requests, workers", f(workers.requests / attemptsRun)]);
    rows.push(["SQS requests", f(per(sqsTotal))]);
    for (const [action, count] of Object.entries(used.sqs).sort()) {
      if (count > 0) rows.push([`  ${action}`, f(per(count))]);
    }
    rows.push(["Lambda invocations (API: 1 submission each)", f(1)]);
    for (const [name, entry] of lambdaRows) {
      rows.push([`Lambda invocations, ${name}`, f(per(entry.invocations))]);
      rows.push([
        "  mean run time, ms (shared event loop: an upper bound)",
        f(entry.durationMs / entry.invocations, 1),
      ]);
    }
    rows.push(["EventBridge entries (PutEvents)", f(per(used.eventEntries))]);
    rows.push(["  PutEvents calls", f(per(used.putEventsCalls))]);
    console.log(table(rows));
    if (workers.nodes === 0) {
      console.log("  (no worker logged its capacity when it drained: worker DynamoDB use is missing)");
    }

    // Cost per million jobs. Lambda run time: the in-process handlers' measured time (their
    // DynamoDB calls go to DynamoDB Local, so this is indicative); the API function's is not
    // measured and is left out.
    const million = 1e6;
    const gbSeconds = (mb: number): number => (per(lambdaMs) / 1000) * (mb / 1024);
    const costs = costLines(used, jobs, { read: workerRead, write: workerWrite });
    const costRows: string[][] = [["", "per job", "USD per million jobs"]];
    let total = 0;
    for (const [label, amount, perJob] of costs) {
      costRows.push([label, amount, f(perJob * million)]);
      total += perJob * million;
    }
    costRows.push(["total (Lambda at 128 MB)", "", f(total)]);
    const at1024 = gbSeconds(1024) * PRICES.lambdaGbSecond * million;
    costRows.push(["  Lambda duration at 1024 MB instead", "", f(at1024)]);
    costRows.push([
      "total (Lambda at 1024 MB)",
      "",
      f(total - gbSeconds(128) * PRICES.lambdaGbSecond * million + at1024),
    ]);
    console.log(
      `\nAWS request cost per million jobs — us-east-1 list prices as of ${PRICES.date}; prices change`,
    );
    console.log(table(costRows));
    console.log(
      [
        "",
        "Prices: Step Functions Standard $25/M transitions; DynamoDB on-demand $0.625/M WRU, $0.125/M RRU;",
        "SQS $0.40/M requests; Lambda $0.20/M requests + $0.0000133334/GB-s (arm64); EventBridge $1.00/M",
        "custom events; API Gateway REST API $3.50/M requests. Free tiers, ECS (the workers' compute),",
        "storage, data transfer and CloudWatch are not included. Time-driven calls (the scheduler's",
        "sweep, the workers' empty long polls and node heartbeats) are spread over the jobs of this run,",
        "so they weigh more per job at low rates. The workers' DynamoDB figures come from the line each",
        "worker logs when it drains, divided by every job of the run (warm-up and idle run included).",
        "Lambda run time is the in-process handlers' wall time on one event loop shared with the API,",
        "the emulators and the benchmark, against DynamoDB Local under load: an upper bound.",
      ].join("\n"),
    );

    // What one retried attempt adds: the retried jobs' cost per job less an echo job's. The
    // workers' share is one more attempt at the run's mean per attempt.
    const retriedCost = costLines(retriedUsed, retriedJobs, { read: 2 * workerRead, write: 2 * workerWrite });
    const retriedTotal = retriedCost.reduce((a, [, , perJob]) => a + perJob * million, 0);
    const retryRows: string[][] = [["", "per retried job", "extra per retry"]];
    retryRows.push(["outcome", statusCounts(retriedEnded), ""]);
    for (const [i, [label, amount, perJob]] of retriedCost.entries()) {
      const single = costs[i]?.[2] ?? 0;
      retryRows.push([label, amount, `$${f((perJob - single) * million)}`]);
    }
    retryRows.push(["total, USD per million", f(retriedTotal), `$${f(retriedTotal - total)}`]);
    console.log(
      `\nOne retried attempt (${retriedJobs} jobs of type flaky: attempt 1 fails, attempt 2 succeeds, no backoff)`,
    );
    console.log(table(retryRows));
  } catch (error) {
    console.error(`--- last worker output ---\n${workerLines.slice(-40).join("\n")}`);
    throw error;
  } finally {
    raw.destroy();
    if (!stopped) await stack.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
