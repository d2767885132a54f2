import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  applicableStatus,
  type BatchJobDependencies,
  dependencyOutcome,
  initialStatus,
  resolveBatch,
  tallyDependencies,
  validateExternalDeps,
} from "../../core/dependencies";
import { DependencyCycleError, UnknownDependencyError, ValidationError } from "../../core/errors";
import { JOB_STATUSES, type JobStatus } from "../../core/job";

/** The error `act` throws, or undefined: lets a test assess the error's fields. */
function thrownBy(act: () => unknown): unknown {
  try {
    act();
  } catch (error) {
    return error;
  }
  return undefined;
}

function cycleOf(jobs: readonly BatchJobDependencies[]): readonly string[] {
  const error = thrownBy(() => resolveBatch(jobs));
  if (!(error instanceof DependencyCycleError))
    throw new Error(`expected a DependencyCycleError, got ${error}`);
  return error.cycle;
}

/** Jobs named r0..r(n-1), job i depending on the refs of `edges[i]`. */
function batchOf(edges: readonly (readonly number[])[]): BatchJobDependencies[] {
  return edges.map((deps, i) => ({ ref: `r${i}`, dependsOn: deps.map((d) => `r${d}`) }));
}

function positions(order: readonly number[]): Map<number, number> {
  return new Map(order.map((job, position) => [job, position]));
}

function edgesViolatingOrder(edges: readonly (readonly number[])[], order: readonly number[]): string[] {
  const at = positions(order);
  return edges.flatMap((deps, job) =>
    deps
      .filter((dep) => (at.get(dep) ?? Number.NaN) >= (at.get(job) ?? Number.NaN))
      .map((dep) => `${job}->${dep}`),
  );
}

describe("resolveBatch: refs and ids", () => {
  it("treats a ref of the batch as a batch dependency and anything else as an existing id", () => {
    // Prepare
    const jobs = [
      { ref: "a", dependsOn: [] },
      { ref: "b", dependsOn: ["a", "job_existing"] },
    ];

    // Act
    const batch = resolveBatch(jobs);

    // Assess
    expect(batch.jobs).toEqual([
      { batchDeps: [], externalDeps: [] },
      { batchDeps: [0], externalDeps: ["job_existing"] },
    ]);
    expect(batch.externalDeps).toEqual(["job_existing"]);
    expect(batch.order).toEqual([0, 1]);
  });

  it("dedupes batch and external dependencies, keeping the order given", () => {
    // Prepare
    const jobs = [
      { ref: "a", dependsOn: [] },
      { ref: "b", dependsOn: [] },
      { ref: "c", dependsOn: ["job_2", "b", "a", "job_1", "b", "job_2", "a"] },
      { dependsOn: ["job_3", "job_1"] },
    ];

    // Act
    const batch = resolveBatch(jobs);

    // Assess
    expect(batch.jobs[2]).toEqual({ batchDeps: [1, 0], externalDeps: ["job_2", "job_1"] });
    expect(batch.jobs[3]).toEqual({ batchDeps: [], externalDeps: ["job_3", "job_1"] });
    expect(batch.externalDeps).toEqual(["job_2", "job_1", "job_3"]);
  });

  it("lets a ref win over an existing id of the same spelling", () => {
    // Prepare
    const jobs = [
      { ref: "job_01ABC", dependsOn: [] },
      { ref: "b", dependsOn: ["job_01ABC"] },
    ];

    // Act
    const batch = resolveBatch(jobs);

    // Assess
    expect(batch.jobs[1]).toEqual({ batchDeps: [0], externalDeps: [] });
  });

  it("does not let a job without a ref be named by its position", () => {
    // Prepare
    const jobs = [{ dependsOn: [] }, { ref: "b", dependsOn: ["#0"] }];

    // Act
    const batch = resolveBatch(jobs);

    // Assess
    expect(batch.jobs[1]).toEqual({ batchDeps: [], externalDeps: ["#0"] });
  });

  it("refuses duplicate refs, naming every repeated one by its path", () => {
    // Prepare
    const jobs = [
      { ref: "a", dependsOn: [] },
      { ref: "b", dependsOn: [] },
      { ref: "a", dependsOn: [] },
      { dependsOn: [] },
      { ref: "b", dependsOn: [] },
    ];

    // Act
    const error = thrownBy(() => resolveBatch(jobs));

    // Assess
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({
      code: "validation_failed",
      problems: [
        { path: "jobs.2.ref", message: 'ref "a" is already used by jobs.0' },
        { path: "jobs.4.ref", message: 'ref "b" is already used by jobs.1' },
      ],
    });
  });

  it("accepts an empty batch", () => {
    // Prepare / Act
    const batch = resolveBatch([]);

    // Assess
    expect(batch).toEqual({ jobs: [], order: [], externalDeps: [] });
  });
});

