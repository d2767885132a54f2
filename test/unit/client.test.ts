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

  it("sends the retry, bulk and reorder routes with their bodies", async () => {
    const sent: Sent[] = [];
    const client = clientAnswering(json(200, { acted: [], skipped: [], nextCursor: null }), sent);

    await client.retry("job/1");
    await client.retry("job_2", { maxAttempts: 3, dependents: true });
    await client.cancelJobs({ filter: { status: "queued,blocked", tag: "team:ml" }, limit: 10 });
    await client.retryJobs({ filter: { type: "train" }, cursor: "c1", maxAttempts: 2 });
    await client.moveBefore("job_3", "job_4");

    expect(sent.map((s) => `${s.init?.method} ${s.url}`)).toEqual([
      "POST https://api.example.test/v1/jobs/job%2F1/retry",
      "POST https://api.example.test/v1/jobs/job_2/retry",
      "POST https://api.example.test/v1/jobs/cancel",
      "POST https://api.example.test/v1/jobs/retry",
      "PATCH https://api.example.test/v1/jobs/job_3",
    ]);
    // No body at all for a plain retry: the handler reads none as `{}`.
    expect(sent[0]?.init?.body).toBeUndefined();
    expect(JSON.parse(String(sent[1]?.init?.body))).toEqual({ maxAttempts: 3, dependents: true });
    expect(JSON.parse(String(sent[2]?.init?.body))).toEqual({
      filter: { status: "queued,blocked", tag: "team:ml" },
      limit: 10,
    });
    expect(JSON.parse(String(sent[3]?.init?.body))).toEqual({
      filter: { type: "train" },
      cursor: "c1",
      maxAttempts: 2,
    });
    expect(JSON.parse(String(sent[4]?.init?.body))).toEqual({ before: "job_4" });
  });

  it("asks GET /stats for a window only when given one", async () => {
    const sent: Sent[] = [];
    const client = clientAnswering(json(200, { window: "1h" }), sent);

    await client.stats();
    await client.stats("24h");

    expect(sent.map((s) => s.url)).toEqual([
      "https://api.example.test/v1/stats",
      "https://api.example.test/v1/stats?window=24h",
    ]);
  });

  it("sends the schedule routes with their paths, bodies and query", async () => {
    const sent: Sent[] = [];
    const client = clientAnswering(json(200, { id: "sch_1" }), sent);

    await client.createSchedule({ name: "nightly", cron: "0 3 * * *", job: { type: "echo" } });
    await client.getSchedule("sch_1");
    await client.updateSchedule("sch_1", { enabled: false });
    await client.listSchedules({ owner: "alice", limit: 5 });

    expect(sent.map((s) => `${s.init?.method} ${s.url}`)).toEqual([
      "POST https://api.example.test/v1/schedules",
      "GET https://api.example.test/v1/schedules/sch_1",
      "PATCH https://api.example.test/v1/schedules/sch_1",
      "GET https://api.example.test/v1/schedules?owner=alice&limit=5",
    ]);
    expect(JSON.parse(String(sent[0]?.init?.body))).toEqual({
      name: "nightly",
      cron: "0 3 * * *",
      job: { type: "echo" },
    });
    expect(JSON.parse(String(sent[2]?.init?.body))).toEqual({ enabled: false });
  });

  it("resolves DELETE /schedules/{id}'s empty 204", async () => {
    const sent: Sent[] = [];
    const client = clientAnswering(() => new Response(null, { status: 204 }), sent);

    await expect(client.deleteSchedule("sch_1")).resolves.toBeUndefined();
    expect(sent[0]?.init?.method).toBe("DELETE");
    expect(sent[0]?.url).toBe("https://api.example.test/v1/schedules/sch_1");
  });

  it("follows nextCursor across schedule pages", async () => {
    const pages = [
      { items: [{ id: "sch_1" }], nextCursor: "c1" },
      { items: [{ id: "sch_2" }], nextCursor: null },
    ];
    const sent: Sent[] = [];
    let page = 0;
    const client = clientAnswering(() => json(200, pages[page++])(), sent);

    const ids: string[] = [];
    for await (const schedule of client.schedules({ limit: 1 })) ids.push(schedule.id);

    expect(ids).toEqual(["sch_1", "sch_2"]);
    expect(new URL(sent[1]?.url ?? "").searchParams.get("cursor")).toBe("c1");
  });

  it("tells a trigger's submitted, replayed and skipped answers apart", async () => {
    const answers = [
      json(201, { id: "job_1", status: "queued" }),
      json(200, { id: "job_1", status: "queued" }, { "idempotent-replayed": "true" }),
      json(200, {
        at: "2026-01-01T00:00:00.000Z",
        skipped: "the previous job is running",
        trigger: "manual",
      }),
    ];
    const sent: Sent[] = [];
    let i = 0;
    const client = clientAnswering(() => (answers[i++] ?? answers[0] ?? json(500, {}))(), sent);

    const submitted = await client.triggerSchedule("sch_1", { idempotencyKey: "k-1" });
    const replayed = await client.triggerSchedule("sch_1", { idempotencyKey: "k-1" });
    const skipped = await client.triggerSchedule("sch_1");

    expect(submitted).toMatchObject({ outcome: "submitted", job: { id: "job_1" } });
    expect(replayed).toMatchObject({ outcome: "replayed", job: { id: "job_1" } });
    expect(skipped).toMatchObject({ outcome: "skipped", fire: { skipped: "the previous job is running" } });
    expect(sent[0]?.url).toBe("https://api.example.test/v1/schedules/sch_1/trigger");
    expect(sent[0]?.init?.method).toBe("POST");
    expect(sent[0]?.init?.headers).toMatchObject({ "Idempotency-Key": "k-1" });
    expect(sent[2]?.init?.headers).not.toHaveProperty("Idempotency-Key");
    expect(sent[0]?.init?.body).toBeUndefined();
  });
});
