import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { z } from "zod";
import { ForbiddenError, NotFoundError } from "../core/errors";
import { pageQuerySchema } from "../core/job";
import type { Principal } from "../core/principal";
import { type CreatedToken, createTokenSchema, type TokenView } from "../core/tokens";
import { parseRequest } from "../core/validation";
import { decodeCursor, encodeCursor } from "../store/cursor";
import { createDocumentClient } from "../store/dynamo";
import { createToken, listTokens, revokeToken, type TokenRecord } from "../store/tokens";
import { config } from "./config";
import type { RequestBody } from "./policy";
import { type Clock, systemClock } from "./runtime";

/**
 * The admin token routes: POST /admin/tokens, GET /admin/tokens, DELETE /admin/tokens/{id}. They
 * let an admin of a deployed stack hand out and take back API tokens through the API, so nobody
 * needs AWS credentials for it (the first admin token is the exception: docs/deploy.md).
 *
 * Every one is admin-only, and a user gets 403 rather than 404: the routes are not objects whose
 * existence could leak, and "not allowed" is the honest answer. The secret is made and hashed in
 * store/tokens.ts; it leaves the server once, in POST's answer, and is never listed.
 */

export interface TokensContext {
  readonly db: DynamoDBDocumentClient;
  readonly tokensTable: string;
  /** The Policy table, where token changes are recorded (store/audit.ts). */
  readonly auditTable: string;
  readonly clock: Clock;
}

let context: TokensContext | undefined;

/** Created once per process, like appContext(): the SDK client is expensive to make. */
export function tokensContext(): TokensContext {
  if (!context) {
    const c = config();
    context = {
      db: createDocumentClient({ region: c.region, endpoint: c.dynamoEndpoint }),
      tokensTable: c.tokensTable,
      auditTable: c.policyTable,
      clock: systemClock,
    };
  }
  return context;
}

function requireAdmin(principal: Principal, what: string): void {
  if (!principal.admin) throw new ForbiddenError(`only an admin may ${what}`);
}

export function tokenView(record: TokenRecord): TokenView {
  return {
    id: record.tokenId,
    principal: record.principal,
    role: record.role,
    createdAt: record.createdAt,
    revokedAt: record.revokedAt ?? null,
    project: record.project ?? null,
  };
}

/** POST /admin/tokens: a new token for a principal; the answer is the only place its secret appears. */
export async function createApiToken(
  ctx: TokensContext,
  caller: Principal,
  body: RequestBody,
): Promise<CreatedToken> {
  requireAdmin(caller, "create tokens");
  const request = parseRequest(createTokenSchema, body());
  const { token, record } = await createToken(ctx.db, ctx.tokensTable, request, ctx.clock(), {
    auditTable: ctx.auditTable,
    by: caller.id,
  });
  return { ...tokenView(record), token };
}

/** A token id as store/tokens.ts makes it: 12 lowercase hex characters. */
const tokenIdSchema = z.string().regex(/^[0-9a-f]{12}$/, "is not a token id");
const tokensCursorSchema = z.strictObject({ createdAt: z.iso.datetime(), after: tokenIdSchema });

/**
 * GET /admin/tokens: every token ever issued, oldest first, revoked ones included (who had access
 * matters after the fact), paged as every list is. The table is read whole each time (a Scan, as
 * store/tokens.ts explains: admin-only, rare, one small item per token), and the page cut from it.
 */
export async function listApiTokens(
  ctx: TokensContext,
  caller: Principal,
  query: unknown,
): Promise<{ items: TokenView[]; nextCursor: string | null }> {
  requireAdmin(caller, "list tokens");
  // Parsed once the caller is known to be an admin: a user's request is a 403 whatever it asks.
  const options = parseRequest(pageQuerySchema, query);
  const cursor = decodeCursor(options.cursor, tokensCursorSchema);
  const all = (await listTokens(ctx.db, ctx.tokensTable)).sort(
    (a, b) => a.createdAt.localeCompare(b.createdAt) || a.tokenId.localeCompare(b.tokenId),
  );
  const rest = cursor
    ? all.filter(
        (r) =>
          r.createdAt > cursor.createdAt || (r.createdAt === cursor.createdAt && r.tokenId > cursor.after),
      )
    : all;
  const page = rest.slice(0, options.limit);
  const last = page.at(-1);
  return {
    items: page.map(tokenView),
    nextCursor:
      rest.length > page.length && last
        ? encodeCursor({ createdAt: last.createdAt, after: last.tokenId })
        : null,
  };
}

/**
 * DELETE /admin/tokens/{id}: the token stops working at its next request (in AWS, once API
 * Gateway's cached decision for it expires: at most the authorizer cache TTL, 5 min by default).
 * Idempotent: revoking a revoked token answers 200 with its first revokedAt. An unknown id is a
 * 404. The record stays, so the list shows who had access and until when.
 */
export async function revokeApiToken(ctx: TokensContext, caller: Principal, id: string): Promise<TokenView> {
  requireAdmin(caller, "revoke tokens");
  const parsed = tokenIdSchema.safeParse(id);
  const record = parsed.success
    ? await revokeToken(ctx.db, ctx.tokensTable, parsed.data, ctx.clock(), {
        auditTable: ctx.auditTable,
        by: caller.id,
      })
    : null;
  if (!record) throw new NotFoundError(`token ${id} not found`);
  return tokenView(record);
}
