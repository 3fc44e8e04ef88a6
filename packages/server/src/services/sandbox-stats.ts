import { and, eq, gte, inArray, lt } from 'drizzle-orm';
import type { Database } from '../db/database.js';
import { sandboxEvents } from '../db/events-schema.js';
import type { CreateLog } from '../metrics/create-log.js';
import { InvalidRequestError } from './errors.js';
import type { LiveSandbox } from './live-sandboxes.js';
import type { LiveState } from './sandbox-states.js';

/** The dashboard's ranges and the step of each (every range has 15–96 steps). */
export const STATS_RANGES = {
  '15m': { ms: 15 * 60_000, stepMs: 60_000 },
  '1h': { ms: 3600_000, stepMs: 60_000 },
  '6h': { ms: 6 * 3600_000, stepMs: 5 * 60_000 },
  '24h': { ms: 24 * 3600_000, stepMs: 15 * 60_000 },
} as const;
export type StatsRange = keyof typeof STATS_RANGES;

export interface StatsStep {
  /** The step's start (ISO) and the same in unix seconds. */
  time: string;
  timestampUnix: number;
  /** Sandboxes that became ready in the step (every replica's: lifecycle events). */
  creates: number;
  /** Sandboxes that ended by failing in the step (every replica's: lifecycle events). */
  failures: number;
  /** Creates this replica ran that failed (the sandbox could not start). */
  createFailures: number;
  /** The 50th and 95th percentile of this replica's successful creates' time, ms; null with none. */
  createP50Ms: number | null;
  createP95Ms: number | null;
}

export interface SandboxStats {
  range: StatsRange;
  stepSeconds: number;
  from: string;
  to: string;
  /** `team`: the caller's team; `all`: every team (the operator). */
  scope: 'team' | 'all';
  /** Live sandboxes by state now. */
  states: Record<LiveState, number>;
  /**
   * Live sandboxes by node and state now, and with a cluster each node's name, state,
   * capacity and free resources (the operator only: nodes are the operator's).
   */
  nodes?: ({ nodeId: string; states: Record<LiveState, number> } & Partial<NodeCapacity>)[];
  steps: StatsStep[];
}

/** The q-quantile (0–1) of sorted values: the nearest rank. */
export function quantile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1] ?? null;
}

/** What the stats say of a cluster's node beside its sandboxes (`GET /v1/nodes` has the rest). */
export interface NodeCapacity {
  name: string;
  state: string;
  capacity: Record<string, number> | null;
  free: Record<string, number> | null;
}

const zero = (): Record<LiveState, number> => ({ creating: 0, running: 0, paused: 0 });

/**
 * The dashboard's numbers (`GET /v1/sandboxes/stats`): live sandboxes by state (and by
 * node for the operator) from the live index, which every replica keeps for the whole
 * cluster; creates and failures per step from the lifecycle events in the database;
 * create latency and failed creates from this replica's `CreateLog`.
 */
export class SandboxStatsService {
  constructor(
    private readonly db: Database,
    private readonly live: () => Iterable<LiveSandbox>,
    private readonly creates: CreateLog,
    /** The cluster's nodes (a server without a cluster has none but its own). */
    private readonly clusterNodes?: () => Promise<({ id: string } & NodeCapacity)[]>,
  ) {}

  private async nodesWith(byNode: Map<string, Record<LiveState, number>>): Promise<SandboxStats['nodes']> {
    const known = (await this.clusterNodes?.()) ?? [];
    for (const n of known) if (!byNode.has(n.id)) byNode.set(n.id, zero());
    return [...byNode.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([nodeId, states]) => {
        const n = known.find((k) => k.id === nodeId);
        return n
          ? { nodeId, states, name: n.name, state: n.state, capacity: n.capacity, free: n.free }
          : { nodeId, states };
      });
  }

  static range(value: string | undefined): StatsRange {
    const r = value ?? '1h';
    if (!Object.hasOwn(STATS_RANGES, r))
      throw new InvalidRequestError(
        `range must be one of ${Object.keys(STATS_RANGES).join(', ')}, got ${JSON.stringify(r)}`,
      );
    return r as StatsRange;
  }

  /** `teamId`: one team's; undefined: every team's (the caller must be the operator). */
  async stats(range: StatsRange, teamId: string | undefined, nowMs = Date.now()): Promise<SandboxStats> {
    const { ms, stepMs } = STATS_RANGES[range];
    const toMs = Math.ceil(nowMs / stepMs) * stepMs;
    const fromMs = toMs - ms;
    const states = zero();
    const byNode = new Map<string, Record<LiveState, number>>();
    for (const s of this.live()) {
      if (teamId !== undefined && s.teamId !== teamId) continue;
      states[s.state]++;
      const node = byNode.get(s.nodeId) ?? zero();
      node[s.state]++;
      byNode.set(s.nodeId, node);
    }
    const events = await this.db
      .select({ type: sandboxEvents.type, at: sandboxEvents.createdAt })
      .from(sandboxEvents)
      .where(
        and(
          inArray(sandboxEvents.type, ['sandbox.lifecycle.created', 'sandbox.lifecycle.failed']),
          gte(sandboxEvents.createdAt, new Date(fromMs)),
          lt(sandboxEvents.createdAt, new Date(toMs)),
          ...(teamId !== undefined ? [eq(sandboxEvents.teamId, teamId)] : []),
        ),
      );
    const count = ms / stepMs;
    const created = new Array<number>(count).fill(0);
    const failed = new Array<number>(count).fill(0);
    for (const e of events) {
      const i = Math.floor((e.at.getTime() - fromMs) / stepMs);
      if (i < 0 || i >= count) continue;
      const into = e.type === 'sandbox.lifecycle.created' ? created : failed;
      into[i] = (into[i] ?? 0) + 1;
    }
    const times: number[][] = Array.from({ length: count }, () => []);
    const createFailures = new Array<number>(count).fill(0);
    for (const o of this.creates.between(fromMs, toMs, teamId)) {
      const i = Math.floor((o.at - fromMs) / stepMs);
      if (o.ok) times[i]?.push(o.ms);
      else createFailures[i] = (createFailures[i] ?? 0) + 1;
    }
    const steps = times.map((t, i): StatsStep => {
      const sorted = t.sort((a, b) => a - b);
      const at = fromMs + i * stepMs;
      return {
        time: new Date(at).toISOString(),
        timestampUnix: at / 1000,
        creates: created[i] ?? 0,
        failures: failed[i] ?? 0,
        createFailures: createFailures[i] ?? 0,
        createP50Ms: round(quantile(sorted, 0.5)),
        createP95Ms: round(quantile(sorted, 0.95)),
      };
    });
    return {
      range,
      stepSeconds: stepMs / 1000,
      from: new Date(fromMs).toISOString(),
      to: new Date(toMs).toISOString(),
      scope: teamId === undefined ? 'all' : 'team',
      states,
      ...(teamId === undefined ? { nodes: await this.nodesWith(byNode) } : {}),
      steps,
    };
  }
}

function round(v: number | null): number | null {
  return v === null ? null : Math.round(v);
}
