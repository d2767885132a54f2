import { request as httpRequest } from "node:http";
import type { APIGatewayProxyEvent } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ROUTES, type RouteSpec } from "../../functions/routes";
import { type ApiHandler, MAX_BODY_BYTES } from "../../local/api-server";
import { startTestApi, type TestApi } from "../support/api";

interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

describe("local API with the real handlers", () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi();
  });
  afterAll(() => api.close());

  it("answers GET /health with 200 and no token", async () => {
    const response = await api.request("GET", "/health");

    expect(response.status).toBe(200);
    expect(response.json).toEqual({ status: "ok", streamUrl: api.streamUrl });
  });

  it.each([
    ["GET", "/nope"],
    ["GET", "//jobs"],
    ["GET", "/jobs/job_1/attempts/extra"],
    ["DELETE", "/jobs"],
    ["GET", "/jobs/batch"],
  ])(
    "answers %s %s, which no route serves, with a JSON 404 before asking for a token",
    async (method, path) => {
      const response = await api.request<ErrorBody>(method, path);

      expect(response.status).toBe(404);
      expect(response.headers.get("content-type")).toMatch(/^application\/json/);
      expect(response.json.error.code).toBe("not_found");
    },
  );

  it.each([
    ["no Authorization header", {}],
    ["an unknown token", { authorization: "Bearer nobody-token" }],
    ["another scheme", { authorization: "Basic YWxpY2U6eA==" }],
    ["a bare token", { authorization: "alice-token" }],
  ])("answers a protected route with %s with a JSON 401", async (_case, headers) => {
    const response = await api.request<ErrorBody>("GET", "/jobs", { headers });

    expect(response.status).toBe(401);
    expect(response.json.error.code).toBe("unauthorized");
    expect(response.json.error.message).toEqual(expect.any(String));
  });

  it("runs a job's round trip through the handlers as the token's principal", async () => {
    const submitted = await api.request<{ id: string; owner: string }>("POST", "/jobs", {
      token: "alice-token",
      body: { type: "echo", payload: { note: "local-stack test" } },
    });
    expect(submitted.status).toBe(201);
    expect(submitted.json.owner).toBe("alice");

    const mine = await api.request<{ id: string }>("GET", `/jobs/${submitted.json.id}`, {
      token: "alice-token",
    });
    const theirs = await api.request<ErrorBody>("GET", `/jobs/${submitted.json.id}`, { token: "bob-token" });
    const admin = await api.request<{ id: string }>("GET", `/jobs/${submitted.json.id}`, {
      token: "admin-token",
    });

    expect(mine.status).toBe(200);
    expect(mine.json.id).toBe(submitted.json.id);
    expect(theirs.status).toBe(404);
    expect(admin.status).toBe(200);
  });
});

/** What the echo handler answers: the route it was called for and what it received. */
interface Echo {
  readonly route: string;
  readonly event: APIGatewayProxyEvent;
  readonly context: {
    readonly awsRequestId: string;
    readonly functionName: string;
    readonly remainingMs: number;
  };
}

const echoHandler = async (route: RouteSpec): Promise<ApiHandler> => {
  return async (event, context) => ({
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      route: route.id,
      event,
      context: {
        awsRequestId: context.awsRequestId,
        functionName: context.functionName,
        remainingMs: context.getRemainingTimeInMillis(),
      },
    }),
  });
};

