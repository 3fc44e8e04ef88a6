import { randomBytes } from 'node:crypto';
import { and, asc, eq, sql } from 'drizzle-orm';
import { API_KEY_PATTERN, apiKeyPrefix, hashApiKey, newApiKey } from '../auth/api-keys.js';
import { isScope, mayGrant, type Scope } from '../auth/scopes.js';
import type { Database } from '../db/database.js';
import { apiKeys, teams } from '../db/schema.js';
import {
  ConflictError,
  ForbiddenError,
  InvalidRequestError,
  NotFoundError,
  UnauthorizedError,
} from './errors.js';
import { quotaColumns, quotaOf, type TeamQuota } from './team-quotas.js';

export interface Caller {
  teamId: string;
  keyId: string;
  /** What the key may do (`auth/scopes.ts`); empty: everything its team may. */
  scopes: readonly Scope[];
}

/** A new key's name, scopes (none: full access) and lifetime (none: never expires). */
export interface NewKey {
  name: string;
  scopes?: Scope[];
  expiresInSeconds?: number;
}

export interface ApiKeyInfo {
  id: string;
  name: string;
  prefix: string;
  teamId: string;
  createdAt: string;
  lastUsedAt: string | null;
  expiresAt: string | null;
  scopes: Scope[];
}

/** A team as the API shows it. */
export interface TeamInfo {
  id: string;
  name: string;
  operator: boolean;
  createdAt: string;
  quota: TeamQuota;
}

const newId = (prefix: string) => `${prefix}_${randomBytes(8).toString('hex')}`;

/** How long a verified key is trusted without asking the database again. */
const CACHE_MS = 30_000;
/** A key's `lastUsedAt` is written at most this often (per key, per server process). */
const LAST_USED_MS = 60_000;

/** Teams and their API keys. Keys are kept as SHA-256 digests and shown once, when created. */
export class TeamService {
  private cache = new Map<string, { caller: Caller; until: number; expiresAt: number | null }>();
  /** When each key's `lastUsedAt` was last written by this process. */
  private lastUsedWritten = new Map<string, number>();

  constructor(private readonly db: Database) {}

  /** The team made on first start, if the server has started once. */
  async firstTeam(): Promise<string | undefined> {
    const [first] = await this.db.select().from(teams).orderBy(asc(teams.createdAt)).limit(1);
    return first?.id;
  }

  /** On first start: a team named `default` and its first key (returned only then). */
  async ensureFirstTeam(): Promise<{ teamId: string; apiKey?: string }> {
    const existing = await this.firstTeam();
    if (existing) return { teamId: existing };
    const teamId = newId('team');
    await this.db.insert(teams).values({ id: teamId, name: 'default', operator: true });
    const { key } = await this.createKey(teamId, { name: 'admin' });
    return { teamId, apiKey: key };
  }

  /** A new team with `quota` and its first key (shown once). Only the operator team may make teams. */
  async createTeam(
    caller: Caller,
    name: string,
    quota: Partial<TeamQuota> = {},
  ): Promise<{ teamId: string; key: string; team: TeamInfo }> {
    await this.requireOperator(caller, 'create teams');
    const teamId = newId('team');
    const [row] = await this.db
      .insert(teams)
      .values({ id: teamId, name, ...quotaColumns(quota) })
      .returning();
    if (!row) throw new Error('the team was not stored');
    const { key } = await this.createKey(teamId, { name: 'admin' });
    return { teamId, key, team: teamInfo(row) };
  }

  /** Every team for the operator team's keys; the caller's own for others'. */
  async listTeams(caller: Caller): Promise<TeamInfo[]> {
    const [own] = await this.db.select().from(teams).where(eq(teams.id, caller.teamId)).limit(1);
    if (!own) return [];
    if (!own.operator) return [teamInfo(own)];
    return (await this.db.select().from(teams).orderBy(asc(teams.createdAt))).map(teamInfo);
  }

  /** Renames a team and/or sets its quotas (null clears one). Only the operator team may. */
  async updateTeam(
    caller: Caller,
    id: string,
    change: { name?: string; quota?: Partial<TeamQuota> },
  ): Promise<TeamInfo> {
    await this.requireOperator(caller, 'change teams and their quotas');
    const set = {
      ...quotaColumns(change.quota ?? {}),
      ...(change.name !== undefined ? { name: change.name } : {}),
    };
    if (Object.keys(set).length === 0)
      throw new InvalidRequestError('nothing to change: give a name or quota fields');
    const [row] = await this.db.update(teams).set(set).where(eq(teams.id, id)).returning();
    if (!row) throw new NotFoundError(`team ${id} not found`);
    return teamInfo(row);
  }

