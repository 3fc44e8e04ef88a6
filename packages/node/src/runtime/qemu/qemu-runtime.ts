import { type FileHandle, open, realpath, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { waitForEnvd } from '../../envd/envd-http.js';
import { runCommand } from '../../host/command.js';
import { hostTscKhz, isSameProcess, signalProcess, waitForExit } from '../../host/proc.js';
import {
  type RuntimeCapabilities,
  RuntimeError,
  type RuntimeSpec,
  type RuntimeState,
  type RuntimeStats,
  type SandboxRef,
  type SandboxRuntime,
  SandboxSpecError,
} from '../types.js';
import {
  createVmmCgroup,
  killVmm,
  killVmmProcess,
  killVmmProcessesIn,
  launchVmm,
  vmmStats,
} from '../vmm-process.js';
import { backingChainLength, createDiskOverlay, flattenDisk } from './disk-overlay.js';
import { type Accel, qemuArgs } from './qemu-args.js';
import { withQmp } from './qmp-client.js';
import {
  discardSnapshot,
  ensureSnapshot,
  restoreFromSnapshot,
  saveVmState,
  snapshotLocation,
  type VmSnapshot,
} from './vm-snapshot.js';

export interface QemuRuntimeOptions {
  accel: Accel;
  /** Unprivileged user QEMU switches to after start-up (`-runas`), if any. */
  runAs?: string;
  binary?: string;
  /**
   * Where VM snapshots live (`$AIVA_HOME/images/snapshots`). With it, every create
   * restores a clone of the template's saved VM, making that snapshot first if there is
   * none; without it, every create cold-boots.
   */
  snapshotDir?: string;
  /** How long the template's cold boot may take to envd-ready when a snapshot is made (default 120 s). */
  snapshotBootTimeoutMs?: number;
  /** How long a restored clone has to answer on envd before the restore counts as failed (default 15 s). */
  restoreReadyTimeoutMs?: number;
}

/** Each volume's image, read-write and read-only, in the order of `spec.volumes`. */
const volumeFiles = (spec: RuntimeSpec): [string, 'r+' | 'r'][] =>
  (spec.volumes ?? []).flatMap((v) => [
    [v.image, 'r+'],
    [v.image, 'r'],
  ]);

/** Opens every file, or none: those opened are closed again when one fails. */
async function openAll(files: [string, 'r+' | 'r'][]): Promise<FileHandle[]> {
  const opened = await Promise.allSettled(files.map(([path, flags]) => open(path, flags)));
  const handles = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const failed = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (!failed) return handles;
  await Promise.all(handles.map((h) => h.close()));
  throw failed.reason;
}

/** The child's fds of `volumeFiles`, when they follow the others from `first` on. */
const volumeFdPairs = (spec: RuntimeSpec, first: number): [number, number][] =>
  (spec.volumes ?? []).map((_v, i) => [first + 2 * i, first + 2 * i + 1]);

/** How a qemu-microvm sandbox came up, recorded in its RuntimeState: cold, a template clone, a saved sandbox. */
export type QemuStart = 'boot' | 'snapshot' | 'checkpoint';

/** Host memory QEMU needs beyond the guest's RAM (its own code, device state, TCG's translation cache). */
const OVERHEAD_MIB = { kvm: 128, tcg: 256 } as const;

/**
 * Sandboxes as QEMU `microvm` guests: Debian's kernel and our initramfs, the template's
 * ext4 disk behind a private qcow2 overlay, a TAP device in the sandbox's network
 * namespace, QMP for control, a cgroup of its own for limits and accounting.
 */
export class QemuRuntime implements SandboxRuntime {
  readonly name = 'qemu-microvm' as const;
  readonly capabilities: RuntimeCapabilities = {
    network: 'tap',
    guestKernel: true,
    pauseToDisk: true,
    coldResume: true,
    entropyReseed: true,
    changesAsLayer: false,
    volumes: 'exclusive',
    userNamespace: false,
  };

  constructor(readonly options: QemuRuntimeOptions) {}

  private files(spec: SandboxRef) {
    return {
      disk: join(spec.dir, 'disk.qcow2'),
      qmpSocket: join(spec.dir, 'qmp.sock'),
      qemuLog: join(spec.dir, 'qemu.log'),
    };
  }

  async create(spec: RuntimeSpec, signal?: AbortSignal): Promise<void> {
    if (!spec.kernel) throw new SandboxSpecError('the qemu-microvm runtime needs a guest kernel');
    if (spec.resources.diskMiB < spec.template.diskSizeMiB) {
      throw new SandboxSpecError(
        `disk of ${spec.resources.diskMiB} MiB is smaller than the template's ${spec.template.diskSizeMiB} MiB`,
      );
    }
    try {
      // With snapshots or a checkpoint, start() makes the disk: it depends on how the guest
      // comes up. A kept disk (a pause without memory) is there already.
      if (!this.options.snapshotDir && !spec.restoreFrom && !spec.keptDisk)
        await this.makeDisk(spec, spec.template.disk, 'raw', signal);
      await createVmmCgroup(spec, {
        memoryBytes: (spec.resources.memoryMiB + OVERHEAD_MIB[this.options.accel]) * 1024 * 1024,
        cpus: spec.resources.vcpus,
        pids: 1024,
      });
    } catch (e) {
      await this.destroy(spec, undefined);
      throw new RuntimeError(`cannot prepare the microVM: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Copy-on-write over a read-only disk (the template's, or a snapshot's): only what the sandbox writes takes space. */
  private async makeDisk(spec: RuntimeSpec, backing: string, format: 'raw' | 'qcow2', signal?: AbortSignal) {
    const f = this.files(spec);
    await rm(f.disk, { force: true });
    await createDiskOverlay(f.disk, { file: backing, format }, spec.resources.diskMiB, signal);
  }

  async start(spec: RuntimeSpec, signal?: AbortSignal): Promise<RuntimeState> {
    if (spec.restoreFrom) return this.restoreCheckpoint(spec, spec.restoreFrom, signal);
    if (spec.keptDisk) return { ...(await this.boot(spec, signal)), startedFrom: 'boot' satisfies QemuStart };
    const root = this.options.snapshotDir;
    if (!root) return { ...(await this.boot(spec, signal)), startedFrom: 'boot' satisfies QemuStart };
    if (spec.volumes?.length) {
      // The template's saved VM has no volume disks, and virtio-mmio has no hot-plug: a
      // sandbox with volumes boots cold.
      await this.makeDisk(spec, spec.template.disk, 'raw', signal);
      return { ...(await this.boot(spec, signal)), startedFrom: 'boot' satisfies QemuStart };
    }
    const binary = this.options.binary ?? 'qemu-system-x86_64';
    let snapshot: VmSnapshot | undefined;
    let built = false;
    let snapshotError: string | undefined;
    try {
      const { key, dir } = snapshotLocation(root, spec, this.options.accel, binary);
      ({ snapshot, built } = await ensureSnapshot(spec, {
        root,
        key,
        dir,
        accel: this.options.accel,
        binary,
        runAs: this.options.runAs,
        hostTscKhz: await hostTscKhz(),
        readyTimeoutMs: this.options.snapshotBootTimeoutMs ?? 120_000,
        signal,
      }));
    } catch (e) {
      if (signal?.aborted) throw e;
      snapshotError = `no snapshot: ${(e as Error).message}`;
    }
    if (snapshot) {
      const t0 = Date.now();
      try {
        await this.makeDisk(spec, snapshot.disk, 'qcow2', signal);
        const state = await this.restore(
          spec,
          { state: snapshot.state, memoryFile: snapshot.memory },
          this.options.restoreReadyTimeoutMs ?? 15_000,
          signal,
        );
        return {
          ...state,
          startedFrom: 'snapshot' satisfies QemuStart,
          startCommandRunning: snapshot.manifest.startCommand === true,
          snapshotBuilt: built,
          restoreMs: Date.now() - t0,
        };
      } catch (e) {
        if (signal?.aborted) throw e;
        snapshotError = `restore failed: ${(e as Error).message}`;
        // A snapshot that does not restore is not tried again; the next create makes a new one.
        await discardSnapshot(root, snapshot.dir).catch(() => {});
      }
    }
    await this.makeDisk(spec, spec.template.disk, 'raw', signal);
    return { ...(await this.boot(spec, signal)), startedFrom: 'boot' satisfies QemuStart, snapshotError };
  }

  /** A cold boot: kernel, initramfs, the guest's init and envd. */
  private async boot(spec: RuntimeSpec, signal?: AbortSignal): Promise<RuntimeState> {
    const f = this.files(spec);
    // A checkpoint has QEMU hand its disks over and take them back after it dropped its
    // privileges: it re-opens them from inherited fds (fd sets), not by path.
    const handles = await openAll([[f.disk, 'r+'], [f.disk, 'r'], ...volumeFiles(spec)]);
    const argv = [
      this.options.binary ?? 'qemu-system-x86_64',
      ...qemuArgs(
        spec,
        { ...f, disk: '/dev/fdset/1', diskFds: [3, 4], volumeFds: volumeFdPairs(spec, 5) },
        this.options.accel,
        { runAs: this.options.runAs, hostTscKhz: await hostTscKhz() },
      ),
    ];
    const proc = await launchVmm(spec, {
      argv,
      log: f.qemuLog,
      socket: f.qmpSocket,
      fds: handles.map((h) => h.fd),
      signal,
    }).finally(() => Promise.all(handles.map((h) => h.close())));
    const state: RuntimeState = { driver: 'qemu-microvm', ...proc, accel: this.options.accel };
    try {
      const status = await withQmp(f.qmpSocket, (q) => q.execute<{ status: string }>('query-status'));
      if (status.status !== 'running') throw new Error(`QEMU is ${status.status}, not running`);
    } catch (e) {
      await killVmm(spec, state);
      throw new RuntimeError(`QEMU did not start the guest: ${(e as Error).message}`, { cause: e });
    }
    return state;
  }

  /**
   * A sandbox saved by `checkpoint`: its own copy of the saved disk, RAM and device state
   * from the state file; ready once envd answers. No cold boot stands in when this fails:
   * that would lose what was saved.
   */
  private async restoreCheckpoint(
    spec: RuntimeSpec,
    dir: string,
    signal?: AbortSignal,
  ): Promise<RuntimeState> {
    const f = this.files(spec);
    const t0 = Date.now();
    try {
      await runCommand('cp', ['--sparse=always', join(dir, 'disk.qcow2'), f.disk], { signal });
      // The saved layer names its template's disk as its node had it: this node's may lie elsewhere.
      await runCommand(
        'qemu-img',
        ['rebase', '-u', '-F', 'raw', '-b', await realpath(spec.template.disk), f.disk],
        {
          signal,
        },
      );
      const state = await this.restore(
        spec,
        { state: join(dir, 'state') },
        this.options.snapshotBootTimeoutMs ?? 120_000,
        signal,
      );
      return { ...state, startedFrom: 'checkpoint' satisfies QemuStart, restoreMs: Date.now() - t0 };
    } catch (e) {
      await this.clearAttempt(spec, undefined);
      throw new RuntimeError(`cannot restore the saved microVM: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * Saves the paused VM into `dir`: its RAM and device state (`state`, QEMU's migration
   * stream) and its disk folded into one layer over the template's (`disk.qcow2`). QEMU
   * is left in `postmigrate`, which `resume` (cont) leaves like a pause.
   */
  async checkpoint(spec: SandboxRef, _state: RuntimeState, dir: string, signal?: AbortSignal) {
    const f = this.files(spec);
    await withQmp(f.qmpSocket, async (q) => {
      const { status } = await q.execute<{ status: string }>('query-status');
      if (status !== 'paused' && status !== 'postmigrate')
        throw new RuntimeError(`the VM is ${status}, not paused`);
      await saveVmState(q, join(dir, 'state'), { ignoreShared: false, log: f.qemuLog });
    });
    await flattenDisk(f.disk, join(dir, 'disk.qcow2'), signal);
    return { memory: true };
  }

  /**
   * A VM from saved state on the disk already in place: RAM either the template's
   * memory file mapped copy-on-write (share=off) or in the state file, device state
   * migrated in from the state file (QEMU's fd 3); ready once envd answers within
   * `readyTimeoutMs`. On failure nothing of the attempt is left.
   */
  private async restore(
    spec: RuntimeSpec,
    saved: { state: string; memoryFile?: string },
    readyTimeoutMs: number,
    signal?: AbortSignal,
  ): Promise<RuntimeState> {
    const f = this.files(spec);
    // QEMU re-opens the disk read-write when the restored guest starts, after it dropped its
    // privileges: it gets the file as inherited fds (an fd set) instead of a path.
    const handles = await openAll([[saved.state, 'r'], [f.disk, 'r+'], [f.disk, 'r'], ...volumeFiles(spec)]);
    let proc: { pid: number; pidStartTime: number } | undefined;
    try {
      const argv = [
        this.options.binary ?? 'qemu-system-x86_64',
        ...qemuArgs(
          spec,
          { ...f, disk: '/dev/fdset/1', diskFds: [4, 5], volumeFds: volumeFdPairs(spec, 6) },
          this.options.accel,
          {
            runAs: this.options.runAs,
            hostTscKhz: await hostTscKhz(),
            memoryFile: saved.memoryFile ? { path: saved.memoryFile, share: false } : undefined,
            incoming: true,
          },
        ),
      ];
      proc = await launchVmm(spec, {
        argv,
        log: f.qemuLog,
        socket: f.qmpSocket,
        fds: handles.map((h) => h.fd),
        signal,
      });
    } catch (e) {
      await this.clearAttempt(spec, undefined);
      throw e;
    } finally {
      await Promise.all(handles.map((h) => h.close()));
    }
    const state: RuntimeState = { driver: 'qemu-microvm', ...proc, accel: this.options.accel };
    try {
      await withQmp(f.qmpSocket, (q) => restoreFromSnapshot(q, { ignoreShared: !!saved.memoryFile }));
      await waitForEnvd(spec.network.address, {
        timeoutMs: readyTimeoutMs,
        signal,
        stillAlive: () => isSameProcess(state.pid, state.pidStartTime),
      });
    } catch (e) {
      await this.clearAttempt(spec, state);
      throw e;
    }
    return state;
  }

  /** Removes what a failed restore made (the QEMU process, its disk and socket); the cgroup stays for the next try. */
  private async clearAttempt(spec: RuntimeSpec, state: RuntimeState | undefined): Promise<void> {
    if (state) await killVmmProcess(state);
    // A QEMU that did not get as far as its state being known: whatever runs in the cgroup.
    await killVmmProcessesIn(spec);
    const f = this.files(spec);
    await Promise.all([rm(f.disk, { force: true }), rm(f.qmpSocket, { force: true })]);
  }

  async pause(spec: SandboxRef): Promise<void> {
    await withQmp(this.files(spec).qmpSocket, (q) => q.execute('stop'));
  }

  async resume(spec: SandboxRef): Promise<void> {
    await withQmp(this.files(spec).qmpSocket, (q) => q.execute('cont'));
  }

  async stop(spec: SandboxRef, state: RuntimeState, graceMs: number): Promise<void> {
    if (!(await isSameProcess(state.pid, state.pidStartTime))) return;
    // The guest has no ACPI daemon to act on a power button; `quit` ends QEMU cleanly
    // (the disk is flushed), the guest's ext4 journal covers the rest.
    await withQmp(this.files(spec).qmpSocket, (q) => q.execute('quit')).catch(() => {});
    if (await waitForExit(state.pid, state.pidStartTime, graceMs)) return;
    await signalProcess(state.pid, state.pidStartTime, 'SIGKILL');
    await waitForExit(state.pid, state.pidStartTime, 5000);
  }

  /**
   * Ends QEMU and keeps the sandbox's disk, folded into one layer over the template's
   * ext4 when it lay over a VM snapshot's disk (which may be discarded before the
   * sandbox boots again). The guest's writes are on it once it was synced (the manager
   * asks envd); a guest that could not sync has crash-recovery semantics (its journal).
   */
  async shutdown(spec: SandboxRef, state: RuntimeState | undefined): Promise<void> {
    if (state) await this.stop(spec, state, 5000);
    await killVmm(spec, state);
    const f = this.files(spec);
    await Promise.all([
      rm(f.qmpSocket, { force: true }),
      rm(join(spec.dir, 'qmp-template.sock'), { force: true }),
    ]);
    if ((await backingChainLength(f.disk)) > 2) {
      await flattenDisk(f.disk, `${f.disk}.flat`);
      await rename(`${f.disk}.flat`, f.disk);
    }
  }

  async destroy(spec: SandboxRef, state: RuntimeState | undefined): Promise<void> {
    // The cgroup holds QEMU even when its state was never recorded (a failed start).
    await killVmm(spec, state);
    const f = this.files(spec);
    await Promise.all([
      rm(f.disk, { force: true }),
      rm(f.qmpSocket, { force: true }),
      rm(join(spec.dir, 'qmp-template.sock'), { force: true }),
    ]);
  }

  async sweep(): Promise<void> {
    // QEMU keeps nothing outside the sandbox's directory and cgroup, which the manager sweeps.
  }

  async alive(state: RuntimeState): Promise<boolean> {
    return isSameProcess(state.pid, state.pidStartTime);
  }

  async stats(spec: SandboxRef): Promise<RuntimeStats> {
    return vmmStats(spec);
  }
}
