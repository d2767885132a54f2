/**
 * Scheduler benchmark (`npm run bench:scheduler`): what one real scheduling pass
 * (app/scheduler.ts `schedulePool`) reads from DynamoDB, against backlogs of 10, 1,000, 10,000
 * and 100,000 queued jobs in the store. The claim it checks (issue 4, "Scale"): a pass costs what
 * it admits and inspects, never the backlog.
 *
 * For each backlog: fresh tables in DynamoDB Local (in memory, 127.0.0.1 only), the queued jobs
 * written directly (BatchWriteItem, as submit leaves them: status queued, no execution,
 * queuedAt over the last 30 minutes, 20 owners, mixed priorities, a fifth
 * of them for any pool, a few with deadlines), and one pool of 5 nodes with room for 50 jobs
 * (`--nodes 50`: 50 nodes, room for 500).
 * Then per algorithm (priority and fair-share with aging on, round-robin):
 * - `empty`: a pass onto empty capacity, which admits up to 50 jobs (ten a node);
 * - `full`: a pass right after, with the pool full: it admits nothing and must read about one
 *   page, not the backlog (`drained` instead when the first pass admitted the whole backlog);
 * - `empty, warm` (fair-share and round-robin): the admitted jobs put back and the pool emptied,
 *   a pass by a new scheduler process (nothing in memory), which starts from the owners the
 *   earlier pass left on the pool's lease (app/queue-reader.ts leaseOwnerHints) and reads their
 *   heads side by side.
 * Between algorithms the admitted jobs are put back as they were seeded and the nodes emptied.
 *
 * Items read: a middleware on the scheduler's DynamoDB client sums ScannedCount of every Query
 * and Scan (what DynamoDB reads and bills, before any filter) and the items GetItem,
 * BatchGetItem and TransactGetItems return; the `queue` column is the part read from the queue
 * indexes. RCU: store/dynamo.ts's capacityMeter (DynamoDB Local's ConsumedCapacity, which
 * follows DynamoDB's formula only approximately). The scheduler's SendTaskSuccess, events and
 * executions are answered in process (never sent), so pass times are DynamoDB Local's, this
 * process's and the injected latency's.
 *
 * Admissions per second, projected for AWS (issue 11): `--latency-ms <n>` makes every call the
 * pass makes to something that is a network round trip in AWS wait n ms first — each DynamoDB
 * request (a middleware on the scheduler's document client, before `next`), and every method of
 * the in-process Step Functions-side objects (`tokens`, `executions`), wrapped generically so
 * whatever the scheduler calls on them is delayed, and each PutEvents of jobq's own EventBridge
 * publisher, whose client answers in process. Per pass the table then gives:
 * - `RT`: the round trips in a row on the pass's critical path, measured as the longest chain of
 *   calls in which each call started after the one before it had ended (a call's depth is one
 *   more than the deepest call that had completed when it started; the pass's is the deepest
 *   of all). Every causal chain of awaited calls is such a chain, so this is never below the
 *   critical path; it is above it when independent calls happen to follow one another in time,
 *   so the projection errs low. That happens when DynamoDB Local's answers take longer than n
 *   and vary (it does transactions one at a time, slowly on a loaded machine): one node's
 *   releases then end before another node's transaction does, and chain on. A larger n (say 50)
 *   brings the count closer to the causal one. A pass that loops (`passes` > 1) counts all of
 *   its passes.
 * - `CPU ms`: this process's CPU time over the pass (process.cpuUsage, user + system): the SDK's
 *   marshalling and the scheduler's own work. DynamoDB Local runs in its own JVM and is not in it.
 * - `adm/s AWS`: admitted ÷ (RT × 10 ms + CPU time), 10 ms being a round trip to DynamoDB or
 *   Step Functions in the same region. The target: ≥ 500, flat from 1k to 100k queued.
 * The wall time (`pass ms`) with n = 10 is a check on RT: it is at least RT × n.
 *
 * Prints figures; asserts nothing. Bounded, stops by itself, talks to 127.0.0.1 only.
 */
