import { and, asc, desc, eq, inArray, lt, type SQL } from 'drizzle-orm';
import type { Database } from '../db/database.js';
import { sandboxEvents } from '../db/schema.js';
import type { Caller } from './team-service.js';

type Row = typeof sandboxEvents.$inferSelect;

/** The lifecycle events a sandbox's row makes (the trigger of migration 0006), as E2B names them. */
export const SANDBOX_EVENT_TYPES = [
  'sandbox.lifecycle.created',
  'sandbox.lifecycle.updated',
  'sandbox.lifecycle.paused',
  'sandbox.lifecycle.resumed',
  'sandbox.lifecycle.killed',
  /** aiva's: a sandbox that ended by failing (its node lost it, it crashed), not by a kill. */
  'sandbox.lifecycle.failed',
] as const;

/** How long events are kept (E2B's retention). */
export const EVENT_RETENTION_MS = 7 * 24 * 3600 * 1000;

/** An event as E2B's lifecycle API and its webhooks give it (`version: v1`). */
export interface SandboxEvent {
  version: 'v1';
  id: string;
  type: string;
  eventData: Record<string, unknown> | null;
  sandboxBuildId: string;
  sandboxExecutionId: string;
  sandboxId: string;
  sandboxTeamId: string;
  sandboxTemplateId: string;
  timestamp: string;
}

export function eventOf(row: Row): SandboxEvent {
  return {
    version: 'v1',
    id: row.id,
    type: row.type,
    eventData: row.data ?? null,
    // aiva has no builds or executions apart from the sandbox: one execution per sandbox.
    sandboxBuildId: row.templateId,
    sandboxExecutionId: row.sandboxId,
    sandboxId: row.sandboxId,
    sandboxTeamId: row.teamId,
    sandboxTemplateId: row.templateId,
    timestamp: row.createdAt.toISOString(),
  };
}

export interface EventQuery {
  offset?: number;
  limit?: number;
  orderAsc?: boolean;
  types?: string[];
}

/** E2B's `GET /events/sandboxes[/{id}]`: a team's sandbox events, newest first unless asked. */
export class SandboxEvents {
  constructor(private readonly db: Database) {}

  async list(caller: Caller, q: EventQuery, sandboxId?: string): Promise<SandboxEvent[]> {
    const where: SQL[] = [eq(sandboxEvents.teamId, caller.teamId)];
    if (sandboxId) where.push(eq(sandboxEvents.sandboxId, sandboxId));
    if (q.types?.length) where.push(inArray(sandboxEvents.type, q.types));
    const rows = await this.db
      .select()
      .from(sandboxEvents)
      .where(and(...where))
      .orderBy(q.orderAsc ? asc(sandboxEvents.seq) : desc(sandboxEvents.seq))
      .limit(q.limit ?? 10)
      .offset(q.offset ?? 0);
    return rows.map(eventOf);
  }

  /** Drops events past their retention; how many went. */
  async prune(now = Date.now()): Promise<number> {
    const gone = await this.db
      .delete(sandboxEvents)
      .where(lt(sandboxEvents.createdAt, new Date(now - EVENT_RETENTION_MS)))
      .returning({ id: sandboxEvents.id });
    return gone.length;
  }
}
