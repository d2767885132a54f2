import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { type WebSocket, WebSocketServer } from "ws";
import { STREAM_CLOSE } from "../core/stream";
import { AUTH_CONTEXT_KEYS } from "../functions/routes";
import { handshakeToken } from "../functions/stream/events";
import type { ApiTokens } from "./config";
import { invokeHandler, type LambdaHandler, loadHandlerExport } from "./lambda";
import { callerOf, isTableToken, type TableCaller } from "./table-tokens";

/**
 * The local API Gateway WebSocket API of WS /jobs/stream, on the HTTP API's port: the handshake's
 * token check (the $connect authorizer), the $connect, $default and $disconnect routes calling the
 * same handler modules as in AWS with API-Gateway-shaped events, and the `@connections`
 * management API (POST to send, DELETE to close, GET for info; 410 for an unknown connection)
 * that the broadcaster's ApiGatewayManagementApiClient posts through, on loopback only.
 */

export const STREAM_PATH = "/jobs/stream";
const CONNECTIONS_PREFIX = "/@connections/";

/** API Gateway's WebSocket frame limit: a post above it is refused, as there. */
export const MAX_FRAME_BYTES = 128 * 1024;
/**
 * Unsent bytes a connection may hold before it is closed with 4008 "client too slow": a client
 * that stops reading must cost the server a bounded amount of memory, not all of it.
 */
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;
/** How long a too-slow client has to read up to its close frame before its socket is cut. */
const SLOW_CLIENT_GRACE_MS = 10_000;

export interface StreamRouteHandlers {
  readonly connect: LambdaHandler;
  readonly disconnect: LambdaHandler;
  readonly message: LambdaHandler;
}

export interface LocalStreamOptions {
  readonly tokens: ApiTokens;
  /** @default DEFAULT_MAX_BUFFERED_BYTES */
  readonly maxBufferedBytes?: number;
  /** @default the modules under functions/stream */
  readonly loadHandlers?: () => Promise<StreamRouteHandlers>;
}

interface Connection {
  readonly connectionId: string;
  readonly connectedAt: string;
  readonly sourceIp: string;
  readonly userAgent: string | null;
  readonly principal: string;
  readonly role: string;
  /** Set once the handshake completes; posts before that wait in `pending`. */
  ws: WebSocket | undefined;
  pending: string[];
  lastActiveAt: string;
  /** Client messages are handled one after another, in the order sent. */
  inbox: Promise<void>;
}

const REGION = "us-east-1";

async function importHandlers(): Promise<StreamRouteHandlers> {
  const [connect, disconnect, message] = await Promise.all([
    loadHandlerExport(() => import("../functions/stream/connect"), "functions/stream/connect.ts"),
    loadHandlerExport(() => import("../functions/stream/disconnect"), "functions/stream/disconnect.ts"),
    loadHandlerExport(() => import("../functions/stream/message"), "functions/stream/message.ts"),
  ]);
  return { connect, disconnect, message };
}

export class LocalStream {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private readonly connections = new Map<string, Connection>();
  private readonly maxBuffered: number;
  private handlers: Promise<StreamRouteHandlers> | undefined;
  private closing = false;
  /** $disconnect invocations still running: close() waits for them, DynamoDB may go next. */
  private readonly disconnecting = new Set<Promise<unknown>>();

  constructor(private readonly options: LocalStreamOptions) {
    this.maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  }

  /** Whether this request is the management API's (served by handleManagement). */
  static isManagementPath(path: string): boolean {
    return path.startsWith(CONNECTIONS_PREFIX);
  }

  private loadHandlers(): Promise<StreamRouteHandlers> {
    if (!this.handlers) {
      this.handlers = (this.options.loadHandlers ?? importHandlers)();
      // A failed import is retried on the next handshake.
      this.handlers.catch(() => {
        this.handlers = undefined;
      });
    }
    return this.handlers;
  }

