import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  fireDueSchedules,
  fireSchedule,
  type ScheduleContext,
  type ScheduleView,
  scheduleContext,
} from "../../app/schedules";
import type { ScheduleFire } from "../../core/schedule";
import { startTestApi, type TestApi } from "../support/api";
import {
  type Actor,
  ADMIN,
  expectError,
  expectListShape,
  type Job,
  type ListPage,
  listAll,
  PrincipalPool,
  problemPaths,
  submitJob,
} from "../support/jobs";

/**
 * Recurring schedules through HTTP (every /schedules route, GET /jobs?scheduleId=) and their
 * fires driven by calling the tick's use case with a clock moved to the fire time, so no test
 * waits a real minute.
 */

const people = new PrincipalPool("schedules-api");
let api: TestApi;

beforeAll(async () => {
  api = await startTestApi(people.tokens());
});
afterAll(() => api?.close());

const MINUTELY = { cron: "*/1 * * * *", timezone: "UTC" };

async function createSchedule(actor: Actor, body: Record<string, unknown> = {}): Promise<ScheduleView> {
  const response = await api.request<ScheduleView>("POST", "/schedules", {
    token: actor.token,
    body: { name: "every minute", ...MINUTELY, job: { type: "echo", payload: { hi: 1 } }, ...body },
  });
  if (response.status !== 201)
    throw new Error(`POST /schedules: ${response.status} ${JSON.stringify(response.json)}`);
  return response.json;
}

async function getSchedule(actor: Actor, id: string): Promise<ScheduleView> {
  const response = await api.request<ScheduleView>("GET", `/schedules/${id}`, { token: actor.token });
  expect(response.status).toBe(200);
  return response.json;
}

async function jobsOfSchedule(actor: Actor, id: string): Promise<Job[]> {
  return (await listAll<Job>(api, actor, "/jobs", { scheduleId: id })).items;
}

/** The tick's context, with its clock at `now`. */
function at(now: Date | string): { ctx: ScheduleContext; now: Date } {
  const instant = new Date(now);
  return { ctx: { ...scheduleContext(), clock: () => instant }, now: instant };
}

const plus = (iso: string, ms: number): string => new Date(Date.parse(iso) + ms).toISOString();

