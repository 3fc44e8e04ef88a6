import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { waitForEnvd } from '../../envd/envd-http.js';
import { hostTscKhz, isSameProcess, signalProcess, waitForExit } from '../../host/proc.js';
import {
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
import { createDiskOverlay } from './disk-overlay.js';
import { type Accel, qemuArgs } from './qemu-args.js';
import { withQmp } from './qmp-client.js';
import {
  discardSnapshot,
  ensureSnapshot,
  restoreFromSnapshot,
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

/** How a qemu-microvm sandbox came up, recorded in its RuntimeState. */
export type QemuStart = 'boot' | 'snapshot';

/** Host memory QEMU needs beyond the guest's RAM (its own code, device state, TCG's translation cache). */
const OVERHEAD_MIB = { kvm: 128, tcg: 256 } as const;

/**
 * Sandboxes as QEMU `microvm` guests: Debian's kernel and our initramfs, the template's
 * ext4 disk behind a private qcow2 overlay, a TAP device in the sandbox's network
 * namespace, QMP for control, a cgroup of its own for limits and accounting.
 */
export class QemuRuntime implements SandboxRuntime {
  readonly name = 'qemu-microvm' as const;

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
      // With snapshots, start() makes the disk: its backing depends on how the guest comes up.
      if (!this.options.snapshotDir) await this.makeDisk(spec, spec.template.disk, 'raw', signal);
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
    const root = this.options.snapshotDir;
    if (!root) return { ...(await this.boot(spec, signal)), startedFrom: 'boot' satisfies QemuStart };
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
        const state = await this.restore(spec, snapshot, signal);
        return {
          ...state,
          startedFrom: 'snapshot' satisfies QemuStart,
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
    const argv = [
      this.options.binary ?? 'qemu-system-x86_64',
      ...qemuArgs(spec, f, this.options.accel, { runAs: this.options.runAs, hostTscKhz: await hostTscKhz() }),
    ];
    const proc = await launchVmm(spec, { argv, log: f.qemuLog, socket: f.qmpSocket, signal });
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
   * A clone of the snapshot: the template's RAM file mapped copy-on-write (share=off), its
   * device state migrated in from the state file (QEMU's fd 3), its own qcow2 overlay over
   * the snapshot's disk; ready once envd answers. On failure nothing of the attempt is left.
   */
  private async restore(
    spec: RuntimeSpec,
    snapshot: VmSnapshot,
    signal?: AbortSignal,
  ): Promise<RuntimeState> {
    const f = this.files(spec);
    await this.makeDisk(spec, snapshot.disk, 'qcow2', signal);
    // QEMU re-opens the disk read-write when the restored guest starts, after it dropped its
    // privileges: it gets the file as inherited fds (an fd set) instead of a path.
    const handles = await Promise.all([open(snapshot.state, 'r'), open(f.disk, 'r+'), open(f.disk, 'r')]);
    const [stateFh, rwFh, roFh] = handles;
    let proc: { pid: number; pidStartTime: number } | undefined;
    try {
      const argv = [
        this.options.binary ?? 'qemu-system-x86_64',
        ...qemuArgs(spec, { ...f, disk: '/dev/fdset/1', diskFds: [4, 5] }, this.options.accel, {
          runAs: this.options.runAs,
          hostTscKhz: await hostTscKhz(),
          memoryFile: { path: snapshot.memory, share: false },
          incoming: true,
        }),
      ];
      proc = await launchVmm(spec, {
        argv,
        log: f.qemuLog,
        socket: f.qmpSocket,
        fds: [stateFh.fd, rwFh.fd, roFh.fd],
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
      await withQmp(f.qmpSocket, (q) => restoreFromSnapshot(q));
      await waitForEnvd(spec.network.address, {
        timeoutMs: this.options.restoreReadyTimeoutMs ?? 15_000,
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
