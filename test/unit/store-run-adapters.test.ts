import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  ProvisionedThroughputExceededException,
  TransactionCanceledException,
} from "@aws-sdk/client-dynamodb";
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  PutCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { mockClient } from "aws-sdk-client-mock";
import { afterEach, describe, expect, it } from "vitest";
import { ConcurrentUpdateError } from "../../core/errors";
import { JobRepository } from "../../store/job-repository";
import { jobPk } from "../../store/keys";

/**
 * The run side's store operations (issue 14 item 3) on answers DynamoDB Local never gives on
 * demand: throttling, a transaction cancelled by a conflict with another one, a failed condition
 * with and without the item. aws-sdk-client-mock stands in for DynamoDB only here; the typed
 * outcomes of real conditions are tested against DynamoDB Local (test/integration/store-run.test.ts).
 */

const TABLE = "jobq-jobs";
const dynamo = mockClient(DynamoDBDocumentClient);
const repo = new JobRepository(
  DynamoDBDocumentClient.from(
    new DynamoDBClient({
      region: "us-east-1",
      endpoint: "http://127.0.0.1:1",
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
    }),
  ),
  TABLE,
);
const JOB = { pk: jobPk("01CHILD"), version: 4 };

function cancelled(...codes: string[]): TransactionCanceledException {
  return new TransactionCanceledException({
    message: "Transaction cancelled",
    $metadata: {},
    CancellationReasons: codes.map((Code) => ({ Code })),
  });
}

function throttled(): ProvisionedThroughputExceededException {
  return new ProvisionedThroughputExceededException({ message: "Rate exceeded", $metadata: {} });
}

function put(sk: string) {
  return { Put: { TableName: TABLE, Item: { pk: "JOB#x", sk } } };
}

afterEach(() => {
  dynamo.reset();
});

describe("transactParts", () => {
  it("names the parts whose items cancelled the transaction, and those whose condition failed", async () => {
    // Prepare
    dynamo
      .on(TransactWriteCommand)
      .rejects(cancelled("None", "None", "TransactionConflict", "ConditionalCheckFailed"));

    // Act
    const outcome = await repo.transactParts({
      job: [put("a"), put("b")],
      capacity: [put("c")],
      attempt: [put("d")],
    });

    // Assess
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect([...outcome.refused].sort()).toEqual(["attempt", "capacity"]);
    expect([...outcome.conditionFailed]).toEqual(["attempt"]);
    expect(outcome.error).toBeInstanceOf(ConcurrentUpdateError);
    expect(outcome.error.details).toEqual({
      reasons: ["None", "None", "TransactionConflict", "ConditionalCheckFailed"],
    });
    expect(dynamo.commandCalls(TransactWriteCommand)[0]?.args[0].input.TransactItems).toHaveLength(4);
  });

  it("throws a throttled write as it came: its outcome is unknown, so no part is blamed", async () => {
    dynamo.on(TransactWriteCommand).rejects(throttled());

    await expect(repo.transactParts({ job: [put("a")] })).rejects.toBeInstanceOf(
      ProvisionedThroughputExceededException,
    );
  });

  it("is ok when the transaction is written, in one request of every part's items in order", async () => {
    dynamo.on(TransactWriteCommand).resolves({});

    const outcome = await repo.transactParts({ job: [put("a")], none: [], attempt: [put("b")] });

    expect(outcome).toEqual({ ok: true });
    const sent = dynamo.commandCalls(TransactWriteCommand);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.args[0].input.TransactItems).toEqual([put("a"), put("b")]);
  });
});

describe("markDependencyMet", () => {
  it("throws ConcurrentUpdateError on a conflict with another transaction (the caller tries again)", async () => {
    dynamo.on(TransactWriteCommand).rejects(cancelled("None", "TransactionConflict"));

    await expect(
      repo.markDependencyMet("01PARENT", "01CHILD", "2026-12-07T00:00:00.000Z"),
    ).rejects.toBeInstanceOf(ConcurrentUpdateError);
  });

  it("says already_met when the edge's condition failed", async () => {
    dynamo.on(TransactWriteCommand).rejects(cancelled("ConditionalCheckFailed", "None"));

    const outcome = await repo.markDependencyMet("01PARENT", "01CHILD", "2026-12-07T00:00:00.000Z");

    expect(outcome).toEqual({ ok: false, reason: "already_met" });
  });

  it("reads a failed edge condition first: a replay that also finds the count used says already_met", async () => {
    dynamo.on(TransactWriteCommand).rejects(cancelled("ConditionalCheckFailed", "ConditionalCheckFailed"));

    const outcome = await repo.markDependencyMet("01PARENT", "01CHILD", "2026-12-07T00:00:00.000Z");

    expect(outcome).toEqual({ ok: false, reason: "already_met" });
  });

  it("says not_waiting when only the child's count refused", async () => {
    dynamo.on(TransactWriteCommand).rejects(cancelled("None", "ConditionalCheckFailed"));

    const outcome = await repo.markDependencyMet("01PARENT", "01CHILD", "2026-12-07T00:00:00.000Z");

    expect(outcome).toEqual({ ok: false, reason: "not_waiting" });
  });

  it("passes throttling through untouched", async () => {
    dynamo.on(TransactWriteCommand).rejects(throttled());

    await expect(
      repo.markDependencyMet("01PARENT", "01CHILD", "2026-12-07T00:00:00.000Z"),
    ).rejects.toBeInstanceOf(ProvisionedThroughputExceededException);
  });
});

