import { describe, expect, it } from "vitest";
import {
  arraySummary,
  type CostOfJob,
  circuitRows,
  costPairs,
  costRows,
  costSum,
  formatUsd,
  keyValues,
  stripAnsi,
} from "../../cli/format";
import { jobFromFlags } from "../../cli/program";
import { formatUsd as webUsd } from "../../web/src/format";

/**
 * The CLI's pure formatting of issue 13's additions: cost, array summaries, circuit breakers; and
 * the dashboard's amounts, which must read as the CLI's.
 */

const NOW = new Date("2026-12-06T10:00:00.000Z");

const COST: CostOfJob = {
  totalUsd: 0.0000412,
  requestsUsd: 0.0000312,
  computeUsd: 0.00001,
  breakdown: {
    stepFunctions: { transitions: 7, usd: 0.000175 },
    dynamodb: { writeUnits: 21.5, readUnits: 4, usd: 0.0000143 },
    sqs: { requests: 3, usd: 0.0000012 },
    lambda: { invocations: 4, gbSeconds: 0.1234567, usd: 0.0000021 },
    eventBridge: { entries: 0, usd: 0 },
    api: { requests: 1, usd: 0.0000035 },
    compute: { nodeSeconds: 2.5, share: 0.25, hourlyUsd: 0.04048, usd: 0.00001 },
  },
  priceTable: "2026-11 us-east-1",
};

describe("formatUsd", () => {
  it("keeps six decimals below a cent, four below a dollar, two above", () => {
    expect(formatUsd(0)).toBe("$0");
    expect(formatUsd(0.0000004)).toBe("<$0.000001");
    expect(formatUsd(0.0000412)).toBe("$0.000041");
    expect(formatUsd(0.1234)).toBe("$0.1234");
    expect(formatUsd(12.345)).toBe("$12.35");
    expect(formatUsd(null)).toBe("-");
  });
});

describe("a job's cost", () => {
  it("is its total, then one line per part of the breakdown with its units", () => {
    const text = keyValues(costPairs(COST));
    const lines = text.split("\n");
    expect(lines[0]).toMatch(
      /^cost: +\$0\.000041 \(requests \$0\.000031 · compute \$0\.000010; prices 2026-11 us-east-1\)$/,
    );
    expect(text).toContain("step functions: $0.000175 · 7 transitions");
    expect(text).toContain("dynamodb:");
    expect(text).toContain("$0.000014 · 21.5 WRU · 4 RRU");
    expect(text).toContain("0.123 GB-s");
    expect(text).toContain("eventbridge:");
    expect(text).toContain("$0 · 0 entries");
    expect(text).toContain("2.5 node-s × $0.0405/h × share 0.25");
    expect(lines).toHaveLength(8);
  });
});

describe("an array parent's summary", () => {
  it("says the size, the pending children and each status with children, by name", () => {
    expect(
      arraySummary(
        { size: 10, pending: 4, counts: { running: 1, completed: 6, queued: 3, failed: 0 } },
        false,
      ),
    ).toBe("10 children · 4 pending · 6 completed · 3 queued · 1 running");
    expect(arraySummary({ size: 3, pending: 3, counts: null }, false)).toBe("3 children · 3 pending");
  });
});

describe("circuit rows", () => {
  it("one row per breaker: type, owner, state, failures, when it half-opens, the probe", () => {
    const rows = circuitRows(
      [
        {
          type: "render",
          owner: null,
          state: "open",
          failures: 5,
          halfOpensAt: "2026-12-06T10:05:00.000Z",
          probeJobId: null,
          configured: true,
        },
        {
          type: "train",
          owner: "alice",
          state: "half_open",
          failures: 0,
          halfOpensAt: "2026-12-06T09:59:00.000Z",
          probeJobId: "job_1",
          configured: false,
        },
      ],
      NOW,
      false,
    );
    expect(rows[0]).toEqual(["render", "-", "open", "5", "2026-12-06T10:05:00.000Z (in 5m00s)", "-"]);
    expect(rows[1]).toEqual([
      "train",
      "alice",
      "half_open (not configured)",
      "0",
      "2026-12-06T09:59:00.000Z (1m00s ago)",
      "job_1",
    ]);
  });

  it("colours the state on a terminal", () => {
    const [row] = circuitRows(
      [
        {
          type: "t",
          owner: null,
          state: "open",
          failures: 5,
          halfOpensAt: null,
          probeJobId: null,
          configured: true,
        },
      ],
      NOW,
      true,
    );
    expect(row?.[2]).toContain("\u001b[31m");
    expect(stripAnsi(row?.[2] ?? "")).toBe("open");
  });
});

describe("cost sums", () => {
  it("by key, sorted, with today's and this week's sums; a key without a period's jobs shows -", () => {
    expect(costSum({ jobs: 1, totalUsd: 0.002 })).toBe("$0.002000 (1 job)");
    expect(
      costRows(
        { bob: { jobs: 2, totalUsd: 0.0001 } },
        { bob: { jobs: 3, totalUsd: 0.00015 }, alice: { jobs: 1, totalUsd: 0.5 } },
      ),
    ).toEqual([
      ["alice", "-", "$0.5000 (1 job)"],
      ["bob", "$0.000100 (2 jobs)", "$0.000150 (3 jobs)"],
    ]);
  });
});

describe("submit flags", () => {
  it("--array n sends array.size; --project the project", () => {
    expect(jobFromFlags("render", { array: 100, project: "vision" })).toEqual({
      type: "render",
      array: { size: 100 },
      project: "vision",
    });
    expect(jobFromFlags("render", {})).toEqual({ type: "render" });
  });
});

describe("the dashboard's amounts", () => {
  it("read as the CLI's, with a dash for none", () => {
    for (const usd of [0, 0.0000004, 0.0000412, 0.1234, 12.345]) expect(webUsd(usd)).toBe(formatUsd(usd));
    expect(webUsd(null)).toBe("—");
  });
});
