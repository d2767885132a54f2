/**
 * Every HTTP route of the API as data: the one list that the JobApi construct turns into API
 * Gateway resources, Lambda functions and least-privilege grants, and that the local stack
 * serves by calling the same handler modules.
 */

/** DynamoDB actions a handler needs on the jobs table; the construct grants exactly these. */
export type JobsTableAction =
  | "dynamodb:GetItem"
  | "dynamodb:BatchGetItem"
  | "dynamodb:Query"
  | "dynamodb:PutItem"
  | "dynamodb:UpdateItem"
  | "dynamodb:DeleteItem"
  | "dynamodb:BatchWriteItem"
  | "dynamodb:ConditionCheckItem"
  /** GET /admin/export only: a page of the whole table. */
  | "dynamodb:Scan";

/** DynamoDB actions a handler needs on the Nodes table (pools, nodes and their capacity). */
export type NodesTableAction =
  | "dynamodb:GetItem"
  | "dynamodb:Query"
  | "dynamodb:PutItem"
  | "dynamodb:UpdateItem"
  | "dynamodb:DeleteItem"
  | "dynamodb:ConditionCheckItem";

/** DynamoDB actions a handler needs on the Policy table (policy, quotas, GPU usage, run times). */
export type PolicyTableAction =
  | "dynamodb:GetItem"
  | "dynamodb:BatchGetItem"
  | "dynamodb:PutItem"
  | "dynamodb:UpdateItem"
  | "dynamodb:Query"
  | "dynamodb:DeleteItem"
  /** GET /admin/export only. */
  | "dynamodb:Scan";

/**
 * DynamoDB actions a handler needs on the Tokens table (hashes of API tokens). Only the admin
 * token routes have any; the authorizer's GetItem is granted by the JobApi construct itself.
 */
export type TokensTableAction =
  | "dynamodb:GetItem"
  | "dynamodb:PutItem"
  | "dynamodb:Scan"
  | "dynamodb:UpdateItem";

/** What a handler does to the job lifecycle executions (state-machines/job-lifecycle.asl.json). */
export type ExecutionAction = "states:StartExecution" | "states:StopExecution";

export interface RouteSpec {
  /** Stable id: the Lambda function's construct id. */
  readonly id: string;
  readonly method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE";
  /** API Gateway style: `{name}` marks a path parameter. */
  readonly path: string;
  /** Module under functions/api exporting `handler`. */
  readonly handler: string;
  /** false only for GET /health and GET /openapi.json. */
  readonly authorized: boolean;
  readonly jobsTable: readonly JobsTableAction[];
  /**
   * Actions on the Nodes table; a capacity release inside a status change's TransactWriteItems
   * is an UpdateItem there.
   * @default none
   */
  readonly nodesTable?: readonly NodesTableAction[];
  /**
   * Actions on the Policy table; GPU usage added inside a status change's TransactWriteItems is
   * an UpdateItem there.
   * @default none
   */
  readonly policyTable?: readonly PolicyTableAction[];
  /**
   * Actions on the Tokens table: the admin token routes only.
   * @default none
   */
  readonly tokensTable?: readonly TokensTableAction[];
  /** @default none */
  readonly states?: readonly ExecutionAction[];
  /**
   * Whether the handler publishes "Job State Change" events (events:PutEvents on the jobq bus).
   * @default false
   */
  readonly publishesEvents?: boolean;
}

const READ: readonly JobsTableAction[] = ["dynamodb:GetItem", "dynamodb:Query"];
/** A status change: a transaction of a conditional update and the transition's put. */
const TRANSITION: readonly JobsTableAction[] = [
  ...READ,
  "dynamodb:PutItem",
  "dynamodb:UpdateItem",
  "dynamodb:ConditionCheckItem",
];
const SUBMIT: readonly JobsTableAction[] = [
  ...READ,
  "dynamodb:BatchGetItem",
  "dynamodb:PutItem",
  "dynamodb:UpdateItem",
  "dynamodb:DeleteItem",
  "dynamodb:BatchWriteItem",
  "dynamodb:ConditionCheckItem",
];

/**
 * Submit reads the principal's quota item (maxQueuedJobs) and, when there is a limit, counts the
 * principal's jobs that have not started (a Query of the jobs table, in SUBMIT already).
 */
