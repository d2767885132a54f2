import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  buildOpenApiDocument,
  documentedOperations,
  type OpenApiDocument,
  SCHEMA_REF_PREFIX,
  UndocumentedRouteError,
} from "../../functions/openapi";
import { ROUTE_DOCS } from "../../functions/route-docs";
import { ROUTES, type RouteSpec } from "../../functions/routes";
import { OPENAPI_FILE, openApiFileText } from "../../scripts/openapi";

/** The OpenAPI document against the code it is generated from, and the copy in docs/. */

const document = buildOpenApiDocument();

function operationOf(doc: OpenApiDocument, route: RouteSpec) {
  return doc.paths[route.path]?.[route.method.toLowerCase()];
}

/** Every `$ref` anywhere under a value. */
function refs(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(refs);
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([key, child]) =>
    key === "$ref" && typeof child === "string" ? [child] : refs(child),
  );
}

describe("the OpenAPI document", () => {
  it("is OpenAPI 3.1 on JSON Schema 2020-12, with bearer auth", () => {
    expect(document.openapi).toBe("3.1.0");
    expect(document.jsonSchemaDialect).toBe("https://json-schema.org/draft/2020-12/schema");
    expect(document.security).toEqual([{ bearer: [] }]);
    expect(document.components.securitySchemes).toEqual({
      bearer: expect.objectContaining({ type: "http", scheme: "bearer" }),
    });
  });

  it("documents every route of ROUTES with its method", () => {
    const missing = ROUTES.filter((route) => !operationOf(document, route)).map(
      (r) => `${r.method} ${r.path} (${r.id})`,
    );
    expect(missing, "routes without an operation: add them to functions/route-docs.ts").toEqual([]);
  });

  it("documents nothing that ROUTES does not serve", () => {
    const served = new Set(ROUTES.map((r) => `${r.method} ${r.path}`));
    expect(documentedOperations(document).filter((op) => !served.has(op))).toEqual([]);
    expect(documentedOperations(document)).toHaveLength(ROUTES.length);
  });

  it("has documentation for route ids only (none left behind by a renamed or removed route)", () => {
    const ids = new Set(ROUTES.map((r) => r.id));
    expect(Object.keys(ROUTE_DOCS).filter((id) => !ids.has(id))).toEqual([]);
  });

  it("describes only query parameters the route's query schema has", () => {
    const stale = Object.entries(ROUTE_DOCS).flatMap(([id, doc]) =>
      Object.keys(doc.parameters ?? {})
        .filter((name) => !doc.query || !Object.hasOwn(doc.query.shape, name))
        .map((name) => `${id}: ${name}`),
    );
    expect(stale).toEqual([]);
  });

  it("refuses to build without documentation for a route", () => {
    const stray: RouteSpec = {
      id: "NoSuchRoute",
      method: "GET",
      path: "/nowhere",
      handler: "nowhere",
      authorized: true,
      jobsTable: [],
    };
    expect(() => buildOpenApiDocument([...ROUTES, stray])).toThrow(UndocumentedRouteError);
  });

  it.each(ROUTES.map((r) => [`${r.method} ${r.path}`, r] as const))(
    "%s: path parameters, auth, a 2xx with a schema, and the contract's errors",
    (_, route) => {
      const operation = operationOf(document, route);
      const parameters = (operation?.parameters ?? []) as { name: string; in: string; required: boolean }[];
      const inPath = [...route.path.matchAll(/\{([^{}]+)\}/g)].map((m) => m[1]);
      expect(parameters.filter((p) => p.in === "path").map((p) => p.name)).toEqual(inPath);
      expect(parameters.filter((p) => p.in === "path").every((p) => p.required)).toBe(true);

      // Open routes opt out of the document's bearer security; the others inherit it.
      expect(operation?.security).toEqual(route.authorized ? undefined : []);

      const statuses = Object.keys(operation?.responses ?? {});
      expect(statuses.some((s) => s.startsWith("2"))).toBe(true);
      expect(statuses).toContain("500");
      expect(statuses.includes("401")).toBe(route.authorized);
    },
  );

  it("resolves every $ref to a component", () => {
    const names = new Set(Object.keys(document.components.schemas));
    const dangling = refs(document).filter(
      (ref) => !ref.startsWith(SCHEMA_REF_PREFIX) || !names.has(ref.slice(SCHEMA_REF_PREFIX.length)),
    );
    expect(dangling).toEqual([]);
  });

  it("gives a query schema's properties as query parameters, one per property", () => {
    const listJobs = document.paths["/jobs"]?.get;
    const names = ((listJobs?.parameters ?? []) as { name: string }[]).map((p) => p.name);
    expect(names).toEqual(
      expect.arrayContaining(["limit", "cursor", "status", "type", "tag", "createdAfter"]),
    );
  });

  it("describes the label maps z.custom checks (constraints, tags) as string maps", () => {
    const submit = document.components.schemas.SubmitJobRequest as {
      properties: Record<string, { type?: string; additionalProperties?: unknown }>;
    };
    expect(submit.properties.tags).toMatchObject({
      type: "object",
      additionalProperties: { type: "string" },
    });
  });

  it("describes the WebSocket stream and its messages in x-websocket", () => {
    const stream = (document["x-websocket"] as Record<string, { clientMessages: unknown }>)["/jobs/stream"];
    expect(JSON.stringify(stream?.clientMessages)).toContain("subscribe");
  });
});

describe("docs/openapi.json", () => {
  it("is the document the code generates (else run `npm run openapi` and commit the file)", () => {
    const onDisk = readFileSync(OPENAPI_FILE, "utf8");
    expect(
      onDisk === openApiFileText(),
      "docs/openapi.json is stale: run `npm run openapi` and commit docs/openapi.json",
    ).toBe(true);
  });
});
