import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { startLocalWorkers, workerNodes } from "../../local/workers";

/**
 * The local stack's worker processes (local/workers.ts), with stand-in entries: each gets its
 * pool and node size, a worker that dies is restarted with a growing delay, and one that ignores
 * SIGTERM is killed after the grace. Nothing is left running.
 */

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const POOL = { name: "p", labels: {}, nodes: 2, node: { cpu: 1.5, memoryMb: 256, gpu: 0 } };

async function until(condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("local worker processes", () => {
  it("names one node per configured node of each pool", () => {
    expect(workerNodes([POOL, { ...POOL, name: "q", nodes: 1 }]).map((node) => node.name)).toEqual([
      "p-1",
      "p-2",
      "q-1",
    ]);
  });

  it("passes each worker its pool and node, restarts a dead one with backoff, and stops restarting on stop", async () => {
    // Prepare
    const lines: string[] = [];
    const workers = startLocalWorkers({
      pools: [{ ...POOL, nodes: 1 }],
      env: { JOBQ_FIXTURE_EXTRA: "yes", JOBQ_NODE_GPU: "7" },
      entry: fixture("worker-exits.ts"),
      restartInitialMs: 50,
      restartMaxMs: 200,
      output: (line) => lines.push(line),
    });

    // Act: let it die and come back a few times
    try {
      await until(() => lines.filter((line) => line.includes("restarting in")).length >= 4);
    } finally {
      await workers.stop();
    }
    const started = lines.filter((line) => line.includes("] started")).length;
    await new Promise((resolve) => setTimeout(resolve, 500));

    // Assess
    expect(lines).toContain("[worker p-1] started pool=p node=p-1 cpu=1.5 memory=256 gpu=0 extra=yes");
    expect(lines).toContain("[worker p-1] exited (code 3)");
    const delays = lines
      .filter((line) => line.includes("restarting in"))
      .map((line) => line.replace(/.*in /, ""));
    expect(delays.slice(0, 4)).toEqual(["50 ms", "100 ms", "200 ms", "200 ms"]);
    expect(lines.filter((line) => line.includes("] started")).length).toBe(started);
  }, 60_000);

  it("kills a worker that ignores SIGTERM after the grace", async () => {
    // Prepare
    const lines: string[] = [];
    const workers = startLocalWorkers({
      pools: [{ ...POOL, nodes: 1 }],
      env: {},
      entry: fixture("worker-stubborn.ts"),
      killAfterMs: 500,
      output: (line) => lines.push(line),
    });
    await until(() => lines.includes("[worker p-1] started"));

    // Act
    await workers.stop();

    // Assess
    expect(lines).toContain("[worker p-1] ignoring SIGTERM");
    expect(lines.some((line) => line.includes("SIGKILL"))).toBe(true);
    expect(lines.some((line) => line.includes("restarting"))).toBe(false);
  }, 60_000);
});
