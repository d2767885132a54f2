/**
 * Submission benchmark (`npm run bench:submit`): an in-memory local stack on a free loopback port,
 * then POST /jobs over HTTP as a client would.
 *
 * - main run: 2,000 submissions of a small realistic job, 16 in flight: throughput, latency
 *   p50/p99, and DynamoDB capacity units per submission;
 * - two short runs of 200 for the per-submission cost of an Idempotency-Key and of a job with 2
 *   dependencies;
 * - the largest submissions API.md allows: a job with 1,000 dependencies (alone, then 8 at once),
 *   and 500-job batches (a chain, and a fan-in onto 499 parents of the batch). Each must answer
 *   well under the API Lambda's 10 s; `--large` runs only these.
 *
 * Capacity comes from store/dynamo.ts's capacityMeter, which sums ReturnConsumedCapacity of every
 * DynamoDB call in this process (the handlers run in-process behind the local API server).
 * Bounded, stops by itself, talks to 127.0.0.1 only.
 */
import { randomUUID } from "node:crypto";
import { availableParallelism } from "node:os";
import { startLocalStack } from "../local/stack";
import { capacityMeter } from "../store/dynamo";

const MAIN_SUBMISSIONS = 2_000;
const SIDE_SUBMISSIONS = 200;
const IN_FLIGHT = 16;
const WARMUP = 50;
const TOKEN = "bench-token";

/** A small job as a user would send it. */
function jobBody(i: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "train-model",
    name: `bench job ${i}`,
    priority: i % 10 === 0 ? "high" : "normal",
    resources: { cpu: 1, memoryMb: 1024 },
    payload: {
      dataset: `s3://example-bucket/datasets/2026-11-25/part-${String(i).padStart(5, "0")}.parquet`,
      epochs: 3,
      learningRate: 0.001,
      labels: ["cat", "dog", "bird"],
    },
    tags: { team: "vision", bench: "submit" },
    ...extra,
  };
}

interface RunResult {
  readonly count: number;
  readonly failures: string[];
  readonly wallMs: number;
  readonly latenciesMs: number[];
  readonly ids: string[];
  readonly capacity: { read: number; write: number; requests: number };
}

async function run(
  url: string,
  count: number,
  inFlight: number,
  request: (i: number) => { body: unknown; headers?: Record<string, string> },
): Promise<RunResult> {
  return runOn(url, "/jobs", count, inFlight, request);
}

