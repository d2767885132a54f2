import type { AttributeValue, DynamoDBRecord } from "aws-lambda";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type ProbeJob, probeSettlement } from "../../app/circuits";
import { decideAdmission, type NodeState, type QueuedJob } from "../../core/admission";
import {
  anyBreaker,
  breakerRule,
  type Circuit,
  type CircuitStep,
  circuitState,
  claimProbe,
  closedCircuit,
  keyFor,
  parseCircuitKey,
  probeSucceeded,
  recordFailure,
  releaseProbe,
  resetCircuit,
} from "../../core/circuit";
import { circuitGate } from "../../core/gates";
import { type CircuitBreakerPolicy, policySchema } from "../../core/policy";
import { completedProbeOf } from "../../store/job-stream";

const RULE: CircuitBreakerPolicy = { failures: 5, windowSeconds: 60, openSeconds: 30, scope: "type" };
const T0 = Date.parse("2026-12-06T12:00:00Z");
const at = (seconds: number): Date => new Date(T0 + seconds * 1000);

/** Applies a step that must change something. */
function must(step: CircuitStep | null): CircuitStep {
  if (!step) throw new Error("expected a step");
  return step;
}

function failures(
  circuit: Circuit,
  count: number,
  startSecond = 0,
  gap = 1,
): { circuit: Circuit; steps: CircuitStep[] } {
  let c = circuit;
  const steps: CircuitStep[] = [];
  for (let i = 0; i < count; i++) {
    const step = recordFailure(
      c,
      RULE,
      { jobId: `job_${i}`, attempt: 1, outcome: "failed" },
      at(startSecond + i * gap),
    );
    if (!step) continue;
    steps.push(step);
    c = step.next;
  }
  return { circuit: c, steps };
}

function opened(): Circuit {
  return failures(closedCircuit("render", at(0).toISOString()), 5).circuit;
}

describe("circuit breaker state machine", () => {
  it("opens on the fifth failure within the window, and only then", () => {
    // Prepare / Act
    const { circuit, steps } = failures(closedCircuit("render", at(0).toISOString()), 5);
    // Assess
    expect(steps.slice(0, 4).every((s) => s.transition === null)).toBe(true);
    expect(steps[4]?.transition).toMatchObject({
      change: "opened",
      from: "closed",
      to: "open",
      jobId: "job_4",
    });
    expect(circuit.phase).toBe("open");
    expect(circuit.openUntil).toBe(at(4 + 30).toISOString());
    expect(circuitState(circuit, at(10))).toBe("open");
    expect(circuitState(circuit, at(34))).toBe("half_open");
  });

  it("forgets failures older than the window", () => {
    // 5 failures 20 s apart: never 5 within 60 s.
    const { circuit } = failures(closedCircuit("render", at(0).toISOString()), 5, 0, 20);
    expect(circuit.phase).toBe("closed");
    expect(circuit.failures.length).toBe(3);
  });

  it("does not count a replayed failure twice", () => {
    const first = must(
      recordFailure(closedCircuit("render", ""), RULE, { jobId: "j", attempt: 1, outcome: "failed" }, at(0)),
    );
    expect(recordFailure(first.next, RULE, { jobId: "j", attempt: 1, outcome: "failed" }, at(1))).toBeNull();
    expect(
      recordFailure(first.next, RULE, { jobId: "j", attempt: 2, outcome: "timed_out" }, at(1)),
    ).not.toBeNull();
  });

  it("ignores other jobs' failures while open or half-open", () => {
    const open = opened();
    expect(recordFailure(open, RULE, { jobId: "late", attempt: 1, outcome: "failed" }, at(10))).toBeNull();
    const probing = must(claimProbe(open, "probe", 1, at(40))).next;
    expect(recordFailure(probing, RULE, { jobId: "late", attempt: 1, outcome: "failed" }, at(41))).toBeNull();
  });

  it("admits one probe after openSeconds; its success closes, its failure reopens", () => {
    const open = opened();
    expect(claimProbe(open, "probe", 1, at(10))).toBeNull();
    const claim = must(claimProbe(open, "probe", 1, at(40)));
    expect(claim.transition).toMatchObject({ change: "half_open", from: "half_open", to: "half_open" });
    // A second claim on the breaker as written fails: one probe at a time.
    expect(claimProbe(claim.next, "other", 1, at(40))).toBeNull();

    const closed = must(probeSucceeded(claim.next, "probe", at(45)));
    expect(closed.transition).toMatchObject({ change: "closed", to: "closed" });
    expect(closed.next.failures).toEqual([]);
    expect(probeSucceeded(claim.next, "other", at(45))).toBeNull();

    const reopened = must(
      recordFailure(claim.next, RULE, { jobId: "probe", attempt: 1, outcome: "timed_out" }, at(50)),
    );
    expect(reopened.transition).toMatchObject({ change: "opened", from: "half_open", to: "open" });
    expect(reopened.next.openUntil).toBe(at(80).toISOString());
  });

  it("releases a vanished probe: half-open again, ready for another", () => {
    const claim = must(claimProbe(opened(), "probe", 1, at(40)));
    const released = must(releaseProbe(claim.next, "probe", "was lost", at(41)));
    expect(released.transition).toMatchObject({
      change: "probe_released",
      from: "half_open",
      to: "half_open",
    });
    expect(circuitState(released.next, at(41))).toBe("half_open");
    expect(claimProbe(released.next, "next-probe", 1, at(42))).not.toBeNull();
    expect(releaseProbe(released.next, "probe", "again", at(43))).toBeNull();
  });

  it("reset closes whatever the state", () => {
    const step = resetCircuit(opened(), "admin", at(5));
    expect(step.next.phase).toBe("closed");
    expect(step.transition).toMatchObject({ change: "reset", from: "open", to: "closed", by: "admin" });
  });

  it("keeps at most `failures` timestamps, all within the window, and bumps the version by one per write", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 40 }), (gaps) => {
        let c = closedCircuit("t", "");
        let t = 0;
        let i = 0;
        for (const gap of gaps) {
          t += gap;
          const step = recordFailure(c, RULE, { jobId: `j${i++}`, attempt: 1, outcome: "failed" }, at(t));
          if (!step) continue;
          expect(step.next.version).toBe(c.version + 1);
          c = step.next;
          expect(c.failures.length).toBeLessThanOrEqual(RULE.failures);
          if (c.phase === "closed") {
            expect(c.failures.every((f) => f > T0 + t * 1000 - RULE.windowSeconds * 1000)).toBe(true);
            expect(c.failures.length).toBeLessThan(RULE.failures);
          }
        }
      }),
    );
  });

  it("opens exactly when some 5 failures fall within the window", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 12 }), (gaps) => {
        let c = closedCircuit("t", "");
        const times: number[] = [];
        let t = 0;
        let i = 0;
        let openedAfter = -1;
        for (const gap of gaps) {
          t += gap;
          times.push(t);
          const step = recordFailure(c, RULE, { jobId: `j${i}`, attempt: 1, outcome: "failed" }, at(t));
          if (step) c = step.next;
          if (step?.transition?.change === "opened" && openedAfter < 0) openedAfter = i;
          i++;
          if (c.phase !== "closed") break;
        }
        // Model: the first failure whose last 5 failures (itself included) span under 60 s.
        const expected = times.findIndex(
          (time, k) => k >= 4 && time - (times[k - 4] ?? Number.NEGATIVE_INFINITY) < RULE.windowSeconds,
        );
        expect(openedAfter).toBe(expected);
      }),
    );
  });
});

