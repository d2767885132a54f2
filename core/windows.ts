import type { OffPeakWindow } from "./policy";

/**
 * The policy's off-peak window (API.md: `offPeakOnly` jobs are admitted only inside it). The
 * window is open while the zone's wall clock reads a time in [start, end); a window whose end is
 * before its start spans midnight. Wall-clock semantics make DST behave as people expect: on a
 * spring-forward day a start that does not exist opens the window at the next minute that does,
 * and on a fall-back day the repeated hour is judged by what the clock reads.
 */

const SECOND_MS = 1000;
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
/**
 * How far apart the zone's offset is sampled when looking for a DST change: zones change offset
 * at most a few times a year, never twice within this span, so no change can be stepped over.
 */
const SAMPLE_MS = 6 * 3_600_000;
/** Far beyond any flip: a window is part of every day, so one opens and closes within ~26 hours. */
const HORIZON_MS = 8 * DAY_MS;

export interface OffPeakState {
  readonly open: boolean;
  /** When the window next opens (while closed) or closes (while open); always after `now`. */
  readonly next: Date;
}

/** Whether the window is open at `now`, and the instant that changes. */
export function offPeakState(now: Date, window: OffPeakWindow): OffPeakState {
  const zone = zoneOf(window);
  const start = clockMinutes(window.start);
  const end = clockMinutes(window.end);
  if (start === end) throw new RangeError("an off-peak window's start and end must differ");
  const isOpen = (at: number, offset: number): boolean => {
    const minute = Math.floor(modulo(at + offset, DAY_MS) / MINUTE_MS);
    return start < end ? minute >= start && minute < end : minute >= start || minute < end;
  };

  const from = now.getTime();
  let at = from;
  let offset = zone.offsetAt(at);
  const open = isOpen(at, offset);
  // Walk spans of constant offset: within one the wall clock moves with real time, so the flip is
  // where it reaches the next boundary; at a DST change the clock jumps and may flip the state.
  while (at < from + HORIZON_MS) {
    const wall = at + offset;
    let boundary = wall - modulo(wall, DAY_MS) + (open ? end : start) * MINUTE_MS;
    if (boundary <= wall) boundary += DAY_MS;
    const flip = boundary - offset;
    const change = zone.changeWithin(at, flip, offset);
    if (change === null) return { open, next: new Date(flip) };
    at = change;
    offset = zone.offsetAt(at);
    if (isOpen(at, offset) !== open) return { open, next: new Date(at) };
  }
  throw new RangeError(`off-peak window ${window.start}-${window.end} ${window.timezone} never changes`);
}

/**
 * Why an `offPeakOnly` job waits, or null while the window is open: "off-peak window opens at
 * 22:00 UTC", or "off-peak window opens at 22:00 Europe/Berlin (21:00 UTC)" in another zone. It
 * names the opening that comes next, so it stays the same for as long as the window is closed.
 */
export function offPeakReason(now: Date, window: OffPeakWindow): string | null {
  const state = offPeakState(now, window);
  if (state.open) return null;
  const zone = zoneOf(window);
  const opens = state.next.getTime();
  const utc = clockText(opens);
  if (zone.isUtc) return `off-peak window opens at ${utc} UTC`;
  return `off-peak window opens at ${clockText(opens + zone.offsetAt(opens))} ${zone.name} (${utc} UTC)`;
}

interface Zone {
  /** The zone's canonical IANA name ("europe/berlin" reads "Europe/Berlin"). */
  readonly name: string;
  readonly isUtc: boolean;
  /** The zone's offset from UTC at an instant, in ms (whole seconds, as Intl shows them). */
  offsetAt(at: number): number;
  /** The first instant in (from, to] whose offset differs from `offset`, or null. */
  changeWithin(from: number, to: number, offset: number): number | null;
}

const zones = new Map<string, Zone>();

function zoneOf(window: OffPeakWindow): Zone {
  const found = zones.get(window.timezone);
  if (found) return found;
  const format = new Intl.DateTimeFormat("en-US", {
    timeZone: window.timezone,
    hourCycle: "h23",
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    second: "numeric",
  });
  const offsetAt = (at: number): number => {
    const second = Math.floor(at / SECOND_MS) * SECOND_MS;
    const wall = { year: 0, month: 1, day: 1, hour: 0, minute: 0, second: 0 };
    for (const part of format.formatToParts(second)) {
      if (part.type in wall) wall[part.type as keyof typeof wall] = Number(part.value);
    }
    const local = new Date(0);
    local.setUTCFullYear(wall.year, wall.month - 1, wall.day);
    local.setUTCHours(wall.hour, wall.minute, wall.second, 0);
    return local.getTime() - second;
  };
  const changeWithin = (from: number, to: number, offset: number): number | null => {
    let before = from;
    for (let probe = Math.min(from + SAMPLE_MS, to); ; probe = Math.min(probe + SAMPLE_MS, to)) {
      if (offsetAt(probe) !== offset) return firstChange(before, probe, offset, offsetAt);
      if (probe >= to) return null;
      before = probe;
    }
  };
  const name = format.resolvedOptions().timeZone;
  const zone: Zone = { name, isUtc: name === "UTC", offsetAt, changeWithin };
  zones.set(window.timezone, zone);
  return zone;
}

/** Offsets change on whole seconds: bisect (before, after] down to the second the new one starts. */
function firstChange(
  before: number,
  after: number,
  offset: number,
  offsetAt: (at: number) => number,
): number {
  let low = Math.floor(before / SECOND_MS);
  // `after` has the new offset, and so has the start of its second (offsets change on whole seconds).
  let high = Math.floor(after / SECOND_MS);
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (offsetAt(mid * SECOND_MS) === offset) low = mid;
    else high = mid;
  }
  return high * SECOND_MS;
}

function clockMinutes(clock: string): number {
  const [hours, minutes] = clock.split(":").map(Number);
  return (hours ?? 0) * 60 + (minutes ?? 0);
}

/** HH:MM of a wall-clock reading given as ms since the epoch. */
function clockText(wall: number): string {
  const minute = Math.floor(modulo(wall, DAY_MS) / MINUTE_MS);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(Math.floor(minute / 60))}:${pad(minute % 60)}`;
}

function modulo(n: number, m: number): number {
  return ((n % m) + m) % m;
}
