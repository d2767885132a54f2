import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { awsClientOptions } from "../store/aws";
import { createToken, listTokens, type TokenRecord } from "../store/tokens";

/**
 * `jobq tokens bootstrap`: the first admin token of a deployed stack, written straight into its
 * Tokens table with the caller's own AWS credentials. It is the one CLI command that talks to AWS
 * rather than to the jobq API: `POST /admin/tokens` needs an admin token, so the first one cannot
 * come from there. The stack itself creates no token (a secret in a template, an output or a log
 * would be readable by far more people than the admin it is for). Loaded only by that command,
 * so the rest of the CLI never loads the AWS SDK.
 */

export interface BootstrapOptions {
  /** The stack output TokensTableName. */
  readonly table: string;
  readonly principal: string;
  /** @default the SDK's (AWS_REGION, the profile's) */
  readonly region?: string | undefined;
  /** DynamoDB Local or LocalStack, with dummy credentials; never a real account. */
  readonly endpoint?: string | undefined;
  /** Issue one even though a working admin token exists (all of them lost, say). @default false */
  readonly force?: boolean;
}

/** The table already holds a working admin token: the API's `tokens create` is the way now. */
export class AdminTokenExistsError extends Error {
  override readonly name = "AdminTokenExistsError";
  constructor(readonly existing: readonly TokenRecord[]) {
    super(
      `the table already holds ${existing.length} working admin token(s) (${existing.map((t) => t.tokenId).join(", ")}): ` +
        "use `jobq tokens create --admin` with one of them, or --force if they are all lost",
    );
  }
}

export async function bootstrapAdminToken(
  options: BootstrapOptions,
): Promise<{ token: string; record: TokenRecord }> {
  const client = DynamoDBDocumentClient.from(
    new DynamoDBClient(
      options.endpoint
        ? awsClientOptions(options.endpoint, options.region ?? "us-east-1")
        : // No region given: the SDK's own resolution (AWS_REGION, the profile's region).
          options.region
          ? { region: options.region }
          : {},
    ),
  );
  try {
    if (!options.force) {
      const admins = (await listTokens(client, options.table)).filter(
        (t) => t.role === "admin" && !t.revokedAt,
      );
      if (admins.length > 0) throw new AdminTokenExistsError(admins);
    }
    return await createToken(client, options.table, { principal: options.principal, role: "admin" });
  } finally {
    client.destroy();
  }
}
