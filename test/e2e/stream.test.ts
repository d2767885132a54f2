import { describe, expect, it } from "vitest";
import { request } from "../support/api";
import { TERMINAL, useLocalStack } from "../support/e2e";
import { openStream, type StreamJob } from "../support/stream";

/**
 * The "done when": on the local stack (as under `npm start`), a WebSocket client
 * subscribed to a DAG receives every status change of each of its jobs, in version order, as the
 * jobs run on the worker processes. Every wait has a deadline; nothing asserts on timing.
 */

const TOKEN = "stream-e2e-token";
const e2e = useLocalStack(TOKEN, {
  tablePrefix: "jobq-e2e-stream-",
  tokens: new Map([[TOKEN, { principal: `stream-e2e-${Date.now()}`, role: "user" }]]),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
});

/** The first message of each version, as a client that drops versions it has seen keeps them. */
function firstOfEachVersion(jobs: readonly StreamJob[]): StreamJob[] {
  const seen = new Set<number>();
  return jobs.filter((job) => !seen.has(job.version) && seen.add(job.version));
}

describe("the job stream on the local stack", () => {
  it("sends a client subscribed to a DAG every status change of each job, in version order", async () => {
    e2e.showWorkersOnFailure();
    // Prepare: connected before the DAG exists, so its submission is seen too
    const health = await request<{ streamUrl: string }>(e2e.stack.url, "GET", "/health");
    expect(health.json.streamUrl).toBe(e2e.stack.streamUrl);
    const client = await openStream(health.json.streamUrl, TOKEN);

    // Act: a → (b, c)
    const response = await request<{ refs: Record<string, string> }>(e2e.stack.url, "POST", "/jobs/batch", {
      token: TOKEN,
      body: {
        jobs: [
          { ref: "a", type: "echo", payload: { hello: "stream" } },
          { ref: "b", type: "sleep", payload: { seconds: 1 }, dependsOn: ["a"] },
          { ref: "c", type: "log", payload: { lines: 2 }, dependsOn: ["a"] },
        ],
      },
    });
    expect(response.status).toBe(201);
    const ids = Object.values(response.json.refs);
    client.send({ action: "subscribe", jobIds: ids });
    for (const id of ids) {
      await client.waitFor(
        (m) => m.type === "job" && m.job.id === id && TERMINAL.includes(m.job.status as never),
      );
    }

    // Assess: per job, the statuses received are its transitions, in order, ending completed
    for (const id of ids) {
      const received = firstOfEachVersion(client.jobMessages(id));
      const transitions = await request<{ items: { to: string }[] }>(
        e2e.stack.url,
        "GET",
        `/jobs/${id}/transitions`,
        {
          token: TOKEN,
        },
      );
      expect(received.map((job) => job.status)).toEqual(transitions.json.items.map((t) => t.to));
      const versions = client.jobMessages(id).map((job) => job.version);
      expect(versions).toEqual([...versions].sort((x, y) => x - y));
      expect(received.at(-1)?.status).toBe("completed");
      for (const job of received) expect(job).not.toHaveProperty("payload");
    }
    client.close();
  }, 150_000);
});
