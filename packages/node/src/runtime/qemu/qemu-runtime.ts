import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../../host/command.js';
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
import { createVmmCgroup, killVmm, launchVmm, vmmStats } from '../vmm-process.js';
import { type Accel, qemuArgs } from './qemu-args.js';
import { withQmp } from './qmp-client.js';

export interface QemuRuntimeOptions {
  accel: Accel;
  /** Unprivileged user QEMU switches to after start-up (`-runas`), if any. */
  runAs?: string;
  binary?: string;
}

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
    const f = this.files(spec);
    try {
      // Copy-on-write over the template's read-only disk: only what the sandbox writes takes space.
      await runCommand(
        'qemu-img',
        [
          'create',
          '-q',
          '-f',
          'qcow2',
          '-F',
          'raw',
          '-b',
          spec.template.disk,
          f.disk,
          `${spec.resources.diskMiB}M`,
        ],
        { signal },
      );
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

  async start(spec: RuntimeSpec, signal?: AbortSignal): Promise<RuntimeState> {
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
    await Promise.all([rm(f.disk, { force: true }), rm(f.qmpSocket, { force: true })]);
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
