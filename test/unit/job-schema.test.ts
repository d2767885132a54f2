import { describe, expect, it } from "vitest";
import { ValidationError } from "../../core/errors";
import {
  listJobsQuerySchema,
  MAX_PAYLOAD_BYTES,
  submitBatchSchema,
  submitJobSchema,
  updateJobSchema,
} from "../../core/job";
import { resolveJobSettings } from "../../core/type-rules";
import { parseRequest } from "../../core/validation";

/** The ValidationError parseRequest throws, or undefined: lets a test assess its problems. */
function refusal(act: () => unknown): unknown {
  try {
    act();
  } catch (error) {
    return error;
  }
  return undefined;
}

function problemPaths(error: unknown): string[] {
  if (!(error instanceof ValidationError)) throw new Error(`expected a ValidationError, got ${error}`);
  return error.problems.map((problem) => problem.path);
}

describe("POST /jobs defaults", () => {
  it("applies every default of API.md to a body with only a type", () => {
    // Prepare
    const body = { type: "echo" };

    // Act: the schema, then (at submit) the settings no type rule gave: the built-ins.
    const job = resolveJobSettings(parseRequest(submitJobSchema, body), undefined);

    // Assess
    expect(job).toEqual({
      type: "echo",
      priority: 0,
      resources: { cpu: 1, memoryMb: 512, gpu: 0 },
      dependsOn: [],
      retry: {
        maxAttempts: 3,
        strategy: "exponential",
        initialDelaySeconds: 1,
        backoffMultiplier: 2,
        maxDelaySeconds: 3600,
      },
      timeoutSeconds: 3600,
      offPeakOnly: false,
    });
  });

  it("fills the fields left out of a partial resources and retry", () => {
    // Prepare
    const body = {
      type: "train-model",
      resources: { gpu: 2 },
      retry: { maxAttempts: 5, strategy: "linear" },
    };

    // Act
    const job = parseRequest(submitJobSchema, body);

    // Assess
    expect(job.resources).toEqual({ cpu: 1, memoryMb: 512, gpu: 2 });
    expect(job.retry).toEqual({
      maxAttempts: 5,
      strategy: "linear",
      initialDelaySeconds: 1,
      backoffMultiplier: 2,
      maxDelaySeconds: 3600,
    });
  });

  it("keeps every field a full body gives, normalizing timestamps to UTC", () => {
    // Prepare
    const body = {
      type: "train-model",
      name: "nightly fine-tune",
      payload: { epochs: 3 },
      priority: "high",
      resources: { cpu: 4, memoryMb: 16384, gpu: 1 },
      pool: "gpu",
      constraints: { zone: "a" },
      dependsOn: ["job_01"],
      retry: {
        maxAttempts: 1,
        strategy: "immediate",
        initialDelaySeconds: 0,
        backoffMultiplier: 1,
        maxDelaySeconds: 0,
      },
      timeoutSeconds: 60,
      runAt: "2026-11-22T23:00:00+01:00",
      deadline: "2026-11-23T06:00:00Z",
      offPeakOnly: true,
      onFailure: { escalateTo: { type: "big-model", priority: "critical" } },
      tags: { team: "vision" },
    };

    // Act
    const job = parseRequest(submitJobSchema, body);

    // Assess
    expect(job).toEqual({
      ...body,
      priority: 5,
      runAt: "2026-11-22T22:00:00.000Z",
      deadline: "2026-11-23T06:00:00.000Z",
      onFailure: { escalateTo: { type: "big-model", priority: 10 } },
    });
  });
});

