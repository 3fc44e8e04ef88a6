import { randomBytes } from 'node:crypto';
import { chown, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type VolumeMount, volumeMountPathProblem } from '@aiva/protocol/node';
import { and, asc, eq, inArray } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/database.js';
import { sandboxes, sandboxVolumes, volumes } from '../db/schema.js';
import { ConflictError, InvalidRequestError, NotFoundError, TeamLimitError } from './errors.js';
import { LIVE_STATES } from './sandbox-states.js';
import type { Caller } from './team-service.js';
import { DEFAULT_OWNER, VolumeTree } from './volume-tree.js';

export type VolumeRow = typeof volumes.$inferSelect;

/** A team's volumes may hold this much in all, unless the server says otherwise (10 GiB). */
export const DEFAULT_VOLUME_QUOTA_BYTES = 10 * 1024 ** 3;
/** A team may have this many volumes, unless the server says otherwise. */
export const DEFAULT_MAX_VOLUMES = 100;

export interface VolumeLimits {
  /** Bytes of files a team's volumes may hold in all. */
  quotaBytes?: number;
  maxVolumesPerTeam?: number;
}

/** What a volume quota's 429 says to wait (the SDK retries a 429 only when that fits its request timeout). */
const QUOTA_RETRY_AFTER_S = 3600;

/** E2B's volume names: letters, digits, `.`, `_`, `-`, starting with a letter or digit. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const ID_PATTERN = /^vol[a-f0-9]{20}$/;

/** What a create's `volumeMounts` resolve to: the node the volumes are on, and what it mounts where. */
export interface ResolvedMounts {
  nodeId: string;
  mounts: VolumeMount[];
}

/**
 * Volumes (E2B's `/volumes`): directories on the disk of the server's own node
 * (`<home>/volumes/<id>`, `aiva up`), which sandboxes of the team mount by name and which
 * outlive them. A volume in use by a sandbox that has not ended cannot be destroyed (409
 * naming it). A team's volumes together hold at most `quotaBytes`: past it, creating a
 * volume, mounting one and writing through the content API are refused (429) — a sandbox's
 * own writes into a mounted volume are not stopped at the quota (it is measured at the
 * next mount or API write).
 */
export class VolumeService {
  private readonly quotaBytes: number;
  /** Bytes a team's volumes may hold in all. */
  get quota(): number {
    return this.quotaBytes;
  }
  private readonly maxVolumes: number;

  constructor(
    private readonly db: Database,
    private readonly options: {
      home: string;
      /** The server's own node (`aiva up`), whose disk holds volumes; none: volumes are refused. */
      localNodeId?: string;
      limits?: VolumeLimits;
      logger: Logger;
    },
  ) {
    this.quotaBytes = options.limits?.quotaBytes ?? DEFAULT_VOLUME_QUOTA_BYTES;
    this.maxVolumes = options.limits?.maxVolumesPerTeam ?? DEFAULT_MAX_VOLUMES;
  }

  /** The directory of a volume on the node's (and this server's) disk. */
  dirOf(id: string): string {
    return join(this.options.home, 'volumes', id);
  }

  /** The files of a volume, as the content API touches them. */
  tree(v: VolumeRow): VolumeTree {
    return new VolumeTree(this.dirOf(v.id));
  }

