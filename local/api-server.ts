import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from "aws-lambda";
import type { ErrorCode } from "../core/errors";
import { AUTH_CONTEXT_KEYS, ROUTES, type RouteSpec } from "../functions/routes";
import type { ApiTokens } from "./config";
import { runInvocation } from "./lambda";
import { LocalStream, type LocalStreamOptions, STREAM_PATH } from "./stream-server";
import { callerOf, isTableToken, type TableCaller } from "./table-tokens";
import { serveWebAsset } from "./web-assets";

/**
 * The local API Gateway: a node:http server in front of the same handler modules that run as
 * Lambda functions in AWS. It does what API Gateway (REST API, Lambda proxy integration) and the
 * TOKEN authorizer do there, and nothing more: resolve the route, check the bearer token, build
 * the v1 proxy event, call `handler(event, context)`, write its result back.
 */

export type ApiHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;

export interface ApiServerOptions {
  /** 0: a free port. */
  readonly port: number;
  /** @default "127.0.0.1" */
  readonly host?: string;
  readonly tokens: ApiTokens;
  /** One access-log line per request on stdout. @default false */
  readonly log?: boolean;
  /** The routes to serve. @default ROUTES (functions/routes.ts) */
  readonly routes?: readonly RouteSpec[];
  /** Loads a route's handler, once per route. @default import of functions/api/<route.handler> */
  readonly loadHandler?: (route: RouteSpec) => Promise<ApiHandler>;
  /** WS /jobs/stream and its `@connections` management API (local/stream-server.ts). */
  readonly stream?: Omit<LocalStreamOptions, "tokens">;
  /** The dashboard's built files (web/dist), served at `/` and `/assets/*` only. @default none */
  readonly webDir?: string;
  /**
   * Called when a request that may have written (any method but GET, HEAD and OPTIONS) has been
   * answered: the local stack reads the Jobs table's stream at once (local/dynamo-streams.ts).
   */
  readonly onWrite?: () => void;
}

export interface ApiServer {
  /** e.g. `http://127.0.0.1:3000`, without a trailing slash. */
  readonly url: string;
  /** The job stream's URL on the same port, e.g. `ws://127.0.0.1:3000/jobs/stream`. */
  readonly streamUrl: string;
  /** The stream's `@connections` management API, always on a loopback address. */
  readonly managementUrl: string;
  close(): Promise<void>;
}

/** A handler module does not export `handler` as a function. */
export class HandlerModuleError extends Error {
  constructor(route: RouteSpec) {
    super(`functions/api/${route.handler} does not export a function named handler (route ${route.id})`);
    this.name = "HandlerModuleError";
  }
}

/** API Gateway's own payload limit; the handlers enforce the contract's smaller ones. */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;
/** API Gateway's integration timeout: the remaining time a Lambda behind it can use. */
export const INTEGRATION_TIMEOUT_MS = 29_000;

/** How long close() lets in-flight requests finish before it cuts their connections. */
const CLOSE_GRACE_MS = 3_000;
/** Dummy account, in the shape of a real one, for ARNs and the request context. */
const LOCAL_ACCOUNT = "000000000000";
const LOCAL_REGION = "us-east-1";
const STAGE = "local";

