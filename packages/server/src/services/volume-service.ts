import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  DEFAULT_VOLUME_SIZE_MIB,
  MAX_VOLUME_SIZE_MIB,
  MIN_VOLUME_SIZE_MIB,
  type VolumeDiskStore,
} from '@aiva/node';
import { type VolumeMount, volumeMountPathProblem } from '@aiva/protocol/node';
import { and, asc, eq, inArray } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/database.js';
import { sandboxes, sandboxVolumes, volumes } from '../db/schema.js';
import {
  ConflictError,
  InvalidRequestError,
  NotFoundError,
  OperationFailedError,
  TeamLimitError,
} from './errors.js';
import { LIVE_STATES } from './sandbox-states.js';
import type { Caller } from './team-service.js';
import { VolumeTree } from './volume-tree.js';

export type VolumeRow = typeof volumes.$inferSelect;

/** A team's volumes' sizes may add up to this much, unless the server says otherwise (10 GiB). */
export const DEFAULT_VOLUME_QUOTA_BYTES = 10 * 1024 ** 3;
/** A team may have this many volumes, unless the server says otherwise. */
export const DEFAULT_MAX_VOLUMES = 100;

export interface VolumeLimits {
  /** Bytes a team's volumes' sizes may add up to. */
  quotaBytes?: number;
  maxVolumesPerTeam?: number;
  /** A volume's size when its create gives none (default 1024 MiB). */
  defaultSizeMiB?: number;
}

