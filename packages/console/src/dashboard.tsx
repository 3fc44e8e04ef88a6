import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage } from './api.js';
import { Chart } from './chart.js';

type States = { creating: number; running: number; paused: number };

/** `GET /v1/sandboxes/stats`. */
export interface SandboxStats {
  range: string;
  stepSeconds: number;
  scope: 'team' | 'all';
  states: States;
  /** The operator's: every node's live sandboxes, and in a cluster its name, state and resources. */
  nodes?: {
    nodeId: string;
    states: States;
    name?: string;
    state?: string;
    capacity?: { cores?: number; memoryBudgetMiB?: number; diskMiB?: number } | null;
    free?: { memAvailableMiB?: number; diskFreeMiB?: number } | null;
  }[];
  steps: {
    timestampUnix: number;
    creates: number;
    failures: number;
    createFailures: number;
    createP50Ms: number | null;
    createP95Ms: number | null;
  }[];
}

export const DASHBOARD = '/ui/dashboard';
/** How often the numbers are read again. */
const POLL_MS = 3000;
const RANGES = [
  ['15m', 'Last 15 minutes'],
  ['1h', 'Last hour'],
  ['6h', 'Last 6 hours'],
  ['24h', 'Last 24 hours'],
] as const;

const count = (v: number) => String(Math.round(v * 10) / 10);
const millis = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);

/**
 * The console's dashboard: the team's live sandboxes by state, creates per minute,
 * failures and create latency over a range, and (the operator) every team's, per node.
 * Polls `GET /v1/sandboxes/stats` every 3 s.
 */
export function Dashboard() {
  const [range, setRange] = useState('1h');
  const [stats, setStats] = useState<SandboxStats>();
  const [error, setError] = useState<string>();

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = async () => {
      try {
        const s = await api<SandboxStats>('GET', `/v1/sandboxes/stats?range=${range}`);
        if (stopped) return;
        setStats(s);
        setError(undefined);
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
  }, [range]);

  const perMinute = 60 / (stats?.stepSeconds ?? 60);
  const steps = stats?.steps ?? [];
  const times = steps.map((s) => s.timestampUnix);
  const total = (f: (s: SandboxStats['steps'][number]) => number) => steps.reduce((n, s) => n + f(s), 0);
  const lastLatency = [...steps].reverse().find((s) => s.createP50Ms !== null);
  const rangeName = RANGES.find(([r]) => r === range)?.[1].toLowerCase() ?? range;
  return (
    <section aria-labelledby="dashboard-title">
      <div class="title-row">
        <h1 id="dashboard-title">Dashboard</h1>
        <label class="inline-label">
          Range{' '}
          <select value={range} onChange={(e) => setRange((e.currentTarget as HTMLSelectElement).value)}>
            {RANGES.map(([r, name]) => (
              <option key={r} value={r}>
                {name}
              </option>
            ))}
          </select>
        </label>
      </div>
      {stats?.scope === 'all' && <p class="hint">Every team’s sandboxes (operator).</p>}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <h2 id="states-title">Sandboxes by state</h2>
      {stats ? (
        <dl class="tiles" aria-labelledby="states-title">
          {(['running', 'paused', 'creating'] as const).map((state) => (
            <div class="tile" key={state} data-state={state}>
              <dt>{state[0]?.toUpperCase() + state.slice(1)}</dt>
              <dd>{stats.states[state]}</dd>
            </div>
          ))}
        </dl>
      ) : (
        <p>Loading…</p>
      )}
      {stats && (
        <div class="charts">
          <Chart
            title="Creates and failures per minute"
            times={times}
            lines={[
              { label: 'Creates', values: steps.map((s) => s.creates * perMinute), color: '--accent' },
              {
                label: 'Failed creates',
                values: steps.map((s) => s.createFailures * perMinute),
                color: '--warn',
              },
              {
                label: 'Sandbox failures',
                values: steps.map((s) => s.failures * perMinute),
                color: '--danger',
              },
            ]}
            format={count}
            summary={`${total((s) => s.creates)} created, ${total((s) => s.createFailures)} failed to start and ${total((s) => s.failures)} failed while running in the ${rangeName}.`}
          />
          <Chart
            title="Create latency"
            times={times}
            lines={[
              { label: 'p50', values: steps.map((s) => s.createP50Ms), color: '--accent', points: true },
              { label: 'p95', values: steps.map((s) => s.createP95Ms), color: '--warn', points: true },
            ]}
            format={millis}
            summary={
              lastLatency
                ? `Latest minute with creates: p50 ${millis(lastLatency.createP50Ms ?? 0)}, p95 ${millis(lastLatency.createP95Ms ?? 0)} (this server’s creates).`
                : `No creates through this server in the ${rangeName}.`
            }
          />
        </div>
      )}
      {stats?.nodes && <NodeCapacity nodes={stats.nodes} />}
    </section>
  );
}

function NodeCapacity(props: { nodes: NonNullable<SandboxStats['nodes']> }) {
  const gib = (v: number | undefined) => (v === undefined ? '–' : `${(v / 1024).toFixed(1)} GiB`);
  return (
    <>
      <h2 id="nodes-title">Capacity per node</h2>
      <div class="table-wrap">
        <table aria-labelledby="nodes-title">
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">State</th>
              <th scope="col">Running</th>
              <th scope="col">Paused</th>
              <th scope="col">Cores</th>
              <th scope="col">Memory budget</th>
              <th scope="col">Memory free</th>
              <th scope="col">Disk free</th>
            </tr>
          </thead>
          <tbody>
            {props.nodes.map((n) => (
              <tr key={n.nodeId}>
                <th scope="row">{n.name ?? n.nodeId}</th>
                <td>{n.state ?? 'this server’s'}</td>
                <td>{n.states.running}</td>
                <td>{n.states.paused}</td>
                <td>{n.capacity?.cores ?? '–'}</td>
                <td>{gib(n.capacity?.memoryBudgetMiB)}</td>
                <td>{gib(n.free?.memAvailableMiB)}</td>
                <td>{gib(n.free?.diskFreeMiB)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
