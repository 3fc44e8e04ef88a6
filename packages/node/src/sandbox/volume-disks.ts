import { mkdir, open, readdir, realpath, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { VOLUME_ID_PATTERN } from '@aiva/protocol/node';
import { type Logger, pino } from 'pino';
import { runCommand } from '../host/command.js';
import { mountedUnder, unmountAll } from '../host/mounts.js';

/** A volume's size unless its create says otherwise (`aiva up --volume-size`). */
export const DEFAULT_VOLUME_SIZE_MIB = 1024;
/** The smallest volume: ext4's own metadata and journal need a few MiB. */
export const MIN_VOLUME_SIZE_MIB = 8;
/** The largest volume one create may ask for (16 TiB, ext4's limit with 4 KiB blocks). */
export const MAX_VOLUME_SIZE_MIB = 16 * 1024 * 1024;
/** The sandbox's `user` (uid and gid 1000) owns a new volume's root. */
const VOLUME_ROOT_OWNER = '1000:1000';

const ID = new RegExp(VOLUME_ID_PATTERN);
const IMAGE = /^(vol[a-f0-9]{20})\.ext4$/;
/** What a conversion leaves when it is cut short: an image being made, a directory being replaced. */
const UNFINISHED = /^(vol[a-f0-9]{20})\.(converting|old)$/;

/** What the server asks of the node's volume images (the node of `aiva up`, in its process). */
export interface VolumeDiskStore {
  /** Makes volume `id`'s image of `sizeMiB` and mounts it at its directory. */
  create(id: string, sizeMiB: number, signal?: AbortSignal): Promise<void>;
  /** Unmounts volume `id` and removes its image and directory (nothing there: nothing done). */
  remove(id: string): Promise<void>;
  /** The size of volume `id`'s image in bytes (undefined: it has none). */
  sizeOf(id: string): Promise<number | undefined>;
  /** Whether volume `id`'s image is mounted at its directory (so writes there are bounded by it). */
  isMounted(id: string): Promise<boolean>;
  /** The microVM sandbox that holds volume `id` alone (its image is its disk, not mounted here), if any. */
  holderOf(id: string): string | undefined;
}

/**
 * The volumes of this node, each an ext4 image of a fixed size, `<home>/volumes/<id>.ext4`
 * (sparse: it takes on the host's disk only what has been written), loop-mounted at the
 * volume's directory `<home>/volumes/<id>` (nodev, nosuid) while the node runs. Sandboxes
 * bind that directory and the content API writes through it, so a volume that is full
 * is ENOSPC for whoever writes and the host's disk gives a volume at most its size.
 *
 * With a journal, unlike a sandbox's disk: a volume outlives its sandboxes and the node,
 * and must survive the host going down. Nothing reserved for root (`-m 0`), no
 * `lost+found` (an E2B volume starts empty; `e2fsck` makes one again when it needs it).
 * `-o loop` gives the loop device autoclear: the last unmount frees it.
 *
 * A node that opens mounts every image that is not mounted (`adopt`: after a restart, a
 * crash or a reboot; one a node killed left mounted is kept as it is), and converts each
 * volume that is still a plain directory (made before volumes were images) into an image
 * of the default size, or larger if its files need more. A node that closes unmounts the
 * volumes no remaining sandbox mounts.
 *
 * A microVM does not share: it holds a volume alone (`hold`), from its create to its end,
 * with the image unmounted from the host and attached as the guest's own disk (one ext4
 * mounted by two kernels at once would be corrupted); `letGo` mounts it again.
 */
export class VolumeDisks implements VolumeDiskStore {
  readonly dir: string;
  private readonly log: Logger;
  /** Volume id → the microVM sandbox holding it. */
  private readonly holders = new Map<string, string>();

  constructor(
    home: string,
    private readonly options: { defaultSizeMiB?: number; logger?: Logger } = {},
  ) {
    this.dir = join(home, 'volumes');
    this.log = options.logger ?? pino({ level: 'silent' });
  }

  get defaultSizeMiB(): number {
    return this.options.defaultSizeMiB ?? DEFAULT_VOLUME_SIZE_MIB;
  }

  /** Where volume `id` is mounted: the directory sandboxes bind. */
  mountPointOf(id: string): string {
    return join(this.dir, VolumeDisks.checkId(id));
  }

  /** Volume `id`'s image file. */
  imageOf(id: string): string {
    return join(this.dir, `${VolumeDisks.checkId(id)}.ext4`);
  }

  private static checkId(id: string): string {
    if (!ID.test(id)) throw new Error(`"${id}" is not a volume id`);
    return id;
  }

  async create(id: string, sizeMiB: number, signal?: AbortSignal): Promise<void> {
    if (!Number.isInteger(sizeMiB) || sizeMiB < MIN_VOLUME_SIZE_MIB || sizeMiB > MAX_VOLUME_SIZE_MIB)
      throw new Error(
        `a volume's size is a whole number of MiB from ${MIN_VOLUME_SIZE_MIB} to ${MAX_VOLUME_SIZE_MIB}, not ${sizeMiB}`,
      );
    const image = this.imageOf(id);
    await mkdir(this.dir, { recursive: true, mode: 0o711 });
    const file = await open(image, 'wx', 0o600);
    try {
      try {
        await file.truncate(sizeMiB * 1024 * 1024);
      } finally {
        await file.close();
      }
      await runCommand(
        'mkfs.ext4',
        [
          '-F',
          '-q',
          '-m',
          '0',
          '-E',
          `lazy_itable_init=1,nodiscard,root_owner=${VOLUME_ROOT_OWNER}`,
          '-L',
          'aiva-volume',
          image,
        ],
        { signal },
      );
      await this.mount(id, signal);
      await rmdir(join(this.mountPointOf(id), 'lost+found'));
    } catch (e) {
      await this.remove(id).catch((re: Error) => this.log.error({ volume: id, err: re }, 'cleanup failed'));
      throw e;
    }
  }

  /** The mount point as the mount table names it: a data directory reached through a symlink is resolved. */
  private realMountPoint(id: string): Promise<string> {
    return realpath(this.mountPointOf(id)).catch(() => this.mountPointOf(id));
  }

  async isMounted(id: string): Promise<boolean> {
    const at = await this.realMountPoint(id);
    return (await mountedUnder(at)).includes(at);
  }

  /** Mounts volume `id`'s image at its directory, unless it is mounted there already. */
  async mount(id: string, signal?: AbortSignal): Promise<void> {
    if (await this.isMounted(id)) return;
    const at = this.mountPointOf(id);
    await mkdir(at, { recursive: true, mode: 0o755 });
    await runCommand('mount', ['-t', 'ext4', '-o', 'loop,nodev,nosuid', this.imageOf(id), at], { signal });
  }

  holderOf(id: string): string | undefined {
    return this.holders.get(id);
  }

  /**
   * Gives volume `id` to sandbox `sandboxId` alone: unmounted from the host (a volume in
   * use there, by the content API or a process, is refused as busy) and marked held, so
   * that nothing mounts it again until `letGo`.
   */
  async hold(id: string, sandboxId: string): Promise<void> {
    const holder = this.holders.get(id);
    if (holder && holder !== sandboxId) throw new Error(`volume ${id} is held by sandbox ${holder}`);
    this.holders.set(id, sandboxId);
    try {
      await unmountAll(await this.realMountPoint(id));
    } catch (e) {
      this.holders.delete(id);
      // Unmounting may have failed half-way: the volume stays usable on the host.
      await this.mount(id).catch(() => {});
      throw new Error(`volume ${id} is in use on the host: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Sandbox `sandboxId` no longer holds volume `id` (it ended): mounted on the host again. Nothing held by it: nothing done. */
  async letGo(id: string, sandboxId: string): Promise<void> {
    if (this.holders.get(id) !== sandboxId) return;
    this.holders.delete(id);
    await this.mount(id);
  }

  async remove(id: string): Promise<void> {
    const holder = this.holders.get(id);
    if (holder) throw new Error(`volume ${id} is held by sandbox ${holder}`);
    await unmountAll(await this.realMountPoint(id));
    await rm(this.imageOf(id), { force: true });
    await rm(this.mountPointOf(id), { recursive: true, force: true });
  }

  async sizeOf(id: string): Promise<number | undefined> {
    return (await stat(this.imageOf(id)).catch(() => undefined))?.size;
  }

  /**
   * At the node's start: finishes or undoes what a conversion cut short, converts plain
   * directories into images, and mounts every image not mounted but those `held` (volume
   * id → the microVM sandbox whose disk it is, from the records). A volume that cannot be
   * mounted is logged and left unmounted (sandboxes and the content API then refuse it).
   */
  async adopt(
    held: Map<string, string> = new Map(),
    signal?: AbortSignal,
  ): Promise<{ mounted: string[]; converted: string[] }> {
    for (const [id, sandbox] of held) this.holders.set(id, sandbox);
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const images = new Set(names.flatMap((n) => IMAGE.exec(n)?.[1] ?? []));
    const out = { mounted: [] as string[], converted: [] as string[] };
    for (const n of names) {
      const m = UNFINISHED.exec(n);
      if (!m) continue;
      const id = m[1] as string;
      if (m[2] === 'converting' || images.has(id))
        await rm(join(this.dir, n), { recursive: true, force: true });
      // The directory was moved aside before its image was made: it is still the volume.
      else await rename(join(this.dir, n), this.mountPointOf(id));
    }
    for (const n of await readdir(this.dir).catch(() => [] as string[])) {
      if (!ID.test(n) || images.has(n)) continue;
      if (!(await stat(join(this.dir, n))).isDirectory()) continue;
      try {
        await this.convert(n, signal);
        await this.mount(n, signal);
        // mkfs.ext4 -d makes one; the directory had none.
        await rmdir(join(this.mountPointOf(n), 'lost+found')).catch(() => {});
        images.add(n);
        out.converted.push(n);
      } catch (e) {
        this.log.error({ volume: n, err: e }, 'converting a volume directory into an image failed');
      }
    }
    for (const id of images) {
      try {
        // A microVM that outlived the node has it as its disk.
        if (this.holders.has(id) || (await this.isMounted(id))) continue;
        await this.mount(id, signal);
        out.mounted.push(id);
      } catch (e) {
        this.log.error({ volume: id, err: e }, 'mounting a volume failed');
      }
    }
    return out;
  }

  /**
   * Makes a volume that is a plain directory an image holding its files (owners, modes,
   * links and extended attributes kept: `mkfs.ext4 -d`), of the default size or, if its
   * files need more, their size and a quarter more (and 8 MiB for ext4's own). The image is made aside and renamed
   * into place: a node killed meanwhile leaves the directory as it was.
   */
  private async convert(id: string, signal?: AbortSignal): Promise<void> {
    const at = this.mountPointOf(id);
    const { stdout } = await runCommand('du', ['-s', '-B1', '--apparent-size', at], { signal });
    const bytes = Number(stdout.split('\t')[0]);
    // A quarter more than its files, and room for ext4's own metadata and journal.
    const sizeMiB = Math.max(this.defaultSizeMiB, Math.ceil((bytes * 1.25) / 1024 / 1024) + 8);
    const making = join(this.dir, `${id}.converting`);
    await rm(making, { force: true });
    const file = await open(making, 'wx', 0o600);
    try {
      await file.truncate(sizeMiB * 1024 * 1024);
    } finally {
      await file.close();
    }
    await runCommand(
      'mkfs.ext4',
      ['-F', '-q', '-m', '0', '-E', 'lazy_itable_init=1,nodiscard', '-L', 'aiva-volume', '-d', at, making],
      { signal },
    );
    // The image holds the files now: it takes the volume's place, then the directory goes.
    await rename(making, this.imageOf(id));
    await rename(at, join(this.dir, `${id}.old`));
    await rm(join(this.dir, `${id}.old`), { recursive: true, force: true });
    this.log.warn({ volume: id, sizeMiB }, 'converted a volume directory into an image');
  }

  /** At the node's close: unmounts every volume but those sandboxes that remain mount (`inUse`). */
  async release(inUse: Set<string>): Promise<void> {
    for (const n of await readdir(this.dir).catch(() => [] as string[])) {
      const id = IMAGE.exec(n)?.[1];
      if (!id || inUse.has(id)) continue;
      await unmountAll(await this.realMountPoint(id)).catch((e: Error) =>
        this.log.error({ volume: id, err: e }, 'unmounting a volume failed'),
      );
    }
  }
}
