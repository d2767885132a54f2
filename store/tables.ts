/**
 * The DynamoDB tables as plain data: the one source of truth that the JobStore construct
 * (lib/job-store.ts) turns into CloudFormation and the local stack turns into CreateTable calls.
 * docs/data-model.md explains each key and index and the access pattern it serves.
 */

export type AttributeType = "S" | "N";

export interface KeyAttribute {
  readonly name: string;
  readonly type: AttributeType;
}

export interface IndexDefinition {
  readonly indexName: string;
  readonly partitionKey: KeyAttribute;
  readonly sortKey?: KeyAttribute;
  readonly projection:
    | { readonly type: "ALL" }
    | { readonly type: "KEYS_ONLY" }
    | { readonly type: "INCLUDE"; readonly nonKeyAttributes: readonly string[] };
}

export interface TableDefinition {
  /** Stable id: the construct id in CDK and the local table name's suffix. */
  readonly id: string;
  readonly partitionKey: KeyAttribute;
  readonly sortKey?: KeyAttribute;
  readonly globalSecondaryIndexes: readonly IndexDefinition[];
  /** Items whose attribute holds an epoch-seconds time in the past are deleted by DynamoDB. */
  readonly timeToLiveAttribute?: string;
  /**
   * The table's change stream (DynamoDB Streams): what its consumers (the WebSocket broadcaster)
   * read, in AWS through a Lambda event source, locally through local/dynamo-streams.ts.
   * @default no stream
   */
  readonly stream?: StreamViewType;
}

/** What each stream record carries: DynamoDB's StreamViewType. */
export type StreamViewType = "NEW_AND_OLD_IMAGES" | "NEW_IMAGE" | "OLD_IMAGE" | "KEYS_ONLY";

export const JOB_INDEX = {
  /** A principal's jobs, newest first (sort key = job id, a ULID). */
  byOwner: "byOwner",
  /** A principal's jobs in one status, newest first. */
  byOwnerStatus: "byOwnerStatus",
  /** Every job, by creation day, newest first: the admin's list across principals. */
  byDay: "byDay",
  /** Sparse: only queued jobs, per pool, in admission order. */
  queue: "queue",
  /** Sparse: queued jobs per pool, each owner's together (fair-share and round-robin read owner by owner). */
  queueByOwner: "queueByOwner",
  /** Sparse: queued jobs per pool, longest waiting first (aging). */
  queueByAge: "queueByAge",
  /**
   * Sparse: jobs waiting outside the queue (scheduled, blocked, retrying, paused) and queued jobs
   * with a deadline, per pool, by when something is due: runAt, nextAttemptAt or the deadline.
   */
  due: "due",
  /** Sparse: only jobs holding a capacity reservation (dispatched, running), per pool and node. */
  active: "active",
  /** A principal's jobs by when their status last changed, oldest first: GET /jobs?updatedSince=. */
  byOwnerUpdate: "byOwnerUpdate",
  /** Every job by the day and time its status last changed: an admin's GET /jobs?updatedSince=. */
  byUpdateDay: "byUpdateDay",
  /** Sparse: only jobs a schedule fired, per schedule, newest first (GET /jobs?scheduleId=). */
  bySchedule: "bySchedule",
  /** Sparse: only jobs of a project, per project, newest first (GET /jobs?project=; issue 13). */
  byProject: "byProject",
} as const;

/** Indexes of the Policy table's schedule items (docs/schedules.md). */
export const SCHEDULE_INDEX = {
  /** Every schedule, each owner's together (sort key `<owner>#<id>`): GET /schedules. */
  schedules: "schedules",
  /** Sparse: only enabled schedules, by when their next fire is due: the scheduler's tick. */
  scheduleDue: "scheduleDue",
} as const;

