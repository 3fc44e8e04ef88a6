import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage } from './api.js';
import { Chart } from './chart.js';

/** A sample of `GET /sandboxes/{id}/metrics` (E2B's; bytes, percent). */
interface SandboxMetric {
  timestampUnix: number;
  cpuCount: number;
  cpuUsedPct: number;
  memUsed: number;
  memTotal: number;
  diskUsed: number;
  diskTotal: number;
}

/** How often the samples are read again (the server samples every 5 s). */
const POLL_MS = 5000;

const pct = (v: number) => `${v.toFixed(1)} %`;
const mib = (v: number) => (v >= 1024 ? `${(v / 1024).toFixed(1)} GiB` : `${Math.round(v)} MiB`);
const MiB = 1024 * 1024;

/**
 * A sandbox's CPU, memory and disk over its life, from E2B's `GET /sandboxes/{id}/metrics`
 * (what the SDK's `getMetrics` reads), read again every 5 s while the page is open.
 */
export function SandboxMetrics(props: { id: string; live: boolean }) {
  const [samples, setSamples] = useState<SandboxMetric[]>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    // Read while it runs; a paused sandbox keeps what was read.
    if (!props.live) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = async () => {
      try {
        const m = await api<SandboxMetric[]>('GET', `/sandboxes/${props.id}/metrics`);
        if (!stopped) {
          setSamples(m);
          setError(undefined);
        }
      } catch (e) {
        if (!stopped) setError(errorMessage(e));
      }
      if (!stopped) timer = setTimeout(read, POLL_MS);
    };
    void read();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [props.id, props.live]);

  const list = samples ?? [];
  const last = list.at(-1);
  const times = list.map((m) => m.timestampUnix);
  return (
    <section class="detail-tools" aria-labelledby="metrics-title">
      <h2 id="metrics-title">Resources</h2>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!samples ? (
        <p>{props.live ? 'Loading…' : 'Read while the sandbox runs.'}</p>
      ) : (
        <div class="charts">
          <Chart
            title="CPU"
            times={times}
            lines={[{ label: 'CPU used', values: list.map((m) => m.cpuUsedPct), color: '--accent' }]}
            format={pct}
            summary={last ? `${pct(last.cpuUsedPct)} of ${last.cpuCount} vCPU now.` : 'No samples yet.'}
          />
          <Chart
            title="Memory"
            times={times}
            lines={[
              { label: 'Memory used', values: list.map((m) => m.memUsed / MiB), color: '--accent' },
              { label: 'Memory total', values: list.map((m) => m.memTotal / MiB), color: '--muted' },
            ]}
            format={mib}
            summary={
              last ? `${mib(last.memUsed / MiB)} of ${mib(last.memTotal / MiB)} used now.` : 'No samples yet.'
            }
          />
          <Chart
            title="Disk"
            times={times}
            lines={[
              { label: 'Disk used', values: list.map((m) => m.diskUsed / MiB), color: '--accent' },
              { label: 'Disk total', values: list.map((m) => m.diskTotal / MiB), color: '--muted' },
            ]}
            format={mib}
            summary={
              last
                ? `${mib(last.diskUsed / MiB)} of ${mib(last.diskTotal / MiB)} used now.`
                : 'No samples yet.'
            }
          />
        </div>
      )}
    </section>
  );
}