import { availableParallelism, loadavg } from "node:os";
import { parseArgs } from "node:util";
import { DeleteTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { EventBridgeClient, type PutEventsCommandOutput } from "@aws-sdk/client-eventbridge";
import { BatchWriteCommand, DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { ulid } from "ulid";
import type { JobEventPublisher } from "../app/events";
import type { LifecycleExecutions } from "../app/executions";
import type { SchedulerContext } from "../app/scheduler";
import type { Job } from "../core/job";
import { type Algorithm, DEFAULT_POLICY, type Policy } from "../core/policy";
import type { PoolConfig } from "../core/pools";
import { startDynamoLocal } from "../local/dynamo";
import { ensureTables } from "../local/tables";
import { awsClientOptions } from "../store/aws";
import type { JobItem } from "../store/job-items";

// The scheduler logs every pass at INFO, which would bury the table. Powertools fixes a logger's
// level when it is built, so the modules that build it are imported only after this.
process.env.POWERTOOLS_LOG_LEVEL = "WARN";
// The passes' EMF metric lines (stdout) would bury it too.
process.env.POWERTOOLS_METRICS_DISABLED = "true";
// Belt and braces: every client below has an endpoint and dummy credentials anyway.
process.env.AWS_EC2_METADATA_DISABLED = "true";
const { schedulePool } = await import("../app/scheduler");
const { OwnerHints, readsByOwner } = await import("../app/queue-reader");
const { EventBridgePublisher } = await import("../app/events");
const { capacityMeter, createDocumentClient } = await import("../store/dynamo");
const { JobRepository } = await import("../store/job-repository");
const { NodeRepository } = await import("../store/nodes");
const { PolicyRepository } = await import("../store/policy");
const { UsageRepository } = await import("../store/usage");
const { toJobItem } = await import("../store/job-items");
const { jobPk, LEASE_SK, transitionSk } = await import("../store/keys");
const { JOB_INDEX } = await import("../store/tables");

const DEFAULT_BACKLOGS = [10, 1_000, 10_000, 100_000] as const;
const ALGORITHMS: readonly Algorithm[] = ["priority", "fair-share", "round-robin"];
const REGION = "us-east-1";
const OWNERS = 20;
/** The command line's options (see options() and nodesOption()). */
const OPTIONS = {
  backlogs: { type: "string" },
  algorithms: { type: "string" },
  "latency-ms": { type: "string" },
  nodes: { type: "string" },
} as const;

/** `--nodes`: the pool's size, and so what one pass can admit (ten jobs a node). */
const NODES = nodesOption();
const POOL: PoolConfig = {
  name: "cpu",
  labels: {},
  nodes: NODES,
  // Ten 1-CPU jobs per node: 50 in the pool unless --nodes says otherwise.
  node: { cpu: 10, memoryMb: 40_960, gpu: 0 },
};
const JOB_RESOURCES = { cpu: 1, memoryMb: 1024, gpu: 0 };
const SLOTS = NODES * POOL.node.cpu;
/** queuedAt spread over this window before the run: old enough for aging to reorder some. */
const QUEUED_OVER_MS = 30 * 60 * 1000;
const BATCH_WRITE = 25;
const SEED_IN_FLIGHT = 16;
const TIERS = ["critical", "high", "normal", "low", "background"] as const;
const TABLE_IDS = ["Jobs", "Nodes", "Policy", "Tokens"] as const;

/** Items DynamoDB read for this client's calls since the last reset. */
class ItemsRead {
  queue = 0;
  other = 0;
  calls = 0;

  reset(): void {
    this.queue = 0;
    this.other = 0;
    this.calls = 0;
  }

  get total(): number {
    return this.queue + this.other;
  }
}

const QUEUE_INDEXES = new Set<string>([JOB_INDEX.queue, JOB_INDEX.queueByOwner, JOB_INDEX.queueByAge]);

function countItemsRead(db: DynamoDBDocumentClient, meter: ItemsRead): void {
  db.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      meter.calls += 1;
      const input = args.input as Record<string, unknown>;
      const output = result.output as unknown as Record<string, unknown>;
      let items = 0;
      switch (context.commandName) {
        case "QueryCommand":
        case "ScanCommand":
          items = numberOr(output.ScannedCount, numberOr(output.Count, 0));
          break;
        case "GetItemCommand":
          items = output.Item ? 1 : 0;
          break;
        case "BatchGetItemCommand":
          for (const list of Object.values((output.Responses ?? {}) as Record<string, unknown[]>)) {
            items += list.length;
          }
          break;
        case "TransactGetItemsCommand":
          items = ((output.Responses ?? []) as { Item?: unknown }[]).filter((r) => r.Item).length;
          break;
        default:
          break;
      }
      if (context.commandName === "QueryCommand" && QUEUE_INDEXES.has(String(input.IndexName))) {
        meter.queue += items;
      } else {
        meter.other += items;
      }
      return result;
    },
    { step: "initialize", name: "benchItemsRead" },
  );
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === "number" ? value : fallback;
}

