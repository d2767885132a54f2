import { PutItemCommand } from "@aws-sdk/client-dynamodb";
import type { DynamoDBRecord } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type StreamPoller, startStreamPoller } from "../../local/dynamo-streams";
import { createDocumentClient } from "../../store/dynamo";
import { eventually } from "../support/stream";

/**
 * The local DynamoDB Streams event source (local/dynamo-streams.ts) on the test Jobs table's
 * stream in DynamoDB Local: Lambda-shaped batches in write order, each consumer on its own, a
 * reported batch item failure retried from that record. The consumers here are the subject's
 * callers (what a stream consumer module would be), recording what they were handed.
 */

const run = Date.now().toString(36);
const pk = `STREAMTEST#${run}`;
const db = createDocumentClient({ region: "us-east-1", endpoint: inject("dynamoEndpoint") });
const table = inject("tables").Jobs ?? "";

/** This file's records only (other writes to the table may share a batch). */
const mine = (records: readonly DynamoDBRecord[]) => records.filter((r) => r.dynamodb?.Keys?.pk?.S === pk);
const skOf = (record: DynamoDBRecord) => String(record.dynamodb?.Keys?.sk?.S);

const steady: DynamoDBRecord[][] = [];
const flaky: string[][] = [];
let failedOnce = false;
let poller: StreamPoller;

beforeAll(async () => {
  poller = await startStreamPoller({
    endpoint: inject("dynamoEndpoint"),
    region: "us-east-1",
    tableName: table,
    idlePollMs: 50,
    consumers: [
      {
        name: "steady",
        load: async () => async (event: unknown) => {
          const batch = mine((event as { Records: DynamoDBRecord[] }).Records);
          if (batch.length > 0) steady.push(batch);
          return { batchItemFailures: [] };
        },
      },
      {
        name: "flaky",
        load: async () => async (event: unknown) => {
          const batch = mine((event as { Records: DynamoDBRecord[] }).Records);
          if (batch.length === 0) return { batchItemFailures: [] };
          flaky.push(batch.map(skOf));
          // The first time it sees item 2, it reports it failed: the rest must come again from it.
          const second = batch.find((record) => skOf(record) === "2");
          if (second && !failedOnce) {
            failedOnce = true;
            return { batchItemFailures: [{ itemIdentifier: second.dynamodb?.SequenceNumber ?? "" }] };
          }
          return { batchItemFailures: [] };
        },
      },
    ],
  });
});
afterAll(() => poller?.stop());

describe("local DynamoDB Streams event source", () => {
  it("hands each consumer the writes in order, as Lambda's records, and retries a failure from the failed record", async () => {
    // Act: three writes, then a change of the first
    for (const sk of ["1", "2", "3"]) {
      await db.send(
        new PutItemCommand({ TableName: table, Item: { pk: { S: pk }, sk: { S: sk }, n: { N: "1" } } }),
      );
    }
    await db.send(
      new PutItemCommand({ TableName: table, Item: { pk: { S: pk }, sk: { S: "1" }, n: { N: "2" } } }),
    );

    // Assess: the steady consumer saw each write once, in order, with old and new images
    const records = await eventually(
      async () => steady.flat(),
      (seen) => seen.length >= 4,
    );
    expect(records.map((r) => [r.eventName, skOf(r)])).toEqual([
      ["INSERT", "1"],
      ["INSERT", "2"],
      ["INSERT", "3"],
      ["MODIFY", "1"],
    ]);
    expect(records[3]?.dynamodb?.OldImage?.n?.N).toBe("1");
    expect(records[3]?.dynamodb?.NewImage?.n?.N).toBe("2");
    expect(records[0]).toMatchObject({ eventSource: "aws:dynamodb", eventSourceARN: expect.any(String) });

    // The flaky one was handed again exactly what followed the record it failed, starting there
    const batches = await eventually(
      async () => [...flaky],
      (seen) => seen.flat().at(-1) === "1" && seen.flat().filter((sk) => sk === "2").length === 2,
    );
    const failing = batches.findIndex((batch) => batch.includes("2"));
    const failed = batches[failing] ?? [];
    expect(batches[failing + 1]?.slice(0, failed.length - failed.indexOf("2"))).toEqual(
      failed.slice(failed.indexOf("2")),
    );
    expect(batches.slice(0, failing).flat()).toEqual(["1"].slice(0, failing === 0 ? 0 : 1));
  });
});
