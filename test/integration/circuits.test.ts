import { describe, expect, it } from "vitest";
import type { CircuitListView, CircuitView } from "../../app/circuits";
import { policySchema } from "../../core/policy";
import { request } from "../support/api";
import { TERMINAL, untilWithin, useLocalStack } from "../support/e2e";

/**
 * Circuit breakers per task type on the whole local stack (API, scheduler, lifecycle executions,
 * workers): the example type `fail` always fails and opens its breaker after 5 failed attempts,
 * while its other queued jobs wait with `circuit_open` and other types run; an admin's reset
 * closes it; `flaky` jobs (their failures chosen by payload) open theirs, and after openSeconds
 * the half-open probe's success closes it. Every wait polls the API with a deadline.
 */

const ADMIN = "e2e-circuits-admin";
const USER = "e2e-circuits-user";
const DEADLINE_MS = 90_000;
/** Each test runs a dozen jobs through the whole stack on a shared 2-core machine: a budget, not an assertion. */
const TEST_BUDGET_MS = 240_000;

const e2e = useLocalStack(ADMIN, {
  tablePrefix: "jobq-it-circuits-",
  tokens: new Map([
    [ADMIN, { principal: `circuits-admin-${Date.now()}`, role: "admin" }],
    [USER, { principal: `circuits-user-${Date.now()}`, role: "user" }],
  ]),
  policy: policySchema.parse({
    types: {
      fail: { circuitBreaker: { failures: 5, windowSeconds: 600, openSeconds: 3600 } },
      flaky: { circuitBreaker: { failures: 5, windowSeconds: 600, openSeconds: 3 } },
    },
  }),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
});
const { submit, showWorkersOnFailure } = e2e;
const until = untilWithin(DEADLINE_MS);

interface JobAnswer {
  readonly id: string;
  readonly status: string;
  readonly statusReason: string;
  readonly reasonCode: string | null;
}

async function call<T>(method: string, path: string, token = ADMIN) {
  return request<T>(e2e.stack.url, method, path, { token });
}

async function job(id: string): Promise<JobAnswer> {
  const answer = await call<JobAnswer>("GET", `/jobs/${id}`);
  expect(answer.status).toBe(200);
  return answer.json;
}

async function jobs(ids: readonly string[]): Promise<JobAnswer[]> {
  return Promise.all(ids.map(job));
}

async function circuits(query = ""): Promise<CircuitListView> {
  const answer = await call<CircuitListView>("GET", `/admin/circuits${query}`);
  expect(answer.status).toBe(200);
  return answer.json;
}

const circuitOf = (list: CircuitListView, type: string): CircuitView | undefined =>
  list.items.find((c) => c.type === type && c.owner === null);

const ended = (list: readonly JobAnswer[]) => list.every((j) => TERMINAL.includes(j.status as never));

async function submitMany(count: number, body: Parameters<typeof submit>[0]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await submit(body)).id);
  return ids;
}