const MIB = 1024 * 1024;

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
 * Volumes (E2B's `/volumes`): ext4 images of a fixed size on the disk of the server's own
 * node (`aiva up`), which its node keeps mounted at `<home>/volumes/<id>` (`VolumeDisks`,
 * the `disks` given), which sandboxes of the team mount by name and which outlive them.
 * What is written into a volume, by a sandbox or the content API, is bounded by its size
 * (ENOSPC when full). A volume in use by a sandbox that has not ended cannot be destroyed
 * (409 naming it). A team's volumes' sizes add up to at most `quotaBytes`: a create that
 * would pass it is refused (429) and makes nothing, so the host's disk gives a team at
 * most its quota.
 */
export class VolumeService {
  private readonly quotaBytes: number;
  /** Bytes a team's volumes may hold in all. */
  get quota(): number {
    return this.quotaBytes;
  }
  private readonly maxVolumes: number;
  private readonly defaultSizeMiB: number;
  /** Each team's creates, one after another: the quota is checked and taken as one step. */
  private readonly creating = new Map<string, Promise<unknown>>();

  constructor(
    private readonly db: Database,
    private readonly options: {
      home: string;
      /** The server's own node (`aiva up`), whose disk holds volumes; none: volumes are refused. */
      localNodeId?: string;
      /** That node's volume images (in this process). */
      disks?: VolumeDiskStore;
      limits?: VolumeLimits;
      logger: Logger;
    },
  ) {
    this.quotaBytes = options.limits?.quotaBytes ?? DEFAULT_VOLUME_QUOTA_BYTES;
    this.maxVolumes = options.limits?.maxVolumesPerTeam ?? DEFAULT_MAX_VOLUMES;
    this.defaultSizeMiB = options.limits?.defaultSizeMiB ?? DEFAULT_VOLUME_SIZE_MIB;
  }

  /** The directory of a volume on the node's (and this server's) disk. */
  dirOf(id: string): string {
    return join(this.options.home, 'volumes', id);
  }

  /** The files of a volume, as the content API touches them. */
  tree(v: VolumeRow): VolumeTree {
    return new VolumeTree(this.dirOf(v.id));
  }

  /** Makes a volume of `sizeMiB` (default: the server's) named `name`, mounted on the node. */
  async create(caller: Caller, name: string, sizeMiB?: number): Promise<VolumeRow> {
    if (typeof name !== 'string' || !NAME_PATTERN.test(name))
      throw new InvalidRequestError(
        `volume name "${name}" is not valid: 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit`,
      );
    const size = sizeMiB ?? this.defaultSizeMiB;
    if (!Number.isInteger(size) || size < MIN_VOLUME_SIZE_MIB || size > MAX_VOLUME_SIZE_MIB)
      throw new InvalidRequestError(
        `volume size ${size} MiB is not valid: a whole number of MiB from ${MIN_VOLUME_SIZE_MIB} to ${MAX_VOLUME_SIZE_MIB}`,
      );
    const nodeId = this.options.localNodeId;
    const disks = this.options.disks;
    if (!nodeId || !disks)
      throw new InvalidRequestError(
        'volumes live on the disk of the server’s own node (aiva up); this server has no node of its own',
      );
    const before = this.creating.get(caller.teamId);
    const made = (async () => {
      await before?.catch(() => {});
      return this.createNow(caller, name, size, nodeId, disks);
    })();
    this.creating.set(caller.teamId, made);
    try {
      return await made;
    } finally {
      if (this.creating.get(caller.teamId) === made) this.creating.delete(caller.teamId);
    }
  }

  private async createNow(
    caller: Caller,
    name: string,
    sizeMiB: number,
    nodeId: string,
    disks: VolumeDiskStore,
  ): Promise<VolumeRow> {
    const own = await this.db.select().from(volumes).where(eq(volumes.teamId, caller.teamId));
    if (own.some((v) => v.name === name)) throw new ConflictError(`a volume named "${name}" already exists`);
    if (own.length >= this.maxVolumes)
      throw new TeamLimitError(
        `the team has ${own.length} volumes, its most (${this.maxVolumes})`,
        'volumes',
      );
    const used = await this.sizesOf(own);
    if (used + sizeMiB * MIB > this.quotaBytes)
      throw new TeamLimitError(
        `the team's volumes take ${used / MIB} MiB and a volume of ${sizeMiB} MiB would pass its volume quota of ${this.quotaBytes / MIB} MiB (destroy a volume, or ask for a smaller one)`,
        'volumes',
        // Freed by destroying volumes, not by waiting: a client should not retry soon.
        QUOTA_RETRY_AFTER_S,
      );
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
      await disks.create(made.id, sizeMiB);
    } catch (e) {
      await this.db.delete(volumes).where(eq(volumes.id, made.id));
      throw new OperationFailedError(`volume ${name} could not be made`, e);
    }
    this.options.logger.info({ volume: made.id, team: caller.teamId, name, sizeMiB }, 'volume created');
    return made;
  }

  /** Bytes the volumes take on the node's disk at most: their images' sizes. */
  private async sizesOf(rows: VolumeRow[]): Promise<number> {
    let bytes = 0;
    // A volume whose image is missing (its node failed to make or convert it) counts as the default.
    for (const v of rows) bytes += (await this.options.disks?.sizeOf(v.id)) ?? this.defaultSizeMiB * MIB;
    return bytes;
  }

  /** The size of a volume, in bytes (undefined: its image is missing). */
  sizeOf(v: VolumeRow): Promise<number | undefined> {
    return this.options.disks?.sizeOf(v.id) ?? Promise.resolve(undefined);
  }

  /**
   * The volume's files, as the content API touches them: only through its mounted image
   * (a 500 saying so if its node did not mount it), so that its size bounds what is written;
   * a 409 while a microVM holds it as its disk.
   */
  async mountedTree(v: VolumeRow): Promise<VolumeTree> {
    const holder = this.options.disks?.holderOf(v.id);
    if (holder)
      throw new ConflictError(
        `volume ${v.name} (${v.id}) is attached to microVM sandbox ${holder}, which holds it alone until it ends: reach its files through that sandbox meanwhile`,
      );
    if (!(await this.options.disks?.isMounted(v.id)))
      throw new OperationFailedError(
        `volume ${v.name} (${v.id}) cannot be reached`,
        new Error('its image is not mounted on its node (see the node’s log)'),
      );
    return this.tree(v);
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
   * Removes the volume and its image; a 409 naming the sandboxes that mount it while any
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
      // Its image goes first: one that cannot be unmounted (busy) keeps the volume as it was.
      await this.options.disks?.remove(v.id).catch((e: unknown) => {
        throw new OperationFailedError(`volume ${v.name} (${v.id}) could not be removed from its node`, e);
      });
      await tx.delete(volumes).where(eq(volumes.id, v.id));
    });
    this.options.logger.info({ volume: v.id, team: caller.teamId }, 'volume destroyed');
  }

  /**
   * A create's `volumeMounts` (E2B's `{name, path}`) as the node is told them: each name a
   * volume of the team (400 naming one that is not), each path absolute and distinct, all on
   * one node. (No quota here: a volume's size bounds what a sandbox writes into it.)
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
}
