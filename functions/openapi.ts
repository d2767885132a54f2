import { z } from "zod";
import {
  apiResponses,
  ERROR_CODES,
  streamClientMessageSchema,
  streamServerMessageSchema,
} from "../core/api-schemas";
import type { ErrorCode } from "../core/errors";
import { HTTP_STATUS } from "./http";
import { apiRequests, ROUTE_DOCS, type RouteDoc } from "./route-docs";
import { ROUTES, type RouteSpec } from "./routes";

/**
 * The OpenAPI 3.1 document of the API, built from ROUTES (functions/routes.ts), their
 * documentation (functions/route-docs.ts) and the zod schemas the handlers parse and answer
 * with, converted by zod's own JSON Schema output (draft 2020-12, which OpenAPI 3.1 uses).
 * Served at GET /openapi.json and written to docs/openapi.json by `npm run openapi`.
 */

export type JsonSchema = Record<string, unknown>;
export type OpenApiDocument = Record<string, unknown> & {
  readonly openapi: string;
  readonly paths: Record<string, Record<string, OpenApiOperation>>;
  readonly components: { readonly schemas: Record<string, JsonSchema>; readonly [key: string]: unknown };
};
export interface OpenApiOperation {
  readonly operationId: string;
  readonly responses: Record<string, unknown>;
  readonly [key: string]: unknown;
}

/** Bumped by hand when the contract changes in a way clients should notice. */
export const API_VERSION = "1.0.0";

export const SCHEMA_REF_PREFIX = "#/components/schemas/";

const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"] as const;

/** Errors any route may answer: a bug (500) and API Gateway's throttling (429). */
const ALWAYS: readonly ErrorCode[] = ["internal", "too_many_requests"];

/** A route without documentation: the contract test names it, and so does the generator. */
export class UndocumentedRouteError extends Error {
  constructor(route: RouteSpec) {
    super(`route ${route.id} (${route.method} ${route.path}) has no entry in functions/route-docs.ts`);
    this.name = "UndocumentedRouteError";
  }
}

export function buildOpenApiDocument(routes: readonly RouteSpec[] = ROUTES): OpenApiDocument {
  const responseSchemas = components(apiResponses, "output");
  const requestSchemas = components(apiRequests, "input");
  const paths: Record<string, Record<string, OpenApiOperation>> = {};
  for (const route of routes) {
    const doc = ROUTE_DOCS[route.id];
    if (!doc) throw new UndocumentedRouteError(route);
    const operations = paths[route.path] ?? {};
    operations[route.method.toLowerCase()] = operation(route, doc);
    paths[route.path] = operations;
  }
  return {
    openapi: "3.1.0",
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    info: {
      title: "jobq",
      version: API_VERSION,
      description:
        'A job queue and scheduler. Errors always come as `{"error": {"code", "message", "details"}}`; ' +
        "lists take `limit` (1..200, default 50) and `cursor` and answer `{items, nextCursor}`.",
    },
    // Relative: resolved against where this document is served (in AWS, under the stage).
    servers: [{ url: ".", description: "where this document is served from" }],
    security: [{ bearer: [] }],
    tags: [
      { name: "jobs", description: "submit, read and act on jobs" },
      { name: "queue", description: "the queue, the pools and the statistics" },
      { name: "schedules", description: "recurring schedules that submit jobs" },
      { name: "admin", description: "policy and quotas" },
      { name: "service", description: "health and this document" },
    ],
    paths,
    components: {
      schemas: { ...responseSchemas, ...requestSchemas },
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description: "a token maps to a principal and a role (user or admin)",
        },
      },
    },
    "x-websocket": streamDocumentation(),
  };
}

/** A registry's schemas as components, each named by its id and referring to the others by $ref. */
function components(
  registry: z.core.$ZodRegistry<{ id: string }>,
  io: "input" | "output",
): Record<string, JsonSchema> {
  const { schemas } = z.toJSONSchema(registry, {
    ...conversion(io),
    uri: (id) => `${SCHEMA_REF_PREFIX}${id}`,
  });
  const named: Record<string, JsonSchema> = {};
  for (const [id, schema] of Object.entries(schemas)) {
    // $id and $schema are the document's business (jsonSchemaDialect), not each component's.
    const { $id: _id, $schema: _schema, ...rest } = schema as JsonSchema;
    named[id] = rest;
  }
  return named;
}

/**
 * Requests are converted as the client writes them (`input`: before defaults and transforms),
 * responses as the server writes them (`output`). z.custom has no JSON Schema of its own; its
 * metadata says what it accepts (core/job.ts's label maps). Response objects leave
 * additionalProperties open, even where the same schema is strict on input (the policy): a field
 * added later must not break a validating client.
 */
function conversion(io: "input" | "output"): z.core.ToJSONSchemaParams {
  return {
    target: "draft-2020-12",
    io,
    unrepresentable: ({ zodSchema, message }) => {
      if (zodSchema._zod.def.type === "custom") return "any";
      throw new Error(`no JSON Schema for this schema: ${message}`);
    },
    override: ({ zodSchema, jsonSchema }) => {
      const def = zodSchema._zod.def;
      if (io === "output" && def.type === "object" && jsonSchema.additionalProperties === false) {
        delete jsonSchema.additionalProperties;
      }
    },
  };
}

