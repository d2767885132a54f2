import { errorResponseSchema } from "../../core/api-schemas";
import { fieldProblems } from "../../core/validation";
import { HTTP_STATUS } from "../../functions/http";
import { routeErrorCodes } from "../../functions/openapi";
import { ROUTE_DOCS } from "../../functions/route-docs";
import { ROUTES, type RouteSpec } from "../../functions/routes";

/**
 * Holds every answer a test's client receives to the documented contract: a `fetch` for
 * JobqClient that checks each response against the schema the OpenAPI document gives for its
 * route and status (the same zod schemas the document is generated from), and records what it
 * saw. A 2xx must match its response schema, an error the Error schema with a code the route
 * documents for that status; any other status is undocumented.
 */

export interface Exchange {
  readonly routeId: string;
  readonly method: string;
  readonly path: string;
  readonly status: number;
}

export class ContractRecorder {
  readonly exchanges: Exchange[] = [];
  readonly violations: string[] = [];

  /** Pass as JobqClient's `fetch`. */
  readonly fetch: typeof fetch = async (input, init) => {
    const response = await globalThis.fetch(input, init);
    const method = (init?.method ?? "GET").toUpperCase();
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    const text = await response.clone().text();
    this.check(method, url.pathname, response.status, text);
    return response;
  };

  /** The route ids answered with a 2xx so far. */
  succeeded(): Set<string> {
    return new Set(this.exchanges.filter((e) => e.status < 300).map((e) => e.routeId));
  }

  private check(method: string, path: string, status: number, text: string): void {
    const route = routeOf(method, path);
    const where = `${method} ${path} → ${status}`;
    if (!route) {
      // API Gateway's own 404 for an unknown path is the only answer outside any route.
      if (status !== 404) this.violations.push(`${where}: no route matches`);
      return;
    }
    this.exchanges.push({ routeId: route.id, method, path, status });
    const doc = ROUTE_DOCS[route.id];
    if (!doc) {
      this.violations.push(`${where}: route ${route.id} is not documented`);
      return;
    }
    const success = doc.responses[status];
    if (success?.contentType === "application/x-ndjson" && success.schema) {
      // Each line of an NDJSON answer is one documented object.
      text.split("\n").forEach((line, index) => {
        if (line === "") return;
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch {
          this.violations.push(`${where}: line ${index + 1} is not JSON`);
          return;
        }
        const parsed = success.schema?.safeParse(value);
        if (parsed && !parsed.success)
          this.violations.push(`${where}: line ${index + 1}: ${describe(parsed.error)}`);
      });
      return;
    }
    let body: unknown;
    try {
      body = text === "" ? null : JSON.parse(text);
    } catch {
      this.violations.push(`${where}: the body is not JSON`);
      return;
    }
    if (success) {
      // An answer documented without a schema (204) has no body at all.
      if (!success.schema) {
        if (body !== null) this.violations.push(`${where}: a body where the document says none`);
        return;
      }
      const parsed = success.schema.safeParse(body);
      if (!parsed.success) this.violations.push(`${where}: ${describe(parsed.error)}`);
      return;
    }
    const codes = routeErrorCodes(route, doc).filter((code) => HTTP_STATUS[code] === status);
    if (codes.length === 0) {
      this.violations.push(`${where}: status ${status} is not documented for ${route.id}`);
      return;
    }
    const parsed = errorResponseSchema.safeParse(body);
    if (!parsed.success) this.violations.push(`${where}: ${describe(parsed.error)}`);
    else if (!codes.includes(parsed.data.error.code)) {
      this.violations.push(
        `${where}: code ${parsed.data.error.code} is not documented (${codes.join(", ")})`,
      );
    }
  }
}

function describe(error: Parameters<typeof fieldProblems>[0]): string {
  return fieldProblems(error)
    .map((p) => `${p.path || "body"}: ${p.message}`)
    .join("; ");
}

/** API Gateway's choice: at each segment a literal beats a `{parameter}`. */
export function routeOf(method: string, path: string): RouteSpec | undefined {
  const segments = path.split("/").filter(Boolean);
  const candidates = ROUTES.filter((route) => {
    const pattern = route.path.split("/").filter(Boolean);
    return (
      route.method === method &&
      pattern.length === segments.length &&
      pattern.every((part, i) => part.startsWith("{") || part === segments[i])
    );
  });
  const literals = (route: RouteSpec) => route.path.split("/").map((part) => (part.startsWith("{") ? 0 : 1));
  return candidates.sort((a, b) => {
    const [la, lb] = [literals(a), literals(b)];
    const i = la.findIndex((bit, index) => bit !== lb[index]);
    return i === -1 ? 0 : (lb[i] ?? 0) - (la[i] ?? 0);
  })[0];
}
