import type { Stats } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Cgroup } from '../../host/cgroups.js';
import { runCommand } from '../../host/command.js';
import { type CpuPlacement, formatCpuList } from '../../host/cpu-placement.js';
import { type LayerPassing, mountIdmappedOverlay } from '../../host/idmapped-overlay.js';
import type { Lxcfs } from '../../host/lxcfs.js';
import { mountedUnder, overlayLowerdir, unmountAll } from '../../host/mounts.js';
import {
  canLowerOomScores,
  isSameProcess,
  openFilesHardLimit,
  processStartTime,
  waitForExit,
  waitForReaped,
} from '../../host/proc.js';
import { describeUnsearchable, firstUnsearchable } from '../../host/search-permission.js';
import {
  type RuntimeCapabilities,
  RuntimeError,
  type RuntimeSpec,
  type RuntimeState,
  type RuntimeStats,
  type SandboxRef,
  type SandboxRuntime,
  sandboxCgroupPath,
} from '../types.js';
import { MAX_PIDS, ociConfig } from './oci-config.js';
import { SandboxDisk } from './sandbox-disk.js';
import { UserCgroup, userPids } from './user-cgroup.js';
import { withUserNamespace } from './userns-config.js';
import { volumeAttachDir, volumeBinds } from './volume-binds.js';

export type OciRuntime = 'runc' | 'crun';

export interface ContainerRuntimeOptions {
  /** The OCI runtime binary to drive. */
  oci: OciRuntime;
  /** State directory of the OCI runtime (`--root`), kept apart from other users of runc/crun. */
  stateRoot: string;
  /** The LXCFS daemon whose /proc files containers see (their own memory and CPUs); without it, the host's. */
  lxcfs?: Lxcfs;
  /** Pins each container to `vcpus` host CPUs (nproc inside); without it, a container may run on any. */
  cpuPlacement?: CpuPlacement;
  /**
   * Run each container in the user namespace of its network attachment, over an
   * idmapped root filesystem (`idmappedOverlaySupported` says how layers are passed
   * here). Without it, the sandbox's root is the host's root (no user namespace).
   */
  userNamespaces?: { passing: LayerPassing };
}

/**
 * The container's resolver, written into the sandbox's upper layer before the overlay is
 * mounted (so the sandbox may change it like any file; the host's root cannot create
 * files through an idmapped overlay). A symlink there (systemd-resolved's stub) is
 * covered by a file. An /etc made for it takes the mode and owner of the layers' /etc;
 * a sandbox that removed its /etc (a checkpoint's whiteout) gets none.
 */
async function writeResolvConf(upper: string, lowers: readonly string[], dns: string): Promise<void> {
  const etc = join(upper, 'etc');
  const own = await lstat(etc).catch(() => undefined);
  if (own && !own.isDirectory()) return;
  if (!own) {
    // A template's rootfs may have no /etc at all (an empty or distroless image).
    let below: Stats | undefined;
    for (const l of lowers) {
      below = await stat(join(l, 'etc')).catch(() => undefined);
      if (below) break;
    }
    await mkdir(etc, { mode: 0o755 });
    if (below?.isDirectory()) {
      await chmod(etc, below.mode & 0o7777);
      await chown(etc, below.uid, below.gid);
    }
  }
  const file = join(etc, 'resolv.conf');
  await rm(file, { force: true });
  await writeFile(file, `nameserver ${dns}\n`, { mode: 0o644 });
}

/** Copies a directory with everything overlayfs keeps in it (devices for whiteouts, xattrs, owners). */
async function copyTree(from: string, to: string, signal?: AbortSignal): Promise<void> {
  await runCommand('cp', ['-a', '--sparse=always', '--no-target-directory', from, to], { signal });
}

/** The container's name for the OCI runtime. */
const containerId = (spec: SandboxRef) => `aiva-${spec.id}`;

/**
 * Sandboxes as OCI containers run by runc or crun. The root filesystem is an overlay
 * of the template's layers (read-only, shared) with a private upper layer on the
 * sandbox's own disk (`SandboxDisk`); the container joins the network namespace the
 * manager made.
 */
export class ContainerRuntime implements SandboxRuntime {
  readonly name = 'container' as const;
  readonly capabilities: RuntimeCapabilities = {
    network: 'namespace',
    guestKernel: false,
    pauseToDisk: false,
    coldResume: true,
    entropyReseed: false,
    changesAsLayer: true,
    volumes: 'shared',
    userNamespace: false,
  };

  constructor(readonly options: ContainerRuntimeOptions) {
    this.capabilities.userNamespace = Boolean(options.userNamespaces);
  }

  private oci(args: string[], signal?: AbortSignal) {
    return runCommand(this.options.oci, ['--root', this.options.stateRoot, ...args], { signal });
  }

  private paths(spec: SandboxRef) {
    const disk = new SandboxDisk(spec.dir);
    return {
      disk,
      upper: disk.upper,
      work: disk.work,
      rootfs: join(spec.dir, 'rootfs'),
      /** Where idmapped layers are attached while the overlay is made (kernels that take no fds). */
      attach: join(spec.dir, 'layers'),
      bundle: join(spec.dir, 'bundle'),
      pidFile: join(spec.dir, 'bundle', 'container.pid'),
    };
  }

