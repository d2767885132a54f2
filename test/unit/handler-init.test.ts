import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";
import { handlerEnvironment } from "../../local/config";
import { TABLES } from "../../store/tables";

/**
 * Every Lambda handler module parses its configuration and builds its context when it is loaded,
 * as Powertools' examples do: in Lambda that is the init, so a misconfigured function fails its
 * cold start and CloudWatch says which variable is wrong, instead of answering 500 to every
 * request. Each module is imported fresh (vi.resetModules) under a stubbed environment; nothing
 * is contacted, since SDK clients connect on their first request.
 */

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Every module under functions/ that exports a Lambda `handler`, found from the sources. */
const HANDLER_MODULES = readdirSync(join(ROOT, "functions"), { recursive: true, withFileTypes: true })
  .filter((e) => e.isFile() && e.name.endsWith(".ts"))
  .map((e) => join(e.parentPath, e.name))
  .filter((file) => /^export const handler\b/m.test(readFileSync(file, "utf8")))
  .map((file) => relative(ROOT, file))
  .sort();

/** The variables the local stack gives its handlers, every endpoint on loopback, credentials dummies. */
const GOOD_ENV: Readonly<Record<string, string | undefined>> = {
  ...handlerEnvironment({
    tables: Object.fromEntries(TABLES.map((t) => [t.id, `jobq-init-${t.id}`])),
    dynamoEndpoint: "http://127.0.0.1:1",
    execution: {
      sfnEndpoint: "http://127.0.0.1:2",
      sqsEndpoint: "http://127.0.0.1:3",
      eventsEndpoint: "http://127.0.0.1:4",
      stateMachineArn: "arn:aws:states:us-east-1:000000000000:stateMachine:jobq-lifecycle",
      queues: { cpu: { normal: "http://127.0.0.1:3/000000000000/jobq-cpu-normal" } },
    },
  }),
  JOBQ_STREAM_URL: "ws://127.0.0.1:5/jobs/stream",
  JOBQ_STREAM_ENDPOINT: "http://127.0.0.1:5",
};

function stubEnvironment(overrides: Readonly<Record<string, string | undefined>>): void {
  for (const [name, value] of Object.entries({ ...GOOD_ENV, ...overrides })) vi.stubEnv(name, value);
}

/** The module as Lambda's init loads it: a fresh module graph, so nothing is cached from before. */
async function coldStart(module: string): Promise<Record<string, unknown>> {
  vi.resetModules();
  return import(join(ROOT, module));
}

afterEach(() => {
  vi.unstubAllEnvs();
  vi.resetModules();
});

// A fresh module graph per import: seconds each on a busy 2-core machine, not a unit test's usual.
describe("handler modules at cold start", { timeout: 30_000 }, () => {
  it("finds the handler modules (API routes, authorizers, lifecycle, scheduler, streams)", () => {
    // Prepare / Act: the list above. Assess: a scan that found nothing would prove nothing.
    expect(HANDLER_MODULES).toEqual(
      expect.arrayContaining([
        "functions/api/submit-job.ts",
        "functions/api/health.ts",
        "functions/authorizer.ts",
        "functions/lifecycle.ts",
        "functions/scheduler.ts",
        "functions/reconciler.ts",
        "functions/dependents-stream.ts",
        "functions/stats-stream.ts",
        "functions/stream/broadcaster.ts",
        "functions/stream/connect.ts",
      ]),
    );
  });

  it.each(HANDLER_MODULES)("%s loads with a good environment", async (module) => {
    // Prepare
    stubEnvironment({});

    // Act
    const loaded = await coldStart(module);

    // Assess
    expect(typeof loaded.handler).toBe("function");
  });

  it.each(HANDLER_MODULES)(
    "%s fails its init when JOBQ_HEARTBEAT_SECONDS is not a number",
    async (module) => {
      // Prepare
      stubEnvironment({ JOBQ_HEARTBEAT_SECONDS: "abc" });

      // Act
      const init = coldStart(module);

      // Assess
      await expect(init).rejects.toMatchObject({
        name: "ConfigError",
        message: expect.stringMatching(/JOBQ_HEARTBEAT_SECONDS/),
      });
    },
  );

  it.each([
    ["JOBQ_POOLS", "not json", /JOBQ_POOLS is not valid JSON/],
    ["JOBQ_POOLS", '[{"name": 7}]', /JOBQ_POOLS\.0\./],
    ["JOBQ_QUEUES", "{", /JOBQ_QUEUES is not valid JSON/],
    ["JOBQ_POLICY", '{"ordering": "whoever shouts"}', /JOBQ_POLICY/],
    ["JOBQ_DYNAMODB_ENDPOINT", "loopback", /JOBQ_DYNAMODB_ENDPOINT/],
    ["JOBQ_CORS_ORIGIN", "https://example.com/", /JOBQ_CORS_ORIGIN/],
  ])("an API route fails its init when %s is %s, naming it", async (name, value, message) => {
    // Prepare
    stubEnvironment({ [name]: value });

    // Act
    const init = coldStart("functions/api/submit-job.ts");

    // Assess
    await expect(init).rejects.toMatchObject({
      name: "ConfigError",
      message: expect.stringMatching(message),
    });
  });

  it("the broadcaster fails its init without JOBQ_STREAM_ENDPOINT, naming it", async () => {
    // Prepare
    stubEnvironment({ JOBQ_STREAM_ENDPOINT: undefined });

    // Act
    const init = coldStart("functions/stream/broadcaster.ts");

    // Assess
    await expect(init).rejects.toThrow(/JOBQ_STREAM_ENDPOINT/);
  });

  it("reads the environment once: a variable changed after the init changes nothing", async () => {
    // Prepare
    stubEnvironment({ JOBQ_CORS_ORIGIN: "https://d111111abcdef8.cloudfront.net" });
    const { handler } = (await coldStart("functions/api/health.ts")) as {
      handler: (event: unknown, context: unknown) => Promise<{ headers?: Record<string, string> }>;
    };
    vi.stubEnv("JOBQ_CORS_ORIGIN", "not an origin");
    const { lambdaContext } = await import("../../local/lambda");

    // Act
    const response = await handler(
      { httpMethod: "GET", path: "/health", headers: {}, requestContext: {} },
      lambdaContext("jobq-health", "us-east-1"),
    );

    // Assess
    expect(response.headers?.["access-control-allow-origin"]).toBe("https://d111111abcdef8.cloudfront.net");
  });
});