const READ_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const host = options.host ?? "127.0.0.1";
  const router = new Router(options.routes ?? ROUTES);
  const handlers = new HandlerCache(options.loadHandler ?? importHandler);
  const stream = new LocalStream({ ...options.stream, tokens: options.tokens });

  const server = createServer((request, response) => {
    const started = performance.now();
    const path = (request.url ?? "/").split("?")[0] ?? "/";
    const webDir = options.webDir;
    const served = LocalStream.isManagementPath(path)
      ? stream.handleManagement(request, response, path)
      : webDir === undefined
        ? serve(request, response, router, handlers, options.tokens)
        : serveWebAsset(request, response, path, webDir).then((answered) =>
            answered ? undefined : serve(request, response, router, handlers, options.tokens),
          );
    served
      .catch((error: unknown) => {
        // serve() answers its own errors; this is the last resort for a failure while answering.
        console.error("local api: request failed", error);
        if (!response.headersSent)
          sendError(response, 500, "internal", "internal error", { requestId: randomUUID() });
        else response.destroy();
      })
      .finally(() => {
        if (options.log) accessLog(request, response, started);
        if (!READ_METHODS.has(request.method ?? "GET")) options.onWrite?.();
      });
  });
  server.on("upgrade", (request, socket, head) => stream.handleUpgrade(request, socket, head));
  server.listen(options.port, host);
  await new Promise<void>((ready, fail) => {
    server.once("listening", ready);
    server.once("error", fail);
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}`,
    streamUrl: `ws://${urlHost}:${port}${STREAM_PATH}`,
    // Bound to every address, the server is reached on loopback too; the broadcaster stays there.
    managementUrl: `http://${host === "0.0.0.0" || host === "::" ? "127.0.0.1" : urlHost}:${port}`,
    close: async () => {
      await stream.close();
      await new Promise<void>((closed, fail) => {
        // In-flight requests get a moment to finish; idle keep-alive connections (fetch keeps
        // them) would otherwise hold close() until they time out.
        const force = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        server.close((error) => {
          clearTimeout(force);
          if (error) fail(error);
          else closed();
        });
        server.closeIdleConnections();
      });
    },
  };
}

interface MatchedRoute {
  readonly route: RouteSpec;
  /** Raw (still percent-encoded) segments, as API Gateway passes path parameters. */
  readonly pathParameters: Record<string, string> | null;
}

/**
 * API Gateway's routing: the request path selects a resource first (at each segment a literal
 * beats a `{parameter}`, so `/jobs/batch` is never `/jobs/{id}`), then the method selects within
 * that resource. GET /jobs/batch is therefore no route at all, not GET /jobs/{id} with id "batch".
 */
class Router {
  private readonly resources = new Map<
    string,
    { readonly segments: readonly string[]; methods: RouteSpec[] }
  >();

  constructor(routes: readonly RouteSpec[]) {
    for (const route of routes) {
      const resource = this.resources.get(route.path) ?? { segments: splitPath(route.path), methods: [] };
      resource.methods.push(route);
      this.resources.set(route.path, resource);
    }
  }

  match(method: string, path: string): MatchedRoute | undefined {
    const segments = splitPath(path);
    let best: { readonly segments: readonly string[]; readonly methods: readonly RouteSpec[] } | undefined;
    for (const resource of this.resources.values()) {
      if (!segmentsMatch(resource.segments, segments)) continue;
      if (!best || moreSpecific(resource.segments, best.segments)) best = resource;
    }
    const route = best?.methods.find((candidate) => candidate.method === method);
    if (!best || !route) return undefined;
    // The names come from ROUTES, not the client, but collected the same way as the other maps.
    const pathParameters = new Map<string, string>();
    best.segments.forEach((segment, index) => {
      const name = parameterName(segment);
      const value = segments[index];
      if (name !== undefined && value !== undefined) pathParameters.set(name, value);
    });
    return { route, pathParameters: pathParameters.size > 0 ? ownRecord(pathParameters) : null };
  }
}

function splitPath(path: string): string[] {
  // "/jobs/" is "/jobs", as in API Gateway; "/" is the root resource with no segments.
  return path
    .split("/")
    .filter((segment, index, all) => index > 0 && !(segment === "" && index === all.length - 1));
}

function parameterName(segment: string): string | undefined {
  return /^\{([^{}]+)\}$/.exec(segment)?.[1];
}

function segmentsMatch(pattern: readonly string[], segments: readonly string[]): boolean {
  return (
    pattern.length === segments.length &&
    pattern.every((part, index) => {
      const actual = segments[index];
      return parameterName(part) !== undefined ? actual !== undefined && actual !== "" : part === actual;
    })
  );
}

/** The first segment where they differ decides: a literal there beats a parameter. */
function moreSpecific(a: readonly string[], b: readonly string[]): boolean {
  for (let index = 0; index < a.length; index++) {
    const aLiteral = parameterName(a[index] ?? "") === undefined;
    const bLiteral = parameterName(b[index] ?? "") === undefined;
    if (aLiteral !== bLiteral) return aLiteral;
  }
  return false;
}