describe("resolveBatch: cycles", () => {
  it("reports a self-dependency as a cycle of one", () => {
    // Prepare
    const jobs = [{ ref: "a", dependsOn: ["a"] }];

    // Act
    const cycle = cycleOf(jobs);

    // Assess
    expect(cycle).toEqual(["a", "a"]);
  });

  it("reports a cycle of two", () => {
    // Prepare
    const jobs = [
      { ref: "a", dependsOn: ["b"] },
      { ref: "b", dependsOn: ["a"] },
    ];

    // Act
    const cycle = cycleOf(jobs);

    // Assess
    expect(cycle).toEqual(["a", "b", "a"]);
  });

  it("reports a cycle of three in dependency order, starting at its first job in the batch", () => {
    // Prepare
    const jobs = [
      { ref: "x", dependsOn: ["c"] },
      { ref: "c", dependsOn: ["a"] },
      { ref: "a", dependsOn: ["b"] },
      { ref: "b", dependsOn: ["c"] },
    ];

    // Act
    const error = thrownBy(() => resolveBatch(jobs));

    // Assess
    expect(error).toBeInstanceOf(DependencyCycleError);
    expect(error).toMatchObject({
      code: "dependency_cycle",
      cycle: ["c", "a", "b", "c"],
      details: { cycle: ["c", "a", "b", "c"] },
      message: "dependency cycle: c -> a -> b -> c",
    });
  });

  it("reports only the cycle's members, not the jobs without a ref that wait on it", () => {
    // Prepare
    // A job without a ref cannot be named in dependsOn, so it can wait on a cycle but never be in one.
    const jobs = [
      { dependsOn: ["b"] },
      { ref: "b", dependsOn: ["c", "job_elsewhere"] },
      { ref: "c", dependsOn: ["b"] },
    ];

    // Act
    const cycle = cycleOf(jobs);

    // Assess
    expect(cycle).toEqual(["b", "c", "b"]);
  });

  it("finds the exact cycle hidden in a 500-job batch", () => {
    // Prepare
    // Every other job depends only downward, and the three cycle members only on each other, so
    // the hidden cycle is the only one there is.
    const hidden = new Map([
      [137, [412]],
      [412, [289]],
      [289, [137]],
    ]);
    const edges = Array.from(
      { length: 500 },
      (_, i) => hidden.get(i) ?? (i === 0 ? [] : [i - 1, Math.floor(i / 2)]),
    );
    const jobs = batchOf(edges);

    // Act
    const cycle = cycleOf(jobs);

    // Assess
    expect(cycle).toEqual(["r137", "r412", "r289", "r137"]);
  });
});

describe("resolveBatch: long chains", () => {
  it("orders a 500-long chain dependencies first, without recursion", () => {
    // Prepare
    // Job i waits on job i+1, so a depth-first walk from job 0 is 500 deep.
    const edges = Array.from({ length: 500 }, (_, i) => (i < 499 ? [i + 1] : []));

    // Act
    const batch = resolveBatch(batchOf(edges));

    // Assess
    expect(batch.order).toEqual(Array.from({ length: 500 }, (_, i) => 499 - i));
    expect(edgesViolatingOrder(edges, batch.order)).toEqual([]);
  });

  it("handles a chain far deeper than any call stack", () => {
    // Prepare
    const length = 200_000;
    const jobs = Array.from({ length }, (_, i) => ({
      ref: `r${i}`,
      dependsOn: i < length - 1 ? [`r${i + 1}`] : [],
    }));

    // Act
    const batch = resolveBatch(jobs);

    // Assess
    expect(batch.order[0]).toBe(length - 1);
    expect(batch.order[length - 1]).toBe(0);
  });
});

