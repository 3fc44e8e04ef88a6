import { access, constants, open, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { runCommand } from '../../host/command.js';
import { isSameProcess, signalProcess, waitForExit } from '../../host/proc.js';
import { GUEST_MAC, kernelCommandLine } from '../microvm-boot.js';
import {
  type CheckpointResult,
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
import { FirecrackerApi } from './firecracker-api.js';

export interface FirecrackerRuntimeOptions {
  binary?: string;
}

/** Host memory Firecracker needs beyond the guest's RAM. */
const OVERHEAD_MIB = 64;

/**
 * The scratch disk's path as Firecracker is given it: relative to its working directory,
 * which is the sandbox's directory. A snapshot records each drive's path as given and a
 * restoring process re-opens exactly that path; the API has no way to re-point a drive
 * at load (`PUT /snapshot/load` overrides TAP names and the vsock socket, not drives, and
 * `PATCH /drives` works only on a VM already loaded, i.e. after the recorded path was
 * opened). Relative, the recorded path names the scratch disk of whichever sandbox runs
 * the restoring process: Firecracker's snapshot documentation asks for the same
 * *relative* paths, and opens drive paths as given, without resolving them.
 */
export const SCRATCH_DRIVE_PATH = 'scratch.ext4';

export interface FirecrackerFiles {
  socket: string;
  log: string;
  /** The sandbox's writable layer, overlaid by the guest on the read-only template disk. */
  scratch: string;
}

export function firecrackerFiles(spec: SandboxRef): FirecrackerFiles {
  const dir = resolve(spec.dir);
  return {
    socket: join(dir, 'firecracker.sock'),
    log: join(dir, 'firecracker.log'),
    scratch: join(dir, SCRATCH_DRIVE_PATH),
  };
}

/** What a Firecracker checkpoint directory holds. */
export interface FirecrackerCheckpointFiles {
  /** The microVM state file (`snapshot_path`). */
  vmstate: string;
  /** The guest memory file: mapped copy-on-write by every sandbox restored from it, so never modified. */
  memory: string;
  /** A sparse copy of the sandbox's scratch disk as it was when paused. */
  scratch: string;
}

export function firecrackerCheckpointFiles(dir: string): FirecrackerCheckpointFiles {
  const abs = resolve(dir);
  return {
    vmstate: join(abs, 'vmstate'),
    memory: join(abs, 'memory'),
    scratch: join(abs, SCRATCH_DRIVE_PATH),
  };
}

/**
 * The firecracker command line: the API socket and the instance id, run with the
 * sandbox's directory as working directory (see SCRATCH_DRIVE_PATH) by coreutils `env`,
 * which then becomes Firecracker (same pid).
 */
export function firecrackerArgv(
  spec: RuntimeSpec,
  files: FirecrackerFiles,
  binary = 'firecracker',
): string[] {
  return [
    'env',
    `--chdir=${resolve(spec.dir)}`,
    binary,
    '--api-sock',
    files.socket,
    '--id',
    `aiva-${spec.id}`,
  ];
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
  // Firecracker runs in the sandbox's directory: every path but the scratch disk's is absolute.
  await api.putBootSource({
    kernel_image_path: resolve(spec.kernel.vmlinux),
    initrd_path: resolve(spec.kernel.initrd),
    boot_args: kernelCommandLine(spec, { root: '/dev/vda', upper: '/dev/vdb', reboot: 'k' }),
  });
  // Shared by every sandbox of the template, read-only: a checkpoint may refer to it.
  await api.putDrive({
    drive_id: 'template',
    path_on_host: resolve(spec.template.disk),
    is_root_device: false,
    is_read_only: true,
  });
  await api.putDrive({
    drive_id: 'scratch',
    path_on_host: SCRATCH_DRIVE_PATH,
    is_root_device: false,
    is_read_only: false,
  });
  await api.putNetworkInterface({ iface_id: 'eth0', host_dev_name: spec.network.tap, guest_mac: GUEST_MAC });
  await api.putEntropy();
  await api.action({ action_type: 'InstanceStart' });
}

/**
 * Saves a paused VM's device state and memory into a checkpoint (a full snapshot: a
 * resumable one on its own). Firecracker writes both files itself; the disks are ours to
 * copy, after this, while the VM stays paused.
 */
export async function snapshotVm(api: FirecrackerApi, checkpoint: FirecrackerCheckpointFiles): Promise<void> {
  await api.createSnapshot({
    snapshot_type: 'Full',
    snapshot_path: checkpoint.vmstate,
    mem_file_path: checkpoint.memory,
  });
}

/**
 * Loads a checkpoint into a Firecracker process that has just opened its API socket, and
 * resumes it. The logger is the one thing the API accepts before a load, and a snapshot
 * does not keep it; the machine, drives, network and entropy device all come from the
 * snapshot. Its drives are re-opened at their recorded paths: the template's (absolute,
 * so the template must still be where it was) and SCRATCH_DRIVE_PATH in the process's
 * working directory. Its TAP is re-opened by name: `tap0`, the name the TAP has in every
 * sandbox's namespace, so the process (in the restoring sandbox's namespace) finds its own.
 * On a refused load Firecracker ends itself.
 */
export async function loadCheckpoint(
  api: FirecrackerApi,
  files: FirecrackerFiles,
  checkpoint: FirecrackerCheckpointFiles,
): Promise<void> {
  await api.putLogger({ log_path: files.log, level: 'Warning', show_level: true });
  await api.loadSnapshot({
    snapshot_path: checkpoint.vmstate,
    mem_backend: { backend_type: 'File', backend_path: checkpoint.memory },
    resume_vm: true,
  });
}

/** Copies a disk image, keeping its holes: the scratch disk is mostly unwritten. */
async function copySparse(from: string, to: string, signal?: AbortSignal): Promise<void> {
  await runCommand('cp', ['--sparse=always', from, to], { signal });
}

/** Throws a SandboxSpecError unless `dir` holds a whole Firecracker checkpoint. */
async function checkCheckpoint(dir: string): Promise<FirecrackerCheckpointFiles> {
  const checkpoint = firecrackerCheckpointFiles(dir);
  for (const file of [checkpoint.vmstate, checkpoint.memory, checkpoint.scratch]) {
    await access(file, constants.R_OK).catch(() => {
      throw new SandboxSpecError(`${dir} is not a Firecracker checkpoint: ${file} is missing`);
    });
  }
  return checkpoint;
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
  readonly capabilities: RuntimeCapabilities = {
    network: 'tap',
    guestKernel: true,
    pauseToDisk: true,
    coldResume: false,
    entropyReseed: true,
    changesAsLayer: false,
    volumes: false,
    userNamespace: false,
  };

  constructor(readonly options: FirecrackerRuntimeOptions = {}) {}

  async create(spec: RuntimeSpec, signal?: AbortSignal): Promise<void> {
    // A restore needs no kernel (it is in the checkpoint's memory), but the checkpoint.
    if (spec.restoreFrom) await checkCheckpoint(spec.restoreFrom);
    else if (!spec.kernel) throw new SandboxSpecError('the firecracker runtime needs a guest kernel');
    const f = firecrackerFiles(spec);
    try {
      // Sparse: only what the sandbox writes takes space. A restore brings its own (start).
      if (!spec.restoreFrom) {
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
      }
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
    if (spec.restoreFrom) return this.restore(spec, spec.restoreFrom, signal);
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

  /**
   * Starts the sandbox from a checkpoint: its own copy of the checkpoint's scratch disk,
   * a Firecracker launched as for a boot (same cgroup, namespace, working directory and
   * log), the snapshot loaded and resumed in place of the boot configuration. The
   * checkpoint's memory file stays mapped by the sandbox for its whole life. On failure
   * nothing of the attempt is left but the cgroup, which `create` made.
   */
  private async restore(spec: RuntimeSpec, from: string, signal?: AbortSignal): Promise<RuntimeState> {
    const f = firecrackerFiles(spec);
    let state: RuntimeState | undefined;
    try {
      const checkpoint = await checkCheckpoint(from);
      await copySparse(checkpoint.scratch, f.scratch, signal);
      const proc = await launchVmm(spec, {
        argv: firecrackerArgv(spec, f, this.options.binary),
        log: spec.consoleLog,
        socket: f.socket,
        signal,
      });
      state = { driver: 'firecracker', ...proc, accel: 'kvm' };
      await loadCheckpoint(new FirecrackerApi(f.socket), f, checkpoint);
    } catch (e) {
      await this.clearAttempt(spec, state);
      throw new RuntimeError(`Firecracker did not restore ${from}: ${(e as Error).message}`, { cause: e });
    }
    return state;
  }

  /** Removes what a failed restore made: the Firecracker process (whatever runs in the cgroup), its disk and socket. */
  private async clearAttempt(spec: RuntimeSpec, state: RuntimeState | undefined): Promise<void> {
    if (state) await killVmmProcess(state);
    // A Firecracker that failed to start up has no state: kill whatever the cgroup holds.
    await killVmmProcessesIn(spec);
    const f = firecrackerFiles(spec);
    await Promise.all([rm(f.scratch, { force: true }), rm(f.socket, { force: true })]);
  }

  /**
   * Saves the paused sandbox into `dir`: Firecracker's state and memory files, and a
   * sparse copy of the scratch disk. The template disk is not copied: it is shared,
   * read-only, and the snapshot refers to it by its absolute path. Nothing saved refers to
   * the sandbox's directory (the scratch drive's recorded path is relative, see
   * SCRATCH_DRIVE_PATH). On failure what was written into `dir` is removed.
   *
   * Sandboxes started before drive paths were relative record the scratch disk's
   * absolute path: a restore from their checkpoint would open the old sandbox's disk, or
   * fail once it is gone. The API cannot show which, so this cannot refuse them.
   */
  async checkpoint(
    sandbox: SandboxRef,
    _state: RuntimeState,
    dir: string,
    signal?: AbortSignal,
  ): Promise<CheckpointResult> {
    const f = firecrackerFiles(sandbox);
    const checkpoint = firecrackerCheckpointFiles(dir);
    try {
      await snapshotVm(new FirecrackerApi(f.socket), checkpoint);
      // The snapshot commits the drives' pending writes to the host file system, and the
      // paused guest writes nothing more: the copy matches the state just saved.
      await copySparse(f.scratch, checkpoint.scratch, signal);
    } catch (e) {
      await Promise.all(Object.values(checkpoint).map((file) => rm(file, { force: true })));
      throw new RuntimeError(`cannot checkpoint the microVM: ${(e as Error).message}`, { cause: e });
    }
    return { memory: true };
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
