import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decideAdmission, type NodeState, type NodeView, type QueuedJob } from "../../core/admission";
import {
  capOverflow,
  rateLimitGate,
  rateWindow,
  runningCapGate,
  runningCaps,
  typeConcurrencyGate,
  typeRunningLimits,
} from "../../core/gates";
import {
  BACKOFF_STRATEGIES,
  BUILT_IN_RETRY,
  BUILT_IN_TIMEOUT_SECONDS,
  type RetryPolicy,
} from "../../core/job";
import { policySchema, type TypeRules } from "../../core/policy";
import type { PoolConfig } from "../../core/pools";
import {
  BUILT_IN_SETTINGS,
  escalationFor,
  type GivenSettings,
  resolveJobSettings,
  typeRulesOf,
} from "../../core/type-rules";

/** Per-type rules (issue 13 items 2 and 3): defaults at submit, and the gates they add to a pass. */

const retryArb: fc.Arbitrary<RetryPolicy> = fc.record({
  maxAttempts: fc.integer({ min: 1, max: 100 }),
  strategy: fc.constantFrom(...BACKOFF_STRATEGIES),
  initialDelaySeconds: fc.integer({ min: 0, max: 100 }),
  backoffMultiplier: fc.integer({ min: 1, max: 10 }),
  maxDelaySeconds: fc.integer({ min: 0, max: 3600 }),
});
const escalationArb = fc.record({ escalateTo: fc.record({ type: fc.constantFrom("review", "big-model") }) });
const timeoutArb = fc.integer({ min: 1, max: 604_800 });

/** Each of the four fields present or left out, independently. */
const givenArb = fc.record(
  { retry: retryArb, timeoutSeconds: timeoutArb, onFailure: escalationArb, onTimeout: escalationArb },
  { requiredKeys: [] },
);
const rulesArb: fc.Arbitrary<TypeRules> = fc.record(
  { retry: retryArb, timeoutSeconds: timeoutArb, onFailure: escalationArb, onTimeout: escalationArb },
  { requiredKeys: [] },
);

describe("resolveJobSettings", () => {
  it("keeps every field the caller gave, takes the type's rule only for fields left out, the built-ins last", () => {
    fc.assert(
      fc.property(givenArb, fc.option(rulesArb, { nil: undefined }), (given, rules) => {
        // Act
        const job = resolveJobSettings({ type: "echo", ...given }, rules);

        // Assess
        expect(job.retry).toEqual(given.retry ?? rules?.retry ?? BUILT_IN_RETRY);
        expect(job.timeoutSeconds).toBe(
          given.timeoutSeconds ?? rules?.timeoutSeconds ?? BUILT_IN_TIMEOUT_SECONDS,
        );
        expect(job.onFailure).toEqual(given.onFailure ?? rules?.onFailure);
        expect(job.onTimeout).toEqual(given.onTimeout ?? rules?.onTimeout);
        expect(job.type).toBe("echo");
      }),
    );
  });

  it("takes a fallback's settings (an escalation job's inherited ones) over the built-ins", () => {
    // Prepare
    const inherited = { retry: { ...BUILT_IN_RETRY, maxAttempts: 7 }, timeoutSeconds: 42 };
    const review: { type: string } & GivenSettings = { type: "review" };

    // Act
    const bare = resolveJobSettings(review, undefined, inherited);
    const ruled = resolveJobSettings(review, { timeoutSeconds: 900 }, inherited);

    // Assess
    expect(bare).toEqual({ type: "review", ...inherited });
    expect(ruled).toEqual({ type: "review", retry: inherited.retry, timeoutSeconds: 900 });
  });

  it("leaves an escalation out when neither the caller nor the type names one", () => {
    const echo: { type: string } & GivenSettings = { type: "echo" };
    expect(resolveJobSettings(echo, {})).toEqual({ type: "echo", ...BUILT_IN_SETTINGS });
  });

  it("finds a type's rules by own key only", () => {
    const types = policySchema.parse({ types: { echo: { timeoutSeconds: 5 } } }).types;
    expect(typeRulesOf(types, "echo")).toEqual({ timeoutSeconds: 5 });
    expect(typeRulesOf(types, "constructor")).toBeUndefined();
  });
});

