import { useEffect, useMemo, useState } from "preact/hooks";
import type { Stats, StatsWindow } from "../../../client/index";
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
        <div class="av-table-wrap">
          <table class="av-table">
            <caption>
              Percentiles over the last {stats.window} (each within{" "}
              {Math.round(stats.percentileRelativeError * 100)}&nbsp;%)
            </caption>
            <thead>
              <tr>
                <th scope="col">Measure</th>
                <th scope="col" class="av-num">
                  p50
                </th>
                <th scope="col" class="av-num">
                  p95
                </th>
                <th scope="col" class="av-num">
                  p99
                </th>
              </tr>
            </thead>
            <tbody>
              <PercentileRow label="Queue wait" p={stats.queueWaitMs} />
              <PercentileRow label="Run time" p={stats.runMs} />
            </tbody>
          </table>
        </div>
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

function PercentileRow(props: { readonly label: string; readonly p: Stats["runMs"] }) {
  return (
    <tr>
      <th scope="row">{props.label}</th>
      <td class="av-num">{formatMs(props.p.p50)}</td>
      <td class="av-num">{formatMs(props.p.p95)}</td>
      <td class="av-num">{formatMs(props.p.p99)}</td>
    </tr>
  );
}

function PoolTable(props: { readonly stats: Stats; readonly pools: readonly string[] }) {
  const { stats } = props;
  return (
    <div class="av-table-wrap">
      <table class="av-table">
        <caption>Figures per pool over the last {stats.window}</caption>
        <thead>
          <tr>
            <th scope="col">Pool</th>
            <th scope="col" class="av-num">
              Queued
            </th>
            <th scope="col" class="av-num">
              Running
            </th>
            <th scope="col" class="av-num">
              Completed
            </th>
            <th scope="col" class="av-num">
              Failed
            </th>
            <th scope="col" class="av-num">
              Wait p50 / p95
            </th>
            <th scope="col" class="av-num">
              Run p50 / p95
            </th>
            <th scope="col" class="av-num">
              CPU
            </th>
            <th scope="col" class="av-num">
              Memory
            </th>
            <th scope="col" class="av-num">
              GPU
            </th>
          </tr>
        </thead>
        <tbody>
          {props.pools.map((pool) => {
            const f = stats.byPool[pool];
            const c = stats.counts.byPool[pool] ?? {};
            if (f === undefined) return null;
            return (
              <tr key={pool}>
                <th scope="row" class="av-mono">
                  {pool}
                </th>
                <td class="av-num">{c.queued ?? 0}</td>
                <td class="av-num">{c.running ?? 0}</td>
                <td class="av-num">{f.completed}</td>
                <td class="av-num">{f.failed}</td>
                <td class="av-num">
                  {formatMs(f.queueWaitMs.p50)} / {formatMs(f.queueWaitMs.p95)}
                </td>
                <td class="av-num">
                  {formatMs(f.runMs.p50)} / {formatMs(f.runMs.p95)}
                </td>
                <td class="av-num">{formatShare(f.utilization.cpu)}</td>
                <td class="av-num">{formatShare(f.utilization.memoryMb)}</td>
                <td class="av-num">{formatShare(f.utilization.gpu)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
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
      <div class="av-table-wrap">
        <table class="av-table">
          <caption class="visually-hidden">Jobs and GPU use per owner</caption>
          <thead>
            <tr>
              <th scope="col">Owner</th>
              <th scope="col" class="av-num">
                Running
              </th>
              <th scope="col" class="av-num">
                Queued
              </th>
              <th scope="col" class="av-num">
                GPU-seconds today
              </th>
              <th scope="col" class="av-num">
                Cost today
              </th>
            </tr>
          </thead>
          <tbody>
            {stats.owners.map((o) => (
              <tr key={o.owner}>
                <th scope="row">{o.owner}</th>
                <td class="av-num">{o.running}</td>
                <td class="av-num">{o.queued}</td>
                <td class="av-num">{Math.round(o.gpuSecondsToday)}</td>
                <td class="av-num">{o.costUsdToday === null ? "—" : `$${o.costUsdToday.toFixed(2)}`}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {stats.ownersTruncated ? <p class="muted">More owners have jobs than are listed here.</p> : null}
    </section>
  );
}

function TypeTable(props: { readonly stats: Stats }) {
  const { stats } = props;
  const types = Object.keys(stats.byType).sort((a, b) => a.localeCompare(b));
  return (
    <section class="card" aria-labelledby="stats-types">
      <h2 id="stats-types">By job type</h2>
      <div class="av-table-wrap">
        <table class="av-table">
          <caption class="visually-hidden">Figures per job type over the last {stats.window}</caption>
          <thead>
            <tr>
              <th scope="col">Type</th>
              <th scope="col" class="av-num">
                Completed
              </th>
              <th scope="col" class="av-num">
                Failed
              </th>
              <th scope="col" class="av-num">
                Wait p50 / p95
              </th>
              <th scope="col" class="av-num">
                Run p50 / p95
              </th>
            </tr>
          </thead>
          <tbody>
            {types.map((type) => {
              const f = stats.byType[type];
              if (f === undefined) return null;
              return (
                <tr key={type}>
                  <th scope="row" class="av-mono">
                    {type}
                  </th>
                  <td class="av-num">{f.completed}</td>
                  <td class="av-num">{f.failed}</td>
                  <td class="av-num">
                    {formatMs(f.queueWaitMs.p50)} / {formatMs(f.queueWaitMs.p95)}
                  </td>
                  <td class="av-num">
                    {formatMs(f.runMs.p50)} / {formatMs(f.runMs.p95)}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}
