import { describe, expect, it } from "vitest";
import {
  createScheduleSchema,
  dueFire,
  jitteredDueAt,
  MAX_LAST_FIRES,
  nextFireTimes,
  overlapSkipReason,
  type ScheduleFire,
  upcomingRuns,
  updateScheduleSchema,
  withFire,
} from "../../core/schedule";

const iso = (dates: Date[]): string[] => dates.map((d) => d.toISOString());

function problems(input: unknown): { path: string; message: string }[] {
  const result = createScheduleSchema.safeParse(input);
  if (result.success) return [];
  return result.error.issues.map((i) => ({ path: i.path.join("."), message: i.message }));
}

describe("cron in a timezone", () => {
  it("fires a 02:30 Europe/Berlin schedule once on the spring-forward day, at the first valid local time", () => {
    // Prepare: 2027-03-28 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that day.
    const from = new Date("2027-03-26T12:00:00Z");

    // Act
    const runs = nextFireTimes("30 2 * * *", "Europe/Berlin", from, 4);

    // Assess: 02:30 CET, then 03:00 CEST (01:00Z) on the day of the gap, then 02:30 CEST.
    expect(iso(runs)).toEqual([
      "2027-03-27T01:30:00.000Z",
      "2027-03-28T01:00:00.000Z",
      "2027-03-29T00:30:00.000Z",
      "2027-03-30T00:30:00.000Z",
    ]);
  });

  it("fires a 02:30 Europe/Berlin schedule once on the fall-back day, though 02:30 happens twice", () => {
    // Prepare: 2027-10-31 03:00 CEST goes back to 02:00 CET.
    const from = new Date("2027-10-29T12:00:00Z");

    // Act
    const runs = nextFireTimes("30 2 * * *", "Europe/Berlin", from, 4);

    // Assess: one fire on the 31st (the first 02:30, still CEST), then 02:30 CET.
    expect(iso(runs)).toEqual([
      "2027-10-30T00:30:00.000Z",
      "2027-10-31T00:30:00.000Z",
      "2027-11-01T01:30:00.000Z",
      "2027-11-02T01:30:00.000Z",
    ]);
  });

  it("reads the cron in the schedule's timezone, not the server's", () => {
    // Act
    const ny = nextFireTimes("0 9 * * 1-5", "America/New_York", new Date("2027-01-01T00:00:00Z"), 2);

    // Assess: 09:00 EST is 14:00Z; Jan 1 2027 is a Friday, then Monday the 4th.
    expect(iso(ny)).toEqual(["2027-01-01T14:00:00.000Z", "2027-01-04T14:00:00.000Z"]);
  });
});

describe("createScheduleSchema", () => {
  const valid = { name: "nightly", cron: "0 2 * * *", job: { type: "echo" } };

  it("takes defaults: UTC, enabled, overlap allow, no jitter", () => {
    // Act
    const parsed = createScheduleSchema.parse(valid);

    // Assess
    expect(parsed).toMatchObject({ timezone: "UTC", enabled: true, overlap: "allow", jitterSeconds: 0 });
  });

  it("says what is wrong with a bad cron", () => {
    expect(problems({ ...valid, cron: "61 * * * *" })).toEqual([
      { path: "cron", message: expect.stringContaining("minute: 61") },
    ]);
    expect(problems({ ...valid, cron: "* * * *" })).toEqual([
      { path: "cron", message: expect.stringContaining("must have 5 fields") },
    ]);
    // Six fields would be seconds: the tick is a minute, so it is refused.
    expect(problems({ ...valid, cron: "*/5 * * * * *" })).toEqual([
      { path: "cron", message: expect.stringContaining("must have 5 fields") },
    ]);
    expect(problems({ ...valid, cron: "0 0 31 2 *" })).toEqual([
      { path: "cron", message: expect.stringContaining("never fires") },
    ]);
    expect(problems({ ...valid, cron: "" })).toEqual([{ path: "cron", message: "must not be empty" }]);
  });

  it("says what is wrong with a bad timezone", () => {
    expect(problems({ ...valid, timezone: "Mars/Olympus" })).toEqual([
      { path: "timezone", message: expect.stringContaining("is not an IANA timezone") },
    ]);
  });

  it("validates the job template as POST /jobs does, under job.", () => {
    // Act
    const found = problems({ ...valid, job: { type: "Bad Type", priority: 99, resources: { cpu: -1 } } });

    // Assess
    expect(found.map((p) => p.path).sort()).toEqual(["job.priority", "job.resources.cpu", "job.type"]);
  });

  it("refuses dependsOn, runAt and deadline in a template", () => {
    // Act
    const found = problems({
      ...valid,
      job: {
        type: "echo",
        dependsOn: ["job_x"],
        runAt: "2027-01-01T00:00:00Z",
        deadline: "2027-01-02T00:00:00Z",
      },
    });

    // Assess
    expect(found.map((p) => p.path).sort()).toEqual(["job.deadline", "job.dependsOn", "job.runAt"]);
  });

  it("lists a recurring template's problems beside the job schema's, all at once", () => {
    // Act: zod alone would stop before the dependsOn rule when priority is already wrong.
    const found = problems({ ...valid, job: { type: "echo", priority: "urgent", dependsOn: ["job_x"] } });

    // Assess
    expect(found.map((p) => p.path).sort()).toEqual(["job.dependsOn", "job.priority"]);
  });

  it("refuses a template that is not an object, and unknown fields", () => {
    expect(problems({ ...valid, job: [] }).map((p) => p.path)).toEqual(["job"]);
    expect(problems({ ...valid, owner: "mallory" }).map((p) => p.path)).toEqual([""]);
    expect(problems({ ...valid, job: { type: "echo", scheduleId: "sch_x" } }).map((p) => p.path)).toEqual([
      "job",
    ]);
  });

  it("PATCH takes any one field, but not none", () => {
    expect(updateScheduleSchema.safeParse({ enabled: false }).success).toBe(true);
    expect(updateScheduleSchema.safeParse({}).success).toBe(false);
    expect(updateScheduleSchema.safeParse({ cron: "nope" }).success).toBe(false);
  });
});

