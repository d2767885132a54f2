import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import type { JobCost } from "../../core/cost";
import type { Attempt, Job, LogLine, Transition } from "../../core/job";
import type { ApiPrincipal } from "../../local/config";
import { DEFAULT_TEST_TOKENS, type TestApi, type TestResponse } from "./api";

/**
 * Helpers for the Jobs API integration tests, on top of test/support/api.ts: principals of their
 * own per test (so a list shows only what the test created), the contract's error shape, and the
 * list paging every list route shares.
 */

/** The error codes API.md lists, with the HTTP status each one is answered with. */
export const ERROR_STATUS: Readonly<Record<string, number>> = {
  validation_failed: 400,
  unknown_dependency: 400,
  dependency_cycle: 400,
  unknown_type: 400,
  unsatisfiable_resources: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  invalid_transition: 409,
  idempotency_key_reused: 409,
  payload_too_large: 413,
  too_many_requests: 429,
  internal: 500,
};

/** Every field API.md lists for the job object; nullable ones must be present as null. */
export const JOB_FIELDS = [
  "id",
  "name",
  "type",
  "status",
  "statusReason",
  "priority",
  "owner",
  "payload",
  "result",
  "error",
  "resources",
  "pool",
  "constraints",
  "dependsOn",
  "retry",
  "timeoutSeconds",
  "attempts",
  "runAt",
  "deadline",
  "offPeakOnly",
  "tags",
  "escalatedTo",
  "scheduleId",
  "createdAt",
  "updatedAt",
  "startedAt",
  "finishedAt",
  "nextAttemptAt",
] as const;

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly details?: unknown };
}

export interface JobView extends Job {
  readonly queuePosition?: number | null;
  readonly estimatedStartAt?: string | null;
  /** GET /jobs/{id} only (docs/cost.md). */
  readonly cost?: JobCost;
}

export interface ListPage<T> {
  readonly items: T[];
  readonly nextCursor: string | null;
}

export interface BatchResult {
  readonly jobs: Job[];
  readonly refs: Record<string, string>;
}

export type { Attempt, Job, LogLine, Transition };

/** Someone who calls the API: a principal and the bearer token that acts as it. */
export interface Actor {
  readonly principal: string;
  readonly token: string;
}

export const ALICE: Actor = { principal: "alice", token: "alice-token" };
export const BOB: Actor = { principal: "bob", token: "bob-token" };
export const ADMIN: Actor = { principal: "ops", token: "admin-token" };

/**
 * Fresh user principals for one test file, registered with the test API when it starts. A test
 * that lists "all my jobs" takes its own with `next()`, so no other test's jobs can appear there.
 * Names carry a random run id: DynamoDB Local lives for the whole run, shared by every file.
 */
export class PrincipalPool {
  private readonly actors: Actor[];
  private used = 0;

  constructor(label: string, size = 64) {
    const run = randomBytes(4).toString("hex");
    this.actors = Array.from({ length: size }, (_, i) => ({
      principal: `${label}-${run}-u${i}`,
      token: `${label}-${run}-token-${i}`,
    }));
  }

  /** The default tokens (alice, bob, ops the admin) plus this pool's users. */
  tokens(): Record<string, ApiPrincipal> {
    const tokens: Record<string, ApiPrincipal> = { ...DEFAULT_TEST_TOKENS };
    for (const actor of this.actors) tokens[actor.token] = { principal: actor.principal, role: "user" };
    return tokens;
  }

  /** A user no other test has used. */
  next(): Actor {
    const actor = this.actors[this.used++];
    if (!actor) throw new Error(`PrincipalPool exhausted after ${this.actors.length} users: raise its size`);
    return actor;
  }
}

/** A type name no other test uses, so `?type=` narrows a list to this test's jobs. */
export function uniqueType(label: string): string {
  return `${label}-${randomBytes(5).toString("hex")}`.toLowerCase();
}

/** Asserts a response is the contract's error: the status, the code, and a message. */
export function expectError(response: TestResponse<unknown>, status: number, code: string): ErrorBody {
  expect({ status: response.status, body: response.json }).toMatchObject({
    status,
    body: { error: { code, message: expect.any(String) } },
  });
  return response.json as ErrorBody;
}

/** The `details` of a validation_failed error as `path` → messages. */
export function problemPaths(body: ErrorBody): string[] {
  const details = body.error.details;
  if (!Array.isArray(details)) throw new Error(`details is not a list: ${JSON.stringify(details)}`);
  return details.map((problem: { path?: unknown }) => String(problem.path));
}

/** POST /jobs as `actor`, expecting 201; returns the job. */
export async function submitJob(api: TestApi, actor: Actor, body: Record<string, unknown>): Promise<Job> {
  const response = await api.request<Job>("POST", "/jobs", { token: actor.token, body });
  if (response.status !== 201) {
    throw new Error(`POST /jobs answered ${response.status}: ${JSON.stringify(response.json)}`);
  }
  return response.json;
}

