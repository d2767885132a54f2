/**
 * Admission benchmark (`npx tsx bench/admission.ts`): the pure core only, no I/O. One pass over
 * 100,000 queued jobs of mixed shapes (some GPU, some without a pool, some starving) against 50
 * nodes in two pools, decided at once and fed page by page (100 a page) as the scheduler does.
 * Then the same pass in each policy's order (core/ordering.ts: 100 owners, mixed priorities, some
 * deadlines), job by job through AdmissionOrder and decideInOrder, and the estimatedStartAt
 * simulation for the first 100 queued jobs. Prints figures; asserts nothing.
 */
import { AdmissionPass, decideAdmission, type NodeState, type QueuedJob } from "../core/admission";
import { estimateStarts } from "../core/estimate";
import type { Resources } from "../core/job";
import { AdmissionOrder, decideInOrder } from "../core/ordering";
import type { Algorithm } from "../core/policy";
import type { PoolConfig } from "../core/pools";

const JOBS = 100_000;
const NODES = 50;
const ROUNDS = 5;
const OWNERS = 100;
const PRIORITIES = [-10, -5, 0, 0, 0, 5, 10];

const pools: PoolConfig[] = [
  { name: "cpu", labels: { zone: "a" }, nodes: 40, node: { cpu: 16, memoryMb: 65536, gpu: 0 } },
  { name: "gpu", labels: { zone: "b" }, nodes: 10, node: { cpu: 32, memoryMb: 262144, gpu: 8 } },
];

/** A small deterministic generator so every run decides the same pass. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1664525 + 1013904223) % 2 ** 32;
    return state / 2 ** 32;
  };
}

function workload(): { queued: QueuedJob[]; nodes: NodeState[]; now: Date } {
  const next = random(42);
  const now = new Date("2026-11-25T12:00:00.000Z");
  const nodes: NodeState[] = Array.from({ length: NODES }, (_, i) => {
    const pool = i < 40 ? pools[0] : pools[1];
    if (!pool) throw new Error("unreachable");
    const used = { cpu: Math.floor(next() * 8), memoryMb: Math.floor(next() * 16384), gpu: 0 };
    return { nodeId: `node-${i}`, pool: pool.name, capacity: pool.node, used };
  });
  const queued: QueuedJob[] = Array.from({ length: JOBS }, (_, i) => {
    const gpuJob = next() < 0.1;
    const anyPool = next() < 0.3;
    const constraints: Record<string, string> = anyPool && next() < 0.5 ? { zone: gpuJob ? "b" : "a" } : {};
    return {
      id: `job_${String(i).padStart(8, "0")}`,
      resources: {
        cpu: gpuJob ? 4 : 0.5 + Math.floor(next() * 4),
        memoryMb: 512 * (1 + Math.floor(next() * 8)),
        gpu: gpuJob ? 1 + Math.floor(next() * 4) : 0,
      },
      pool: anyPool ? null : gpuJob ? "gpu" : "cpu",
      constraints,
      queuedAt: new Date(now.getTime() - Math.floor(next() * 900) * 1000).toISOString(),
      owner: `owner-${Math.floor(next() * OWNERS)}`,
      priority: PRIORITIES[Math.floor(next() * PRIORITIES.length)] ?? 0,
      deadline:
        next() < 0.05 ? new Date(now.getTime() + Math.floor(next() * 7200) * 1000).toISOString() : null,
    };
  });
  return { queued, nodes, now };
}

const { queued, nodes, now } = workload();

function timed<T>(run: () => T): { ms: number; result: T } {
  const start = process.hrtime.bigint();
  const result = run();
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, result };
}

/** Policy passes run on the same jobs with their owners and priorities; the plain pass above ignores them. */
const plainQueued = queued.map((j) => ({ ...j, priority: 0, owner: undefined, deadline: null }));

