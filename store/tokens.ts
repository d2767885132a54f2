import { createHash, randomBytes } from "node:crypto";
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  ScanCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { z } from "zod";
import { auditRecord } from "../core/audit";
import { projectNameSchema } from "../core/job";
import { ROLES, type Role } from "../core/principal";
import { isConditionFailure, writeAudited } from "./audit";

/**
 * API tokens of a deployed stack (the tokens table of store/tables.ts). A token is shown to its
 * owner once, at creation; the table keeps only its SHA-256 hash, so a leaked table (or backup)
 * grants nothing. The Lambda authorizer reads it with GetItem; the admin token routes
 * (app/tokens.ts) and `jobq tokens bootstrap` (cli/bootstrap.ts) write it.
 */

/** `jq_` + 32 random bytes in base64url: what createToken hands out and the authorizer accepts. */
export const TOKEN_PATTERN = /^jq_[A-Za-z0-9_-]{43}$/;

/** Length of `tokenId`: enough to tell tokens apart in a tiny table, useless to guess a token. */
const TOKEN_ID_LENGTH = 12;

const principalSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/, "must match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$");

const tokenRecordSchema = z.object({
  tokenHash: z.string().regex(/^[0-9a-f]{64}$/),
  tokenId: z.string().length(TOKEN_ID_LENGTH),
  principal: z.string().min(1),
  role: z.enum(ROLES),
  createdAt: z.string(),
  revokedAt: z.string().optional(),
  project: projectNameSchema.optional(),
});

export interface TokenRecord {
  /** SHA-256 hex of the token: the table's partition key. */
  readonly tokenHash: string;
  /** First 12 hex characters of the hash: how humans list and revoke a token. */
  readonly tokenId: string;
  readonly principal: string;
  readonly role: Role;
  readonly createdAt: string;
  /** Set by revokeToken; a revoked record is kept so the listing shows who had access. */
  readonly revokedAt?: string;
  /** The project the token is bound to (issue 13); absent: unbound. */
  readonly project?: string;
}

export class TokenRecordError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TokenRecordError";
  }
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export function tokenIdOf(tokenHash: string): string {
  return tokenHash.slice(0, TOKEN_ID_LENGTH);
}

/**
 * Who asks for a token change through the API: the change is recorded in the audit trail of this
 * table (the Policy table) in the same transaction. `jobq tokens bootstrap` has none (it holds
 * only the Tokens table's name, and AWS credentials are its own trail: CloudTrail).
 */
export interface TokenAudit {
  readonly auditTable: string;
  readonly by: string;
}

/** A token as the audit trail shows it: never the secret, never its hash. */
function auditView(record: TokenRecord): Record<string, unknown> {
  return {
    id: record.tokenId,
    principal: record.principal,
    role: record.role,
    createdAt: record.createdAt,
    revokedAt: record.revokedAt ?? null,
    project: record.project ?? null,
  };
}

function toRecord(item: Record<string, unknown>): TokenRecord {
  const parsed = tokenRecordSchema.safeParse(item);
  // A record we cannot read must never grant access, and must be loud rather than skipped.
  if (!parsed.success) throw new TokenRecordError("malformed token record", { cause: parsed.error });
  return parsed.data;
}

/** Creates a token for a principal and stores only its hash; the token itself is returned once. */
export async function createToken(
  client: DynamoDBDocumentClient,
  tableName: string,
  input: {
    readonly principal: string;
    readonly role?: Role;
    readonly admin?: boolean;
    readonly project?: string | undefined;
  },
  now: Date = new Date(),
  audit?: TokenAudit,
): Promise<{ token: string; record: TokenRecord }> {
  const parsedPrincipal = principalSchema.safeParse(input.principal);
  if (!parsedPrincipal.success) {
    throw new TokenRecordError(
      `invalid principal ${JSON.stringify(input.principal)}: ${parsedPrincipal.error.issues[0]?.message}`,
    );
  }
  const principal = parsedPrincipal.data;
  const project = input.project === undefined ? undefined : projectNameSchema.safeParse(input.project);
  if (project !== undefined && !project.success) {
    throw new TokenRecordError(
      `invalid project ${JSON.stringify(input.project)}: ${project.error.issues[0]?.message}`,
    );
  }
  const token = `jq_${randomBytes(32).toString("base64url")}`;
  const tokenHash = hashToken(token);
  const record: TokenRecord = {
    tokenHash,
    tokenId: tokenIdOf(tokenHash),
    principal,
    role: input.role ?? (input.admin === true ? "admin" : "user"),
    createdAt: now.toISOString(),
    // Stored only when bound: an unbound token's record is what it was before projects.
    ...(project?.success ? { project: project.data } : {}),
  };
  const put = {
    TableName: tableName,
    Item: record,
    // A hash collision is practically impossible; the condition makes "never overwrite" explicit.
    ConditionExpression: "attribute_not_exists(tokenHash)",
  };
  if (audit === undefined) {
    await client.send(new PutCommand(put));
  } else {
    await writeAudited(
      client,
      { Put: put },
      {
        tableName: audit.auditTable,
        record: auditRecord({
          at: record.createdAt,
          principal: audit.by,
          kind: "token",
          subject: record.tokenId,
          action: "create",
          before: null,
          after: auditView(record),
        }),
      },
    );
  }
  return { token, record };
}

