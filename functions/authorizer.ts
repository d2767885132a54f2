import { Logger } from "@aws-lambda-powertools/logger";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import middy from "@middy/core";
import type { APIGatewayAuthorizerResult, APIGatewayTokenAuthorizerEvent } from "aws-lambda";
import { awsClientOptions } from "../store/aws";
import { findToken, hashToken } from "../store/tokens";
import { traced } from "../store/tracing";
import { config } from "./config";
import { observability } from "./observability";
import { AUTH_CONTEXT_KEYS } from "./routes";

/**
 * API Gateway TOKEN authorizer: `Authorization: Bearer <token>` → the token's record in the
 * tokens table → an Allow policy carrying the principal and role. Anything else throws
 * "Unauthorized", the one message API Gateway turns into a 401 (its UNAUTHORIZED gateway response).
 */

const cfg = config();
const logger = new Logger();
// Locally (JOBQ_DYNAMODB_ENDPOINT) the client gets the endpoint and dummy credentials, so the SDK
// never probes the EC2 metadata address for real ones; in AWS the function's role supplies them.
const dynamo = DynamoDBDocumentClient.from(
  traced(new DynamoDBClient(awsClientOptions(cfg.dynamoEndpoint, cfg.region))),
);

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * The policy's resource: every method of every path in the stage. API Gateway caches the policy
 * per token, so scoping it to the one method that triggered the call would deny the next route.
 */
export function stageWideResource(methodArn: string): string {
  // arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{method}/{path...}
  const [apiArn, stage] = methodArn.split("/");
  if (!apiArn?.startsWith("arn:") || !stage) throw new Error(`unexpected methodArn ${methodArn}`);
  return `${apiArn}/${stage}/*/*`;
}

function unauthorized(reason: string, extra: Record<string, string> = {}): Error {
  logger.info("denied", { reason, ...extra });
  return new Error("Unauthorized");
}

export async function authorize(
  event: APIGatewayTokenAuthorizerEvent,
  client: DynamoDBDocumentClient = dynamo,
  tokensTable: string = cfg.tokensTable,
): Promise<APIGatewayAuthorizerResult> {
  const token = BEARER.exec(event.authorizationToken ?? "")?.[1];
  if (!token) throw unauthorized("malformed Authorization header");
  const tokenHash = hashToken(token);
  const record = await findToken(client, tokensTable, tokenHash);
  if (!record) throw unauthorized("unknown token");
  if (record.revokedAt) throw unauthorized("revoked token", { tokenId: record.tokenId });
  logger.debug("allowed", { tokenId: record.tokenId, principal: record.principal, role: record.role });
  return {
    principalId: record.principal,
    policyDocument: {
      Version: "2012-10-17",
      Statement: [
        { Effect: "Allow", Action: "execute-api:Invoke", Resource: stageWideResource(event.methodArn) },
      ],
    },
    context: {
      [AUTH_CONTEXT_KEYS.principal]: record.principal,
      [AUTH_CONTEXT_KEYS.role]: record.role,
      // Only when bound: API Gateway's context holds strings, numbers and booleans, never null.
      ...(record.project !== undefined ? { [AUTH_CONTEXT_KEYS.project]: record.project } : {}),
    },
  };
}

export const handler = middy((event: APIGatewayTokenAuthorizerEvent) => authorize(event)).use(
  observability(logger),
);