describe("schedule routes", () => {
  it("creates, reads, lists, patches and deletes a schedule", async () => {
    // Prepare
    const owner = people.next();

    // Act
    const created = await createSchedule(owner, {
      name: "nightly",
      cron: "0 2 * * *",
      timezone: "Europe/Berlin",
    });
    const read = await getSchedule(owner, created.id);
    const listed = await listAll<ScheduleView>(api, owner, "/schedules");
    const patched = await api.request<ScheduleView>("PATCH", `/schedules/${created.id}`, {
      token: owner.token,
      body: { name: "renamed", overlap: "skip", jitterSeconds: 30 },
    });
    const recron = await api.request<ScheduleView>("PATCH", `/schedules/${created.id}`, {
      token: owner.token,
      body: { cron: "15 * * * *" },
    });
    const disabled = await api.request<ScheduleView>("PATCH", `/schedules/${created.id}`, {
      token: owner.token,
      body: { enabled: false },
    });
    const deleted = await api.request("DELETE", `/schedules/${created.id}`, { token: owner.token });
    const gone = await api.request("GET", `/schedules/${created.id}`, { token: owner.token });

    // Assess
    expect(created).toMatchObject({
      id: expect.stringMatching(/^sch_[0-9A-Z]{26}$/),
      name: "nightly",
      owner: owner.principal,
      cron: "0 2 * * *",
      timezone: "Europe/Berlin",
      enabled: true,
      overlap: "allow",
      jitterSeconds: 0,
      job: { type: "echo", payload: { hi: 1 } },
      lastFires: [],
      version: 1,
    });
    expect(Date.parse(created.nextRunAt ?? "")).toBeGreaterThan(Date.now() - 1000);
    expect(read.nextRuns).toHaveLength(5);
    expect(read.nextRuns[0]).toBe(created.nextRunAt);
    expect(listed.items.map((s) => s.id)).toEqual([created.id]);
    expect(patched.status).toBe(200);
    expect(patched.json).toMatchObject({ name: "renamed", overlap: "skip", jitterSeconds: 30 });
    // A name change keeps the next fire; a new cron starts afresh.
    expect(patched.json.nextRunAt).toBe(created.nextRunAt);
    expect(new Date(recron.json.nextRunAt ?? "").getUTCMinutes()).toBe(15);
    expect(disabled.json).toMatchObject({ enabled: false, nextRunAt: null, nextRuns: [] });
    expect(deleted.status).toBe(204);
    expectError(gone, 404, "not_found");
  });

  it("shows a schedule only to its owner and admins (404 otherwise), and lists only the caller's", async () => {
    // Prepare
    const [owner, other] = [people.next(), people.next()];
    const schedule = await createSchedule(owner);

    // Act
    const byOther = await Promise.all([
      api.request("GET", `/schedules/${schedule.id}`, { token: other.token }),
      api.request("PATCH", `/schedules/${schedule.id}`, { token: other.token, body: { name: "x" } }),
      api.request("DELETE", `/schedules/${schedule.id}`, { token: other.token }),
      api.request("POST", `/schedules/${schedule.id}/trigger`, { token: other.token }),
    ]);
    const otherList = await listAll<ScheduleView>(api, other, "/schedules");
    const asAdmin = await api.request<ScheduleView>("GET", `/schedules/${schedule.id}`, {
      token: ADMIN.token,
    });
    const adminList = await listAll<ScheduleView>(api, ADMIN, "/schedules", { owner: owner.principal });
    const forbidden = await api.request("GET", `/schedules?owner=${owner.principal}`, { token: other.token });

    // Assess
    for (const response of byOther) expectError(response, 404, "not_found");
    expect(otherList.items).toEqual([]);
    expect(asAdmin.status).toBe(200);
    expect(adminList.items.map((s) => s.id)).toEqual([schedule.id]);
    expectError(forbidden, 403, "forbidden");
    expect((await getSchedule(owner, schedule.id)).name).toBe("every minute");
  });

  it("pages a list with nextCursor", async () => {
    // Prepare
    const owner = people.next();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await createSchedule(owner, { name: `s${i}` })).id);

    // Act
    const first = await api.request<ListPage<ScheduleView>>("GET", "/schedules?limit=2", {
      token: owner.token,
    });
    const all = await listAll<ScheduleView>(api, owner, "/schedules", { limit: "2" });
    const forged = await api.request("GET", "/schedules?cursor=bm9wZQ", { token: owner.token });

    // Assess
    expectListShape(first.json);
    expect(first.json.items).toHaveLength(2);
    expect(first.json.nextCursor).toEqual(expect.any(String));
    expect(all.items.map((s) => s.id).sort()).toEqual(ids.sort());
    expectError(forged, 400, "validation_failed");
  });

  it("refuses a bad cron, timezone or job template with 400 saying what is wrong", async () => {
    // Prepare
    const owner = people.next();
    const post = (body: Record<string, unknown>) =>
      api.request("POST", "/schedules", {
        token: owner.token,
        body: { name: "bad", ...MINUTELY, job: { type: "echo" }, ...body },
      });

    // Act
    const badCron = await post({ cron: "*/61 * * * *" });
    const badZone = await post({ timezone: "Europe/Atlantis" });
    const badJob = await post({ job: { type: "echo", priority: "urgent", dependsOn: ["job_x"] } });
    const noFit = await post({ job: { type: "echo", resources: { gpu: 64 } } });
    const schedule = await createSchedule(owner);
    const badPatch = await api.request("PATCH", `/schedules/${schedule.id}`, {
      token: owner.token,
      body: { job: { type: "echo", runAt: "2030-01-01T00:00:00Z" }, timezone: "" },
    });
    const emptyPatch = await api.request("PATCH", `/schedules/${schedule.id}`, {
      token: owner.token,
      body: {},
    });

    // Assess
    expect(problemPaths(expectError(badCron, 400, "validation_failed"))).toEqual(["cron"]);
    expect(badCron.json).toMatchObject({
      error: { message: expect.stringContaining("steps cannot be greater") },
    });
    expect(problemPaths(expectError(badZone, 400, "validation_failed"))).toEqual(["timezone"]);
    expect(problemPaths(expectError(badJob, 400, "validation_failed")).sort()).toEqual([
      "job.dependsOn",
      "job.priority",
    ]);
    expectError(noFit, 400, "unsatisfiable_resources");
    expect(problemPaths(expectError(badPatch, 400, "validation_failed")).sort()).toEqual([
      "job.runAt",
      "timezone",
    ]);
    expectError(emptyPatch, 400, "validation_failed");
    expect((await getSchedule(owner, schedule.id)).version).toBe(1);
  });
});

