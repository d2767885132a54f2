import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type StreamPoller, startStreamPoller } from "../../local/dynamo-streams";
import { loadHandlerExport } from "../../local/lambda";
import { ConnectionRepository } from "../../store/connections";
import { createDocumentClient } from "../../store/dynamo";
import { startTestApi, type TestApi } from "../support/api";
import { eventually, HandshakeRefused, openStream, type StreamClient } from "../support/stream";

/**
 * WS /jobs/stream on the local front: the real connect, message and disconnect handlers, and the
 * real broadcaster fed by the local DynamoDB Streams poller from the test Jobs table, posting
 * through the local `@connections` management API. Jobs are changed through the HTTP API (no
 * executions: submit, pause, resume and cancel are the status changes).
 */

const run = Date.now().toString(36);
const TOKENS = {
  [`alice-${run}`]: { principal: `alice-${run}`, role: "user" as const },
  [`bob-${run}`]: { principal: `bob-${run}`, role: "user" as const },
  [`carol-${run}`]: { principal: `carol-${run}`, role: "user" as const },
  [`ops-${run}`]: { principal: `ops-${run}`, role: "admin" as const },
  [`dave-${run}`]: { principal: `dave-${run}`, role: "user" as const },
  [`erin-${run}`]: { principal: `erin-${run}`, role: "user" as const },
};
const ALICE = `alice-${run}`;
const BOB = `bob-${run}`;
const CAROL = `carol-${run}`;
const OPS = `ops-${run}`;
const DAVE = `dave-${run}`;
const ERIN = `erin-${run}`;

let api: TestApi;
let poller: StreamPoller;
const open: StreamClient[] = [];

async function connect(token: string | undefined, via: "header" | "query" = "header"): Promise<StreamClient> {
  const client = await openStream(api.streamUrl, token, via);
  open.push(client);
  return client;
}

async function submit(token: string): Promise<string> {
  const response = await api.request<{ id: string }>("POST", "/jobs", { token, body: { type: "echo" } });
  expect(response.status).toBe(201);
  return response.json.id;
}

async function act(token: string, method: string, path: string): Promise<void> {
  const response = await api.request(method, path, { token });
  expect(response.status).toBe(200);
}

beforeAll(async () => {
  api = await startTestApi(TOKENS);
  poller = await startStreamPoller({
    endpoint: inject("dynamoEndpoint"),
    region: "us-east-1",
    tableName: inject("tables").Jobs ?? "",
    consumers: [
      {
        name: "jobq-stream-broadcaster",
        load: () => loadHandlerExport(() => import("../../functions/stream/broadcaster"), "broadcaster"),
      },
    ],
  });
});

afterAll(async () => {
  for (const client of open) client.close();
  await poller?.stop();
  await api?.close();
});

