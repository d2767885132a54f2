import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAttempt } from "../../app/attempts";
import { drainNode } from "../../app/pools";
import { runScheduler } from "../../app/scheduler";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Harness,
  jobItem,
  ownTables,
  registerNode,
  schedulerFor,
  sharedNodes,
  startHarness,
  submitWaiting,
  suffix,
} from "../support/scheduling";

/**
 * POST /pools/{pool}/nodes/{id}/drain through the local API front (admin only, idempotent, 404s,
 * a lost node refused), and what a drain means to a scheduling pass: nothing more is booked on
 * the node, and a job booked there before the drain is taken by another node of the pool.
 */

interface NodeBody {
  readonly id: string;
  readonly status: string;
  readonly drainedBy: string | null;
  readonly drainedAt: string | null;
}
interface PoolsBody {
  readonly items: { readonly name: string; readonly nodes: NodeBody[] }[];
}
interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

const CPU_NODE = { cpu: 2, memoryMb: 4096, gpu: 0 };
const WHOLE_NODE = { cpu: 2, memoryMb: 512, gpu: 0 };

describe("POST /pools/{pool}/nodes/{id}/drain", () => {
  let api: TestApi;
  const nodes = sharedNodes;
  // Nodes of the shared tables' cpu pool (the default pools), drained or lost at once so no other
  // file's pass books work on them, and removed afterwards.
  const live = `node-drain-${suffix()}`;
  const lost = `node-drain-lost-${suffix()}`;
  const path = (pool: string, nodeId: string) =>
    `/pools/${encodeURIComponent(pool)}/nodes/${encodeURIComponent(nodeId)}/drain`;

  beforeAll(async () => {
    api = await startTestApi();
    for (const nodeId of [live, lost]) {
      await nodes().register(
        { pool: "cpu", nodeId, workerId: `worker-${nodeId}`, capacity: CPU_NODE },
        new Date(),
      );
    }
    await nodes().setStatus("cpu", lost, "lost");
  });
  afterAll(async () => {
    for (const nodeId of [live, lost]) await nodes().deregister("cpu", nodeId);
    await api?.close();
  });

  it("answers 401 without a token and 403 to a user, in the contract's error format, and changes nothing", async () => {
    const anonymous = await api.request<ErrorBody>("POST", path("cpu", live));
    const user = await api.request<ErrorBody>("POST", path("cpu", live), { token: "alice-token" });

    expect(anonymous.status).toBe(401);
    expect(anonymous.json.error.code).toBe("unauthorized");
    expect(user.status).toBe(403);
    expect(user.json.error.code).toBe("forbidden");
    expect((await nodes().getNode("cpu", live))?.status).toBe("up");
  });

  it("answers 404 not_found for an unknown pool or node", async () => {
    const pool = await api.request<ErrorBody>("POST", path("no-such-pool", live), { token: "admin-token" });
    const node = await api.request<ErrorBody>("POST", path("cpu", `node-missing-${suffix()}`), {
      token: "admin-token",
    });

    expect(pool.status).toBe(404);
    expect(pool.json.error).toMatchObject({ code: "not_found", message: "no pool named no-such-pool" });
    expect(node.status).toBe(404);
    expect(node.json.error.code).toBe("not_found");
    for (const id of ["x".repeat(2000), "../cpu", "node with spaces"]) {
      const odd = await api.request<ErrorBody>("POST", path("cpu", id), { token: "admin-token" });
      expect(odd.status, id.slice(0, 20)).toBe(404);
      expect(odd.json.error.code).toBe("not_found");
    }
  });

  it("drains an up node (202, who and when), answers a repeated drain 200 with the same node, and GET /pools shows it", async () => {
    // Act
    const first = await api.request<NodeBody>("POST", path("cpu", live), { token: "admin-token" });
    const again = await api.request<NodeBody>("POST", path("cpu", live), { token: "admin-token" });
    const pools = await api.request<PoolsBody>("GET", "/pools", { token: "alice-token" });

    // Assess
    expect(first.status).toBe(202);
    expect(first.json).toMatchObject({ id: live, status: "draining", drainedBy: "ops" });
    expect(Date.parse(first.json.drainedAt ?? "")).not.toBeNaN();
    expect(again.status).toBe(200);
    expect(again.json).toEqual(first.json);
    const shown = pools.json.items.find((p) => p.name === "cpu")?.nodes.find((n) => n.id === live);
    expect(shown).toMatchObject({ status: "draining", drainedBy: "ops", drainedAt: first.json.drainedAt });
  });

  it("refuses a lost node with 409 invalid_transition: its worker is gone", async () => {
    const response = await api.request<ErrorBody>("POST", path("cpu", lost), { token: "admin-token" });

    expect(response.status).toBe(409);
    expect(response.json.error.code).toBe("invalid_transition");
    expect(response.json.error.message).toContain("is lost");
    expect((await nodes().getNode("cpu", lost))?.status).toBe("lost");
  });
});

