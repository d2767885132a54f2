import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AdmissionPass, type NodeState, type QueuedJob } from "../../core/admission";
import type { Resources } from "../../core/job";
import {
  AdmissionOrder,
  decideInOrder,
  dominantShare,
  effectivePriority,
  type OrderingInput,
} from "../../core/ordering";
import type { Algorithm } from "../../core/policy";
import type { PoolConfig } from "../../core/pools";

const NOW = new Date("2026-11-25T12:00:00.000Z");
const CAPACITY: Resources = { cpu: 16, memoryMb: 65536, gpu: 8 };

function secondsAgo(seconds: number): string {
  return new Date(NOW.getTime() - seconds * 1000).toISOString();
}

function job(id: string, extra: Partial<QueuedJob> = {}): QueuedJob {
  return {
    id,
    priority: 0,
    resources: { cpu: 1, memoryMb: 512, gpu: 0 },
    pool: "p",
    constraints: {},
    queuedAt: NOW.toISOString(),
    owner: "alice",
    ...extra,
  };
}

function order(jobs: readonly QueuedJob[], extra: Partial<OrderingInput> = {}): AdmissionOrder {
  return new AdmissionOrder({
    algorithm: "priority",
    agingSecondsPerStep: 0,
    weights: {},
    now: NOW,
    jobs,
    usage: new Map(),
    capacity: CAPACITY,
    ...extra,
  });
}

/** Every job the order yields, none admitted. */
function drain(o: AdmissionOrder): string[] {
  const ids: string[] = [];
  for (let j = o.next(); j !== undefined; j = o.next()) ids.push(j.id);
  return ids;
}

/** Every job the order yields, each admitted. */
function drainAdmitting(o: AdmissionOrder): string[] {
  const ids: string[] = [];
  for (let j = o.next(); j !== undefined; j = o.next()) {
    ids.push(j.id);
    o.admitted(j);
  }
  return ids;
}

describe("effectivePriority", () => {
  it("adds one step per agingSecondsPerStep waited", () => {
    // Prepare
    const waited = { priority: -5, queuedAt: secondsAgo(650) };

    // Act
    const aged = effectivePriority(waited, NOW, 300);

    // Assess
    expect(aged).toBe(-3);
  });

  it("never ages past the maximum priority", () => {
    expect(effectivePriority({ priority: 5, queuedAt: secondsAgo(86_400) }, NOW, 60)).toBe(10);
  });

  it("does not age with a step of 0, a wait in the future or an unreadable queuedAt", () => {
    expect(effectivePriority({ priority: 0, queuedAt: secondsAgo(86_400) }, NOW, 0)).toBe(0);
    expect(effectivePriority({ priority: 0, queuedAt: secondsAgo(-600) }, NOW, 60)).toBe(0);
    expect(effectivePriority({ priority: 0, queuedAt: "not a time" }, NOW, 60)).toBe(0);
  });
});

describe("AdmissionOrder: priority", () => {
  it("yields higher priorities first, earliest deadline first among equals, then FIFO by id", () => {
    // Prepare
    const jobs = [
      job("j1"),
      job("j2", { priority: 5 }),
      job("j3", { deadline: secondsAgo(-600) }),
      job("j4", { deadline: secondsAgo(-60) }),
      job("j0"),
      job("j5", { priority: -5 }),
    ];

    // Act
    const ids = drain(order(jobs));

    // Assess
    expect(ids).toEqual(["j2", "j4", "j3", "j0", "j1", "j5"]);
  });

  it("yields a job read twice once", () => {
    // Prepare
    const jobs = [job("j1"), job("j2"), job("j1")];

    // Act
    const ids = drain(order(jobs));

    // Assess
    expect(ids).toEqual(["j1", "j2"]);
  });

  it("bands by aged priority: a long-waiting low job goes before a fresh higher one", () => {
    // Prepare
    const jobs = [job("j2", { priority: 5 }), job("j1", { priority: -5, queuedAt: secondsAgo(3300) })];

    // Act
    const ids = drain(order(jobs, { agingSecondsPerStep: 300 }));

    // Assess: -5 + 11 steps is capped at 10, above 5
    expect(ids).toEqual(["j1", "j2"]);
  });
  it("ages a job exactly one step after it was queued, not a millisecond before", () => {
    // Prepare: j1 and j3 are normal, queued one step and one step less a millisecond ago
    const jobs = [
      job("j1", { queuedAt: secondsAgo(300) }),
      job("j2", { priority: 1 }),
      job("j3", { queuedAt: new Date(NOW.getTime() - 299_999).toISOString() }),
    ];

    // Act
    const ids = drain(order(jobs, { agingSecondsPerStep: 300 }));

    // Assess: j1 joins j2's band and goes first by id; j3 has not aged
    expect(ids).toEqual(["j1", "j2", "j3"]);
  });
});

