import { describe, expect, it } from "vitest";
import { formatDuration, isTerminal, priorityBand, priorityLabel, relativeTime } from "../../web/src/format";
import { jobHref, parseRoute } from "../../web/src/routes";

/** The dashboard's pure helpers: its hash routes and how it shows times and priorities. */

describe("the dashboard's hash routes", () => {
  it.each([
    ["", { name: "queue" }],
    ["#/", { name: "queue" }],
    ["#/queue", { name: "queue" }],
    ["#/jobs", { name: "jobs" }],
    ["#/pools", { name: "pools" }],
    ["#/stats", { name: "stats" }],
    ["#/schedules", { name: "schedules" }],
    ["#/admin", { name: "admin" }],
    ["#/jobs/job_01ABC", { name: "job", id: "job_01ABC" }],
    ["#/nope", { name: "unknown", path: "nope" }],
    ["#/jobs/a/b", { name: "unknown", path: "jobs/a/b" }],
    ["#/jobs/%E0%A4%A", { name: "unknown", path: "jobs/%E0%A4%A" }],
  ])("reads %s", (hash, route) => {
    expect(parseRoute(hash)).toEqual(route);
  });

  it("links to a job by an id of any characters and reads it back", () => {
    const id = "job_a/b#c?d";

    expect(parseRoute(jobHref(id))).toEqual({ name: "job", id });
  });
});

describe("the dashboard's formats", () => {
  it.each([
    [-10, "low"],
    [-1, "low"],
    [0, "normal"],
    [4, "normal"],
    [5, "high"],
    [9, "high"],
    [10, "urgent"],
  ] as const)("colours priority %i as %s", (priority, band) => {
    expect(priorityBand(priority)).toBe(band);
  });

  it("names the named priorities", () => {
    expect(priorityLabel(5)).toBe("high (5)");
    expect(priorityLabel(3)).toBe("3");
  });

  it.each([
    [250, "250 ms"],
    [1500, "1.5 s"],
    [42_000, "42 s"],
    [185_000, "3 min 5 s"],
    [7_200_000, "2 h 0 min"],
  ])("writes %i ms as %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("writes times relative to now", () => {
    const now = Date.parse("2026-12-06T12:00:00Z");

    expect(relativeTime("2026-12-06T12:00:30Z", now)).toBe("in 30 s");
    expect(relativeTime("2026-12-06T11:59:00Z", now)).toBe("1 min 0 s ago");
    expect(relativeTime(null, now)).toBe("—");
  });

  it("knows the terminal statuses", () => {
    expect(["completed", "failed", "cancelled", "escalated"].every(isTerminal)).toBe(true);
    expect(["queued", "running", "paused"].some(isTerminal)).toBe(false);
  });
});
