import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  MessageNotInflight,
  QueueDoesNotExist,
  ReceiptHandleIsInvalid,
  ReceiveMessageCommand,
  RequestThrottled,
  SQSClient,
  SQSServiceException,
} from "@aws-sdk/client-sqs";
import { mockClient } from "aws-sdk-client-mock";
import { afterEach, describe, expect, it } from "vitest";
import { DispatchQueue, DispatchQueueMissingError, isReceiptGone } from "../../store/dispatch-queue";

/**
 * The worker's SQS adapter (store/dispatch-queue.ts) and its answers to what fauxqs never gives:
 * throttling past the SDK's retries, a receipt handle SQS no longer honours, a queue that does not
 * exist. The dispatch message itself is sent by the lifecycle's Dispatch state (an SQS service
 * integration of Step Functions), so no jobq code sends one. aws-sdk-client-mock stands in for SQS
 * only here; the worker's real polling runs against fauxqs (test/integration/worker.test.ts).
 */

const QUEUES = {
  high: "http://127.0.0.1:9324/000000000000/jobq-cpu-high",
  normal: "http://127.0.0.1:9324/000000000000/jobq-cpu-normal",
} as const;
const HANDLE = "AQEB-receipt-handle";

function throttled(): RequestThrottled {
  return new RequestThrottled({ message: "Request is throttled.", $metadata: {} });
}

function missingQueue(): QueueDoesNotExist {
  return new QueueDoesNotExist({ message: "The specified queue does not exist.", $metadata: {} });
}

function receiptHandleInvalid(): ReceiptHandleIsInvalid {
  return new ReceiptHandleIsInvalid({ message: "The input receipt handle is invalid.", $metadata: {} });
}

/** What SQS's query protocol answers ChangeMessageVisibility for a message no longer in flight. */
function notAvailableForVisibilityChange(): SQSServiceException {
  return new SQSServiceException({
    name: "InvalidParameterValue",
    $fault: "client",
    $metadata: {},
    message: `Value ${HANDLE} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.`,
  });
}

