import { createHash, randomBytes } from 'node:crypto';
import { and, asc, eq, isNull, or, sql } from 'drizzle-orm';
import type { Database } from '../db/database.js';
import { nodeTokens } from '../db/schema.js';
import { InvalidRequestError } from './errors.js';
import type { Caller } from './team-service.js';

/** Join tokens look like `aiva_join_` and 64 lower-case hex digits (32 random bytes). */
export const NODE_TOKEN_PATTERN = /^aiva_join_[0-9a-f]{64}$/;

/** The longest a token may live: ten years. */
export const MAX_TOKEN_SECONDS = 10 * 365 * 24 * 3600;

/** A token's state now: `active` lets a node join; `expired` and `revoked` do not. */
export type NodeTokenState = 'active' | 'expired' | 'revoked';

/** A join token as listed: everything but the secret. */
export interface NodeTokenInfo {
  id: string;
  name: string;
  /** The first characters of the token, to tell tokens apart. */
  prefix: string;
  state: NodeTokenState;
  createdByTeam: string | null;
  createdByKey: string | null;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

/** Why a token was refused, for the join route's log: not the node's business. */
export type NodeTokenRefusal = 'malformed' | 'unknown' | 'revoked' | 'expired';

export type NodeTokenCheck =
  | { ok: true; token: NodeTokenInfo }
  | { ok: false; reason: NodeTokenRefusal; tokenId?: string };

/** What is stored instead of a token: its SHA-256, in hex. */
export function hashNodeToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * The tokens nodes join the cluster with (`aiva node token create`). A token is shown
 * once, when made; the database keeps its SHA-256 only. Revoking keeps the row (so a
 * node that tries a revoked token is logged as such), and hides it from the listing.
 */
export class NodeTokenService {
  constructor(private readonly db: Database) {}

  /** A new token (its plaintext is in this result only) that expires after `expiresInSeconds`, or never. */
  async create(options: {
    name?: string;
    expiresInSeconds?: number;
    createdBy?: Caller;
  }): Promise<{ token: string; info: NodeTokenInfo }> {
    const { expiresInSeconds } = options;
    if (
      expiresInSeconds !== undefined &&
      !(Number.isInteger(expiresInSeconds) && expiresInSeconds > 0 && expiresInSeconds <= MAX_TOKEN_SECONDS)
    )
      throw new InvalidRequestError(
        `a token's lifetime must be 1 s to ${MAX_TOKEN_SECONDS} s, not ${expiresInSeconds}`,
      );
    const token = `aiva_join_${randomBytes(32).toString('hex')}`;
    const [row] = await this.db
      .insert(nodeTokens)
      .values({
        id: `nt_${randomBytes(8).toString('hex')}`,
        name: options.name ?? '',
        tokenHash: hashNodeToken(token),
        tokenPrefix: `${token.slice(0, 14)}…`,
        createdByTeam: options.createdBy?.teamId ?? null,
        createdByKey: options.createdBy?.keyId ?? null,
        expiresAt:
          expiresInSeconds === undefined ? null : sql`now() + make_interval(secs => ${expiresInSeconds})`,
      })
      .returning();
    if (!row) throw new Error('the token was not stored');
    return { token, info: toInfo(row, new Date()) };
  }

  /** The tokens, oldest first, without their secrets: active and expired ones, and with `revoked` the revoked ones too. */
  async list(options: { revoked?: boolean } = {}): Promise<NodeTokenInfo[]> {
    const rows = await this.db
      .select()
      .from(nodeTokens)
      .where(options.revoked ? undefined : isNull(nodeTokens.revokedAt))
      .orderBy(asc(nodeTokens.createdAt), asc(nodeTokens.id));
    const now = new Date();
    return rows.map((r) => toInfo(r, now));
  }

  /** Revokes a token: no node joins with it after this. False if there is no such token, or it is revoked already. */
  async revoke(id: string): Promise<boolean> {
    const rows = await this.db
      .update(nodeTokens)
      .set({ revokedAt: sql`now()` })
      .where(and(eq(nodeTokens.id, id), isNull(nodeTokens.revokedAt)))
      .returning({ id: nodeTokens.id });
    return rows.length > 0;
  }

  /**
   * Whether `token` lets a node join now, and if not why: unknown, revoked or expired (by
   * the database's clock, the same for every replica). An accepted token's last use is set.
   */
  async check(token: string): Promise<NodeTokenCheck> {
    if (!NODE_TOKEN_PATTERN.test(token)) return { ok: false, reason: 'malformed' };
    const digest = hashNodeToken(token);
    const [used] = await this.db
      .update(nodeTokens)
      .set({ lastUsedAt: sql`now()` })
      .where(
        and(
          eq(nodeTokens.tokenHash, digest),
          isNull(nodeTokens.revokedAt),
          or(isNull(nodeTokens.expiresAt), sql`${nodeTokens.expiresAt} > now()`),
        ),
      )
      .returning();
    if (used) return { ok: true, token: toInfo(used, new Date()) };
    const [row] = await this.db.select().from(nodeTokens).where(eq(nodeTokens.tokenHash, digest)).limit(1);
    if (!row) return { ok: false, reason: 'unknown' };
    return { ok: false, reason: row.revokedAt ? 'revoked' : 'expired', tokenId: row.id };
  }

  /** The token's record if it lets a node join now (see `check`), else undefined. */
  async verify(token: string): Promise<NodeTokenInfo | undefined> {
    const checked = await this.check(token);
    return checked.ok ? checked.token : undefined;
  }
}

function toInfo(row: typeof nodeTokens.$inferSelect, now: Date): NodeTokenInfo {
  const state: NodeTokenState = row.revokedAt
    ? 'revoked'
    : row.expiresAt && row.expiresAt <= now
      ? 'expired'
      : 'active';
  return {
    id: row.id,
    name: row.name,
    prefix: row.tokenPrefix,
    state,
    createdByTeam: row.createdByTeam,
    createdByKey: row.createdByKey,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt?.toISOString() ?? null,
    revokedAt: row.revokedAt?.toISOString() ?? null,
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
  };
}
