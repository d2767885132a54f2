import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api";
import { ERROR_STATUS, type ErrorBody, PrincipalPool, problemPaths, rawRequest } from "../support/jobs";

/**
 * Property tests of the submit routes: whatever arrives, the answer is never a 5xx, and every
 * refusal is the contract's `{error: {code, message}}` with a code of API.md's list answered
 * with that code's status. Runs are bounded (numRuns) so the tier stays fast.
 */

const people = new PrincipalPool("fuzz", 4);
let api: TestApi;
let fuzzer: { token: string };

beforeAll(async () => {
  api = await startTestApi(people.tokens());
  fuzzer = people.next();
});
afterAll(() => api?.close());

const RUNS = 150;

/** What every answer of a submit route must look like, whatever was sent. */
function assessAnswer(status: number, body: unknown, sent: unknown): void {
  const context = `sent ${truncate(JSON.stringify(sent))} → ${status} ${truncate(JSON.stringify(body))}`;
  expect(status, context).toBeLessThan(500);
  if (status >= 400) {
    const error = (body as Partial<ErrorBody> | null)?.error;
    expect(error, context).toBeTypeOf("object");
    expect(typeof error?.message, context).toBe("string");
    expect(Object.keys(ERROR_STATUS), context).toContain(error?.code);
    expect(ERROR_STATUS[error?.code ?? ""], context).toBe(status);
  } else {
    expect([200, 201], context).toContain(status);
  }
}

function truncate(text: string | undefined): string {
  const t = text ?? "undefined";
  return t.length > 400 ? `${t.slice(0, 400)}…` : t;
}

async function post(path: string, body: unknown): Promise<{ status: number; json: unknown }> {
  // A string body would go out as is: send every generated value as JSON.
  const response = await api.request("POST", path, {
    token: fuzzer.token,
    body: JSON.stringify(body) ?? "null",
    headers: { "content-type": "application/json" },
  });
  return { status: response.status, json: response.json };
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/** Numbers of every kind JSON can carry: beyond 2^53, near the double range's ends, subnormal. */
const anyNumber = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(
    2 ** 53 + 2,
    -(2 ** 53) - 2,
    1e21,
    1e126,
    -1e300,
    1.7976931348623157e308,
    5e-324,
    1e-131,
    -0,
  ),
);

/** Strings: printable, any code point, and ones with meaning to the API or to JavaScript. */
const anyString = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.string({ unit: "grapheme", maxLength: 10 }),
  fc.constantFrom(
    "",
    " ",
    "critical",
    "HIGH",
    "job_",
    "job_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "echo",
    "gpu",
    "__proto__",
    "constructor",
    "\u0000",
    "\ud800",
    "2026-02-30T00:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "0000-01-01T00:00:00Z",
    "𝕁𝕠𝕓",
  ),
);

/** Object keys, including the empty key and the names of Object.prototype's members. */
const anyKey = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "binary", maxLength: 10 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "",
      "__proto__",
      "constructor",
      "toString",
      "hasOwnProperty",
      "type",
      "payload",
    ),
  },
);

/** Any JSON value, with every number and key above, nested a few levels. */
const anyJson: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    anyNumber,
    anyString,
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(anyKey, tie("value"), { maxKeys: 4 }),
  ),
})).value;

/** `value` wrapped in `depth` levels of objects or arrays. */
const nested = fc
  .tuple(anyJson, fc.integer({ min: 1, max: 60 }), fc.boolean())
  .map(([value, depth, asArray]) => {
    let out: unknown = value;
    for (let i = 0; i < depth; i++) out = asArray ? [out] : { v: out };
    return out;
  });

/**
 * JSON a DynamoDB item can hold as it is: numbers within ±(2^53 − 1), not below 1e-100, keys that
 * are not empty and not Object.prototype's, a few levels deep. Used where the property is about
 * validation, not storage; the payload properties below use anyJson.
 */
