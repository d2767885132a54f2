/**
 * The catalogue of jobq's custom CloudWatch metrics: what the emitters (app/, functions/, worker/,
 * as Embedded Metric Format log lines through Powertools Metrics) write and what the dashboard and
 * alarms (lib/) read. Both sides take names, units and dimension sets from here, so a metric the
 * alarms watch cannot drift from the one the code emits.
 *
 * Every metric carries Powertools' default dimension `service` (METRIC_SERVICE) besides the ones
 * listed: a CloudWatch metric is identified by its full dimension set, so readers must name it too.
 * Dimensions stay few and bounded (pool, tier, type, resource): never a job, node or owner id,
 * each distinct value being a metric billed by the month.
 */

export const METRIC_NAMESPACE = "jobq";
export const METRIC_SERVICE = "jobq";

/** CloudWatch unit names (a subset of Powertools' MetricUnit values). */
export type MetricUnitName = "Count" | "Milliseconds" | "Seconds" | "None";

export type MetricDimension = "pool" | "tier" | "type" | "resource";

export interface MetricSpec {
  readonly name: string;
  readonly unit: MetricUnitName;
  readonly dimensions: readonly MetricDimension[];
  readonly description: string;
}

function metric<const D extends readonly MetricDimension[]>(
  name: string,
  unit: MetricUnitName,
  dimensions: D,
  description: string,
): MetricSpec & { readonly dimensions: D } {
  return { name, unit, dimensions, description };
}

/**
 * Pool dimension value for a job that names no pool and has not been placed yet (the scheduler
 * picks its pool at admission).
 */
export const UNPLACED_POOL = "any";

export const METRICS = {
  // Job outcomes: one count per job reaching the state (terminal ones once per job, not per attempt).
  jobsSubmitted: metric("JobsSubmitted", "Count", ["pool"], "Jobs accepted by POST /jobs (and schedules)"),
  admittedJobs: metric(
    "AdmittedJobs",
    "Count",
    ["pool"],
    "Jobs a scheduler pass admitted: Sum is admissions, Average per sample is admissions per pass",
  ),
  jobsStarted: metric("JobsStarted", "Count", ["pool"], "Attempts a worker started running"),
  jobsCompleted: metric("JobsCompleted", "Count", ["pool"], "Jobs that ended completed"),
  jobsFailed: metric("JobsFailed", "Count", ["pool"], "Jobs that ended failed (retries spent)"),
  jobsFailedByType: metric(
    "JobsFailedByType",
    "Count",
    ["type"],
    "Jobs that ended failed or timed_out, by task type",
  ),
  jobsTimedOut: metric("JobsTimedOut", "Count", ["pool"], "Jobs that ended timed_out"),
  attemptsLost: metric("AttemptsLost", "Count", ["pool"], "Attempts whose worker went silent (lost)"),
  jobsCancelled: metric("JobsCancelled", "Count", ["pool"], "Jobs cancelled by a user or a cascade"),

  // Latency, per pool.
  queueWaitTime: metric(
    "QueueWaitTime",
    "Milliseconds",
    ["pool"],
    "From ready (submitted or released) to running",
  ),
  runTime: metric("RunTime", "Milliseconds", ["pool"], "From running to the attempt's end"),

  // The scheduler's view, once per pass per pool.
  queuedJobs: metric(
    "QueuedJobs",
    "Count",
    ["pool"],
    "Jobs a pass found waiting for capacity (what the worker pools scale on)",
  ),
  waitingJobs: metric(
    "WaitingJobs",
    "Count",
    ["pool", "tier"],
    "Jobs waiting in the pool's queue, by priority tier",
  ),
  oldestCapacityWaitAge: metric(
    "OldestCapacityWaitAge",
    "Seconds",
    ["pool"],
    "Age of the oldest job waiting for capacity or priority (reasons resources, priority, no_nodes); 0 when none",
  ),
  capacityInUse: metric(
    "CapacityInUse",
    "None",
    ["pool", "resource"],
    "Reserved ÷ total capacity of the pool's live nodes, 0..1; resource is cpu, memory or gpu",
  ),
  schedulerPassDuration: metric(
    "SchedulerPassDuration",
    "Milliseconds",
    ["pool"],
    "One pool's pass, end to end",
  ),
  schedulerPasses: metric(
    "SchedulerPasses",
    "Count",
    [],
    "Scheduler invocations that ran; the heartbeat alarm breaches on missing data",
  ),

  // Repairs and losses.
  reconcilerRepairs: metric("ReconcilerRepairs", "Count", [], "Jobs the reconciler had to repair"),
  lostNodes: metric("LostNodes", "Count", ["pool"], "Nodes marked lost (heartbeat stopped)"),

  // Circuit breakers (docs/scheduling.md "Circuit breakers").
  circuitsOpened: metric(
    "CircuitsOpened",
    "Count",
    [],
    "Circuit breakers that opened (a type failing too often) or opened again (its probe failed)",
  ),
  circuitsOpenedByType: metric("CircuitsOpenedByType", "Count", ["type"], "CircuitsOpened, by task type"),
  circuitsClosed: metric(
    "CircuitsClosed",
    "Count",
    [],
    "Circuit breakers closed by a successful probe or an admin's reset",
  ),

  // The live stream (WS /jobs/stream).
  streamConnections: metric("StreamConnections", "Count", [], "WebSocket connections opened"),
  streamPosts: metric("StreamPosts", "Count", [], "Job changes posted to stream connections"),
} as const;

export type MetricKey = keyof typeof METRICS;
