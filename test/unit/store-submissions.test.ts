import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  ProvisionedThroughputExceededException,
  TransactionCanceledException,
} from "@aws-sdk/client-dynamodb";
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { mockClient } from "aws-sdk-client-mock";
import { afterEach, describe, expect, it } from "vitest";
import { ConcurrentUpdateError } from "../../core/errors";
import { IdempotencyClaims, type IdempotencyRecord } from "../../store/idempotency-claims";
import { type JobItem, toJobItem } from "../../store/job-items";
import { JobRepository } from "../../store/job-repository";
import { commitStagedJobs, createJobs, deleteStagedJob } from "../../store/submissions";
import { seededJob } from "../support/jobs";

/**
 * The submission store verbs' answers to what DynamoDB Local never produces on demand: a
 * transaction cancelled by a conflict with another transaction (not a condition), cancellations
 * naming one item or another, and throttling. aws-sdk-client-mock stands in for DynamoDB only here;
 * the outcomes of real conditions are tested against DynamoDB Local
 * (test/integration/store-submissions.test.ts).
 */

const client = DynamoDBDocumentClient.from(
  new DynamoDBClient({
    region: "us-east-1",
    endpoint: "http://127.0.0.1:1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  }),
);
const dynamo = mockClient(DynamoDBDocumentClient);
afterEach(() => dynamo.reset());

const repo = new JobRepository(client, "jobs");
const claims = new IdempotencyClaims(repo);

const RECORD: IdempotencyRecord = {
  pk: "IDEM#alice#k",
  sk: "IDEM",
  requestHash: "h",
  state: "pending",
  jobIds: ["job_A"],
  token: "t1",
  claimedAt: 1,
  expiresAt: 2,
};

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

/** A queued job's item, as a submission plans it. */
function job(id: string): JobItem {
  return toJobItem(
    seededJob({ id, type: "echo", status: "queued", owner: "alice", createdAt: "2026-12-06T12:00:00.000Z" }),
    0,
    true,
  );
}
const newJob = (id: string) => ({ item: job(id), transition: { pk: `JOB#${id}`, sk: "TRN#1" }, edges: [] });

describe("createJobs", () => {
  it("answers claim_lost when the claim, sent last, failed its condition", async () => {
    // Prepare
    dynamo.on(TransactWriteCommand).rejects(cancelled("None", "None", "ConditionalCheckFailed"));

    // Act
    const outcome = await createJobs(
      repo,
      [newJob("job_A")],
      [],
      claims.movePart(RECORD, "pending", "complete"),
    );

    // Assess
    expect(outcome).toMatchObject({ ok: false, reason: "claim_lost" });
    const sent = dynamo.commandCalls(TransactWriteCommand)[0]?.args[0].input.TransactItems ?? [];
    expect(sent.at(-1)?.Update?.Key).toEqual({ pk: RECORD.pk, sk: RECORD.sk });
  });

  it("answers changed when a dependency's check failed, or a conflict cancelled the claim's move", async () => {
    // Prepare
    dynamo
      .on(TransactWriteCommand)
      .rejectsOnce(cancelled("None", "None", "ConditionalCheckFailed", "None"))
      .rejectsOnce(cancelled("None", "None", "None", "TransactionConflict"));
    const claim = claims.movePart(RECORD, "pending", "complete");

    // Act
    const dependencyChanged = await createJobs(repo, [newJob("job_A")], [job("job_P")], claim);
    const conflict = await createJobs(repo, [newJob("job_A")], [job("job_P")], claim);

    // Assess
    expect(dependencyChanged).toMatchObject({ ok: false, reason: "changed" });
    expect(conflict).toMatchObject({ ok: false, reason: "changed" });
    expect(conflict.ok ? null : conflict.error).toBeInstanceOf(ConcurrentUpdateError);
  });

  it("lets throttling through as it is", async () => {
    // Prepare
    dynamo.on(TransactWriteCommand).rejects(throttled());

    // Act
    const outcome = createJobs(repo, [newJob("job_A"), newJob("job_B")], []);

    // Assess
    await expect(outcome).rejects.toBeInstanceOf(ProvisionedThroughputExceededException);
  });
});

describe("commitStagedJobs", () => {
  it("answers claim_lost when the claim, sent first, failed its condition", async () => {
    // Prepare
    dynamo.on(TransactWriteCommand).rejects(cancelled("ConditionalCheckFailed", "None"));

    // Act
    const outcome = await commitStagedJobs(repo, [job("job_A")], claims.checkPart(RECORD, "committing"));

    // Assess
    expect(outcome).toMatchObject({ ok: false, reason: "claim_lost" });
  });

  it("answers changed when a staged job's condition failed, with a claim or without", async () => {
    // Prepare
    dynamo.on(TransactWriteCommand).rejects(cancelled("None", "ConditionalCheckFailed"));

    // Act
    const withClaim = await commitStagedJobs(repo, [job("job_A")], claims.checkPart(RECORD, "committing"));
    const without = await commitStagedJobs(repo, [job("job_A"), job("job_B")]);

    // Assess
    expect(withClaim).toMatchObject({ ok: false, reason: "changed" });
    expect(without).toMatchObject({ ok: false, reason: "changed" });
  });
});

describe("IdempotencyClaims and deleteStagedJob", () => {
  it("answer false for a failed condition, with the item in the error or without", async () => {
    // Prepare
    dynamo
      .on(UpdateCommand)
      .rejectsOnce(new ConditionalCheckFailedException({ message: "failed", $metadata: {} }))
      .rejectsOnce(
        new ConditionalCheckFailedException({
          message: "failed",
          $metadata: {},
          Item: { pk: { S: RECORD.pk }, token: { S: "t2" } },
        }),
      );
    dynamo
      .on(DeleteCommand)
      .rejects(new ConditionalCheckFailedException({ message: "failed", $metadata: {} }));

    // Act
    const moved = await claims.move(RECORD, "pending", "complete");
    const reassigned = await claims.reassign(RECORD, ["job_B"]);
    const deleted = await deleteStagedJob(repo, job("job_A"));

    // Assess
    expect([moved, reassigned, deleted]).toEqual([false, false, false]);
  });

  it("let throttling through instead of calling the claim lost", async () => {
    // Prepare
    dynamo.on(UpdateCommand).rejects(throttled());
    dynamo.on(DeleteCommand).rejects(throttled());

    // Act
    const moved = claims.move(RECORD, "committing", "complete");
    const released = claims.release(RECORD);

    // Assess
    await expect(moved).rejects.toBeInstanceOf(ProvisionedThroughputExceededException);
    await expect(released).rejects.toBeInstanceOf(ProvisionedThroughputExceededException);
  });
});
