import type { Gauge } from 'prom-client';
import type { sandboxes } from '../db/schema.js';
import { CapacityError } from './errors.js';
import type { LiveState } from './sandbox-states.js';

export interface SandboxLimits {
  /** Sandboxes the node takes at most (503 beyond). */
  maxSandboxes: number;
  /** Memory (MiB) all sandboxes may take together (503 beyond). */
  memoryBudgetMiB: number;
  /** Sandboxes one team may run at once (429 beyond), unless its quota says otherwise (`team-quotas.ts`). */
  maxSandboxesPerTeam: number;
}

/** What the proxy and the timers need to know of a sandbox, kept in memory for every live one. */
export interface LiveSandbox {
  id: string;
  teamId: string;
  /** The node it runs on. */
  nodeId: string;
  state: LiveState;
  /** When it expires (ms since the epoch). */
  endAt: number;
  onTimeout: 'kill' | 'pause';
  /** Whether the pause at its timeout keeps memory (E2B's `autoPauseMemory`) or the disk only. */
  autoPauseMemory: boolean;
  memoryMb: number;
  allowPublicTraffic: boolean;
  trafficAccessToken?: string;
  /** envd's access token: what signed file URLs are signed with. */
  envdAccessToken: string;
  /** Resume when traffic arrives for it while paused (E2B's `autoResume`). */
  autoResume: boolean;
  /** Its ports that serve HTTPS (E2B's `network.httpsPorts`): the proxy reaches them over TLS. */
  httpsPorts: number[];
  /** The Host header requests to its ports other than envd's carry (E2B's `network.maskRequestHost`). */
  maskRequestHost?: string;
}

/** The memory (MiB) counted for a sandbox whose own is not known yet (being made, or pooled). */
export const TYPICAL_MEMORY_MIB = 512;

/** A stored sandbox as the live index holds it. */
export function liveFromRow(
  row: Pick<
    typeof sandboxes.$inferSelect,
    | 'id'
    | 'teamId'
    | 'nodeId'
    | 'endAt'
    | 'onTimeout'
    | 'autoPauseMemory'
    | 'memoryMb'
    | 'network'
    | 'trafficAccessToken'
    | 'envdAccessToken'
    | 'autoResume'
  >,
  state: LiveState,
): LiveSandbox {
  const network = (row.network ?? {}) as {
    allowPublicTraffic?: boolean;
    httpsPorts?: number[];
    maskRequestHost?: string;
  };
  return {
    id: row.id,
    teamId: row.teamId,
    nodeId: row.nodeId,
    state,
    endAt: row.endAt.getTime(),
    onTimeout: row.onTimeout,
    autoPauseMemory: row.autoPauseMemory,
    memoryMb: row.memoryMb,
    allowPublicTraffic: network.allowPublicTraffic !== false,
    trafficAccessToken: row.trafficAccessToken ?? undefined,
    envdAccessToken: row.envdAccessToken,
    autoResume: row.autoResume,
    httpsPorts: network.httpsPorts ?? [],
    maskRequestHost: network.maskRequestHost,
  };
}

/**
 * The sandboxes that have not ended (creating ones included, so that concurrent creates
 * count each other), with the capacity and per-team limits they are checked against and
 * the `aiva_sandboxes` gauge.
 */
export class LiveSandboxes {
  private readonly byId = new Map<string, LiveSandbox>();

  constructor(
    private readonly limits: SandboxLimits,
    private readonly gauge: Gauge<'state'>,
  ) {}

  get(id: string): LiveSandbox | undefined {
    return this.byId.get(id);
  }

  add(s: LiveSandbox): void {
    this.byId.set(s.id, s);
  }

  /** Takes a sandbox out of the index; false if it was not there. */
  remove(id: string): boolean {
    return this.byId.delete(id);
  }

  values(): IterableIterator<LiveSandbox> {
    return this.byId.values();
  }

  ids(): string[] {
    return [...this.byId.keys()];
  }

  /**
   * Whether the node has room for one more sandbox of `memoryMb`, besides `pooled`
   * sandboxes of the warm pool that the live ones do not count.
   */
  hasRoom(memoryMb: number, pooled = 0): boolean {
    const used = [...this.byId.values()].reduce((sum, s) => sum + s.memoryMb, 0);
    return (
      this.byId.size + pooled < this.limits.maxSandboxes &&
      used + pooled * TYPICAL_MEMORY_MIB + memoryMb <= this.limits.memoryBudgetMiB
    );
  }

  /** The team's sandboxes this server counts (creates under way included). */
  countOfTeam(teamId: string): number {
    return [...this.byId.values()].filter((s) => s.teamId === teamId).length;
  }

  /** Throws CapacityError if the node has no room for `memoryMb` more (a team's own cap is `TeamQuotas`'). */
  checkCapacity(memoryMb: number): void {
    if (!this.hasRoom(memoryMb))
      throw new CapacityError('no capacity for another sandbox on this node right now');
  }

  /** Sets the gauge of sandboxes by state. */
  updateGauge(): void {
    this.gauge.reset();
    for (const s of this.byId.values()) this.gauge.inc({ state: s.state });
  }
}
