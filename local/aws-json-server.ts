import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * The AWS JSON protocol as the SDK speaks it to Step Functions (1.0) and EventBridge (1.1):
 * POST /, the operation in `x-amz-target`, JSON in and out, errors as `{"__type", "message"}`
 * with status 400, which the SDK maps to its exception classes. The local endpoints supply only
 * their operations.
 */

/** An AWS error answer: `type` becomes `__type`, the exception class the SDK throws. */
export class AwsApiError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
    this.name = type;
  }
}

export type AwsOperation = (input: unknown) => object;

export interface AwsJsonServerOptions {
  /** For the log line of a request that failed unexpectedly, e.g. "local sfn". */
  readonly name: string;
  readonly port?: number;
  readonly host?: string;
  readonly protocol: "1.0" | "1.1";
  /** `x-amz-target` prefix, e.g. "AWSStepFunctions." */
  readonly targetPrefix: string;
  readonly operations: Readonly<Record<string, AwsOperation>>;
  /** `__type` of an unexpected failure (500). */
  readonly internalErrorType: string;
}

export interface AwsJsonServer {
  readonly endpoint: string;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 1024 * 1024;

export async function startAwsJsonServer(options: AwsJsonServerOptions): Promise<AwsJsonServer> {
  const contentType = `application/x-amz-json-${options.protocol}`;
  const send = (response: ServerResponse, status: number, body: object, errorType?: string) => {
    const text = JSON.stringify(body);
    const headers: Record<string, string | number> = {
      "content-type": contentType,
      "content-length": Buffer.byteLength(text),
      "x-amzn-requestid": randomUUID(),
    };
    if (errorType) headers["x-amzn-errortype"] = errorType;
    response.writeHead(status, headers);
    response.end(text);
  };

  const serve = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const target = request.headers["x-amz-target"];
    const operation =
      typeof target === "string" && target.startsWith(options.targetPrefix)
        ? options.operations[target.slice(options.targetPrefix.length)]
        : undefined;
    if (request.method !== "POST" || !operation) {
      request.resume();
      send(response, 400, {
        __type: "UnknownOperationException",
        message: `unknown operation ${String(target)}`,
      });
      return;
    }
    const body = await readBody(request);
    if (body === null) {
      send(response, 413, { __type: "SerializationException", message: "request body too large" });
      return;
    }
    let input: unknown;
    try {
      input = body === "" ? {} : JSON.parse(body);
    } catch {
      send(response, 400, { __type: "SerializationException", message: "request body is not JSON" });
      return;
    }
    try {
      send(response, 200, operation(input));
    } catch (error) {
      if (!(error instanceof AwsApiError)) throw error;
      send(response, 400, { __type: error.type, message: error.message }, error.type);
    }
  };

  const server = createServer((request, response) => {
    serve(request, response).catch((error: unknown) => {
      console.error(`${options.name}: request failed`, error);
      if (!response.headersSent)
        send(response, 500, { __type: options.internalErrorType, message: "internal error" });
      else response.destroy();
    });
  });
  server.listen(options.port ?? 0, options.host ?? "127.0.0.1");
  await new Promise<void>((ready, fail) => {
    server.once("listening", ready);
    server.once("error", fail);
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(":") ? `[${address}]` : address;
  return {
    endpoint: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
}

/** The body as text, or null past the limit (the rest is drained, not buffered). */
function readBody(request: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    request.on("end", () => resolve(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}