const whole: number[] = [];
const paged: number[] = [];
let summary = "";
for (let round = 0; round < ROUNDS; round++) {
  const once = timed(() => decideAdmission({ queued: plainQueued, nodes, pools, now }));
  whole.push(once.ms);
  summary = `${once.result.admit.length} admitted, ${once.result.waiting.length} waiting, ${once.result.held.length} nodes held`;
  const pages = timed(() => {
    const pass = new AdmissionPass({ nodes, pools, now });
    for (let i = 0; i < plainQueued.length; i += 100) pass.offer(plainQueued.slice(i, i + 100));
  });
  paged.push(pages.ms);
}

const best = (xs: number[]): string => `${Math.min(...xs).toFixed(1)} ms`;
const median = (xs: number[]): string =>
  `${[...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]?.toFixed(1)} ms`;
console.log(`admission: ${JOBS.toLocaleString("en")} queued jobs x ${NODES} nodes, ${ROUNDS} rounds`);
console.log(`  decision: ${summary}`);
console.log(`  one call:       best ${best(whole)}, median ${median(whole)}`);
console.log(`  100 per offer:  best ${best(paged)}, median ${median(paged)}`);

// Policy order: what a pass in each algorithm's order costs, ordering included.
const capacity: Resources = nodes.reduce(
  (sum, n) => ({
    cpu: sum.cpu + n.capacity.cpu,
    memoryMb: sum.memoryMb + n.capacity.memoryMb,
    gpu: sum.gpu + n.capacity.gpu,
  }),
  { cpu: 0, memoryMb: 0, gpu: 0 },
);
/** Owners already hold some of the pool, so fair-share starts from unequal shares. */
const usage = new Map<string, Resources>(
  Array.from({ length: OWNERS }, (_, i) => [
    `owner-${i}`,
    { cpu: (i % 10) * 2, memoryMb: (i % 7) * 4096, gpu: i % 13 === 0 ? 2 : 0 },
  ]),
);
const policies: { name: string; algorithm: Algorithm; agingSecondsPerStep: number }[] = [
  { name: "priority + aging", algorithm: "priority", agingSecondsPerStep: 300 },
  { name: "fair-share", algorithm: "fair-share", agingSecondsPerStep: 300 },
  { name: "round-robin", algorithm: "round-robin", agingSecondsPerStep: 300 },
];
console.log(
  `policy order: ${JOBS.toLocaleString("en")} queued jobs of ${OWNERS} owners x ${NODES} nodes, job by job`,
);
for (const policy of policies) {
  const orderOnly: number[] = [];
  const decided: number[] = [];
  let line = "";
  for (let round = 0; round < ROUNDS; round++) {
    const input = {
      ...policy,
      weights: { "owner-1": 2 },
      now,
      jobs: queued,
      usage,
      capacity,
      lastOwner: "owner-50",
    };
    orderOnly.push(
      timed(() => {
        const order = new AdmissionOrder(input);
        for (let job = order.next(); job; job = order.next()) order.admitted(job);
      }).ms,
    );
    const run = timed(() =>
      decideInOrder(new AdmissionPass({ nodes, pools, now }), new AdmissionOrder(input)),
    );
    decided.push(run.ms);
    line = `${run.result.admit.length} admitted, ${run.result.waiting.length} waiting`;
  }
  console.log(
    `  ${policy.name.padEnd(17)} order + decide: best ${best(decided)}, median ${median(decided)} (${line})`,
  );
  console.log(
    `  ${"".padEnd(17)} order alone, every job admitted: best ${best(orderOnly)}, median ${median(orderOnly)}`,
  );
}

// estimatedStartAt for GET /queue: the first 100 queued jobs over the 50 nodes.
const runningNow = nodes.map((n, i) => ({
  nodeId: n.nodeId,
  resources: n.used,
  expectedEndAt: new Date(now.getTime() + (i % 10) * 60_000),
}));
const listed = queued.slice(0, 100).map((j, i) => ({
  id: j.id,
  resources: j.resources,
  expectedDurationMs: i % 17 === 0 ? null : 60_000 * (1 + (i % 5)),
  pools: j.pool ? [j.pool] : null,
}));
const estimates: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  estimates.push(timed(() => estimateStarts({ now, nodes, running: runningNow, queued: listed })).ms);
}
console.log(
  `estimatedStartAt: 100 queued x ${NODES} nodes: best ${best(estimates)}, median ${median(estimates)}`,
);
