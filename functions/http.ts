import middy from "@middy/core";
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from "aws-lambda";
import { logger } from "../app/logger";
import {
  type ErrorCode,
  ForbiddenError,
  JobqError,
  PayloadTooLargeError,
  TooManyRequestsError,
  UnauthorizedError,
  ValidationError,
} from "../core/errors";
import { isReadOnlyRole, type Principal, principalOfRole } from "../core/principal";
import { config } from "./config";
import { withCorsOrigin } from "./cors";
import { observability } from "./observability";
import { AUTH_CONTEXT_KEYS } from "./routes";

export { logger };

/**
 * The HTTP edge shared by every API handler: who is calling, the JSON body, and the one
 * mapping from domain errors to API.md's error format and status codes.
 */

export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  validation_failed: 400,
  unknown_dependency: 400,
  dependency_cycle: 400,
  unknown_type: 400,
  unsatisfiable_resources: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  invalid_transition: 409,
  idempotency_key_reused: 409,
  payload_too_large: 413,
  too_many_requests: 429,
  internal: 500,
};

export type { Principal };

/** The caller as the authorizer (AWS) or the local front (npm start) put it in the context. */
export function principalOf(event: APIGatewayProxyEvent): Principal {
  const authorizer = event.requestContext?.authorizer ?? {};
  const id = authorizer[AUTH_CONTEXT_KEYS.principal];
  if (typeof id !== "string" || id.length === 0) throw new UnauthorizedError();
  return principalOfRole(id, authorizer[AUTH_CONTEXT_KEYS.role], authorizer[AUTH_CONTEXT_KEYS.project]);
}

/** Methods that change nothing: the only ones a read-only token (reader, auditor) may send. */
const READ_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * The one place read-only tokens are refused: before any use case runs, so no route can forget
 * it, and by the request's method, which the route table (functions/routes.ts) fixes for every
 * route. A 403, not a 404: what is refused is the role, whatever the target.
 */
export function refuseReadOnlyWrites(event: APIGatewayProxyEvent): void {
  const role = event.requestContext?.authorizer?.[AUTH_CONTEXT_KEYS.role];
  if (isReadOnlyRole(role) && !READ_METHODS.has((event.httpMethod ?? "").toUpperCase())) {
    throw new ForbiddenError(
      `a ${String(role)} token is read-only: it may not ${event.httpMethod} ${event.path}`,
    );
  }
}

export function json(
  statusCode: number,
  body: unknown,
  headers: Record<string, string> = {},
): APIGatewayProxyResult {
  return {
    statusCode,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
    body: JSON.stringify(body),
  };
}

export function errorResponse(error: unknown): APIGatewayProxyResult {
  if (error instanceof JobqError) {
    const body: { code: ErrorCode; message: string; details?: unknown } = {
      code: error.code,
      message: error.message,
    };
    if (error.details !== undefined) body.details = error.details;
    const headers: Record<string, string> =
      error instanceof TooManyRequestsError ? { "retry-after": String(error.retryAfterSeconds) } : {};
    return json(HTTP_STATUS[error.code], { error: body }, headers);
  }
  if (isThrottling(error)) {
    // AWS throttled us past the SDK's retries: the request is fine and may be sent again.
    logger.warn("throttled past the SDK's retries; answering 429", { error: error as Error });
    return errorResponse(
      new TooManyRequestsError("the service is busy; retry shortly", THROTTLED_RETRY_AFTER),
    );
  }
  logger.error("unhandled error", { error: error as Error });
  return json(500, { error: { code: "internal", message: "internal error" } });
}

/** Seconds a client is asked to wait after jobq itself was throttled by an AWS service. */
const THROTTLED_RETRY_AFTER = 2;

/** The AWS SDK's throttling errors, as its retry strategy recognizes them. */
const THROTTLING_ERRORS = new Set([
  "ThrottlingException",
  "ProvisionedThroughputExceededException",
  "RequestLimitExceeded",
  "TooManyRequestsException",
  "Throttling",
]);

function isThrottling(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const retryable = (error as { $retryable?: { throttling?: boolean } }).$retryable;
  return retryable?.throttling === true || THROTTLING_ERRORS.has(error.name);
}

