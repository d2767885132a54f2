#!/usr/bin/env -S npx tsx
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { Command } from "commander";
import { createToken, listTokens, revokeToken } from "../store/tokens";

/**
 * Manage the API tokens of a deployed jobq stack:
 *
 *   npm run tokens -- create --principal alice [--admin]   prints the new token once
 *   npm run tokens -- list
 *   npm run tokens -- revoke <tokenId>
 *
 * Every command takes `--table <name>` and `--region <region>`. Environment, read only here:
 *   JOBQ_TOKENS_TABLE       the tokens table (stack output TokensTableName) when --table is absent
 *   AWS_REGION              the region when --region is absent (else the SDK's profile config)
 *   JOBQ_DYNAMODB_ENDPOINT  talk to DynamoDB Local (or LocalStack) there, with dummy credentials
 * Credentials otherwise come from the AWS SDK's default chain (profile, SSO, env).
 */

interface ScriptConfig {
  readonly tokensTable: string | undefined;
  readonly region: string | undefined;
  readonly dynamoEndpoint: string | undefined;
}

function readScriptConfig(env: NodeJS.ProcessEnv = process.env): ScriptConfig {
  return {
    tokensTable: env.JOBQ_TOKENS_TABLE || undefined,
    region: env.AWS_REGION || undefined,
    dynamoEndpoint: env.JOBQ_DYNAMODB_ENDPOINT || undefined,
  };
}

interface ConnectionOptions {
  readonly table?: string;
  readonly region?: string;
}

function connect(
  options: ConnectionOptions,
  cfg: ScriptConfig,
): { client: DynamoDBDocumentClient; table: string } {
  const table = options.table ?? cfg.tokensTable;
  if (!table) {
    throw new Error("no tokens table: pass --table or set JOBQ_TOKENS_TABLE (stack output TokensTableName)");
  }
  const local = cfg.dynamoEndpoint;
  const region = options.region ?? cfg.region ?? (local ? "us-east-1" : undefined);
  const client = new DynamoDBClient({
    ...(region ? { region } : {}),
    ...(local ? { endpoint: local, credentials: { accessKeyId: "local", secretAccessKey: "local" } } : {}),
  });
  return { client: DynamoDBDocumentClient.from(client), table };
}

function withConnection(command: Command): Command {
  return command
    .option("--table <name>", "tokens table name (default: $JOBQ_TOKENS_TABLE)")
    .option("--region <region>", "AWS region (default: $AWS_REGION)");
}

function buildProgram(cfg: ScriptConfig = readScriptConfig()): Command {
  const program = new Command("jobq-tokens").description("Manage API tokens of a deployed jobq stack");

  withConnection(program.command("create"))
    .description("create a token and print it (shown only this once)")
    .requiredOption("--principal <id>", "the user id the token acts as")
    .option("--admin", "give the token the admin role", false)
    .action(async (options: ConnectionOptions & { principal: string; admin: boolean }) => {
      const { client, table } = connect(options, cfg);
      const { token, record } = await createToken(client, table, options);
      // Only the token goes to stdout, so `TOKEN=$(npm run -s tokens -- create ...)` captures it.
      process.stdout.write(`${token}\n`);
      process.stderr.write(
        `created token ${record.tokenId} for ${record.principal} (${record.role}); ` +
          "store it now: it cannot be shown again\n",
      );
    });

  withConnection(program.command("list"))
    .description("list tokens (never the tokens themselves)")
    .action(async (options: ConnectionOptions) => {
      const { client, table } = connect(options, cfg);
      const records = await listTokens(client, table);
      const header = ["TOKEN ID", "PRINCIPAL", "ROLE", "CREATED", "REVOKED"];
      const rows = records.map((r) => [r.tokenId, r.principal, r.role, r.createdAt, r.revokedAt ?? "-"]);
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]?.length ?? 0)));
      for (const row of [header, ...rows]) {
        process.stdout.write(
          `${row
            .map((cell, i) => cell.padEnd(widths[i] ?? 0))
            .join("  ")
            .trimEnd()}\n`,
        );
      }
    });

  withConnection(program.command("revoke"))
    .description("revoke a token by its id (see list); API Gateway may honor a cached token up to 5 min")
    .argument("<tokenId>", "the token's id as shown by list")
    .action(async (tokenId: string, options: ConnectionOptions) => {
      const { client, table } = connect(options, cfg);
      const record = await revokeToken(client, table, tokenId);
      if (!record) throw new Error(`no token with id ${tokenId}`);
      process.stdout.write(`revoked ${record.tokenId} (${record.principal}) at ${record.revokedAt ?? "?"}\n`);
    });

  return program;
}

buildProgram()
  .parseAsync()
  .catch((error: unknown) => {
    process.stderr.write(`jobq-tokens: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