describe("WS /jobs/stream", () => {
  it("refuses a missing or unknown token with 401 at the handshake", async () => {
    await expect(connect(undefined)).rejects.toEqual(new HandshakeRefused(401));
    await expect(connect("not-a-token")).rejects.toEqual(new HandshakeRefused(401));
    await expect(connect("not-a-token", "query")).rejects.toEqual(new HandshakeRefused(401));
  });

  it("accepts the token as ?token= and answers ping with pong", async () => {
    const client = await connect(ALICE, "query");
    client.send({ action: "ping" });
    expect(await client.waitFor((m) => m.type === "pong")).toEqual({ type: "pong" });
  });

  it("answers a malformed message with an error and stays open", async () => {
    const client = await connect(ALICE);
    client.ws.send("not json");
    client.send({ action: "subscribe", jobIds: ["nope"] });
    client.send({ action: "ping" });

    await client.waitFor((m) => m.type === "pong");
    const errors = client.messages.filter((m) => m.type === "error");
    expect(errors).toHaveLength(2);
    expect(errors.every((m) => m.type === "error" && m.error.code === "validation_failed")).toBe(true);
  });

  it("sends every status change of a job in version order, without payload or result, to its owner and admins only", async () => {
    // Prepare
    const alice = await connect(ALICE);
    const bob = await connect(BOB);
    const ops = await connect(OPS);

    // Act: queued → paused → queued → cancelled
    const id = await submit(ALICE);
    await act(ALICE, "POST", `/jobs/${id}/pause`);
    await act(ALICE, "POST", `/jobs/${id}/resume`);
    await act(ALICE, "PATCH", `/jobs/${id}/cancel`);

    // Assess
    for (const client of [alice, ops]) {
      await client.waitFor((m) => m.type === "job" && m.job.id === id && m.job.status === "cancelled");
      const jobs = client.jobMessages(id);
      const transitions = await api.request<{ items: { to: string }[] }>("GET", `/jobs/${id}/transitions`, {
        token: ALICE,
      });
      // Every status change, once each here (at least once in general), in order.
      expect(jobs.map((job) => job.status)).toEqual(transitions.json.items.map((t) => t.to));
      const versions = jobs.map((job) => job.version);
      expect(versions).toEqual([...versions].sort((a, b) => a - b));
      expect(new Set(versions).size).toBe(versions.length);
      for (const job of jobs) {
        expect(job).not.toHaveProperty("payload");
        expect(job).not.toHaveProperty("result");
        expect(job.owner).toBe(ALICE);
      }
    }
    // Bob's own change arrives after alice's were delivered; alice's never reach him.
    const bobs = await submit(BOB);
    await bob.waitFor((m) => m.type === "job" && m.job.id === bobs);
    expect(bob.jobMessages(id)).toEqual([]);
    expect(alice.jobMessages(bobs)).toEqual([]);
  });

  it("narrows to the subscribed job ids and widens again with all", async () => {
    // Prepare
    const client = await connect(ALICE);
    const first = await submit(ALICE);
    const second = await submit(ALICE);
    await client.waitFor((m) => m.type === "job" && m.job.id === second);

    // Act: narrow to the first job, change both
    client.send({ action: "subscribe", jobIds: [first] });
    await client.waitFor((m) => m.type === "subscribed");
    const narrowedAt = client.messages.length;
    await act(ALICE, "POST", `/jobs/${second}/pause`);
    await act(ALICE, "POST", `/jobs/${first}/pause`);

    // Assess: the first job's change arrives; the second's, written before it, does not
    await client.waitFor(
      (m) => m.type === "job" && m.job.id === first && m.job.status === "paused",
      narrowedAt,
    );
    const sinceNarrowed = client.messages.slice(narrowedAt);
    expect(sinceNarrowed.some((m) => m.type === "job" && m.job.id === second)).toBe(false);

    // Act: widen
    client.send({ action: "subscribe", all: true });
    await client.waitFor((m) => m.type === "subscribed" && m.jobIds === null, narrowedAt);
    const widenedAt = client.messages.length;
    await act(ALICE, "POST", `/jobs/${second}/resume`);

    // Assess
    await client.waitFor(
      (m) => m.type === "job" && m.job.id === second && m.job.status === "queued",
      widenedAt,
    );
  });

  it("deletes a connection that is gone (410) when a change is posted to it", async () => {
    // Prepare: a connection item whose socket does not exist, as a lost $disconnect leaves it
    const repo = new ConnectionRepository(
      createDocumentClient({ region: "us-east-1", endpoint: inject("dynamoEndpoint") }),
      inject("tables").Connections ?? "",
    );
    const ghost = `ghost-${run}`;
    await repo.add(ghost, { id: CAROL, admin: false }, new Date());
    const carol = await connect(CAROL);

    // Act
    const id = await submit(CAROL);

    // Assess: the live connection got the change, the ghost's item is gone
    await carol.waitFor((m) => m.type === "job" && m.job.id === id);
    await eventually(
      () => repo.get(ghost),
      (connection) => connection === null,
    );
  });

  it("closes a client too slow to read with 4008 instead of buffering without bound", async () => {
    // Prepare: a client that has stopped reading
    const client = await connect(DAVE);
    const connectionId = await connectionIdOf(DAVE);
    client.ws.pause();

    // Act: post 100 KB messages through the management API until the server gives up on it
    const chunk = JSON.stringify({ type: "filler", data: "x".repeat(100 * 1024) });
    let status = 200;
    for (let posts = 0; posts < 2000 && status === 200; posts++) {
      const response = await fetch(`${api.url}/@connections/${encodeURIComponent(connectionId)}`, {
        method: "POST",
        body: chunk,
      });
      status = response.status;
      await response.arrayBuffer();
    }

    // Assess: once closed, the connection is gone to the management API, and the client, reading
    // again, finds the close code after what was buffered
    expect(status).toBe(410);
    client.ws.resume();
    expect(await client.closed).toEqual({ code: 4008, reason: "client too slow" });
  });

  it("serves the management API: GET for info, DELETE to close, 410 for unknown connections", async () => {
    const client = await connect(ERIN);
    const connectionId = await connectionIdOf(ERIN);
    const url = `${api.url}/@connections/${encodeURIComponent(connectionId)}`;

    const info = await fetch(url);
    expect(info.status).toBe(200);
    expect(await info.json()).toMatchObject({ connectedAt: expect.any(String) });

    expect((await fetch(url, { method: "DELETE" })).status).toBe(204);
    expect((await client.closed).code).toBe(1000);
    const after = await fetch(url, { method: "POST", body: "{}" });
    expect(after.status).toBe(410);
    expect(after.headers.get("x-amzn-errortype")).toBe("GoneException");
  });

  it("names the stream in GET /health", async () => {
    const response = await api.request("GET", "/health");
    expect(response.json).toEqual({ status: "ok", streamUrl: api.streamUrl });
  });
});

/**
 * The id of a principal's one open connection, as the broadcaster finds it: from the connections
 * table's subscriber index (each test that needs it uses a principal of its own).
 */
async function connectionIdOf(principal: string): Promise<string> {
  const repo = new ConnectionRepository(
    createDocumentClient({ region: "us-east-1", endpoint: inject("dynamoEndpoint") }),
    inject("tables").Connections ?? "",
  );
  const [connection] = await eventually(
    () => repo.ofSubscriber(`P#${principal}`),
    (connections) => connections.length === 1,
  );
  return connection?.connectionId ?? "";
}