describe("a drained node in a scheduling pass", () => {
  let h: Harness;
  const OPS = { id: "ops", admin: true };

  beforeAll(async () => {
    h = await startHarness(await ownTables(`jobq-drain-${suffix()}-`));
  });
  afterAll(() => h?.close());

  function newPool(): string {
    const name = `p${suffix()}`;
    h.addPool({ name, labels: {}, nodes: 2, node: CPU_NODE });
    return name;
  }

  it("books nothing more on a draining node, though it has room", async () => {
    // Prepare: two empty nodes, one drained; two jobs that each need a whole node.
    const pool = newPool();
    const drained = await registerNode(h, pool, CPU_NODE);
    const open = await registerNode(h, pool, CPU_NODE);
    await drainNode({ pools: h.pools, nodes: h.nodes, clock: h.clock.read }, OPS, pool, drained);
    const [first = "", second = ""] = await submitWaiting(h, "alice", [
      { pool, resources: WHOLE_NODE },
      { pool, resources: WHOLE_NODE },
    ]);

    // Act
    const [result] = await runScheduler(schedulerFor(h, [pool]), [pool]);

    // Assess: one job on the open node, the other still waiting; nothing on the drained node.
    expect(result?.admitted).toEqual([{ jobId: first, nodeId: open }]);
    expect((await jobItem(h, second)).status).toBe("queued");
    expect((await h.nodes.getNode(pool, drained))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
  });

  it("lets another node take a job booked on the node before its drain, which then can deregister", async () => {
    // Prepare: a job booked on the only node, then a second node, then the first drained.
    const pool = newPool();
    const first = await registerNode(h, pool, CPU_NODE);
    const [id = ""] = await submitWaiting(h, "alice", [{ pool, resources: WHOLE_NODE }]);
    const [result] = await runScheduler(schedulerFor(h, [pool]), [pool]);
    expect(result?.admitted).toEqual([{ jobId: id, nodeId: first }]);
    const second = await registerNode(h, pool, CPU_NODE);
    await drainNode({ pools: h.pools, nodes: h.nodes, clock: h.clock.read }, OPS, pool, first);

    // Act: the second node's worker receives the dispatch message from the pool's shared queue.
    const started = await startAttempt(
      { repo: h.repo, clock: h.clock.read, nodesTable: h.scheduler.nodesTable, events: h.events },
      {
        jobId: id,
        attempt: 1,
        node: { pool, nodeId: second, workerId: `worker-${second}`, capacity: CPU_NODE },
      },
    );

    // Assess: the booking moved, so the drained node holds nothing and leaves.
    expect(started.outcome).toBe("started");
    expect((await jobItem(h, id)).reservation).toMatchObject({ nodeId: second });
    expect((await h.nodes.getNode(pool, first))?.used).toEqual({ cpu: 0, memoryMb: 0, gpu: 0 });
    expect(await h.nodes.deregister(pool, first)).toBe(true);
  });
});