const storableJson: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", maxDepth: 4 },
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -(2 ** 53 - 1), max: 2 ** 53 - 1 }),
    fc
      .double({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, noNaN: true })
      .filter((x) => x === 0 || Math.abs(x) > 1e-100),
    fc.string({ unit: "grapheme", maxLength: 12 }),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(
      fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !(k in Object.prototype) && k !== "__proto__"),
      tie("value"),
      { maxKeys: 4, noNullPrototype: true },
    ),
  ),
})).value;

const labelKey = fc
  .string({ unit: "grapheme", minLength: 1, maxLength: 12 })
  .filter((k) => !(k in Object.prototype) && k !== "__proto__");

const isoDate = fc
  .date({ min: new Date("2000-01-01T00:00:00Z"), max: new Date("2100-01-01T00:00:00Z"), noInvalidDate: true })
  .map((d) => d.toISOString());

/** A body POST /jobs accepts. */
const validJob = fc.record(
  {
    type: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,15}$/),
    name: fc.string({ unit: "grapheme", minLength: 1, maxLength: 30 }),
    payload: storableJson,
    priority: fc.oneof(
      fc.constantFrom("critical", "high", "normal", "low", "background"),
      fc.integer({ min: -10, max: 10 }),
    ),
    resources: fc.record(
      {
        cpu: fc.constantFrom(0.25, 0.5, 1, 2),
        memoryMb: fc.integer({ min: 1, max: 4096 }),
        gpu: fc.constant(0),
      },
      { requiredKeys: [] },
    ),
    pool: fc.constantFrom("cpu", "gpu"),
    retry: fc.record(
      {
        maxAttempts: fc.integer({ min: 1, max: 100 }),
        strategy: fc.constantFrom("exponential", "linear", "fibonacci", "immediate"),
        initialDelaySeconds: fc.integer({ min: 0, max: 600 }),
        backoffMultiplier: fc.integer({ min: 1, max: 10 }),
        maxDelaySeconds: fc.integer({ min: 0, max: 3600 }),
      },
      { requiredKeys: [] },
    ),
    timeoutSeconds: fc.integer({ min: 1, max: 604_800 }),
    runAt: isoDate,
    deadline: isoDate,
    offPeakOnly: fc.boolean(),
    tags: fc.dictionary(labelKey, fc.string({ maxLength: 20 }), { maxKeys: 3, noNullPrototype: true }),
  },
  { requiredKeys: ["type"] },
);

const JOB_FIELDS = [
  "type",
  "name",
  "payload",
  "priority",
  "resources",
  "pool",
  "constraints",
  "dependsOn",
  "retry",
  "timeoutSeconds",
  "runAt",
  "deadline",
  "offPeakOnly",
  "onFailure",
  "tags",
  "ref",
  "unknownField",
] as const;

/** anyJson without the keys that name Object.prototype's members (see the label-map property). */
const junkJson: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    anyNumber,
    anyString,
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(
      anyKey.filter((k) => !(k in Object.prototype) && k !== "__proto__"),
      tie("value"),
      { maxKeys: 4 },
    ),
  ),
})).value;

/**
 * Junk for one field: anything JSON, arrays where objects belong, objects where arrays belong,
 * odd priority strings, huge numbers. The payload field gets storable JSON (see storableJson).
 */
const junk = fc.oneof(
  junkJson,
  fc.array(storableJson, { maxLength: 3 }),
  fc.dictionary(labelKey, storableJson, { maxKeys: 3, noNullPrototype: true }),
  fc.constantFrom("Critical", " high", "normal ", "constructor", "__proto__", "10", "-11", "1e1", "0x5"),
  fc.constantFrom(1e308, -1e308, 2 ** 63, 1024.5, 4_194_305, -1, 0, 0.5),
  fc.array(fc.constantFrom("job_x", "job_01ARZ3NDEKTSV4RRFFQ69G5FAV", ""), { maxLength: 3 }),
);