/**
 * The pass's calls that are network round trips in AWS: each waits `latencyMs` first, and the
 * longest chain of calls one after another is the pass's critical path (see the header).
 */
class RoundTrips {
  /** The deepest chain among the calls that have completed. */
  private deepestDone = 0;

  constructor(readonly latencyMs: number) {}

  reset(): void {
    this.deepestDone = 0;
  }

  /** Round trips in a row on the critical path since the last reset. */
  get inARow(): number {
    return this.deepestDone;
  }

  async around<T>(call: () => Promise<T>): Promise<T> {
    const depth = this.deepestDone + 1;
    try {
      if (this.latencyMs > 0) await new Promise((wake) => setTimeout(wake, this.latencyMs));
      return await call();
    } finally {
      if (depth > this.deepestDone) this.deepestDone = depth;
    }
  }
}

/** Every DynamoDB request of this client is a round trip. */
function delayRequests(db: DynamoDBDocumentClient, trips: RoundTrips): void {
  db.middlewareStack.add((next) => (args) => trips.around(() => next(args)), {
    step: "initialize",
    name: "benchLatency",
  });
}

/**
 * jobq's own EventBridge publisher (so its batching is what is measured) on a client that never
 * sends: each PutEvents is answered in process, all entries accepted, after its round trip.
 */
function eventBus(trips: RoundTrips): JobEventPublisher {
  // An endpoint nobody listens on, and dummy credentials: no request leaves anyway.
  const client = new EventBridgeClient(awsClientOptions("http://127.0.0.1:1", REGION));
  const accepted: PutEventsCommandOutput = { FailedEntryCount: 0, Entries: [], $metadata: {} };
  client.middlewareStack.add(
    // The handler is generic in its command's output; this client only ever sends PutEvents.
    () => () => trips.around(async () => ({ output: accepted as never, response: {} })),
    { step: "initialize", name: "benchEventBus" },
  );
  return new EventBridgePublisher(client, "jobq-bench");
}