describe("fires", () => {
  it("fires a due schedule from the tick, once, with scheduleId on the job", async () => {
    // Prepare
    const owner = people.next();
    const schedule = await createSchedule(owner);
    const fireAt = schedule.nextRunAt ?? "";
    const tick = at(plus(fireAt, 1000));

    // Act
    const early = await fireSchedule(at(plus(fireAt, -1000)).ctx, schedule.id, new Date(plus(fireAt, -1000)));
    // A tick fires at most FIRES_PER_TICK schedules, earliest first, and this file's other
    // schedules may be due too: tick until this one has fired or nothing is left to fire.
    const fired: { scheduleId: string; jobId: string }[] = [];
    for (let ticks = 0; ticks < 10; ticks++) {
      const summary = await fireDueSchedules(tick.ctx, tick.now);
      fired.push(...summary.fired.filter((f) => f.scheduleId === schedule.id));
      if (fired.length > 0 || summary.fired.length + summary.skipped.length === 0) break;
    }
    const again = await fireDueSchedules(tick.ctx, tick.now);
    const after = await getSchedule(owner, schedule.id);
    const jobs = await jobsOfSchedule(owner, schedule.id);

    // Assess
    expect(early).toBe(null);
    expect(fired).toHaveLength(1);
    expect(again.fired.filter((f) => f.scheduleId === schedule.id)).toEqual([]);
    expect(jobs.map((j) => j.id)).toEqual([fired[0]?.jobId]);
    expect(jobs[0]).toMatchObject({
      scheduleId: schedule.id,
      owner: owner.principal,
      type: "echo",
      payload: { hi: 1 },
    });
    expect(after.lastFires).toEqual([{ at: fireAt, jobId: fired[0]?.jobId }]);
    expect(after.lastJobId).toBe(fired[0]?.jobId);
    expect(after.nextRunAt).toBe(plus(fireAt, 60_000));
  });

  it("creates one job when two passes race for the same fire, and when a pass is replayed", async () => {
    // Prepare
    const owner = people.next();
    const schedule = await createSchedule(owner);
    const fireAt = schedule.nextRunAt ?? "";
    const { ctx, now } = at(plus(fireAt, 2000));
    const before = await ctx.schedules.get(schedule.id);

    // Act: two passes at once, then a replay of the fire as if the first pass died after
    // submitting and before recording (the schedule put back as it was read).
    const racing = await Promise.all([
      fireSchedule(ctx, schedule.id, now),
      fireSchedule(ctx, schedule.id, now),
    ]);
    const recorded = await ctx.schedules.get(schedule.id);
    if (!before || !recorded) throw new Error("schedule missing");
    await ctx.schedules.replace({ ...before, version: recorded.version + 1 }, recorded.version);
    const replayed = await fireSchedule(ctx, schedule.id, now);
    const jobs = await jobsOfSchedule(owner, schedule.id);

    // Assess
    const winners = racing.filter((outcome) => outcome !== null);
    expect(winners).toHaveLength(1);
    expect(jobs).toHaveLength(1);
    expect(winners[0]?.fire).toEqual({ at: fireAt, jobId: jobs[0]?.id });
    expect(replayed?.fire).toEqual({ at: fireAt, jobId: jobs[0]?.id });
    expect(recorded.lastFires).toHaveLength(1);
  });

  it("fires once to catch up after downtime, for the latest missed time", async () => {
    // Prepare
    const owner = people.next();
    const schedule = await createSchedule(owner);
    const first = schedule.nextRunAt ?? "";
    // Down for ten fire times and a half.
    const { ctx, now } = at(plus(first, 10 * 60_000 + 30_000));

    // Act
    const outcome = await fireSchedule(ctx, schedule.id, now);
    const second = await fireSchedule(ctx, schedule.id, now);
    const after = await getSchedule(owner, schedule.id);
    const jobs = await jobsOfSchedule(owner, schedule.id);

    // Assess
    expect(second).toBe(null);
    expect(jobs).toHaveLength(1);
    expect(outcome?.fire).toEqual({ at: plus(first, 10 * 60_000), jobId: jobs[0]?.id, missed: 10 });
    expect(after.nextRunAt).toBe(plus(first, 11 * 60_000));
    expect(after.lastFires).toHaveLength(1);
  });

  it("records a skipped fire while the previous job has not ended (overlap skip)", async () => {
    // Prepare: the API tests start no executions, so a fired job stays queued.
    const owner = people.next();
    const schedule = await createSchedule(owner, { overlap: "skip" });
    const t1 = schedule.nextRunAt ?? "";

    // Act
    const one = await fireSchedule(at(plus(t1, 1000)).ctx, schedule.id, new Date(plus(t1, 1000)));
    const two = await fireSchedule(at(plus(t1, 61_000)).ctx, schedule.id, new Date(plus(t1, 61_000)));
    const after = await getSchedule(owner, schedule.id);
    const jobs = await jobsOfSchedule(owner, schedule.id);

    // Assess
    const jobId = one?.job?.id;
    expect(jobs.map((j) => j.id)).toEqual([jobId]);
    expect(two?.fire).toEqual({
      at: plus(t1, 60_000),
      skipped: `overlap: previous job ${jobId} is still queued`,
    });
    expect(after.lastFires).toEqual([two?.fire, one?.fire]);
    expect(after.nextRunAt).toBe(plus(t1, 120_000));
  });

  it("records a fire refused by maxQueuedJobs with its reason; a trigger answers 429", async () => {
    // Prepare
    const owner = people.next();
    const quota = await api.request("PUT", `/quotas/${owner.principal}`, {
      token: ADMIN.token,
      body: { maxQueuedJobs: 1 },
    });
    expect(quota.status).toBe(200);
    await submitJob(api, owner, { type: "echo" });
    const schedule = await createSchedule(owner);
    const t1 = schedule.nextRunAt ?? "";

    // Act
    const fired = await fireSchedule(at(plus(t1, 1000)).ctx, schedule.id, new Date(plus(t1, 1000)));
    const triggered = await api.request("POST", `/schedules/${schedule.id}/trigger`, { token: owner.token });
    const after = await getSchedule(owner, schedule.id);

    // Assess
    expect(fired?.fire).toEqual({ at: t1, skipped: expect.stringContaining("maxQueuedJobs quota of 1") });
    expectError(triggered, 429, "too_many_requests");
    expect(after.lastFires).toEqual([
      { at: expect.any(String), skipped: expect.stringContaining("maxQueuedJobs"), trigger: "manual" },
      fired?.fire,
    ]);
    expect(after.nextRunAt).toBe(plus(t1, 60_000));
    expect(await jobsOfSchedule(owner, schedule.id)).toEqual([]);
  });

  it("does not fire a disabled schedule", async () => {
    // Prepare
    const owner = people.next();
    const schedule = await createSchedule(owner, { enabled: false });

    // Act
    const outcome = await fireSchedule(
      at("2099-01-01T00:00:00Z").ctx,
      schedule.id,
      new Date("2099-01-01T00:00:00Z"),
    );

    // Assess
    expect(schedule.nextRunAt).toBe(null);
    expect(outcome).toBe(null);
  });
});

