import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import type { PriorityName } from "../core/job";

/**
 * The worker's side of a pool's dispatch queues (one SQS queue per priority tier; the lifecycle's
 * Dispatch state sends to them): receive a dispatch message, delete it once its attempt started or
 * it was found stale, hand it back when this node has no room. It says in the queue's words what
 * SQS answered, so the worker can tell "nothing left to do" from a fault:
 * - a receipt handle SQS no longer honours (the message's visibility lapsed and someone received
 *   it again, or it was deleted already) is `gone`: at-least-once delivery means the message's
 *   next receiver deals with it, so there is nothing to delete or hand back, and nothing failed;
 * - a queue that does not exist is a DispatchQueueMissingError naming the tier and the URL (a
 *   JOBQ_QUEUES that does not match the stack): the worker keeps polling its other tiers and
 *   logs it on every round rather than exit, so a node is never lost to a queue being recreated;
 * - anything else, throttling included (the SDK's own retries have already run by then), is
 *   thrown as SQS gave it, for the caller to log: a message not deleted or not handed back comes
 *   back after its visibility timeout and is then found stale, so nothing is lost by it.
 */
export class DispatchQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queues: Partial<Readonly<Record<PriorityName, string>>>,
  ) {}

  /** At most one message of the tier, waiting up to `waitSeconds` for one (0: a short poll). */
  async receive(tier: PriorityName, waitSeconds: number): Promise<Message[]> {
    const queueUrl = this.queueUrl(tier);
    try {
      const out = await this.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 1,
          WaitTimeSeconds: waitSeconds,
        }),
      );
      return out.Messages ?? [];
    } catch (error) {
      throw this.mapped(error, tier, queueUrl);
    }
  }

  /** Deletes a received message: `gone` when its receipt handle no longer names it. */
  async delete(tier: PriorityName, receiptHandle: string | undefined): Promise<"deleted" | "gone"> {
    const queueUrl = this.queueUrl(tier);
    try {
      await this.sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: receiptHandle }));
      return "deleted";
    } catch (error) {
      if (isReceiptGone(error)) return "gone";
      throw this.mapped(error, tier, queueUrl);
    }
  }

  /**
   * Makes a received message visible again after `delaySeconds` (0: at once): `gone` when it is
   * no longer this receiver's to hand back (visible already, or received by another).
   */
  async handBack(
    tier: PriorityName,
    receiptHandle: string | undefined,
    delaySeconds: number,
  ): Promise<"handed_back" | "gone"> {
    const queueUrl = this.queueUrl(tier);
    try {
      await this.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: queueUrl,
          ReceiptHandle: receiptHandle,
          VisibilityTimeout: delaySeconds,
        }),
      );
      return "handed_back";
    } catch (error) {
      if (isReceiptGone(error)) return "gone";
      throw this.mapped(error, tier, queueUrl);
    }
  }

  private queueUrl(tier: PriorityName): string {
    const url = this.queues[tier];
    if (!url) throw new Error(`no queue for tier ${tier}`);
    return url;
  }

  private mapped(error: unknown, tier: PriorityName, queueUrl: string): unknown {
    return isQueueMissing(error) ? new DispatchQueueMissingError(tier, queueUrl, error) : error;
  }
}

/** The tier's queue does not exist: JOBQ_QUEUES names a queue the stack does not have (any more). */
export class DispatchQueueMissingError extends Error {
  constructor(
    readonly tier: PriorityName,
    readonly queueUrl: string,
    cause: unknown,
  ) {
    super(`the ${tier} tier's queue ${queueUrl} does not exist (JOBQ_QUEUES)`, { cause });
    this.name = "DispatchQueueMissingError";
  }
}

/**
 * SQS's answers that a receipt handle no longer names a message this receiver holds: malformed or
 * expired (ReceiptHandleIsInvalid; the query protocol's InvalidParameterValue about the
 * ReceiptHandle, "Message does not exist or is not available for visibility timeout change"), or
 * the message is not in flight any more (MessageNotInflight).
 */
export function isReceiptGone(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === "ReceiptHandleIsInvalid" || error.name === "MessageNotInflight") return true;
  return error.name === "InvalidParameterValue" && /ReceiptHandle/i.test(error.message);
}

/** QueueDoesNotExist (the query protocol's AWS.SimpleQueueService.NonExistentQueue). */
export function isQueueMissing(error: unknown): boolean {
  return (
    error instanceof Error &&
    (error.name === "QueueDoesNotExist" || error.name === "AWS.SimpleQueueService.NonExistentQueue")
  );
}