describe("AdmissionOrder: fair-share", () => {
  it("lets the owner with the smallest dominant share go first", () => {
    // Prepare: alice holds half the GPUs, bob a quarter of the CPUs
    const usage = new Map<string, Resources>([
      ["alice", { cpu: 1, memoryMb: 1024, gpu: 4 }],
      ["bob", { cpu: 4, memoryMb: 1024, gpu: 0 }],
    ]);
    const jobs = [job("j1", { owner: "alice" }), job("j2", { owner: "bob" }), job("j3", { owner: "carol" })];

    // Act
    const ids = drain(order(jobs, { algorithm: "fair-share", usage }));

    // Assess: carol 0, bob 0.25, alice 0.5
    expect(ids).toEqual(["j3", "j2", "j1"]);
  });

  it("moves shares only on admission: an owner whose job is not admitted offers its next one", () => {
    // Prepare
    const jobs = [job("a1", { owner: "alice" }), job("a2", { owner: "alice" }), job("b1", { owner: "bob" })];
    const o = order(jobs, { algorithm: "fair-share" });

    // Act
    const first = o.next();
    const second = o.next();
    if (second) o.admitted(second);
    const third = o.next();

    // Assess: a1 not admitted, alice stays at 0 and ties break on her earlier id
    expect([first?.id, second?.id, third?.id]).toEqual(["a1", "a2", "b1"]);
  });

  it("alternates between owners as admissions raise their shares", () => {
    // Prepare
    const jobs = [
      job("a1", { owner: "alice" }),
      job("a2", { owner: "alice" }),
      job("a3", { owner: "alice" }),
      job("b1", { owner: "bob" }),
      job("b2", { owner: "bob" }),
    ];

    // Act
    const ids = drainAdmitting(order(jobs, { algorithm: "fair-share" }));

    // Assess
    expect(ids).toEqual(["a1", "b1", "a2", "b2", "a3"]);
  });

  it("divides shares by the owner's weight", () => {
    // Prepare: alice weighs 2, so she gets two jobs for bob's one
    const jobs = ["a1", "a2", "a3", "a4"]
      .map((id) => job(id, { owner: "alice" }))
      .concat(["b1", "b2"].map((id) => job(id, { owner: "bob" })));

    // Act
    const ids = drainAdmitting(order(jobs, { algorithm: "fair-share", weights: { alice: 2 } }));

    // Assess
    expect(ids).toEqual(["a1", "b1", "a2", "a3", "b2", "a4"]);
  });

  it("keeps bands above owners: a higher priority job goes first whatever its owner's share", () => {
    // Prepare
    const usage = new Map<string, Resources>([["alice", { cpu: 16, memoryMb: 0, gpu: 0 }]]);
    const jobs = [job("b1", { owner: "bob" }), job("a1", { owner: "alice", priority: 5 })];

    // Act
    const ids = drain(order(jobs, { algorithm: "fair-share", usage }));

    // Assess
    expect(ids).toEqual(["a1", "b1"]);
  });

  it("counts an admission of an owner other than the one yielded last", () => {
    // Prepare
    const jobs = [job("a1", { owner: "alice" }), job("a2", { owner: "alice" }), job("b1", { owner: "bob" })];
    const o = order(jobs, { algorithm: "fair-share" });

    // Act: alice's a1 is reported admitted only after bob's turn has been asked for
    const first = o.next();
    const second = o.next();
    if (first) o.admitted(first);
    const third = o.next();

    // Assess
    expect([first?.id, second?.id, third?.id]).toEqual(["a1", "a2", "b1"]);
  });
});