/** A header, case-insensitively, as API Gateway passes them through as sent. */
export function header(event: APIGatewayProxyEvent, name: string): string | undefined {
  const wanted = name.toLowerCase();
  // Object.entries reads own names only, so no header name can find Object.prototype's members.
  for (const [key, value] of Object.entries(event.headers ?? {})) {
    if (key.toLowerCase() === wanted && typeof value === "string") return value;
  }
  return undefined;
}

/**
 * The request body as JSON. Size is checked before parsing so an oversized body costs nothing;
 * malformed JSON is a 400 naming the problem, never a 500.
 */
export function jsonBody(event: APIGatewayProxyEvent, maxBytes: number): unknown {
  const raw =
    event.isBase64Encoded && event.body ? Buffer.from(event.body, "base64").toString("utf8") : event.body;
  if (raw === null || raw === undefined || raw.trim() === "") {
    throw new ValidationError([{ path: "", message: "a JSON body is required" }]);
  }
  const bytes = Buffer.byteLength(raw, "utf8");
  if (bytes > maxBytes) {
    throw new PayloadTooLargeError(`request body is ${bytes} bytes; the limit is ${maxBytes}`, {
      limitBytes: maxBytes,
    });
  }
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch (error) {
    throw new ValidationError([{ path: "", message: `body is not valid JSON: ${(error as Error).message}` }]);
  }
  if (nestingDepth(body) > MAX_BODY_DEPTH) {
    throw new ValidationError([{ path: "", message: `body nests deeper than ${MAX_BODY_DEPTH} levels` }]);
  }
  return body;
}

/** Deeper documents are refused before anything walks them recursively (JSON.stringify would overflow). */
export const MAX_BODY_DEPTH = 64;

/** Nesting depth of a parsed JSON value, iteratively so no input can overflow the stack. */
function nestingDepth(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [node, depth] = next;
    if (node === null || typeof node !== "object") continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_BODY_DEPTH) return deepest;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return deepest;
}

export function pathParameter(event: APIGatewayProxyEvent, name: string): string {
  // hasOwn: a name like "constructor" must not find Object.prototype's member.
  const parameters = event.pathParameters ?? {};
  const value = Object.hasOwn(parameters, name) ? parameters[name] : undefined;
  if (typeof value !== "string" || value === "") {
    throw new ValidationError([{ path: name, message: "path parameter is required" }]);
  }
  try {
    return decodeURIComponent(value);
  } catch {
    throw new ValidationError([{ path: name, message: "is not a valid percent-encoded path segment" }]);
  }
}

/**
 * Query string as a plain object (API Gateway gives null when there is none), every name an own
 * property: defined, not assigned, so `__proto__` is a parameter like any other (a strict schema
 * refuses it with a 400) instead of being swallowed as the object's prototype.
 */
export function queryParameters(event: APIGatewayProxyEvent): Record<string, string> {
  const query: Record<string, string> = {};
  for (const [key, value] of Object.entries(event.queryStringParameters ?? {})) {
    if (typeof value === "string") {
      Object.defineProperty(query, key, { value, enumerable: true, writable: true, configurable: true });
    }
  }
  return query;
}

export type RouteHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;

/**
 * Wraps a route's use case in the middy chain every API handler shares: tracing and the Lambda context in
 * every log line, every error mapped to the contract's format, and every answer, error or not,
 * readable by the dashboard's page where it has an origin of its own (JOBQ_CORS_ORIGIN, AWS).
 * The configuration is read here, when the handler module is loaded (Lambda's init), like every
 * handler's context: a bad variable fails the cold start with a ConfigError naming it, instead of
 * answering 500 to every request. The local stack and the tests set the variables first.
 */
export function apiHandler(route: RouteHandler) {
  const { corsOrigin } = config();
  return middy<APIGatewayProxyEvent, APIGatewayProxyResult>()
    .use(observability())
    .use({
      before: (request) => {
        refuseReadOnlyWrites(request.event);
      },
      after: (request) => {
        request.response = withCorsOrigin(request.response, corsOrigin);
      },
      onError: (request) => {
        request.response = withCorsOrigin(errorResponse(request.error), corsOrigin);
      },
    })
    .handler(route);
}
