import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api";
import { sharedNodes, suffix } from "../support/scheduling";

interface NodeView {
  readonly id: string;
  readonly status: string;
}
interface PoolsBody {
  readonly items: { readonly name: string; readonly capacity: { cpu: number }; readonly nodes: NodeView[] }[];
}
interface ErrorBody {
  readonly error: { readonly code: string };
}

const CPU_NODE = { cpu: 2, memoryMb: 4096, gpu: 0 };

/** GET /pools leaves lost nodes out unless `?lost=true` asks for them. */
describe("GET /pools and lost nodes", () => {
  let api: TestApi;
  const nodes = sharedNodes;
  const live = `node-live-${suffix()}`;
  const draining = `node-draining-${suffix()}`;
  const lost = `node-lost-${suffix()}`;

  beforeAll(async () => {
    api = await startTestApi();
    // Prepare: three nodes in the shared tables' cpu pool (the default pools), removed afterwards.
    for (const nodeId of [live, draining, lost]) {
      await nodes().register(
        { pool: "cpu", nodeId, workerId: `worker-${nodeId}`, capacity: CPU_NODE },
        new Date(),
      );
    }
    await nodes().setStatus("cpu", draining, "draining");
    await nodes().setStatus("cpu", lost, "lost");
  });
  afterAll(async () => {
    for (const nodeId of [live, draining, lost]) await nodes().deregister("cpu", nodeId);
    await api?.close();
  });

  /** This test's nodes, in id order (nodes registered in the same millisecond sort by id). */
  const mine = (body: PoolsBody): NodeView[] =>
    (body.items.find((p) => p.name === "cpu")?.nodes ?? [])
      .filter((n) => [live, draining, lost].includes(n.id))
      .sort((a, b) => a.id.localeCompare(b.id));

  it("lists live and draining nodes but not lost ones by default", async () => {
    const response = await api.request<PoolsBody>("GET", "/pools", { token: "alice-token" });

    expect(response.status).toBe(200);
    expect(mine(response.json).map((n) => [n.id, n.status])).toEqual([
      [draining, "draining"],
      [live, "up"],
    ]);
    expect(response.json.items.flatMap((p) => p.nodes).some((n) => n.status === "lost")).toBe(false);
  });

  it.each(["?lost=false", ""])("answers %s the same as no query", async (query) => {
    const response = await api.request<PoolsBody>("GET", `/pools${query}`, { token: "alice-token" });

    expect(mine(response.json).map((n) => n.id)).toEqual([draining, live]);
  });

  it("adds the lost nodes, with every field of the contract, with ?lost=true", async () => {
    const response = await api.request<PoolsBody>("GET", "/pools?lost=true", { token: "alice-token" });

    expect(response.status).toBe(200);
    expect(mine(response.json).map((n) => [n.id, n.status])).toEqual([
      [draining, "draining"],
      [live, "up"],
      [lost, "lost"],
    ]);
    expect(mine(response.json).find((n) => n.id === lost)).toEqual({
      id: lost,
      capacity: CPU_NODE,
      used: { cpu: 0, memoryMb: 0, gpu: 0 },
      status: "lost",
      lastHeartbeatAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      drainedBy: null,
      drainedAt: null,
    });
  });

  it("counts only live nodes in the pool's capacity, whichever nodes it lists", async () => {
    const without = await api.request<PoolsBody>("GET", "/pools", { token: "alice-token" });
    const withLost = await api.request<PoolsBody>("GET", "/pools?lost=true", { token: "alice-token" });

    const capacity = (body: PoolsBody) => body.items.find((p) => p.name === "cpu")?.capacity;
    expect(capacity(withLost.json)).toEqual(capacity(without.json));
  });

  it.each(["?lost=yes", "?lost=", "?lost=true&lost=1", "?verbose=true"])(
    "answers %s with a 400",
    async (query) => {
      const response = await api.request<ErrorBody>("GET", `/pools${query}`, { token: "alice-token" });

      expect(response.status).toBe(400);
      expect(response.json.error.code).toBe("validation_failed");
    },
  );
});