  /** Refuses (ForbiddenError) a caller not of the operator team, saying it may not `what`. */
  async requireOperator(caller: Caller, what: string): Promise<void> {
    if (!(await this.isOperator(caller)))
      throw new ForbiddenError(`only the operator team (made on first start) may ${what}`);
  }

  /** Whether the caller's key is of the operator team. */
  async isOperator(caller: Caller): Promise<boolean> {
    const [team] = await this.db.select().from(teams).where(eq(teams.id, caller.teamId)).limit(1);
    return team?.operator === true;
  }

  /**
   * A new key of the team (the key is in the answer only). Made by `by`, a key with scopes
   * may only make keys with some of its own (ForbiddenError otherwise): no key widens itself.
   */
  async createKey(teamId: string, spec: NewKey, by?: Caller): Promise<{ key: string; info: ApiKeyInfo }> {
    const scopes = [...new Set(spec.scopes ?? [])];
    if (by && !mayGrant(by.scopes, scopes))
      throw new ForbiddenError(
        `this key (scopes ${by.scopes.join(', ')}) may only create keys with some of its own scopes, not ${scopes.length ? scopes.join(', ') : 'full access (no scopes)'}`,
      );
    const key = newApiKey();
    const id = newId('key');
    const expiresAt =
      spec.expiresInSeconds === undefined ? null : new Date(Date.now() + spec.expiresInSeconds * 1000);
    const [row] = await this.db
      .insert(apiKeys)
      .values({
        id,
        teamId,
        name: spec.name,
        keyHash: hashApiKey(key),
        keyPrefix: apiKeyPrefix(key),
        scopes,
        expiresAt,
      })
      .returning();
    if (!row) throw new Error('the key was not stored');
    return { key, info: toInfo(row) };
  }

  async listKeys(teamId: string): Promise<ApiKeyInfo[]> {
    const rows = await this.db
      .select()
      .from(apiKeys)
      .where(eq(apiKeys.teamId, teamId))
      .orderBy(asc(apiKeys.createdAt));
    return rows.map(toInfo);
  }

  /** Removes a key of the team; false if there is none with that id. Refuses the team's last key. */
  async removeKey(teamId: string, id: string): Promise<boolean> {
    const keys = await this.listKeys(teamId);
    if (!keys.some((k) => k.id === id)) return false;
    if (keys.length === 1) throw new ConflictError('this is the team’s last API key: create another first');
    await this.db.delete(apiKeys).where(and(eq(apiKeys.teamId, teamId), eq(apiKeys.id, id)));
    this.cache.clear();
    return true;
  }

  /**
   * The team and scopes of a key, or undefined if there is no such key. The key is looked
   * up by its digest. An expired key is refused: UnauthorizedError "API key expired".
   */
  async authenticate(key: string | undefined): Promise<Caller | undefined> {
    if (!key || !API_KEY_PATTERN.test(key)) return undefined;
    const digest = hashApiKey(key);
    let entry = this.cache.get(digest);
    if (!entry || entry.until <= Date.now()) {
      const [row] = await this.db.select().from(apiKeys).where(eq(apiKeys.keyHash, digest)).limit(1);
      if (!row) return undefined;
      const scopes = row.scopes.filter(isScope);
      entry = {
        caller: { teamId: row.teamId, keyId: row.id, scopes },
        until: Date.now() + CACHE_MS,
        expiresAt: row.expiresAt?.getTime() ?? null,
      };
      this.cache.set(digest, entry);
    }
    if (entry.expiresAt !== null && entry.expiresAt <= Date.now())
      throw new UnauthorizedError('API key expired');
    this.noteUse(entry.caller.keyId);
    return entry.caller;
  }

  /** Writes the key's `lastUsedAt` if this process has not in the last minute; never waited for. */
  private noteUse(keyId: string): void {
    const now = Date.now();
    if ((this.lastUsedWritten.get(keyId) ?? 0) > now - LAST_USED_MS) return;
    this.lastUsedWritten.set(keyId, now);
    this.db
      .update(apiKeys)
      .set({ lastUsedAt: sql`now()` })
      .where(eq(apiKeys.id, keyId))
      .catch(() => this.lastUsedWritten.delete(keyId));
  }
}

function teamInfo(row: typeof teams.$inferSelect): TeamInfo {
  return {
    id: row.id,
    name: row.name,
    operator: row.operator,
    createdAt: row.createdAt.toISOString(),
    quota: quotaOf(row),
  };
}

function toInfo(row: typeof apiKeys.$inferSelect): ApiKeyInfo {
  return {
    id: row.id,
    name: row.name,
    prefix: row.keyPrefix,
    teamId: row.teamId,
    createdAt: row.createdAt.toISOString(),
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
    expiresAt: row.expiresAt?.toISOString() ?? null,
    scopes: row.scopes.filter(isScope),
  };
}
