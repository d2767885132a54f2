import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApi, type TestApi } from "../support/api";

/**
 * The HTTP edge (local/api-server.ts and functions/http.ts) against names that a plain object
 * already has: a header, query or path parameter named like one of Object.prototype's members
 * must be data like any other name, never a 500. Sent with node:http so names and repeats go on
 * the wire exactly as written (fetch joins repeated headers into one).
 */

/** Object.prototype's members, plus the spelling API Gateway would pass through unchanged. */
const PROTOTYPE_NAMES = [
  "constructor",
  "toString",
  "__proto__",
  "valueOf",
  "hasOwnProperty",
  "isPrototypeOf",
  "propertyIsEnumerable",
  "toLocaleString",
  "__defineGetter__",
  "__lookupSetter__",
  "Constructor",
] as const;

const ALICE = "Bearer alice-token";
const ADMIN = "Bearer admin-token";

interface Raw {
  readonly status: number;
  readonly body: string;
}

/**
 * A request with headers given as [name, value, name, value, …]; a repeated name goes out as
 * repeated header lines (setHeader with an array), each name spelt as given.
 */
function raw(baseUrl: string, method: string, path: string, headers: string[], body?: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${baseUrl}${path}`, { method }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    const values = new Map<string, string[]>();
    for (let index = 0; index + 1 < headers.length; index += 2) {
      const name = headers[index] as string;
      values.set(name, [...(values.get(name) ?? []), headers[index + 1] as string]);
    }
    for (const [name, value] of values)
      req.setHeader(name, value.length === 1 ? (value[0] as string) : value);
    req.on("error", reject);
    req.end(body);
  });
}

describe("names of Object.prototype's members at the HTTP edge", () => {
  let api: TestApi;
  let jobId: string;
  beforeAll(async () => {
    api = await startTestApi();
    const submitted = await api.request<{ id: string }>("POST", "/jobs", {
      token: "alice-token",
      body: { type: "echo", payload: {} },
    });
    expect(submitted.status).toBe(201);
    jobId = submitted.json.id;
  });
  afterAll(() => api.close());

  /** Every read route, and writes whose answer does not depend on earlier requests. */
  const routes = (): { method: string; path: string; auth: string; body?: string }[] => [
    { method: "GET", path: "/health", auth: "" },
    { method: "GET", path: "/jobs", auth: ALICE },
    { method: "GET", path: `/jobs/${jobId}`, auth: ALICE },
    { method: "GET", path: `/jobs/${jobId}/attempts`, auth: ALICE },
    { method: "GET", path: `/jobs/${jobId}/transitions`, auth: ALICE },
    { method: "GET", path: `/jobs/${jobId}/logs`, auth: ALICE },
    { method: "GET", path: "/queue", auth: ALICE },
    { method: "GET", path: "/pools", auth: ALICE },
    { method: "GET", path: "/admin/policy", auth: ADMIN },
    { method: "GET", path: "/quotas/alice", auth: ALICE },
    // Validation fails on the body, after the handler has read its headers (Idempotency-Key).
    { method: "POST", path: "/jobs", auth: ALICE, body: "{}" },
    { method: "POST", path: "/jobs/batch", auth: ALICE, body: "{}" },
    { method: "PATCH", path: `/jobs/${jobId}`, auth: ALICE, body: "{}" },
    // No such node: a 404 whatever came before.
    { method: "POST", path: "/pools/cpu/nodes/node-edge-missing/drain", auth: ADMIN },
    { method: "GET", path: `/jobs/${jobId}/dependents`, auth: ALICE },
    { method: "GET", path: "/admin/tokens", auth: ADMIN },
    { method: "POST", path: "/admin/tokens", auth: ADMIN, body: "{}" },
    { method: "DELETE", path: "/admin/tokens/000000000000", auth: ADMIN },
  ];

  type Form = (name: string) => { readonly headers: string[]; readonly query: string };
  const forms: Record<string, Form> = {
    "a header": (name) => ({ headers: [name, "1"], query: "" }),
    "a repeated header": (name) => ({ headers: [name, "1", name, "2"], query: "" }),
    "a header in lower case": (name) => ({ headers: [name.toLowerCase(), "1"], query: "" }),
    "a query parameter": (name) => ({ headers: [], query: `?${name}=1` }),
    "a repeated query parameter": (name) => ({ headers: [], query: `?${name}=1&${name}=2` }),
    "a query parameter without a value": (name) => ({ headers: [], query: `?${name}` }),
  };

  it.each(Object.keys(forms))("is never a 500 as %s, on any route", async (formName) => {
    const form = forms[formName] as Form;
    const failures: string[] = [];
    for (const name of PROTOTYPE_NAMES) {
      const { headers, query } = form(name);
      for (const route of routes()) {
        const auth = route.auth ? ["authorization", route.auth] : [];
        const body = route.body === undefined ? [] : ["content-type", "application/json"];
        const response = await raw(
          api.url,
          route.method,
          `${route.path}${query}`,
          [...auth, ...body, ...headers],
          route.body,
        );
        if (response.status >= 500 || !response.body.startsWith("{")) {
          failures.push(`${route.method} ${route.path}${query} [${headers.join(": ")}] → ${response.status}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it("answers a query named like a prototype member on /health, which reads no query, with 200", async () => {
    for (const name of PROTOTYPE_NAMES) {
      const response = await raw(api.url, "GET", `/health?${name}=1`, [name, "1"]);
      expect(response.status, name).toBe(200);
    }
  });

  it("answers a query parameter a route does not know, named like a prototype member, with 400", async () => {
    for (const name of PROTOTYPE_NAMES) {
      const response = await raw(api.url, "GET", `/jobs?${name}=1`, ["authorization", ALICE]);
      expect(response.status, name).toBe(400);
      expect(JSON.parse(response.body)).toMatchObject({ error: { code: "validation_failed" } });
    }
  });

  it("answers a bearer token named like a prototype member with a 401", async () => {
    for (const name of PROTOTYPE_NAMES) {
      const response = await raw(api.url, "GET", "/jobs", ["authorization", `Bearer ${name}`]);
      expect(response.status, name).toBe(401);
    }
  });

  it.each(
    PROTOTYPE_NAMES.flatMap((name) => [
      ["GET", `/jobs/${name}`],
      ["GET", `/jobs/${name}/attempts`],
      ["PATCH", `/jobs/${name}/cancel`],
      ["GET", `/quotas/${name}`],
    ]),
  )("answers %s %s, a path parameter named like a prototype member, without a 500", async (method, path) => {
    const response = await raw(api.url, method, path, ["authorization", ADMIN]);

    // A principal may well be called "constructor" (GET /quotas answers it); a job id may not.
    expect(response.status).toBeLessThan(500);
    expect(JSON.parse(response.body)).toEqual(expect.any(Object));
  });
});