/** Attributes the scheduler needs from a queued job without reading the job item. */
export const QUEUE_PROJECTION = [
  "id",
  "type",
  "owner",
  "priority",
  "resources",
  "pool",
  "constraintsJson",
  "deadline",
  "offPeakOnly",
  "createdAt",
  "queuedAt",
  "statusReason",
  "status",
  "version",
  "attempts",
  "timeoutSeconds",
  "startedAt",
  "reasonCode",
  /** The lifecycle execution's task token: the scheduler releases it without reading the job. */
  "admissionToken",
  /** Project quotas (issue 13); set once at submission, so it never rewrites an entry. */
  "project",
] as const;

/** Attributes of a job holding capacity that preemption, fair-share, quotas and estimates need. */
export const ACTIVE_PROJECTION = [
  "id",
  "status",
  "reservation",
  "attempts",
  "executionArn",
  "owner",
  "type",
  "priority",
  "timeoutSeconds",
  "attemptStartedAt",
  "preemptedAt",
  "updatedAt",
  /** A project's running GPU-seconds (issue 13); never changes, so it costs no index write. */
  "project",
] as const;

/**
 * What GET /jobs filters on besides status and creation time, projected into the list indexes
 * so a Query's FilterExpression drops non-matching jobs inside DynamoDB: a sparse filter reads
 * small index entries, not job items. type and tagsJson never change after submission, and
 * priority only on PATCH /jobs/{id}, so status changes still rewrite none of these entries.
 */
export const LIST_PROJECTION = ["type", "priority", "tagsJson"] as const;