describe("circuit breakers on the local stack", () => {
  it(
    "opens after 5 failed attempts; the type's queued jobs wait with circuit_open while other types run; reset closes it",
    async () => {
      showWorkersOnFailure();
      // Prepare: five jobs of a type that always fails, one attempt each
      const failing = await submitMany(5, { type: "fail", payload: {}, retry: { maxAttempts: 1 } });
      const failed = await until("the failing jobs end", () => jobs(failing), ended);
      expect(failed.map((j) => j.status)).toEqual(["failed", "failed", "failed", "failed", "failed"]);
      // A job shows failed before its attempt is counted on the breaker (the count follows the
      // job's write in the same step): wait for the breaker, not just the jobs.
      const opened = await until(
        "the fifth failure opens the breaker",
        () => circuits(),
        (list) => circuitOf(list, "fail")?.state === "open",
      );
      const open = circuitOf(opened, "fail");
      expect(open).toMatchObject({ state: "open", failures: 5, probeJobId: null, configured: true });
      expect(open?.halfOpensAt).not.toBeNull();

      // Act: more jobs of the type, and jobs of another type
      const held = await submitMany(2, { type: "fail", payload: {}, retry: { maxAttempts: 1 } });
      const others = await submitMany(3, { type: "echo", payload: { hello: "circuits" } });

      // Assess: the other type runs; the type's jobs wait, saying when the breaker half-opens
      const done = await until("the other type's jobs end", () => jobs(others), ended);
      expect(done.map((j) => j.status)).toEqual(["completed", "completed", "completed"]);
      const waiting = await until(
        "the failing type's jobs wait with circuit_open",
        () => jobs(held),
        (list) => list.every((j) => j.reasonCode === "circuit_open"),
      );
      for (const j of waiting) {
        expect(j.status).toBe("queued");
        expect(j.statusReason).toContain(`half-opens at ${open?.halfOpensAt}`);
      }

      // Admin only: users get 403 on both routes
      expect((await call("GET", "/admin/circuits", USER)).status).toBe(403);
      expect((await call("POST", "/admin/circuits/fail/reset", USER)).status).toBe(403);
      // A breaker never written: 404 in the contract's error format
      const missing = await call<{ error: { code: string } }>("POST", "/admin/circuits/echo/reset");
      expect(missing.status).toBe(404);
      expect(missing.json.error.code).toBe("not_found");
      expect((await call("POST", "/admin/circuits/NOT_A_TYPE/reset")).status).toBe(400);

      // The reset closes it, and the held jobs are admitted (and fail, as their type does)
      const reset = await call<CircuitView>("POST", "/admin/circuits/fail/reset");
      expect(reset.status).toBe(200);
      expect(reset.json).toMatchObject({ type: "fail", state: "closed", failures: 0, halfOpensAt: null });
      const after = await until("the held jobs run after the reset", () => jobs(held), ended);
      expect(after.map((j) => j.status)).toEqual(["failed", "failed"]);
      const counted = await until(
        "both failures counted on the breaker",
        () => circuits(),
        (list) => circuitOf(list, "fail")?.failures === 2,
      );
      expect(circuitOf(counted, "fail")).toMatchObject({ state: "closed", failures: 2 });

      const { history } = await circuits("?history=true&type=fail");
      expect(history?.map((t) => t.change)).toEqual(["reset", "opened"]);
      expect(history?.[0]).toMatchObject({
        from: "open",
        to: "closed",
        by: expect.stringMatching(/^circuits-admin-/),
      });
      expect(history?.[1]).toMatchObject({
        from: "closed",
        to: "open",
        jobId: expect.stringMatching(/^job_/),
      });
      // An operator's reset is in the audit trail too
      const audit = await call<{ items: { subject: string; action: string; before: { state: string } }[] }>(
        "GET",
        "/admin/audit?kind=circuit",
      );
      expect(audit.json.items).toMatchObject([
        { subject: "fail", action: "reset", before: { state: "open" } },
      ]);
    },
    TEST_BUDGET_MS,
  );

  it(
    "half-opens after openSeconds and the probe's success closes it",
    async () => {
      showWorkersOnFailure();
      // Prepare: five flaky jobs whose one attempt fails open the breaker for 3 s
      const failing = await submitMany(5, {
        type: "flaky",
        payload: { failTimes: 1 },
        retry: { maxAttempts: 1 },
      });
      await until("the flaky jobs fail", () => jobs(failing), ended);
      // The fifth count follows its job's failed status: wait for it before the healthy jobs come
      await until(
        "the fifth failure opens the breaker",
        () => circuits(),
        (list) => circuitOf(list, "flaky")?.state !== "closed",
      );

      // Act: flaky jobs that succeed
      const healthy = await submitMany(3, { type: "flaky", payload: { failTimes: 0 } });

      // Assess: one was the probe; its success closed the breaker and the others ran after it
      const done = await until("the healthy jobs end", () => jobs(healthy), ended);
      expect(done.map((j) => j.status)).toEqual(["completed", "completed", "completed"]);
      const closed = await until(
        "the breaker closes",
        () => circuits("?history=true&type=flaky"),
        (list) => circuitOf(list, "flaky")?.state === "closed",
      );
      const changes = closed.history?.map((t) => t.change) ?? [];
      expect(changes.slice(0, 3)).toEqual(["closed", "half_open", "opened"]);
      const probe = closed.history?.[1]?.jobId;
      expect(healthy).toContain(probe);
      expect(closed.history?.[0]).toMatchObject({ jobId: probe, from: "half_open", to: "closed" });
    },
    TEST_BUDGET_MS,
  );
});
