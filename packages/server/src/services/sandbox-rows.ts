import { randomBytes } from 'node:crypto';
import { and, eq, inArray } from 'drizzle-orm';
import type { Histogram } from 'prom-client';
import type { NewSandbox } from '../api/e2b/schemas.js';
import type { Database } from '../db/database.js';
import { sandboxes } from '../db/schema.js';
import { NotFoundError } from './errors.js';
import {
  type EndReason,
  ending,
  isApiState,
  LIVE_STATES,
  type SandboxState,
  transition,
} from './sandbox-states.js';

export type SandboxRow = typeof sandboxes.$inferSelect;
/** A new sandbox's row: every column but those of its end. */
export type NewSandboxRow = Omit<SandboxRow, 'endedAt' | 'error'>;

const newToken = () => randomBytes(24).toString('hex');

/** The row of a sandbox being created as `body` asks: new access tokens, ending `timeoutS` from `now`. */
export function newSandboxRow(
  r: { id: string; teamId: string; nodeId: string; template: string; alias: string },
  body: NewSandbox,
  timeoutS: number,
  now: Date,
): NewSandboxRow {
  return {
    id: r.id,
    teamId: r.teamId,
    templateId: r.template,
    alias: r.alias,
    nodeId: r.nodeId,
    state: 'creating',
    cpuCount: 0,
    memoryMb: 0,
    diskSizeMb: 0,
    metadata: body.metadata ?? {},
    envdVersion: '0.0.1',
    envdAccessToken: newToken(),
    trafficAccessToken: body.network?.allowPublicTraffic !== false ? null : newToken(),
    allowInternetAccess: body.allow_internet_access ?? null,
    network: body.network ?? null,
    onTimeout: body.autoPause ? 'pause' : 'kill',
    autoResume: body.autoResume?.enabled ?? false,
    autoPauseMemory: body.autoPauseMemory ?? true,
    startedAt: now,
    endAt: new Date(now.getTime() + timeoutS * 1000),
  };
}

/**
 * The sandboxes table as the sandbox service uses it. Rows of ended sandboxes stay (the
 * history); a row's state changes only as `sandbox-states.ts` allows.
 */
export class SandboxRows {
  constructor(
    private readonly db: Database,
    /** Observes each ended sandbox's life in seconds, by end reason. */
    private readonly lifetimes?: Histogram<'reason'>,
  ) {}

  /** The rows of the sandboxes on `nodeId` that have not ended. */
  liveOn(nodeId: string): Promise<SandboxRow[]> {
    return this.db
      .select()
      .from(sandboxes)
      .where(and(eq(sandboxes.nodeId, nodeId), inArray(sandboxes.state, LIVE_STATES)));
  }

  /** The team's sandbox `id` if the API shows it (running or paused); NotFoundError otherwise. */
  async visible(teamId: string, id: string): Promise<SandboxRow> {
    const [row] = await this.db
      .select()
      .from(sandboxes)
      .where(and(eq(sandboxes.id, id), eq(sandboxes.teamId, teamId)))
      .limit(1);
    if (!row || !isApiState(row.state)) {
      // An ended sandbox says why, where there was more to it than a kill.
      const why = row?.error?.split('\n')[0];
      throw new NotFoundError(`sandbox ${id} not found${why ? `: it ended (${why})` : ''}`);
    }
    return row;
  }

  /** Inserts a new sandbox's row; `db` is a transaction when the insert is part of one. */
  async insert(row: NewSandboxRow, db: Database = this.db): Promise<void> {
    await db.insert(sandboxes).values(row);
  }

  /** Removes the row of a sandbox that never started. */
  async remove(id: string): Promise<void> {
    await this.db.delete(sandboxes).where(eq(sandboxes.id, id));
  }

  /**
   * Updates the row of a sandbox that has not ended: a write that lands after its end
   * (a resume that was under way) does not bring the row back.
   */
  async updateLive(id: string, set: Partial<typeof sandboxes.$inferInsert>): Promise<void> {
    await this.db
      .update(sandboxes)
      .set(set)
      .where(and(eq(sandboxes.id, id), inArray(sandboxes.state, LIVE_STATES)));
  }

  /** Closes the row of a sandbox that was `from`, with the state and error text of `reason` (or the node's `detail`). */
  async markEnded(id: string, from: SandboxState, reason: EndReason, detail?: string): Promise<void> {
    const { state, error } = ending(reason, detail);
    transition(id, from, state);
    const [ended] = await this.db
      .update(sandboxes)
      .set({ state, endedAt: new Date(), error })
      .where(eq(sandboxes.id, id))
      .returning({ startedAt: sandboxes.startedAt, endedAt: sandboxes.endedAt });
    if (ended?.endedAt)
      this.lifetimes?.observe({ reason }, (ended.endedAt.getTime() - ended.startedAt.getTime()) / 1000);
  }
}
