import { describe, expect, it } from "vitest";
import {
  describeFire,
  EMPTY_SCHEDULE_FORM,
  relativeTime,
  scheduleRequest,
} from "../../web/src/views/schedules-model";

const NOW = new Date("2026-12-06T12:00:00.000Z");

describe("schedules view model", () => {
  it("builds POST /schedules's body from the form, leaving an empty timezone to the server's default", () => {
    const built = scheduleRequest({
      ...EMPTY_SCHEDULE_FORM,
      name: "  nightly  ",
      cron: " 0 2 * * * ",
      timezone: "",
      overlap: "skip",
      job: '{"type": "echo", "priority": "high"}',
    });
    expect(built).toEqual({
      ok: true,
      request: {
        name: "nightly",
        cron: "0 2 * * *",
        overlap: "skip",
        enabled: true,
        job: { type: "echo", priority: "high" },
      },
    });
  });

  it("refuses a template that is not a JSON object under the API's own field name", () => {
    const broken = scheduleRequest({ ...EMPTY_SCHEDULE_FORM, name: "x", job: '{"type": ' });
    expect(broken.ok).toBe(false);
    if (!broken.ok) expect(broken.problems.map((p) => p.path)).toEqual(["job"]);
    const list = scheduleRequest({ ...EMPTY_SCHEDULE_FORM, name: "x", job: "[1]" });
    expect(list).toEqual({
      ok: false,
      problems: [{ path: "job", message: "must be a JSON object ({ … })" }],
    });
  });

  it("leaves everything else to the server: a bad cron or empty name still makes a body", () => {
    expect(scheduleRequest({ ...EMPTY_SCHEDULE_FORM, name: "", cron: "61 * * * *" }).ok).toBe(true);
  });

  it("says what a fire did", () => {
    expect(describeFire({ at: "2026-12-06T02:00:00Z", jobId: "job_1" })).toBe("job job_1");
    expect(describeFire({ at: "2026-12-06T02:00:00Z", jobId: "job_2", trigger: "manual" })).toBe(
      "job job_2 (manual)",
    );
    expect(
      describeFire({ at: "2026-12-06T02:00:00Z", skipped: "overlap: previous job job_1 is still running" }),
    ).toBe("skipped: overlap: previous job job_1 is still running");
    expect(describeFire({ at: "2026-12-06T02:00:00Z", jobId: "job_3", missed: 4 })).toBe(
      "job job_3 (4 missed)",
    );
  });

  it("says how far a fire is from now", () => {
    expect(relativeTime("2026-12-06T12:00:40.000Z", NOW)).toBe("in 40 s");
    expect(relativeTime("2026-12-06T12:05:00.000Z", NOW)).toBe("in 5 min");
    expect(relativeTime("2026-12-06T09:00:00.000Z", NOW)).toBe("3 h ago");
    expect(relativeTime("2026-12-16T12:00:00.000Z", NOW)).toBe("in 10 d");
    expect(relativeTime(null, NOW)).toBe("");
  });
});
