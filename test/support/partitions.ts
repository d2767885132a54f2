import { type DynamoDBDocumentClient, QueryCommand } from "@aws-sdk/lib-dynamodb";
import { jobPk } from "../../store/keys";

/**
 * Every item under a job's partition (the job, its result, transitions, attempts, logs, edges),
 * by sort key, strongly consistent: what a test inspects to see exactly what a write left behind,
 * staged or not. Tests only; the application reads through store/ verbs.
 */
export async function partitionItems(
  db: DynamoDBDocumentClient,
  tableName: string,
  id: string,
): Promise<Record<string, unknown>[]> {
  const out = await db.send(
    new QueryCommand({
      TableName: tableName,
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": jobPk(id) },
      ConsistentRead: true,
    }),
  );
  return out.Items ?? [];
}