class HandlerCache {
  private readonly loaded = new Map<string, Promise<ApiHandler>>();

  constructor(private readonly load: (route: RouteSpec) => Promise<ApiHandler>) {}

  get(route: RouteSpec): Promise<ApiHandler> {
    let handler = this.loaded.get(route.id);
    if (!handler) {
      handler = this.load(route);
      this.loaded.set(route.id, handler);
      // A failed import (a handler not written yet, a syntax error) is retried on the next request.
      handler.catch(() => this.loaded.delete(route.id));
    }
    return handler;
  }
}

/** The default loader: the module a Lambda function of this route would run. */
async function importHandler(route: RouteSpec): Promise<ApiHandler> {
  const module: { handler?: unknown } = await import(`../functions/api/${route.handler}`);
  if (typeof module.handler !== "function") throw new HandlerModuleError(route);
  return module.handler as ApiHandler;
}

async function serve(
  request: IncomingMessage,
  response: ServerResponse,
  router: Router,
  handlers: HandlerCache,
  tokens: ApiTokens,
): Promise<void> {
  const url = requestUrl(request.url ?? "/");
  const method = request.method ?? "GET";
  const match = url && router.match(method, url.pathname);
  if (!url || !match) {
    request.resume();
    return sendError(response, 404, "not_found", "no route matches this method and path");
  }

  let caller: { readonly principal: string; readonly role: string; readonly project?: string } | undefined;
  if (match.route.authorized) {
    caller = authorize(request, tokens) ?? (await authorizeFromTable(request));
    if (!caller) {
      request.resume();
      return sendError(response, 401, "unauthorized", "missing or unknown bearer token");
    }
  }

  const body = await readBody(request);
  if (body === TOO_LARGE) {
    // Whatever the client still sends is discarded unread, and the connection ends with the answer.
    request.resume();
    response.setHeader("connection", "close");
    sendError(response, 413, "payload_too_large", "request body too large");
    return;
  }

  const event = proxyEvent(request, url, match, body, caller);
  const context = lambdaContext(match.route);
  let result: APIGatewayProxyResult;
  try {
    const handler = await handlers.get(match.route);
    // Its own invocation context: requests run side by side in this process (local/lambda.ts).
    result = await runInvocation(context, () => handler(event, context));
  } catch (error) {
    // API Gateway shows a failed invocation as a bare 5xx; the error stays in the logs.
    console.error(`local api: ${match.route.id} (${event.requestContext.requestId}) failed`, error);
    return sendError(response, 500, "internal", "internal error", {
      requestId: event.requestContext.requestId,
    });
  }
  if (!isProxyResult(result)) {
    console.error(
      `local api: ${match.route.id} (${event.requestContext.requestId}) returned a malformed proxy result`,
      result,
    );
    return sendError(response, 500, "internal", "internal error", {
      requestId: event.requestContext.requestId,
    });
  }
  writeResult(response, result);
}

/** The request target as a URL; undefined when it is not one (bad input is never a 500). */
function requestUrl(target: string): URL | undefined {
  try {
    // Prefixed rather than resolved against a base: "//jobs" is a path here, not a host.
    return new URL(target.startsWith("/") ? `http://local${target}` : target);
  } catch {
    return undefined;
  }
}

/** The TOKEN authorizer: `Authorization: Bearer <token>` of a known token, else nobody. */
function authorize(
  request: IncomingMessage,
  tokens: ApiTokens,
): { principal: string; role: string; project?: string } | undefined {
  const token = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "")?.[1];
  return token === undefined ? undefined : tokens.get(token);
}

/**
 * A token of the Tokens table (local/table-tokens.ts), asked of the REST API's authorizer module;
 * loaded on first use, so a stack whose callers use only JOBQ_API_TOKENS never reads the table.
 */
