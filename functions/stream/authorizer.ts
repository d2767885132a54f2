import { Logger } from "@aws-lambda-powertools/logger";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import middy from "@middy/core";
import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent } from "aws-lambda";
import { awsClientOptions } from "../../store/aws";
import { findToken, hashToken } from "../../store/tokens";
import { traced } from "../../store/tracing";
import { config } from "../config";
import { observability } from "../observability";
import { AUTH_CONTEXT_KEYS } from "../routes";
import { handshakeToken } from "./events";

/**
 * The REQUEST authorizer of the stream's $connect: the token from `Authorization: Bearer <token>`
 * or, for browsers (whose WebSocket cannot set headers), `?token=`, checked against the same
 * Tokens table as the HTTP API's authorizer. Anything else throws "Unauthorized", which API
 * Gateway answers with 401 at the handshake.
 */

const cfg = config();
const logger = new Logger();
const dynamo = DynamoDBDocumentClient.from(
  traced(new DynamoDBClient(awsClientOptions(cfg.dynamoEndpoint, cfg.region))),
);

function unauthorized(reason: string): Error {
  logger.info("stream handshake denied", { reason });
  return new Error("Unauthorized");
}

export async function authorizeHandshake(
  event: APIGatewayRequestAuthorizerEvent,
  client: DynamoDBDocumentClient = dynamo,
  tokensTable: string = cfg.tokensTable,
): Promise<APIGatewayAuthorizerResult> {
  const token = handshakeToken(event);
  if (!token) throw unauthorized("no token in Authorization or ?token=");
  const record = await findToken(client, tokensTable, hashToken(token));
  if (!record) throw unauthorized("unknown token");
  if (record.revokedAt) throw unauthorized("revoked token");
  return {
    principalId: record.principal,
    policyDocument: {
      Version: "2012-10-17",
      // $connect's own ARN: a WebSocket authorizer is consulted once per connection.
      Statement: [{ Effect: "Allow", Action: "execute-api:Invoke", Resource: event.methodArn }],
    },
    context: { [AUTH_CONTEXT_KEYS.principal]: record.principal, [AUTH_CONTEXT_KEYS.role]: record.role },
  };
}

export const handler = middy((event: APIGatewayRequestAuthorizerEvent) => authorizeHandshake(event)).use(
  observability(logger),
);