describe("breaker rules", () => {
  it("the type's own breaker wins over the policy's; none is off", () => {
    const policy = policySchema.parse({
      circuitBreaker: { failures: 3, windowSeconds: 60, openSeconds: 60 },
      types: {
        render: { circuitBreaker: { failures: 9, windowSeconds: 10, openSeconds: 5, scope: "type+owner" } },
      },
    });
    expect(breakerRule(policy, "render")?.failures).toBe(9);
    expect(breakerRule(policy, "echo")?.failures).toBe(3);
    expect(anyBreaker(policy)).toBe(true);
    expect(anyBreaker(policySchema.parse({}))).toBe(false);
    expect(breakerRule(policySchema.parse({}), "echo")).toBeNull();
  });

  it("keys by type, or by type and owner", () => {
    expect(keyFor(RULE, "render", "alice")).toBe("render");
    expect(keyFor({ ...RULE, scope: "type+owner" }, "render", "alice#x")).toBe("render#alice#x");
    expect(parseCircuitKey("render#alice#x")).toEqual({ type: "render", owner: "alice#x" });
  });
});

describe("circuitGate", () => {
  const node: NodeState = {
    nodeId: "n1",
    pool: "cpu",
    capacity: { cpu: 8, memoryMb: 8192, gpu: 0 },
    used: { cpu: 0, memoryMb: 0, gpu: 0 },
  };
  const pools = [{ name: "cpu", labels: {}, nodes: 1, node: node.capacity }];
  const job = (id: string, type: string, owner = "alice"): QueuedJob => ({
    id,
    priority: 0,
    resources: { cpu: 1, memoryMb: 128, gpu: 0 },
    pool: null,
    constraints: {},
    queuedAt: at(0).toISOString(),
    owner,
    type,
  });

  it("holds an open breaker's jobs with circuit_open and when it half-opens; other types run", () => {
    const open = opened();
    const gate = circuitGate(
      new Map([["render", open]]),
      (type) => (type === "render" ? RULE : null),
      at(10),
    );
    const decision = decideAdmission({
      nodes: [node],
      pools,
      now: at(10),
      gates: [gate],
      queued: [job("a", "render"), job("b", "echo"), job("c", "render")],
    });
    expect(decision.admit.map((a) => a.jobId)).toEqual(["b"]);
    const reasons = decision.waiting.filter((w) => w.code === "circuit_open");
    expect(reasons.map((w) => w.jobId)).toEqual(["a", "c"]);
    expect(reasons[0]?.reason).toContain(`half-opens at ${open.openUntil}`);
    expect(gate.probes().size).toBe(0);
  });

  it("lets exactly one job of a half-open breaker through, as its probe", () => {
    const gate = circuitGate(new Map([["render", opened()]]), () => RULE, at(40));
    const decision = decideAdmission({
      nodes: [node],
      pools,
      now: at(40),
      gates: [gate],
      queued: [job("a", "render"), job("b", "render"), job("c", "render")],
    });
    expect(decision.admit.map((a) => a.jobId)).toEqual(["a"]);
    expect([...gate.probes()]).toEqual([["a", "render"]]);
    expect(decision.waiting.find((w) => w.jobId === "b")?.reason).toContain("probe job a");
  });

  it("holds everyone while a probe is out", () => {
    const probing = must(claimProbe(opened(), "p", 1, at(40))).next;
    const gate = circuitGate(new Map([["render", probing]]), () => RULE, at(41));
    const decision = decideAdmission({
      nodes: [node],
      pools,
      now: at(41),
      gates: [gate],
      queued: [job("a", "render")],
    });
    expect(decision.admit).toEqual([]);
    expect(decision.waiting[0]?.code).toBe("circuit_open");
  });

  it("with scope type+owner holds only that owner's jobs", () => {
    const rule: CircuitBreakerPolicy = { ...RULE, scope: "type+owner" };
    const open = { ...opened(), key: "render#bob", owner: "bob" };
    const gate = circuitGate(new Map([["render#bob", open]]), () => rule, at(10));
    const decision = decideAdmission({
      nodes: [node],
      pools,
      now: at(10),
      gates: [gate],
      queued: [job("a", "render", "bob"), job("b", "render", "alice")],
    });
    expect(decision.admit.map((a) => a.jobId)).toEqual(["b"]);
  });
});

