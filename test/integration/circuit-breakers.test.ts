import { beforeAll, describe, expect, inject, it } from "vitest";
import { CircuitBreakers, type ProbeJob } from "../../app/circuits";
import type { CircuitStateChange, JobStateChange } from "../../app/events";
import { claimProbe } from "../../core/circuit";
import { ConcurrentUpdateError } from "../../core/errors";
import { type Policy, policySchema } from "../../core/policy";
import { LOCAL_REGION } from "../../local/config";
import { createDocumentClient } from "../../store/dynamo";
import { PolicyRepository } from "../../store/policy";
import { ownTables, suffix, TestClock } from "../support/scheduling";

/**
 * The circuit breakers' use cases against DynamoDB Local (app/circuits.ts, store/circuits.ts):
 * counting with one conditional write, replays counted once, one probe claim of two racing, and a
 * probe that vanished (lost, cancelled, retried) releasing its slot instead of wedging the breaker.
 * The clock is the test's; events are recorded.
 */

const RULE = { failures: 5, windowSeconds: 60, openSeconds: 30 };

class RecordingCircuitEvents {
  readonly circuits: CircuitStateChange[] = [];
  async publish(_changes: readonly JobStateChange[]): Promise<void> {}
  async publishCircuitChanges(changes: readonly CircuitStateChange[]): Promise<void> {
    this.circuits.push(...changes);
  }
}

let policies: PolicyRepository;

beforeAll(async () => {
  const tables = await ownTables(`jobq-it-breakers-${suffix()}-`);
  policies = new PolicyRepository(
    createDocumentClient({ region: LOCAL_REGION, endpoint: inject("dynamoEndpoint") }),
    tables.policy,
  );
});

function breakers(policy: Policy, type = `t${suffix()}`) {
  const clock = new TestClock();
  const events = new RecordingCircuitEvents();
  const service = new CircuitBreakers({ clock: clock.read, policies, defaultPolicy: policy, events });
  return { clock, events, service, type };
}

const job = (id: string, type: string, circuitProbe?: string) => ({
  id,
  type,
  owner: "alice",
  ...(circuitProbe ? { circuitProbe } : {}),
});

/** Five failed attempts, one a second: the breaker of `type` opens. */
async function openBreaker(h: ReturnType<typeof breakers>): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await h.service.attemptEnded(job(`job_${i}`, h.type), 1, "failed", false);
    h.clock.advance(1);
  }
}