describe("escalationFor", () => {
  const onFailure = { escalateTo: { type: "review" } };
  const onTimeout = { escalateTo: { type: "big-model", priority: 5 } };

  it("uses onTimeout when the last attempt timed out, onFailure otherwise", () => {
    expect(escalationFor({ onFailure, onTimeout }, true)).toEqual(onTimeout.escalateTo);
    expect(escalationFor({ onFailure, onTimeout }, false)).toEqual(onFailure.escalateTo);
  });

  it("keeps onFailure for a timeout when there is no onTimeout, and nothing without either", () => {
    expect(escalationFor({ onFailure, onTimeout: null }, true)).toEqual(onFailure.escalateTo);
    expect(escalationFor({ onFailure: null, onTimeout }, false)).toBeNull();
    expect(escalationFor({ onFailure: null }, true)).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// Gates
// ---------------------------------------------------------------------------------------------

const NOW = new Date("2026-11-25T12:00:10Z");

function job(id: string, extra: Partial<QueuedJob> = {}): QueuedJob {
  return {
    id,
    priority: 0,
    resources: { cpu: 1, memoryMb: 512, gpu: 0 },
    pool: null,
    constraints: {},
    queuedAt: "2026-11-25T11:59:00Z",
    owner: "alice",
    type: "echo",
    ...extra,
  };
}

function nodeView(pool: string): NodeView {
  const size = { cpu: 4, memoryMb: 8192, gpu: 0 };
  return { nodeId: `${pool}-1`, pool, capacity: size, free: size };
}

describe("typeRunningLimits", () => {
  it("merges typeConcurrency and types[x].maxRunning: the smaller wins", () => {
    // Prepare
    const policy = policySchema.parse({
      typeConcurrency: { train: 4, echo: 1, render: 3 },
      types: {
        train: { maxRunning: 2 },
        echo: { maxRunning: 5 },
        scan: { maxRunning: 0 },
        other: { timeoutSeconds: 9 },
      },
    });

    // Act / Assess
    expect(typeRunningLimits(policy)).toEqual({ train: 2, echo: 1, render: 3, scan: 0 });
  });

  it("feeds the type_limit gate: types[x].maxRunning alone holds a type", () => {
    const gate = typeConcurrencyGate(
      typeRunningLimits(policySchema.parse({ types: { train: { maxRunning: 1 } } })),
      new Map([["train", 1]]),
    );
    expect(gate.check(job("a", { type: "train" }), NOW)?.code).toBe("type_limit");
    expect(gate.check(job("b", { type: "echo" }), NOW)).toBeNull();
  });
});

describe("runningCaps", () => {
  it("reads a number as the whole system's cap and an object as it says; none configured is null", () => {
    expect(runningCaps(undefined)).toBeNull();
    expect(runningCaps({ pools: {} })).toBeNull();
    expect(runningCaps(3)).toEqual({ total: 3, pools: {} });
    expect(runningCaps({ pools: { gpu: 4 } })).toEqual({ total: undefined, pools: { gpu: 4 } });
  });
});

describe("runningCapGate", () => {
  const poolsOf = () => ["cpu", "gpu"];

  it("holds every job once the system's cap is reached, counting the pass's placements", () => {
    // Prepare: 2 of 3 already dispatched or running.
    const gate = runningCapGate({ total: 3, pools: {} }, { total: 2, byPool: new Map() }, poolsOf);

    // Act
    const first = gate.check(job("a"), NOW);
    gate.admitted?.(job("a"), nodeView("cpu"));
    const second = gate.check(job("b"), NOW);

    // Assess
    expect(first).toBeNull();
    expect(second).toEqual({
      code: "running_cap",
      message: "the system's running cap is reached: 3 of 3 dispatched or running",
    });
  });

  it("holds a job for a pool's cap only when every pool it may run in is at its cap", () => {
    // Prepare: gpu is at its cap of 1; cpu has none.
    const gate = runningCapGate(
      { total: undefined, pools: { gpu: 1 } },
      { total: 1, byPool: new Map([["gpu", 1]]) },
      (j) => (j.resources.gpu > 0 ? ["gpu"] : ["cpu", "gpu"]),
    );

    // Act / Assess
    expect(gate.check(job("pinned", { pool: "gpu" }), NOW)).toEqual({
      code: "running_cap",
      message: "pool gpu's running cap is reached: 1 of 1 dispatched or running",
    });
    expect(gate.check(job("gpu-only", { resources: { cpu: 1, memoryMb: 512, gpu: 1 } }), NOW)?.code).toBe(
      "running_cap",
    );
    expect(gate.check(job("anywhere"), NOW)).toBeNull();
  });

  it("lets admission place jobs up to the cap and no further (decideAdmission with the gate)", () => {
    // Prepare: room for 8 jobs, a system cap of 3, 1 already running.
    const nodes: NodeState[] = [
      {
        nodeId: "n1",
        pool: "cpu",
        capacity: { cpu: 8, memoryMb: 8192, gpu: 0 },
        used: { cpu: 0, memoryMb: 0, gpu: 0 },
      },
    ];
    const pools: PoolConfig[] = [
      { name: "cpu", labels: {}, nodes: 1, node: nodes[0]?.capacity ?? { cpu: 8, memoryMb: 8192, gpu: 0 } },
    ];
    const gate = runningCapGate({ total: 3, pools: {} }, { total: 1, byPool: new Map([["cpu", 1]]) }, () => [
      "cpu",
    ]);

    // Act
    const decision = decideAdmission({
      queued: ["a", "b", "c", "d"].map((id) => job(id)),
      nodes,
      pools,
      now: NOW,
      gates: [gate],
    });

    // Assess
    expect(decision.admit.map((a) => a.jobId)).toEqual(["a", "b"]);
    expect(decision.waiting.map((w) => [w.jobId, w.code])).toEqual([
      ["c", "running_cap"],
      ["d", "running_cap"],
    ]);
  });
});

describe("capOverflow", () => {
  it("keeps a pool's placements up to its cap and holds the rest with running_cap", () => {
    const caps = { total: undefined, pools: { gpu: 3 } };
    expect(capOverflow(caps, "gpu", 1, ["a", "b", "c"])).toEqual({
      keep: ["a", "b"],
      held: ["c"],
      reason: {
        code: "running_cap",
        message: "pool gpu's running cap is reached: 3 of 3 dispatched or running",
      },
    });
    expect(capOverflow(caps, "cpu", 10, ["a"])).toEqual({ keep: ["a"], held: [], reason: null });
    expect(capOverflow(null, "gpu", 10, ["a"])).toEqual({ keep: ["a"], held: [], reason: null });
  });
});

describe("rateWindow", () => {
  it("is aligned to epoch multiples of perSeconds and contains now", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 86_400 }),
        fc.integer({ min: 0, max: 4_102_444_800_000 }),
        (per, ms) => {
          const now = new Date(ms);
          const { start, end } = rateWindow({ starts: 1, perSeconds: per }, now);
          expect(start.getTime() % (per * 1000)).toBe(0);
          expect(end.getTime() - start.getTime()).toBe(per * 1000);
          expect(start.getTime()).toBeLessThanOrEqual(ms);
          expect(end.getTime()).toBeGreaterThan(ms);
        },
      ),
    );
  });
});

