import type { RouteSpec } from "../../functions/routes";
import { type ApiHandler, startApiServer } from "../../local/api-server";
import { type ApiPrincipal, applyStreamEnvironment } from "../../local/config";

/**
 * The local API front for integration tests: the real handler modules behind startApiServer on a
 * free loopback port, and a small fetch wrapper. Tests isolate themselves by principal (use your
 * own, e.g. `alice-<test>`, when listing) and by the ids they create, never by wiping tables.
 */

export const DEFAULT_TEST_TOKENS: Readonly<Record<string, ApiPrincipal>> = {
  "alice-token": { principal: "alice", role: "user" },
  "bob-token": { principal: "bob", role: "user" },
  "admin-token": { principal: "ops", role: "admin" },
};

export interface TestResponse<T = unknown> {
  readonly status: number;
  readonly headers: Headers;
  /** The parsed JSON body; null when the body is empty. */
  readonly json: T;
}

export interface RequestOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token?: string;
  /** A string is sent as is; anything else as JSON. */
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface TestApi {
  readonly url: string;
  /** WS /jobs/stream of this server. */
  readonly streamUrl: string;
  request<T = unknown>(method: string, path: string, options?: RequestOptions): Promise<TestResponse<T>>;
  close(): Promise<void>;
}

export interface TestApiOverrides {
  /** Serve these routes instead of ROUTES. */
  readonly routes?: readonly RouteSpec[];
  /** Stand-in handlers, e.g. one that echoes the event it received. */
  readonly loadHandler?: (route: RouteSpec) => Promise<ApiHandler>;
}

export async function startTestApi(
  tokens: Readonly<Record<string, ApiPrincipal>> = DEFAULT_TEST_TOKENS,
  overrides: TestApiOverrides = {},
): Promise<TestApi> {
  const server = await startApiServer({
    port: 0,
    host: "127.0.0.1",
    tokens: new Map(Object.entries(tokens)),
    ...overrides,
  });
  // As the local stack does: GET /health and the broadcaster find the stream of this server.
  applyStreamEnvironment({ streamUrl: server.streamUrl, managementEndpoint: server.managementUrl });
  return {
    url: server.url,
    streamUrl: server.streamUrl,
    request: (method, path, options) => request(server.url, method, path, options),
    close: () => server.close(),
  };
}

export async function request<T = unknown>(
  baseUrl: string,
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<TestResponse<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (typeof options.body === "string") body = options.body;
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["content-type"] ??= "application/json";
  }
  const response = await fetch(`${baseUrl}${path}`, { method, headers, body });
  const text = await response.text();
  // The handlers' contract is JSON everywhere; a non-JSON body fails the test loudly here.
  return {
    status: response.status,
    headers: response.headers,
    json: (text === "" ? null : JSON.parse(text)) as T,
  };
}
