import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Columns } from "./stats-series";

export interface ChartSeries {
  readonly label: string;
  /** A theme.css variable name, e.g. `--accent`: the chart follows the theme. */
  readonly colorVar: string;
  readonly dash?: readonly number[];
}

const CHART_HEIGHT = 200;

/**
 * A time chart (uPlot) with its text alternative: the canvas is hidden from screen readers, and
 * a disclosure under it holds the same points as a table, newest first.
 */
export function TimeChart(props: {
  readonly id: string;
  readonly title: string;
  readonly columns: Columns;
  readonly series: readonly ChartSeries[];
  readonly format: (value: number | null) => string;
  /** Said when there are no points yet, e.g. "Collecting: a point every 5 s". */
  readonly empty: string;
  /** Bars for counts per period, lines for measurements. */
  readonly bars?: boolean;
}) {
  const holder = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const { columns, series, format, bars } = props;
  const seriesKey = series.map((s) => s.label).join("|");

  // Rebuilt only when the series change; new data goes through setData below.
  useEffect(() => {
    const el = holder.current;
    if (el === null) return undefined;
    const css = getComputedStyle(document.documentElement);
    const color = (name: string) => css.getPropertyValue(name).trim() || "#1f5fbf";
    const muted = color("--muted");
    const grid = color("--border");
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: CHART_HEIGHT,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: {
          time: true,
          // One or two samples would otherwise stretch the axis over years: show at least a minute.
          range: (_u, min, max) =>
            min === null || max === null || max - min >= 60 ? [min, max] : [max - 60, max + 1],
        },
      },
      axes: [
        { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
        {
          stroke: muted,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid },
          size: 64,
          values: (_u, ticks) => ticks.map((t) => format(t)),
        },
      ],
      series: [
        {},
        ...series.map(
          (s): uPlot.Series => ({
            label: s.label,
            stroke: color(s.colorVar),
            width: 2,
            spanGaps: false,
            ...(s.dash === undefined ? {} : { dash: [...s.dash] }),
            ...(bars === true
              ? { paths: uPlot.paths.bars?.({ size: [0.6, 24] }), fill: `${color(s.colorVar)}55` }
              : // Dots where points are few, so a lone minute between gaps still shows.
                { points: { show: (_u, _s, first, last) => last - first <= 120, size: 5 } }),
            value: (_u, v) => format(v),
          }),
        ),
      ],
    };
    const chart = new uPlot(opts, columns as uPlot.AlignedData, el);
    plot.current = chart;
    const resize = new ResizeObserver(() => {
      chart.setSize({ width: Math.max(200, el.clientWidth), height: CHART_HEIGHT });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
  }, [seriesKey, bars]);

  useEffect(() => {
    plot.current?.setData(columns as uPlot.AlignedData);
  }, [columns]);

  const rows: number[] = [];
  for (let i = columns[0].length - 1; i >= 0 && rows.length < 60; i -= 1) rows.push(i);
  const titleId = `${props.id}-title`;
  return (
    <figure class="av-chart" aria-labelledby={titleId}>
      <figcaption id={titleId}>{props.title}</figcaption>
      {columns[0].length === 0 ? <p class="muted">{props.empty}</p> : null}
      <div class="av-chart-canvas" ref={holder} aria-hidden="true" />
      <details>
        <summary>Data as a table ({columns[0].length} points)</summary>
        <div class="av-table-wrap">
          <table class="av-table">
            <caption class="visually-hidden">{props.title}, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                {series.map((s) => (
                  <th scope="col" class="av-num" key={s.label}>
                    {s.label}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((i) => (
                <tr key={columns[0][i]}>
                  <th scope="row">{new Date((columns[0][i] ?? 0) * 1000).toLocaleTimeString("en-GB")}</th>
                  {series.map((s, k) => (
                    <td class="av-num" key={s.label}>
                      {format(columns[k + 1]?.[i] ?? null)}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </figure>
  );
}
