/**
 * List benchmark (`npm run bench:list`): an in-memory local stack (API only) on a loopback port,
 * 10,000 jobs of one owner written straight into DynamoDB Local (as the submit path stores them:
 * store/job-items.ts#toJobItem), then GET /jobs with each documented filter, 8 requests in flight,
 * as a client would.
 *
 * Per filter it prints the latency of one page (p50/p95/max over 32 requests), how many items
 * the first page held, and the read units one page cost. Then it follows the cursors of the
 * sparse filters to the end, checking that exactly the matching jobs come back, and prints how
 * many pages and how long that took. Figures are DynamoDB Local's on this machine, not AWS's:
 * compare them before and after a change, on the same machine.
 */
import { availableParallelism } from "node:os";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { BatchWriteCommand, DynamoDBDocumentClient, PutCommand } from "@aws-sdk/lib-dynamodb";
import { ulid } from "ulid";
import type { Job, JobStatus } from "../core/job";
import { LOCAL_REGION } from "../local/config";
import { startLocalStack } from "../local/stack";
import { capacityMeter } from "../store/dynamo";
import { toJobItem } from "../store/job-items";
import { FIRST_DAY_SK, META_PK } from "../store/keys";

const JOBS = 10_000;
const OWNER = "bench";
const USER_TOKEN = "bench-user";
const ADMIN_TOKEN = "bench-admin";
const IN_FLIGHT = 8;
const REQUESTS_PER_FILTER = 32;
const DAYS = 10;
const DAY_MS = 86_400_000;

/** The seeded mix: mostly finished training jobs, a few rare types, tags and priorities. */
function seededJob(i: number, now: number): Job {
  // Spread over DAYS days, oldest first, so ids (ULIDs) and createdAt agree.
  const at = now - DAY_MS * DAYS + Math.floor((i * DAY_MS * DAYS) / JOBS);
  const createdAt = new Date(at).toISOString();
  const status: JobStatus =
    i % 20 === 0 ? "queued" : i % 20 === 1 ? "running" : i % 20 === 2 ? "failed" : "completed";
  const type = i % 100 === 7 ? "rare-report" : i % 5 === 0 ? "etl" : "train-model";
  const priority = i % 50 === 3 ? 5 : i % 10 === 4 ? -5 : 0;
  const tags: Record<string, string> = { team: i % 2 === 0 ? "vision" : "nlp", bench: "list" };
  if (i % 200 === 11) tags.experiment = "rare";
  const ended = status === "completed" || status === "failed";
  return {
    id: `job_${ulid(at)}`,
    name: `bench job ${i}`,
    type,
    status,
    statusReason: status,
    reasonCode: null,
    priority,
    owner: OWNER,
    payload: {
      dataset: `s3://example-bucket/datasets/part-${String(i).padStart(5, "0")}.parquet`,
      epochs: 3,
    },
    result: null,
    error: status === "failed" ? { type: "task_failed", message: "exit code 1" } : null,
    resources: { cpu: 1, memoryMb: 1024, gpu: 0 },
    pool: null,
    constraints: {},
    dependsOn: [],
    retry: {
      maxAttempts: 1,
      strategy: "exponential",
      initialDelaySeconds: 1,
      backoffMultiplier: 2,
      maxDelaySeconds: 60,
    },
    timeoutSeconds: 3600,
    attempts: status === "queued" ? 0 : 1,
    runAt: null,
    deadline: null,
    offPeakOnly: false,
    onFailure: null,
    onTimeout: null,
    tags,
    escalatedTo: null,
    scheduleId: null,
    project: null,
    createdAt,
    updatedAt: createdAt,
    startedAt: status === "queued" ? null : createdAt,
    finishedAt: ended ? createdAt : null,
    nextAttemptAt: null,
    version: 1,
  };
}