describe("priority", () => {
  it.each([
    ["critical", 10],
    ["high", 5],
    ["normal", 0],
    ["low", -5],
    ["background", -10],
  ])("reads the name %s as %d", (name, value) => {
    // Prepare
    const body = { type: "echo", priority: name };

    // Act
    const job = parseRequest(submitJobSchema, body);

    // Assess
    expect(job.priority).toBe(value);
  });

  it.each(Array.from({ length: 21 }, (_, i) => i - 10))("accepts the integer %d", (priority) => {
    // Prepare
    const body = { type: "echo", priority };

    // Act
    const job = parseRequest(submitJobSchema, body);

    // Assess
    expect(job.priority).toBe(priority);
  });

  it.each([11, -11, 1.5, "urgent", "10", null, true])("refuses %o", (priority) => {
    // Prepare
    const body = { type: "echo", priority };

    // Act
    const error = refusal(() => parseRequest(submitJobSchema, body));

    // Assess
    expect(problemPaths(error)).toEqual(["priority"]);
  });

  it("is the only field PATCH /jobs/{id} takes, by name or number", () => {
    // Prepare / Act
    const byName = parseRequest(updateJobSchema, { priority: "low" });
    const refused = refusal(() => parseRequest(updateJobSchema, { priority: 1, type: "echo" }));

    // Assess
    expect(byName).toEqual({ priority: -5 });
    expect(problemPaths(refused)).toEqual([""]);
  });
});

describe("type", () => {
  it.each(["a", "0", "echo", "train-model", "big.model_v2-final", `a${"b".repeat(63)}`])(
    "accepts %s",
    (type) => {
      // Prepare
      const body = { type };

      // Act
      const job = parseRequest(submitJobSchema, body);

      // Assess
      expect(job.type).toBe(type);
    },
  );

  it.each(["", "Train", "-echo", ".echo", "_echo", "echo model", "echo/model", "écho", `a${"b".repeat(64)}`])(
    "refuses %o",
    (type) => {
      // Prepare
      const body = { type };

      // Act
      const error = refusal(() => parseRequest(submitJobSchema, body));

      // Assess
      expect(problemPaths(error)).toEqual(["type"]);
    },
  );

  it("is required", () => {
    // Prepare
    const body = { name: "no type" };

    // Act
    const error = refusal(() => parseRequest(submitJobSchema, body));

    // Assess
    expect(problemPaths(error)).toEqual(["type"]);
  });
});

describe("payload", () => {
  it("is optional", () => {
    // Prepare
    const body = { type: "echo" };

    // Act
    const job = parseRequest(submitJobSchema, body);

    // Assess
    expect(job).not.toHaveProperty("payload");
  });

  it("accepts a payload of exactly 256 KiB serialized", () => {
    // Prepare
    // The two quotes of the JSON string count too.
    const payload = "x".repeat(MAX_PAYLOAD_BYTES - 2);
    expect(Buffer.byteLength(JSON.stringify(payload))).toBe(262_144);

    // Act
    const job = parseRequest(submitJobSchema, { type: "echo", payload });

    // Assess
    expect(job.payload).toBe(payload);
  });

  it("refuses a payload one byte over 256 KiB serialized", () => {
    // Prepare
    const payload = "x".repeat(MAX_PAYLOAD_BYTES - 1);

    // Act
    const error = refusal(() => parseRequest(submitJobSchema, { type: "echo", payload }));

    // Assess
    expect(problemPaths(error)).toEqual(["payload"]);
    expect(error).toMatchObject({
      problems: [{ message: "payload is 262145 bytes serialized; the limit is 262144" }],
    });
  });

  it("counts UTF-8 bytes, not characters", () => {
    // Prepare
    // "é" is two bytes in UTF-8: 131 072 of them plus the quotes is 262 146 bytes.
    const atLimit = { type: "echo", payload: "é".repeat(131_071) };
    const overLimit = { type: "echo", payload: "é".repeat(131_072) };

    // Act
    const accepted = parseRequest(submitJobSchema, atLimit);
    const error = refusal(() => parseRequest(submitJobSchema, overLimit));

    // Assess
    expect(accepted.payload).toBe(atLimit.payload);
    expect(problemPaths(error)).toEqual(["payload"]);
  });
});