/** Every method of `target` is a round trip: whatever the scheduler calls on it. */
function delayCalls<T extends object>(target: T, trips: RoundTrips): T {
  return new Proxy(target, {
    get(object, key, receiver) {
      const value: unknown = Reflect.get(object, key, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => trips.around(async () => Reflect.apply(value, object, args) as unknown);
    },
  });
}

/** Execution starts and stops as round trips; the ARN an admission writes is known without one. */
function benchExecutions(trips: RoundTrips): LifecycleExecutions {
  const arnOf = (jobId: string, version: number): string => `arn:bench:${jobId}-${version}`;
  const calls = delayCalls(
    { start: async (jobId: string, version: number) => arnOf(jobId, version), stop: async () => undefined },
    trips,
  );
  return {
    start: (jobId, version) => calls.start(jobId, version),
    stop: () => calls.stop(),
    arnOf,
  };
}

/** A small deterministic generator so every run seeds the same shapes. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1664525 + 1013904223) % 2 ** 32;
    return state / 2 ** 32;
  };
}

/** The queued job number `i` of a backlog, as submit leaves it. */
function queuedItem(i: number, id: string, createdAtMs: number, next: () => number): JobItem {
  const createdAt = new Date(createdAtMs).toISOString();
  const roll = next();
  // Mostly normal, a tenth high, a tenth low, a few critical.
  const priority = roll < 0.02 ? 10 : roll < 0.12 ? 5 : roll < 0.22 ? -5 : 0;
  const deadline = next() < 0.02 ? new Date(createdAtMs + 24 * 3600 * 1000).toISOString() : null;
  const job: Job = {
    id,
    name: `bench job ${i}`,
    type: i % 3 === 0 ? "train-model" : "render",
    status: "queued",
    statusReason: "waiting for admission",
    reasonCode: "pending",
    priority,
    owner: `team-${String(i % OWNERS).padStart(2, "0")}`,
    payload: { dataset: `s3://example-bucket/part-${String(i).padStart(6, "0")}.parquet`, epochs: 3 },
    result: null,
    error: null,
    resources: JOB_RESOURCES,
    pool: next() < 0.2 ? null : POOL.name,
    constraints: {},
    dependsOn: [],
    retry: {
      maxAttempts: 3,
      strategy: "exponential",
      initialDelaySeconds: 1,
      backoffMultiplier: 2,
      maxDelaySeconds: 3600,
    },
    timeoutSeconds: 3600,
    attempts: 0,
    runAt: null,
    deadline,
    offPeakOnly: false,
    onFailure: null,
    onTimeout: null,
    tags: { bench: "scheduler" },
    escalatedTo: null,
    scheduleId: null,
    project: null,
    createdAt,
    updatedAt: createdAt,
    startedAt: null,
    finishedAt: null,
    nextAttemptAt: null,
    version: 1,
  };
  return {
    ...toJobItem(job, 0, false),
    queuedAt: createdAt,
  };
}

/** The backlog's jobs: ids and seed items, rebuilt the same way whenever they are put back. */
class Backlog {
  readonly ids: string[];
  private readonly index = new Map<string, number>();
  private readonly items: JobItem[];

  constructor(
    readonly size: number,
    now: number,
  ) {
    const next = random(size);
    this.ids = [];
    this.items = [];
    for (let i = 0; i < size; i++) {
      // Oldest first, evenly over the window; ids are ULIDs of the creation time, as submit's.
      const createdAtMs = now - QUEUED_OVER_MS + Math.floor((i * QUEUED_OVER_MS) / size);
      const id = ulid(createdAtMs);
      this.ids.push(id);
      this.index.set(id, i);
      this.items.push(queuedItem(i, id, createdAtMs, next));
    }
  }

  item(id: string): JobItem {
    const i = this.index.get(id);
    const item = i === undefined ? undefined : this.items[i];
    if (!item) throw new RangeError(`job ${id} is not part of the backlog`);
    return item;
  }

  all(): readonly JobItem[] {
    return this.items;
  }
}

type WriteRequest =
  | { PutRequest: { Item: Record<string, unknown> } }
  | { DeleteRequest: { Key: Record<string, unknown> } };

/** BatchWriteItem in chunks of 25, `inFlight` at once, until nothing is left unprocessed. */
async function batchWrite(
  db: DynamoDBDocumentClient,
  table: string,
  requests: readonly WriteRequest[],
  inFlight = SEED_IN_FLIGHT,
): Promise<void> {
  const chunks: WriteRequest[][] = [];
  for (let i = 0; i < requests.length; i += BATCH_WRITE) chunks.push(requests.slice(i, i + BATCH_WRITE));
  let nextChunk = 0;
  const worker = async (): Promise<void> => {
    for (let c = nextChunk++; c < chunks.length; c = nextChunk++) {
      let pending: WriteRequest[] = chunks[c] ?? [];
      for (let round = 0; pending.length > 0; round++) {
        if (round > 20) throw new Error(`BatchWriteItem left ${pending.length} items unprocessed 20 times`);
        if (round > 0) await new Promise((wake) => setTimeout(wake, 20 * round));
        const out = await db.send(new BatchWriteCommand({ RequestItems: { [table]: pending } }));
        pending = (out.UnprocessedItems?.[table] ?? []) as WriteRequest[];
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, chunks.length) }, worker));
}

/**
 * A pool of empty nodes and no lease: the nodes table as a fresh deployment has it; `keepLease`,
 * the lease as the last pass let go of it (what it leaves for the next pass included).
 */
async function resetPool(
  ctx: SchedulerContext,
  db: DynamoDBDocumentClient,
  now: Date,
  keepLease = false,
): Promise<void> {
  // The partition holds the pool's nodes and its lease, nothing else.
  const keys = (await ctx.nodes.listNodes(POOL.name)).map((node) => ({ pool: node.pool, sk: node.sk }));
  if (!keepLease) keys.push({ pool: POOL.name, sk: LEASE_SK });
  await batchWrite(
    db,
    ctx.nodesTable,
    keys.map((Key) => ({ DeleteRequest: { Key } })),
  );
  for (let n = 0; n < NODES; n++) {
    const nodeId = `node-${n}`;
    await ctx.nodes.register({ pool: POOL.name, nodeId, workerId: `worker-${n}`, capacity: POOL.node }, now);
  }
  const left = await ctx.nodes.getNode(POOL.name, "node-0");
  if (left?.used.cpu !== 0) {
    throw new Error("the pool's nodes did not come back empty");
  }
}