async function seed(endpoint: string, table: string, now: number): Promise<Job[]> {
  const db = DynamoDBDocumentClient.from(
    new DynamoDBClient({
      endpoint,
      region: LOCAL_REGION,
      credentials: { accessKeyId: "local", secretAccessKey: "local" },
    }),
    { marshallOptions: { removeUndefinedValues: true } },
  );
  const jobs = Array.from({ length: JOBS }, (_, i) => seededJob(i, now));
  const batches: Job[][] = [];
  for (let i = 0; i < jobs.length; i += 25) batches.push(jobs.slice(i, i + 25));
  let next = 0;
  const writer = async (): Promise<void> => {
    for (let b = next++; b < batches.length; b = next++) {
      let requests = (batches[b] ?? []).map((job) => ({ PutRequest: { Item: toJobItem(job, 0, false) } }));
      while (requests.length > 0) {
        const out = await db.send(new BatchWriteCommand({ RequestItems: { [table]: requests } }));
        requests = (out.UnprocessedItems?.[table] ?? []) as typeof requests;
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, writer));
  // The admin's list walks days back to the first job's day.
  const firstDay = new Date(now - DAY_MS * DAYS).toISOString().slice(0, 10);
  await db.send(new PutCommand({ TableName: table, Item: { pk: META_PK, sk: FIRST_DAY_SK, day: firstDay } }));
  db.destroy();
  return jobs;
}

interface Page {
  readonly status: number;
  readonly items: { id: string }[];
  readonly nextCursor: string | null;
}

async function getPage(url: string, token: string, query: string, cursor?: string): Promise<Page> {
  const params = new URLSearchParams(query);
  if (cursor) params.set("cursor", cursor);
  const response = await fetch(`${url}/jobs?${params}`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await response.json()) as { items?: { id: string }[]; nextCursor?: string | null };
  return { status: response.status, items: body.items ?? [], nextCursor: body.nextCursor ?? null };
}

function percentile(sorted: readonly number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? Number.NaN;
}

/** One filter's first page, REQUESTS_PER_FILTER times with IN_FLIGHT at once. */
async function firstPages(url: string, label: string, token: string, query: string): Promise<number> {
  const latencies: number[] = [];
  let items = 0;
  let more = false;
  let failures = 0;
  let next = 0;
  capacityMeter.reset();
  const worker = async (): Promise<void> => {
    for (let i = next++; i < REQUESTS_PER_FILTER; i = next++) {
      const t0 = performance.now();
      const page = await getPage(url, token, query);
      latencies.push(performance.now() - t0);
      if (page.status !== 200) failures++;
      items = page.items.length;
      more = page.nextCursor !== null;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const rcu = capacityMeter.snapshot().read / REQUESTS_PER_FILTER;
  const sorted = latencies.sort((a, b) => a - b);
  console.log(
    `  ${label.padEnd(34)} p50 ${percentile(sorted, 50).toFixed(0).padStart(6)} ms  ` +
      `p95 ${percentile(sorted, 95).toFixed(0).padStart(6)} ms  max ${(sorted.at(-1) ?? 0).toFixed(0).padStart(6)} ms  ` +
      `${String(items).padStart(3)} items${more ? " + cursor" : "         "}  ${rcu.toFixed(1)} RCU/page` +
      (failures > 0 ? `  ${failures} FAILED` : ""),
  );
  return failures;
}

/** Every page of a filter, one request at a time: pages, time, and whether exactly `expected` came back. */
async function walk(
  url: string,
  label: string,
  token: string,
  query: string,
  expected: string[],
): Promise<number> {
  const seen: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  let slowest = 0;
  const t0 = performance.now();
  for (;;) {
    const p0 = performance.now();
    const page = await getPage(url, token, query, cursor);
    slowest = Math.max(slowest, performance.now() - p0);
    pages++;
    if (page.status !== 200) {
      console.log(`  ${label}: page ${pages} answered ${page.status}`);
      return 1;
    }
    seen.push(...page.items.map((j) => j.id));
    if (page.nextCursor === null || pages > 1000) break;
    cursor = page.nextCursor;
  }
  const exact = seen.length === expected.length && seen.every((id, i) => id === expected[i]);
  console.log(
    `  ${label.padEnd(34)} ${String(seen.length).padStart(5)} jobs in ${String(pages).padStart(3)} pages, ` +
      `${(performance.now() - t0).toFixed(0).padStart(6)} ms, slowest page ${slowest.toFixed(0)} ms` +
      `${exact ? "" : `  MISMATCH: expected ${expected.length}`}`,
  );
  return exact ? 0 : 1;
}

async function main(): Promise<void> {
  const stack = await startLocalStack({
    port: 0,
    host: "127.0.0.1",
    execution: false,
    tokens: new Map([
      [USER_TOKEN, { principal: OWNER, role: "user" }],
      [ADMIN_TOKEN, { principal: "bench-admin", role: "admin" }],
    ]),
  });
  try {
    console.log(`jobq list benchmark — local stack at ${stack.url} (DynamoDB Local in memory)`);
    console.log(`node ${process.version}, ${availableParallelism()} CPUs available`);
    const now = Date.now();
    const s0 = performance.now();
    const jobs = await seed(stack.dynamoEndpoint, stack.tables.Jobs ?? "", now);
    console.log(
      `seeded ${JOBS} jobs of one owner over ${DAYS} days in ${(performance.now() - s0).toFixed(0)} ms`,
    );
    const newestFirst = [...jobs].reverse();
    const ids = (keep: (job: Job) => boolean) => newestFirst.filter(keep).map((j) => j.id);
    const windowFrom = new Date(now - DAY_MS * 4).toISOString();
    const windowTo = new Date(now - DAY_MS * 3).toISOString();

    // Warm-up: cold imports and DynamoDB Local's first queries are not what we measure.
    await firstPages(stack.url, "(warm-up)", USER_TOKEN, "limit=50");

    console.log("");
    console.log(
      `GET /jobs, first page (limit 50), ${IN_FLIGHT} in flight, ${REQUESTS_PER_FILTER} requests each`,
    );
    const filters: [string, string, string][] = [
      ["no filter", USER_TOKEN, "limit=50"],
      ["status=completed", USER_TOKEN, "limit=50&status=completed"],
      ["status=queued,running", USER_TOKEN, "limit=50&status=queued,running"],
      ["type=etl", USER_TOKEN, "limit=50&type=etl"],
      ["type=rare-report (1 %)", USER_TOKEN, "limit=50&type=rare-report"],
      ["priority=high (2 %)", USER_TOKEN, "limit=50&priority=high"],
      ["tag=team:vision", USER_TOKEN, "limit=50&tag=team:vision"],
      ["tag=experiment:rare (0.5 %)", USER_TOKEN, "limit=50&tag=experiment:rare"],
      ["tag=none:such (0 %)", USER_TOKEN, "limit=50&tag=none:such"],
      [
        "createdAfter+createdBefore",
        USER_TOKEN,
        `limit=50&createdAfter=${windowFrom}&createdBefore=${windowTo}`,
      ],
      ["status=failed&priority=low", USER_TOKEN, "limit=50&status=failed&priority=low"],
      ["admin owner=bench&type=rare-report", ADMIN_TOKEN, `limit=50&owner=${OWNER}&type=rare-report`],
      ["admin all owners, priority=high", ADMIN_TOKEN, "limit=50&priority=high"],
      ["admin all owners, status=failed", ADMIN_TOKEN, "limit=50&status=failed"],
    ];
    let failed = 0;
    for (const [label, token, query] of filters) failed += await firstPages(stack.url, label, token, query);

    console.log("");
    console.log("Following nextCursor to the end (limit 50), one request at a time");
    failed += await walk(
      stack.url,
      "type=rare-report",
      USER_TOKEN,
      "limit=50&type=rare-report",
      ids((j) => j.type === "rare-report"),
    );
    failed += await walk(
      stack.url,
      "priority=high",
      USER_TOKEN,
      "limit=50&priority=high",
      ids((j) => j.priority === 5),
    );
    failed += await walk(
      stack.url,
      "tag=experiment:rare",
      USER_TOKEN,
      "limit=50&tag=experiment:rare",
      ids((j) => j.tags.experiment === "rare"),
    );
    failed += await walk(
      stack.url,
      "status=queued,running",
      USER_TOKEN,
      "limit=50&status=queued,running",
      ids((j) => j.status === "queued" || j.status === "running"),
    );
    failed += await walk(
      stack.url,
      "admin all owners, type=rare-report",
      ADMIN_TOKEN,
      "limit=50&type=rare-report",
      ids((j) => j.type === "rare-report"),
    );
    console.log("");
    console.log(
      "Note: latencies are DynamoDB Local's on this machine (one JVM), not AWS's; read units are what " +
        "DynamoDB Local reports in ConsumedCapacity, summed over every call a page made.",
    );
    if (failed > 0) process.exitCode = 1;
  } finally {
    await stack.stop();
  }
}

await main();
