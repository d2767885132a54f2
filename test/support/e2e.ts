import { afterAll, afterEach, beforeAll, expect, inject, onTestFailed } from "vitest";
import { JobqClient, type SubmitJobRequest } from "../../client";
import type { JobStatus } from "../../core/job";
import { type LocalStack, type LocalStackOptions, startLocalStack } from "../../local/stack";
import { ContractRecorder } from "./contract";

/**
 * One whole local stack for an e2e test file, as under `npm start` (the API, the lifecycle
 * executions, the scheduler, SQS and one worker process per node), on the run's DynamoDB Local
 * under the file's own table prefix; plus the few HTTP calls every such file makes, through the
 * typed client (client/), with every answer held to the OpenAPI document (test/support/contract.ts).
 */

export const TERMINAL: readonly JobStatus[] = ["completed", "failed", "cancelled", "escalated"];

/** The job fields the e2e tests read. */
export interface E2eJob {
  readonly id: string;
  readonly status: JobStatus;
  readonly statusReason: string;
  readonly result: unknown;
  readonly error: { readonly type?: string; readonly message?: string } | null;
  readonly attempts: number;
  readonly escalatedTo: string | null;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
}

export interface E2eStack {
  /** The running stack (set once the file's beforeAll has run). */
  readonly stack: LocalStack;
  /** The typed client with the file's token; a test fails when an answer breaks the document. */
  readonly client: JobqClient;
  submit(body: SubmitJobRequest): Promise<E2eJob>;
  getJob(id: string): Promise<E2eJob>;
  /** Call in a test: if it fails, the workers' last output is printed with it. */
  showWorkersOnFailure(): void;
  /** The workers' last 400 output lines (`[worker <node>] …`, and the supervisor's own). */
  workerOutput(): readonly string[];
}

/** Starts the stack before the file's tests and stops it after them. */
export function useLocalStack(
  token: string,
  options: Omit<LocalStackOptions, "dynamoEndpoint" | "workerOutput">,
): E2eStack {
  let stack: LocalStack | undefined;
  const workerLines: string[] = [];
  beforeAll(async () => {
    stack = await startLocalStack({
      ...options,
      dynamoEndpoint: inject("dynamoEndpoint"),
      workerOutput: (line) => {
        workerLines.push(line);
        if (workerLines.length > 400) workerLines.shift();
      },
    });
  }, 180_000);
  afterAll(async () => {
    await stack?.stop();
  }, 60_000);
  const recorder = new ContractRecorder();
  afterEach(() => {
    expect(recorder.violations.splice(0), "answers that break the OpenAPI document").toEqual([]);
  });
  let client: JobqClient | undefined;
  const clientOf = (): JobqClient => {
    client ??= new JobqClient({ url: running().url, token, fetch: recorder.fetch });
    return client;
  };

  const running = (): LocalStack => {
    if (!stack)
      throw new Error("the local stack has not started (call useLocalStack at the file's top level)");
    return stack;
  };
  return {
    get stack() {
      return running();
    },
    get client() {
      return clientOf();
    },
    // Plain functions, not methods: test files destructure them.
    async submit(body) {
      const answer = await clientOf().submitAnswer(body);
      expect(answer.status).toBe(201);
      return answer.body;
    },
    getJob(id) {
      return clientOf().getJob(id);
    },
    workerOutput() {
      return [...workerLines];
    },
    showWorkersOnFailure() {
      onTestFailed(() => {
        console.error(`--- last worker output ---\n${workerLines.slice(-80).join("\n")}`);
      });
    },
  };
}

/** Polls `read` until `done` holds; fails with the last value after the deadline. */
export type Until = <T>(
  what: string,
  read: () => Promise<T>,
  done: (value: T) => boolean,
  deadlineMs?: number,
) => Promise<T>;

/** An `until` whose deadline is `defaultDeadlineMs` unless a call names its own. */
export function untilWithin(defaultDeadlineMs: number): Until {
  return async (what, read, done, deadlineMs = defaultDeadlineMs) => {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const value = await read();
      if (done(value)) return value;
      if (Date.now() > deadline) {
        throw new Error(`${what}: not reached within ${deadlineMs} ms; last: ${JSON.stringify(value)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  };
}
