import { randomBytes } from 'node:crypto';
import { and, desc, eq, lt, or, type SQL, sql } from 'drizzle-orm';
import type { Database } from '../db/database.js';
import { auditLog } from '../db/schema.js';
import { keysetPage, parseCursor } from './keyset-page.js';

/** One mutating API call, as `api/audit-hook.ts` saw it. */
export interface AuditRecord {
  keyId: string;
  teamId: string;
  action: string;
  method: string;
  route: string;
  targets: string[];
  status: number;
  clientAddress?: string;
}

export interface AuditEntry extends AuditRecord {
  id: string;
  time: string;
  result: 'ok' | 'error';
}

export interface AuditQuery {
  limit?: number;
  cursor?: string;
  action?: string;
  /** Entries naming this id among their targets. */
  target?: string;
}

/**
 * The audit log: calls are appended, listed newest first, and never changed. This class
 * has no update or delete, and the table's trigger (migration 0006) refuses both.
 */
export class AuditLog {
  constructor(private readonly db: Database) {}

  private lastMs = 0;
  private seq = 0;

  /**
   * An id that sorts after every id this process made before it, also within one
   * millisecond: the list's tie-break on (time, id) is then the
   * order of the calls. The random tail keeps replicas' ids apart.
   */
  private nextId(at: number): string {
    if (at > this.lastMs) {
      this.lastMs = at;
      this.seq = 0;
    } else this.seq++;
    const ms = this.lastMs.toString(16).padStart(12, '0');
    const seq = this.seq.toString(16).padStart(6, '0');
    return `aud_${ms}${seq}${randomBytes(5).toString('hex')}`;
  }

  /** Appends one call; the time is this server's, in milliseconds (what a cursor holds). */
  async append(r: AuditRecord): Promise<void> {
    const time = new Date();
    await this.db.insert(auditLog).values({
      id: this.nextId(time.getTime()),
      time,
      keyId: r.keyId,
      teamId: r.teamId,
      action: r.action,
      method: r.method,
      route: r.route,
      targets: r.targets,
      status: r.status,
      result: r.status < 400 ? 'ok' : 'error',
      clientAddress: r.clientAddress ?? null,
    });
  }

  /** A page of entries, newest first: the team's, or every team's when `teamId` is undefined (the operator). */
  async list(
    teamId: string | undefined,
    q: AuditQuery,
  ): Promise<{ entries: AuditEntry[]; nextToken?: string }> {
    const where: SQL[] = [];
    if (teamId !== undefined) where.push(eq(auditLog.teamId, teamId));
    if (q.action) where.push(eq(auditLog.action, q.action));
    if (q.target) where.push(sql`${auditLog.targets} @> ${JSON.stringify([q.target])}::jsonb`);
    if (q.cursor) {
      const cursor = parseCursor(q.cursor);
      const at = new Date(cursor.t);
      where.push(or(lt(auditLog.time, at), and(eq(auditLog.time, at), lt(auditLog.id, cursor.id))) as SQL);
    }
    const limit = q.limit ?? 100;
    const rows = await this.db
      .select()
      .from(auditLog)
      .where(and(...where))
      .orderBy(desc(auditLog.time), desc(auditLog.id))
      .limit(limit + 1);
    const { page, nextToken } = keysetPage(rows, limit, (r) => r.time);
    return {
      entries: page.map((r) => ({
        id: r.id,
        time: r.time.toISOString(),
        keyId: r.keyId,
        teamId: r.teamId,
        action: r.action,
        method: r.method,
        route: r.route,
        targets: r.targets,
        status: r.status,
        result: r.result,
        clientAddress: r.clientAddress ?? undefined,
      })),
      nextToken,
    };
  }
}
