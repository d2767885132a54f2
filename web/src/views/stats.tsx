import type { ComponentChildren } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import type { Stats, StatsWindow } from "../../../client/index";
import { formatUsd } from "../format";
import { ErrorNotice, Freshness, Loading, useLoad, ViewFrame } from "../kit";
import { type ChartSeries, TimeChart } from "./stats-chart";
import {
  appendSample,
  formatMs,
  formatShare,
  medianColumns,
  percentileColumns,
  poolNames,
  type Sample,
  STATS_POLL_MS,
  sampleOf,
  throughputColumns,
  utilizationColumns,
} from "./stats-series";
import type { ViewProps } from "./types";

const WINDOWS: readonly StatsWindow[] = ["5m", "15m", "1h", "6h", "24h"];

const PERCENTILE_SERIES: readonly ChartSeries[] = [
  { label: "p50", colorVar: "--accent" },
  { label: "p95", colorVar: "--warn" },
  { label: "p99", colorVar: "--danger", dash: [6, 4] },
];

const count = (v: number | null): string => (v === null ? "—" : String(Math.round(v)));
const percent = (v: number | null): string => (v === null ? "—" : `${Math.round(v)}\u00a0%`);

/**
 * Throughput and wait/run percentiles over time. The per-period history (completed, failed, p50s)
 * is the server's `series`; p95/p99 and the per-pool figures exist only for the window as a whole,
 * so this page polls every 5 s and draws the series of its own samples (kept while it is open).
 * Every chart has the current figures as text above it and its points as a table under it.
 */
export function StatsView(props: ViewProps) {
  const { client } = props;
  const [statsWindow, setStatsWindow] = useState<StatsWindow>("1h");
  const stats = useLoad(() => client.stats(statsWindow), [client, statsWindow], STATS_POLL_MS);
  const [samples, setSamples] = useState<Sample[]>([]);
  useEffect(() => {
    if (stats.data !== undefined) setSamples((prev) => appendSample(prev, sampleOf(stats.data as Stats)));
  }, [stats.data]);

  return (
    <ViewFrame
      id="stats"
      title="Stats"
      tools={
        <>
          <Freshness loadedAt={stats.loadedAt} everyMs={STATS_POLL_MS} />
          <label class="av-checkbox">
            Window
            <select
              class="av-select"
              value={statsWindow}
              onChange={(e) => setStatsWindow(e.currentTarget.value as StatsWindow)}
            >
              {WINDOWS.map((w) => (
                <option key={w} value={w}>
                  {w}
                </option>
              ))}
            </select>
          </label>
        </>
      }
    >
      <ErrorNotice error={stats.error} title="Could not read the stats" />
      {stats.data === undefined ? (
        stats.loading ? (
          <Loading what="stats" />
        ) : null
      ) : (
        <StatsBody stats={stats.data} samples={samples} />
      )}
    </ViewFrame>
  );
}

function StatsBody(props: { readonly stats: Stats; readonly samples: readonly Sample[] }) {
  const { stats, samples } = props;
  const step = stats.seriesStepSeconds === 3600 ? "hour" : "minute";
  const throughput = useMemo(() => throughputColumns(stats), [stats]);
  const medians = useMemo(() => medianColumns(stats), [stats]);
  const waits = useMemo(() => percentileColumns(samples, "queueWaitMs"), [samples]);
  const runs = useMemo(() => percentileColumns(samples, "runMs"), [samples]);
  const pools = poolNames(stats);
  const collecting = `Collecting: this page adds a point every ${STATS_POLL_MS / 1000} s while it is open.`;
  return (
    <>
      <section class="card" aria-labelledby="stats-now">
        <h2 id="stats-now">Now</h2>
        <dl class="av-figures">
          <Figure term="Completed, last minute" value={String(stats.throughput.completedLastMinute)} />
          <Figure term="Failed, last minute" value={String(stats.throughput.failedLastMinute)} />
          <Figure term="Completed, last hour" value={String(stats.throughput.completedLastHour)} />
          <Figure term="Failed, last hour" value={String(stats.throughput.failedLastHour)} />
          <Figure term="Queued" value={String(stats.counts.byStatus.queued ?? 0)} />
          <Figure term="Running" value={String(stats.counts.byStatus.running ?? 0)} />
        </dl>
        <FigureTable
          caption={
            <>
              Percentiles over the last {stats.window} (each within{" "}
              {Math.round(stats.percentileRelativeError * 100)}&nbsp;%)
            </>
          }
          rowHeading="Measure"
          columns={["p50", "p95", "p99"]}
          rows={[
            { key: "Queue wait", cells: percentileCells(stats.queueWaitMs) },
            { key: "Run time", cells: percentileCells(stats.runMs) },
          ]}
        />
      </section>

      <section class="card" aria-labelledby="stats-time">
        <h2 id="stats-time">Over time</h2>
        <div class="av-charts">
          <TimeChart
            id="chart-throughput"
            title={`Jobs completed and failed per ${step}`}
            columns={throughput}
            series={[
              { label: "completed", colorVar: "--ok" },
              { label: "failed", colorVar: "--danger" },
            ]}
            format={count}
            bars
            empty="No jobs have finished in this window."
          />
          <TimeChart
            id="chart-medians"
            title={`Median queue wait and run time per ${step}`}
            columns={medians}
            series={[
              { label: "queue wait p50", colorVar: "--accent" },
              { label: "run time p50", colorVar: "--priority-high" },
            ]}
            format={formatMs}
            empty="No waits or runs in this window."
          />
          <TimeChart
            id="chart-waits"
            title={`Queue wait percentiles over the last ${stats.window}, sampled`}
            columns={waits}
            series={PERCENTILE_SERIES}
            format={formatMs}
            empty={collecting}
          />
          <TimeChart
            id="chart-runs"
            title={`Run time percentiles over the last ${stats.window}, sampled`}
            columns={runs}
            series={PERCENTILE_SERIES}
            format={formatMs}
            empty={collecting}
          />
        </div>
      </section>

      <section class="card" aria-labelledby="stats-pools">
        <h2 id="stats-pools">By pool</h2>
        <PoolTable stats={stats} pools={pools} />
        {pools.map((pool) => (
          <PoolCharts
            key={pool}
            pool={pool}
            samples={samples}
            window={stats.window}
            collecting={collecting}
          />
        ))}
      </section>

      <CostSection stats={stats} />
      {stats.owners.length === 0 ? null : <OwnerTable stats={stats} />}
      {Object.keys(stats.byType).length === 0 ? null : <TypeTable stats={stats} />}
    </>
  );
}

