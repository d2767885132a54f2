import type { AttributeValue, DynamoDBRecord } from "aws-lambda";
import { describe, expect, it } from "vitest";
import {
  asksDependentsConsumer,
  completedJobOf,
  isJobItemRecord,
  schedulerWakeOf,
} from "../../store/job-stream";

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

describe("which completions invoke the dependents consumer", () => {
  const marked = (image: Record<string, AttributeValue>, extra: Record<string, AttributeValue>) => ({
    ...image,
    ...extra,
  });

  it("a completion of a job that may be waited on: one without the noDependents mark, as every older item", () => {
    expect(asksDependentsConsumer(record(jobImage("running"), jobImage("completed")))).toBe(true);
  });

  it("not a completion of a job created with nothing waiting on it", () => {
    const done = marked(jobImage("completed"), { noDependents: { BOOL: true } });
    expect(asksDependentsConsumer(record(jobImage("running"), done))).toBe(false);
  });

  it("a marked job's completion all the same when it was a circuit breaker's probe", () => {
    const probe = marked(jobImage("completed"), {
      noDependents: { BOOL: true },
      circuitProbe: { S: "type:etl" },
    });
    expect(asksDependentsConsumer(record(jobImage("running"), probe))).toBe(true);
  });

  it("nothing but a completion", () => {
    expect(asksDependentsConsumer(record(jobImage("dispatched"), jobImage("running")))).toBe(false);
    expect(asksDependentsConsumer(record(jobImage("completed"), jobImage("completed")))).toBe(false);
  });
});

describe("the scheduler's wake-ups from the Jobs table's stream", () => {
  const queued = (pool?: string): Record<string, AttributeValue> => ({
    ...jobImage("queued"),
    pool: pool ? { S: pool } : { NULL: true },
  });
  const holding = (status: string, pool = "gpu"): Record<string, AttributeValue> => ({
    ...jobImage(status),
    reservation: { M: { pool: { S: pool }, nodeId: { S: "n1" } } },
  });

  it("wakes the job's pool when a job becomes queued, and every pool for a job that named none", () => {
    expect(schedulerWakeOf(record(undefined, queued("gpu")))).toEqual({ pool: "gpu" });
    expect(schedulerWakeOf(record(jobImage("retrying"), queued("cpu")))).toEqual({ pool: "cpu" });
    expect(schedulerWakeOf(record(undefined, queued()))).toEqual({ pool: null });
  });

  it("wakes the pool whose capacity a job gave back", () => {
    expect(schedulerWakeOf(record(holding("running"), jobImage("completed")))).toEqual({ pool: "gpu" });
    expect(schedulerWakeOf(record(holding("dispatched", "cpu"), jobImage("cancelled")))).toEqual({
      pool: "cpu",
    });
  });

  it("wakes when a large batch's commit makes its staged jobs visible, not when they are staged", () => {
    const staged = { ...queued("gpu"), staged: { BOOL: true } };
    expect(schedulerWakeOf(record(undefined, staged))).toBeNull();
    expect(schedulerWakeOf(record(staged, queued("gpu")))).toEqual({ pool: "gpu" });
  });

  it("stays asleep for the scheduler's own writes and for changes that neither add work nor free capacity", () => {
    // A waiting job's reason, written by a pass: still queued.
    expect(schedulerWakeOf(record(queued("gpu"), queued("gpu")))).toBeNull();
    // An admission and a start: the reservation is taken or kept, not freed.
    expect(schedulerWakeOf(record(queued("gpu"), holding("dispatched")))).toBeNull();
    expect(schedulerWakeOf(record(holding("dispatched"), holding("running")))).toBeNull();
    expect(schedulerWakeOf(record(undefined, jobImage("blocked")))).toBeNull();
  });
});

describe("the job-item key filter every consumer's event source has", () => {
  it("lets the job item's records through, and none of the items that share its partition", () => {
    expect(isJobItemRecord(record(jobImage("queued"), jobImage("dispatched")))).toBe(true);
    expect(isJobItemRecord(record(undefined, jobImage("queued")))).toBe(true);
    for (const sk of ["TRN#0000000002", "ATT#0001", "JOB#RESULT", "LOG#01J", "DEP#job_0", "DPT#job_2"]) {
      expect(isJobItemRecord(record(undefined, jobImage("running", sk)))).toBe(false);
    }
  });
});
