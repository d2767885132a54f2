import { EventBridgeClient, PutEventsCommand } from "@aws-sdk/client-eventbridge";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventBridgePublisher, type JobStateChange } from "../../app/events";
import type { JobStatus } from "../../core/job";
import {
  type EventBridgeEvent,
  type EventPattern,
  type LocalEventBridge,
  matchesPattern,
  startLocalEventBridge,
} from "../../local/eventbridge";

/**
 * The local EventBridge: PutEvents (through app/events.ts's publisher, as the handlers send it)
 * delivered to the rule's target in process and after the answer; schedules as timers.
 */

const BUS = "jobq";

/** A rule a user might add: the jobs that add work or free capacity. */
const WAKE_PATTERN: EventPattern = {
  source: ["jobq"],
  "detail-type": ["Job State Change"],
  detail: { status: ["queued", "completed", "failed", "retrying", "cancelled", "paused", "escalated"] },
};
const credentials = { accessKeyId: "local", secretAccessKey: "local" };

let events: LocalEventBridge;
let client: EventBridgeClient;
const delivered: EventBridgeEvent[] = [];
const swept: EventBridgeEvent[] = [];
/** While set, the rule's target waits on it: shows that PutEvents does not wait for targets. */
let gate: Promise<void> | undefined;

beforeAll(async () => {
  events = await startLocalEventBridge({
    rules: [
      {
        name: "wake",
        eventBus: BUS,
        pattern: WAKE_PATTERN,
        target: async (event) => {
          await gate;
          delivered.push(event);
        },
      },
    ],
    schedules: [{ name: "sweep", intervalMs: 50, target: (event) => swept.push(event) }],
    log: false,
  });
  client = new EventBridgeClient({ endpoint: events.endpoint, region: "us-east-1", credentials });
});

afterAll(async () => {
  client?.destroy();
  await events?.stop();
});

function change(jobId: string, status: JobStatus): JobStateChange {
  return {
    jobId,
    owner: "alice",
    type: "echo",
    pool: null,
    priority: 0,
    previousStatus: "queued",
    status,
    statusReason: "test",
    at: "2026-11-25T12:00:00.000Z",
    version: 2,
  };
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("PutEvents", () => {
  it("delivers a Job State Change to the rule's target as an EventBridge event, after answering", async () => {
    // Prepare
    let open: () => void = () => undefined;
    gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const jobId = `job-events-${Date.now()}`;

    // Act
    await new EventBridgePublisher(client, BUS).publish([change(jobId, "completed")]);

    // Assess: answered while the target still waits; delivered once it may go on
    expect(delivered.some((event) => event.resources.includes(jobId))).toBe(false);
    open();
    gate = undefined;
    await until(() => delivered.some((event) => event.resources.includes(jobId)));
    const event = delivered.find((e) => e.resources.includes(jobId));
    expect(event).toMatchObject({
      version: "0",
      "detail-type": "Job State Change",
      source: "jobq",
      account: "000000000000",
      region: "us-east-1",
      time: "2026-11-25T12:00:00Z",
      resources: [jobId],
      detail: { jobId, status: "completed", previousStatus: "queued", version: 2 },
    });
    expect(typeof event?.id).toBe("string");
  });

  it("delivers only the statuses of the scheduler's rule", async () => {
    // Prepare
    const running = `job-running-${Date.now()}`;
    const queued = `job-queued-${Date.now()}`;

    // Act
    await new EventBridgePublisher(client, BUS).publish([
      change(running, "running"),
      change(queued, "queued"),
    ]);
    await until(() => delivered.some((event) => event.resources.includes(queued)));
    await events.idle();

    // Assess
    expect(delivered.some((event) => event.resources.includes(running))).toBe(false);
  });

  it("fails an entry for an unknown bus or a malformed detail, and delivers the rest", async () => {
    const jobId = `job-mixed-${Date.now()}`;

    const out = await client.send(
      new PutEventsCommand({
        Entries: [
          { Source: "jobq", DetailType: "Job State Change", Detail: "{}", EventBusName: "elsewhere" },
          { Source: "jobq", DetailType: "Job State Change", Detail: "not json", EventBusName: BUS },
          {
            Source: "jobq",
            DetailType: "Job State Change",
            Detail: JSON.stringify({ status: "failed" }),
            EventBusName: `arn:aws:events:us-east-1:000000000000:event-bus/${BUS}`,
            Resources: [jobId],
          },
        ],
      }),
    );

    expect(out.FailedEntryCount).toBe(2);
    expect(out.Entries?.[0]?.ErrorCode).toBe("ResourceNotFoundException");
    expect(out.Entries?.[1]?.ErrorCode).toBe("MalformedDetail");
    expect(out.Entries?.[2]?.EventId).toBeDefined();
    await until(() => delivered.some((event) => event.resources.includes(jobId)));
  });
});

describe("schedules", () => {
  it("delivers a Scheduled Event on every tick", async () => {
    const before = swept.length;

    await until(() => swept.length >= before + 2);

    expect(swept.at(-1)).toMatchObject({
      "detail-type": "Scheduled Event",
      source: "aws.events",
      resources: ["arn:aws:events:us-east-1:000000000000:rule/sweep"],
      detail: {},
    });
  });

  it("fires a schedule on demand and waits for its target", async () => {
    const before = swept.length;

    await events.fire("sweep");

    expect(swept.length).toBeGreaterThan(before);
    await expect(events.fire("nope")).rejects.toThrow(/no schedule/);
  });
});

describe("patterns", () => {
  it("matches listed values, nested fields and array fields", () => {
    const event = {
      source: "jobq",
      "detail-type": "Job State Change",
      detail: { status: "queued", tags: ["a", "b"] },
    };
    expect(matchesPattern(WAKE_PATTERN, event)).toBe(true);
    expect(matchesPattern(WAKE_PATTERN, { ...event, detail: { status: "running" } })).toBe(false);
    expect(matchesPattern(WAKE_PATTERN, { ...event, source: "other" })).toBe(false);
    expect(matchesPattern({ detail: { tags: ["b"] } }, event)).toBe(true);
    expect(matchesPattern({ detail: { missing: ["x"] } }, event)).toBe(false);
  });
});
