import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import {
  chmod,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { waitForEnvd } from '../../envd/envd-http.js';
import { startTemplate } from '../../envd/template-start.js';
import { lockFile } from '../../host/file-lock.js';
import { isSameProcess } from '../../host/proc.js';
import type { RuntimeSpec } from '../types.js';
import { killVmmProcess, killVmmProcessesIn, launchVmm } from '../vmm-process.js';
import { createDiskOverlay } from './disk-overlay.js';
import { type Accel, qemuArgs } from './qemu-args.js';
import { type QmpClient, withQmp } from './qmp-client.js';

/** Bump when the layout or the way snapshots are made changes: older ones are then never used. */
const FORMAT = 2;

/**
 * A saved template VM (Kata-style VM templating): its RAM as a file (`memory`), QEMU's
 * device state without the RAM (`state`, migrated with x-ignore-shared), and the qcow2
 * overlay its disk was (`disk.qcow2`, over the template's ext4), which clones' own
 * overlays use as backing: the guest's page cache refers to what is in it.
 */
export interface VmSnapshot {
  dir: string;
  memory: string;
  state: string;
  disk: string;
  manifest: SnapshotManifest;
}

export interface SnapshotManifest {
  format: number;
  key: string;
  template: string;
  kernel: string;
  memoryMiB: number;
  vcpus: number;
  diskMiB: number;
  accel: Accel;
  stateBytes: number;
  stateSha256: string;
  /** The template's start command was started (and ready) before the save. */
  startCommand?: boolean;
  /** Cold boot to envd-ready, then the save, in ms. */
  bootMs: number;
  saveMs: number;
  createdAt: string;
}

/**
 * The command line of `spec` with what differs between sandboxes taken out: id, paths
 * (the template and kernel are in the key by content hash, wherever the store is) and
 * the TSC rate.
 */
function canonicalArgs(spec: RuntimeSpec, accel: Accel, binary: string): string[] {
  if (!spec.kernel) throw new Error('a microVM needs a guest kernel');
  const neutral: RuntimeSpec = {
    ...spec,
    id: 'snapshot',
    dir: '/sandbox',
    consoleLog: '/sandbox/console.log',
    kernel: { ...spec.kernel, kernel: '/kernel', initrd: '/initrd' },
  };
  return [
    binary,
    ...qemuArgs(neutral, { disk: '/sandbox/disk.qcow2', qmpSocket: '/sandbox/qmp.sock' }, accel, {
      memoryFile: { path: '/snapshot/memory', share: true },
    }),
  ].map((a) => a.replace(/ tsc_early_khz=\d+/, ''));
}

/** Where the snapshot of `spec`'s template, kernel, size and command line lives, and its key. */
export function snapshotLocation(
  root: string,
  spec: RuntimeSpec,
  accel: Accel,
  binary: string,
): { key: string; dir: string } {
  if (!spec.kernel) throw new Error('a microVM needs a guest kernel');
  const { memoryMiB, vcpus, diskMiB } = spec.resources;
  const key = createHash('sha256')
    .update(
      JSON.stringify({
        format: FORMAT,
        template: spec.template.hash,
        // The disk the snapshot's overlay sits on, as made: a disk made again is another disk.
        disk: spec.template.diskId ?? null,
        kernel: spec.kernel.hash,
        memoryMiB,
        vcpus,
        diskMiB,
        accel,
        args: canonicalArgs(spec, accel, binary),
      }),
    )
    .digest('hex');
  return { key, dir: join(root, `${spec.template.hash}-${memoryMiB}M-${vcpus}-${key.slice(0, 16)}`) };
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

/**
 * The snapshot at `dir` if it is complete and consistent (its manifest names `key`, the
 * memory file has the guest's size, the device state its recorded hash), else undefined.
 * What cannot be checked cheaply (the RAM's content) shows when a restore fails.
 */
export async function findSnapshot(dir: string, key: string): Promise<VmSnapshot | undefined> {
  const manifest = await readFile(join(dir, 'snapshot.json'), 'utf8').then(
    (t) => JSON.parse(t) as SnapshotManifest,
    () => undefined,
  );
  if (!manifest || manifest.format !== FORMAT || manifest.key !== key) return undefined;
  const snap = {
    dir,
    memory: join(dir, 'memory'),
    state: join(dir, 'state'),
    disk: join(dir, 'disk.qcow2'),
    manifest,
  };
  const [mem, st, disk] = await Promise.all(
    [snap.memory, snap.state, snap.disk].map((p) => stat(p).catch(() => undefined)),
  );
  if (!mem || !st || !disk) return undefined;
  if (mem.size !== manifest.memoryMiB * 1024 * 1024 || st.size !== manifest.stateBytes) return undefined;
  if ((await sha256File(snap.state)) !== manifest.stateSha256) return undefined;
  return snap;
}

/** Removes a snapshot (under its lock): one that failed to restore is not tried again. */
export async function discardSnapshot(root: string, dir: string): Promise<void> {
  await mkdir(join(root, 'locks'), { recursive: true });
  const lock = await lockFile(join(root, 'locks', `${basename(dir)}.lock`));
  try {
    await rm(dir, { recursive: true, force: true });
  } finally {
    await lock.release();
  }
}

/**
 * Removes the VM snapshots made from any of `hashes` (templates or kernels): derived
 * artefacts of images that `aiva image rm` removed. Returns the directories removed.
 */
export async function discardSnapshotsOf(root: string, hashes: Set<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (name === 'locks' || name === 'tmp') continue;
    const manifest = await readFile(join(root, name, 'snapshot.json'), 'utf8').then(
      (t) => JSON.parse(t) as Partial<SnapshotManifest>,
      () => undefined,
    );
    // Without a manifest the template is its name's first part.
    const made = manifest ? [manifest.template, manifest.kernel] : [name.split('-')[0]];
    if (!made.some((h) => h && hashes.has(h))) continue;
    await discardSnapshot(root, join(root, name));
    removed.push(name);
  }
  return removed;
}

export interface BuildSnapshotOptions {
  root: string;
  key: string;
  dir: string;
  accel: Accel;
  binary: string;
  runAs?: string;
  hostTscKhz?: number;
  /** How long the template's cold boot may take to envd-ready. */
  readyTimeoutMs: number;
  /** How long its start command has to pass its ready check. */
  startTimeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Returns the snapshot at `o.dir`, making it first if there is none: boots the template
 * in `spec`'s network namespace and cgroup (every microVM namespace gives the guest the
 * same address, so the snapshot fits any sandbox) with its RAM in a shared file, waits
 * for envd, then stops it and saves its device state. Under a lock per snapshot, so
 * that two creates do not build it twice; the work happens in `tmp/` and is renamed into
 * place, and a failure leaves neither a process nor a file.
 */
export async function ensureSnapshot(
  spec: RuntimeSpec,
  o: BuildSnapshotOptions,
): Promise<{ snapshot: VmSnapshot; built: boolean }> {
  // A snapshot appears whole (renamed into place): found, it needs no lock (creates' common case).
  const ready = await findSnapshot(o.dir, o.key);
  if (ready) return { snapshot: ready, built: false };
  await mkdir(join(o.root, 'locks'), { recursive: true });
  await mkdir(join(o.root, 'tmp'), { recursive: true });
  const name = basename(o.dir);
  const lock = await lockFile(join(o.root, 'locks', `${name}.lock`), { signal: o.signal });
  try {
    const existing = await findSnapshot(o.dir, o.key);
    if (existing) return { snapshot: existing, built: false };
    // A snapshot that is there but not valid, and the debris of a builder that died (we hold the lock).
    await rm(o.dir, { recursive: true, force: true });
    for (const entry of await readdir(join(o.root, 'tmp'))) {
      if (entry.startsWith(`${name}.`))
        await rm(join(o.root, 'tmp', entry), { recursive: true, force: true });
    }
    const work = join(o.root, 'tmp', `${name}.${randomBytes(4).toString('hex')}`);
    await mkdir(work);
    try {
      const manifest = await buildIn(work, spec, o);
      await writeFile(join(work, 'snapshot.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      await rename(work, o.dir);
    } catch (e) {
      await rm(work, { recursive: true, force: true });
      throw e;
    }
    const snapshot = await findSnapshot(o.dir, o.key);
    if (!snapshot) throw new Error(`the snapshot just made in ${o.dir} does not check out`);
    return { snapshot, built: true };
  } finally {
    await lock.release();
  }
}

async function buildIn(work: string, spec: RuntimeSpec, o: BuildSnapshotOptions): Promise<SnapshotManifest> {
  if (!spec.kernel) throw new Error('a microVM needs a guest kernel');
  const disk = join(work, 'disk.qcow2');
  const memory = join(work, 'memory');
  const stateFile = join(work, 'state');
  const qmpSocket = join(spec.dir, 'qmp-template.sock');
  const log = join(spec.dir, 'qemu-template.log');
  // The store's real path: the snapshot outlives the home it was made from (a symlinked store).
  await createDiskOverlay(
    disk,
    { file: await realpath(spec.template.disk), format: 'raw' },
    spec.resources.diskMiB,
    o.signal,
  );
  // QEMU re-opens the disk read-only when it hands it over at the end of the save, after it
  // dropped its privileges: it gets the file as inherited fds (an fd set), not a path.
  const argv = [
    o.binary,
    ...qemuArgs(spec, { disk: '/dev/fdset/1', diskFds: [3, 4], qmpSocket }, o.accel, {
      runAs: o.runAs,
      hostTscKhz: o.hostTscKhz,
      memoryFile: { path: memory, share: true },
    }),
  ];
  const t0 = Date.now();
  const handles = await Promise.all([open(disk, 'r+'), open(disk, 'r')]);
  let proc: { pid: number; pidStartTime: number };
  try {
    proc = await launchVmm(spec, {
      argv,
      log,
      socket: qmpSocket,
      fds: handles.map((h) => h.fd),
      signal: o.signal,
    });
  } catch (e) {
    await killVmmProcessesIn(spec).catch(() => {});
    throw e;
  } finally {
    await Promise.all(handles.map((h) => h.close()));
  }
  try {
    await waitForEnvd(spec.network.address, {
      timeoutMs: o.readyTimeoutMs,
      signal: o.signal,
      stillAlive: () => isSameProcess(proc.pid, proc.pidStartTime),
    });
    // A template's start command runs before the save, so that every clone wakes with it
    // running and ready (E2B's templates); envd has no access token yet.
    if (spec.template.start)
      await startTemplate(spec.network.address, '', spec.template, {
        timeoutMs: o.startTimeoutMs ?? 600_000,
        signal: o.signal,
      });
    const bootMs = Date.now() - t0;
    const t1 = Date.now();
    await withQmp(qmpSocket, async (q) => {
      await q.execute('stop');
      await saveVmState(q, stateFile, { ignoreShared: true, log });
      await q.execute('quit').catch(() => {});
    });
    await killVmmProcess(proc);
    // The RAM file is the snapshot's memory: on disk before the snapshot counts as made.
    const fh = await open(memory, 'r+');
    await fh.sync().finally(() => fh.close());
    await chmod(disk, 0o444);
    const st = await stat(stateFile);
    return {
      format: FORMAT,
      key: o.key,
      template: spec.template.hash,
      kernel: spec.kernel.hash,
      memoryMiB: spec.resources.memoryMiB,
      vcpus: spec.resources.vcpus,
      diskMiB: spec.resources.diskMiB,
      accel: o.accel,
      stateBytes: st.size,
      stateSha256: await sha256File(stateFile),
      startCommand: Boolean(spec.template.start),
      bootMs,
      saveMs: Date.now() - t1,
      createdAt: new Date().toISOString(),
    };
  } finally {
    await killVmmProcess(proc).catch(() => {});
    await rm(qmpSocket, { force: true });
  }
}

/**
 * Saves the device state of the stopped QEMU behind `q` into `file`, and its RAM too
 * unless `ignoreShared` (a template whose RAM is a shared file is saved without it).
 * QEMU ends in `postmigrate`, its disks handed over; `cont` takes them back. `log` is
 * QEMU's log, quoted when the save fails.
 */
export async function saveVmState(
  q: QmpClient,
  file: string,
  o: { ignoreShared: boolean; log: string },
): Promise<void> {
  await q.execute('migrate-set-capabilities', {
    capabilities: [{ capability: 'x-ignore-shared', state: o.ignoreShared }],
  });
  // QEMU drops its privileges after start-up: it sends its state to a socket of ours in a
  // directory it may enter (`exec:` would need a shell, which its seccomp filter forbids).
  const sockDir = await mkdtemp(join(tmpdir(), 'aiva-snapshot-'));
  try {
    await chmod(sockDir, 0o711);
    await receiveMigration(q, join(sockDir, 'migrate.sock'), file);
  } catch (e) {
    const printed = (await readFile(o.log, 'utf8').catch(() => '')).trim().slice(-1000);
    throw new Error(`${(e as Error).message}${printed ? ` (QEMU: ${printed})` : ''}`, { cause: e });
  } finally {
    await rm(sockDir, { recursive: true, force: true });
  }
}

/** Has the stopped QEMU behind `q` migrate to a unix socket we listen on, into `file`. */
async function receiveMigration(q: QmpClient, socketPath: string, file: string): Promise<void> {
  const out = createWriteStream(file, { mode: 0o644 });
  const server = createServer();
  try {
    const received = new Promise<void>((resolve, reject) => {
      server.once('connection', (conn) => {
        server.close();
        conn.pipe(out);
        conn.on('error', reject);
        out.on('error', reject);
        out.on('finish', () => resolve());
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    await chmod(socketPath, 0o666);
    await q.execute('migrate', { uri: `unix:${socketPath}` });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const m = await q.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
      if (m.status === 'completed') break;
      if (m.status === 'failed' || m.status === 'cancelled') {
        throw new Error(`saving the VM failed: ${m['error-desc'] ?? m.status}`);
      }
      if (Date.now() > deadline) throw new Error('saving the VM took more than 60 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.race([
      received,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('the migration stream did not end')), 10_000).unref(),
      ),
    ]);
  } finally {
    server.close();
    out.destroy();
  }
}

/**
 * Restores a saved VM in QEMU behind `q` (started with `-incoming defer`): the state
 * comes from QEMU's fd 3, then `cont`. `ignoreShared`: the state holds no RAM, which is
 * the template's memory file QEMU maps (share=off); otherwise the RAM is in the state.
 */
export async function restoreFromSnapshot(
  q: QmpClient,
  o: { ignoreShared: boolean; timeoutMs?: number },
): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  await q.execute('migrate-set-capabilities', {
    capabilities: [{ capability: 'x-ignore-shared', state: o.ignoreShared }],
  });
  await q.execute('migrate-incoming', { uri: 'fd:3' });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await q.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
    if (m.status === 'completed') break;
    if (m.status === 'failed' || m.status === 'cancelled') {
      throw new Error(`restoring the snapshot failed: ${m['error-desc'] ?? m.status}`);
    }
    if (Date.now() > deadline) throw new Error(`restoring the snapshot took more than ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
  await q.execute('cont');
}
