import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../../host/command.js';
import { isSameProcess, signalProcess, waitForExit } from '../../host/proc.js';
import { GUEST_MAC, kernelCommandLine } from '../microvm-boot.js';
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
import { FirecrackerApi } from './firecracker-api.js';

export interface FirecrackerRuntimeOptions {
  binary?: string;
}

/** Host memory Firecracker needs beyond the guest's RAM. */
const OVERHEAD_MIB = 64;

export interface FirecrackerFiles {
  socket: string;
  log: string;
  /** The sandbox's writable layer, overlaid by the guest on the read-only template disk. */
  scratch: string;
}

export function firecrackerFiles(spec: SandboxRef): FirecrackerFiles {
  return {
    socket: join(spec.dir, 'firecracker.sock'),
    log: join(spec.dir, 'firecracker.log'),
    scratch: join(spec.dir, 'scratch.ext4'),
  };
}

/** The firecracker command line: the API socket and the instance id, nothing else. */
export function firecrackerArgv(
  spec: RuntimeSpec,
  files: FirecrackerFiles,
  binary = 'firecracker',
): string[] {
  return [binary, '--api-sock', files.socket, '--id', `aiva-${spec.id}`];
}

/**
 * Configures a Firecracker process that has opened its API socket and boots the guest,
 * in the order the API requires (everything pre-boot, then InstanceStart). Firecracker
 * has no copy-on-write disks: the template's ext4 is attached read-only as vda, the
 * sandbox's own ext4 as vdb, and the initramfs overlays them (aiva.upper).
 */
export async function configureAndBoot(
  api: FirecrackerApi,
  spec: RuntimeSpec,
  files: FirecrackerFiles,
): Promise<void> {
  if (!spec.kernel) throw new SandboxSpecError('the firecracker runtime needs a guest kernel');
  if (!spec.network.tap) throw new SandboxSpecError('the firecracker runtime needs a TAP device');
  await api.putLogger({ log_path: files.log, level: 'Warning', show_level: true });
  await api.putMachineConfig({
    vcpu_count: spec.resources.vcpus,
    mem_size_mib: spec.resources.memoryMiB,
    smt: false,
  });
  await api.putBootSource({
    kernel_image_path: spec.kernel.vmlinux,
    initrd_path: spec.kernel.initrd,
    boot_args: kernelCommandLine(spec, { root: '/dev/vda', upper: '/dev/vdb', reboot: 'k' }),
  });
  await api.putDrive({
    drive_id: 'template',
    path_on_host: spec.template.disk,
    is_root_device: false,
    is_read_only: true,
  });
  await api.putDrive({
    drive_id: 'scratch',
    path_on_host: files.scratch,
    is_root_device: false,
    is_read_only: false,
  });
  await api.putNetworkInterface({ iface_id: 'eth0', host_dev_name: spec.network.tap, guest_mac: GUEST_MAC });
  await api.putEntropy();
  await api.action({ action_type: 'InstanceStart' });
}

/**
 * Sandboxes as Firecracker microVMs, driven through Firecracker's REST API on its unix
 * socket. Selected where the `firecracker` binary is on PATH and KVM runs ordinary
 * guests; it cannot run on hosts like ours (PVM), so its request sequence is tested
 * against a recording server and its disk layout by booting it under QEMU.
 *
 * Confinement is the sandbox's cgroup and network namespace, as for QEMU; the jailer
 * is not used (it would need the template's files linked into its chroot).
 */
export class FirecrackerRuntime implements SandboxRuntime {
  readonly name = 'firecracker' as const;

  constructor(readonly options: FirecrackerRuntimeOptions = {}) {}

  async create(spec: RuntimeSpec, signal?: AbortSignal): Promise<void> {
    if (!spec.kernel) throw new SandboxSpecError('the firecracker runtime needs a guest kernel');
    const f = firecrackerFiles(spec);
    try {
      // Sparse: only what the sandbox writes takes space.
      await runCommand(
        'mkfs.ext4',
        [
          '-F',
          '-q',
          '-m',
          '0',
          '-E',
          'lazy_itable_init=1,lazy_journal_init=1',
          f.scratch,
          `${spec.resources.diskMiB}M`,
        ],
        { signal },
      );
      await (await open(f.log, 'a')).close();
      await createVmmCgroup(spec, {
        memoryBytes: (spec.resources.memoryMiB + OVERHEAD_MIB) * 1024 * 1024,
        cpus: spec.resources.vcpus,
        pids: 256,
      });
    } catch (e) {
      await this.destroy(spec, undefined);
      throw new RuntimeError(`cannot prepare the microVM: ${(e as Error).message}`, { cause: e });
    }
  }

  async start(spec: RuntimeSpec, signal?: AbortSignal): Promise<RuntimeState> {
    const f = firecrackerFiles(spec);
    const proc = await launchVmm(spec, {
      argv: firecrackerArgv(spec, f, this.options.binary),
      log: spec.consoleLog,
      socket: f.socket,
      signal,
    });
    const state: RuntimeState = { driver: 'firecracker', ...proc, accel: 'kvm' };
    try {
      await configureAndBoot(new FirecrackerApi(f.socket), spec, f);
    } catch (e) {
      await killVmm(spec, state);
      throw new RuntimeError(`Firecracker did not boot the guest: ${(e as Error).message}`, { cause: e });
    }
    return state;
  }

  async pause(spec: SandboxRef): Promise<void> {
    await new FirecrackerApi(firecrackerFiles(spec).socket).patchVm({ state: 'Paused' });
  }

  async resume(spec: SandboxRef): Promise<void> {
    await new FirecrackerApi(firecrackerFiles(spec).socket).patchVm({ state: 'Resumed' });
  }

  async stop(spec: SandboxRef, state: RuntimeState, graceMs: number): Promise<void> {
    if (!(await isSameProcess(state.pid, state.pidStartTime))) return;
    // Ctrl-Alt-Del makes the guest kernel reboot, which (reboot=k) ends Firecracker.
    await new FirecrackerApi(firecrackerFiles(spec).socket)
      .action({ action_type: 'SendCtrlAltDel' })
      .catch(() => {});
    if (await waitForExit(state.pid, state.pidStartTime, graceMs)) return;
    await signalProcess(state.pid, state.pidStartTime, 'SIGKILL');
    await waitForExit(state.pid, state.pidStartTime, 5000);
  }

  async destroy(spec: SandboxRef, state: RuntimeState | undefined): Promise<void> {
    await killVmm(spec, state);
    const f = firecrackerFiles(spec);
    await Promise.all([rm(f.scratch, { force: true }), rm(f.socket, { force: true })]);
  }

  async sweep(): Promise<void> {
    // Nothing outside the sandbox's directory and cgroup.
  }

  async alive(state: RuntimeState): Promise<boolean> {
    return isSameProcess(state.pid, state.pidStartTime);
  }

  async stats(spec: SandboxRef): Promise<RuntimeStats> {
    return vmmStats(spec);
  }
}
