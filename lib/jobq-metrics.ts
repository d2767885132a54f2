import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import { METRIC_NAMESPACE, METRIC_SERVICE, METRICS, type MetricKey } from "../core/metrics";

/** The catalogue's dimension set of one metric (core/metrics.ts), each a string. */
export type DimensionsOf<K extends MetricKey> = {
  readonly [D in (typeof METRICS)[K]["dimensions"][number]]: string;
};

/**
 * One of jobq's custom metrics (core/metrics.ts) as CloudWatch identifies it: the catalogue's name
 * with the `service` dimension Powertools adds to every metric, plus the catalogue's dimensions.
 * A metric read with fewer or other dimensions than it was written with is a different metric
 * (and an alarm on it would wait forever on missing data), hence the typed dimension set.
 *
 * The constructs' `metricXxx` methods are built on it; compose those rather than calling this.
 */
export function jobqMetric<K extends MetricKey>(
  key: K,
  dimensions: DimensionsOf<K>,
  options: cloudwatch.MetricOptions = {},
): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRIC_NAMESPACE,
    metricName: METRICS[key].name,
    dimensionsMap: { service: METRIC_SERVICE, ...dimensions },
    ...options,
  });
}
