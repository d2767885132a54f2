import { describe, expect, it } from "vitest";
import { LOCAL_REGION } from "../../local/config";
import { createDocumentClient } from "../../store/dynamo";
import { ScheduleRepository } from "../../store/schedules";
import { request } from "../support/api";
import { type E2eJob, TERMINAL, useLocalStack } from "../support/e2e";

/**
 * Recurring schedules on the whole local stack, as under `npm start`: a trigger's job runs to
 * completion with its scheduleId, and the scheduler's sweep fires a due schedule by itself
 * (once, however long it was overdue). No test waits for a real cron minute: the overdue
 * schedule is made by moving its next fire time into the past, as downtime would.
 */

const TOKEN = "e2e-schedules-token";
const DEADLINE_MS = 90_000;

const e2e = useLocalStack(TOKEN, {
  tablePrefix: "jobq-e2e-schedules-",
  tokens: new Map([[TOKEN, { principal: `e2e-schedules-${Date.now()}`, role: "user" }]]),
  workerShutdownGraceSeconds: 2,
  workerPollWaitSeconds: 2,
  sweepSeconds: 1,
});

interface ScheduleView {
  readonly id: string;
  readonly nextRunAt: string | null;
  readonly lastFires: readonly { at: string; jobId?: string; skipped?: string; missed?: number }[];
}

interface Job extends E2eJob {
  readonly scheduleId: string | null;
}

const call = <T>(method: string, path: string, body?: unknown) =>
  request<T>(e2e.stack.url, method, path, { token: TOKEN, ...(body === undefined ? {} : { body }) });

/** Polls until `check` answers a value; fails after the deadline. */
async function until<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not after ${DEADLINE_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function ended(id: string): Promise<Job> {
  return until(`job ${id} ended`, async () => {
    const job = (await call<Job>("GET", `/jobs/${id}`)).json;
    return TERMINAL.includes(job.status) ? job : undefined;
  });
}

describe("schedules on the local stack", () => {
  it("runs a triggered fire's job to completion with its scheduleId", async () => {
    e2e.showWorkersOnFailure();
    // Prepare
    const created = await call<ScheduleView>("POST", "/schedules", {
      name: "nightly echo",
      cron: "0 2 * * *",
      job: { type: "echo", payload: { from: "schedule" } },
    });
    expect(created.status).toBe(201);

    // Act
    const fired = await call<Job>("POST", `/schedules/${created.json.id}/trigger`);
    const done = await ended(fired.json.id);

    // Assess
    expect(fired.status).toBe(201);
    expect(done).toMatchObject({
      status: "completed",
      scheduleId: created.json.id,
      result: { from: "schedule" },
    });
  }, 120_000);

  it("fires an overdue schedule from the sweep, once, and moves it to its next time", async () => {
    e2e.showWorkersOnFailure();
    // Prepare: a minutely schedule whose next fire time is ten minutes past (the stack was "down").
    const created = await call<ScheduleView>("POST", "/schedules", {
      name: "every minute",
      cron: "*/1 * * * *",
      job: { type: "echo", payload: { n: 1 } },
    });
    expect(created.status).toBe(201);
    const db = createDocumentClient({ region: LOCAL_REGION, endpoint: e2e.stack.dynamoEndpoint });
    const schedules = new ScheduleRepository(db, e2e.stack.tables.Policy ?? "");
    const stored = await schedules.get(created.json.id);
    if (!stored?.nextRunAt) throw new Error("schedule not stored");
    const overdue = new Date(Date.parse(stored.nextRunAt) - 10 * 60_000).toISOString();
    await schedules.replace({ ...stored, nextRunAt: overdue, version: stored.version + 1 }, stored.version);
    db.destroy();

    // Act: the sweep (every second here) finds it due.
    const fired = await until("the sweep fired the schedule", async () => {
      const view = (await call<ScheduleView>("GET", `/schedules/${created.json.id}`)).json;
      return view.lastFires.length > 0 ? view : undefined;
    });
    const jobId = fired.lastFires[0]?.jobId ?? "";
    const done = await ended(jobId);
    const jobs = await call<{ items: Job[] }>("GET", `/jobs?scheduleId=${created.json.id}`);

    // Assess: one fire for the missed times (the ten minutes, up to now), the next time ahead.
    expect(fired.lastFires).toHaveLength(1);
    expect(fired.lastFires[0]?.missed).toBeGreaterThanOrEqual(9);
    expect(Date.parse(fired.nextRunAt ?? "")).toBeGreaterThan(Date.parse(fired.lastFires[0]?.at ?? ""));
    expect(done).toMatchObject({ status: "completed", scheduleId: created.json.id, result: { n: 1 } });
    expect(jobs.json.items.map((j) => j.id)).toContain(jobId);
  }, 120_000);
});
