import { describe, expect, it } from "vitest";
import { JobqApiError, JobqUnreachableError, type QuotaView } from "../../client/index";
import {
  describeError,
  fieldProblems,
  parseJsonObject,
  problemsAt,
  unclaimedProblems,
} from "../../web/src/errors";
import {
  formatQuotaAmount,
  parsePolicy,
  policyText,
  quotaForm,
  quotaLimits,
  quotaRows,
} from "../../web/src/views/admin-model";

function quota(used: QuotaView["used"], limits: Partial<QuotaView["limits"]> = {}): QuotaView {
  const full = {
    dailyGpuSeconds: null,
    weeklyGpuSeconds: null,
    maxQueuedJobs: null,
    maxPriority: null,
    ...limits,
  };
  const left = (u: number, l: number | null) => (l === null ? null : Math.max(0, l - u));
  return {
    principal: "alice",
    limits: full,
    used,
    remaining: {
      todayGpuSeconds: left(used.todayGpuSeconds, full.dailyGpuSeconds),
      weekGpuSeconds: left(used.weekGpuSeconds, full.weeklyGpuSeconds),
      queuedJobs: left(used.queuedJobs, full.maxQueuedJobs),
    },
    warning: false,
  };
}

describe("admin view: quotas", () => {
  it("warns at 80 % of a limit and not below; a limit reached is exceeded", () => {
    const rows = quotaRows(
      quota(
        { todayGpuSeconds: 2880, weekGpuSeconds: 15_999, queuedJobs: 10 },
        {
          dailyGpuSeconds: 3600,
          weeklyGpuSeconds: 20_000,
          maxQueuedJobs: 10,
        },
      ),
    );
    expect(rows.map((r) => [r.key, r.warning, r.exceeded])).toEqual([
      ["todayGpuSeconds", true, false],
      ["weekGpuSeconds", false, false],
      ["queuedJobs", true, true],
    ]);
  });

  it("has no share and no warning without a limit; a limit of 0 is wholly used", () => {
    const [today, , queued] = quotaRows(
      quota({ todayGpuSeconds: 99_999, weekGpuSeconds: 0, queuedJobs: 0 }, { maxQueuedJobs: 0 }),
    );
    expect(today).toMatchObject({ share: null, warning: false, exceeded: false });
    expect(queued).toMatchObject({ share: 1, warning: true, exceeded: true });
  });

  it("says usage against the limit", () => {
    const [today, week] = quotaRows(
      quota({ todayGpuSeconds: 1234.4, weekGpuSeconds: 5, queuedJobs: 0 }, { dailyGpuSeconds: 3600 }),
    );
    expect(formatQuotaAmount(today as NonNullable<typeof today>)).toBe("1,234 s of 3,600 s (34\u00a0%)");
    expect(formatQuotaAmount(week as NonNullable<typeof week>)).toBe("5 s (no limit)");
  });

  it("turns the limits form into PUT's body: empty is no limit, a priority may be a name", () => {
    const view = quota(
      { todayGpuSeconds: 0, weekGpuSeconds: 0, queuedJobs: 0 },
      { dailyGpuSeconds: 60, maxPriority: 5 },
    );
    expect(quotaForm(view)).toEqual({
      dailyGpuSeconds: "60",
      weeklyGpuSeconds: "",
      maxQueuedJobs: "",
      maxPriority: "5",
    });
    expect(
      quotaLimits({
        dailyGpuSeconds: " 60 ",
        weeklyGpuSeconds: "",
        maxQueuedJobs: "-1",
        maxPriority: "high",
      }),
    ).toEqual({
      ok: true,
      // -1 goes to the server, whose message is the one shown.
      limits: { dailyGpuSeconds: 60, weeklyGpuSeconds: null, maxQueuedJobs: -1, maxPriority: "high" },
    });
    expect(
      quotaLimits({ dailyGpuSeconds: "lots", weeklyGpuSeconds: "", maxQueuedJobs: "", maxPriority: "" }),
    ).toEqual({
      ok: false,
      problems: [{ path: "dailyGpuSeconds", message: "must be a number, or empty for no limit" }],
    });
  });
});

describe("admin view: policy", () => {
  it("edits the policy without the server's bookkeeping, which PUT would refuse", () => {
    const text = policyText({
      algorithm: "priority",
      offPeak: { start: "22:00", end: "08:00", timezone: "UTC" },
      preemption: { enabled: false, cooldownSeconds: 300 },
      typeConcurrency: {},
      agingSecondsPerStep: 300,
      types: {},
      weights: {},
      updatedAt: "2026-12-06T12:00:00.000Z",
      updatedBy: "ops",
    });
    const parsed = JSON.parse(text) as Record<string, unknown>;
    expect(parsed.updatedAt).toBeUndefined();
    expect(parsed.updatedBy).toBeUndefined();
    expect(parsed.algorithm).toBe("priority");
    expect(parsePolicy(text)).toEqual({ ok: true, policy: parsed });
    const broken = parsePolicy("{ algorithm: fair-share }");
    expect(broken.ok).toBe(false);
  });
});

describe("dashboard errors", () => {
  it("keeps the contract's code, status and field problems", () => {
    const error = new JobqApiError(
      400,
      "validation_failed",
      "invalid request: 2 problems",
      [
        { path: "cron", message: "is not a valid cron expression" },
        { path: "job.priority", message: "Invalid input" },
        "not a problem",
      ],
      undefined,
    );
    expect(describeError(error)).toEqual({
      code: "validation_failed",
      message: "invalid request: 2 problems",
      status: 400,
      problems: [
        { path: "cron", message: "is not a valid cron expression" },
        { path: "job.priority", message: "Invalid input" },
      ],
    });
    expect(
      describeError(new JobqApiError(403, "forbidden", "admins only", undefined, undefined)).problems,
    ).toEqual([]);
    expect(
      describeError(new JobqUnreachableError("http://127.0.0.1:1", { cause: new Error("ECONNREFUSED") }))
        .code,
    ).toBe("unreachable");
    expect(describeError("odd")).toMatchObject({ code: "client_error", message: "odd" });
  });

  it("gives each control its problems and keeps the rest", () => {
    const problems = fieldProblems([
      { path: "job", message: "a" },
      { path: "job.retry.maxAttempts", message: "b" },
      { path: "jobs", message: "c" },
      { path: "", message: "d" },
    ]);
    expect(problemsAt(problems, "job").map((p) => p.message)).toEqual(["a", "b"]);
    expect(unclaimedProblems(problems, ["job"]).map((p) => p.message)).toEqual(["c", "d"]);
  });

  it("checks a textarea's JSON is an object", () => {
    expect(parseJsonObject('{"a": 1}')).toEqual({ ok: true, value: { a: 1 } });
    expect(parseJsonObject("null")).toEqual({ ok: false, message: "must be a JSON object ({ … })" });
    expect(parseJsonObject("{").ok).toBe(false);
  });
});
