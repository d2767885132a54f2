import type { DispatchInput } from "../../app/lifecycle";

/**
 * What the Step Functions adapter tests start and answer: a state machine ARN (never reached:
 * aws-sdk-client-mock or a loopback transport answers) and one attempt's Dispatch input.
 */
export const STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:jobq-lifecycle";

export const DISPATCH_INPUT: DispatchInput = {
  jobId: "01JOB",
  pool: "cpu",
  nodeId: "cpu-1",
  queueUrl: "http://127.0.0.1:9324/queue/cpu-normal",
  attempt: 1,
  timeoutSeconds: 60,
  heartbeatSeconds: 30,
  lostAfterSeconds: 90,
};