describe("AdmissionOrder: round-robin", () => {
  it("gives owners one admitted job per turn, in name order", () => {
    // Prepare
    const jobs = [
      job("a1", { owner: "alice" }),
      job("a2", { owner: "alice" }),
      job("a3", { owner: "alice" }),
      job("c1", { owner: "carol" }),
      job("b1", { owner: "bob" }),
    ];
    const o = order(jobs, { algorithm: "round-robin" });

    // Act
    const ids = drainAdmitting(o);

    // Assess
    expect(ids).toEqual(["a1", "b1", "c1", "a2", "a3"]);
    expect(o.lastOwner).toBe("alice");
  });

  it("continues the rotation after the owner admitted last", () => {
    // Prepare
    const jobs = [job("a1", { owner: "alice" }), job("b1", { owner: "bob" }), job("c1", { owner: "carol" })];

    // Act
    const ids = drainAdmitting(order(jobs, { algorithm: "round-robin", lastOwner: "bob" }));

    // Assess
    expect(ids).toEqual(["c1", "a1", "b1"]);
  });

  it("keeps the turn with an owner whose job was not admitted", () => {
    // Prepare
    const jobs = [job("a1", { owner: "alice" }), job("a2", { owner: "alice" }), job("b1", { owner: "bob" })];
    const o = order(jobs, { algorithm: "round-robin" });

    // Act
    const first = o.next();
    const second = o.next();
    if (second) o.admitted(second);
    const third = o.next();

    // Assess
    expect([first?.id, second?.id, third?.id]).toEqual(["a1", "a2", "b1"]);
    expect(o.lastOwner).toBe("alice");
  });

  it("reports the owner admitted last, not the one offered last", () => {
    // Prepare
    const o = order([job("a1", { owner: "alice" }), job("b1", { owner: "bob" })], {
      algorithm: "round-robin",
      lastOwner: "zed",
    });

    // Act
    const ids = drain(o);

    // Assess
    expect(ids).toEqual(["a1", "b1"]);
    expect(o.lastOwner).toBe("zed");
  });
});

function pass(capacity: Resources): AdmissionPass {
  const nodes: NodeState[] = [{ nodeId: "n1", pool: "p", capacity, used: { cpu: 0, memoryMb: 0, gpu: 0 } }];
  const pools: PoolConfig[] = [{ name: "p", labels: {}, nodes: 1, node: capacity }];
  return new AdmissionPass({ nodes, pools, now: NOW });
}

