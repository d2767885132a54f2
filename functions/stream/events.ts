import type { APIGatewayProxyResult } from "aws-lambda";
import { z } from "zod";
import { UnauthorizedError } from "../../core/errors";
import { type Principal, principalOfRole } from "../../core/principal";
import { AUTH_CONTEXT_KEYS } from "../routes";

/**
 * The parts of API Gateway's WebSocket events ($connect, $disconnect, $default) the stream's
 * handlers read, as the local front (local/api-server.ts) builds them too.
 */
export const webSocketEventSchema = z.object({
  requestContext: z.object({
    connectionId: z.string().min(1),
    routeKey: z.string(),
    /** What the $connect authorizer's context said (AWS passes it on to every route). */
    authorizer: z.record(z.string(), z.unknown()).nullish(),
  }),
  body: z.string().nullish(),
});
export type WebSocketEvent = z.infer<typeof webSocketEventSchema>;

export function principalOfConnection(event: WebSocketEvent): Principal {
  const authorizer = event.requestContext.authorizer ?? {};
  const id = authorizer[AUTH_CONTEXT_KEYS.principal];
  if (typeof id !== "string" || id.length === 0) throw new UnauthorizedError();
  return principalOfRole(id, authorizer[AUTH_CONTEXT_KEYS.role]);
}

export const ok = (body?: string): APIGatewayProxyResult => ({ statusCode: 200, body: body ?? "" });

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * The token a stream handshake carries: `Authorization: Bearer <token>` first, else `?token=`
 * (a browser's WebSocket cannot set headers). Shared by the AWS authorizer and the local front.
 */
export function handshakeToken(request: {
  readonly headers?: Readonly<Record<string, string | string[] | undefined>> | null;
  readonly queryStringParameters?: Readonly<Record<string, string | undefined>> | null;
}): string | undefined {
  for (const [name, value] of Object.entries(request.headers ?? {})) {
    if (name.toLowerCase() === "authorization" && typeof value === "string") return BEARER.exec(value)?.[1];
  }
  const token = request.queryStringParameters?.token;
  return typeof token === "string" && token.length > 0 ? token : undefined;
}