describe("rateLimitGate", () => {
  it("lets `starts` jobs of a type through per window, counting those started already, and says when the next may start", () => {
    // Prepare: 2 per minute, 1 started in this minute.
    const gate = rateLimitGate({ scan: { starts: 2, perSeconds: 60 } }, new Map([["scan", 1]]));
    const scan = (id: string) => job(id, { type: "scan" });

    // Act
    const first = gate.check(scan("a"), NOW);
    gate.admitted?.(scan("a"), nodeView("cpu"));
    const second = gate.check(scan("b"), NOW);
    const otherType = gate.check(job("c"), NOW);

    // Assess
    expect(first).toBeNull();
    expect(second).toEqual({
      code: "rate_limit",
      message: "type scan started 2 of 2 jobs allowed per 60 s; next start at 2026-11-25T12:01:00.000Z",
    });
    expect(otherType).toBeNull();
  });

  it("never admits more than `starts` of a type in one pass, whatever the queue", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 0, max: 10 }),
        fc.integer({ min: 0, max: 30 }),
        (starts, before, queued) => {
          const gate = rateLimitGate({ scan: { starts, perSeconds: 10 } }, new Map([["scan", before]]));
          const nodes: NodeState[] = [
            {
              nodeId: "n1",
              pool: "cpu",
              capacity: { cpu: 64, memoryMb: 65536, gpu: 0 },
              used: { cpu: 0, memoryMb: 0, gpu: 0 },
            },
          ];
          const pools: PoolConfig[] = [
            { name: "cpu", labels: {}, nodes: 1, node: { cpu: 64, memoryMb: 65536, gpu: 0 } },
          ];
          const decision = decideAdmission({
            queued: Array.from({ length: queued }, (_, i) => job(`j${i}`, { type: "scan" })),
            nodes,
            pools,
            now: NOW,
            gates: [gate],
          });
          expect(decision.admit.length).toBe(Math.min(queued, Math.max(0, starts - before)));
        },
      ),
    );
  });
});