/** Admitted jobs back to queued as seeded: their item, and no transition record of the admission. */
async function requeue(db: DynamoDBDocumentClient, table: string, backlog: Backlog, ids: readonly string[]) {
  await batchWrite(
    db,
    table,
    ids.flatMap((id): WriteRequest[] => [
      { PutRequest: { Item: backlog.item(id) as unknown as Record<string, unknown> } },
      // Seeded at version 1, admitted at version 2: that transition's key must be free again.
      { DeleteRequest: { Key: { pk: jobPk(id), sk: transitionSk(2) } } },
    ]),
  );
}

interface Row {
  readonly backlog: number;
  readonly algorithm: Algorithm;
  /**
   * The pool the pass found: empty; full; or with room left, the first pass having admitted every
   * job. `empty, warm`: empty again after those two, the lease keeping what they left on it (the
   * owners fair-share and round-robin found queued jobs of, app/queue-reader.ts leaseOwnerHints).
   */
  readonly capacity: "empty" | "full" | "drained" | "empty, warm";
  readonly passes: number;
  readonly admitted: number;
  readonly queueItems: number;
  readonly otherItems: number;
  readonly calls: number;
  readonly rcu: number;
  readonly ms: number;
  /** Round trips in a row on the pass's critical path. */
  readonly roundTrips: number;
  readonly cpuMs: number;
}

interface Bench {
  readonly endpoint: string;
  /** Unmetered: seeding and resets. */
  readonly seedDb: DynamoDBDocumentClient;
  readonly latencyMs: number;
}

function schedulerContext(
  db: DynamoDBDocumentClient,
  tables: Record<string, string>,
  policy: Policy,
  trips: RoundTrips,
): SchedulerContext {
  const jobs = tables.Jobs;
  const nodes = tables.Nodes;
  const policyTable = tables.Policy;
  if (!jobs || !nodes || !policyTable) throw new Error("ensureTables made no Jobs, Nodes or Policy table");
  const queueUrl = (tier: string) => `http://127.0.0.1:1/000000000000/jobq-bench-${POOL.name}-${tier}`;
  return {
    repo: new JobRepository(db, jobs),
    clock: () => new Date(),
    pools: [POOL],
    nodesTable: nodes,
    policies: new PolicyRepository(db, policyTable),
    usage: new UsageRepository(db, policyTable),
    defaultPolicy: policy,
    // In process, each call a round trip (see RoundTrips): the scheduler publishes events, starts
    // one execution per admission, and stops them when preempting.
    events: eventBus(trips),
    executions: benchExecutions(trips),
    nodes: new NodeRepository(db, nodes),
    // Answers tokens of the previous lifecycle only: no seeded job carries one.
    tokens: delayCalls({ succeed: async () => true, fail: async () => true }, trips),
    queues: { [POOL.name]: Object.fromEntries(TIERS.map((tier) => [tier, queueUrl(tier)])) },
    heartbeatSeconds: 30,
    lostAfterSeconds: 300,
    // The nodes send no heartbeats; a long pass must not find them lost.
    nodeLostSeconds: 86_400,
    ownerHints: new OwnerHints(),
  };
}

/**
 * One backlog: seed, then per algorithm a pass onto empty capacity and one onto a full pool (and,
 * for the algorithms that read the queue owner by owner, one more onto empty capacity, warm).
 */