describe("circuit breakers in the Policy table", () => {
  it("writes nothing for a type without a breaker", async () => {
    const h = breakers(policySchema.parse({}));
    await h.service.attemptEnded(job("job_a", h.type), 1, "failed", false);
    expect(await h.service.repo.get(h.type)).toBeNull();
  });

  it("counts failed and timed-out attempts, not lost ones, and opens at the fifth with an event and a history record", async () => {
    const h = breakers(policySchema.parse({ circuitBreaker: RULE }));
    await h.service.attemptEnded(job("job_lost", h.type), 1, "lost", false);
    await h.service.attemptEnded(job("job_stop", h.type), 1, "failed", true);
    expect(await h.service.repo.get(h.type)).toBeNull();

    await openBreaker(h);
    const open = await h.service.repo.get(h.type);
    expect(open).toMatchObject({ phase: "open", version: 5 });
    expect(h.events.circuits).toMatchObject([
      { type: h.type, change: "opened", previousState: "closed", state: "open", jobId: "job_4" },
    ]);
    expect(h.events.circuits[0]?.halfOpensAt).toBe(open?.openUntil);
    const history = await h.service.repo.history(10, h.type);
    expect(history.map((t) => t.change)).toEqual(["opened"]);

    // A replay of a counted attempt (the step retried) writes nothing.
    await h.service.attemptEnded(job("job_4", h.type), 1, "failed", false);
    expect((await h.service.repo.get(h.type))?.version).toBe(5);
  });

  it("lets one of two passes that read the same breaker claim the probe", async () => {
    const h = breakers(policySchema.parse({ circuitBreaker: RULE }));
    await openBreaker(h);
    h.clock.advance(RULE.openSeconds);
    const read = await h.service.repo.get(h.type);
    if (!read) throw new Error("no breaker");
    const first = claimProbe(read, "job_p1", 1, h.clock.read());
    const second = claimProbe(read, "job_p2", 1, h.clock.read());
    if (!first || !second) throw new Error("no claim");
    await h.service.repo.save(first);
    await expect(h.service.repo.save(second)).rejects.toBeInstanceOf(ConcurrentUpdateError);
    expect(await h.service.repo.get(h.type)).toMatchObject({ phase: "probing", probeJobId: "job_p1" });
  });

  it("a lost probe releases its slot: half-open again, and another probe can be claimed", async () => {
    const h = breakers(policySchema.parse({ circuitBreaker: RULE }));
    await openBreaker(h);
    h.clock.advance(RULE.openSeconds);
    const read = await h.service.repo.get(h.type);
    const claim = read ? claimProbe(read, "job_p", 1, h.clock.read()) : null;
    if (!claim) throw new Error("no claim");
    await h.service.repo.save(claim);

    // Act
    await h.service.attemptEnded(job("job_p", h.type, h.type), 1, "lost", false);

    // Assess
    const released = await h.service.repo.get(h.type);
    expect(released).toMatchObject({ phase: "open", probeJobId: null });
    expect(released && claimProbe(released, "job_q", 1, h.clock.read())).not.toBeNull();
    const history = await h.service.repo.history(10, h.type);
    expect(history[0]).toMatchObject({ change: "probe_released", from: "half_open", to: "half_open" });
  });

  it("a probe's failure opens it again for openSeconds", async () => {
    const h = breakers(policySchema.parse({ circuitBreaker: RULE }));
    await openBreaker(h);
    h.clock.advance(RULE.openSeconds);
    const read = await h.service.repo.get(h.type);
    const claim = read ? claimProbe(read, "job_p", 1, h.clock.read()) : null;
    if (!claim) throw new Error("no claim");
    await h.service.repo.save(claim);
    await h.service.attemptEnded(job("job_p", h.type, h.type), 1, "timed_out", false);
    const reopened = await h.service.repo.get(h.type);
    expect(reopened).toMatchObject({ phase: "open", probeJobId: null });
    expect(reopened?.openUntil).toBe(
      new Date(h.clock.read().getTime() + RULE.openSeconds * 1000).toISOString(),
    );
    expect(h.events.circuits.map((c) => c.change)).toEqual(["opened", "opened"]);
  });

  it("a pass settles a probe that was cancelled (released) or completed unheard (closed)", async () => {
    const h = breakers(policySchema.parse({ circuitBreaker: RULE }));
    await openBreaker(h);
    h.clock.advance(RULE.openSeconds);
    const claimAs = async (jobId: string) => {
      const read = await h.service.repo.get(h.type);
      const claim = read ? claimProbe(read, jobId, 1, h.clock.read()) : null;
      if (!claim) throw new Error("no claim");
      await h.service.repo.save(claim);
    };
    const policy = await h.service.policy();
    const probeJob = (status: ProbeJob["status"]): ProbeJob => ({
      status,
      attempts: 1,
      updatedAt: h.clock.read().toISOString(),
      circuitProbe: h.type,
    });

    await claimAs("job_c");
    const afterCancel = await h.service.forPass(
      policy,
      async () => new Map([["job_c", probeJob("cancelled")]]),
    );
    expect(afterCancel?.get(h.type)).toMatchObject({ phase: "open", probeJobId: null });

    await claimAs("job_r");
    // Still running its probe attempt: left alone.
    const running = await h.service.forPass(policy, async () => new Map([["job_r", probeJob("running")]]));
    expect(running?.get(h.type)).toMatchObject({ phase: "probing", probeJobId: "job_r" });
    const afterDone = await h.service.forPass(
      policy,
      async () => new Map([["job_r", probeJob("completed")]]),
    );
    expect(afterDone?.get(h.type)).toMatchObject({ phase: "closed", failures: [] });
    expect(h.events.circuits.map((c) => c.change)).toEqual(["opened", "closed"]);
  });

  it("reads nothing in a pass when the policy configures no breaker", async () => {
    const h = breakers(policySchema.parse({}));
    expect(await h.service.forPass(await h.service.policy(), async () => new Map())).toBeNull();
  });
});