  /** An HTTP upgrade on the API's port: the stream's handshake, or a 404 for any other path. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.upgrade(request, socket, head).catch((error: unknown) => {
      console.error("local stream: handshake failed", error);
      refuse(socket, 500, "internal", "internal error");
    });
  }

  private async upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const url = new URL(request.url ?? "/", "http://local");
    const path = url.pathname.endsWith("/") ? url.pathname.slice(0, -1) : url.pathname;
    if (path !== STREAM_PATH || this.closing) {
      return refuse(socket, 404, "not_found", "no route matches this method and path");
    }
    const query = Object.fromEntries(url.searchParams);
    const token = handshakeToken({ headers: request.headers, queryStringParameters: query });
    const caller =
      token === undefined
        ? undefined
        : (this.options.tokens.get(token) ?? (await tableCaller(token, request, query)));
    if (!caller) return refuse(socket, 401, "unauthorized", "missing or unknown bearer token");

    const now = new Date().toISOString();
    const connection: Connection = {
      // API Gateway's ids are base64 too; base64url keeps them safe in the management API's path.
      connectionId: randomBytes(12).toString("base64url"),
      connectedAt: now,
      lastActiveAt: now,
      sourceIp: request.socket.remoteAddress ?? "127.0.0.1",
      userAgent: request.headers["user-agent"] ?? null,
      principal: caller.principal,
      role: caller.role,
      ws: undefined,
      pending: [],
      inbox: Promise.resolve(),
    };
    // Known before $connect runs: a post that arrives while it runs waits instead of being a 410.
    this.connections.set(connection.connectionId, connection);
    const handlers = await this.loadHandlers();
    const result = asResult(
      await invokeHandler(
        handlers.connect,
        "jobq-stream-connect",
        this.event(connection, "$connect", "CONNECT", query, request),
        REGION,
      ),
    );
    if (result.statusCode < 200 || result.statusCode > 299) {
      this.connections.delete(connection.connectionId);
      return refuse(socket, result.statusCode, "unauthorized", "the connection was refused");
    }
    this.wss.handleUpgrade(request, socket, head, (ws) => this.accept(connection, ws, handlers));
  }

  private accept(connection: Connection, ws: WebSocket, handlers: StreamRouteHandlers): void {
    connection.ws = ws;
    for (const data of connection.pending.splice(0)) this.deliver(connection, data);
    ws.on("message", (data, isBinary) => {
      connection.lastActiveAt = new Date().toISOString();
      const body = isBinary ? Buffer.from(data as Buffer).toString("base64") : String(data);
      connection.inbox = connection.inbox.then(() => this.onMessage(connection, handlers, body));
    });
    ws.once("close", () => {
      this.connections.delete(connection.connectionId);
      const disconnected = invokeHandler(
        handlers.disconnect,
        "jobq-stream-disconnect",
        this.event(connection, "$disconnect", "DISCONNECT"),
        REGION,
      )
        .catch((error: unknown) => console.error("local stream: $disconnect failed", error))
        .finally(() => this.disconnecting.delete(disconnected));
      this.disconnecting.add(disconnected);
    });
    ws.on("error", () => ws.terminate());
  }

  private async onMessage(
    connection: Connection,
    handlers: StreamRouteHandlers,
    body: string,
  ): Promise<void> {
    try {
      const result = asResult(
        await invokeHandler(
          handlers.message,
          "jobq-stream-message",
          { ...this.event(connection, "$default", "MESSAGE"), body, isBase64Encoded: false },
          REGION,
        ),
      );
      // The route response: what the handler returned goes back on the connection.
      if (result.body) this.deliver(connection, result.body);
    } catch (error) {
      console.error("local stream: $default failed", error);
    }
  }

  /** Sends, or closes a client that has stopped reading (4008) instead of buffering without end. */
  private deliver(connection: Connection, data: string): boolean {
    const ws = connection.ws;
    if (!ws) {
      connection.pending.push(data);
      return true;
    }
    if (ws.readyState !== ws.OPEN) return false;
    if (ws.bufferedAmount + Buffer.byteLength(data) > this.maxBuffered) {
      ws.close(STREAM_CLOSE.tooSlow.code, STREAM_CLOSE.tooSlow.reason);
      // The close frame waits behind what is buffered; a client that never reads is cut off.
      setTimeout(() => ws.terminate(), SLOW_CLIENT_GRACE_MS).unref();
      this.connections.delete(connection.connectionId);
      return false;
    }
    ws.send(data);
    return true;
  }

  /**
   * The `@connections` management API. Loopback callers only: in AWS it is IAM-authenticated, and
   * here the broadcaster in this process (or a test) is its only legitimate caller.
   */
  async handleManagement(request: IncomingMessage, response: ServerResponse, path: string): Promise<void> {
    const remote = request.socket.remoteAddress ?? "";
    if (!["127.0.0.1", "::1", "::ffff:127.0.0.1"].includes(remote)) {
      request.resume();
      return managementError(response, 403, "ForbiddenException", "the management API answers loopback only");
    }
    let connectionId: string;
    try {
      connectionId = decodeURIComponent(path.slice(CONNECTIONS_PREFIX.length));
    } catch {
      request.resume();
      return managementError(response, 400, "BadRequestException", "malformed connection id");
    }
    const connection = this.connections.get(connectionId);
    const method = request.method ?? "GET";
    if (method === "POST") {
      const body = await readLimited(request, MAX_FRAME_BYTES);
      if (body === undefined) {
        return managementError(
          response,
          413,
          "PayloadTooLargeException",
          `a message is at most ${MAX_FRAME_BYTES} bytes`,
        );
      }
      if (!connection || !this.deliver(connection, body.toString("utf8")))
        return gone(response, connectionId);
      response.statusCode = 200;
      return void response.end();
    }
    request.resume();
    if (!connection) return gone(response, connectionId);
    if (method === "DELETE") {
      this.connections.delete(connectionId);
      connection.ws?.close(1000, "closed by the server");
      response.statusCode = 204;
      return void response.end();
    }
    if (method === "GET") {
      response.statusCode = 200;
      response.setHeader("content-type", "application/json");
      return void response.end(
        JSON.stringify({
          connectedAt: connection.connectedAt,
          lastActiveAt: connection.lastActiveAt,
          identity: { sourceIp: connection.sourceIp, userAgent: connection.userAgent },
        }),
      );
    }
    return managementError(response, 405, "BadRequestException", "POST, GET or DELETE");
  }

