import type { AttributeValue, DynamoDBRecord } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { completedJobOf } from "../../store/job-stream";

/** A job item image as DynamoDB Streams delivers it (DynamoDB JSON), in the given status. */
function jobImage(status: string, sk = "JOB"): Record<string, AttributeValue> {
  return {
    pk: { S: "JOB#job_1" },
    sk: { S: sk },
    id: { S: "job_1" },
    status: { S: status },
    version: { N: "5" },
  };
}

function record(
  oldImage: Record<string, AttributeValue> | undefined,
  newImage: Record<string, AttributeValue> | undefined,
): DynamoDBRecord {
  return {
    eventName: oldImage ? (newImage ? "MODIFY" : "REMOVE") : "INSERT",
    eventSource: "aws:dynamodb",
    dynamodb: {
      Keys: { pk: { S: "JOB#job_1" }, sk: (newImage ?? oldImage)?.sk ?? { S: "JOB" } },
      SequenceNumber: "1",
      OldImage: oldImage,
      NewImage: newImage,
      StreamViewType: "NEW_AND_OLD_IMAGES",
    },
  };
}

describe("the dependents consumer's reading of the Jobs table's stream", () => {
  it("names a job that became completed", () => {
    expect(completedJobOf(record(jobImage("running"), jobImage("completed")))).toBe("job_1");
  });

  it("ignores a completed job written again (a retention renewal, an export mark)", () => {
    expect(completedJobOf(record(jobImage("completed"), jobImage("completed")))).toBeNull();
  });

  it("ignores every other status change, a removal, and items that are not the job", () => {
    expect(completedJobOf(record(jobImage("dispatched"), jobImage("running")))).toBeNull();
    expect(completedJobOf(record(jobImage("running"), jobImage("failed")))).toBeNull();
    expect(completedJobOf(record(jobImage("completed"), undefined))).toBeNull();
    expect(completedJobOf(record(undefined, jobImage("completed", "JOB#RESULT")))).toBeNull();
  });
});