async function runOn(
  url: string,
  path: string,
  count: number,
  inFlight: number,
  request: (i: number) => { body: unknown; headers?: Record<string, string> },
): Promise<RunResult> {
  const latenciesMs: number[] = new Array(count);
  const ids: string[] = new Array(count);
  const failures: string[] = [];
  let next = 0;
  capacityMeter.reset();
  const started = performance.now();
  const worker = async (): Promise<void> => {
    for (let i = next++; i < count; i = next++) {
      const { body, headers } = request(i);
      const t0 = performance.now();
      const response = await fetch(`${url}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
      const text = await response.text();
      latenciesMs[i] = performance.now() - t0;
      if (response.status !== 201) {
        failures.push(`#${i}: ${response.status} ${text.slice(0, 200)}`);
      } else {
        const created = JSON.parse(text) as { id?: string; jobs?: { id: string }[] };
        ids[i] = created.id ?? created.jobs?.map((job) => job.id).join(",") ?? "";
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const wallMs = performance.now() - started;
  return { count, failures, wallMs, latenciesMs, ids, capacity: capacityMeter.snapshot() };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? Number.NaN;
}

function perSubmission(result: RunResult): string {
  const n = result.count - result.failures.length;
  const read = (result.capacity.read / n).toFixed(2);
  const write = (result.capacity.write / n).toFixed(2);
  const calls = (result.capacity.requests / n).toFixed(2);
  return `${read} RCU, ${write} WCU, ${calls} DynamoDB calls per submission`;
}

function reportFailures(label: string, result: RunResult): void {
  if (result.failures.length === 0) return;
  console.log(`  ${label}: ${result.failures.length} of ${result.count} submissions failed, e.g.`);
  for (const failure of result.failures.slice(0, 3)) console.log(`    ${failure}`);
}

/** One line per large case: its latencies and what it cost per job created. */
function reportLarge(label: string, result: RunResult, jobsPerSubmission: number): void {
  const sorted = [...result.latenciesMs].sort((a, b) => a - b);
  const jobs = (result.count - result.failures.length) * jobsPerSubmission;
  const perJob = jobs > 0 ? (result.capacity.write / jobs).toFixed(1) : "n/a";
  const readPerJob = jobs > 0 ? (result.capacity.read / jobs).toFixed(1) : "n/a";
  console.log(
    `  ${label.padEnd(38)} wall ${result.wallMs.toFixed(0).padStart(6)} ms, ` +
      `max ${(sorted.at(-1) ?? Number.NaN).toFixed(0).padStart(6)} ms; ` +
      `${perJob} WCU, ${readPerJob} RCU per job; ${result.capacity.requests} DynamoDB calls`,
  );
  reportFailures(label, result);
}

const LARGE_DEPENDENCIES = 1_000;
const LARGE_CONCURRENT = 8;
const LARGE_BATCH = 500;

/** API.md's largest submissions: 1,000 dependencies on one job, 500 jobs in one batch. */
async function largeSubmissions(url: string): Promise<number> {
  const parentBatch = (n: number) => ({
    body: { jobs: Array.from({ length: 500 }, (_, j) => jobBody(n * 500 + j)) },
  });
  const parents = await runOn(url, "/jobs/batch", LARGE_DEPENDENCIES / 500, 2, parentBatch);
  reportFailures("parents", parents);
  const parentIds = parents.ids.flatMap((ids) => ids.split(","));

  console.log("");
  console.log(`Largest submissions (${LARGE_DEPENDENCIES} dependencies, ${LARGE_BATCH}-job batches)`);
  reportLarge("parents: 2 batches of 500, 2 at once", parents, 500);
  const withDeps = (i: number) => ({ body: jobBody(i, { dependsOn: parentIds }) });
  const one = await run(url, 1, 1, withDeps);
  reportLarge(`POST /jobs, ${LARGE_DEPENDENCIES} dependsOn`, one, 1);
  const eight = await run(url, LARGE_CONCURRENT, LARGE_CONCURRENT, withDeps);
  reportLarge(`${LARGE_CONCURRENT} x POST /jobs, ${LARGE_DEPENDENCIES} dependsOn`, eight, 1);
  const keyed = await run(url, 1, 1, (i) => ({
    ...withDeps(i),
    headers: { "Idempotency-Key": randomUUID() },
  }));
  reportLarge(`… with an Idempotency-Key`, keyed, 1);

  const chain = await runOn(url, "/jobs/batch", 1, 1, () => ({
    body: {
      jobs: Array.from({ length: LARGE_BATCH }, (_, j) =>
        jobBody(j, { ref: `j${j}`, ...(j > 0 ? { dependsOn: [`j${j - 1}`] } : {}) }),
      ),
    },
  }));
  reportLarge(`POST /jobs/batch, chain of ${LARGE_BATCH}`, chain, LARGE_BATCH);
  const fanIn = await runOn(url, "/jobs/batch", 1, 1, () => ({
    body: {
      jobs: Array.from({ length: LARGE_BATCH }, (_, j) =>
        jobBody(j, {
          ref: `j${j}`,
          ...(j === LARGE_BATCH - 1 ? { dependsOn: Array.from({ length: j }, (_, k) => `j${k}`) } : {}),
        }),
      ),
    },
  }));
  reportLarge(`POST /jobs/batch, ${LARGE_BATCH - 1} -> 1 fan-in`, fanIn, LARGE_BATCH);
  const plain = await runOn(url, "/jobs/batch", 1, 1, () => ({
    body: { jobs: Array.from({ length: LARGE_BATCH }, (_, j) => jobBody(j)) },
  }));
  reportLarge(`POST /jobs/batch, ${LARGE_BATCH} independent`, plain, LARGE_BATCH);
  const fourBatches = await runOn(url, "/jobs/batch", 4, 4, () => ({
    body: {
      jobs: Array.from({ length: LARGE_BATCH }, (_, j) =>
        jobBody(j, { ref: `j${j}`, ...(j > 0 ? { dependsOn: [`j${j - 1}`] } : {}) }),
      ),
    },
  }));
  reportLarge(`4 x POST /jobs/batch, chain of ${LARGE_BATCH}`, fourBatches, LARGE_BATCH);
  return [one, eight, keyed, chain, fanIn, plain, fourBatches].reduce((n, r) => n + r.failures.length, 0);
}

async function main(): Promise<void> {
  const largeOnly = process.argv.includes("--large");
  // The API alone: this measures submission, not running (that is `npm run bench`).
  const stack = await startLocalStack({
    port: 0,
    host: "127.0.0.1",
    execution: false,
    tokens: new Map([[TOKEN, { principal: "bench", role: "user" }]]),
  });
  try {
    console.log(`jobq submit benchmark — local stack at ${stack.url} (DynamoDB Local in memory)`);
    console.log(`node ${process.version}, ${availableParallelism()} CPUs available`);

    // Cold imports, JIT and DynamoDB Local's first requests are not what we measure.
    const warmup = await run(stack.url, WARMUP, IN_FLIGHT, (i) => ({ body: jobBody(i) }));
    reportFailures("warm-up", warmup);
    if (largeOnly) {
      if ((await largeSubmissions(stack.url)) > 0) process.exitCode = 1;
      return;
    }

    const main = await run(stack.url, MAIN_SUBMISSIONS, IN_FLIGHT, (i) => ({ body: jobBody(i) }));
    const sorted = [...main.latenciesMs].sort((a, b) => a - b);
    console.log("");
    console.log(`POST /jobs: ${MAIN_SUBMISSIONS} submissions, ${IN_FLIGHT} in flight`);
    console.log(`  throughput      ${((main.count / main.wallMs) * 1000).toFixed(1)} submissions/s`);
    console.log(`  latency p50     ${percentile(sorted, 50).toFixed(1)} ms`);
    console.log(`  latency p99     ${percentile(sorted, 99).toFixed(1)} ms`);
    console.log(`  latency max     ${(sorted.at(-1) ?? Number.NaN).toFixed(1)} ms`);
    console.log(`  capacity        ${perSubmission(main)}`);
    reportFailures("main run", main);

    const idempotent = await run(stack.url, SIDE_SUBMISSIONS, IN_FLIGHT, (i) => ({
      body: jobBody(i),
      headers: { "Idempotency-Key": randomUUID() },
    }));
    console.log("");
    console.log(`POST /jobs with an Idempotency-Key: ${SIDE_SUBMISSIONS} submissions`);
    console.log(`  capacity        ${perSubmission(idempotent)}`);
    reportFailures("idempotency run", idempotent);

    // Each job waits on two parents of its own, created before the measured run.
    const parents = await run(stack.url, SIDE_SUBMISSIONS * 2, IN_FLIGHT, (i) => ({ body: jobBody(i) }));
    reportFailures("parents", parents);
    const withDeps = await run(stack.url, SIDE_SUBMISSIONS, IN_FLIGHT, (i) => ({
      body: jobBody(i, { dependsOn: [parents.ids[2 * i], parents.ids[2 * i + 1]] }),
    }));
    console.log("");
    console.log(`POST /jobs with 2 dependencies: ${SIDE_SUBMISSIONS} submissions`);
    console.log(`  capacity        ${perSubmission(withDeps)}`);
    reportFailures("dependencies run", withDeps);

    const largeFailed = await largeSubmissions(stack.url);

    console.log("");
    console.log(
      "Note: capacity units are what DynamoDB Local reports in ConsumedCapacity; they follow " +
        "DynamoDB's formula (1 KB write units, 4 KB read units, transactions at twice the cost) " +
        "only approximately. Throughput and latency are DynamoDB Local's on this machine, not AWS's.",
    );
    const failed = main.failures.length + idempotent.failures.length + withDeps.failures.length + largeFailed;
    if (failed > 0) process.exitCode = 1;
  } finally {
    await stack.stop();
  }
}

await main();
