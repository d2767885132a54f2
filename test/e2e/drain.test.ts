import { describe, expect, it } from "vitest";
import type { Attempt, Pool } from "../../client";
import { useCli } from "../support/cli";
import { untilWithin, useLocalStack } from "../support/e2e";

/**
 * Draining a node on the whole local stack, as an operator would: POST
 * /pools/{pool}/nodes/{id}/drain while the node runs a job. The job completes there (an admin's
 * drain has no grace limit, unlike SIGTERM's 1 s here), new work goes to the other node, the
 * drained worker process exits 0 and is not restarted, and GET /pools shows the node draining,
 * then gone. Then `jobq nodes drain … --wait` as a child process on the other node. Every wait
 * polls with a deadline; nothing asserts on timing.
 */

const TOKEN = "e2e-drain-token";
const DEADLINE_MS = 90_000;
const POOL = "drain";

const e2e = useLocalStack(TOKEN, {
  tablePrefix: "jobq-e2e-drain-",
  tokens: new Map([[TOKEN, { principal: `e2e-drain-${Date.now()}`, role: "admin" }]]),
  pools: [{ name: POOL, labels: {}, nodes: 2, node: { cpu: 1, memoryMb: 1024, gpu: 0 } }],
  // Node heartbeats every second (a third of nodeLostSeconds): a drain is noticed within one.
  heartbeatSeconds: 2,
  nodeLostSeconds: 5,
  sweepSeconds: 2,
  workerShutdownGraceSeconds: 1,
  workerPollWaitSeconds: 2,
});

const until = untilWithin(DEADLINE_MS);

async function pool(): Promise<Pool> {
  const found = (await e2e.client.pools({ lost: true })).find((p) => p.name === POOL);
  if (!found) throw new Error(`no pool ${POOL} in GET /pools`);
  return found;
}

async function attempts(id: string): Promise<Attempt[]> {
  return [...(await e2e.client.attempts(id)).items].sort((a, b) => a.attempt - b.attempt);
}

/** The local node name (`drain-1`) a node id was registered under (worker/config.ts#freshNodeId). */
function nodeName(nodeId: string): string {
  const names = (e2e.stack.execution?.workers ?? []).map((n) => n.name).filter((n) => nodeId.startsWith(n));
  const name = names.sort((a, b) => b.length - a.length)[0];
  if (!name) throw new Error(`no local worker node for ${nodeId}`);
  return name;
}

const cli = useCli(e2e, { token: TOKEN, homePrefix: "jobq-drain-e2e-", deadlineMs: DEADLINE_MS });

describe("draining a node of the local stack", () => {
  let drained = "";

  it("lets the running job complete on the drained node, sends new work elsewhere, and the worker leaves for good", async () => {
    e2e.showWorkersOnFailure();
    // Prepare: both nodes up; a job that runs longer than the SIGTERM grace (1 s)
    await until("two nodes up", pool, (p) => p.nodes.filter((n) => n.status === "up").length === 2);
    const long = await e2e.submit({
      type: "sleep",
      pool: POOL,
      payload: { seconds: 6 },
      resources: { cpu: 1 },
    });
    const [running] = await until(
      "attempt running",
      () => attempts(long.id),
      (items) => items[0]?.status === "running",
    );
    drained = running?.nodeId ?? "";

    // Act
    const answer = await e2e.client.drainNode(POOL, drained);
    const shown = (await pool()).nodes.find((n) => n.id === drained);
    const next = await e2e.submit({
      type: "echo",
      pool: POOL,
      payload: { after: "drain" },
      resources: { cpu: 1 },
    });

    // Assess: draining at once, with who drained it
    expect(answer).toMatchObject({ started: true, node: { id: drained, status: "draining" } });
    expect(answer.node.drainedBy).toMatch(/^e2e-drain-/);
    expect(shown).toMatchObject({ status: "draining", drainedBy: answer.node.drainedBy });
    // The running job finished where it ran, not aborted by the drain
    const done = await until(
      "long job ended",
      () => e2e.getJob(long.id),
      (job) => job.status === "completed" || job.status === "failed",
    );
    expect(done.status).toBe("completed");
    expect((await attempts(long.id)).map((a) => [a.status, a.nodeId])).toEqual([["succeeded", drained]]);
    // New work went to the other node
    await until(
      "next job completed",
      () => e2e.getJob(next.id),
      (job) => job.status === "completed",
    );
    const [nextAttempt] = await attempts(next.id);
    expect(nextAttempt?.nodeId).not.toBe(drained);
    // The node deregistered: gone from GET /pools, even with ?lost=true
    await until("drained node gone", pool, (p) => !p.nodes.some((n) => n.id === drained));
    // Its process exited 0 and was not restarted
    const name = nodeName(drained);
    const lines = await until(
      "worker exit reported",
      async () => e2e.workerOutput(),
      (output) => output.some((line) => line.startsWith(`[worker ${name}] exited (code 0)`)),
    );
    expect(lines).toContain(
      `[worker ${name}] exited (code 0): drained, not restarted until the stack restarts`,
    );
    expect(lines.some((line) => line.startsWith(`[worker ${name}] restarting`))).toBe(false);
    expect((await pool()).nodes.map((n) => n.status)).toEqual(["up"]);
  }, 180_000);

  it("drains the other node with `jobq nodes drain --wait`, which follows it until it is gone and exits 0", async () => {
    e2e.showWorkersOnFailure();
    // Prepare
    const [other] = (await pool()).nodes.filter((n) => n.status === "up");
    expect(other).toBeDefined();

    // Act
    const ran = await cli.jobq(["nodes", "drain", POOL, other?.id ?? "", "--wait"]);
    const listed = await cli.jobq(["nodes", "list", "--pool", POOL, "--lost"]);

    // Assess
    expect(ran, ran.stderr).toMatchObject({ code: 0 });
    const lines = ran.stdout.trim().split("\n");
    expect(lines[0]).toMatch(
      new RegExp(`^node ${other?.id} of pool ${POOL}: draining \\(drained by e2e-drain-`),
    );
    expect(lines.at(-1)).toBe(`node ${other?.id} of pool ${POOL}: gone`);
    expect(listed.code).toBe(0);
    expect(listed.stdout).not.toContain(other?.id ?? "?");
    expect(listed.stdout).not.toContain(drained);
  }, 180_000);
});