describe("decideInOrder", () => {
  it("offers jobs in the order's sequence and tells it what was admitted", () => {
    // Prepare: room for two of alice's three GPU jobs
    const gpuJob = { cpu: 1, memoryMb: 512, gpu: 4 };
    const jobs = [
      job("a1", { owner: "alice", resources: gpuJob }),
      job("a2", { owner: "alice", resources: gpuJob }),
      job("b1", { owner: "bob" }),
      job("a3", { owner: "alice", resources: gpuJob }),
    ];
    const o = order(jobs, { algorithm: "round-robin" });

    // Act
    const decision = decideInOrder(pass(CAPACITY), o);

    // Assess
    expect(decision.admit.map((a) => a.jobId)).toEqual(["a1", "b1", "a2"]);
    expect(decision.waiting.map((w) => w.jobId)).toEqual(["a3"]);
    expect(decision.held).toEqual([]);
    expect(o.lastOwner).toBe("alice");
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const shapeArb = fc.record({
  cpu: fc.integer({ min: 1, max: 8 }),
  memoryMb: fc.integer({ min: 1, max: 16 }).map((n) => n * 1024),
  gpu: fc.integer({ min: 0, max: 4 }),
});

/** Enough jobs of one shape for the owner to want the whole capacity: more than any fair share of it. */
function demand(owner: string, shape: Resources, capacity: Resources, idFrom: number): QueuedJob[] {
  const share = dominantShare(shape, capacity);
  const count = Math.ceil(1 / share) + 1;
  return Array.from({ length: count }, (_, i) =>
    job(`j${String(idFrom + i * 2).padStart(5, "0")}`, { owner, resources: shape }),
  );
}

/** Two owners' jobs interleaved by id, as the queue would hold them. */
function twoOwners(a: Resources, b: Resources): QueuedJob[] {
  return [...demand("alice", a, CAPACITY, 0), ...demand("bob", b, CAPACITY, 1)];
}

function sharesAfter(algorithm: Algorithm, jobs: readonly QueuedJob[], weights: Record<string, number> = {}) {
  const decision = decideInOrder(
    pass(CAPACITY),
    order(jobs, { algorithm, weights, usage: new Map(), capacity: CAPACITY }),
  );
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const used = new Map<string, { cpu: number; memoryMb: number; gpu: number; count: number }>();
  for (const a of decision.admit) {
    const j = byId.get(a.jobId);
    if (!j?.owner) continue;
    const u = used.get(j.owner) ?? { cpu: 0, memoryMb: 0, gpu: 0, count: 0 };
    u.cpu += j.resources.cpu;
    u.memoryMb += j.resources.memoryMb;
    u.gpu += j.resources.gpu;
    u.count++;
    used.set(j.owner, u);
  }
  const share = (owner: string) => {
    const u = used.get(owner);
    return u ? dominantShare(u, CAPACITY) : 0;
  };
  const count = (owner: string) => used.get(owner)?.count ?? 0;
  return { share, count };
}

/**
 * A fair-share pass over one node the size of the pool, job by job: alice's and bob's dominant
 * shares after each admission until the first job is turned away, at the end, and who had a job
 * turned away.
 */
function fairShareRun(jobs: readonly QueuedJob[], weights: Record<string, number>) {
  const admission = pass(CAPACITY);
  const o = order(jobs, { algorithm: "fair-share", weights });
  const used = new Map<string, Resources>([
    ["alice", { cpu: 0, memoryMb: 0, gpu: 0 }],
    ["bob", { cpu: 0, memoryMb: 0, gpu: 0 }],
  ]);
  const shares = (): [number, number] => [
    dominantShare(used.get("alice") ?? CAPACITY, CAPACITY),
    dominantShare(used.get("bob") ?? CAPACITY, CAPACITY),
  ];
  const untilFull: [number, number][] = [];
  const refused = new Set<string>();
  for (let j = o.next(); j !== undefined; j = o.next()) {
    if (admission.offer([j]).admit.length === 0) {
      refused.add(j.owner ?? "");
      continue;
    }
    o.admitted(j);
    const u = used.get(j.owner ?? "") ?? { cpu: 0, memoryMb: 0, gpu: 0 };
    used.set(j.owner ?? "", {
      cpu: u.cpu + j.resources.cpu,
      memoryMb: u.memoryMb + j.resources.memoryMb,
      gpu: u.gpu + j.resources.gpu,
    });
    if (refused.size === 0) untilFull.push(shares());
  }
  return { untilFull, final: shares(), refused };
}

describe("AdmissionOrder properties", () => {
  it("priority: never yields a lower effective priority before a higher one", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            priority: fc.integer({ min: -10, max: 10 }),
            waitedMs: fc.integer({ min: -60_000, max: 7_200_000 }),
            /** Timestamps without milliseconds do not compare as strings: the order must parse them. */
            secondsOnly: fc.boolean(),
            deadline: fc.option(fc.integer({ min: -600, max: 3600 })),
          }),
          { maxLength: 80 },
        ),
        fc.constantFrom(0, 1, 60, 300),
        fc.constantFrom<Algorithm>("priority", "fair-share", "round-robin"),
        (specs, step, algorithm) => {
          const jobs = specs.map((s, i) =>
            job(`j${String(i).padStart(3, "0")}`, {
              priority: s.priority,
              queuedAt: s.secondsOnly
                ? secondsAgo(Math.round(s.waitedMs / 1000)).replace(".000Z", "Z")
                : new Date(NOW.getTime() - s.waitedMs).toISOString(),
              deadline: s.deadline === null ? null : secondsAgo(-s.deadline),
              owner: `o${i % 3}`,
            }),
          );
          const o = order(jobs, { algorithm, agingSecondsPerStep: step });
          const yielded: QueuedJob[] = [];
          for (let j = o.next(); j !== undefined; j = o.next()) {
            yielded.push(j);
            if (yielded.length % 2 === 0) o.admitted(j);
          }
          expect(yielded.map((j) => j.id).sort()).toEqual(jobs.map((j) => j.id).sort());
          const effective = yielded.map((j) => effectivePriority(j, NOW, step));
          for (let i = 1; i < effective.length; i++) {
            expect(effective[i]).toBeLessThanOrEqual(effective[i - 1] ?? Number.POSITIVE_INFINITY);
          }
          if (algorithm !== "priority") return;
          // Within a band: earliest deadline first, then by id.
          for (let i = 1; i < yielded.length; i++) {
            const [a, b] = [yielded[i - 1], yielded[i]];
            if (!a || !b || effectivePriority(a, NOW, step) !== effectivePriority(b, NOW, step)) continue;
            const da = a.deadline ? Date.parse(a.deadline) : Number.POSITIVE_INFINITY;
            const db = b.deadline ? Date.parse(b.deadline) : Number.POSITIVE_INFINITY;
            expect(da < db || (da === db && a.id < b.id)).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("fair-share: two owners who both want more than half converge to equal dominant shares", () => {
    fc.assert(
      fc.property(shapeArb, shapeArb, (a, b) => {
        const oneJob = Math.max(dominantShare(a, CAPACITY), dominantShare(b, CAPACITY));
        const run = fairShareRun(twoOwners(a, b), {});
        // Until the pool first turns a job away, the shares stay within one job of each other.
        for (const [alice, bob] of run.untilFull) {
          expect(Math.abs(alice - bob)).toBeLessThanOrEqual(oneJob + 1e-9);
        }
        // After that only leftovers are handed out: a wider gap means the owner behind had a job
        // that no longer fit (its demand is blocked), never that it was passed over.
        const [alice, bob] = run.final;
        if (Math.abs(alice - bob) > oneJob + 1e-9) {
          expect(run.refused.has(alice < bob ? "alice" : "bob")).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("fair-share: weighted shares are proportional to the weights within one job", () => {
    fc.assert(
      fc.property(shapeArb, shapeArb, fc.integer({ min: 1, max: 4 }), (a, b, weight) => {
        const oneJob = Math.max(dominantShare(a, CAPACITY) / weight, dominantShare(b, CAPACITY));
        const run = fairShareRun(twoOwners(a, b), { alice: weight });
        for (const [alice, bob] of run.untilFull) {
          expect(Math.abs(alice / weight - bob)).toBeLessThanOrEqual(oneJob + 1e-9);
        }
        const [alice, bob] = run.final;
        if (Math.abs(alice / weight - bob) > oneJob + 1e-9) {
          expect(run.refused.has(alice / weight < bob ? "alice" : "bob")).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("round-robin: owners with equal-size jobs get admitted counts within one of each other", () => {
    fc.assert(
      fc.property(shapeArb, fc.string({ minLength: 1, maxLength: 3 }), (shape, lastOwner) => {
        const { count } = sharesAfter("round-robin", twoOwners(shape, shape));
        expect(count("alice") + count("bob")).toBeGreaterThan(0);
        expect(Math.abs(count("alice") - count("bob"))).toBeLessThanOrEqual(1);
        const o = order(twoOwners(shape, shape), { algorithm: "round-robin", lastOwner });
        const ids = drainAdmitting(o);
        expect(ids.length).toBe(twoOwners(shape, shape).length);
      }),
      { numRuns: 300 },
    );
  });

  it("aging: a job that has waited long enough goes before a stream of newly arrived higher-priority jobs", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -10, max: 9 }),
        fc.integer({ min: 1, max: 600 }),
        fc.integer({ min: 0, max: 3600 }),
        fc.array(fc.integer({ min: -10, max: 10 }), { minLength: 1, maxLength: 30 }),
        fc.constantFrom<Algorithm>("priority", "fair-share", "round-robin"),
        (priority, step, extra, arrivals, algorithm) => {
          // Waited long enough to reach the top: (10 - priority) steps, plus any extra.
          const waited = (10 - priority) * step + extra;
          const old = job("j0000", { priority, queuedAt: secondsAgo(waited), owner: "patient" });
          const fresh = arrivals.map((p, i) =>
            job(`j${String(i + 1).padStart(4, "0")}`, { priority: p, owner: `o${i % 4}` }),
          );
          const ids = drainAdmitting(
            order([...fresh, old], { algorithm, agingSecondsPerStep: step, lastOwner: "patient" }),
          );
          // Round-robin: within the first turn of each owner in the top band (the rotation
          // starts after "patient", so it waits for the others' first turns at most).
          const owners = new Set([...fresh, old].map((j) => j.owner)).size;
          const within = algorithm === "round-robin" ? owners : 1;
          expect(ids.indexOf("j0000")).toBeLessThan(within);
        },
      ),
      { numRuns: 300 },
    );
  });
});