async function authorizeFromTable(request: IncomingMessage): Promise<TableCaller | undefined> {
  const token = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "")?.[1];
  if (token === undefined || !isTableToken(token)) return undefined;
  const { authorize: tableAuthorizer } = await import("../functions/authorizer");
  return callerOf(() =>
    tableAuthorizer({
      type: "TOKEN",
      authorizationToken: `Bearer ${token}`,
      methodArn: `arn:aws:execute-api:${LOCAL_REGION}:${LOCAL_ACCOUNT}:local/${STAGE}/${request.method ?? "GET"}/`,
    }),
  );
}

const TOO_LARGE = Symbol("too large");

/**
 * The body as UTF-8, or TOO_LARGE as soon as it is known to exceed the limit: from the declared
 * Content-Length before reading anything, else while streaming. Never buffers past the limit.
 */
function readBody(request: IncomingMessage): Promise<string | null | typeof TOO_LARGE> {
  if (Number(request.headers["content-length"] ?? 0) > MAX_BODY_BYTES) return Promise.resolve(TOO_LARGE);
  return new Promise((settle, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) {
        chunks.push(chunk);
        return;
      }
      // Keep the stream flowing (the rest is discarded) so the 413 can still be written back.
      request.off("data", onData).off("end", onEnd).off("error", fail);
      request.resume();
      settle(TOO_LARGE);
    };
    const onEnd = () => settle(size === 0 ? null : Buffer.concat(chunks).toString("utf8"));
    request.on("data", onData).once("end", onEnd).once("error", fail);
  });
}

function proxyEvent(
  request: IncomingMessage,
  url: URL,
  match: MatchedRoute,
  body: string | null,
  caller: { readonly principal: string; readonly role: string; readonly project?: string } | undefined,
): APIGatewayProxyEvent {
  const { headers, multiValueHeaders } = requestHeaders(request.rawHeaders);
  const { single, multi } = queryParameters(url.searchParams);
  const now = new Date();
  const method = request.method ?? "GET";
  return {
    resource: match.route.path,
    path: url.pathname,
    httpMethod: method,
    headers,
    multiValueHeaders,
    queryStringParameters: single,
    multiValueQueryStringParameters: multi,
    pathParameters: match.pathParameters,
    stageVariables: null,
    body,
    isBase64Encoded: false,
    requestContext: {
      accountId: LOCAL_ACCOUNT,
      apiId: "local",
      // What API Gateway passes from a Lambda authorizer: its context, plus the principalId it
      // returned. Routes without an authorizer get none.
      authorizer: caller
        ? {
            [AUTH_CONTEXT_KEYS.principal]: caller.principal,
            [AUTH_CONTEXT_KEYS.role]: caller.role,
            ...(caller.project !== undefined ? { [AUTH_CONTEXT_KEYS.project]: caller.project } : {}),
            principalId: caller.principal,
            integrationLatency: 0,
          }
        : null,
      protocol: `HTTP/${request.httpVersion}`,
      httpMethod: method,
      identity: {
        accessKey: null,
        accountId: null,
        apiKey: null,
        apiKeyId: null,
        caller: null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: request.socket.remoteAddress ?? "127.0.0.1",
        user: null,
        userAgent: request.headers["user-agent"] ?? null,
        userArn: null,
      },
      path: `/${STAGE}${url.pathname}`,
      stage: STAGE,
      requestId: randomUUID(),
      requestTime: now.toISOString(),
      requestTimeEpoch: now.getTime(),
      resourceId: match.route.id,
      resourcePath: match.route.path,
      domainName: request.headers.host ?? "localhost",
    },
  };
}

/**
 * Headers with the client's spelling (rawHeaders), as API Gateway passes them: a handler that
 * looks a header up case-sensitively fails here as it would in AWS. The single-value map keeps
 * the last value of a repeated header, like API Gateway.
 */
function requestHeaders(rawHeaders: readonly string[]): {
  headers: Record<string, string>;
  multiValueHeaders: Record<string, string[]>;
} {
  const headers = new Map<string, string>();
  const multiValueHeaders = new Map<string, string[]>();
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    const name = rawHeaders[index] ?? "";
    const value = rawHeaders[index + 1] ?? "";
    headers.set(name, value);
    appendValue(multiValueHeaders, name, value);
  }
  return { headers: ownRecord(headers), multiValueHeaders: ownRecord(multiValueHeaders) };
}

