/**
 * The bounds of the runtime settings every jobq process reads: one table for the processes'
 * configuration (app/config.ts, checked at cold start) and the CDK constructs (lib/jobq-function.ts,
 * checked at synth), so a value the synth accepts is never one the deployed functions refuse.
 * Whole numbers, bounds included.
 */
export interface RuntimeLimit {
  readonly min: number;
  readonly max: number;
}

export const RUNTIME_LIMITS = {
  /** How often a worker heartbeats a running attempt (every third of it), in seconds. */
  heartbeatSeconds: { min: 2, max: 3600 },
  /** Step Functions' backstop for an attempt without a heartbeat, in seconds. */
  lostAfterSeconds: { min: 10, max: 86_400 },
  /** A node silent this long is lost, in seconds. */
  nodeLostSeconds: { min: 2, max: 3600 },
  /** DynamoDB's TTL counts whole days here: an ended job's history, in days. */
  retentionDays: { min: 1, max: 36_500 },
  /** An ended job itself, in days. */
  jobRetentionDays: { min: 1, max: 36_500 },
} as const satisfies Record<string, RuntimeLimit>;