  async create(caller: Caller, name: string): Promise<VolumeRow> {
    if (typeof name !== 'string' || !NAME_PATTERN.test(name))
      throw new InvalidRequestError(
        `volume name "${name}" is not valid: 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit`,
      );
    const nodeId = this.options.localNodeId;
    if (!nodeId)
      throw new InvalidRequestError(
        'volumes live on the disk of the server’s own node (aiva up); this server has no node of its own',
      );
    const own = await this.db.select().from(volumes).where(eq(volumes.teamId, caller.teamId));
    if (own.some((v) => v.name === name)) throw new ConflictError(`a volume named "${name}" already exists`);
    if (own.length >= this.maxVolumes)
      throw new TeamLimitError(
        `the team has ${own.length} volumes, its most (${this.maxVolumes})`,
        'volumes',
      );
    await this.checkQuota(caller.teamId, 0, own);
    const row = {
      id: `vol${randomBytes(10).toString('hex')}`,
      teamId: caller.teamId,
      name,
      nodeId,
      token: randomBytes(32).toString('base64url'),
    };
    const [made] = await this.db
      .insert(volumes)
      .values(row)
      .onConflictDoNothing({ target: [volumes.teamId, volumes.name] })
      .returning();
    if (!made) throw new ConflictError(`a volume named "${name}" already exists`);
    try {
      await mkdir(join(this.options.home, 'volumes'), { recursive: true, mode: 0o711 });
      await mkdir(this.dirOf(made.id), { mode: 0o755 });
      // The sandbox's `user` owns the volume's root (its ids on disk are the sandbox's own).
      await chown(this.dirOf(made.id), DEFAULT_OWNER, DEFAULT_OWNER);
    } catch (e) {
      await this.db.delete(volumes).where(eq(volumes.id, made.id));
      await rm(this.dirOf(made.id), { recursive: true, force: true });
      throw e;
    }
    this.options.logger.info({ volume: made.id, team: caller.teamId, name }, 'volume created');
    return made;
  }

  list(caller: Caller): Promise<VolumeRow[]> {
    return this.db
      .select()
      .from(volumes)
      .where(eq(volumes.teamId, caller.teamId))
      .orderBy(asc(volumes.createdAt), asc(volumes.id));
  }

  /** The team's volume `id` (404 for another team's or none). */
  async get(caller: Caller, id: string): Promise<VolumeRow> {
    const [row] = ID_PATTERN.test(id)
      ? await this.db
          .select()
          .from(volumes)
          .where(and(eq(volumes.id, id), eq(volumes.teamId, caller.teamId)))
      : [];
    if (!row) throw new NotFoundError(`volume ${id} not found`);
    return row;
  }

  /** The volume whose content token this is (the content API's authentication). */
  async byToken(id: string, token: string): Promise<VolumeRow | undefined> {
    if (!ID_PATTERN.test(id) || token.length < 20 || token.length > 100) return undefined;
    const [row] = await this.db
      .select()
      .from(volumes)
      .where(and(eq(volumes.id, id), eq(volumes.token, token)));
    return row;
  }

  /** The live sandboxes (not ended) that mount the volume. */
  private async users(db: Database, volumeId: string): Promise<string[]> {
    const rows = await db
      .select({ id: sandboxVolumes.sandboxId })
      .from(sandboxVolumes)
      .innerJoin(sandboxes, eq(sandboxes.id, sandboxVolumes.sandboxId))
      .where(and(eq(sandboxVolumes.volumeId, volumeId), inArray(sandboxes.state, [...LIVE_STATES])));
    return [...new Set(rows.map((r) => r.id))];
  }

  /**
   * Removes the volume and its files; a 409 naming the sandboxes that mount it while any
   * has not ended. The check and the delete hold the volume's row, which a create that
   * mounts it needs too (its mount row's foreign key).
   */
  async destroy(caller: Caller, id: string): Promise<void> {
    const v = await this.get(caller, id);
    await this.db.transaction(async (tx) => {
      await tx.select({ id: volumes.id }).from(volumes).where(eq(volumes.id, v.id)).for('update');
      const users = await this.users(tx as unknown as Database, v.id);
      if (users.length > 0)
        throw new ConflictError(
          `volume ${v.name} (${v.id}) is in use by sandbox${users.length > 1 ? 'es' : ''} ${users.join(', ')}: kill ${users.length > 1 ? 'them' : 'it'} first`,
        );
      await tx.delete(volumes).where(eq(volumes.id, v.id));
    });
    await rm(this.dirOf(v.id), { recursive: true, force: true });
    this.options.logger.info({ volume: v.id, team: caller.teamId }, 'volume destroyed');
  }