describe("limits", () => {
  it.each([1, 604_800])("accepts timeoutSeconds %d", (timeoutSeconds) => {
    // Prepare
    const body = { type: "echo", timeoutSeconds };

    // Act
    const job = parseRequest(submitJobSchema, body);

    // Assess
    expect(job.timeoutSeconds).toBe(timeoutSeconds);
  });

  it.each([0, 604_801, 1.5, -1])("refuses timeoutSeconds %d", (timeoutSeconds) => {
    // Prepare
    const body = { type: "echo", timeoutSeconds };

    // Act
    const error = refusal(() => parseRequest(submitJobSchema, body));

    // Assess
    expect(problemPaths(error)).toEqual(["timeoutSeconds"]);
  });

  it("accepts 1000 dependencies and refuses 1001", () => {
    // Prepare
    const ids = (n: number) => Array.from({ length: n }, (_, i) => `job_${i}`);

    // Act
    const accepted = parseRequest(submitJobSchema, { type: "echo", dependsOn: ids(1000) });
    const error = refusal(() => parseRequest(submitJobSchema, { type: "echo", dependsOn: ids(1001) }));

    // Assess
    expect(accepted.dependsOn).toHaveLength(1000);
    expect(problemPaths(error)).toEqual(["dependsOn"]);
  });

  it("refuses an unknown top-level field", () => {
    // Prepare
    const body = { type: "echo", colour: "red" };

    // Act
    const error = refusal(() => parseRequest(submitJobSchema, body));

    // Assess
    expect(error).toMatchObject({ problems: [{ path: "", message: 'Unrecognized key: "colour"' }] });
  });

  it("refuses an unknown nested field", () => {
    // Prepare
    const body = { type: "echo", resources: { gpus: 1 } };

    // Act
    const error = refusal(() => parseRequest(submitJobSchema, body));

    // Assess
    expect(problemPaths(error)).toEqual(["resources"]);
  });

  it("refuses a timestamp that is not a real date", () => {
    // Prepare
    const body = { type: "echo", runAt: "2026-02-30T00:00:00Z", deadline: "tomorrow" };

    // Act
    const error = refusal(() => parseRequest(submitJobSchema, body));

    // Assess
    expect(problemPaths(error)).toEqual(["runAt", "deadline"]);
  });
});

describe("ValidationError", () => {
  it("lists all three problems of a body with three, with dotted paths", () => {
    // Prepare
    const body = { type: "Bad Type", priority: 11, retry: { maxAttempts: 0 } };

    // Act
    const error = refusal(() => parseRequest(submitJobSchema, body));

    // Assess
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: "validation_failed", message: "invalid request: 3 problems" });
    expect(problemPaths(error).sort()).toEqual(["priority", "retry.maxAttempts", "type"]);
  });

  it("says which field it is when there is only one problem", () => {
    // Prepare
    const body = { type: "echo", retry: { strategy: "random" } };

    // Act
    const error = refusal(() => parseRequest(submitJobSchema, body));

    // Assess
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ message: expect.stringMatching(/^invalid request: retry\.strategy: /) });
  });
});

describe("POST /jobs/batch", () => {
  const job = (ref: string) => ({ ref, type: "echo" });

  it("accepts 1 and 500 jobs", () => {
    // Prepare
    const one = { jobs: [job("a")] };
    const fiveHundred = { jobs: Array.from({ length: 500 }, (_, i) => job(`j${i}`)) };

    // Act
    const parsedOne = parseRequest(submitBatchSchema, one);
    const parsedMany = parseRequest(submitBatchSchema, fiveHundred);

    // Assess
    expect(parsedOne.jobs[0]).toMatchObject({ ref: "a", priority: 0, dependsOn: [] });
    expect(parsedMany.jobs).toHaveLength(500);
  });

  it.each([0, 501])("refuses %d jobs", (count) => {
    // Prepare
    const body = { jobs: Array.from({ length: count }, (_, i) => job(`j${i}`)) };

    // Act
    const error = refusal(() => parseRequest(submitBatchSchema, body));

    // Assess
    expect(problemPaths(error)).toEqual(["jobs"]);
  });

  it("points at the job and field of each problem", () => {
    // Prepare
    const body = {
      jobs: [
        job("a"),
        { ref: "b", type: "echo", retry: { maxAttempts: 0 } },
        { ref: "bad ref!", type: "echo" },
      ],
    };

    // Act
    const error = refusal(() => parseRequest(submitBatchSchema, body));

    // Assess
    expect(problemPaths(error)).toEqual(["jobs.1.retry.maxAttempts", "jobs.2.ref"]);
  });
});