describe("POST /schedules/{id}/trigger", () => {
  it("fires now with 201 and the job, leaving the cron's next fire; 200 with the skipped fire under overlap skip", async () => {
    // Prepare
    const owner = people.next();
    const schedule = await createSchedule(owner, { overlap: "skip", enabled: false });

    // Act
    const first = await api.request<Job>("POST", `/schedules/${schedule.id}/trigger`, { token: owner.token });
    const second = await api.request<ScheduleFire>("POST", `/schedules/${schedule.id}/trigger`, {
      token: owner.token,
    });
    const after = await getSchedule(owner, schedule.id);

    // Assess
    expect(first.status).toBe(201);
    expect(first.json).toMatchObject({ scheduleId: schedule.id, owner: owner.principal, status: "queued" });
    expect(second.status).toBe(200);
    expect(second.json).toEqual({
      at: expect.any(String),
      skipped: `overlap: previous job ${first.json.id} is still queued`,
      trigger: "manual",
    });
    expect(after.lastFires).toEqual([
      second.json,
      { at: expect.any(String), jobId: first.json.id, trigger: "manual" },
    ]);
    expect(after.nextRunAt).toBe(null);
  });
});

describe("POST /schedules/{id}/trigger with an Idempotency-Key", () => {
  it("answers a retried trigger with the first one's job and records one fire", async () => {
    // Prepare
    const owner = people.next();
    const schedule = await createSchedule(owner, { enabled: false });
    const trigger = () =>
      api.request<Job>("POST", `/schedules/${schedule.id}/trigger`, {
        token: owner.token,
        headers: { "Idempotency-Key": "nightly-rerun-1" },
      });

    // Act
    const first = await trigger();
    const retried = await trigger();
    const tooLong = await api.request("POST", `/schedules/${schedule.id}/trigger`, {
      token: owner.token,
      headers: { "Idempotency-Key": "k".repeat(256) },
    });
    const after = await getSchedule(owner, schedule.id);

    // Assess
    expect(first.status).toBe(201);
    expect(retried.status).toBe(200);
    expect(retried.headers.get("idempotent-replayed")).toBe("true");
    expect(retried.json.id).toBe(first.json.id);
    expectError(tooLong, 400, "validation_failed");
    expect(after.lastFires).toEqual([{ at: expect.any(String), jobId: first.json.id, trigger: "manual" }]);
    expect(await jobsOfSchedule(owner, schedule.id)).toHaveLength(1);
  });
  it("answers a retried trigger with the first one's job under overlap skip too, while that job runs", async () => {
    // Prepare: the first fire's job is still queued, so a new fire would be skipped
    const owner = people.next();
    const schedule = await createSchedule(owner, { enabled: false, overlap: "skip" });
    const trigger = () =>
      api.request<Job>("POST", `/schedules/${schedule.id}/trigger`, {
        token: owner.token,
        headers: { "Idempotency-Key": "rerun-while-running" },
      });

    // Act
    const first = await trigger();
    const retried = await trigger();
    const after = await getSchedule(owner, schedule.id);

    // Assess: the retry is the same fire, not a new one the overlap rule skips
    expect(first.status).toBe(201);
    expect(retried.status).toBe(200);
    expect(retried.headers.get("idempotent-replayed")).toBe("true");
    expect(retried.json.id).toBe(first.json.id);
    expect(after.lastFires).toEqual([{ at: expect.any(String), jobId: first.json.id, trigger: "manual" }]);
  });
});

