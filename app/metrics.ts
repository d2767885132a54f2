import { Metrics } from "@aws-lambda-powertools/metrics";
import { METRIC_NAMESPACE, METRIC_SERVICE, METRICS, type MetricKey, UNPLACED_POOL } from "../core/metrics";
import { logger } from "./logger";

/**
 * jobq's one way to emit a metric: Powertools Metrics writing CloudWatch Embedded Metric Format
 * lines to stdout, which CloudWatch Logs turns into metrics (Lambda's log group, the workers'
 * awslogs stream in ECS). Names, units and dimension sets come from core/metrics.ts.
 *
 * Each call writes its line at once rather than storing figures for a flush at the end of the
 * invocation: the same code runs in Lambdas, in the long-lived worker processes (no invocation
 * end) and in the scheduler, whose figures carry different dimension sets, and a crash after a
 * committed transition still leaves its count behind. One line per fact costs a little more log
 * ingestion than one per invocation; figures that share dimensions go in one line.
 *
 * POWERTOOLS_METRICS_DISABLED=true (the local stack's handler environment) silences it.
 */

type DimensionsOf<K extends MetricKey> = Readonly<Record<(typeof METRICS)[K]["dimensions"][number], string>>;

/**
 * Writes the figures, all with `dimensions` (plus Powertools' `service`), as one EMF line.
 * A figure whose catalogued dimension set is not exactly `dimensions` is dropped with a warning:
 * a metric with a stray dimension is a different CloudWatch metric that no alarm reads.
 * Never throws: a metric is not worth failing the job step that counted it.
 */
export function recordMetrics<K extends MetricKey>(
  dimensions: DimensionsOf<K>,
  figures: { readonly [P in K]?: number },
): void {
  try {
    const names = Object.keys(dimensions).sort().join(",");
    const metrics = new Metrics({ namespace: METRIC_NAMESPACE, serviceName: METRIC_SERVICE });
    let stored = 0;
    for (const [key, value] of Object.entries(figures) as [K, number | undefined][]) {
      const spec = METRICS[key];
      if (value === undefined || !Number.isFinite(value)) continue;
      if ([...spec.dimensions].sort().join(",") !== names) {
        logger.warn("metric dropped: dimensions differ from the catalogue", { metric: spec.name, names });
        continue;
      }
      metrics.addMetric(spec.name, spec.unit, value);
      stored++;
    }
    if (stored === 0) return;
    for (const [name, value] of Object.entries(dimensions) as [string, string][]) {
      metrics.addDimension(name, value);
    }
    metrics.publishStoredMetrics();
  } catch (error) {
    logger.warn("metrics not recorded", { error: error as Error });
  }
}

/**
 * The pool a job's figures count under: where it is booked, else the pool it named, else
 * UNPLACED_POOL for a job the scheduler has not placed yet.
 */
export function metricPool(job: {
  readonly pool?: string | null;
  readonly reservation?: { readonly pool: string } | undefined;
}): string {
  return job.reservation?.pool ?? job.pool ?? UNPLACED_POOL;
}

/** Milliseconds from `from` to `to` (ISO times); undefined when `from` is missing or unreadable. */
export function millisBetween(from: string | null | undefined, to: string): number | undefined {
  if (!from) return undefined;
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}
