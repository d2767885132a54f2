import { marshall } from "@aws-sdk/util-dynamodb";
import type { DynamoDBRecord } from "aws-lambda";
import { describe, expect, it } from "vitest";
import type { Job } from "../../core/job";
import {
  ADMIN_SUBSCRIBERS,
  audienceKeys,
  clientMessageSchema,
  isAnnounced,
  jobMessage,
  receives,
  subscriberKey,
} from "../../core/stream";
import { announcedChanges } from "../../store/job-stream";

const ID = "job_01JDZ7ZQ9C0000000000000000";
const OTHER = "job_01JDZ7ZQ9C0000000000000001";

function record(
  sk: string,
  oldImage: Record<string, unknown> | null,
  newImage: Record<string, unknown> | null,
  seq: string,
): DynamoDBRecord {
  const image = (value: Record<string, unknown>) => marshall(value, { removeUndefinedValues: true }) as never;
  return {
    eventName: oldImage ? (newImage ? "MODIFY" : "REMOVE") : "INSERT",
    dynamodb: {
      Keys: image({ pk: `JOB#${ID}`, sk }),
      SequenceNumber: seq,
      ...(oldImage ? { OldImage: image(oldImage) } : {}),
      ...(newImage ? { NewImage: image(newImage) } : {}),
    },
  };
}

const item = (status: string, version: number, extra: Record<string, unknown> = {}) => ({
  pk: `JOB#${ID}`,
  sk: "JOB",
  id: ID,
  owner: "alice",
  type: "echo",
  status,
  version,
  payloadJson: JSON.stringify({ big: "payload" }),
  tagsJson: "{}",
  constraintsJson: "{}",
  ...extra,
});

describe("isAnnounced", () => {
  it.each([
    ["an insert of a visible job", null, false, "queued", false, true],
    ["a status change", "queued", false, "dispatched", false, true],
    ["a write without a status change", "queued", false, "queued", false, false],
    ["a staged job being written", null, false, "queued", true, false],
    ["a staged job's commit", "queued", true, "queued", false, true],
    ["a delete", "completed", false, null, false, false],
  ] as const)("%s → %s", (_label, oldStatus, oldStaged, newStatus, newStaged, expected) => {
    expect(isAnnounced({ oldStatus, oldStaged, newStatus, newStaged })).toBe(expected);
  });
});

describe("announcedChanges", () => {
  it("turns the job item's status changes into jobs, in stream order, and skips everything else", () => {
    const records = [
      record("JOB", null, item("queued", 1), "1"),
      record("TRN#0000000001", null, { pk: `JOB#${ID}`, sk: "TRN#0000000001", to: "queued" }, "2"),
      record("JOB", item("queued", 1), item("queued", 2, { admissionToken: "t" }), "3"),
      record("JOB", item("queued", 2), item("dispatched", 3), "4"),
      record("JOB#RESULT", null, { pk: `JOB#${ID}`, sk: "JOB#RESULT" }, "5"),
    ];

    const changes = announcedChanges(records);

    expect(changes.map((c) => [c.sequenceNumber, c.job.status, c.job.version])).toEqual([
      ["1", "queued", 1],
      ["4", "dispatched", 3],
    ]);
    expect(changes[0]?.job.payload).toEqual({ big: "payload" });
  });
});

describe("jobMessage", () => {
  it("leaves out payload and result and keeps the version", () => {
    const job = {
      id: ID,
      owner: "alice",
      status: "running",
      version: 7,
      payload: { x: 1 },
      result: { y: 2 },
    } as unknown as Job;

    const message = jobMessage(job);

    expect(message).toEqual({ type: "job", job: { id: ID, owner: "alice", status: "running", version: 7 } });
  });
});

describe("who receives a job's changes", () => {
  const job = { id: ID, owner: "alice" };

  it("keys users by principal and admins together", () => {
    expect(subscriberKey({ id: "alice", admin: false })).toBe("P#alice");
    expect(subscriberKey({ id: "ops", admin: true })).toBe(ADMIN_SUBSCRIBERS);
    expect(audienceKeys("alice")).toEqual(["P#alice", ADMIN_SUBSCRIBERS]);
  });

  it.each([
    ["the owner", { id: "alice", admin: false }, null, true],
    ["another user", { id: "bob", admin: false }, null, false],
    ["an admin", { id: "ops", admin: true }, null, true],
    ["the owner narrowed to this job", { id: "alice", admin: false }, [ID], true],
    ["the owner narrowed to another job", { id: "alice", admin: false }, [OTHER], false],
    ["another user narrowed to this job", { id: "bob", admin: false }, [ID], false],
  ] as const)("%s → %s", (_label, principal, jobIds, expected) => {
    expect(receives({ principal, jobIds }, job)).toBe(expected);
  });
});

describe("client messages", () => {
  it.each([
    [{ action: "ping" }, true],
    [{ action: "subscribe", jobIds: [ID] }, true],
    [{ action: "subscribe", all: true }, true],
    [{ action: "subscribe", jobIds: [] }, false],
    [{ action: "subscribe", jobIds: ["job_1"] }, false],
    [{ action: "subscribe", all: false }, false],
    [{ action: "subscribe" }, false],
    [{ action: "ping", extra: 1 }, false],
    [{ action: "dance" }, false],
    ["ping", false],
  ])("%j valid: %s", (message, valid) => {
    expect(clientMessageSchema.safeParse(message).success).toBe(valid);
  });
});