describe("dueFire: catch-up after downtime", () => {
  const every = { cron: "*/1 * * * *", timezone: "UTC" };

  it("is nothing before the next run", () => {
    expect(
      dueFire({ ...every, nextRunAt: "2027-01-01T00:05:00.000Z" }, new Date("2027-01-01T00:04:59Z")),
    ).toBe(null);
  });

  it("fires the due time and moves to the next one after it", () => {
    // Act
    const due = dueFire(
      { ...every, nextRunAt: "2027-01-01T00:05:00.000Z" },
      new Date("2027-01-01T00:05:03Z"),
    );

    // Assess
    expect(due).toEqual({ fireAt: "2027-01-01T00:05:00.000Z", missed: 0, next: "2027-01-01T00:06:00.000Z" });
  });

  it("fires once, for the latest missed time, after ten minutes down", () => {
    // Act
    const due = dueFire(
      { ...every, nextRunAt: "2027-01-01T00:00:00.000Z" },
      new Date("2027-01-01T00:10:30Z"),
    );

    // Assess: ten earlier times passed over, one fire, the next after now.
    expect(due).toEqual({ fireAt: "2027-01-01T00:10:00.000Z", missed: 10, next: "2027-01-01T00:11:00.000Z" });
  });

  it("catches up a daily schedule in its timezone", () => {
    // Act: down from before the 27th's fire until after the 29th's.
    const due = dueFire(
      { cron: "30 2 * * *", timezone: "Europe/Berlin", nextRunAt: "2027-03-27T01:30:00.000Z" },
      new Date("2027-03-29T06:00:00Z"),
    );

    // Assess
    expect(due).toEqual({ fireAt: "2027-03-29T00:30:00.000Z", missed: 2, next: "2027-03-30T00:30:00.000Z" });
  });

  it("shows the next five runs from the due one", () => {
    expect(upcomingRuns({ ...every, nextRunAt: "2027-01-01T00:05:00.000Z" })).toEqual([
      "2027-01-01T00:05:00.000Z",
      "2027-01-01T00:06:00.000Z",
      "2027-01-01T00:07:00.000Z",
      "2027-01-01T00:08:00.000Z",
      "2027-01-01T00:09:00.000Z",
    ]);
    expect(upcomingRuns({ ...every, nextRunAt: null })).toEqual([]);
  });
});

describe("jitter", () => {
  it("is deterministic per schedule and fire time, within [0, jitterSeconds]", () => {
    // Prepare
    const at = "2027-01-01T00:00:00.000Z";

    // Act
    const offsets = Array.from({ length: 200 }, (_, i) => {
      const id = `sch_${String(i).padStart(26, "0")}`;
      const first = jitteredDueAt(id, at, 60);
      expect(jitteredDueAt(id, at, 60)).toBe(first);
      return Date.parse(first) - Date.parse(at);
    });

    // Assess: bounded, and actually spread.
    expect(Math.min(...offsets)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...offsets)).toBeLessThanOrEqual(60_000);
    expect(new Set(offsets).size).toBeGreaterThan(150);
    expect(jitteredDueAt("sch_x", at, 0)).toBe(at);
  });
});

describe("overlap and lastFires", () => {
  it("skips only with overlap skip and a previous job that has not ended", () => {
    expect(overlapSkipReason("skip", { id: "job_a", status: "running" })).toBe(
      "overlap: previous job job_a is still running",
    );
    expect(overlapSkipReason("skip", { id: "job_a", status: "completed" })).toBe(null);
    expect(overlapSkipReason("skip", null)).toBe(null);
    expect(overlapSkipReason("allow", { id: "job_a", status: "queued" })).toBe(null);
  });

  it("keeps the last ten fires, newest first", () => {
    // Prepare
    let fires: ScheduleFire[] = [];

    // Act
    for (let i = 0; i < 12; i++) fires = withFire(fires, { at: String(i), jobId: `job_${i}` });

    // Assess
    expect(fires).toHaveLength(MAX_LAST_FIRES);
    expect(fires[0]).toEqual({ at: "11", jobId: "job_11" });
    expect(fires.at(-1)).toEqual({ at: "2", jobId: "job_2" });
  });
});