/** The record of a token hash, or null when it is unknown. Revoked records are returned as they are. */
export async function findToken(
  client: DynamoDBDocumentClient,
  tableName: string,
  tokenHash: string,
): Promise<TokenRecord | null> {
  const { Item } = await client.send(new GetCommand({ TableName: tableName, Key: { tokenHash } }));
  return Item ? toRecord(Item) : null;
}

/**
 * Every token record, oldest first. A Scan is fine here: only admins list tokens, rarely, and the
 * table holds one small item per token ever issued.
 */
export async function listTokens(client: DynamoDBDocumentClient, tableName: string): Promise<TokenRecord[]> {
  const records: TokenRecord[] = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await client.send(new ScanCommand({ TableName: tableName, ExclusiveStartKey: startKey }));
    for (const item of page.Items ?? []) records.push(toRecord(item));
    startKey = page.LastEvaluatedKey;
  } while (startKey);
  return records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/**
 * Marks the token with this tokenId revoked and returns its record, or null when no token has that
 * id. Idempotent: revoking a revoked token keeps its first revokedAt. Finding the id is a Scan, for
 * the same reason as listTokens (admin-only, tiny table).
 */
export async function revokeToken(
  client: DynamoDBDocumentClient,
  tableName: string,
  tokenId: string,
  now: Date = new Date(),
  audit?: TokenAudit,
): Promise<TokenRecord | null> {
  const matches = (await listTokens(client, tableName)).filter((r) => r.tokenId === tokenId);
  const [record, ...others] = matches;
  if (!record) return null;
  if (others.length > 0) throw new TokenRecordError(`tokenId ${tokenId} matches ${matches.length} tokens`);
  if (record.revokedAt) return record;
  if (audit !== undefined) return revokeAudited(client, tableName, record, now, audit);
  const { Attributes } = await client.send(
    new UpdateCommand({
      TableName: tableName,
      Key: { tokenHash: record.tokenHash },
      UpdateExpression: "SET revokedAt = if_not_exists(revokedAt, :now)",
      ConditionExpression: "attribute_exists(tokenHash)",
      ExpressionAttributeValues: { ":now": now.toISOString() },
      ReturnValues: "ALL_NEW",
    }),
  );
  return Attributes ? toRecord(Attributes) : { ...record, revokedAt: now.toISOString() };
}

/**
 * The revocation and its audit record in one transaction, conditional on the token not being
 * revoked yet: a concurrent or retried revocation loses the condition and answers the record as
 * the winner left it, recording nothing twice.
 */
async function revokeAudited(
  client: DynamoDBDocumentClient,
  tableName: string,
  record: TokenRecord,
  now: Date,
  audit: TokenAudit,
): Promise<TokenRecord> {
  const revoked: TokenRecord = { ...record, revokedAt: now.toISOString() };
  try {
    await writeAudited(
      client,
      {
        Update: {
          TableName: tableName,
          Key: { tokenHash: record.tokenHash },
          UpdateExpression: "SET revokedAt = :now",
          ConditionExpression: "attribute_exists(tokenHash) AND attribute_not_exists(revokedAt)",
          ExpressionAttributeValues: { ":now": revoked.revokedAt },
        },
      },
      {
        tableName: audit.auditTable,
        record: auditRecord({
          at: now.toISOString(),
          principal: audit.by,
          kind: "token",
          subject: record.tokenId,
          action: "revoke",
          before: auditView(record),
          after: auditView(revoked),
        }),
      },
    );
    return revoked;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    // Read back as the listing reads (a Scan): the API's functions never read a token by its hash.
    const current = (await listTokens(client, tableName)).find((r) => r.tokenHash === record.tokenHash);
    if (!current) throw error;
    return current;
  }
}
