import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidTransitionError } from "../../core/errors";
import { isTerminal, JOB_STATUSES, type JobStatus, TERMINAL_STATUSES } from "../../core/job";
import {
  ALLOWED_TRANSITIONS,
  CANCELLABLE,
  canTransition,
  PAUSABLE,
  RETRYABLE,
  transition,
} from "../../core/status";

// The table of API.md, written out again so a change to the code's table has to be deliberate.
const EXPECTED: Record<JobStatus, JobStatus[]> = {
  scheduled: ["queued", "blocked", "paused", "cancelled", "failed"],
  // `completed` only for an array job's parent, which completes with its last child.
  blocked: ["scheduled", "queued", "paused", "cancelled", "failed", "completed"],
  queued: ["dispatched", "blocked", "paused", "cancelled", "failed"],
  dispatched: ["running", "queued", "retrying", "paused", "cancelled", "failed", "escalated"],
  running: ["completed", "retrying", "queued", "paused", "cancelled", "failed", "escalated"],
  retrying: ["queued", "blocked", "paused", "cancelled", "failed", "escalated"],
  paused: ["scheduled", "blocked", "queued", "cancelled", "failed"],
  completed: [],
  // Only through a manual retry (transition(..., "retry")).
  failed: ["scheduled", "blocked", "queued"],
  cancelled: ["scheduled", "blocked", "queued"],
  escalated: ["scheduled", "blocked", "queued"],
};

const allPairs = JOB_STATUSES.flatMap((from) => JOB_STATUSES.map((to) => [from, to] as const));
const allowedPairs = allPairs.filter(([from, to]) => EXPECTED[from].includes(to) && !isTerminal(from));
const retryPairs = allPairs.filter(([from, to]) => EXPECTED[from].includes(to) && isTerminal(from));
const refusedPairs = allPairs.filter(([from, to]) => !EXPECTED[from].includes(to));

function refusal(from: JobStatus, to: JobStatus): unknown {
  try {
    transition(from, to);
  } catch (error) {
    return error;
  }
  return undefined;
}

function refusalVia(from: JobStatus, to: JobStatus): unknown {
  try {
    transition(from, to, "retry");
  } catch (error) {
    return error;
  }
  return undefined;
}

describe("ALLOWED_TRANSITIONS", () => {
  it("is exactly the table of API.md", () => {
    // Prepare
    const expected = Object.fromEntries(JOB_STATUSES.map((status) => [status, [...EXPECTED[status]].sort()]));

    // Act
    const actual = Object.fromEntries(
      Object.entries(ALLOWED_TRANSITIONS).map(([status, targets]) => [status, [...targets].sort()]),
    );

    // Assess
    expect(actual).toEqual(expected);
  });

  it("covers all 121 pairs between allowed and refused", () => {
    // Prepare / Act
    const total = allowedPairs.length + retryPairs.length + refusedPairs.length;

    // Assess
    expect(total).toBe(121);
    expect(allowedPairs).toHaveLength(41);
    expect(retryPairs).toHaveLength(9);
  });

  it.each(allowedPairs)("allows %s → %s", (from, to) => {
    // Prepare / Act
    const next = transition(from, to);

    // Assess
    expect(next).toBe(to);
    expect(canTransition(from, to)).toBe(true);
  });

  it.each(refusedPairs)("refuses %s → %s with InvalidTransitionError", (from, to) => {
    // Prepare / Act
    const error = refusal(from, to);

    // Assess
    expect(canTransition(from, to)).toBe(false);
    expect(error).toBeInstanceOf(InvalidTransitionError);
    expect(error).toMatchObject({ code: "invalid_transition", from, to, details: { from, to } });
  });

  it.each(retryPairs)("allows %s → %s only through a retry", (from, to) => {
    // Prepare / Act
    const plain = refusal(from, to);
    const retried = transition(from, to, "retry");

    // Assess
    expect(canTransition(from, to)).toBe(true);
    expect(plain).toBeInstanceOf(InvalidTransitionError);
    expect(retried).toBe(to);
  });

  it.each([...TERMINAL_STATUSES])(
    "gives the terminal status %s no exit but a retry's waiting statuses",
    (status) => {
      // Prepare / Act
      const exits = JOB_STATUSES.filter((to) => canTransition(status, to));
      const plainExits = JOB_STATUSES.filter((to) => refusal(status, to) === undefined);

      // Assess
      expect(plainExits).toEqual([]);
      expect(exits.every((to) => ["scheduled", "blocked", "queued"].includes(to))).toBe(true);
    },
  );

  it("lets a retry revive failed, cancelled and escalated jobs, never completed ones", () => {
    // Prepare / Act
    const retryable = [...RETRYABLE];

    // Assess
    expect(retryable.sort()).toEqual(["cancelled", "escalated", "failed"]);
    expect(refusalVia("completed", "queued")).toBeInstanceOf(InvalidTransitionError);
    expect(refusalVia("failed", "running")).toBeInstanceOf(InvalidTransitionError);
  });

  it("gives every non-terminal status a way to end", () => {
    // Prepare
    const waiting = JOB_STATUSES.filter((status) => !isTerminal(status));

    // Act
    const withoutEnd = waiting.filter((status) => !ALLOWED_TRANSITIONS[status].some((to) => isTerminal(to)));

    // Assess
    expect(withoutEnd).toEqual([]);
  });
});