describe("GET /jobs?scheduleId=", () => {
  it("lists a schedule's jobs to its owner and admins, nothing to others, and refuses a malformed id", async () => {
    // Prepare
    const [owner, other] = [people.next(), people.next()];
    const schedule = await createSchedule(owner);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const fired = await api.request<Job>("POST", `/schedules/${schedule.id}/trigger`, {
        token: owner.token,
      });
      ids.push(fired.json.id);
    }
    await submitJob(api, owner, { type: "echo" });

    // Act
    const mine = await jobsOfSchedule(owner, schedule.id);
    const paged = await listAll<Job>(api, owner, "/jobs", { scheduleId: schedule.id, limit: "2" });
    const theirs = await jobsOfSchedule(other, schedule.id);
    const admin = await jobsOfSchedule(ADMIN, schedule.id);
    const queued = await listAll<Job>(api, owner, "/jobs", {
      scheduleId: schedule.id,
      status: "queued,running",
    });
    const malformed = await api.request("GET", "/jobs?scheduleId=nope", { token: owner.token });
    const firstPage = await api.request<ListPage<Job>>("GET", `/jobs?scheduleId=${schedule.id}&limit=1`, {
      token: owner.token,
    });
    // A cursor of the schedule's list is not a cursor of the owner's list.
    const crossed = await api.request("GET", `/jobs?cursor=${firstPage.json.nextCursor}`, {
      token: owner.token,
    });

    // Assess: newest first, only the schedule's jobs.
    expect(mine.map((j) => j.id)).toEqual([...ids].reverse());
    expect(paged.items.map((j) => j.id)).toEqual([...ids].reverse());
    expect(theirs).toEqual([]);
    expect(admin.map((j) => j.id)).toEqual([...ids].reverse());
    expect(queued.items.map((j) => j.id)).toEqual([...ids].reverse());
    expect(problemPaths(expectError(malformed, 400, "validation_failed"))).toEqual(["scheduleId"]);
    expect(firstPage.json.nextCursor).toEqual(expect.any(String));
    expectError(crossed, 400, "validation_failed");
  });

  it("a user cannot set scheduleId through POST /jobs", async () => {
    // Act
    const response = await api.request("POST", "/jobs", {
      token: people.next().token,
      body: { type: "echo", scheduleId: "sch_01JAAAAAAAAAAAAAAAAAAAAAAA" },
    });

    // Assess
    expectError(response, 400, "validation_failed");
  });
});