describe("GET /jobs query", () => {
  it("defaults limit to 50 and needs nothing else", () => {
    // Prepare / Act
    const query = parseRequest(listJobsQuerySchema, {});

    // Assess
    expect(query).toEqual({ limit: 50 });
  });

  it("splits comma-separated statuses", () => {
    // Prepare
    const raw = { status: "queued,failed" };

    // Act
    const query = parseRequest(listJobsQuerySchema, raw);

    // Assess
    expect(query.status).toEqual(["queued", "failed"]);
  });

  it.each(["queued,bogus", "", ","])("refuses the status filter %o", (status) => {
    // Prepare
    const raw = { status };

    // Act
    const error = refusal(() => parseRequest(listJobsQuerySchema, raw));

    // Assess
    expect(problemPaths(error)[0]).toMatch(/^status/);
  });

  it.each([
    ["team:vision", { key: "team", value: "vision" }],
    ["url:https://x", { key: "url", value: "https://x" }],
    ["team:", { key: "team", value: "" }],
  ])("reads tag=%s as key and value", (tag, expected) => {
    // Prepare
    const raw = { tag };

    // Act
    const query = parseRequest(listJobsQuerySchema, raw);

    // Assess
    expect(query.tag).toEqual(expected);
  });

  it.each(["vision", ":vision"])("refuses tag=%s", (tag) => {
    // Prepare
    const raw = { tag };

    // Act
    const error = refusal(() => parseRequest(listJobsQuerySchema, raw));

    // Assess
    expect(problemPaths(error)).toEqual(["tag"]);
  });

  it.each([
    ["critical", 10],
    ["high", 5],
    ["normal", 0],
    ["low", -5],
    ["background", -10],
    ["7", 7],
    ["-10", -10],
  ])("reads priority=%s as %d", (priority, expected) => {
    // Prepare
    const raw = { priority };

    // Act
    const query = parseRequest(listJobsQuerySchema, raw);

    // Assess
    expect(query.priority).toBe(expected);
  });

  it.each(["11", "-11", "1.5", "urgent", "", " 5", "0x5", "1e0", "constructor", "toString"])(
    "refuses priority=%o",
    (priority) => {
      // Prepare
      const raw = { priority };

      // Act
      const error = refusal(() => parseRequest(listJobsQuerySchema, raw));

      // Assess
      expect(problemPaths(error)).toEqual(["priority"]);
    },
  );

  it.each([
    ["1", 1],
    ["200", 200],
    ["75", 75],
  ])("accepts limit=%s", (limit, expected) => {
    // Prepare
    const raw = { limit };

    // Act
    const query = parseRequest(listJobsQuerySchema, raw);

    // Assess
    expect(query.limit).toBe(expected);
  });

  it.each(["0", "201", "-1", "1.5", "abc"])("refuses limit=%s", (limit) => {
    // Prepare
    const raw = { limit };

    // Act
    const error = refusal(() => parseRequest(listJobsQuerySchema, raw));

    // Assess
    expect(problemPaths(error)).toEqual(["limit"]);
  });

  it("refuses an unknown filter", () => {
    // Prepare
    const raw = { colour: "red" };

    // Act
    const error = refusal(() => parseRequest(listJobsQuerySchema, raw));

    // Assess
    expect(problemPaths(error)).toEqual([""]);
  });
});