function Figure(props: { readonly term: string; readonly value: string }) {
  return (
    <div class="av-figure">
      <dt>{props.term}</dt>
      <dd>{props.value}</dd>
    </div>
  );
}

/** A table of figures: each row named by its header cell, every other column a number. */
function FigureTable(props: {
  readonly caption: ComponentChildren;
  /** The caption for screen readers only, where a heading above says the same. */
  readonly captionHidden?: boolean;
  readonly rowHeading: string;
  readonly columns: readonly string[];
  readonly rows: readonly FigureRow[];
}) {
  return (
    <div class="av-table-wrap">
      <table class="av-table">
        <caption class={props.captionHidden === true ? "visually-hidden" : undefined}>
          {props.caption}
        </caption>
        <thead>
          <tr>
            <th scope="col">{props.rowHeading}</th>
            {props.columns.map((column) => (
              <th key={column} scope="col" class="av-num">
                {column}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.map((row) => (
            <tr key={row.key}>
              <th scope="row" class={row.mono === true ? "av-mono" : undefined}>
                {row.key}
              </th>
              {row.cells.map((cell, i) => (
                <td key={props.columns[i]} class="av-num">
                  {cell}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

interface FigureRow {
  readonly key: string;
  /** A name from the system (pool, job type), set in the code font. */
  readonly mono?: boolean;
  readonly cells: readonly string[];
}

const percentileCells = (p: Stats["runMs"]): string[] => [formatMs(p.p50), formatMs(p.p95), formatMs(p.p99)];
const p50p95 = (p: Stats["runMs"]): string => `${formatMs(p.p50)} / ${formatMs(p.p95)}`;

function PoolTable(props: { readonly stats: Stats; readonly pools: readonly string[] }) {
  const { stats } = props;
  const rows: FigureRow[] = [];
  for (const pool of props.pools) {
    const f = stats.byPool[pool];
    const c = stats.counts.byPool[pool] ?? {};
    if (f === undefined) continue;
    rows.push({
      key: pool,
      mono: true,
      cells: [
        String(c.queued ?? 0),
        String(c.running ?? 0),
        String(f.completed),
        String(f.failed),
        p50p95(f.queueWaitMs),
        p50p95(f.runMs),
        formatShare(f.utilization.cpu),
        formatShare(f.utilization.memoryMb),
        formatShare(f.utilization.gpu),
      ],
    });
  }
  return (
    <FigureTable
      caption={`Figures per pool over the last ${stats.window}`}
      rowHeading="Pool"
      columns={[
        "Queued",
        "Running",
        "Completed",
        "Failed",
        "Wait p50 / p95",
        "Run p50 / p95",
        "CPU",
        "Memory",
        "GPU",
      ]}
      rows={rows}
    />
  );
}

function PoolCharts(props: {
  readonly pool: string;
  readonly samples: readonly Sample[];
  readonly window: string;
  readonly collecting: string;
}) {
  const { pool, samples } = props;
  const utilization = useMemo(() => utilizationColumns(samples, pool), [samples, pool]);
  const waits = useMemo(() => percentileColumns(samples, "queueWaitMs", pool), [samples, pool]);
  return (
    <div class="av-charts" style={{ marginTop: "16px" }}>
      <TimeChart
        id={`chart-util-${pool}`}
        title={`Pool ${pool}: utilization, sampled`}
        columns={utilization}
        series={[
          { label: "CPU", colorVar: "--accent" },
          { label: "memory", colorVar: "--priority-normal" },
          { label: "GPU", colorVar: "--priority-high" },
        ]}
        format={percent}
        empty={props.collecting}
      />
      <TimeChart
        id={`chart-wait-${pool}`}
        title={`Pool ${pool}: queue wait over the last ${props.window}, sampled`}
        columns={waits}
        series={PERCENTILE_SERIES}
        format={formatMs}
        empty={props.collecting}
      />
    </div>
  );
}

function OwnerTable(props: { readonly stats: Stats }) {
  const { stats } = props;
  return (
    <section class="card" aria-labelledby="stats-owners">
      <h2 id="stats-owners">Owners</h2>
      <FigureTable
        caption="Jobs and GPU use per owner"
        captionHidden
        rowHeading="Owner"
        columns={["Running", "Queued", "GPU-seconds today", "Cost today"]}
        rows={stats.owners.map((o) => ({
          key: o.owner,
          cells: [
            String(o.running),
            String(o.queued),
            String(Math.round(o.gpuSecondsToday)),
            formatUsd(o.costUsdToday),
          ],
        }))}
      />
      {stats.ownersTruncated ? <p class="muted">More owners have jobs than are listed here.</p> : null}
    </section>
  );
}

function TypeTable(props: { readonly stats: Stats }) {
  const { stats } = props;
  const types = Object.keys(stats.byType).sort((a, b) => a.localeCompare(b));
  const rows: FigureRow[] = [];
  for (const type of types) {
    const f = stats.byType[type];
    if (f === undefined) continue;
    rows.push({
      key: type,
      mono: true,
      cells: [String(f.completed), String(f.failed), p50p95(f.queueWaitMs), p50p95(f.runMs)],
    });
  }
  return (
    <section class="card" aria-labelledby="stats-types">
      <h2 id="stats-types">By job type</h2>
      <FigureTable
        caption={`Figures per job type over the last ${stats.window}`}
        captionHidden
        rowHeading="Type"
        columns={["Completed", "Failed", "Wait p50 / p95", "Run p50 / p95"]}
        rows={rows}
      />
    </section>
  );
}

type CostSums = Stats["cost"]["today"];

const jobsAndCost = (sums: { readonly jobs: number; readonly totalUsd: number } | undefined): string[] =>
  sums === undefined ? ["—", "—"] : [String(sums.jobs), formatUsd(sums.totalUsd)];

/** Every key of today's or this week's sums, by name: each with both periods' jobs and cost. */
function costByKey(today: CostSums["byOwner"], week: CostSums["byOwner"]): FigureRow[] {
  const keys = [...new Set([...Object.keys(today), ...Object.keys(week)])].sort((a, b) => a.localeCompare(b));
  return keys.map((key) => ({
    key,
    mono: true,
    cells: [...jobsAndCost(today[key]), ...jobsAndCost(week[key])],
  }));
}

const COST_COLUMNS = ["Jobs today", "Cost today", "Jobs this week", "Cost this week"];

/**
 * What the jobs that ended today and this week cost (GET /stats `cost`, docs/cost.md), in all and
 * per owner and project (an admin sees everyone's; a user their own and no projects), and the
 * window's time-driven overhead that no job is charged for.
 */
function CostSection(props: { readonly stats: Stats }) {
  const { today, week } = props.stats.cost;
  const owners = costByKey(today.byOwner, week.byOwner);
  const projects = costByKey(today.byProject, week.byProject);
  return (
    <section class="card" aria-labelledby="stats-cost">
      <h2 id="stats-cost">Cost</h2>
      <dl class="av-figures">
        <Figure term="Cost today" value={formatUsd(today.totalUsd)} />
        <Figure term="Jobs ended today" value={String(today.jobs)} />
        <Figure term="Cost this week" value={formatUsd(week.totalUsd)} />
        <Figure term="Jobs ended this week" value={String(week.jobs)} />
        <Figure term={`Overhead, last ${props.stats.window}`} value={formatUsd(props.stats.overheadUsd)} />
      </dl>
      <p class="muted small">
        Ended jobs only; the week starts Monday 00:00 UTC. Overhead is the time-driven requests (the
        scheduler's tick, idle polls, heartbeats) charged to no job.
      </p>
      {owners.length === 0 ? null : (
        <FigureTable caption="Cost per owner" rowHeading="Owner" columns={COST_COLUMNS} rows={owners} />
      )}
      {projects.length === 0 ? null : (
        <FigureTable caption="Cost per project" rowHeading="Project" columns={COST_COLUMNS} rows={projects} />
      )}
    </section>
  );
}
