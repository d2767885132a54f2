import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { QueuedJob } from "../../core/admission";
import { AdmissionOrder, positionBetween, queuePosition } from "../../core/ordering";
import { assertPriorityAllowed } from "../../core/quota";
import { positionOfQueueSk, queueSk } from "../../store/keys";

const NOW = new Date("2026-11-25T12:00:00.000Z");

/** Positions as the store writes them: a deadline (canonical ISO) or `~`, then a ULID-like id. */
const idArb = fc.stringMatching(/^job_[0-9A-HJKMNP-TV-Z]{6}$/);
const deadlineArb = fc.option(
  fc
    .date({
      min: new Date("2026-01-01T00:00:00Z"),
      max: new Date("2027-01-01T00:00:00Z"),
      noInvalidDate: true,
    })
    .map((d) => d.toISOString()),
  { nil: null },
);
const positionArb = fc.tuple(deadlineArb, idArb).map(([deadline, id]) => queuePosition({ deadline, id }));

describe("positionBetween", () => {
  it("finds a position strictly between any two distinct positions", () => {
    fc.assert(
      fc.property(positionArb, positionArb, (x, y) => {
        fc.pre(x !== y);
        const [lo, hi] = x < y ? [x, y] : [y, x];

        const between = positionBetween(lo, hi);

        expect(lo < between && between < hi).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it("keeps finding room when job after job is moved into the same gap", () => {
    // Prepare
    const hi = queuePosition({ deadline: null, id: "job_01B" });
    let lo = queuePosition({ deadline: null, id: "job_01A" });

    // Act / Assess: each move goes just ahead of the target, behind the last one moved
    for (let i = 0; i < 200; i++) {
      const next = positionBetween(lo, hi);
      expect(lo < next && next < hi).toBe(true);
      lo = next;
    }
    expect(lo.length).toBeLessThan(220);
  });

  it("finds a place ahead of the first job of a priority", () => {
    const hi = queuePosition({ deadline: "2026-05-01T00:00:00.000Z", id: "job_01A" });

    const first = positionBetween("", hi);

    expect(first < hi && first.length > 0).toBe(true);
  });

  it("refuses bounds in the wrong order", () => {
    expect(() => positionBetween("b", "a")).toThrow(RangeError);
    expect(() => positionBetween("a", "a")).toThrow(RangeError);
  });
});

describe("queue index and in-memory order agree", () => {
  const jobArb = fc.record({
    id: idArb,
    priority: fc.integer({ min: -10, max: 10 }),
    deadline: deadlineArb,
    moved: fc.option(positionArb, { nil: null }),
  });

  it("AdmissionOrder (priority, no aging) yields the jobs in queueSk order", () => {
    fc.assert(
      fc.property(fc.uniqueArray(jobArb, { selector: (j) => j.id, maxLength: 40 }), (specs) => {
        // Prepare: a moved job's key is some position a move could have produced
        const jobs: QueuedJob[] = specs.map((s) => ({
          id: s.id,
          priority: s.priority,
          resources: { cpu: 1, memoryMb: 1, gpu: 0 },
          pool: null,
          constraints: {},
          queuedAt: NOW.toISOString(),
          deadline: s.deadline,
          orderKey: s.moved,
        }));
        const keyOf = (j: QueuedJob) =>
          queueSk({
            priority: j.priority,
            deadline: j.deadline ?? null,
            id: j.id,
            orderKey: j.orderKey ?? undefined,
          });
        const expected = [...jobs]
          .sort((a, b) => (keyOf(a) !== keyOf(b) ? (keyOf(a) < keyOf(b) ? -1 : 1) : a.id < b.id ? -1 : 1))
          .map((j) => j.id);

        // Act
        const order = new AdmissionOrder({
          algorithm: "priority",
          agingSecondsPerStep: 0,
          weights: {},
          now: NOW,
          jobs,
          usage: new Map(),
          capacity: { cpu: 1, memoryMb: 1, gpu: 1 },
        });
        const actual: string[] = [];
        for (let j = order.next(); j; j = order.next()) actual.push(j.id);

        // Assess
        expect(actual).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it("reads a position back out of its queueSk", () => {
    const job = { priority: -7, deadline: null, id: "job_01X", orderKey: "~#job_01W~" };

    expect(positionOfQueueSk(queueSk(job))).toBe("~#job_01W~");
    expect(positionOfQueueSk(queueSk({ ...job, orderKey: undefined }))).toBe("~#job_01X");
  });
});

describe("assertPriorityAllowed", () => {
  const alice = { id: "alice", admin: false };

  it("lets anything through without a limit, and admins past one", () => {
    expect(() => assertPriorityAllowed({ maxPriority: null }, alice, 10)).not.toThrow();
    expect(() => assertPriorityAllowed({ maxPriority: 0 }, { id: "ops", admin: true }, 10)).not.toThrow();
  });

  it("refuses a user above the limit, and allows lowering a job that is above it", () => {
    expect(() => assertPriorityAllowed({ maxPriority: 5 }, alice, 6)).toThrow(/maxPriority/);
    expect(() => assertPriorityAllowed({ maxPriority: 5 }, alice, 5)).not.toThrow();
    expect(() => assertPriorityAllowed({ maxPriority: 5 }, alice, 8, 10)).not.toThrow();
    expect(() => assertPriorityAllowed({ maxPriority: 5 }, alice, 9, 8)).toThrow(/maxPriority/);
  });
});