/** Decoded query parameters; both maps are null when there are none, as in API Gateway. */
function queryParameters(params: URLSearchParams): {
  single: Record<string, string> | null;
  multi: Record<string, string[]> | null;
} {
  const single = new Map<string, string>();
  const multi = new Map<string, string[]>();
  for (const [name, value] of params) {
    single.set(name, value);
    appendValue(multi, name, value);
  }
  return single.size === 0
    ? { single: null, multi: null }
    : { single: ownRecord(single), multi: ownRecord(multi) };
}

function appendValue(map: Map<string, string[]>, name: string, value: string): void {
  const values = map.get(name);
  if (values) values.push(value);
  else map.set(name, [value]);
}

/**
 * A map of client-chosen names as the plain object a proxy event carries, every name an own
 * property: the names are collected in a Map, not in an object, so `constructor`, `toString` or
 * `__proto__` are never read from (or written to) Object.prototype. The object has a prototype,
 * like the JSON.parse'd event a Lambda gets in AWS (where `__proto__` is an own key too), so a
 * handler sees the same thing in both places; defineProperty, not assignment, makes `__proto__`
 * an own key instead of changing the prototype.
 */
function ownRecord<T>(map: ReadonlyMap<string, T>): Record<string, T> {
  const record: Record<string, T> = {};
  for (const [name, value] of map) {
    Object.defineProperty(record, name, { value, enumerable: true, writable: true, configurable: true });
  }
  return record;
}

function lambdaContext(route: RouteSpec): Context {
  const deadline = Date.now() + INTEGRATION_TIMEOUT_MS;
  const functionName = `jobq-local-${route.id}`;
  const unsupported = (): never => {
    throw new Error("the callback-style Lambda API is not supported: return a promise");
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: "$LATEST",
    invokedFunctionArn: `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${functionName}`,
    memoryLimitInMB: "1024",
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: "local",
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}

function isProxyResult(value: unknown): value is APIGatewayProxyResult {
  if (typeof value !== "object" || value === null) return false;
  const result = value as Partial<Record<keyof APIGatewayProxyResult, unknown>>;
  return (
    Number.isInteger(result.statusCode) &&
    (result.body === undefined || typeof result.body === "string") &&
    (result.headers === undefined || (typeof result.headers === "object" && result.headers !== null)) &&
    (result.multiValueHeaders === undefined ||
      (typeof result.multiValueHeaders === "object" && result.multiValueHeaders !== null))
  );
}

/**
 * As API Gateway merges them: multiValueHeaders win for a name present in both, otherwise
 * headers add their single value.
 */
function writeResult(response: ServerResponse, result: APIGatewayProxyResult): void {
  const multi = result.multiValueHeaders ?? {};
  const multiNames = new Set(Object.keys(multi).map((name) => name.toLowerCase()));
  for (const [name, values] of Object.entries(multi)) {
    response.setHeader(name, values.map(String));
  }
  for (const [name, value] of Object.entries(result.headers ?? {})) {
    if (!multiNames.has(name.toLowerCase())) response.setHeader(name, String(value));
  }
  response.statusCode = result.statusCode;
  const body = result.body ?? "";
  response.end(result.isBase64Encoded ? Buffer.from(body, "base64") : body);
}

/**
 * The answers API Gateway gives itself, with the bodies of the JobApi construct's gateway
 * responses (lib/job-api.ts), so a client sees the same error locally and in AWS.
 */
function sendError(
  response: ServerResponse,
  status: number,
  code: ErrorCode,
  message: string,
  details?: { readonly requestId: string },
): void {
  response.statusCode = status;
  response.setHeader("content-type", "application/json; charset=utf-8");
  response.end(JSON.stringify({ error: details ? { code, message, details } : { code, message } }));
}

function accessLog(request: IncomingMessage, response: ServerResponse, started: number): void {
  const ms = (performance.now() - started).toFixed(1);
  process.stdout.write(
    `${new Date().toISOString()} ${request.method} ${request.url} ${response.statusCode} ${ms}ms\n`,
  );
}
