import { randomBytes } from 'node:crypto';
import { and, asc, eq, sql } from 'drizzle-orm';
import { API_KEY_PATTERN, apiKeyPrefix, hashApiKey, newApiKey } from '../auth/api-keys.js';
import type { Database } from '../db/database.js';
import { apiKeys, teams } from '../db/schema.js';
import { ConflictError, ForbiddenError, InvalidRequestError, NotFoundError } from './errors.js';
import { quotaColumns, quotaOf, type TeamQuota } from './team-quotas.js';

export interface Caller {
  teamId: string;
  keyId: string;
}

export interface ApiKeyInfo {
  id: string;
  name: string;
  prefix: string;
  teamId: string;
  createdAt: string;
  lastUsedAt: string | null;
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

/** Teams and their API keys. Keys are kept as SHA-256 digests and shown once, when created. */
export class TeamService {
  private cache = new Map<string, { caller: Caller; until: number }>();

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
    const { key } = await this.createKey(teamId, 'admin');
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
    const { key } = await this.createKey(teamId, 'admin');
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
    const [team] = await this.db.select().from(teams).where(eq(teams.id, caller.teamId)).limit(1);
    if (!team?.operator) throw new ForbiddenError(`only the operator team (made on first start) may ${what}`);
  }

  async createKey(teamId: string, name: string): Promise<{ key: string; info: ApiKeyInfo }> {
    const key = newApiKey();
    const id = newId('key');
    const [row] = await this.db
      .insert(apiKeys)
      .values({ id, teamId, name, keyHash: hashApiKey(key), keyPrefix: apiKeyPrefix(key) })
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

  /** The team a key belongs to, or undefined. The key is looked up by its digest. */
  async authenticate(key: string | undefined): Promise<Caller | undefined> {
    if (!key || !API_KEY_PATTERN.test(key)) return undefined;
    const digest = hashApiKey(key);
    const cached = this.cache.get(digest);
    if (cached && cached.until > Date.now()) return cached.caller;
    const [row] = await this.db.select().from(apiKeys).where(eq(apiKeys.keyHash, digest)).limit(1);
    if (!row) return undefined;
    const caller = { teamId: row.teamId, keyId: row.id };
    this.cache.set(digest, { caller, until: Date.now() + CACHE_MS });
    await this.db.update(apiKeys).set({ lastUsedAt: sql`now()` }).where(eq(apiKeys.id, row.id));
    return caller;
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
  };
}