async function measure(bench: Bench, size: number, algorithms: readonly Algorithm[]): Promise<Row[]> {
  const control = new DynamoDBClient(awsClientOptions(bench.endpoint, REGION));
  const prefix = `bench-${size}-${Date.now().toString(36)}-`;
  const tables = await ensureTables(control, prefix);
  const meter = new ItemsRead();
  const db = createDocumentClient({ region: REGION, endpoint: bench.endpoint });
  countItemsRead(db, meter);
  const trips = new RoundTrips(bench.latencyMs);
  delayRequests(db, trips);
  const rows: Row[] = [];
  try {
    const jobsTable = tables.Jobs ?? "";
    const backlog = new Backlog(size, Date.now());
    const seeding = performance.now();
    await batchWrite(
      bench.seedDb,
      jobsTable,
      backlog.all().map((item) => ({ PutRequest: { Item: item as unknown as Record<string, unknown> } })),
    );
    const seedSeconds = (performance.now() - seeding) / 1000;
    if (size >= 1000) {
      console.log(
        `  seeded ${size.toLocaleString("en-US")} queued jobs in ${seedSeconds.toFixed(1)} s ` +
          `(${Math.round(size / seedSeconds)} items/s)`,
      );
    }

    for (const algorithm of algorithms) {
      const policy: Policy = { ...DEFAULT_POLICY, algorithm };
      const ctx = schedulerContext(db, tables, policy, trips);
      // Stored, as a PUT /admin/policy would: every pass reads it.
      await ctx.policies.putPolicy(policy, "bench", new Date().toISOString());
      await resetPool(ctx, bench.seedDb, new Date());
      const admittedIds: string[] = [];
      const passes = readsByOwner(algorithm)
        ? (["first", "second", "warm"] as const)
        : (["first", "second"] as const);
      for (const which of passes) {
        const capacity =
          which === "first"
            ? "empty"
            : which === "warm"
              ? "empty, warm"
              : admittedIds.length >= SLOTS
                ? "full"
                : "drained";
        if (which === "warm") {
          await requeue(bench.seedDb, jobsTable, backlog, admittedIds.splice(0));
          await resetPool(ctx, bench.seedDb, new Date(), true);
        }
        meter.reset();
        capacityMeter.reset();
        trips.reset();
        const cpu = process.cpuUsage();
        const started = performance.now();
        // The warm pass as a new scheduler process makes it: nothing in memory, the lease kept.
        const summary = await schedulePool(
          which === "warm" ? { ...ctx, ownerHints: new OwnerHints() } : ctx,
          POOL.name,
        );
        const ms = performance.now() - started;
        const cpuUsed = process.cpuUsage(cpu);
        const roundTrips = trips.inARow;
        if (summary.outcome !== "ran") throw new Error(`pass ${summary.outcome}: the lease was taken`);
        admittedIds.push(...summary.admitted.map((a) => a.jobId));
        rows.push({
          backlog: size,
          algorithm,
          capacity,
          passes: summary.passes,
          admitted: summary.admitted.length,
          queueItems: meter.queue,
          otherItems: meter.other,
          calls: meter.calls,
          rcu: capacityMeter.read,
          ms,
          roundTrips,
          cpuMs: (cpuUsed.user + cpuUsed.system) / 1000,
        });
      }
      await requeue(bench.seedDb, jobsTable, backlog, admittedIds);
    }
  } finally {
    db.destroy();
    // In memory: dropping the tables gives the JVM its heap back before the next backlog.
    for (const id of TABLE_IDS) {
      const name = tables[id];
      if (name) await control.send(new DeleteTableCommand({ TableName: name })).catch(() => undefined);
    }
    control.destroy();
  }
  return rows;
}

/** A round trip to DynamoDB or Step Functions from a Lambda in the same region, for the projection. */
const AWS_ROUND_TRIP_MS = 10;

/** Admissions per second the pass would make in AWS: admitted ÷ (RT × 10 ms + CPU time). */
function projectedRate(r: Row): number {
  return r.admitted / ((r.roundTrips * AWS_ROUND_TRIP_MS + r.cpuMs) / 1000);
}