describe("single-item verbs", () => {
  it.each([
    ["without the item", new ConditionalCheckFailedException({ message: "failed", $metadata: {} })],
    [
      "with the item",
      new ConditionalCheckFailedException({
        message: "failed",
        $metadata: {},
        Item: { pk: { S: JOB.pk }, status: { S: "queued" } },
      }),
    ],
  ])("setBlockedReason answers false on a failed condition %s", async (_, error) => {
    dynamo.on(UpdateCommand).rejects(error);

    expect(await repo.setBlockedReason(JOB, "waiting on 1 dependency")).toBe(false);
  });

  it("setBlockedReason is one UpdateItem conditional on blocked at the version read", async () => {
    dynamo.on(UpdateCommand).resolves({});

    expect(await repo.setBlockedReason(JOB, "waiting on 1 dependency")).toBe(true);

    const sent = dynamo.commandCalls(UpdateCommand);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.args[0].input.ExpressionAttributeValues).toMatchObject({
      ":blocked": "blocked",
      ":version": 4,
    });
    expect(dynamo.commandCalls(TransactWriteCommand)).toHaveLength(0);
  });

  it("setEscalatedTo answers false on a failed condition and throws on throttling", async () => {
    dynamo
      .on(UpdateCommand)
      .rejectsOnce(new ConditionalCheckFailedException({ message: "failed", $metadata: {} }))
      .rejects(throttled());

    expect(await repo.setEscalatedTo(JOB, "01NEW", "escalated to 01NEW", "2026-12-07T00:00:00.000Z")).toBe(
      false,
    );
    await expect(
      repo.setEscalatedTo(JOB, "01NEW", "escalated to 01NEW", "2026-12-07T00:00:00.000Z"),
    ).rejects.toBeInstanceOf(ProvisionedThroughputExceededException);
  });

  it("removeDependentEdge answers false when the edge was already gone", async () => {
    dynamo
      .on(DeleteCommand)
      .rejects(new ConditionalCheckFailedException({ message: "failed", $metadata: {} }));

    expect(await repo.removeDependentEdge("01PARENT", "01CHILD")).toBe(false);
  });
});

describe("changeAlone (a status change that touches the job alone)", () => {
  const jobUpdate = {
    Update: {
      TableName: TABLE,
      Key: { pk: "JOB#x", sk: "JOB" },
      UpdateExpression: "SET #status = :to",
      ConditionExpression: "#status = :from",
      ExpressionAttributeNames: { "#status": "status" },
      ExpressionAttributeValues: { ":to": "running", ":from": "dispatched" },
    },
  };

  it("writes the job's UpdateItem, then each record as its own PutItem, and no transaction", async () => {
    // Prepare
    dynamo.on(UpdateCommand).resolves({});
    dynamo.on(PutCommand).resolves({});

    // Act
    const outcome = await repo.changeAlone([jobUpdate, put("TRN#0000000002")], [put("ATT#0001")]);

    // Assess
    expect(outcome).toEqual({ outcome: "ok" });
    expect(dynamo.commandCalls(UpdateCommand)).toHaveLength(1);
    expect(dynamo.commandCalls(PutCommand).map((c) => c.args[0].input.Item?.sk)).toEqual([
      "TRN#0000000002",
      "ATT#0001",
    ]);
    expect(dynamo.commandCalls(TransactWriteCommand)).toHaveLength(0);
  });

  it("answers changed and puts no record when the job's condition fails", async () => {
    // Prepare
    dynamo
      .on(UpdateCommand)
      .rejects(
        new ConditionalCheckFailedException({ message: "The conditional request failed", $metadata: {} }),
      );

    // Act
    const outcome = await repo.changeAlone([jobUpdate, put("TRN#0000000002")], [put("ATT#0001")]);

    // Assess
    expect(outcome).toEqual({ outcome: "changed" });
    expect(dynamo.commandCalls(PutCommand)).toHaveLength(0);
  });

  it("takes a record already there (an earlier try's, or the one the attempt's end wrote) as written", async () => {
    // Prepare
    dynamo.on(UpdateCommand).resolves({});
    dynamo
      .on(PutCommand)
      .rejects(
        new ConditionalCheckFailedException({ message: "The conditional request failed", $metadata: {} }),
      );

    // Act
    const outcome = await repo.changeAlone([jobUpdate, put("TRN#0000000002")], [put("ATT#0001")]);

    // Assess
    expect(outcome).toEqual({ outcome: "ok" });
  });

  it("answers ok, naming what kept the records out, when the change landed and a record was throttled", async () => {
    // Prepare
    dynamo.on(UpdateCommand).resolves({});
    dynamo.on(PutCommand).rejects(throttled());

    // Act
    const outcome = await repo.changeAlone([jobUpdate, put("TRN#0000000002")], [put("ATT#0001")]);

    // Assess: the change stands; the caller runs the attempt and says what is missing.
    expect(outcome).toMatchObject({ outcome: "ok" });
    expect("recordsUnwritten" in outcome && outcome.recordsUnwritten).toBeInstanceOf(
      ProvisionedThroughputExceededException,
    );
  });

  it("passes throttling of the job's write up, having written nothing else", async () => {
    // Prepare
    dynamo.on(UpdateCommand).rejects(throttled());

    // Act
    const written = repo.changeAlone([jobUpdate, put("TRN#0000000002")]);

    // Assess
    await expect(written).rejects.toBeInstanceOf(ProvisionedThroughputExceededException);
    expect(dynamo.commandCalls(PutCommand)).toHaveLength(0);
  });

  it("refuses anything but one job Update and history Puts", async () => {
    await expect(repo.changeAlone([put("TRN#0000000002")])).rejects.toThrow(/one job Update/);
    await expect(repo.changeAlone([jobUpdate, jobUpdate])).rejects.toThrow(/one job Update/);
  });
});
