import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommandError, runCommand } from './command.js';
import { mountedUnder, unmountAll } from './mounts.js';

/**
 * A range of host ids that a sandbox's ids 0..count-1 map to: its user namespace's
 * uid_map and gid_map (`0 hostId count`), and the idmap of its root filesystem's layers.
 */
export interface IdRange {
  hostId: number;
  count: number;
}

/**
 * Host ids given to sandboxes: 2^30 … 2^31-1, 65536 (a whole 16-bit id space) each, so
 * 16384 sandboxes (a /16 address block's slots). Above the ranges `useradd` hands out
 * (/etc/subuid starts at 100000) and the host's own users, below 2^31 (ids that some
 * programs read as signed). systemd-nspawn's automatic ranges overlap it: do not run
 * both on one host.
 */
export const SANDBOX_ID_BASE = 2 ** 30;
export const SANDBOX_ID_COUNT = 65_536;
export const SANDBOX_ID_SLOTS = 2 ** 30 / SANDBOX_ID_COUNT;

/**
 * The host ids of the sandbox in `slot` (its network address slot: unique among live
 * sandboxes, recorded, and known before the sandbox exists, so a pooled namespace has it).
 */
export function sandboxIdRange(slot: number): IdRange {
  if (!Number.isInteger(slot) || slot < 0 || slot >= SANDBOX_ID_SLOTS)
    throw new RangeError(
      `slot ${slot} has no id range (0 to ${SANDBOX_ID_SLOTS - 1}: an address block of /16 or less)`,
    );
  return { hostId: SANDBOX_ID_BASE + slot * SANDBOX_ID_COUNT, count: SANDBOX_ID_COUNT };
}

/**
 * How a sandbox's layers are handed to overlayfs: as file descriptors of detached
 * idmapped mounts (no mount table entries at all), or attached under a directory, named
 * by path, and detached again once overlayfs has its own copy (older kernels).
 */
export type LayerPassing = 'fd' | 'path';

export interface IdmappedOverlay {
  /** Read-only layers, top first (like overlayfs' lowerdir). */
  lowers: readonly string[];
  /** The sandbox's own layer and overlayfs' work directory (one parent when `idmapUpper`). */
  upper?: string;
  work?: string;
  /** Where to mount the overlay. */
  target: string;
  /** Ids the layers' files are shifted to: on-disk id N is seen as `hostId + N`. Without it, a plain overlay. */
  ids?: IdRange;
  /**
   * The sandbox's user namespace (pinned by `pinUserNamespace`) to idmap through; its
   * mapping must be `ids`. Without it a throwaway namespace with that mapping is used:
   * the result is the same.
   */
  userns?: string;
  /**
   * Idmap the upper layer too, so that its files keep unshifted owners on disk (uid 0 is
   * stored for the sandbox's root): a checkpoint or a build's layer is then usable by any
   * other sandbox as it is. The host cannot create files through such an overlay as its
   * own root (EOVERFLOW: uid 0 has no id on that mount); write into `upper` beforehand.
   */
  idmapUpper?: boolean;
  /** 'path' needs `attachDir`, an existing directory where the layers are attached meanwhile. */
  passing?: LayerPassing;
  attachDir?: string;
  /** More overlayfs options (`metacopy=on`, `index=off`, …). */
  options?: readonly string[];
  signal?: AbortSignal;
}

/** The native helper, built from packages/node/native/aiva-mount.c into dist/native. */
export function aivaMountPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.AIVA_MOUNT ?? fileURLToPath(new URL('../../native/aiva-mount', import.meta.url));
}

/** A failure of the helper; `unsupported` when the kernel lacks a system call it needs. */
export class IdmappedOverlayError extends Error {
  constructor(
    message: string,
    readonly unsupported: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'IdmappedOverlayError';
  }
}

/** The helper's arguments for `o` (exported for tests and logs). */
export function aivaMountArgs(o: IdmappedOverlay): string[] {
  const args = ['overlay'];
  if (o.ids) args.push('--map', `0:${o.ids.hostId}:${o.ids.count}`);
  if (o.userns) args.push('--userns', o.userns);
  if (o.idmapUpper) args.push('--idmap-upper');
  if (o.passing === 'path') {
    if (!o.attachDir) throw new TypeError('passing layers by path needs attachDir');
    args.push('--attach', o.attachDir);
  }
  for (const opt of o.options ?? []) args.push('-o', opt);
  for (const l of o.lowers) args.push('--lower', l);
  if (o.upper && o.work) args.push('--upper', o.upper, '--work', o.work);
  args.push(o.target);
  return args;
}