const SUBMIT_POLICY: readonly PolicyTableAction[] = ["dynamodb:GetItem"];
/** Ending a running attempt adds its GPU-seconds to its owner's usage items in the same transaction. */
const END_ATTEMPT_POLICY: readonly PolicyTableAction[] = ["dynamodb:UpdateItem"];
/** A quota's view: the limits item, the usage items, and the not-started count (jobs table). */
const QUOTA_READ_POLICY: readonly PolicyTableAction[] = ["dynamodb:GetItem", "dynamodb:BatchGetItem"];

/** What ranking the queue reads (app/queue.ts): nodes and the pool lease, policy and run times. */
const QUEUE_VIEW_NODES: readonly NodesTableAction[] = ["dynamodb:GetItem", "dynamodb:Query"];
const QUEUE_VIEW_POLICY: readonly PolicyTableAction[] = ["dynamodb:GetItem", "dynamodb:BatchGetItem"];

export const ROUTES: readonly RouteSpec[] = [
  { id: "Health", method: "GET", path: "/health", handler: "health", authorized: false, jobsTable: [] },
  {
    id: "SubmitJob",
    method: "POST",
    path: "/jobs",
    handler: "submit-job",
    authorized: true,
    jobsTable: SUBMIT,
    policyTable: SUBMIT_POLICY,
    publishesEvents: true,
  },
  {
    id: "SubmitBatch",
    method: "POST",
    path: "/jobs/batch",
    handler: "submit-batch",
    authorized: true,
    jobsTable: SUBMIT,
    policyTable: SUBMIT_POLICY,
    publishesEvents: true,
  },
  {
    id: "ListJobs",
    method: "GET",
    path: "/jobs",
    handler: "list-jobs",
    authorized: true,
    jobsTable: [...READ, "dynamodb:BatchGetItem"],
  },
  {
    id: "GetJob",
    method: "GET",
    path: "/jobs/{id}",
    handler: "get-job",
    authorized: true,
    // A queued job's position and estimate rank the queue as a pass would (app/queue.ts): the
    // nodes and their lease, the policy and run-time statistics; a blocked job's parents.
    jobsTable: [...READ, "dynamodb:BatchGetItem"],
    nodesTable: QUEUE_VIEW_NODES,
    policyTable: QUEUE_VIEW_POLICY,
  },
  {
    id: "GetQueue",
    method: "GET",
    path: "/queue",
    handler: "get-queue",
    authorized: true,
    jobsTable: READ,
    nodesTable: QUEUE_VIEW_NODES,
    policyTable: QUEUE_VIEW_POLICY,
  },
  {
    id: "UpdateJob",
    method: "PATCH",
    path: "/jobs/{id}",
    handler: "update-job",
    authorized: true,
    jobsTable: TRANSITION,
    // maxPriority: the caller's quota item.
    policyTable: ["dynamodb:GetItem"],
  },
  {
    id: "CancelJob",
    method: "PATCH",
    path: "/jobs/{id}/cancel",
    handler: "cancel-job",
    authorized: true,
    jobsTable: TRANSITION,
    nodesTable: ["dynamodb:UpdateItem"],
    policyTable: END_ATTEMPT_POLICY,
    states: ["states:StopExecution"],
    publishesEvents: true,
  },
  {
    id: "PauseJob",
    method: "POST",
    path: "/jobs/{id}/pause",
    handler: "pause-job",
    authorized: true,
    jobsTable: TRANSITION,
    nodesTable: ["dynamodb:UpdateItem"],
    policyTable: END_ATTEMPT_POLICY,
    states: ["states:StopExecution"],
    publishesEvents: true,
  },
  {
    id: "ResumeJob",
    method: "POST",
    path: "/jobs/{id}/resume",
    handler: "resume-job",
    authorized: true,
    jobsTable: TRANSITION,
    publishesEvents: true,
  },
  {
    id: "ListLogs",
    method: "GET",
    path: "/jobs/{id}/logs",
    handler: "list-logs",
    authorized: true,
    jobsTable: READ,
  },
  {
    id: "ListAttempts",
    method: "GET",
    path: "/jobs/{id}/attempts",
    handler: "list-attempts",
    authorized: true,
    jobsTable: READ,
  },
  {
    id: "ListTransitions",
    method: "GET",
    path: "/jobs/{id}/transitions",
    handler: "list-transitions",
    authorized: true,
    jobsTable: READ,
  },
  {
    id: "ListPools",
    method: "GET",
    path: "/pools",
    handler: "list-pools",
    authorized: true,
    jobsTable: [],
    nodesTable: ["dynamodb:Query"],
  },
  {
    id: "GetPolicy",
    method: "GET",
    path: "/admin/policy",
    handler: "get-policy",
    authorized: true,
    jobsTable: [],
    policyTable: ["dynamodb:GetItem"],
  },
  {
    id: "PutPolicy",
    method: "PUT",
    path: "/admin/policy",
    handler: "put-policy",
    authorized: true,
    jobsTable: [],
    // Reads the stored policy, then puts it and its audit record in one transaction.
    policyTable: ["dynamodb:GetItem", "dynamodb:PutItem"],
  },
  {
    id: "GetQuota",
    method: "GET",
    path: "/quotas/{principal}",
    handler: "get-quota",
    authorized: true,
    jobsTable: ["dynamodb:Query"],
    policyTable: QUOTA_READ_POLICY,
  },
  {
    id: "PutQuota",
    method: "PUT",
    path: "/quotas/{principal}",
    handler: "put-quota",
    authorized: true,
    jobsTable: ["dynamodb:Query"],
    policyTable: ["dynamodb:PutItem", ...QUOTA_READ_POLICY],
  },
  {
    id: "OpenApi",
    method: "GET",
    path: "/openapi.json",
    handler: "openapi",
    authorized: false,
    jobsTable: [],
  },
  {
    id: "GetStats",
    method: "GET",
    path: "/stats",
    handler: "get-stats",
    authorized: true,
    jobsTable: [],
    // Pool utilization from the node items, as GET /pools.
    nodesTable: ["dynamodb:Query"],
    // The aggregates (minute, hour, gauge items: BatchGetItem), the owners (Query, or GetItem of
    // the caller's own) and today's GPU usage items (BatchGetItem); docs/stats.md.
    policyTable: ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
  },
  {
    id: "RetryJob",
    method: "POST",
    path: "/jobs/{id}/retry",
    handler: "retry-job",
    authorized: true,
    // The job, its dependencies and dependents (BatchGetItem), edges met on the way (a transaction).
    jobsTable: [...TRANSITION, "dynamodb:BatchGetItem"],
    publishesEvents: true,
  },
  {
    // Literal segments beat `{id}` in API Gateway: /jobs/cancel is never a job id.
    id: "CancelJobs",
    method: "POST",
    path: "/jobs/cancel",
    handler: "cancel-jobs",
    authorized: true,
    jobsTable: [...TRANSITION, "dynamodb:BatchGetItem"],
    nodesTable: ["dynamodb:UpdateItem"],
    policyTable: END_ATTEMPT_POLICY,
    states: ["states:StopExecution"],
    publishesEvents: true,
  },
  {
    id: "RetryJobs",
    method: "POST",
    path: "/jobs/retry",
    handler: "retry-jobs",
    authorized: true,
    jobsTable: [...TRANSITION, "dynamodb:BatchGetItem"],
    publishesEvents: true,
  },
  // Recurring schedules live in the Policy table (docs/schedules.md); every write of one is a
  // conditional PutItem of the whole item.
  {
    id: "CreateSchedule",
    method: "POST",
    path: "/schedules",
    handler: "create-schedule",
    authorized: true,
    jobsTable: [],
    policyTable: ["dynamodb:PutItem"],
  },
  {
    id: "ListSchedules",
    method: "GET",
    path: "/schedules",
    handler: "list-schedules",
    authorized: true,
    jobsTable: [],
    policyTable: ["dynamodb:Query"],
  },
  {
    id: "GetSchedule",
    method: "GET",
    path: "/schedules/{id}",
    handler: "get-schedule",
    authorized: true,
    jobsTable: [],
    policyTable: ["dynamodb:GetItem"],
  },
  {
    id: "UpdateSchedule",
    method: "PATCH",
    path: "/schedules/{id}",
    handler: "update-schedule",
    authorized: true,
    jobsTable: [],
    policyTable: ["dynamodb:GetItem", "dynamodb:PutItem"],
  },
  {
    id: "DeleteSchedule",
    method: "DELETE",
    path: "/schedules/{id}",
    handler: "delete-schedule",
    authorized: true,
    jobsTable: [],
    // The delete and its audit record's put, in one transaction.
    policyTable: ["dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:PutItem"],
  },
  {
    // A fire now: a submission as the schedule's owner (POST /jobs's actions), then the fire's record.
    id: "TriggerSchedule",
    method: "POST",
    path: "/schedules/{id}/trigger",
    handler: "trigger-schedule",
    authorized: true,
    jobsTable: SUBMIT,
    policyTable: [...SUBMIT_POLICY, "dynamodb:PutItem"],
    publishesEvents: true,
  },
  {
    // One conditional update of the node item; a refused one reads the node to say why.
    id: "DrainNode",
    method: "POST",
    path: "/pools/{pool}/nodes/{id}/drain",
    handler: "drain-node",
    authorized: true,
    jobsTable: [],
    nodesTable: ["dynamodb:GetItem", "dynamodb:UpdateItem"],
    // The drain's audit record, in the drain's transaction.
    policyTable: ["dynamodb:PutItem"],
  },
  // Admin token routes (app/tokens.ts): the Tokens table alone. Listing and finding a token by its
  // id are Scans of that small table (store/tokens.ts); nothing here can read the jobs.
  {
    id: "CreateToken",
    method: "POST",
    path: "/admin/tokens",
    handler: "create-token",
    authorized: true,
    jobsTable: [],
    tokensTable: ["dynamodb:PutItem"],
    // The audit record, in the token's transaction.
    policyTable: ["dynamodb:PutItem"],
  },
  {
    id: "ListTokens",
    method: "GET",
    path: "/admin/tokens",
    handler: "list-tokens",
    authorized: true,
    jobsTable: [],
    tokensTable: ["dynamodb:Scan"],
  },
  {
    id: "RevokeToken",
    method: "DELETE",
    path: "/admin/tokens/{id}",
    handler: "revoke-token",
    authorized: true,
    jobsTable: [],
    tokensTable: ["dynamodb:Scan", "dynamodb:UpdateItem"],
    policyTable: ["dynamodb:PutItem"],
  },
  {
    // The parent's DPT# edges (Query), the page's children and their DEP# edges (BatchGetItem).
    id: "ListDependents",
    method: "GET",
    path: "/jobs/{id}/dependents",
    handler: "list-dependents",
    authorized: true,
    jobsTable: [...READ, "dynamodb:BatchGetItem"],
  },
  {
    // An array job's children (app/arrays.ts): the parent (Query), a page of children by their
    // derived ids (BatchGetItem).
    id: "ListChildren",
    method: "GET",
    path: "/jobs/{id}/children",
    handler: "list-children",
    authorized: true,
    jobsTable: [...READ, "dynamodb:BatchGetItem"],
  },
  // Export and restore (app/export.ts, docs/operations.md), admin only. The export Scans the Jobs
  // and Policy tables a page at a time; the import puts items only where none exists (a
  // conditional PutItem, a TransactWriteItems for a requeued job and its transition) and starts a
  // lifecycle execution for each unfinished job it wrote, as a submission does.
  {
    id: "ExportState",
    method: "GET",
    path: "/admin/export",
    handler: "export-state",
    authorized: true,
    jobsTable: ["dynamodb:Scan"],
    policyTable: ["dynamodb:Scan"],
  },
  {
    id: "ImportState",
    method: "POST",
    path: "/admin/import",
    handler: "import-state",
    authorized: true,
    jobsTable: ["dynamodb:PutItem", "dynamodb:UpdateItem"],
    policyTable: ["dynamodb:PutItem"],
  },
  // The audit trail (app/audit.ts): one Query of the Policy table's AUDIT partition per page.
  {
    id: "ListAudit",
    method: "GET",
    path: "/admin/audit",
    handler: "list-audit",
    authorized: true,
    jobsTable: [],
    policyTable: ["dynamodb:Query"],
  },
  {
    id: "ListCircuits",
    method: "GET",
    path: "/admin/circuits",
    handler: "list-circuits",
    authorized: true,
    jobsTable: [],
    // The breakers and their history (one partition), and the policy for their windows.
    policyTable: ["dynamodb:Query", "dynamodb:GetItem"],
  },
  {
    id: "ResetCircuit",
    method: "POST",
    path: "/admin/circuits/{type}/reset",
    handler: "reset-circuit",
    authorized: true,
    jobsTable: [],
    // Reads the breaker, then puts it closed with its history record in one transaction.
    policyTable: ["dynamodb:GetItem", "dynamodb:PutItem"],
  },
];

/**
 * Keys the authorizer puts in the request context (API Gateway: requestContext.authorizer) and
 * the local stack sets the same way.
 */
export const AUTH_CONTEXT_KEYS = {
  principal: "principal",
  role: "role",
  /** The project a token is bound to (issue 13); absent for an unbound token. */
  project: "project",
} as const;
export type { Role } from "../core/principal";