interface Mutation {
  readonly field: (typeof JOB_FIELDS)[number];
  readonly value: unknown;
  /** What the payload field gets instead of `value`. */
  readonly payload: unknown;
  readonly drop: boolean;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  field: fc.constantFrom(...JOB_FIELDS),
  value: junk,
  payload: storableJson,
  drop: fc.boolean(),
});

function mutate(body: Record<string, unknown>, mutations: readonly Mutation[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...body };
  for (const { field, value, payload, drop } of mutations) {
    if (drop && field !== "unknownField") delete out[field];
    else out[field] = field === "payload" ? payload : value;
  }
  return out;
}

const mutatedJob = fc
  .tuple(validJob, fc.array(mutation, { minLength: 1, maxLength: 3 }))
  .map(([body, mutations]) => mutate(body, mutations));

/** A valid batch: refs r0..rn-1, each job depending on some of the others (cycles possible). */
const validBatch = fc
  .array(fc.tuple(validJob, fc.array(fc.nat(7), { maxLength: 3 })), { minLength: 1, maxLength: 6 })
  .map((entries) => ({
    jobs: entries.map(([job, deps], i) => {
      const dependsOn = [...new Set(deps.filter((d) => d < entries.length && d !== i).map((d) => `r${d}`))];
      return { ...job, ref: `r${i}`, ...(dependsOn.length ? { dependsOn } : {}) };
    }),
  }));

const mutatedBatch = fc
  .tuple(
    validBatch,
    fc.array(fc.tuple(fc.nat(5), fc.array(mutation, { minLength: 1, maxLength: 2 })), { maxLength: 3 }),
  )
  .map(([batch, edits]) => {
    const jobs = [...batch.jobs] as Record<string, unknown>[];
    for (const [index, mutations] of edits) {
      const job = jobs[index % jobs.length];
      if (job) jobs[index % jobs.length] = mutate(job, mutations);
    }
    return { jobs };
  });

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

describe("POST /jobs under fuzzing", () => {
  it("answers any JSON value as the body without a 5xx, refusing it in the contract's shape", async () => {
    await fc.assert(
      fc.asyncProperty(anyJson, async (body) => {
        const { status, json } = await post("/jobs", body);
        assessAnswer(status, json, body);
      }),
      { numRuns: RUNS },
    );
  });

  it("answers mutated valid bodies (wrong types, huge numbers, junk, unknown fields) without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(mutatedJob, async (body) => {
        const { status, json } = await post("/jobs", body);
        assessAnswer(status, json, body);
      }),
      { numRuns: RUNS },
    );
  });

  it("accepts every valid body with 201 and a job_ id", async () => {
    await fc.assert(
      fc.asyncProperty(validJob, async (body) => {
        const { status, json } = await post("/jobs", body);
        const context = `sent ${truncate(JSON.stringify(body))} → ${status} ${truncate(JSON.stringify(json))}`;
        expect(status, context).toBe(201);
        expect((json as { id: string }).id, context).toMatch(/^job_/);
        // As JSON carries it: -0 arrives as 0
        expect((json as { payload: unknown }).payload, context).toEqual(
          JSON.parse(JSON.stringify(body.payload ?? null)),
        );
      }),
      { numRuns: 60 },
    );
  });

  it("refuses any priority string other than the five names with 400 naming priority", async () => {
    const names = new Set(["critical", "high", "normal", "low", "background"]);
    const oddPriority = fc
      .oneof(
        anyString,
        fc.constantFrom(
          "Critical",
          "HIGH",
          " high",
          "high ",
          "constructor",
          "__proto__",
          "toString",
          "5",
          "valueOf",
        ),
      )
      .filter((p) => !names.has(p));
    await fc.assert(
      fc.asyncProperty(oddPriority, async (priority) => {
        const response = await api.request<ErrorBody>("POST", "/jobs", {
          token: fuzzer.token,
          body: { type: "echo", priority },
        });
        expect(response.status, `priority ${JSON.stringify(priority)}`).toBe(400);
        expect(response.json.error.code).toBe("validation_failed");
        expect(problemPaths(response.json)).toContain("priority");
      }),
      { numRuns: 100 },
    );
  });

  it("answers raw non-JSON bytes with a 4xx in the contract's shape", async () => {
    const prefixes = fc.constantFrom(
      "",
      "{",
      '{"type":"echo","payload":',
      '{"type":"echo"',
      "[",
      '"',
      "\ufeff",
    );
    await fc.assert(
      fc.asyncProperty(prefixes, fc.uint8Array({ maxLength: 200 }), async (prefix, bytes) => {
        const body = Buffer.concat([Buffer.from(prefix, "utf8"), Buffer.from(bytes)]);
        const response = await rawRequest(api, "POST", "/jobs", body, fuzzer.token);
        expect(
          response.json,
          `raw ${body.toString("hex")} → ${response.status} ${response.text}`,
        ).toBeDefined();
        assessAnswer(response.status, response.json, body.toString("hex"));
        expect(response.status).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: RUNS },
    );
  });

  /*
   * The two properties below generate payloads and label maps without the restrictions of
   * storableJson and labelKey: numbers beyond 2^53 or DynamoDB's range, nesting deeper than
   * DynamoDB's 32 levels, the empty key and Object.prototype's names. API.md accepts any JSON
   * payload of at most 256 KiB and any string map as tags, and bad input never yields a 500.
   */
  it("stores any JSON payload, or refuses it with a 4xx, never a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyJson, nested), async (payload) => {
        const body = { type: "echo", payload };
        const { status, json } = await post("/jobs", body);
        assessAnswer(status, json, body);
      }),
      { numRuns: RUNS },
    );
  });

  it("stores any string map as tags, or refuses it with a 4xx, never a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.dictionary(anyKey, anyString, { maxKeys: 4 }), async (tags) => {
        const body = { type: "echo", tags };
        const { status, json } = await post("/jobs", body);
        assessAnswer(status, json, body);
      }),
      { numRuns: RUNS },
    );
  });
});

