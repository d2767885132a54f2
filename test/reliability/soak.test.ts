import { describe, expect, it } from "vitest";
import { runSoak } from "../../bench/soak-harness";

/**
 * The short soak (issue 12): ~500 jobs of the harness's mix through the local stack as `npm start`
 * runs it, with 2 worker SIGKILLs, 1 hard kill and restart on the same data, and 5 % of the AWS
 * SDK requests throttled. It asserts the invariants the harness checks, never a timing: the
 * figures are printed for a person to read. The long run is `npm run soak -- --jobs 10000 …`
 * (README, "Reliability").
 */

describe("soak", () => {
  it("keeps every invariant through worker kills, a hard restart and throttling", async () => {
    // Prepare / Act: the harness starts, loads, disturbs and stops a stack of its own
    const report = await runSoak({
      jobs: 500,
      workerKills: 2,
      restarts: 1,
      throttleRate: 0.05,
      inFlight: 16,
      seed: 12,
      drainTimeoutSeconds: 240,
      // A bound, not an assertion: a machine too slow for it gets a report of unfinished jobs.
      deadlineSeconds: 330,
      progress: (line) => console.log(line),
    });
    console.log(report.summary);

    // Assess: each invariant by name, so a failure says which one broke (its jobs are in the summary)
    expect(report.invariants.filter((i) => !i.ok).map((i) => `${i.name}: ${i.detail}`)).toEqual([]);
  }, 540_000);
});