describe("resolveBatch properties", () => {
  // Edges only from a higher index to a lower one: always acyclic.
  const dag = fc.integer({ min: 1, max: 40 }).chain((n) =>
    fc.tuple(
      ...Array.from({ length: n }, (_, i) =>
        fc
          .uniqueArray(fc.integer({ min: 0, max: Math.max(0, i - 1) }), {
            maxLength: i,
          })
          .map((deps) => (i === 0 ? [] : deps)),
      ),
    ),
  );

  it("never reports a cycle in a DAG, and orders every dependency before its dependent", () => {
    // Prepare / Act / Assess
    fc.assert(
      fc.property(dag, (edges) => {
        const batch = resolveBatch(batchOf(edges));
        expect([...batch.order].sort((a, b) => a - b)).toEqual(edges.map((_, i) => i));
        expect(edgesViolatingOrder(edges, batch.order)).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it("always reports a cycle made of real edges once a back-edge closes a path", () => {
    // Prepare
    // A path from `high` down to `low` through the DAG, then the back-edge low → high.
    const withBackEdge = dag
      .filter((edges) => edges.length >= 1)
      .chain((edges) =>
        fc
          .tuple(fc.nat({ max: edges.length - 1 }), fc.nat({ max: edges.length - 1 }))
          .map(([x, y]) => ({ edges, low: Math.min(x, y), high: Math.max(x, y) })),
      )
      .map(({ edges, low, high }) =>
        edges.map((deps, i) => {
          if (i > low && i <= high) return [...new Set([...deps, i - 1])];
          if (i === low) return [...new Set([...deps, high])];
          return deps;
        }),
      );

    // Act / Assess
    fc.assert(
      fc.property(withBackEdge, (edges) => {
        const jobs = batchOf(edges);
        const cycle = cycleOf(jobs);
        const members = cycle.map((ref) => Number(ref.slice(1)));
        expect(members.length).toBeGreaterThanOrEqual(2);
        expect(members[0]).toBe(members.at(-1));
        expect(new Set(members.slice(0, -1)).size).toBe(members.length - 1);
        expect(members[0]).toBe(Math.min(...members));
        for (let k = 0; k + 1 < members.length; k++) {
          const from = members[k] ?? -1;
          const to = members[k + 1] ?? -1;
          expect(edges[from]).toContain(to);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("validateExternalDeps", () => {
  const found = new Map<string, { status: JobStatus; escalatedTo: string | null }>([
    ["job_a", { status: "completed", escalatedTo: null }],
    ["job_b", { status: "escalated", escalatedTo: "job_c" }],
  ]);

  it("accepts dependencies the principal can see", () => {
    // Prepare
    const requested = ["job_a", "job_b", "job_a"];

    // Act
    const act = () => validateExternalDeps(requested, found);

    // Assess
    expect(act).not.toThrow();
  });

  it("lists every missing id once, in the order requested", () => {
    // Prepare
    const requested = ["job_z", "job_a", "job_y", "job_z"];

    // Act
    const error = thrownBy(() => validateExternalDeps(requested, found));

    // Assess
    expect(error).toBeInstanceOf(UnknownDependencyError);
    expect(error).toMatchObject({ code: "unknown_dependency", missing: ["job_z", "job_y"] });
  });
});

describe("dependencyOutcome", () => {
  it("is met only for completed, doomed for failed and cancelled, unmet otherwise", () => {
    // Prepare
    const expected: Record<JobStatus, string> = {
      scheduled: "unmet",
      blocked: "unmet",
      queued: "unmet",
      dispatched: "unmet",
      running: "unmet",
      retrying: "unmet",
      paused: "unmet",
      completed: "met",
      failed: "doomed",
      cancelled: "doomed",
      escalated: "unmet",
    };

    // Act
    const actual = Object.fromEntries(JOB_STATUSES.map((status) => [status, dependencyOutcome(status)]));

    // Assess
    expect(actual).toEqual(expected);
  });
});

describe("tallyDependencies", () => {
  it("counts unmet dependencies and names the first doomed one", () => {
    // Prepare
    const dependencies = [
      { id: "job_1", status: "completed" as const },
      { id: "job_2", status: "running" as const },
      { id: "job_3", status: "cancelled" as const },
      { id: "job_4", status: "failed" as const },
    ];

    // Act
    const tally = tallyDependencies(dependencies);

    // Assess
    expect(tally).toEqual({ unmet: 3, total: 4, doomedBy: { id: "job_3", status: "cancelled" } });
  });

  it("has nothing to wait for without dependencies", () => {
    // Prepare / Act
    const tally = tallyDependencies([]);

    // Assess
    expect(tally).toEqual({ unmet: 0, total: 0, doomedBy: null });
  });
});

describe("applicableStatus", () => {
  const now = new Date("2026-11-22T12:00:00.000Z");
  const ready = { now, runAt: null, unmet: 0, total: 0, doomedBy: null };

  it("is the same rule the submit path calls initialStatus", () => {
    // Prepare / Act / Assess
    expect(initialStatus).toBe(applicableStatus);
  });

  it("cancels a job whose dependency failed, naming it", () => {
    // Prepare
    const input = { ...ready, unmet: 2, total: 3, doomedBy: { id: "job_x", status: "failed" as const } };

    // Act
    const result = applicableStatus(input);

    // Assess
    expect(result).toEqual({ status: "cancelled", reason: "dependency job_x failed", code: null });
  });

  it("cancels a job whose dependency was cancelled, even with a future runAt", () => {
    // Prepare
    const input = {
      ...ready,
      runAt: "2027-01-01T00:00:00.000Z",
      unmet: 1,
      total: 1,
      doomedBy: { id: "job_y", status: "cancelled" as const },
    };

    // Act
    const result = applicableStatus(input);

    // Assess
    expect(result).toEqual({ status: "cancelled", reason: "dependency job_y was cancelled", code: null });
  });

  it("blocks a job with unmet dependencies before looking at runAt", () => {
    // Prepare
    const input = { ...ready, runAt: "2027-01-01T00:00:00.000Z", unmet: 2, total: 3 };

    // Act
    const result = applicableStatus(input);

    // Assess
    expect(result).toEqual({
      status: "blocked",
      reason: "waiting for 2 of 3 dependencies",
      code: "dependency",
    });
  });

  it("schedules a ready job whose runAt is in the future, giving runAt in UTC", () => {
    // Prepare
    const input = { ...ready, runAt: "2026-11-22T23:00:00+01:00", unmet: 0, total: 2 };

    // Act
    const result = applicableStatus(input);

    // Assess
    expect(result).toEqual({
      status: "scheduled",
      reason: "scheduled to run at 2026-11-22T22:00:00.000Z",
      code: "begin_time",
    });
  });

  it.each([
    ["no runAt", null],
    ["a past runAt", "2026-11-22T11:59:59.999Z"],
    ["a runAt of exactly now", "2026-11-22T12:00:00.000Z"],
  ])("queues a ready job with %s", (_, runAt) => {
    // Prepare
    const input = { ...ready, runAt };

    // Act
    const result = applicableStatus(input);

    // Assess
    expect(result).toEqual({ status: "queued", reason: "waiting for admission", code: "pending" });
  });

  it.each([
    { unmet: -1, total: 2 },
    { unmet: 3, total: 2 },
    { unmet: 0.5, total: 2 },
  ])("refuses impossible counts %o", (counts) => {
    // Prepare
    const input = { ...ready, ...counts };

    // Act
    const act = () => applicableStatus(input);

    // Assess
    expect(act).toThrow(RangeError);
  });

  it("refuses a runAt that is not a timestamp", () => {
    // Prepare
    const input = { ...ready, runAt: "next tuesday" };

    // Act
    const act = () => applicableStatus(input);

    // Assess
    expect(act).toThrow(RangeError);
  });
});
