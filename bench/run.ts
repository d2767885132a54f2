/**
 * Run benchmark (`npm run bench`, `npm run bench -- --jobs 500`): no-op `echo` jobs through the
 * whole local stack (API, lifecycle executions on the local Step Functions, scheduler on
 * EventBridge, SQS, one worker process per node), in memory on free loopback ports.
 *
 * - throughput: N jobs (default 300) submitted 16 in flight, jobs/s from the first submission to
 *   the last completion (the jobs' own finishedAt);
 * - submit→running latency on an idle stack: jobs submitted one at a time, each waited for to end
 *   before the next, latency = startedAt − createdAt from GET /jobs/{id}, split at the job's
 *   `dispatched` transition into the control plane's half and the run's;
 * - status change → WebSocket message on that idle stack: a client on WS /jobs/stream, each
 *   message's receipt − the change's updatedAt (p50/p99);
 * - per job over the throughput run: Step Functions state transitions, DynamoDB read and write
 *   units (and what each consumer of the Jobs table's stream adds: the /stats fold, the
 *   broadcaster), SQS requests, Lambda invocations and run time, EventBridge entries, and the AWS request
 *   cost per million jobs these imply at the dated list prices below.
 *
 * DynamoDB write units of a transaction are counted item by item by DynamoDB's billing rules
 * (store/write-units.ts, from each item read before it and the request), because DynamoDB Local's own
 * figure counts a transaction of many items as one; `--transaction-units reported` takes DynamoDB
 * Local's figure instead. The reads that takes are not metered, but they load DynamoDB Local: the
 * throughput and latency figures of a `reported` run are the ones to compare with earlier runs.
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
import type { JobCost } from "../core/cost";
import { PRICES } from "../core/prices";
import { STATS_CONSUMER } from "../functions/stats-settings";
import { awsClientOptions } from "../store/aws";

// The in-process handlers' INFO lines would bury the report. Powertools fixes a logger's level
// when it is built (and goes back to it on every invocation), so the modules that build it are
// imported only now, and the variable is gone again before the worker processes start: their
// environment is this process's, and each worker logs its DynamoDB use at INFO when it drains.
process.env.POWERTOOLS_LOG_LEVEL = "WARN";
await import("../app/logger");
const { startLocalStack } = await import("../local/stack");
const { costLines, diffMeters, readMeters, workerCapacity } = await import("./meters");
delete process.env.POWERTOOLS_LOG_LEVEL;

const IN_FLIGHT = 16;
const WARMUP_JOBS = 10;
const IDLE_JOBS_MAX = 50;
const RETRIED_JOBS_MAX = 60;
const TOKEN = "bench-token";
const DEADLINE_MS = 180_000;
const TERMINAL = new Set(["completed", "failed", "cancelled", "escalated"]);

interface JobState {
  readonly id: string;
  readonly status: string;
  readonly createdAt: string | undefined;
  readonly startedAt: string | undefined;
  readonly finishedAt: string | undefined;
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

/** GET `path` as the bench's principal; anything but 200 stops the run. */
async function apiGet<T>(url: string, path: string): Promise<T> {
  const response = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET ${path}: ${response.status} ${text.slice(0, 200)}`);
  return JSON.parse(text) as T;
}

async function getJob(url: string, id: string): Promise<JobState> {
  const job = await apiGet<{
    status: string;
    createdAt: string;
    startedAt: string | null;
    finishedAt: string | null;
  }>(url, `/jobs/${id}`);
  return {
    id,
    status: job.status,
    createdAt: job.createdAt,
    startedAt: job.startedAt ?? undefined,
    finishedAt: job.finishedAt ?? undefined,
  };
}

/** When the job was admitted: its `dispatched` transition's time (GET /jobs/{id}/transitions). */
async function dispatchedAt(url: string, id: string): Promise<number | undefined> {
  const { items } = await apiGet<{ items: { to: string; at: string }[] }>(url, `/jobs/${id}/transitions`);
  const dispatched = items.find((t) => t.to === "dispatched");
  return dispatched ? Date.parse(dispatched.at) : undefined;
}

/** The jobs' own `cost` (GET /jobs/{id}), averaged: what the product attributes to each job. */
async function meanCost(url: string, ids: readonly string[]): Promise<JobCost> {
  const costs: JobCost[] = [];
  for (const id of ids) {
    const response = await fetch(`${url}/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const job = (await response.json()) as { cost?: JobCost };
    if (!job.cost) throw new Error(`GET /jobs/${id} has no cost`);
    costs.push(job.cost);
  }
  const mean = (pick: (c: JobCost) => number): number =>
    costs.reduce((a, c) => a + pick(c), 0) / costs.length;
  const b = (c: JobCost): JobCost["breakdown"] => c.breakdown;
  return {
    totalUsd: mean((c) => c.totalUsd),
    requestsUsd: mean((c) => c.requestsUsd),
    computeUsd: mean((c) => c.computeUsd),
    breakdown: {
      stepFunctions: {
        transitions: mean((c) => b(c).stepFunctions.transitions),
        usd: mean((c) => b(c).stepFunctions.usd),
      },
      dynamodb: {
        writeUnits: mean((c) => b(c).dynamodb.writeUnits),
        readUnits: mean((c) => b(c).dynamodb.readUnits),
        usd: mean((c) => b(c).dynamodb.usd),
      },
      sqs: { requests: mean((c) => b(c).sqs.requests), usd: mean((c) => b(c).sqs.usd) },
      lambda: {
        invocations: mean((c) => b(c).lambda.invocations),
        gbSeconds: mean((c) => b(c).lambda.gbSeconds),
        usd: mean((c) => b(c).lambda.usd),
      },
      eventBridge: { entries: mean((c) => b(c).eventBridge.entries), usd: mean((c) => b(c).eventBridge.usd) },
      api: { requests: mean((c) => b(c).api.requests), usd: mean((c) => b(c).api.usd) },
      compute: {
        nodeSeconds: mean((c) => b(c).compute.nodeSeconds),
        share: mean((c) => b(c).compute.share),
        hourlyUsd: mean((c) => b(c).compute.hourlyUsd),
        usd: mean((c) => b(c).compute.usd),
      },
    },
    priceTable: costs[0]?.priceTable ?? "",
  };
}