export const jobsTable: TableDefinition = {
  id: "Jobs",
  partitionKey: { name: "pk", type: "S" },
  sortKey: { name: "sk", type: "S" },
  timeToLiveAttribute: "expiresAt",
  // Old and new image: a consumer tells a status change (old status != new) from other writes.
  stream: "NEW_AND_OLD_IMAGES",
  globalSecondaryIndexes: [
    {
      indexName: JOB_INDEX.byOwner,
      partitionKey: { name: "ownerPk", type: "S" },
      sortKey: { name: "ownerSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: LIST_PROJECTION },
    },
    {
      indexName: JOB_INDEX.byOwnerStatus,
      partitionKey: { name: "ownerStatusPk", type: "S" },
      sortKey: { name: "ownerSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: LIST_PROJECTION },
    },
    {
      indexName: JOB_INDEX.byDay,
      partitionKey: { name: "dayPk", type: "S" },
      sortKey: { name: "ownerSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: LIST_PROJECTION },
    },
    {
      indexName: JOB_INDEX.queue,
      partitionKey: { name: "queuePk", type: "S" },
      sortKey: { name: "queueSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: QUEUE_PROJECTION },
    },
    {
      indexName: JOB_INDEX.queueByOwner,
      partitionKey: { name: "queuePk", type: "S" },
      sortKey: { name: "queueOwnerSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: QUEUE_PROJECTION },
    },
    {
      indexName: JOB_INDEX.queueByAge,
      partitionKey: { name: "queuePk", type: "S" },
      sortKey: { name: "queueAgeSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: QUEUE_PROJECTION },
    },
    {
      indexName: JOB_INDEX.due,
      partitionKey: { name: "duePk", type: "S" },
      sortKey: { name: "dueSk", type: "S" },
      // The status lets the sweep and GET /queue's counts filter without reading job items.
      projection: { type: "INCLUDE", nonKeyAttributes: ["status"] },
    },
    {
      indexName: JOB_INDEX.active,
      partitionKey: { name: "activePk", type: "S" },
      sortKey: { name: "activeSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: ACTIVE_PROJECTION },
    },
    {
      // Keys written once, when a fired job is created; the projection is GET /jobs's filters'.
      indexName: JOB_INDEX.bySchedule,
      partitionKey: { name: "schedulePk", type: "S" },
      sortKey: { name: "ownerSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: LIST_PROJECTION },
    },
    {
      // updatedSk = `<minute of the last change>#<id>`: a resynchronising stream client reads
      // what changed since it lost its connection, oldest change first. No status here: the
      // entry would then be rewritten on every status change, not only when the minute moves.
      indexName: JOB_INDEX.byOwnerUpdate,
      partitionKey: { name: "ownerPk", type: "S" },
      sortKey: { name: "updatedSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: LIST_PROJECTION },
    },
    {
      indexName: JOB_INDEX.byUpdateDay,
      partitionKey: { name: "updatedDayPk", type: "S" },
      sortKey: { name: "updatedSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: LIST_PROJECTION },
    },
    {
      // Like bySchedule: keys written once, when a project's job is created (a job without a
      // project has no entry), never rewritten by a status change; the projection is GET /jobs's
      // filters', plus the owner, so a user's list skips other members' jobs inside DynamoDB.
      indexName: JOB_INDEX.byProject,
      partitionKey: { name: "projectPk", type: "S" },
      sortKey: { name: "ownerSk", type: "S" },
      projection: { type: "INCLUDE", nonKeyAttributes: [...LIST_PROJECTION, "owner"] },
    },
  ],
};

/**
 * Worker nodes and their capacity, one partition per pool: `sk` = `NODE#<nodeId>` for a node,
 * `LEASE` for the pool's scheduling lease. Admission reserves capacity here in the same
 * transaction that moves the job to dispatched.
 */
export const nodesTable: TableDefinition = {
  id: "Nodes",
  partitionKey: { name: "pool", type: "S" },
  sortKey: { name: "sk", type: "S" },
  globalSecondaryIndexes: [],
};

/** API tokens for the AWS authorizer: only SHA-256 hashes are stored, never the token. */
export const tokensTable: TableDefinition = {
  id: "Tokens",
  partitionKey: { name: "tokenHash", type: "S" },
  globalSecondaryIndexes: [],
};

/**
 * The scheduling policy, each principal's quota limits and GPU-seconds used per day and week,
 * run-time statistics per job type, and the recurring schedules (docs/data-model.md,
 * docs/schedules.md). Usage items expire by TTL.
 */
export const policyTable: TableDefinition = {
  id: "Policy",
  partitionKey: { name: "pk", type: "S" },
  sortKey: { name: "sk", type: "S" },
  timeToLiveAttribute: "expiresAt",
  globalSecondaryIndexes: [
    {
      // The whole schedule: a page of GET /schedules is one Query. Schedules are few and small.
      indexName: SCHEDULE_INDEX.schedules,
      partitionKey: { name: "schedulesPk", type: "S" },
      sortKey: { name: "schedulesSk", type: "S" },
      projection: { type: "ALL" },
    },
    {
      // Keys only: the tick reads the schedule item itself (strongly consistent) before firing.
      indexName: SCHEDULE_INDEX.scheduleDue,
      partitionKey: { name: "scheduleDuePk", type: "S" },
      sortKey: { name: "scheduleDueSk", type: "S" },
      projection: { type: "KEYS_ONLY" },
    },
  ],
};

export const CONNECTION_INDEX = {
  /** A subscriber's open stream connections: `P#<principal>`, or `ADMIN` for every admin's. */
  bySubscriber: "bySubscriber",
} as const;

/**
 * Open WebSocket connections of the job stream (WS /jobs/stream): one item per connection, keyed
 * by API Gateway's connectionId, written at $connect and deleted at $disconnect or when a post
 * finds it gone (410). The broadcaster finds a job's audience by Query on `bySubscriber` (the
 * owner's partition and `ADMIN`), never by Scan. TTL collects what a lost $disconnect left behind
 * (API Gateway closes every connection after 2 hours).
 */
export const connectionsTable: TableDefinition = {
  id: "Connections",
  partitionKey: { name: "connectionId", type: "S" },
  timeToLiveAttribute: "expiresAt",
  globalSecondaryIndexes: [
    {
      indexName: CONNECTION_INDEX.bySubscriber,
      partitionKey: { name: "subscriberPk", type: "S" },
      sortKey: { name: "connectionId", type: "S" },
      // What fan-out needs without reading the item: who it is and what it narrowed to.
      projection: { type: "INCLUDE", nonKeyAttributes: ["principal", "jobIds"] },
    },
  ],
};

export const TABLES = [jobsTable, tokensTable, nodesTable, policyTable, connectionsTable] as const;
