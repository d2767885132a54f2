import type { AttributeValue, DynamoDBRecord } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { foldChanges } from "../../core/stats";
import { jobChangeOf, jobImageOf } from "../../store/job-stream";

/** A job item image as DynamoDB Streams delivers it (DynamoDB JSON). */
function jobImage(overrides: Record<string, AttributeValue> = {}): Record<string, AttributeValue> {
  return {
    pk: { S: "JOB#job_1" },
    sk: { S: "JOB" },
    entity: { S: "job" },
    id: { S: "job_1" },
    status: { S: "running" },
    owner: { S: "alice" },
    type: { S: "train" },
    pool: { NULL: true },
    reservation: {
      M: {
        pool: { S: "gpu" },
        nodeId: { S: "n1" },
        cpu: { N: "1" },
        memoryMb: { N: "512" },
        gpu: { N: "1" },
      },
    },
    createdAt: { S: "2026-12-06T09:00:00.000Z" },
    updatedAt: { S: "2026-12-06T09:00:10.000Z" },
    queuedAt: { S: "2026-12-06T09:00:00.000Z" },
    attemptStartedAt: { S: "2026-12-06T09:00:10.000Z" },
    version: { N: "4" },
    ...overrides,
  };
}

function record(
  sequence: string,
  oldImage: Record<string, AttributeValue> | undefined,
  newImage: Record<string, AttributeValue> | undefined,
): DynamoDBRecord {
  return {
    eventName: oldImage ? (newImage ? "MODIFY" : "REMOVE") : "INSERT",
    eventSource: "aws:dynamodb",
    eventSourceARN: "arn:aws:dynamodb:us-east-1:000000000000:table/jobq-Jobs/stream/2026-12-06T00:00:00.000",
    dynamodb: {
      SequenceNumber: sequence,
      OldImage: oldImage,
      NewImage: newImage,
      StreamViewType: "NEW_AND_OLD_IMAGES",
    },
  };
}

describe("stream records as job changes", () => {
  it("reads what the fold needs from a job item image", () => {
    expect(jobImageOf(jobImage())).toEqual({
      id: "job_1",
      status: "running",
      owner: "alice",
      project: null,
      type: "train",
      pool: null,
      reservationPool: "gpu",
      createdAt: "2026-12-06T09:00:00.000Z",
      updatedAt: "2026-12-06T09:00:10.000Z",
      queuedAt: "2026-12-06T09:00:00.000Z",
      attemptStartedAt: "2026-12-06T09:00:10.000Z",
      staged: false,
    });
  });

  it("skips the job's other items: transitions, attempts, results, logs, edges", () => {
    const transition = { pk: { S: "JOB#job_1" }, sk: { S: "TRN#0000000004" }, entity: { S: "transition" } };

    expect(jobChangeOf(record("100", undefined, transition))).toBeNull();
    expect(jobImageOf(jobImage({ sk: { S: "JOB#RESULT" } }))).toBeNull();
    expect(jobImageOf(jobImage({ status: { S: "exploded" } }))).toBeNull();
  });

  it("turns a completion record into a completed job with its run time", () => {
    const ended = jobImage({ status: { S: "completed" }, updatedAt: { S: "2026-12-06T09:00:40.000Z" } });
    const change = jobChangeOf(record("200", jobImage(), ended));

    expect(change?.sequence).toBe("200");
    const delta = foldChanges(change ? [change] : []);
    expect(delta.minutes.get("2026-12-06T09:00")?.get("type:train")?.completed).toBe(1);
    expect([...delta.byStatus]).toEqual(
      expect.arrayContaining([
        ["running", -1],
        ["completed", 1],
      ]),
    );
  });

  it("keeps staged jobs out", () => {
    expect(jobImageOf(jobImage({ staged: { BOOL: true } }))?.staged).toBe(true);
    expect(
      foldChanges([{ old: null, new: jobImageOf(jobImage({ staged: { BOOL: true } })) }]).byStatus.size,
    ).toBe(0);
  });
});
