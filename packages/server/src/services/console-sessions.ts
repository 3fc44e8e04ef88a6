import { randomBytes } from 'node:crypto';
import { and, eq, gt, lt, sql } from 'drizzle-orm';
import {
  hashSessionToken,
  isSessionToken,
  newSessionToken,
  SESSION_LIFETIME_MS,
} from '../auth/console-session-rules.js';
import { isScope } from '../auth/scopes.js';
import type { Database } from '../db/database.js';
import { apiKeys, consoleSessions } from '../db/schema.js';
import { UnauthorizedError } from './errors.js';
import type { Caller, TeamService } from './team-service.js';

/** A console session as the console sees it (never its token). */
export interface ConsoleSessionInfo {
  teamId: string;
  keyId: string;
  scopes: string[];
  expiresAt: string;
}

/** A session's caller: the key it was made from, as the API's auth sees it. */
export interface SessionCaller extends Caller {
  sessionId: string;
  expiresAt: Date;
}

/**
 * The web console's sign-in sessions (table `console_sessions`). A session is made from an
 * API key, checked exactly as the API checks keys (`TeamService.authenticate`: unknown,
 * malformed, expired), and stands for that key: same team, same scopes. Every use reads
 * the key again, so a deleted key (its sessions go with it, by cascade) or an expired one
 * ends the session at once. The token is shown once, to be put in a cookie; only its
 * SHA-256 is stored.
 */
export class ConsoleSessions {
  constructor(
    private readonly db: Database,
    private readonly teams: TeamService,
  ) {}

  /** The caller `apiKey` is, checked as the API checks keys: 401 "Invalid API key" (or "API key expired") otherwise. */
  async authenticate(apiKey: string): Promise<Caller> {
    const caller = await this.teams.authenticate(apiKey);
    if (!caller) throw new UnauthorizedError('Invalid API key');
    return caller;
  }

  /** A new session for a caller `authenticate` answered: its token (to be put in the cookie) and what it stands for. */
  async open(caller: Caller): Promise<{ token: string; caller: SessionCaller; info: ConsoleSessionInfo }> {
    const [key] = await this.db
      .select({ expiresAt: apiKeys.expiresAt })
      .from(apiKeys)
      .where(eq(apiKeys.id, caller.keyId));
    if (!key) throw new UnauthorizedError('Invalid API key');
    // A session never outlives its key.
    let expiresAt = new Date(Date.now() + SESSION_LIFETIME_MS);
    if (key.expiresAt && key.expiresAt < expiresAt) expiresAt = key.expiresAt;
    const token = newSessionToken();
    const id = `cs_${randomBytes(12).toString('hex')}`;
    // Sessions past their expiry are removed as new ones come.
    await this.db.delete(consoleSessions).where(lt(consoleSessions.expiresAt, sql`now()`));
    await this.db.insert(consoleSessions).values({
      id,
      tokenHash: hashSessionToken(token),
      keyId: caller.keyId,
      teamId: caller.teamId,
      expiresAt,
    });
    const sessionCaller = { ...caller, sessionId: id, expiresAt };
    return { token, caller: sessionCaller, info: infoOf(sessionCaller) };
  }

  /**
   * The caller a session token stands for; undefined for a token no live session has
   * (unknown, signed out, past its expiry, its key deleted); 401 "API key expired" when
   * its key expired.
   */
  async resolve(token: string): Promise<SessionCaller | undefined> {
    if (!isSessionToken(token)) return undefined;
    const [row] = await this.db
      .select({
        sessionId: consoleSessions.id,
        expiresAt: consoleSessions.expiresAt,
        keyId: apiKeys.id,
        teamId: apiKeys.teamId,
        scopes: apiKeys.scopes,
        keyExpiresAt: apiKeys.expiresAt,
      })
      .from(consoleSessions)
      .innerJoin(apiKeys, eq(apiKeys.id, consoleSessions.keyId))
      .where(
        and(
          eq(consoleSessions.tokenHash, hashSessionToken(token)),
          gt(consoleSessions.expiresAt, sql`now()`),
        ),
      );
    if (!row) return undefined;
    if (row.keyExpiresAt && row.keyExpiresAt.getTime() <= Date.now())
      throw new UnauthorizedError('API key expired');
    return {
      teamId: row.teamId,
      keyId: row.keyId,
      scopes: row.scopes.filter(isScope),
      sessionId: row.sessionId,
      expiresAt: row.expiresAt,
    };
  }

  /** Ends a session (sign-out); false if there was none. */
  async close(sessionId: string): Promise<boolean> {
    const gone = await this.db
      .delete(consoleSessions)
      .where(eq(consoleSessions.id, sessionId))
      .returning({ id: consoleSessions.id });
    return gone.length > 0;
  }
}

export function infoOf(caller: SessionCaller): ConsoleSessionInfo {
  return {
    teamId: caller.teamId,
    keyId: caller.keyId,
    scopes: [...caller.scopes],
    expiresAt: caller.expiresAt.toISOString(),
  };
}