  /** Closes every connection (1001, going away) and runs their $disconnect. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = [...this.connections.values()].map(
      (connection) =>
        new Promise<void>((done) => {
          const ws = connection.ws;
          if (!ws || ws.readyState === ws.CLOSED) return done();
          ws.once("close", () => done());
          ws.close(1001, "server shutting down");
          setTimeout(() => {
            ws.terminate();
            done();
          }, 2_000).unref();
        }),
    );
    await Promise.all(closed);
    await Promise.all(this.disconnecting);
    this.wss.close();
  }

  private event(
    connection: Connection,
    routeKey: string,
    eventType: "CONNECT" | "MESSAGE" | "DISCONNECT",
    query?: Record<string, string>,
    request?: IncomingMessage,
  ): Record<string, unknown> {
    const now = new Date();
    return {
      ...(request ? { headers: headerRecord(request) } : {}),
      ...(query && Object.keys(query).length > 0 ? { queryStringParameters: query } : {}),
      isBase64Encoded: false,
      requestContext: {
        routeKey,
        eventType,
        connectionId: connection.connectionId,
        connectedAt: Date.parse(connection.connectedAt),
        messageDirection: "IN",
        stage: "local",
        apiId: "local",
        domainName: "127.0.0.1",
        requestId: randomBytes(8).toString("hex"),
        requestTimeEpoch: now.getTime(),
        identity: { sourceIp: connection.sourceIp, userAgent: connection.userAgent },
        // As API Gateway passes the $connect authorizer's context on to every route.
        authorizer: {
          [AUTH_CONTEXT_KEYS.principal]: connection.principal,
          [AUTH_CONTEXT_KEYS.role]: connection.role,
          principalId: connection.principal,
        },
      },
    };
  }
}

function headerRecord(request: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (let i = 0; i + 1 < request.rawHeaders.length; i += 2) {
    const name = request.rawHeaders[i] ?? "";
    Object.defineProperty(headers, name, {
      value: request.rawHeaders[i + 1] ?? "",
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return headers;
}

function asResult(value: unknown): { statusCode: number; body?: string } {
  const result = (value ?? {}) as { statusCode?: unknown; body?: unknown };
  return {
    statusCode: typeof result.statusCode === "number" ? result.statusCode : 200,
    ...(typeof result.body === "string" ? { body: result.body } : {}),
  };
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  500: "Internal Server Error",
};

/** Refuses a handshake with an HTTP answer in the contract's error format, as API Gateway does. */
function refuse(socket: Duplex, status: number, code: string, message: string): void {
  if (!socket.writable) return void socket.destroy();
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` +
      "Content-Type: application/json; charset=utf-8\r\n" +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      "Connection: close\r\n\r\n" +
      body,
  );
}

function managementError(response: ServerResponse, status: number, type: string, message: string): void {
  response.statusCode = status;
  // The SDK's REST-JSON protocol reads the error's name from this header.
  response.setHeader("x-amzn-errortype", type);
  response.setHeader("content-type", "application/json");
  response.end(JSON.stringify({ message }));
}

function gone(response: ServerResponse, connectionId: string): void {
  managementError(response, 410, "GoneException", `connection ${connectionId} is gone`);
}

/** The body, or undefined once it passes the limit (the rest is discarded unread). */
function readLimited(request: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((settle, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      else chunks.push(chunk);
    });
    request.once("end", () => settle(over ? undefined : Buffer.concat(chunks)));
    request.once("error", fail);
  });
}

/**
 * A token of the Tokens table (local/table-tokens.ts), asked of the same $connect authorizer
 * module as in AWS; loaded on first use, so a stack whose callers use only JOBQ_API_TOKENS never
 * reads the table.
 */
async function tableCaller(
  token: string,
  request: IncomingMessage,
  query: Record<string, string>,
): Promise<TableCaller | undefined> {
  if (!isTableToken(token)) return undefined;
  const { authorizeHandshake } = await import("../functions/stream/authorizer");
  return callerOf(() =>
    authorizeHandshake({
      type: "REQUEST",
      methodArn: `arn:aws:execute-api:${REGION}:000000000000:local/local/$connect`,
      headers: Object.fromEntries(
        Object.entries(request.headers).filter((e): e is [string, string] => typeof e[1] === "string"),
      ),
      queryStringParameters: query,
      // Only what the authorizer reads (the token's two places); API Gateway's other fields are
      // for routing and logging, which this server does itself.
    } as unknown as Parameters<typeof authorizeHandshake>[0]),
  );
}