  /**
   * A create's `volumeMounts` (E2B's `{name, path}`) as the node is told them: each name a
   * volume of the team (400 naming one that is not), each path absolute and distinct, all on
   * one node, and the team within its volume quota (429).
   */
  async resolveMounts(caller: Caller, requested: { name: string; path: string }[]): Promise<ResolvedMounts> {
    const nodeId = this.options.localNodeId;
    const own = await this.db.select().from(volumes).where(eq(volumes.teamId, caller.teamId));
    const mounts: VolumeMount[] = [];
    const paths = new Set<string>();
    for (const m of requested) {
      const problem = volumeMountPathProblem(m.path);
      if (problem) throw new InvalidRequestError(`volume mount path ${JSON.stringify(m.path)} ${problem}`);
      const path = `/${m.path.split('/').filter(Boolean).join('/')}`;
      if (paths.has(path)) throw new InvalidRequestError(`two volumes are mounted at ${path}`);
      paths.add(path);
      const v = own.find((r) => r.name === m.name);
      if (!v)
        throw new InvalidRequestError(`volume "${m.name}" does not exist (create it first: Volume.create)`);
      if (v.nodeId !== nodeId)
        throw new InvalidRequestError(
          `volume "${m.name}" is on node ${v.nodeId}, which this server cannot place on`,
        );
      mounts.push({ volumeId: v.id, path });
    }
    if (!nodeId) throw new InvalidRequestError('this server has no node of its own to hold volumes');
    await this.checkQuota(caller.teamId, 0, own);
    return { nodeId, mounts };
  }

  /** Records which volumes a new sandbox mounts (in the transaction that inserts its row). */
  async recordMounts(db: Database, sandboxId: string, mounts: VolumeMount[]): Promise<void> {
    if (mounts.length === 0) return;
    await db
      .insert(sandboxVolumes)
      .values(mounts.map((m) => ({ sandboxId, volumeId: m.volumeId, path: m.path })));
  }

  /** E2B's `volumeMounts` of sandboxes (`{name, path}`), by sandbox id. */
  async mountsOf(sandboxIds: string[]): Promise<Map<string, { name: string; path: string }[]>> {
    const out = new Map<string, { name: string; path: string }[]>();
    if (sandboxIds.length === 0) return out;
    const rows = await this.db
      .select({ sandboxId: sandboxVolumes.sandboxId, name: volumes.name, path: sandboxVolumes.path })
      .from(sandboxVolumes)
      .innerJoin(volumes, eq(volumes.id, sandboxVolumes.volumeId))
      .where(inArray(sandboxVolumes.sandboxId, sandboxIds));
    for (const r of rows)
      out.set(r.sandboxId, [...(out.get(r.sandboxId) ?? []), { name: r.name, path: r.path }]);
    return out;
  }

  /** Measures the volume's files now and keeps the figure in its row. */
  async measure(v: VolumeRow): Promise<number> {
    const bytes = await this.tree(v)
      .bytes()
      .catch(() => v.bytes);
    await this.db.update(volumes).set({ bytes, measuredAt: new Date() }).where(eq(volumes.id, v.id));
    return bytes;
  }

  /**
   * 429 if the team's volumes, measured now, hold `quotaBytes` or more, or would with
   * `adding` bytes more; else the bytes they may still take.
   */
  async checkQuota(teamId: string, adding: number, own?: VolumeRow[]): Promise<number> {
    const rows = own ?? (await this.db.select().from(volumes).where(eq(volumes.teamId, teamId)));
    let used = 0;
    for (const v of rows) used += await this.measure(v);
    if (used >= this.quotaBytes || used + adding > this.quotaBytes) throw this.pastQuota(used, adding);
    return this.quotaBytes - used;
  }

  /** The 429 of a team whose volumes hold `used` bytes when `adding` more were sent. */
  pastQuota(used: number, adding = 0): TeamLimitError {
    return new TeamLimitError(
      `the team's volumes hold ${used} bytes${adding ? ` and ${adding} more were sent` : ''}: past its volume quota of ${this.quotaBytes} bytes (remove files to free it)`,
      'volumes',
      // Freed by removing files, not by waiting: a client should not retry soon.
      QUOTA_RETRY_AFTER_S,
    );
  }
}