/** POST /jobs/batch as `actor`, expecting 201. */
export async function submitBatch(
  api: TestApi,
  actor: Actor,
  jobs: readonly Record<string, unknown>[],
): Promise<BatchResult> {
  const response = await api.request<BatchResult>("POST", "/jobs/batch", {
    token: actor.token,
    body: { jobs },
  });
  if (response.status !== 201) {
    throw new Error(`POST /jobs/batch answered ${response.status}: ${JSON.stringify(response.json)}`);
  }
  return response.json;
}

/** GET /jobs/{id} as `actor`, expecting 200. */
export async function getJob(api: TestApi, actor: Actor, id: string): Promise<JobView> {
  const response = await api.request<JobView>("GET", `/jobs/${id}`, { token: actor.token });
  if (response.status !== 200) {
    throw new Error(`GET /jobs/${id} answered ${response.status}: ${JSON.stringify(response.json)}`);
  }
  return response.json;
}

/**
 * Every page of a list route, following nextCursor until null (bounded, so a cursor that never
 * ends fails the test instead of hanging it). Asserts each page has the list shape.
 */
export async function listAll<T>(
  api: TestApi,
  actor: Actor,
  path: string,
  query: Record<string, string> = {},
  maxPages = 100,
): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let cursor: string | null = null;
  for (let page = 1; page <= maxPages; page++) {
    const params = new URLSearchParams(query);
    if (cursor !== null) params.set("cursor", cursor);
    const qs = params.toString();
    const response = await api.request<ListPage<T>>("GET", qs ? `${path}?${qs}` : path, {
      token: actor.token,
    });
    if (response.status !== 200) {
      throw new Error(`GET ${path}?${qs} answered ${response.status}: ${JSON.stringify(response.json)}`);
    }
    expectListShape(response.json);
    items.push(...response.json.items);
    cursor = response.json.nextCursor;
    if (cursor === null) return { items, pages: page };
  }
  throw new Error(`GET ${path} still had a nextCursor after ${maxPages} pages`);
}

/** `{items: [...], nextCursor: string | null}`, as every list of API.md answers. */
export function expectListShape(body: unknown): void {
  expect(body).toBeTypeOf("object");
  const page = body as Record<string, unknown>;
  expect(Object.keys(page).sort()).toEqual(["items", "nextCursor"]);
  expect(Array.isArray(page.items)).toBe(true);
  expect(page.nextCursor === null || typeof page.nextCursor === "string").toBe(true);
}

/** Ids of `actor`'s jobs as GET /jobs lists them (all pages), newest first. */
export async function listedIds(
  api: TestApi,
  actor: Actor,
  query: Record<string, string> = {},
): Promise<string[]> {
  const { items } = await listAll<Job>(api, actor, "/jobs", { limit: "200", ...query });
  return items.map((job) => job.id);
}

/** Runs `work` over `inputs` with at most `concurrency` in flight; results in input order. */
export async function mapConcurrent<I, O>(
  inputs: readonly I[],
  concurrency: number,
  work: (input: I, index: number) => Promise<O>,
): Promise<O[]> {
  const results: O[] = new Array(inputs.length);
  let nextIndex = 0;
  const worker = async (): Promise<void> => {
    for (let index = nextIndex++; index < inputs.length; index = nextIndex++) {
      results[index] = await work(inputs[index] as I, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, inputs.length) }, worker));
  return results;
}

/**
 * A request with a body of raw bytes (not necessarily UTF-8), which test/support/api.ts cannot
 * send. The answer's body is returned as text and, when it is JSON, parsed.
 */
export async function rawRequest(
  api: TestApi,
  method: string,
  path: string,
  body: Uint8Array,
  token: string,
): Promise<{ status: number; text: string; json: unknown }> {
  const response = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body,
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, text, json };
}

/**
 * A job as if it had run and ended, for tests that seed the table directly (`toJobItem`): every
 * field its defaults, the given ones over them.
 */
export function seededJob(
  fields: Pick<Job, "id" | "type" | "status" | "owner" | "createdAt"> & Partial<Job>,
): Job {
  return {
    name: null,
    statusReason: "seeded",
    reasonCode: null,
    priority: 0,
    payload: null,
    result: null,
    error: null,
    resources: { cpu: 1, memoryMb: 128, gpu: 0 },
    pool: null,
    constraints: {},
    dependsOn: [],
    retry: {
      maxAttempts: 1,
      strategy: "exponential",
      initialDelaySeconds: 1,
      backoffMultiplier: 2,
      maxDelaySeconds: 1,
    },
    timeoutSeconds: 60,
    attempts: 0,
    runAt: null,
    deadline: null,
    offPeakOnly: false,
    onFailure: null,
    onTimeout: null,
    tags: {},
    escalatedTo: null,
    scheduleId: null,
    project: null,
    updatedAt: fields.createdAt,
    startedAt: null,
    finishedAt: fields.updatedAt ?? fields.createdAt,
    nextAttemptAt: null,
    version: 1,
    ...fields,
  };
}
