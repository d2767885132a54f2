import { ProvisionedThroughputExceededException } from "@aws-sdk/client-dynamodb";
import { ThrottlingException as EventBridgeThrottlingException } from "@aws-sdk/client-eventbridge";
import { SFNServiceException } from "@aws-sdk/client-sfn";
import { SQSServiceException } from "@aws-sdk/client-sqs";
import type {
  FinalizeRequestMiddleware,
  MetadataBearer,
  MiddlewareStack,
  RetryableTrait,
} from "@smithy/types";

/**
 * Fault injection for the soak harness (bench/soak.ts): throttling errors thrown into the AWS SDK
 * clients of the control plane and the workers at a given rate, so that the SDK's retry strategy
 * and our own handling of a request that still fails after its retries are exercised the way a
 * busy AWS account exercises them.
 *
 * It is off unless a local entry point turns it on (local/stack.ts from JOBQ_FAULT_THROTTLE_RATE
 * in local/config.ts; worker/main.ts from the same variable, which the local stack passes to its
 * workers), and it is installed only on clients whose endpoint is on loopback: a client built for
 * AWS (no endpoint) never carries it, whatever the environment says.
 */

export type FaultService = "dynamodb" | "sfn" | "sqs" | "eventbridge";

export interface FaultSettings {
  /** Share of requests (0..1) answered with the service's throttling error instead of being sent. */
  readonly throttleRate: number;
  /** Draws in [0, 1): seed it (seededRandom) for a reproducible sequence. @default Math.random */
  readonly random?: () => number;
}

const OFF: FaultSettings = { throttleRate: 0 };
let processSettings: FaultSettings = OFF;
const injected: Record<FaultService, number> = { dynamodb: 0, sfn: 0, sqs: 0, eventbridge: 0 };

/**
 * Turns injection on (or off, with undefined) for every client of this process that carries the
 * middleware. Read at each request, so clients built before or after this call both follow it.
 */
export function setFaultInjection(settings: FaultSettings | undefined): void {
  if (settings !== undefined && !(settings.throttleRate >= 0 && settings.throttleRate <= 1)) {
    throw new RangeError(`throttleRate must be within 0..1, got ${settings.throttleRate}`);
  }
  processSettings = settings ?? OFF;
}

/** Throttling errors injected in this process since start, by service. */
export function injectedFaults(): Readonly<Record<FaultService, number>> {
  return { ...injected };
}

/**
 * The error each service answers a throttled request with, as the SDK deserializes it: the modeled
 * class where the service has one (DynamoDB, EventBridge), the service's base exception named
 * `ThrottlingException` where it has none (Step Functions, SQS's JSON protocol). `$retryable`
 * marks it as the SDK marks a throttling error, so the retry strategy backs off with its
 * throttling delay and spends its retry quota on it.
 */
export function throttlingError(service: FaultService, operation: string): Error {
  const message = `Rate exceeded (injected by JOBQ_FAULT_THROTTLE_RATE) for ${operation}`;
  const $metadata = { httpStatusCode: 400, requestId: "injected-fault" };
  let error: Error & { $retryable?: RetryableTrait };
  switch (service) {
    case "dynamodb":
      error = new ProvisionedThroughputExceededException({ message, $metadata });
      break;
    case "eventbridge":
      error = new EventBridgeThrottlingException({ message, $metadata });
      break;
    case "sfn":
      error = new SFNServiceException({ name: "ThrottlingException", $fault: "client", message, $metadata });
      break;
    case "sqs":
      error = new SQSServiceException({ name: "ThrottlingException", $fault: "client", message, $metadata });
      break;
  }
  error.$retryable = { throttling: true };
  return error;
}

/**
 * The middleware itself. It sits in the finalizeRequest step below the SDK's retry middleware
 * (which is there at high priority), so every retry of a request draws again, as every retry of a
 * real request may be throttled again; a throttled request is never sent, as a real one is refused
 * before it has any effect.
 */
export function throttleMiddleware<I extends object, O extends MetadataBearer>(
  service: FaultService,
  settings: () => FaultSettings = () => processSettings,
): FinalizeRequestMiddleware<I, O> {
  return (next, context) => async (args) => {
    const { throttleRate, random = Math.random } = settings();
    if (throttleRate > 0 && random() < throttleRate) {
      injected[service] += 1;
      throw throttlingError(service, context.commandName ?? "a request");
    }
    return next(args);
  };
}

export const FAULT_MIDDLEWARE_NAME = "jobqFaultInjection";

/**
 * Adds the middleware to a client built for `endpoint`; a client without a loopback endpoint (AWS)
 * is left as it is. Call it where the client is built: `installFaultInjection(client.middlewareStack,
 * "sqs", endpoint)`.
 */
export function installFaultInjection<I extends object, O extends MetadataBearer>(
  stack: MiddlewareStack<I, O>,
  service: FaultService,
  endpoint: string | undefined,
  settings?: () => FaultSettings,
): void {
  if (!isLoopback(endpoint)) return;
  stack.add(throttleMiddleware<I, O>(service, settings), {
    step: "finalizeRequest",
    priority: "low",
    name: FAULT_MIDDLEWARE_NAME,
    override: true,
  });
}

export function isLoopback(endpoint: string | undefined): boolean {
  if (endpoint === undefined) return false;
  try {
    const host = new URL(endpoint).hostname;
    return host === "localhost" || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host);
  } catch {
    return false;
  }
}

/** A small seeded generator (mulberry32): the same seed draws the same sequence. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