describe("POST /jobs/batch under fuzzing", () => {
  it("answers any JSON value as the body, or as its jobs list, without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          anyJson,
          anyJson.map((jobs) => ({ jobs })),
        ),
        async (body) => {
          const { status, json } = await post("/jobs/batch", body);
          assessAnswer(status, json, body);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("answers valid and mutated batches without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(validBatch, mutatedBatch), async (body) => {
        const { status, json } = await post("/jobs/batch", body);
        assessAnswer(status, json, body);
        if (status === 201) {
          const result = json as { jobs: unknown[]; refs: Record<string, string> };
          expect(result.jobs).toHaveLength(body.jobs.length);
          expect(Object.keys(result.refs).length).toBeLessThanOrEqual(body.jobs.length);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("answers raw non-JSON bytes with a 4xx in the contract's shape", async () => {
    const prefixes = fc.constantFrom("", '{"jobs":[', '{"jobs":[{"type":"echo"},');
    await fc.assert(
      fc.asyncProperty(prefixes, fc.uint8Array({ maxLength: 200 }), async (prefix, bytes) => {
        const body = Buffer.concat([Buffer.from(prefix, "utf8"), Buffer.from(bytes)]);
        const response = await rawRequest(api, "POST", "/jobs/batch", body, fuzzer.token);
        assessAnswer(response.status, response.json, body.toString("hex"));
        expect(response.status).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: 100 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Retry, bulk actions, reordering
// ---------------------------------------------------------------------------------------------

async function send(
  method: string,
  path: string,
  body: unknown,
  token = fuzzer.token,
): Promise<{ status: number; json: unknown }> {
  const response = await api.request(method, path, {
    token,
    body: JSON.stringify(body) ?? "null",
    headers: { "content-type": "application/json" },
  });
  return { status: response.status, json: response.json };
}

/** GET /jobs's filter names with any value, and the strings they take. */
const filterValue = fc.oneof(
  anyJson,
  fc.constantFrom("failed", "cancelled,failed", "queued,", "high", "-11", "k:v", "2026-01-01T00:00:00Z"),
);
const anyFilter = fc.dictionary(
  fc.oneof(
    fc.constantFrom(
      "status",
      "type",
      "owner",
      "priority",
      "tag",
      "createdAfter",
      "createdBefore",
      "limit",
      "cursor",
    ),
    anyKey,
  ),
  filterValue,
  { maxKeys: 4 },
);
const bulkBody = fc.record(
  {
    filter: fc.oneof(anyFilter, anyJson),
    limit: fc.oneof(fc.integer({ min: -5, max: 300 }), anyJson),
    cursor: fc.oneof(anyString, fc.constantFrom("eyJpbmRleCI6ImJ5T3duZXIifQ", "bm90LWEtY3Vyc29y")),
    maxAttempts: fc.oneof(fc.integer({ min: -1, max: 101 }), anyJson),
    dependents: fc.oneof(fc.boolean(), anyJson),
  },
  { requiredKeys: [] },
);
const retryBody = fc.record(
  {
    maxAttempts: fc.oneof(fc.integer({ min: -1, max: 101 }), anyJson),
    dependents: fc.oneof(fc.boolean(), anyJson),
    deadline: fc.oneof(isoDate, anyString, anyJson),
  },
  { requiredKeys: [] },
);
const patchBody = fc.record(
  {
    priority: fc.oneof(fc.integer({ min: -12, max: 12 }), anyString, anyJson),
    before: fc.oneof(anyString, anyJson),
  },
  { requiredKeys: [] },
);

describe("retry, bulk and reorder routes under fuzzing", () => {
  let jobIds: string[] = [];

  beforeAll(async () => {
    // A queued job, a cancelled one and a blocked one to act on.
    const queued = await send("POST", "/jobs", { type: "echo" });
    const cancelled = await send("POST", "/jobs", { type: "echo" });
    const id = (r: { json: unknown }) => (r.json as { id: string }).id;
    await api.request("PATCH", `/jobs/${id(cancelled)}/cancel`, { token: fuzzer.token });
    const blocked = await send("POST", "/jobs", { type: "echo", dependsOn: [id(queued)] });
    jobIds = [id(queued), id(cancelled), id(blocked)];
  });

  it("answers any body to POST /jobs/{id}/retry without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(retryBody, anyJson), fc.nat({ max: 3 }), async (body, which) => {
        const id = jobIds[which] ?? "job_01ARZ3NDEKTSV4RRFFQ69G5FAV";
        const { status, json } = await send("POST", `/jobs/${id}/retry`, body);
        assessAnswer(status, json, body);
      }),
      { numRuns: RUNS },
    );
  });

  it("answers any body to POST /jobs/cancel and POST /jobs/retry without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(bulkBody, anyJson), fc.boolean(), async (body, cancel) => {
        const { status, json } = await send("POST", cancel ? "/jobs/cancel" : "/jobs/retry", body);
        assessAnswer(status, json, body);
      }),
      { numRuns: RUNS },
    );
  });

  it("answers any body to PATCH /jobs/{id}, a user's or an admin's, without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(patchBody, anyJson),
        fc.nat({ max: 3 }),
        fc.boolean(),
        async (body, which, admin) => {
          const id = jobIds[which] ?? "job_01ARZ3NDEKTSV4RRFFQ69G5FAV";
          const { status, json } = await send(
            "PATCH",
            `/jobs/${id}`,
            body,
            admin ? "admin-token" : fuzzer.token,
          );
          assessAnswer(status, json, body);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("answers any maxPriority to PUT /quotas/{principal} without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyNumber, anyString, anyJson), async (maxPriority) => {
        const body = { maxPriority };
        const { status, json } = await send("PUT", "/quotas/fuzz-quota", body, "admin-token");
        assessAnswer(status, json, body);
      }),
      { numRuns: 60 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Schedules (every /schedules route, and GET /jobs?scheduleId=)
// ---------------------------------------------------------------------------------------------

/** Cron-like strings: real patterns, near misses and junk tokens, 1..7 fields. */
const cronish = fc.oneof(
  fc.constantFrom("0 2 * * *", "*/1 * * * *", "@daily", "@every", "0 0 31 2 *", "* * * * * *", "L W # ?"),
  fc
    .array(
      fc.constantFrom(
        "*",
        "*/5",
        "*/0",
        "0",
        "59",
        "60",
        "61",
        "1-5",
        "5-1",
        "MON",
        "JAN",
        "L",
        "#",
        "?",
        "W",
        "1,2",
        "-1",
        "a",
        "2#6",
        "99999999999",
      ),
      { minLength: 1, maxLength: 7 },
    )
    .map((fields) => fields.join(" ")),
  anyString,
);

const timezoneish = fc.oneof(
  fc.constantFrom(
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Etc/GMT+5",
    "Mars/Olympus",
    "",
    "utc",
    "../etc",
  ),
  anyString,
);

/**
 * A schedule body, valid or nearly so. Always disabled: a schedule this file leaves enabled would
 * be fired by every tick of the run's other tests (they share DynamoDB Local).
 */
const scheduleBody = fc
  .record(
    {
      name: fc.oneof(fc.string({ unit: "grapheme", minLength: 1, maxLength: 30 }), junk),
      cron: fc.oneof(cronish, junk),
      timezone: fc.oneof(timezoneish, junk),
      overlap: fc.oneof(fc.constantFrom("allow", "skip"), junk),
      jitterSeconds: fc.oneof(fc.integer({ min: 0, max: 3600 }), junk),
      job: fc.oneof(validJob, mutatedJob, junk),
      unknownField: junk,
    },
    { requiredKeys: [] },
  )
  .map((body) => ({ ...body, enabled: false }));

async function sendSchedule(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const response = await api.request(method, path, {
    token: fuzzer.token,
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body) ?? "null", headers: { "content-type": "application/json" } }),
  });
  return { status: response.status, json: response.json };
}

describe("/schedules under fuzzing", () => {
  let scheduleId: string;

  beforeAll(async () => {
    const created = await sendSchedule("POST", "/schedules", {
      name: "fuzzed",
      cron: "0 2 * * *",
      enabled: false,
      job: { type: "echo" },
    });
    expect(created.status).toBe(201);
    scheduleId = (created.json as { id: string }).id;
  });

  it("answers any JSON value and any near-valid body to POST /schedules without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyJson, scheduleBody), async (body) => {
        const { status, json } = await sendSchedule("POST", "/schedules", body);
        assessAnswer(status, json, body);
      }),
      { numRuns: RUNS },
    );
  });

  it("answers any PATCH body without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyJson, scheduleBody), async (body) => {
        const { status, json } = await sendSchedule("PATCH", `/schedules/${scheduleId}`, body);
        assessAnswer(status, json, body);
      }),
      { numRuns: RUNS },
    );
  });

  it("answers any id in the path of every schedule route with a 4xx, never a 5xx", async () => {
    const id = fc.oneof(
      anyString.filter((s) => s.length > 0),
      fc.constantFrom("sch_01ARZ3NDEKTSV4RRFFQ69G5FAV", "sch_", "%00", "..", "constructor", "__proto__"),
    );
    await fc.assert(
      fc.asyncProperty(id, fc.constantFrom("GET", "PATCH", "DELETE", "TRIGGER"), async (raw, method) => {
        // A lone surrogate has no UTF-8 encoding: send the bytes it would have had, malformed.
        let segment = "%ED%A0%80";
        try {
          segment = encodeURIComponent(raw);
        } catch {
          // keep the malformed bytes
        }
        const path = `/schedules/${segment}`;
        const { status, json } =
          method === "TRIGGER"
            ? await sendSchedule("POST", `${path}/trigger`)
            : await sendSchedule(method, path, method === "PATCH" ? { name: "x" } : undefined);
        assessAnswer(status, json, `${method} ${path}`);
        expect(status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: RUNS },
    );
  });

  it("answers any query string of GET /schedules and GET /jobs?scheduleId= without a 5xx", async () => {
    const params = fc.dictionary(
      fc.constantFrom("limit", "cursor", "owner", "scheduleId", "status", "x"),
      fc.oneof(anyString, fc.constantFrom("0", "201", "-1", "1e3", "eyJhZnRlciI6IngjeSJ9", scheduleId ?? "")),
      { maxKeys: 3, noNullPrototype: true },
    );
    await fc.assert(
      fc.asyncProperty(params, fc.constantFrom("/schedules", "/jobs"), async (query, path) => {
        const { scheduleId: _ignored, ...rest } = query;
        const qs = new URLSearchParams(
          path === "/jobs" ? { ...rest, scheduleId: query.scheduleId ?? "x" } : query,
        );
        const { status, json } = await sendSchedule("GET", `${path}?${qs.toString()}`);
        assessAnswer(status, json, `${path}?${qs.toString()}`);
      }),
      { numRuns: RUNS },
    );
  });

  it("answers raw non-JSON bytes to POST and PATCH with a 4xx in the contract's shape", async () => {
    const prefixes = fc.constantFrom("", "{", '{"name":"x","cron":', '{"job":{"type":"echo"');
    await fc.assert(
      fc.asyncProperty(
        prefixes,
        fc.uint8Array({ maxLength: 200 }),
        fc.boolean(),
        async (prefix, bytes, patch) => {
          const body = Buffer.concat([Buffer.from(prefix, "utf8"), Buffer.from(bytes)]);
          const response = await rawRequest(
            api,
            patch ? "PATCH" : "POST",
            patch ? `/schedules/${scheduleId}` : "/schedules",
            body,
            fuzzer.token,
          );
          assessAnswer(response.status, response.json, body.toString("hex"));
          expect(response.status).toBeGreaterThanOrEqual(400);
        },
      ),
      { numRuns: 100 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// GET /stats and GET /jobs?updatedSince=
// ---------------------------------------------------------------------------------------------

describe("GET /stats and updatedSince under fuzzing", () => {
  it("answers any query string of GET /stats, a user's or an admin's, without a 5xx", async () => {
    const params = fc.dictionary(
      fc.constantFrom("window", "owner", "pool", "x", "__proto__"),
      fc.oneof(anyString, fc.constantFrom("1h", "5m", "15m", "6h", "24h", "0m", "1d", "-1h", "")),
      { maxKeys: 3, noNullPrototype: true },
    );
    await fc.assert(
      fc.asyncProperty(params, fc.boolean(), async (query, admin) => {
        const path = `/stats?${new URLSearchParams(query).toString()}`;
        const response = await api.request("GET", path, { token: admin ? "admin-token" : fuzzer.token });
        assessAnswer(response.status, response.json, path);
      }),
      { numRuns: RUNS },
    );
  });

  it("answers any updatedSince and cursor on GET /jobs without a 5xx", async () => {
    const params = fc.record(
      {
        updatedSince: fc.oneof(isoDate, anyString, fc.constantFrom("2026-12-06T09:00:00Z", "yesterday")),
        cursor: fc.oneof(
          anyString,
          fc.constantFrom("eyJpbmRleCI6ImJ5T3duZXJVcGRhdGUifQ", "bm90LWEtY3Vyc29y"),
        ),
        status: fc.constantFrom("queued", "completed,failed", "nope"),
        limit: fc.constantFrom("1", "200", "0", "x"),
      },
      { requiredKeys: ["updatedSince"] },
    );
    await fc.assert(
      fc.asyncProperty(params, fc.boolean(), async (query, admin) => {
        const path = `/jobs?${new URLSearchParams(query as Record<string, string>).toString()}`;
        const response = await api.request("GET", path, { token: admin ? "admin-token" : fuzzer.token });
        assessAnswer(response.status, response.json, path);
      }),
      { numRuns: RUNS },
    );
  });
});

describe("POST /pools/{pool}/nodes/{id}/drain under fuzzing", () => {
  it("answers any pool and node id in its path with a 4xx, never a 5xx, to an admin and to a user", async () => {
    const segmentOf = (raw: string): string => {
      try {
        return encodeURIComponent(raw);
      } catch {
        // A lone surrogate has no UTF-8 encoding: send the bytes it would have had, malformed.
        return "%ED%A0%80";
      }
    };
    const id = fc.oneof(
      anyString.filter((s) => s.length > 0),
      fc.constantFrom("cpu", "gpu", "%00", "..", "constructor", "__proto__", "node-1", "n".repeat(2000)),
    );
    await fc.assert(
      fc.asyncProperty(id, id, fc.constantFrom("admin-token", fuzzer.token), async (pool, node, token) => {
        const path = `/pools/${segmentOf(pool)}/nodes/${segmentOf(node)}/drain`;
        const response = await api.request("POST", path, { token });
        assessAnswer(response.status, response.json, `POST ${path}`);
        expect(response.status, `POST ${path}`).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: RUNS },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The admin token routes and GET /jobs/{id}/dependents
// ---------------------------------------------------------------------------------------------

describe("admin token routes and dependents under fuzzing", () => {
  /** A segment as the client would send it; a lone surrogate as the malformed bytes it would be. */
  const segmentOf = (raw: string): string => {
    try {
      return encodeURIComponent(raw);
    } catch {
      return "%ED%A0%80";
    }
  };
  const tokenBody = fc.oneof(
    anyJson,
    fc.record(
      {
        principal: fc.oneof(anyString, fc.constantFrom("fuzz-token-user")),
        admin: fc.oneof(fc.boolean(), anyJson),
      },
      { requiredKeys: [] },
    ),
  );

  it("answers any body to POST /admin/tokens, an admin's or a user's, without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(tokenBody, fc.boolean(), async (body, admin) => {
        const { status, json } = await send(
          "POST",
          "/admin/tokens",
          body,
          admin ? "admin-token" : fuzzer.token,
        );
        assessAnswer(status, json, body);
        if (!admin) expect(status).toBe(403);
      }),
      { numRuns: 60 },
    );
  });

  it("answers any id to DELETE /admin/tokens/{id} and any query to GET /admin/tokens with a 4xx or 200", async () => {
    const query = fc.dictionary(
      fc.constantFrom("limit", "cursor", "x", "__proto__"),
      fc.oneof(anyString, fc.constantFrom("0", "1", "201", "bm90LWEtY3Vyc29y")),
      { maxKeys: 3, noNullPrototype: true },
    );
    await fc.assert(
      fc.asyncProperty(
        anyString.filter((s) => s.length > 0),
        query,
        async (id, params) => {
          const revoke = await send("DELETE", `/admin/tokens/${segmentOf(id)}`, undefined, "admin-token");
          assessAnswer(revoke.status, revoke.json, id);
          const path = `/admin/tokens?${new URLSearchParams(params).toString()}`;
          const list = await api.request("GET", path, { token: "admin-token" });
          assessAnswer(list.status, list.json, path);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("answers any id and query to GET /jobs/{id}/dependents without a 5xx", async () => {
    const parent = await send("POST", "/jobs", { type: "echo" });
    const parentId = (parent.json as { id: string }).id;
    const query = fc.dictionary(
      fc.constantFrom("limit", "cursor", "x"),
      fc.oneof(anyString, fc.constantFrom("0", "1", "200", "eyJhZnRlciI6IkRQVCN4In0")),
      { maxKeys: 3, noNullPrototype: true },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyString, fc.constant(parentId)), query, async (id, params) => {
        const path = `/jobs/${segmentOf(id || parentId)}/dependents?${new URLSearchParams(params).toString()}`;
        const response = await api.request("GET", path, { token: fuzzer.token });
        assessAnswer(response.status, response.json, path);
      }),
      { numRuns: RUNS },
    );
  });
});
