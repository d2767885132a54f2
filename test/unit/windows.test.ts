import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { OffPeakWindow } from "../../core/policy";
import { offPeakReason, offPeakState } from "../../core/windows";

function window(start: string, end: string, timezone = "UTC"): OffPeakWindow {
  return { start, end, timezone };
}

function at(iso: string): Date {
  return new Date(iso);
}

describe("offPeakState", () => {
  it("is closed before a same-day window and open inside it, until the end", () => {
    // Prepare
    const day = window("09:00", "17:00");

    // Act
    const before = offPeakState(at("2026-11-25T08:15:00Z"), day);
    const inside = offPeakState(at("2026-11-25T12:00:00Z"), day);
    const after = offPeakState(at("2026-11-25T17:30:00Z"), day);

    // Assess
    expect(before).toEqual({ open: false, next: at("2026-11-25T09:00:00Z") });
    expect(inside).toEqual({ open: true, next: at("2026-11-25T17:00:00Z") });
    expect(after).toEqual({ open: false, next: at("2026-11-26T09:00:00Z") });
  });

  it("spans midnight when the end is before the start", () => {
    // Prepare
    const night = window("22:00", "08:00");

    // Act
    const evening = offPeakState(at("2026-11-25T23:30:00Z"), night);
    const earlyMorning = offPeakState(at("2026-11-26T03:00:00Z"), night);
    const afternoon = offPeakState(at("2026-11-26T15:00:00Z"), night);

    // Assess
    expect(evening).toEqual({ open: true, next: at("2026-11-26T08:00:00Z") });
    expect(earlyMorning).toEqual({ open: true, next: at("2026-11-26T08:00:00Z") });
    expect(afternoon).toEqual({ open: false, next: at("2026-11-26T22:00:00Z") });
  });

  it("includes the start minute and excludes the end minute", () => {
    // Prepare
    const night = window("22:00", "08:00");

    // Act
    const justBeforeStart = offPeakState(at("2026-11-25T21:59:59.999Z"), night);
    const atStart = offPeakState(at("2026-11-25T22:00:00.000Z"), night);
    const justBeforeEnd = offPeakState(at("2026-11-26T07:59:59.999Z"), night);
    const atEnd = offPeakState(at("2026-11-26T08:00:00.000Z"), night);

    // Assess
    expect(justBeforeStart).toEqual({ open: false, next: at("2026-11-25T22:00:00Z") });
    expect(atStart).toEqual({ open: true, next: at("2026-11-26T08:00:00Z") });
    expect(justBeforeEnd).toEqual({ open: true, next: at("2026-11-26T08:00:00Z") });
    expect(atEnd).toEqual({ open: false, next: at("2026-11-26T22:00:00Z") });
  });

  it("reads the window in its own time zone", () => {
    // Prepare: Berlin is UTC+1 in November, and Kolkata UTC+5:30 all year.
    const berlin = window("22:00", "08:00", "Europe/Berlin");
    const kolkata = window("01:00", "05:00", "Asia/Kolkata");

    // Act
    const berlinEvening = offPeakState(at("2026-11-25T20:30:00Z"), berlin);
    const berlinNight = offPeakState(at("2026-11-25T21:00:00Z"), berlin);
    const kolkataNight = offPeakState(at("2026-11-25T20:00:00Z"), kolkata);

    // Assess
    expect(berlinEvening).toEqual({ open: false, next: at("2026-11-25T21:00:00Z") });
    expect(berlinNight).toEqual({ open: true, next: at("2026-11-26T07:00:00Z") });
    expect(kolkataNight).toEqual({ open: true, next: at("2026-11-25T23:30:00Z") });
  });

  it("keeps to the wall clock across a DST change: a night with a spring-forward is an hour shorter", () => {
    // Prepare: Berlin moves from UTC+1 to UTC+2 at 01:00 UTC on 2026-03-29.
    const berlin = window("22:00", "08:00", "Europe/Berlin");

    // Act
    const saturdayNight = offPeakState(at("2026-03-28T21:00:00Z"), berlin);
    const sundayMorning = offPeakState(at("2026-03-29T06:00:00Z"), berlin);

    // Assess: opens 22:00 CET, closes 08:00 CEST.
    expect(saturdayNight).toEqual({ open: true, next: at("2026-03-29T06:00:00Z") });
    expect(sundayMorning).toEqual({ open: false, next: at("2026-03-29T20:00:00Z") });
  });

  it("opens at the next minute that exists when its start falls in a spring-forward gap", () => {
    // Prepare: New York skips 02:00..02:59 on 2026-03-08 (03:00 EDT = 07:00 UTC).
    const ny = window("02:30", "06:00", "America/New_York");

    // Act
    const state = offPeakState(at("2026-03-08T06:00:00Z"), ny);

    // Assess
    expect(state).toEqual({ open: false, next: at("2026-03-08T07:00:00Z") });
  });

  it("judges a fall-back day's repeated hour by what the clock reads", () => {
    // Prepare: Berlin goes from 03:00 CEST back to 02:00 CET at 01:00 UTC on 2026-10-25.
    const berlin = window("02:30", "08:00", "Europe/Berlin");

    // Act
    const first = offPeakState(at("2026-10-25T00:00:00Z"), berlin);
    const inside = offPeakState(at("2026-10-25T00:30:00Z"), berlin);
    const repeated = offPeakState(at("2026-10-25T01:00:00Z"), berlin);

    // Assess: open from 02:30 CEST, closed again when the clock reads 02:00 CET, open at 02:30 CET.
    expect(first).toEqual({ open: false, next: at("2026-10-25T00:30:00Z") });
    expect(inside).toEqual({ open: true, next: at("2026-10-25T01:00:00Z") });
    expect(repeated).toEqual({ open: false, next: at("2026-10-25T01:30:00Z") });
  });

  it("refuses a window whose start equals its end", () => {
    expect(() => offPeakState(at("2026-11-25T00:00:00Z"), window("08:00", "08:00"))).toThrow(RangeError);
  });
});

