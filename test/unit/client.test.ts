import { describe, expect, it } from "vitest";
import { JobqApiError, JobqClient, JobqUnreachableError } from "../../client";

/**
 * The client's own logic, with fetch (its documented injection point) answering in place of the
 * network: URLs and query strings, headers, and how answers become results or typed errors.
 * test/integration/openapi-contract.test.ts drives it against the real handlers.
 */

interface Sent {
  readonly url: string;
  readonly init: RequestInit | undefined;
}

function clientAnswering(response: () => Response, sent: Sent[] = [], url = "https://api.example.test/v1/") {
  return new JobqClient({
    url,
    token: "t-1",
    fetch: async (input, init) => {
      sent.push({ url: String(input), init });
      return response();
    },
  });
}

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}) =>
  () =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json", ...headers },
    });

describe("JobqClient", () => {
  it("joins the base URL, encodes path segments and query values, and sends the token", async () => {
    // Prepare
    const sent: Sent[] = [];
    const client = clientAnswering(json(200, { items: [], nextCursor: null }), sent);

    // Act
    await client.listJobs({
      status: ["queued", "running"],
      createdAfter: new Date("2026-01-02T03:04:05Z"),
      limit: 5,
      type: undefined,
    });
    await client.getJob("job/1 2");

    // Assess
    expect(sent[0]?.url).toBe(
      "https://api.example.test/v1/jobs?status=queued%2Crunning&createdAfter=2026-01-02T03%3A04%3A05.000Z&limit=5",
    );
    expect(sent[1]?.url).toBe("https://api.example.test/v1/jobs/job%2F1%202");
    expect(sent[0]?.init?.headers).toMatchObject({ authorization: "Bearer t-1" });
  });

  it("sends a JSON body and the Idempotency-Key", async () => {
    const sent: Sent[] = [];
    const client = clientAnswering(json(201, { id: "job_1" }), sent);

    const answer = await client.submitAnswer({ type: "echo" }, { idempotencyKey: "k-1" });

    expect(answer.status).toBe(201);
    expect(sent[0]?.init?.method).toBe("POST");
    expect(sent[0]?.init?.body).toBe('{"type":"echo"}');
    expect(sent[0]?.init?.headers).toMatchObject({
      "content-type": "application/json",
      "Idempotency-Key": "k-1",
    });
  });

  it("follows nextCursor across pages", async () => {
    const pages = [
      { items: [{ id: "job_1" }], nextCursor: "c1" },
      { items: [{ id: "job_2" }], nextCursor: null },
    ];
    const sent: Sent[] = [];
    let page = 0;
    const client = clientAnswering(() => json(200, pages[page++])(), sent);

    const ids: string[] = [];
    for await (const job of client.jobs({ limit: 1 })) ids.push(job.id);

    expect(ids).toEqual(["job_1", "job_2"]);
    expect(new URL(sent[1]?.url ?? "").searchParams.get("cursor")).toBe("c1");
  });

  it("turns the contract's error into a JobqApiError with code, details and Retry-After", async () => {
    const client = clientAnswering(
      json(
        429,
        { error: { code: "too_many_requests", message: "slow down", details: { retryAfterSeconds: 7 } } },
        { "retry-after": "7" },
      ),
    );

    const error = await client.submit({ type: "echo" }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(JobqApiError);
    expect(error).toMatchObject({
      status: 429,
      code: "too_many_requests",
      message: "slow down",
      details: { retryAfterSeconds: 7 },
      retryAfterSeconds: 7,
    });
  });

  it("gives a code from the status when the body is not the contract's (a proxy's page)", async () => {
    const client = clientAnswering(() => new Response("<html>Bad Gateway</html>", { status: 502 }));

    const error = await client.health().catch((e: unknown) => e);

    expect(error).toMatchObject({ status: 502, code: "internal", retryAfterSeconds: undefined });
  });

  it("fails with JobqUnreachableError when fetch itself fails", async () => {
    const client = new JobqClient({
      url: "http://127.0.0.1:9",
      fetch: async () => {
        throw new TypeError("fetch failed");
      },
    });

    const error = await client.health().catch((e: unknown) => e);

    expect(error).toBeInstanceOf(JobqUnreachableError);
    expect((error as Error).cause).toBeInstanceOf(TypeError);
  });
});
