import { and, eq, inArray, lt } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/database.js';
import { sandboxes } from '../db/schema.js';
import type { Nodes } from '../nodes/nodes.js';
import type { ServerReplica } from '../replicas/server-replica.js';
import { type LiveSandboxes, liveFromRow } from './live-sandboxes.js';
import { ending, LIVE_STATES, type LiveState } from './sandbox-states.js';

/** A create still `creating` this long after it began has lost its replica (a command's deadline is 15 min). */
const STALE_CREATE_MS = 16 * 60_000;
const SWEEP_MS = 30_000;

/**
 * Keeps this replica's live index in step with the sandboxes the other replicas make,
 * change and end (they announce each row they write; see ServerReplica), so that any
 * replica serves any sandbox's traffic and API calls, and the leader's expiry sees them
 * all. The leader also ends creates whose replica died before they finished.
 */
export class ReplicaSync {
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Database,
    private readonly live: LiveSandboxes,
    private readonly nodes: Nodes,
    /** Takes an ended sandbox out of the index and tells the proxy. */
    private readonly ended: (id: string) => void,
    private readonly log: Logger,
  ) {}

  follow(replica: ServerReplica): void {
    replica.on('sandbox', (id: string) => void this.apply(id).catch((e) => this.failed(e)));
    replica.on('resync', () => void this.resync().catch((e) => this.failed(e)));
    this.sweeper = setInterval(() => {
      if (replica.leader) void this.sweepStaleCreates().catch((e) => this.failed(e));
    }, SWEEP_MS);
    this.sweeper.unref();
  }

  stop(): void {
    clearInterval(this.sweeper);
  }

  /** Takes sandbox `id`'s row as another replica left it. */
  async apply(id: string): Promise<void> {
    const [row] = await this.db.select().from(sandboxes).where(eq(sandboxes.id, id));
    if (row && (LIVE_STATES as readonly string[]).includes(row.state)) {
      this.live.add(liveFromRow(row, row.state as LiveState));
      this.live.updateGauge();
    } else if (this.live.get(id)) this.ended(id);
  }

  /** Reads every live row again (after this replica missed notifications). */
  async resync(): Promise<void> {
    const rows = await this.db.select().from(sandboxes).where(inArray(sandboxes.state, LIVE_STATES));
    const alive = new Set(rows.map((r) => r.id));
    for (const row of rows) this.live.add(liveFromRow(row, row.state as LiveState));
    for (const id of this.live.ids()) if (!alive.has(id)) this.ended(id);
    this.live.updateGauge();
  }

  private async sweepStaleCreates(): Promise<void> {
    const { state, error } = ending(
      'lost',
      'its create never finished: the server replica making it stopped',
    );
    const stale = await this.db
      .update(sandboxes)
      .set({ state, error, endedAt: new Date() })
      .where(
        and(eq(sandboxes.state, 'creating'), lt(sandboxes.startedAt, new Date(Date.now() - STALE_CREATE_MS))),
      )
      .returning({ id: sandboxes.id, nodeId: sandboxes.nodeId });
    for (const s of stale) {
      this.log.warn({ sandbox: s.id, node: s.nodeId }, 'ended a create whose replica stopped');
      if (this.live.get(s.id)) this.ended(s.id);
      await this.nodes
        .of(s.nodeId)
        .kill(s.id)
        .catch(() => {});
    }
  }

  private failed(e: unknown): void {
    this.log.warn({ err: e }, 'following the other replicas failed');
  }
}