describe("routing and the proxy event (ROUTES, echo handlers)", () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await startTestApi(undefined, { routes: ROUTES, loadHandler: echoHandler });
  });
  afterAll(() => api.close());

  it.each([
    ["POST", "/jobs/batch", "SubmitBatch", null],
    ["POST", "/jobs", "SubmitJob", null],
    ["GET", "/jobs", "ListJobs", null],
    ["GET", "/jobs/", "ListJobs", null],
    ["GET", "/jobs/job_1", "GetJob", { id: "job_1" }],
    ["PATCH", "/jobs/job_1", "UpdateJob", { id: "job_1" }],
    ["PATCH", "/jobs/job_1/cancel", "CancelJob", { id: "job_1" }],
    ["POST", "/jobs/batch/pause", "PauseJob", { id: "batch" }],
  ])("routes %s %s to %s", async (method, path, routeId, pathParameters) => {
    const response = await api.request<Echo>(method, path, { token: "alice-token" });

    expect(response.status).toBe(200);
    expect(response.json.route).toBe(routeId);
    expect(response.json.event.pathParameters).toEqual(pathParameters);
  });

  it("builds the API Gateway REST proxy event the Lambda would get", async () => {
    const response = await api.request<Echo>(
      "GET",
      "/jobs/job_1/logs?level=info&attempt=1&attempt=2&q=a%20b",
      {
        token: "bob-token",
        headers: { "x-trace": "t-1" },
      },
    );

    const { event, context } = response.json;
    expect(event).toMatchObject({
      resource: "/jobs/{id}/logs",
      path: "/jobs/job_1/logs",
      httpMethod: "GET",
      pathParameters: { id: "job_1" },
      queryStringParameters: { level: "info", attempt: "2", q: "a b" },
      multiValueQueryStringParameters: { level: ["info"], attempt: ["1", "2"], q: ["a b"] },
      stageVariables: null,
      body: null,
      isBase64Encoded: false,
      requestContext: {
        stage: "local",
        httpMethod: "GET",
        resourcePath: "/jobs/{id}/logs",
        path: "/local/jobs/job_1/logs",
        identity: { sourceIp: expect.stringMatching(/127\.0\.0\.1$/) },
        authorizer: { principal: "bob", role: "user", principalId: "bob" },
      },
    });
    expect(event.headers["x-trace"]).toBe("t-1");
    expect(event.multiValueHeaders["x-trace"]).toEqual(["t-1"]);
    expect(event.requestContext.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(event.requestContext.requestTimeEpoch).toBeGreaterThan(Date.now() - 60_000);
    expect(context.awsRequestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(context.awsRequestId).not.toBe(event.requestContext.requestId);
    expect(context.functionName).toContain("ListLogs");
    expect(context.remainingMs).toBeGreaterThan(25_000);
    expect(context.remainingMs).toBeLessThanOrEqual(29_000);
  });

  it("passes the admin role and a fresh request id per request", async () => {
    const first = await api.request<Echo>("GET", "/jobs", { token: "admin-token" });
    const second = await api.request<Echo>("GET", "/jobs", { token: "admin-token" });

    expect(first.json.event.requestContext.authorizer).toMatchObject({ principal: "ops", role: "admin" });
    expect(first.json.event.requestContext.requestId).not.toBe(second.json.event.requestContext.requestId);
  });

  it("gives a route without an authorizer no authorizer context, and null query maps without a query", async () => {
    const response = await api.request<Echo>("GET", "/health", { token: "alice-token" });

    expect(response.json.event.requestContext.authorizer).toBeNull();
    expect(response.json.event.queryStringParameters).toBeNull();
    expect(response.json.event.multiValueQueryStringParameters).toBeNull();
  });

  it("passes the body as the UTF-8 string that was sent", async () => {
    const body = JSON.stringify({ type: "echo", payload: { text: "héllo ✓ 日本" } });

    const response = await api.request<Echo>("POST", "/jobs", { token: "alice-token", body });

    expect(response.json.event.body).toBe(body);
    expect(response.json.event.isBase64Encoded).toBe(false);
  });

  it("keeps the client's header spelling, as API Gateway does", async () => {
    const event = await rawGet(api.url, "/jobs", {
      Authorization: "Bearer alice-token",
      "X-Trace-Id": "abc",
    });

    expect(event.headers["X-Trace-Id"]).toBe("abc");
    expect(event.multiValueHeaders.Authorization).toEqual(["Bearer alice-token"]);
  });

  it("answers a body above API Gateway's 10 MB with a JSON 413, declared or streamed", async () => {
    const declared = await api.request<ErrorBody>("POST", "/jobs", {
      token: "alice-token",
      body: "x".repeat(MAX_BODY_BYTES + 1),
    });
    const streamed = await chunkedPost(api.url, "/jobs", "alice-token", MAX_BODY_BYTES + 64 * 1024);

    expect(declared.status).toBe(413);
    expect(declared.json.error.code).toBe("payload_too_large");
    expect(streamed.status).toBe(413);
    expect(streamed.body).toContain("payload_too_large");
  });
});

describe("what the handler returns", () => {
  const custom = (handler: ApiHandler): Promise<TestApi> =>
    startTestApi(undefined, {
      routes: [
        { id: "Custom", method: "GET", path: "/custom", handler: "custom", authorized: false, jobsTable: [] },
      ],
      loadHandler: async () => handler,
    });

  it("is written back as is: status, headers and multi-value headers", async () => {
    const api = await custom(async () => ({
      statusCode: 202,
      headers: { "content-type": "application/json", "x-single": "1", "x-both": "from-headers" },
      multiValueHeaders: { "set-cookie": ["a=1", "b=2"], "x-both": ["from-multi"] },
      body: JSON.stringify({ accepted: true }),
    }));
    try {
      const response = await api.request("GET", "/custom");

      expect(response.status).toBe(202);
      expect(response.json).toEqual({ accepted: true });
      expect(response.headers.get("x-single")).toBe("1");
      expect(response.headers.getSetCookie()).toEqual(["a=1", "b=2"]);
      expect(response.headers.get("x-both")).toBe("from-multi");
    } finally {
      await api.close();
    }
  });

  it("is a JSON 500 that leaks nothing when the handler throws, and the error is logged", async () => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const api = await custom(async () => {
      throw new Error("secret detail from the handler");
    });
    try {
      const response = await api.request<ErrorBody & { error: { details: { requestId: string } } }>(
        "GET",
        "/custom",
      );

      expect(response.status).toBe(500);
      // As the JobApi's DEFAULT_5XX gateway response: the request id ties the answer to the log line.
      expect(response.json).toEqual({
        error: { code: "internal", message: "internal error", details: { requestId: expect.any(String) } },
      });
      expect(logged).toHaveBeenCalledWith(
        expect.stringContaining(response.json.error.details.requestId),
        expect.objectContaining({ message: "secret detail from the handler" }),
      );
    } finally {
      logged.mockRestore();
      await api.close();
    }
  });
});

/** A GET through node:http, which (unlike fetch) sends header names exactly as given. */
function rawGet(
  baseUrl: string,
  path: string,
  headers: Record<string, string>,
): Promise<APIGatewayProxyEvent> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${baseUrl}${path}`, { headers }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => resolve((JSON.parse(text) as Echo).event));
    });
    req.on("error", reject);
    req.end();
  });
}

/** A POST with no Content-Length (chunked), so only counting while streaming can catch it. */
function chunkedPost(
  baseUrl: string,
  path: string,
  token: string,
  bytes: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(
      `${baseUrl}${path}`,
      { method: "POST", headers: { authorization: `Bearer ${token}`, "transfer-encoding": "chunked" } },
      (res) => {
        answered = true;
        let body = "";
        res.setEncoding("utf8").on("data", (chunk: string) => {
          body += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    // The server closes the connection once it has answered; what matters is the answer.
    req.on("error", (error) => {
      if (!answered) reject(error);
    });
    const chunk = Buffer.alloc(64 * 1024, "x");
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once("drain", pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}