  async create(spec: RuntimeSpec, signal?: AbortSignal): Promise<void> {
    const p = this.paths(spec);
    try {
      for (const d of [p.rootfs, p.bundle]) await mkdir(d, { recursive: true });
      // A sandbox paused without memory boots again over the disk it had.
      if (spec.keptDisk) await p.disk.mount(signal);
      else await p.disk.create(spec.resources.diskMiB, signal);
      // A saved sandbox's files are its upper layer: a copy of it is this one's.
      if (spec.restoreFrom) {
        await rm(p.upper, { recursive: true });
        await copyTree(join(spec.restoreFrom, 'upper'), p.upper, signal).catch((e: Error) => {
          throw /No space left/.test(e.message)
            ? new RuntimeError(`the saved files do not fit a ${spec.resources.diskMiB} MiB disk`, {
                cause: e,
              })
            : e;
        });
      }
      const layers = spec.template.rootfsLayers;
      if (spec.network.guest.dns) await writeResolvConf(p.upper, layers, spec.network.guest.dns);
      const userns = this.options.userNamespaces ? spec.network.userns : undefined;
      if (userns) {
        const { passing } = this.options.userNamespaces ?? {};
        // The manager opened its own directories to the sandbox's ids (letOtherIdsSearch).
        const blocked = await firstUnsearchable(dirname(p.rootfs));
        if (blocked) {
          throw new RuntimeError(
            `the sandbox's user namespace cannot reach its root filesystem: ${describeUnsearchable(blocked)}`,
          );
        }
        if (passing === 'path') await mkdir(p.attach, { recursive: true, mode: 0o700 });
        // The template's layers are seen as owned by the sandbox's ids, and its upper
        // layer keeps canonical owners on disk (0 for its root): checkpoints, forks and
        // build layers are usable by any other sandbox as they are.
        await mountIdmappedOverlay({
          lowers: layers,
          upper: p.upper,
          work: p.work,
          target: p.rootfs,
          ids: userns,
          userns: userns.path,
          idmapUpper: true,
          passing,
          attachDir: p.attach,
          signal,
        });
      } else {
        const { lowerdir, cwd } = overlayLowerdir(layers);
        await runCommand(
          'mount',
          [
            '-t',
            'overlay',
            'overlay',
            '-o',
            `lowerdir=${lowerdir},upperdir=${p.upper},workdir=${p.work}`,
            p.rootfs,
          ],
          { signal, cwd },
        );
      }
      const userCgroup = (await UserCgroup.supported()) ? new UserCgroup(sandboxCgroupPath(spec)) : undefined;
      await userCgroup?.create(spec.resources, userPids(spec.resources.memoryMiB, MAX_PIDS));
      // aiva-exec joins it as the sandbox's root, which is then an ordinary host user.
      if (userns) await userCgroup?.giveTo(userns.hostId);
      const base = ociConfig(spec, p.rootfs, {
        noNewPrivileges: false,
        maxOpenFiles: Math.min(1_048_576, await openFilesHardLimit()),
        protectAgent: await canLowerOomScores(),
        userCgroup,
        cpus: formatCpuList((await this.options.cpuPlacement?.place(spec.id, spec.resources.vcpus)) ?? []),
        lxcfsMounts: await this.options.lxcfs?.containerMounts(),
        volumeMounts: await volumeBinds(spec, userns, signal),
      });
      const config = userns ? withUserNamespace(base, userns) : base;
      await writeFile(join(p.bundle, 'config.json'), JSON.stringify(config, null, 2));
    } catch (e) {
      // A kept disk stays for another try (or the sandbox's end).
      await this.free(spec, undefined, Boolean(spec.keptDisk));
      throw new RuntimeError(`cannot prepare container: ${(e as Error).message}`, { cause: e });
    }
  }

  async start(spec: RuntimeSpec, signal?: AbortSignal): Promise<RuntimeState> {
    const p = this.paths(spec);
    const log = await open(spec.consoleLog, 'a');
    try {
      await mkdir(this.options.stateRoot, { recursive: true });
      // The container's init inherits these descriptors: its output goes to the console log.
      await runCommand(
        this.options.oci,
        [
          '--root',
          this.options.stateRoot,
          'run',
          '--detach',
          '--bundle',
          p.bundle,
          '--pid-file',
          p.pidFile,
          containerId(spec),
        ],
        { signal, outputFd: log.fd },
      );
    } catch (e) {
      const console = await readFile(spec.consoleLog, 'utf8').catch(() => '');
      throw new RuntimeError(
        `${this.options.oci} could not start the container (${(e as Error).message.split('\n')[0]}): ${console.slice(-2000).trim()}`,
        { cause: e },
      );
    } finally {
      await log.close();
    }
    const pid = Number((await readFile(p.pidFile, 'utf8')).trim());
    const pidStartTime = await processStartTime(pid);
    if (!pidStartTime)
      throw new RuntimeError('the container exited as soon as it started; see its console log');
    return { driver: 'container', pid, pidStartTime, oci: this.options.oci };
  }