/** The counted per-job figures beside the mean of the jobs' own `cost`, USD per million jobs. */
function attributionRows(counted: readonly [string, string, number][], own: JobCost): string[][] {
  const b = own.breakdown;
  const ownLines: [string, number][] = [
    [`${f(b.stepFunctions.transitions)} transitions`, b.stepFunctions.usd],
    [`${f(b.dynamodb.writeUnits)} WRU`, b.dynamodb.writeUnits * PRICES.writeUnit],
    [`${f(b.dynamodb.readUnits)} RRU`, b.dynamodb.readUnits * PRICES.readUnit],
    [`${f(b.sqs.requests)} requests`, b.sqs.usd],
    [`${f(b.lambda.invocations)} invocations`, b.lambda.invocations * PRICES.lambdaRequest],
    [`${f(b.lambda.gbSeconds * 8000, 1)} ms`, b.lambda.gbSeconds * PRICES.lambdaGbSecond],
    [`${f(b.eventBridge.entries)} entries`, b.eventBridge.usd],
    [`${f(b.api.requests)} requests`, b.api.usd],
  ];
  const rows: string[][] = [["", "counted per job", "USD/M", "jobs' own cost (mean)", "USD/M"]];
  let total = 0;
  counted.forEach(([label, amount, usd], i) => {
    const [ownAmount, ownUsd] = ownLines[i] ?? ["", 0];
    rows.push([label, amount, f(usd * 1e6), ownAmount, f(ownUsd * 1e6)]);
    total += usd;
  });
  rows.push(["requests, total", "", f(total * 1e6), "", f(own.requestsUsd * 1e6)]);
  rows.push(["  jobs' own cost ÷ counted", "", "", "", f(own.requestsUsd / total, 3)]);
  rows.push([
    "compute (node time × pool hourlyUsd × share)",
    "",
    "",
    `${f(b.compute.nodeSeconds, 3)} s`,
    f(own.computeUsd * 1e6),
  ]);
  return rows;
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
              ProjectionExpression: "pk, #status, createdAt, startedAt, finishedAt",
              ExpressionAttributeNames: { "#status": "status" },
            },
          },
        }),
      );
      for (const item of out.Responses?.[table] ?? []) {
        states.push({
          id: (item.pk?.S ?? "").slice("JOB#".length),
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

/**
 * Waits for every job to end. Only the jobs still open are read again, and at most every
 * `pollMs`: DynamoDB Local serves the bench's reads on the same 2 cores as the stack's, so
 * reading all 300 jobs every 50 ms (as this once did) took CPU from the system it measures. The
 * figures do not depend on the poll: throughput is taken from the jobs' own finishedAt.
 */
async function waitUntilEnded(
  client: DynamoDBClient,
  table: string,
  ids: readonly string[],
  pollMs = 50,
): Promise<JobState[]> {
  const deadline = Date.now() + DEADLINE_MS;
  const ended = new Map<string, JobState>();
  let open = [...ids];
  for (;;) {
    const states = await readJobs(client, table, open);
    for (const state of states) if (TERMINAL.has(state.status)) ended.set(state.id, state);
    open = open.filter((id) => !ended.has(id));
    if (open.length === 0) return ids.map((id) => ended.get(id) as JobState);
    if (Date.now() > deadline) {
      throw new Error(`${open.length} of ${ids.length} jobs still open after ${DEADLINE_MS} ms`);
    }
    await sleep(pollMs);
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

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      jobs: { type: "string", default: "300" },
      "transaction-units": { type: "string", default: "billed" },
    },
  });
  const jobs = Number(values.jobs);
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 100_000)
    throw new Error("--jobs takes a whole number, 1 to 100000");
  const transactionUnits = values["transaction-units"];
  if (transactionUnits !== "billed" && transactionUnits !== "reported")
    throw new Error("--transaction-units takes billed or reported");
  // DynamoDB Local reports a transaction of many items as if it wrote one (10 small puts: 2 write
  // units; DynamoDB bills 20) and PartiQL's updates as nothing. `billed` counts those writes by
  // DynamoDB's rules from each item before and after (store/write-units.ts; the after image worked
  // out from the request), here and in the workers, which inherit this environment; `reported`
  // takes DynamoDB Local's figures, as runs before 2026-12-07 did.
  if (transactionUnits === "billed") process.env.JOBQ_METER_TRANSACTIONS = "by-item";
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
      transactionUnits === "billed"
        ? "transactions' write units: each item by DynamoDB's billing rules (--transaction-units reported: DynamoDB Local's own figure)"
        : "transactions' write units: DynamoDB Local's own figure, which counts a transaction of many items as one",
    );
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
    const ended = await waitUntilEnded(raw, jobsTable, ids, 250);
    // The last events' deliveries, the executions' final states, and the /stats consumer's last
    // batching window (it folds what its window gathered, as in AWS).
    await sleep(500 + STATS_CONSUMER.eventSource.maxBatchingWindowSeconds * 1000);
    const used = diffMeters(readMeters(stack), before);
    // The jobs' own cost, read after the meters were: these GETs are in no measured figure.
    const ownCost = await meanCost(stack.url, ids);
    const lastFinish = Math.max(...ended.map((s) => Date.parse(s.finishedAt ?? "")));
    const wallMs = lastFinish - firstSubmit;

    // Latency on an idle stack: one job at a time, each to its end before the next. A stream
    // client watches all of them: each status change's message, received − the change's updatedAt
    // (the same clock: everything runs on this machine).
    const stream = await openStream(stack.url);
    const latencies: number[] = [];
    // The two halves of it: the control plane's (the stream's wake-up, the scheduling pass, the
    // admission) and the run's (the execution's Dispatch, SQS, the worker's receive and start).
    const toAdmission: number[] = [];
    const toStart: number[] = [];
    const idleIds: string[] = [];
    for (let i = 0; i < idleJobs; i += 1) {
      const id = await submit(stack.url, WARMUP_JOBS + jobs + i);
      idleIds.push(id);
      await waitUntilEnded(raw, jobsTable, [id]);
      const job = await getJob(stack.url, id);
      if (job.createdAt && job.startedAt) {
        latencies.push(Date.parse(job.startedAt) - Date.parse(job.createdAt));
        const admittedAt = await dispatchedAt(stack.url, id);
        if (admittedAt !== undefined) {
          toAdmission.push(admittedAt - Date.parse(job.createdAt));
          toStart.push(Date.parse(job.startedAt) - admittedAt);
        }
      }
    }
    for (const list of [latencies, toAdmission, toStart]) list.sort((a, b) => a - b);

    // Retries: jobs whose first attempt fails and second succeeds, over the same meters.
    const retriedJobs = Math.max(1, Math.min(RETRIED_JOBS_MAX, Math.floor(jobs / 5)));
    const beforeRetries = readMeters(stack);
    const retriedIds = await submitAll(stack.url, retriedJobs, WARMUP_JOBS + jobs + idleJobs, RETRIED_JOB);
    const retriedEnded = await waitUntilEnded(raw, jobsTable, retriedIds, 250);
    await sleep(500 + STATS_CONSUMER.eventSource.maxBatchingWindowSeconds * 1000);
    const retriedUsed = diffMeters(readMeters(stack), beforeRetries);
    const retriedOwnCost = await meanCost(stack.url, retriedIds);
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
        // Each moves the updatedSince indexes' entries of every job that changes after it (the
        // key holds the minute of the last change: docs/data-model.md), up to ~5 WRU per job here.
        [
          "UTC minute ends within it",
          String(Math.floor(lastFinish / 60_000) - Math.floor(firstSubmit / 60_000)),
        ],
      ]),
    );
    console.log(`\nSubmit → running on an idle stack (${latencies.length} jobs, one at a time)`);
    console.log(
      table([
        ["p50", `${f(percentile(latencies, 50), 0)} ms`],
        ["p99", `${f(percentile(latencies, 99), 0)} ms`],
        ["max", `${f(percentile(latencies, 100), 0)} ms`],
        [
          "of which submit → dispatched, p50 / p99",
          `${f(percentile(toAdmission, 50), 0)} / ${f(percentile(toAdmission, 99), 0)} ms`,
        ],
        [
          "of which dispatched → running, p50 / p99",
          `${f(percentile(toStart, 50), 0)} / ${f(percentile(toStart, 99), 0)} ms`,
        ],
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
    // The rest by function, most writes first ("other": outside any invocation, e.g. the API's
    // own reads and the local stack's recovery pass).
    const consumers = new Set(STREAM_CONSUMERS.map(([name]) => name));
    for (const [name, entry] of [...used.dynamoByFunction]
      .filter(([name]) => !consumers.has(name))
      .sort(([, a], [, b]) => b.write - a.write)) {
      rows.push([
        `  of which ${name}: WRU / RRU / requests`,
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
    // jobq:stateChangeEvents=terminal sends one Job State Change per job, at its end: the same
    // run less every other entry (the stack runs with `all`; nothing else differs between them).
    const otherEntries = Math.max(0, per(used.eventEntries) - 1);
    costRows.push([
      "  with jobq:stateChangeEvents=terminal",
      `${f(otherEntries)} entries fewer`,
      f(total - otherEntries * PRICES.eventEntry * million),
    ]);
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

    // How close each job's own `cost` (core/cost.ts, priced with the same table) is to what was
    // counted: the counted figures include the time-driven calls, the jobs' own do not.
    console.log(
      `\nAttribution: counted per job vs the mean of the jobs' own cost (throughput run of ${jobs})`,
    );
    console.log(table(attributionRows(costs, ownCost)));
    console.log(`\nAttribution: the ${retriedJobs} retried jobs`);
    console.log(table(attributionRows(retriedCost, retriedOwnCost)));
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
