import type { APIGatewayProxyEvent, APIGatewayProxyResult } from "aws-lambda";
import { afterEach, describe, expect, it, vi } from "vitest";
import { readConfig } from "../../functions/config";
import { CORS_EXPOSE_HEADERS, withCorsOrigin } from "../../functions/cors";
import { lambdaContext } from "../../local/lambda";

/**
 * The dashboard's origin on API answers (functions/cors.ts, functions/http.ts): in AWS the page is
 * on CloudFront and the API on API Gateway, so every answer, errors included, must carry
 * Access-Control-Allow-Origin for that one origin; locally (JOBQ_CORS_ORIGIN unset) page and API
 * share an origin and answers carry nothing of the kind.
 */

const ORIGIN = "https://d111111abcdef8.cloudfront.net";

const event = { headers: {}, requestContext: {} } as unknown as APIGatewayProxyEvent;

/**
 * A fresh functions/http.ts, so config() reads the environment as stubbed for this test, and the
 * errors of the same module graph (its instanceof checks know only those).
 */
async function freshHttp(): Promise<
  typeof import("../../functions/http") & typeof import("../../core/errors")
> {
  vi.resetModules();
  return { ...(await import("../../core/errors")), ...(await import("../../functions/http")) };
}

type Fresh = Awaited<ReturnType<typeof freshHttp>>;

/** The answer of a handler built by a fresh apiHandler around `route`. */
async function answer(
  route: (fresh: Fresh) => Promise<APIGatewayProxyResult>,
): Promise<APIGatewayProxyResult> {
  const fresh = await freshHttp();
  return fresh.apiHandler(() => route(fresh))(event, lambdaContext("jobq-test", "us-east-1"));
}

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("withCorsOrigin", () => {
  it("leaves an answer untouched without an origin", () => {
    const response = { statusCode: 200, headers: { "content-type": "application/json" }, body: "{}" };
    expect(withCorsOrigin(response, undefined)).toEqual(response);
  });

  it("names the origin and the headers the page may read, keeping the answer's own", () => {
    const response = withCorsOrigin({ statusCode: 200, headers: { "retry-after": "2" }, body: "{}" }, ORIGIN);
    expect(response.headers).toMatchObject({
      "retry-after": "2",
      "access-control-allow-origin": ORIGIN,
      "access-control-expose-headers": CORS_EXPOSE_HEADERS.join(", "),
      vary: "Origin",
    });
    expect(response.body).toBe("{}");
  });
});

describe("apiHandler with JOBQ_CORS_ORIGIN set (AWS with the dashboard)", () => {
  it("adds the origin to a handler's answer", async () => {
    vi.stubEnv("JOBQ_CORS_ORIGIN", ORIGIN);
    const response = await answer(async ({ json }) =>
      json(201, { id: "job_1" }, { "Idempotent-Replayed": "true" }),
    );

    expect(response.statusCode).toBe(201);
    expect(response.headers).toMatchObject({
      "access-control-allow-origin": ORIGIN,
      "Idempotent-Replayed": "true",
    });
  });

  it("adds it to the error answers too, so the page can read their bodies", async () => {
    vi.stubEnv("JOBQ_CORS_ORIGIN", ORIGIN);

    const missing = await answer(async ({ NotFoundError }) => {
      throw new NotFoundError("job job_x not found");
    });
    const broken = await answer(async () => {
      throw new TypeError("x is undefined");
    });

    expect(missing.statusCode).toBe(404);
    expect(missing.headers).toMatchObject({ "access-control-allow-origin": ORIGIN });
    expect(JSON.parse(missing.body)).toMatchObject({ error: { code: "not_found" } });
    expect(broken.statusCode).toBe(500);
    expect(broken.headers).toMatchObject({ "access-control-allow-origin": ORIGIN });
  });
});

describe("apiHandler without JOBQ_CORS_ORIGIN (the local stack, AWS without the dashboard)", () => {
  it("adds no CORS header to answers or errors", async () => {
    vi.stubEnv("JOBQ_CORS_ORIGIN", undefined);
    const ok = await answer(async ({ json }) => json(200, {}));
    const missing = await answer(async ({ NotFoundError }) => {
      throw new NotFoundError("job job_x not found");
    });

    for (const response of [ok, missing]) {
      const names = Object.keys(response.headers ?? {}).map((name) => name.toLowerCase());
      expect(names.filter((name) => name.startsWith("access-control-"))).toEqual([]);
    }
  });
});

describe("JOBQ_CORS_ORIGIN", () => {
  it("is read as the configured origin", () => {
    expect(readConfig({ JOBQ_CORS_ORIGIN: ORIGIN }).corsOrigin).toBe(ORIGIN);
    expect(readConfig({}).corsOrigin).toBeUndefined();
  });

  it("must be an origin, failing the cold start otherwise", () => {
    expect(() => readConfig({ JOBQ_CORS_ORIGIN: `${ORIGIN}/` })).toThrow(/origin/);
    expect(() => readConfig({ JOBQ_CORS_ORIGIN: `${ORIGIN}/index.html` })).toThrow(/origin/);
    expect(() => readConfig({ JOBQ_CORS_ORIGIN: "d111111abcdef8.cloudfront.net" })).toThrow();
  });
});
