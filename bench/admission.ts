/**
 * Admission benchmark (`npx tsx bench/admission.ts`): the pure core only, no I/O. One pass over
 * 100,000 queued jobs of mixed shapes (some GPU, some without a pool, some starving) against 50
 * nodes in two pools, decided at once and fed page by page (100 a page) as the scheduler does.
 * Prints figures; asserts nothing.
 */
import { AdmissionPass, decideAdmission, type NodeState, type QueuedJob } from "../core/admission";
import type { PoolConfig } from "../core/pools";

const JOBS = 100_000;
const NODES = 50;
const ROUNDS = 5;

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
      priority: 0,
      resources: {
        cpu: gpuJob ? 4 : 0.5 + Math.floor(next() * 4),
        memoryMb: 512 * (1 + Math.floor(next() * 8)),
        gpu: gpuJob ? 1 + Math.floor(next() * 4) : 0,
      },
      pool: anyPool ? null : gpuJob ? "gpu" : "cpu",
      constraints,
      queuedAt: new Date(now.getTime() - Math.floor(next() * 900) * 1000).toISOString(),
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

const whole: number[] = [];
const paged: number[] = [];
let summary = "";
for (let round = 0; round < ROUNDS; round++) {
  const once = timed(() => decideAdmission({ queued, nodes, pools, now }));
  whole.push(once.ms);
  summary = `${once.result.admit.length} admitted, ${once.result.waiting.length} waiting, ${once.result.held.length} nodes held`;
  const pages = timed(() => {
    const pass = new AdmissionPass({ nodes, pools, now });
    for (let i = 0; i < queued.length; i += 100) pass.offer(queued.slice(i, i + 100));
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