/** Mounts the overlay `o` describes at `o.target`; nothing is left mounted if it fails. */
export async function mountIdmappedOverlay(o: IdmappedOverlay): Promise<void> {
  try {
    await runCommand(aivaMountPath(), aivaMountArgs(o), { signal: o.signal, displayName: 'aiva-mount' });
  } catch (e) {
    if (!(e instanceof CommandError)) throw e;
    const why = e.output.trim().replace(/^aiva-mount: /gm, '') || e.message;
    throw new IdmappedOverlayError(`cannot mount the overlay at ${o.target}: ${why}`, e.exitCode === 3, {
      cause: e,
    });
  }
}

/**
 * Makes a user namespace mapping ids 0..count-1 to `ids` and pins it on `usernsFile`
 * (created if missing) for runc to join (`linux.namespaces: [{type: 'user', path}]`);
 * with `netnsFile` (e.g. /run/netns/NAME), also a network namespace owned by it. Such a
 * network namespace lets the sandbox mount sysfs and keeps its root's raw sockets and
 * low ports, which a network namespace of the host's user namespace does not. Undo with
 * `unpinNamespace` on each file.
 */
export async function pinUserNamespace(ids: IdRange, usernsFile: string, netnsFile?: string): Promise<void> {
  const files = netnsFile ? [usernsFile, netnsFile] : [usernsFile];
  for (const f of files) await writeFile(f, '', { flag: 'a' });
  try {
    await runCommand(aivaMountPath(), ['userns', '--map', `0:${ids.hostId}:${ids.count}`, ...files], {
      displayName: 'aiva-mount userns',
    });
  } catch (e) {
    for (const f of files) await rm(f, { force: true });
    throw e;
  }
}

/** Releases a namespace pinned by `pinUserNamespace` (gone once nothing else uses it). */
export async function unpinNamespace(file: string): Promise<void> {
  await unmountAll(file);
  await rm(file, { force: true });
}

/** The super options of the mount at `path` (e.g. `rw,lowerdir+=/,…`), if something is mounted there. */
async function superOptions(path: string): Promise<string | undefined> {
  const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n');
  for (const line of lines.reverse()) {
    const [left, right] = line.split(' - ');
    if (left?.split(' ')[4] === path) return right?.split(' ')[2];
  }
  return undefined;
}

export type IdmappedOverlaySupport =
  | { supported: true; passing: LayerPassing }
  | { supported: false; reason: string };

/**
 * Mounts a tiny idmapped overlay, upper included, in a temporary directory: whether this
 * host can give sandboxes shifted root filesystems without copying their layers, and
 * how the layers must be passed. Checks that a root-owned lower file is seen shifted and
 * that the overlay is writable (overlayfs falls back to read-only when it cannot write
 * its work directory).
 */
async function probe(passing: LayerPassing): Promise<string | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'aiva-idmap-probe-'));
  const ids = { hostId: SANDBOX_ID_BASE, count: SANDBOX_ID_COUNT };
  const p = {
    lower: join(dir, 'lower'),
    state: join(dir, 'state'),
    target: join(dir, 'merged'),
    attach: join(dir, 'attach'),
  };
  try {
    for (const d of [p.lower, join(p.state, 'upper'), join(p.state, 'work'), p.target, p.attach])
      await mkdir(d, { recursive: true });
    await writeFile(join(p.lower, 'f'), '');
    await mountIdmappedOverlay({
      lowers: [p.lower],
      upper: join(p.state, 'upper'),
      work: join(p.state, 'work'),
      target: p.target,
      ids,
      idmapUpper: true,
      passing,
      attachDir: p.attach,
    });
    const uid = (await stat(join(p.target, 'f'))).uid;
    if (uid !== ids.hostId) return `a root-owned file showed as uid ${uid}, not ${ids.hostId}`;
    const opts = await superOptions(p.target);
    if (!opts?.startsWith('rw')) return `the overlay was mounted read-only (${opts})`;
    return undefined;
  } catch (e) {
    return (e as Error).message;
  } finally {
    await unmountAll(dir).catch(() => {});
    if ((await mountedUnder(dir)).length === 0) await rm(dir, { recursive: true, force: true });
  }
}

let support: Promise<IdmappedOverlaySupport> | undefined;

/** Whether (and how) idmapped overlays work here; probed once per process. */
export function idmappedOverlaySupported(): Promise<IdmappedOverlaySupport> {
  support ??= (async (): Promise<IdmappedOverlaySupport> => {
    const byFd = await probe('fd');
    if (byFd === undefined) return { supported: true, passing: 'fd' };
    const byPath = await probe('path');
    if (byPath === undefined) return { supported: true, passing: 'path' };
    return { supported: false, reason: `by fd: ${byFd}; by path: ${byPath}` };
  })();
  return support;
}