describe("offPeakReason", () => {
  it("is null while the window is open", () => {
    expect(offPeakReason(at("2026-11-25T23:00:00Z"), window("22:00", "08:00"))).toBeNull();
  });

  it("names the opening time in UTC, or in the window's zone with UTC beside it", () => {
    // Prepare
    const now = at("2026-11-25T12:00:00Z");

    // Act
    const utc = offPeakReason(now, window("22:00", "08:00"));
    const berlin = offPeakReason(now, window("22:00", "08:00", "Europe/Berlin"));

    // Assess
    expect(utc).toBe("off-peak window opens at 22:00 UTC");
    expect(berlin).toBe("off-peak window opens at 22:00 Europe/Berlin (21:00 UTC)");
  });

  it("writes the zone by its canonical name, and UTC under any of its names as UTC", () => {
    // Prepare
    const now = at("2026-11-25T12:00:00Z");

    // Act + Assess
    expect(offPeakReason(now, window("22:00", "08:00", "europe/berlin"))).toBe(
      "off-peak window opens at 22:00 Europe/Berlin (21:00 UTC)",
    );
    expect(offPeakReason(now, window("22:00", "08:00", "Etc/UTC"))).toBe(
      "off-peak window opens at 22:00 UTC",
    );
  });

  it("names the time the window really opens when its start does not exist that day", () => {
    expect(offPeakReason(at("2026-03-08T06:00:00Z"), window("02:30", "06:00", "America/New_York"))).toBe(
      "off-peak window opens at 03:00 America/New_York (07:00 UTC)",
    );
  });

  it("says the same thing all the while the window is closed", () => {
    // Prepare
    const night = window("22:00", "08:00", "America/Los_Angeles");
    const closedFrom = at("2026-11-25T16:00:00Z"); // 08:00 in Los Angeles

    // Act
    const said = new Set<string | null>();
    for (let minute = 0; minute < 14 * 60; minute += 7) {
      said.add(offPeakReason(new Date(closedFrom.getTime() + minute * 60_000), night));
    }

    // Assess
    expect([...said]).toEqual(["off-peak window opens at 22:00 America/Los_Angeles (06:00 UTC)"]);
  });
});