describe("a completed probe on the Jobs table's stream", () => {
  const image = (status: string, probe?: string): Record<string, AttributeValue> => ({
    pk: { S: "JOB#job_1" },
    sk: { S: "JOB" },
    id: { S: "job_1" },
    status: { S: status },
    ...(probe ? { circuitProbe: { S: probe } } : {}),
  });
  const change = (
    before: Record<string, AttributeValue>,
    after: Record<string, AttributeValue>,
  ): DynamoDBRecord => ({
    eventName: "MODIFY",
    dynamodb: { Keys: { pk: { S: "JOB#job_1" }, sk: { S: "JOB" } }, OldImage: before, NewImage: after },
  });

  it("names the probe's breaker when the job carrying the mark completes, and nothing otherwise", () => {
    expect(completedProbeOf(change(image("running", "render"), image("completed", "render")))).toEqual({
      jobId: "job_1",
      key: "render",
    });
    expect(completedProbeOf(change(image("running"), image("completed")))).toBeNull();
    expect(completedProbeOf(change(image("running", "render"), image("failed", "render")))).toBeNull();
  });
});

describe("settling a probe a pass finds out", () => {
  const probing = must(claimProbe(opened(), "p", 1, at(40))).next;
  const probeJob = (status: ProbeJob["status"], attempts = 1, updatedSecond = 41): ProbeJob => ({
    status,
    attempts,
    updatedAt: at(updatedSecond).toISOString(),
    circuitProbe: "render",
  });

  it("leaves a running probe, or one whose failure AttemptFailed is recording, alone", () => {
    for (const status of ["dispatched", "running", "retrying"] as const) {
      expect(probeSettlement(probing, probeJob(status), at(42))).toBeNull();
    }
    expect(probeSettlement(probing, probeJob("failed"), at(42))).toBeNull();
  });

  it("closes on a completed probe and releases a vanished one", () => {
    expect(probeSettlement(probing, probeJob("completed"), at(42))).toBe("completed");
    for (const status of ["cancelled", "paused", "queued"] as const) {
      expect(probeSettlement(probing, probeJob(status), at(42))).toContain(status);
    }
    expect(probeSettlement(probing, undefined, at(42))).toBe("no longer exists");
    expect(probeSettlement(probing, probeJob("queued", 2), at(42))).toContain(
      "not running its probe attempt",
    );
    // Failed long ago and its breaker never heard: released rather than wedged.
    expect(probeSettlement(probing, probeJob("failed", 1, 41), at(200))).toContain("failed");
  });
});