describe("transition messages", () => {
  it("says why a completed job cannot be cancelled", () => {
    // Prepare / Act
    const error = refusal("completed", "cancelled");

    // Assess
    expect(error).toBeInstanceOf(InvalidTransitionError);
    expect(error).toMatchObject({ message: "job is completed; a completed job cannot be cancelled" });
  });

  it("uses 'an' before a vowel", () => {
    // Prepare / Act
    const error = refusal("escalated", "paused");

    // Assess
    expect(error).toMatchObject({ message: "job is escalated; an escalated job cannot be paused" });
  });

  it("names the refused move for a non-terminal job", () => {
    // Prepare / Act
    const error = refusal("queued", "running");

    // Assess
    expect(error).toMatchObject({ message: "job is queued; a queued job cannot start running" });
  });
});

describe("PAUSABLE and CANCELLABLE", () => {
  it("lets exactly the statuses of POST /jobs/{id}/pause be paused", () => {
    // Prepare
    const expected = ["scheduled", "blocked", "queued", "retrying", "dispatched", "running"];

    // Act
    const pausable = [...PAUSABLE];

    // Assess
    expect(pausable.sort()).toEqual(expected.sort());
  });

  it("lets every non-terminal status be cancelled and no terminal one", () => {
    // Prepare
    const nonTerminal = JOB_STATUSES.filter((status) => !isTerminal(status));

    // Act
    const cancellable = [...CANCELLABLE];

    // Assess
    expect(cancellable.sort()).toEqual([...nonTerminal].sort());
  });

  it("agrees with the table for every status", () => {
    // Prepare / Act
    const mismatches = JOB_STATUSES.filter(
      (status) =>
        PAUSABLE.has(status) !== canTransition(status, "paused") ||
        CANCELLABLE.has(status) !== canTransition(status, "cancelled"),
    );

    // Assess
    expect(mismatches).toEqual([]);
  });
});

describe("random walks through transition()", () => {
  it("never leave a terminal status once reached, unless retried", () => {
    // Prepare
    const walk = fc.record({
      start: fc.constantFrom(...JOB_STATUSES),
      steps: fc.array(fc.constantFrom(...JOB_STATUSES), { maxLength: 60 }),
    });

    // Act / Assess
    fc.assert(
      fc.property(walk, ({ start, steps }) => {
        let status: JobStatus = start;
        let reachedTerminal = isTerminal(start);
        for (const target of steps) {
          const before = status;
          try {
            status = transition(status, target);
          } catch (error) {
            expect(error).toBeInstanceOf(InvalidTransitionError);
          }
          if (reachedTerminal) expect(status).toBe(before);
          reachedTerminal ||= isTerminal(status);
        }
      }),
      { numRuns: 500 },
    );
  });
});