// ---- properties ----

const ZONES = [
  "UTC",
  "Europe/Berlin",
  "America/New_York",
  "America/Sao_Paulo",
  "Asia/Kolkata",
  "Australia/Lord_Howe", // a 30-minute DST shift
  "Pacific/Chatham", // a +12:45 / +13:45 offset
];

const clockArb = fc
  .integer({ min: 0, max: 24 * 60 - 1 })
  .map((m) => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`);

const windowArb = fc
  .record({ start: clockArb, end: clockArb, timezone: fc.constantFrom(...ZONES) })
  .filter((w) => w.start !== w.end);

/** DST changes of 2026 in the zones above, so that half the instants drawn are within a day and a half of one. */
const DST_CHANGES = [
  "2026-03-08T07:00:00Z", // New York, spring forward
  "2026-11-01T06:00:00Z", // New York, fall back
  "2026-03-29T01:00:00Z", // Berlin, spring forward
  "2026-10-25T01:00:00Z", // Berlin, fall back
  "2026-04-04T15:00:00Z", // Lord Howe, back 30 minutes
  "2026-10-03T15:30:00Z", // Lord Howe, forward 30 minutes
  "2026-04-04T14:00:00Z", // Chatham, back
  "2026-09-26T14:00:00Z", // Chatham, forward
].map(Date.parse);

const nowArb = fc
  .oneof(
    fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2030, 0, 1) }),
    fc
      .tuple(fc.constantFrom(...DST_CHANGES), fc.integer({ min: -36 * 3_600_000, max: 36 * 3_600_000 }))
      .map(([change, shift]) => change + shift),
  )
  .map((ms) => new Date(ms));

describe("offPeakState properties", () => {
  it("next is after now, the state holds until just before it, and flips at it", () => {
    fc.assert(
      fc.property(nowArb, windowArb, (now, w) => {
        const { open, next } = offPeakState(now, w);
        expect(next.getTime()).toBeGreaterThan(now.getTime());
        expect(offPeakState(new Date(next.getTime() - 1), w).open).toBe(open);
        expect(offPeakState(next, w).open).toBe(!open);
      }),
      { numRuns: 400 },
    );
  });

  it("next is the first flip: every quarter hour before it has the same state and the same next", () => {
    // With start and end on quarter hours, and every offset and DST change of these zones on a
    // quarter hour too, the state can only change on a quarter hour: checking those is exhaustive.
    const quarterArb = fc
      .integer({ min: 0, max: 95 })
      .map((q) => `${String(Math.floor(q / 4)).padStart(2, "0")}:${String((q % 4) * 15).padStart(2, "0")}`);
    const quarterWindowArb = fc
      .record({ start: quarterArb, end: quarterArb, timezone: fc.constantFrom(...ZONES) })
      .filter((w) => w.start !== w.end);
    fc.assert(
      fc.property(nowArb, quarterWindowArb, (now, w) => {
        const { open, next } = offPeakState(now, w);
        const quarter = 15 * 60_000;
        for (let t = Math.ceil(now.getTime() / quarter) * quarter; t < next.getTime(); t += quarter) {
          const later = offPeakState(new Date(t), w);
          if (later.open !== open || later.next.getTime() !== next.getTime()) {
            expect({ at: new Date(t), ...later }).toEqual({ at: new Date(t), open, next });
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it("the reason is null exactly while open, and stays the same while closed", () => {
    fc.assert(
      fc.property(nowArb, windowArb, fc.double({ min: 0, max: 1, noNaN: true }), (now, w, fraction) => {
        const { open, next } = offPeakState(now, w);
        const reason = offPeakReason(now, w);
        expect(reason === null).toBe(open);
        const between = new Date(now.getTime() + Math.floor((next.getTime() - now.getTime()) * fraction));
        if (between.getTime() < next.getTime()) expect(offPeakReason(between, w)).toBe(reason);
      }),
      { numRuns: 300 },
    );
  });
});
