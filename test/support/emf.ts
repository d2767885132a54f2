import { vi } from "vitest";
import { METRIC_NAMESPACE, METRIC_SERVICE, METRICS, type MetricSpec } from "../../core/metrics";

/**
 * The CloudWatch Embedded Metric Format lines jobq writes (app/metrics.ts, through Powertools
 * Metrics), captured from this process's stdout as CloudWatch Logs would read them, and taken
 * apart into one figure per metric.
 */

export interface EmfFigure {
  readonly namespace: string;
  readonly name: string;
  readonly unit: string;
  readonly value: number;
  /** Every dimension the line declares for the metric, with its value. */
  readonly dimensions: Readonly<Record<string, string>>;
}

interface EmfDocument {
  readonly _aws: {
    readonly CloudWatchMetrics: readonly {
      readonly Namespace: string;
      readonly Dimensions: readonly (readonly string[])[];
      readonly Metrics: readonly { readonly Name: string; readonly Unit: string }[];
    }[];
  };
  readonly [key: string]: unknown;
}

function figuresOf(doc: EmfDocument): EmfFigure[] {
  return doc._aws.CloudWatchMetrics.flatMap((directive) =>
    directive.Metrics.map((metric) => {
      const names = directive.Dimensions.flat();
      return {
        namespace: directive.Namespace,
        name: metric.Name,
        unit: metric.Unit,
        value: Number(doc[metric.Name]),
        dimensions: Object.fromEntries(names.map((n) => [n, String(doc[n])])),
      };
    }),
  );
}

/**
 * Runs `work` with metrics switched on (the integration environment, like the local stack, has
 * POWERTOOLS_METRICS_DISABLED=true) and returns the figures of the EMF lines it wrote. Other
 * output goes through untouched.
 */
export async function captureEmf(work: () => Promise<unknown>): Promise<EmfFigure[]> {
  const lines: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk, ...rest) => {
    const text = String(chunk);
    if (text.includes('"_aws"')) {
      lines.push(...text.split("\n").filter(Boolean));
      return true;
    }
    return write(chunk, ...(rest as []));
  });
  const disabled = process.env.POWERTOOLS_METRICS_DISABLED;
  process.env.POWERTOOLS_METRICS_DISABLED = "false";
  try {
    await work();
  } finally {
    spy.mockRestore();
    process.env.POWERTOOLS_METRICS_DISABLED = disabled;
  }
  return lines.flatMap((line) => figuresOf(JSON.parse(line) as EmfDocument));
}

/** The catalogued metric of that name (core/metrics.ts). */
export function specOf(name: string): MetricSpec | undefined {
  return Object.values(METRICS).find((spec) => spec.name === name);
}

/**
 * What the figure must be to be the metric the dashboard and alarms read: a catalogued name,
 * namespace `jobq`, the catalogued unit, and exactly the catalogued dimensions plus `service`.
 * Returns the problems, none when it is.
 */
export function catalogueProblems(figure: EmfFigure): string[] {
  const spec = specOf(figure.name);
  if (!spec) return [`${figure.name} is not in core/metrics.ts`];
  const problems: string[] = [];
  if (figure.namespace !== METRIC_NAMESPACE) problems.push(`${figure.name}: namespace ${figure.namespace}`);
  if (figure.unit !== spec.unit) problems.push(`${figure.name}: unit ${figure.unit}, not ${spec.unit}`);
  const expected = ["service", ...spec.dimensions].sort().join(",");
  const actual = Object.keys(figure.dimensions).sort().join(",");
  if (actual !== expected) problems.push(`${figure.name}: dimensions ${actual}, not ${expected}`);
  if (figure.dimensions.service !== METRIC_SERVICE)
    problems.push(`${figure.name}: service ${figure.dimensions.service}`);
  return problems;
}