function printRows(rows: readonly Row[]): void {
  const header = [
    "backlog",
    "algorithm",
    "capacity",
    "passes",
    "admitted",
    "items read",
    "queue",
    "other",
    "per admitted",
    "calls",
    "RCU",
    "pass ms",
    "RT",
    "CPU ms",
    "adm/s AWS",
  ];
  const lines = rows.map((r) => [
    r.backlog.toLocaleString("en-US"),
    r.algorithm,
    r.capacity,
    String(r.passes),
    String(r.admitted),
    String(r.queueItems + r.otherItems),
    String(r.queueItems),
    String(r.otherItems),
    r.admitted > 0 ? ((r.queueItems + r.otherItems) / r.admitted).toFixed(1) : "-",
    String(r.calls),
    r.rcu.toFixed(1),
    r.ms.toFixed(0),
    String(r.roundTrips),
    r.cpuMs.toFixed(0),
    r.admitted > 0 ? projectedRate(r).toFixed(0) : "-",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const format = (cells: readonly string[]) =>
    cells.map((c, i) => (i < 3 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ");
  console.log(format(header));
  for (const line of lines) console.log(format(line));
}

/** `--nodes 50`: a pool of that many nodes (5 unless given), so a pass can admit ten times as many. */
function nodesOption(): number {
  const { values } = parseArgs({ options: OPTIONS });
  const nodes = values.nodes === undefined ? 5 : Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 200) {
    throw new RangeError(`--nodes must be an integer in 1..200, got ${values.nodes}`);
  }
  return nodes;
}

/**
 * `--backlogs 10,1000` and `--algorithms priority` for a quicker run; everything otherwise.
 * `--latency-ms 10`: each round trip of a pass waits that long first (0 unless given).
 */
function options(): { backlogs: number[]; algorithms: Algorithm[]; latencyMs: number } {
  const { values } = parseArgs({ options: OPTIONS });
  const latencyMs = values["latency-ms"] === undefined ? 0 : Number(values["latency-ms"]);
  if (!Number.isInteger(latencyMs) || latencyMs < 0 || latencyMs > 1000) {
    throw new RangeError(`--latency-ms must be an integer in 0..1000, got ${values["latency-ms"]}`);
  }
  const backlogs =
    values.backlogs === undefined ? [...DEFAULT_BACKLOGS] : values.backlogs.split(",").map(Number);
  if (backlogs.some((n) => !Number.isInteger(n) || n < 1 || n > 1_000_000)) {
    throw new RangeError(`--backlogs must be integers in 1..1000000, got ${values.backlogs}`);
  }
  const algorithms = values.algorithms === undefined ? [...ALGORITHMS] : values.algorithms.split(",");
  const unknown = algorithms.filter((a) => !ALGORITHMS.includes(a as Algorithm));
  if (unknown.length > 0) throw new RangeError(`--algorithms: unknown ${unknown.join(", ")}`);
  return { backlogs, algorithms: algorithms as Algorithm[], latencyMs };
}

async function main(): Promise<void> {
  const chosen = options();
  const dynamo = await startDynamoLocal();
  // Not createDocumentClient: its capacity meter is for the passes alone.
  const seedDb = DynamoDBDocumentClient.from(new DynamoDBClient(awsClientOptions(dynamo.endpoint, REGION)), {
    marshallOptions: { removeUndefinedValues: true },
  });
  const bench: Bench = { endpoint: dynamo.endpoint, seedDb, latencyMs: chosen.latencyMs };
  try {
    console.log(`jobq scheduler benchmark — DynamoDB Local in memory at ${dynamo.endpoint}`);
    console.log(
      `node ${process.version}, ${availableParallelism()} CPUs available; pool ${POOL.name}: ` +
        `${NODES} nodes with room for ${SLOTS} jobs; ${OWNERS} owners; aging on ` +
        `(${DEFAULT_POLICY.agingSecondsPerStep} s a step); ${chosen.latencyMs} ms injected before each ` +
        "DynamoDB request and Step Functions or EventBridge call of a pass",
    );
    const load = () =>
      loadavg()
        .map((l) => l.toFixed(1))
        .join(", ");
    console.log(`load average at start: ${load()}`);
    // Cold imports, JIT and DynamoDB Local's first requests are not what we measure.
    await measure(bench, 100, chosen.algorithms);

    const rows: Row[] = [];
    for (const size of chosen.backlogs) {
      console.log(`backlog ${size.toLocaleString("en-US")}…`);
      rows.push(...(await measure(bench, size, chosen.algorithms)));
    }
    console.log(`load average at end: ${load()}`);
    console.log("");
    printRows(rows);
    console.log("");
    console.log(
      "items read: what DynamoDB read for the pass (Query ScannedCount, items of GetItem, " +
        "BatchGetItem, TransactGetItems); queue: from the queue indexes; per admitted: items read " +
        "/ admitted. calls: DynamoDB requests of the pass, writes included. RCU: DynamoDB Local's " +
        "ConsumedCapacity, which follows DynamoDB's formula only approximately. Pass times are " +
        "DynamoDB Local's on this machine, not AWS's. RT: round trips in a row on the pass's critical " +
        "path (the longest chain of its DynamoDB, Step Functions and EventBridge calls each started " +
        "after the previous ended). CPU ms: this process's CPU time over the pass. adm/s AWS: " +
        `admitted ÷ (RT × ${AWS_ROUND_TRIP_MS} ms + CPU ms), the issue's projection for one pool in AWS ` +
        "(target ≥ 500, flat from 1k to 100k queued).",
    );
  } finally {
    seedDb.destroy();
    await dynamo.stop();
  }
}

await main();
