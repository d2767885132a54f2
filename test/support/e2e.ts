import { afterAll, beforeAll, expect, inject, onTestFailed } from "vitest";
import type { JobStatus } from "../../core/job";
import { type LocalStack, type LocalStackOptions, startLocalStack } from "../../local/stack";
import { request } from "./api";

/**
 * One whole local stack for an e2e test file, as under `npm start` (the API, the lifecycle
 * executions, the scheduler, SQS and one worker process per node), on the run's DynamoDB Local
 * under the file's own table prefix; plus the few HTTP calls every such file makes.
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
  submit(body: Record<string, unknown>): Promise<E2eJob>;
  getJob(id: string): Promise<E2eJob>;
  /** Call in a test: if it fails, the workers' last output is printed with it. */
  showWorkersOnFailure(): void;
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

  const running = (): LocalStack => {
    if (!stack)
      throw new Error("the local stack has not started (call useLocalStack at the file's top level)");
    return stack;
  };
  return {
    get stack() {
      return running();
    },
    async submit(body) {
      const response = await request<E2eJob>(running().url, "POST", "/jobs", { token, body });
      expect(response.status).toBe(201);
      return response.json;
    },
    async getJob(id) {
      const response = await request<E2eJob>(running().url, "GET", `/jobs/${id}`, { token });
      expect(response.status).toBe(200);
      return response.json;
    },
    showWorkersOnFailure() {
      onTestFailed(() => {
        console.error(`--- last worker output ---\n${workerLines.slice(-80).join("\n")}`);
      });
    },
  };
}
