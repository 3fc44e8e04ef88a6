import { useEffect, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';

/** One line of a chart: its name, its values (null: no value then) and the CSS variable of its colour. */
export interface ChartLine {
  label: string;
  values: (number | null)[];
  color: `--${string}`;
  /** Draw each value as a point too (sparse series, whose values stand between gaps). */
  points?: boolean;
}

export interface ChartProps {
  /** The chart's name (its figure's caption and its table's). */
  title: string;
  /** Unix seconds, ascending. */
  times: number[];
  lines: ChartLine[];
  /** How a value is written in the summary, the table and the axis. */
  format: (v: number) => string;
  /** The text alternative beside the picture: what it shows now, in a sentence. */
  summary: string;
  height?: number;
}

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/** Re-renders when the system switches between light and dark (the canvas reads its colours once). */
function useColorScheme(): boolean {
  const query = matchMedia('(prefers-color-scheme: dark)');
  const [dark, setDark] = useState(query.matches);
  useEffect(() => {
    const update = () => setDark(query.matches);
    query.addEventListener('change', update);
    return () => query.removeEventListener('change', update);
  }, []);
  return dark;
}

/**
 * A time series drawn by uPlot on a canvas (hidden from assistive technology), with its
 * text alternative: a one-line summary always shown, and the values in a table behind a
 * disclosure. New data redraws the same chart; its width follows its container.
 */
export function Chart(props: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const dark = useColorScheme();
  const labels = props.lines.map((l) => `${l.label}:${l.color}`).join('|');
  const data = (): uPlot.AlignedData => [props.times, ...props.lines.map((l) => l.values)];
  // The newest data, for a chart made after it came (uPlot loads asynchronously).
  const dataRef = useRef(data);
  dataRef.current = data;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    let gone = false;
    let resize: ResizeObserver | undefined;
    // uPlot is a chunk of its own, loaded with the first chart.
    void import('uplot').then(({ default: UPlot }) => {
      if (gone) return;
      const text = cssVar('--text');
      const grid = cssVar('--border');
      const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
      const u = new UPlot(
        {
          width: Math.max(200, el.clientWidth),
          height: props.height ?? 180,
          series: [
            {},
            ...props.lines.map((l) => ({
              label: l.label,
              stroke: cssVar(l.color),
              width: 2,
              spanGaps: false,
              // Points as well when asked, or while there are too few values for a line.
              points: { show: (self: uPlot) => (l.points ?? false) || self.data[0].length < 3, size: 6 },
              value: (_u: uPlot, v: number | null) => (v === null ? '–' : props.format(v)),
            })),
          ],
          axes: [
            axis,
            { ...axis, size: 76, values: (_u: uPlot, ticks: number[]) => ticks.map(props.format) },
          ],
          scales: {
            // The data's own span, at least a minute (uPlot widens a single time value by
            // 86400 / ms: years, with seconds).
            x: {
              time: true,
              range: (): uPlot.Range.MinMax => {
                const t = dataRef.current()[0] as number[];
                const min = t[0] ?? Date.now() / 1000 - 60;
                const max = t.at(-1) ?? Date.now() / 1000;
                return max - min < 60 ? [min - 30, max + 30] : [min, max];
              },
            },
            y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
          },
          // The legend is the page's own (above the canvas), with the summary and the table.
          legend: { show: false },
          cursor: { drag: { x: false, y: false } },
        },
        dataRef.current(),
        el,
      );
      plot.current = u;
      resize = new ResizeObserver(() =>
        u.setSize({ width: Math.max(200, el.clientWidth), height: u.height }),
      );
      resize.observe(el);
    });
    return () => {
      gone = true;
      resize?.disconnect();
      plot.current?.destroy();
      plot.current = undefined;
    };
  }, [labels, dark]);

  useEffect(() => {
    plot.current?.setData(data());
  }, [props.times, props.lines]);

  // The table lists the newest values first.
  const rows = props.times
    .map((t, i) => ({ t, values: props.lines.map((l) => l.values[i] ?? null) }))
    .filter((r) => r.values.some((v) => v !== null))
    .reverse();
  return (
    <figure class="chart">
      <figcaption>
        <strong>{props.title}</strong>
        <span class="chart-summary" aria-live="polite">
          {props.summary}
        </span>
      </figcaption>
      <ul class="chart-legend" aria-hidden="true">
        {props.lines.map((l) => (
          <li key={l.label}>
            <span class="swatch" style={{ background: `var(${l.color})` }} />
            {l.label}
          </li>
        ))}
      </ul>
      <div ref={box} class="chart-canvas" aria-hidden="true" />
      <details class="chart-table">
        <summary>{props.title}: the values as a table</summary>
        <section
          class="table-wrap"
          aria-label={`${props.title}: values`}
          // biome-ignore lint/a11y/noNoninteractiveTabindex: the table scrolls, and a keyboard must reach it to scroll it
          tabIndex={0}
        >
          <table>
            <caption class="visually-hidden">{props.title}</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                {props.lines.map((l) => (
                  <th scope="col" key={l.label}>
                    {l.label}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.length === 0 ? (
                <tr>
                  <td colSpan={props.lines.length + 1}>No values yet.</td>
                </tr>
              ) : (
                rows.map((r) => (
                  <tr key={r.t}>
                    <td>
                      <time dateTime={new Date(r.t * 1000).toISOString()}>
                        {new Date(r.t * 1000).toLocaleTimeString()}
                      </time>
                    </td>
                    {r.values.map((v, i) => (
                      <td key={props.lines[i]?.label}>{v === null ? '–' : props.format(v)}</td>
                    ))}
                  </tr>
                ))
              )}
            </tbody>
          </table>
        </section>
      </details>
    </figure>
  );
}