describe("DispatchQueue", () => {
  const sqs = mockClient(SQSClient);
  afterEach(() => sqs.reset());

  describe("receive", () => {
    it("asks the tier's queue for one message, waiting as long as asked", async () => {
      // Prepare
      sqs
        .on(ReceiveMessageCommand)
        .resolves({ Messages: [{ MessageId: "m1", ReceiptHandle: HANDLE, Body: "{}" }] });
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const messages = await queue.receive("normal", 10);

      // Assess
      expect(messages.map((m) => m.MessageId)).toEqual(["m1"]);
      expect(sqs.commandCalls(ReceiveMessageCommand)[0]?.args[0].input).toEqual({
        QueueUrl: QUEUES.normal,
        MaxNumberOfMessages: 1,
        WaitTimeSeconds: 10,
      });
    });

    it("answers no message as an empty list", async () => {
      // Prepare
      sqs.on(ReceiveMessageCommand).resolves({});
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act / Assess
      await expect(queue.receive("high", 0)).resolves.toEqual([]);
    });

    it("surfaces throttling as SQS gave it, for the worker to log and poll again", async () => {
      // Prepare
      sqs.on(ReceiveMessageCommand).rejects(throttled());
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const receive = queue.receive("high", 0);

      // Assess
      await expect(receive).rejects.toBeInstanceOf(RequestThrottled);
    });

    it("names the tier and the URL of a queue that does not exist, keeping SQS's error as the cause", async () => {
      // Prepare
      const cause = missingQueue();
      sqs.on(ReceiveMessageCommand).rejects(cause);
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const error = await queue.receive("high", 20).catch((e: unknown) => e);

      // Assess
      expect(error).toBeInstanceOf(DispatchQueueMissingError);
      expect(error).toMatchObject({ tier: "high", queueUrl: QUEUES.high, cause });
      expect((error as Error).message).toContain(QUEUES.high);
    });

    it("refuses a tier the pool has no queue for without asking SQS", async () => {
      // Prepare
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const receive = queue.receive("critical", 0);

      // Assess
      await expect(receive).rejects.toThrow(/no queue for tier critical/);
      expect(sqs.calls()).toHaveLength(0);
    });
  });

  describe("delete", () => {
    it("deletes the message by its receipt handle", async () => {
      // Prepare
      sqs.on(DeleteMessageCommand).resolves({});
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const deleted = await queue.delete("normal", HANDLE);

      // Assess
      expect(deleted).toBe("deleted");
      expect(sqs.commandCalls(DeleteMessageCommand)[0]?.args[0].input).toEqual({
        QueueUrl: QUEUES.normal,
        ReceiptHandle: HANDLE,
      });
    });

    it("takes a receipt handle SQS no longer honours as gone: its next receiver deals with the message", async () => {
      // Prepare
      sqs.on(DeleteMessageCommand).rejects(receiptHandleInvalid());
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const deleted = await queue.delete("normal", HANDLE);

      // Assess
      expect(deleted).toBe("gone");
      expect(sqs.commandCalls(DeleteMessageCommand)).toHaveLength(1);
    });

    it("surfaces throttling: the message comes back after its visibility timeout and is found stale", async () => {
      // Prepare
      sqs.on(DeleteMessageCommand).rejects(throttled());
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const deleting = queue.delete("normal", HANDLE);

      // Assess
      await expect(deleting).rejects.toBeInstanceOf(RequestThrottled);
    });

    it("names a queue that does not exist", async () => {
      // Prepare
      sqs.on(DeleteMessageCommand).rejects(missingQueue());
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const deleting = queue.delete("normal", HANDLE);

      // Assess
      await expect(deleting).rejects.toBeInstanceOf(DispatchQueueMissingError);
    });
  });

  describe("handBack", () => {
    it("makes the message visible again after the delay", async () => {
      // Prepare
      sqs.on(ChangeMessageVisibilityCommand).resolves({});
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const handedBack = await queue.handBack("high", HANDLE, 1);

      // Assess
      expect(handedBack).toBe("handed_back");
      expect(sqs.commandCalls(ChangeMessageVisibilityCommand)[0]?.args[0].input).toEqual({
        QueueUrl: QUEUES.high,
        ReceiptHandle: HANDLE,
        VisibilityTimeout: 1,
      });
    });

    it.each([
      ["MessageNotInflight", () => new MessageNotInflight({ message: "not in flight", $metadata: {} })],
      ["ReceiptHandleIsInvalid", receiptHandleInvalid],
      ["InvalidParameterValue about the ReceiptHandle", notAvailableForVisibilityChange],
    ])("takes %s as gone: the message is visible already or another receiver's", async (_name, error) => {
      // Prepare
      sqs.on(ChangeMessageVisibilityCommand).rejects(error());
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const handedBack = await queue.handBack("high", HANDLE, 0);

      // Assess
      expect(handedBack).toBe("gone");
    });

    it("surfaces throttling and any other refusal", async () => {
      // Prepare
      const otherInvalid = new SQSServiceException({
        name: "InvalidParameterValue",
        $fault: "client",
        $metadata: {},
        message: "Value 50000 for parameter VisibilityTimeout is invalid.",
      });
      sqs.on(ChangeMessageVisibilityCommand).rejectsOnce(throttled()).rejectsOnce(otherInvalid);
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const first = queue.handBack("high", HANDLE, 0);
      await expect(first).rejects.toBeInstanceOf(RequestThrottled);
      const second = queue.handBack("high", HANDLE, 50_000);

      // Assess
      await expect(second).rejects.toBe(otherInvalid);
    });

    it("names a queue that does not exist", async () => {
      // Prepare
      sqs.on(ChangeMessageVisibilityCommand).rejects(missingQueue());
      const queue = new DispatchQueue(new SQSClient({}), QUEUES);

      // Act
      const handingBack = queue.handBack("normal", HANDLE, 0);

      // Assess
      await expect(handingBack).rejects.toMatchObject({ name: "DispatchQueueMissingError", tier: "normal" });
    });
  });
});

describe("isReceiptGone", () => {
  it("knows SQS's gone-handle answers and nothing else", () => {
    expect(isReceiptGone(receiptHandleInvalid())).toBe(true);
    expect(isReceiptGone(notAvailableForVisibilityChange())).toBe(true);
    expect(isReceiptGone(throttled())).toBe(false);
    expect(isReceiptGone(missingQueue())).toBe(false);
    expect(isReceiptGone("ReceiptHandleIsInvalid")).toBe(false);
  });
});