  async pause(spec: SandboxRef): Promise<void> {
    await this.oci(['pause', containerId(spec)]);
  }

  async resume(spec: SandboxRef): Promise<void> {
    await this.oci(['resume', containerId(spec)]);
  }

  /**
   * Saves the frozen container's files: its upper layer (what it changed over the
   * template), with overlayfs' whiteouts and xattrs. Not its processes: CRIU, which
   * would save them, fails on this host's kernel (`criu check`: vdso); a restore boots
   * afresh over the files.
   */
  async checkpoint(spec: SandboxRef, _state: RuntimeState, dir: string, signal?: AbortSignal) {
    await copyTree(this.paths(spec).upper, join(dir, 'upper'), signal);
    return { memory: false };
  }

  async stop(spec: SandboxRef, state: RuntimeState, graceMs: number): Promise<void> {
    if (!(await isSameProcess(state.pid, state.pidStartTime))) return;
    // A frozen container cannot act on SIGTERM.
    await this.oci(['resume', containerId(spec)]).catch(() => {});
    await this.oci(['kill', containerId(spec), 'TERM']).catch(() => {});
    if (await waitForExit(state.pid, state.pidStartTime, graceMs)) return;
    await this.oci(['kill', containerId(spec), 'KILL']).catch(() => {});
    await waitForExit(state.pid, state.pidStartTime, 5000);
  }

  destroy(spec: SandboxRef, state: RuntimeState | undefined): Promise<void> {
    return this.free(spec, state, false);
  }

  /** Everything but the disk image (its upper layer): the container, its root, cgroups, bundle. */
  shutdown(spec: SandboxRef, state: RuntimeState | undefined): Promise<void> {
    return this.free(spec, state, true);
  }

  private async free(spec: SandboxRef, state: RuntimeState | undefined, keepDisk: boolean): Promise<void> {
    const p = this.paths(spec);
    const id = containerId(spec);
    const cgroupPath = sandboxCgroupPath(spec);
    const processes = [
      ...(await (await Cgroup.at(cgroupPath)).pids()),
      ...(await (await Cgroup.at(`${cgroupPath}/user`)).pids()),
    ];
    // `delete --force` kills and removes the container, its cgroup and its state, even when frozen.
    await this.oci(['delete', '--force', id]).catch(() => {});
    if (state) await waitForExit(state.pid, state.pidStartTime, 5000);
    // Gone when this returns, not only killed: reaped by the host's init, which can lag.
    await waitForReaped(processes, 5000);
    // Whatever runc could not remove (a container that never got a state): the cgroups by
    // hand, the user's (inside the sandbox's) first.
    await new UserCgroup(cgroupPath).destroy();
    const cgroup = await Cgroup.at(cgroupPath);
    if (await cgroup.exists()) await cgroup.destroy();
    await unmountAll(spec.dir);
    if ((await mountedUnder(spec.dir)).length > 0) {
      throw new RuntimeError(`cannot unmount the root filesystem of ${spec.id}`);
    }
    await rm(p.rootfs, { recursive: true, force: true });
    await rm(p.attach, { recursive: true, force: true });
    // Only empty mount points: the volumes were unmounted above (or nothing is removed).
    await rm(volumeAttachDir(spec.dir), { recursive: true, force: true });
    if (!keepDisk) await p.disk.remove();
    await rm(p.bundle, { recursive: true, force: true });
    this.options.cpuPlacement?.release(spec.id);
  }

  async sweep(keep: Set<string>): Promise<void> {
    for (const id of await this.containerIds()) {
      if (!keep.has(id.slice(5))) await this.oci(['delete', '--force', id]).catch(() => {});
    }
    await this.options.cpuPlacement?.recover(keep);
  }

  /** Stops LXCFS when no aiva container runs on this host (whichever node made it). */
  async releaseHostServices(): Promise<void> {
    if (!this.options.lxcfs || (await this.containerIds()).length > 0) return;
    // Nothing reads through it: no need to wait for a graceful exit.
    await this.options.lxcfs.stop('SIGKILL');
  }

  private async containerIds(): Promise<string[]> {
    const { stdout } = await this.oci(['list', '--format', 'json']).catch(() => ({ stdout: 'null' }));
    const containers = (JSON.parse(stdout || 'null') ?? []) as { id: string }[];
    return containers.map((c) => c.id).filter((id) => id.startsWith('aiva-'));
  }

  async alive(state: RuntimeState): Promise<boolean> {
    return isSameProcess(state.pid, state.pidStartTime);
  }

  async stats(spec: SandboxRef): Promise<RuntimeStats> {
    const usage = await (await Cgroup.at(sandboxCgroupPath(spec))).usage();
    return {
      cpuUsageUs: usage.cpuUsageUs,
      memoryBytes: usage.memoryBytes,
      memoryLimitBytes: usage.memoryLimitBytes,
      pids: usage.pids,
    };
  }
}