function operation(route: RouteSpec, doc: RouteDoc): OpenApiOperation {
  const parameters = [...pathParameters(route.path), ...headerParameters(doc), ...queryParameters(doc)];
  return {
    operationId: operationId(route.id),
    summary: doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    tags: [doc.tag],
    // Open routes say so; the others inherit the document's bearer security.
    ...(route.authorized ? {} : { security: [] }),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(doc.body
      ? {
          requestBody: {
            required: !doc.bodyOptional,
            content: {
              [doc.bodyContentType ?? "application/json"]: {
                schema: { $ref: refOf(apiRequests, doc.body, route) },
              },
            },
          },
        }
      : {}),
    responses: { ...successResponses(route, doc), ...errorResponses(route, doc) },
  };
}

/** "SubmitJob" → "submitJob", the name generated clients give the method. */
function operationId(id: string): string {
  return id.charAt(0).toLowerCase() + id.slice(1);
}

function pathParameters(path: string): object[] {
  return [...path.matchAll(/\{([^{}]+)\}/g)].map(([, name]) => ({
    name,
    in: "path",
    required: true,
    schema: { type: "string", minLength: 1 },
  }));
}

function headerParameters(doc: RouteDoc): object[] {
  return Object.entries(doc.headers ?? {}).map(([name, description]) => ({
    name,
    in: "header",
    required: false,
    description,
    schema: { type: "string", minLength: 1, maxLength: 255 },
  }));
}

/** One parameter per property of the route's query schema, as the client writes it. */
function queryParameters(doc: RouteDoc): object[] {
  if (!doc.query) return [];
  const schema = z.toJSONSchema(doc.query, conversion("input")) as {
    properties?: Record<string, JsonSchema>;
    required?: string[];
  };
  return Object.entries(schema.properties ?? {}).map(([name, property]) => {
    const { description: fromSchema, ...rest } = property;
    const description = doc.parameters?.[name] ?? fromSchema;
    return {
      name,
      in: "query",
      required: schema.required?.includes(name) ?? false,
      ...(typeof description === "string" ? { description } : {}),
      schema: rest,
    };
  });
}

function refOf(registry: z.core.$ZodRegistry<{ id: string }>, schema: z.ZodType, route: RouteSpec): string {
  const id = registry.get(schema)?.id;
  if (!id) throw new Error(`route ${route.id}: a schema in functions/route-docs.ts is not registered`);
  return `${SCHEMA_REF_PREFIX}${id}`;
}

function successResponses(route: RouteSpec, doc: RouteDoc): Record<string, object> {
  const responses: Record<string, object> = {};
  for (const [status, response] of Object.entries(doc.responses)) {
    responses[status] = {
      description: response.description,
      ...(response.headers
        ? {
            headers: Object.fromEntries(
              Object.entries(response.headers).map(([name, description]) => [
                name,
                { description, schema: { type: "string" } },
              ]),
            ),
          }
        : {}),
      // A 204 has no body, so no content.
      ...(response.schema
        ? {
            content: {
              [response.contentType ?? "application/json"]: {
                schema: { $ref: refOf(apiResponses, response.schema, route) },
              },
            },
          }
        : {}),
    };
  }
  return responses;
}

/** The error codes a route may answer: its own and those that follow from its shape. */
export function routeErrorCodes(route: RouteSpec, doc: RouteDoc): ErrorCode[] {
  const codes = new Set<ErrorCode>([...ALWAYS, ...(doc.errors ?? [])]);
  if (route.authorized) codes.add("unauthorized");
  if (doc.body || doc.query || route.path.includes("{")) codes.add("validation_failed");
  if (doc.body) codes.add("payload_too_large");
  return ERROR_CODES.filter((code) => codes.has(code));
}

function errorResponses(route: RouteSpec, doc: RouteDoc): Record<string, object> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of routeErrorCodes(route, doc)) {
    const status = HTTP_STATUS[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Record<string, object> = {};
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    responses[String(status)] = {
      description: `error code ${codes.join(" or ")}`,
      ...(status === HTTP_STATUS.too_many_requests
        ? {
            headers: {
              "Retry-After": {
                description: "seconds to wait before sending again",
                schema: { type: "integer" },
              },
            },
          }
        : {}),
      content: { "application/json": { schema: { $ref: `${SCHEMA_REF_PREFIX}Error` } } },
    };
  }
  return responses;
}

/** OpenAPI has no WebSockets: the stream is described in an extension, its messages as schemas. */
function streamDocumentation(): object {
  return {
    "/jobs/stream": {
      description:
        "WebSocket. Its URL is GET /health's streamUrl. Authenticate with `Authorization: Bearer <token>` " +
        'on the upgrade request or `?token=`. The server sends `{type: "job", job}` on every change of a ' +
        "job the principal can see (without payload and result, with version: at least once, ordered per " +
        'job by version; a client drops versions it has seen). `{action: "subscribe", jobIds}` narrows ' +
        'the stream, `{action: "subscribe", all: true}` widens it again, `{action: "ping"}` is answered ' +
        '`{type: "pong"}`. After a reconnect a client catches up with GET /jobs?updatedSince=.',
      clientMessages: z.toJSONSchema(streamClientMessageSchema, conversion("input")),
      serverMessages: z.toJSONSchema(streamServerMessageSchema, conversion("output")),
    },
  };
}

/** The path+method pairs a document has, as `METHOD /path`. */
export function documentedOperations(document: OpenApiDocument): string[] {
  return Object.entries(document.paths).flatMap(([path, operations]) =>
    Object.keys(operations)
      .filter((method): method is (typeof HTTP_METHODS)[number] =>
        (HTTP_METHODS as readonly string[]).includes(method),
      )
      .map((method) => `${method.toUpperCase()} ${path}`),
  );
}
