import type { APIGatewayRequestAuthorizerEvent } from "aws-lambda";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { authorizeHandshake } from "../../functions/stream/authorizer";
import { createDocumentClient } from "../../store/dynamo";
import { createToken, revokeToken } from "../../store/tokens";

/**
 * The AWS $connect authorizer of WS /jobs/stream against the Tokens table in DynamoDB Local: the
 * token from the Authorization header or ?token=, the principal and role in the context the
 * connect handler reads; anything else "Unauthorized" (API Gateway's 401 at the handshake).
 */

const db = createDocumentClient({ region: "us-east-1", endpoint: inject("dynamoEndpoint") });
const table = inject("tables").Tokens ?? "";
const METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/$connect";
const run = Date.now().toString(36);
let userToken: string;
let adminToken: string;

function handshake(
  headers: Record<string, string> = {},
  query: Record<string, string> | null = null,
): APIGatewayRequestAuthorizerEvent {
  return {
    type: "REQUEST",
    methodArn: METHOD_ARN,
    headers,
    queryStringParameters: query,
  } as unknown as APIGatewayRequestAuthorizerEvent;
}

beforeAll(async () => {
  userToken = (await createToken(db, table, { principal: `ws-user-${run}`, admin: false })).token;
  adminToken = (await createToken(db, table, { principal: `ws-admin-${run}`, admin: true })).token;
});

describe("the stream's $connect authorizer", () => {
  it("allows $connect for a token in the Authorization header, with principal and role in the context", async () => {
    const result = await authorizeHandshake(handshake({ Authorization: `Bearer ${userToken}` }), db, table);

    expect(result.principalId).toBe(`ws-user-${run}`);
    expect(result.context).toEqual({ principal: `ws-user-${run}`, role: "user" });
    expect(result.policyDocument.Statement).toEqual([
      { Effect: "Allow", Action: "execute-api:Invoke", Resource: METHOD_ARN },
    ]);
  });

  it("takes the token from ?token= when there is no header (browsers)", async () => {
    const result = await authorizeHandshake(handshake({}, { token: adminToken }), db, table);

    expect(result.context).toEqual({ principal: `ws-admin-${run}`, role: "admin" });
  });

  it.each([
    ["no token", handshake()],
    ["an unknown token", handshake({ authorization: "Bearer jq_unknown" })],
    ["a malformed header", handshake({ authorization: "Basic abc" })],
    ["an empty ?token=", handshake({}, { token: "" })],
  ])("refuses %s with Unauthorized", async (_label, event) => {
    await expect(authorizeHandshake(event, db, table)).rejects.toThrow(/^Unauthorized$/);
  });

  it("refuses a revoked token", async () => {
    const { token, record } = await createToken(db, table, { principal: `ws-gone-${run}`, admin: false });
    await revokeToken(db, table, record.tokenId);

    await expect(authorizeHandshake(handshake({}, { token }), db, table)).rejects.toThrow(/^Unauthorized$/);
  });
});
