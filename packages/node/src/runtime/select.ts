import { readFile } from 'node:fs/promises';
import { cgroupLayout, hybridV2Controllers } from '../host/cgroups.js';
import { runCommand } from '../host/command.js';
import { CpuPlacement } from '../host/cpu-placement.js';
import { DEFAULT_HOST_SCOPE, type HostScope } from '../host/host-scope.js';
import { type IdmappedOverlaySupport, idmappedOverlaySupported } from '../host/idmapped-overlay.js';
import { kvmStatus } from '../host/kvm.js';
import { Lxcfs, lxcfsStatus } from '../host/lxcfs.js';
import { checkNetwork, type NetworkCheck } from '../network/network-checks.js';
import { ContainerRuntime, type OciRuntime } from './container/container-runtime.js';
import { FirecrackerRuntime } from './firecracker/firecracker-runtime.js';
import { QemuRuntime } from './qemu/qemu-runtime.js';
import type { DriverName, SandboxRuntime } from './types.js';

/** What one driver (or one variant of it) can do on this host, and why. */
export interface DriverCheck {
  driver: DriverName;
  /** e.g. `runc`, `crun`, `kvm`, `tcg`. */
  variant: string;
  available: boolean;
  /** Works, but badly (a microVM under full emulation). */
  degraded: boolean;
  reason: string;
  /** What to install or change to make it work (or work better). */
  fix?: string;
  /** Containers: each sandbox runs in a user namespace of its own (its root is an unprivileged host user). */
  userNamespaces?: boolean;
}

export interface HostCapabilities {
  checks: DriverCheck[];
  /** The driver a sandbox gets when none is asked for. */
  defaultDriver: DriverName | undefined;
  /** Unprivileged user for QEMU's `-runas`, if the host has one. */
  vmUser?: string;
  /** Network prerequisites of every driver (namespaces, nftables, forwarding, DNS). */
  network: NetworkCheck[];
  /** Whether containers can run in user namespaces here (idmapped overlays), and how layers are passed. */
  idmappedOverlay: IdmappedOverlaySupport;
}

/** Why containers get no user namespace here, and the fix, in `aiva doctor`'s words ('' when they do). */
export function withoutUserNamespaces(
  oci: string,
  support: IdmappedOverlaySupport,
  env: NodeJS.ProcessEnv = process.env,
): { why: string; fix?: string } {
  const wanted = userNamespacesSetting(env);
  if (!wanted)
    return {
      why: "no user namespaces: turned off (AIVA_USER_NAMESPACES=off); the sandbox's root is the host's root",
    };
  if (oci !== 'runc')
    return {
      why: `no user namespaces (not tested with ${oci}: only runc joins them here)`,
      fix: 'install runc (apt-get install runc) to run containers in user namespaces',
    };
  if (support.supported) return { why: '' };
  return {
    why: `no user namespaces: the sandbox's root is the host's root (idmapped overlays do not work here: ${support.reason})`,
    fix: 'a kernel with idmapped overlayfs layers (Linux 6.8 or later; the layers on ext4, xfs or btrfs) and user namespaces enabled (user.max_user_namespaces > 0)',
  };
}

/** `AIVA_USER_NAMESPACES`: on (the default, where the host can) or off. */
export function userNamespacesSetting(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env.AIVA_USER_NAMESPACES ?? '').trim().toLowerCase();
  if (['', 'on', '1', 'true', 'yes'].includes(v)) return true;
  if (['off', '0', 'false', 'no'].includes(v)) return false;
  throw new Error(`AIVA_USER_NAMESPACES must be on or off, not ${JSON.stringify(env.AIVA_USER_NAMESPACES)}`);
}

/** The unprivileged user QEMU runs as after start-up (created by scripts/setup-host.mjs). */
export const VM_USER = 'aiva-vm';

async function version(cmd: string, args = ['--version']): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await runCommand(cmd, args);
    return (stdout || stderr).split('\n')[0]?.trim();
  } catch {
    return undefined;
  }
}

async function userExists(name: string): Promise<boolean> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  return passwd.split('\n').some((l) => l.startsWith(`${name}:`));
}

/** Checks every driver variant on this host. */
export async function checkHost(): Promise<HostCapabilities> {
  const network = checkNetwork();
  const checks: DriverCheck[] = [];
  const layout = await cgroupLayout();
  const overlay = (await readFile('/proc/filesystems', 'utf8').catch(() => '')).includes('overlay');
  const kvm = await kvmStatus();

  // Containers.
  const v2Controllers = layout === 'hybrid' ? await hybridV2Controllers() : [];
  const procViews = await lxcfsStatus();
  const idmapped = await idmappedOverlaySupported();
  for (const oci of ['crun', 'runc'] as const) {
    const v = await version(oci);
    const check: DriverCheck = {
      driver: 'container',
      variant: oci,
      available: false,
      degraded: false,
      reason: '',
    };
    if (!v) {
      check.reason = `${oci} is not installed`;
      check.fix = `apt-get install ${oci}`;
    } else if (!overlay) {
      check.reason = 'the kernel has no overlay filesystem';
      check.fix = 'modprobe overlay';
    } else if (oci === 'crun' && v2Controllers.length > 0) {
      check.reason = `${v}: refuses hybrid cgroups while the cgroup2 hierarchy has controllers (${v2Controllers.join(', ')})`;
      check.fix = `mount the v1 hierarchy of ${v2Controllers.join(', ')} (e.g. mount -t cgroup -o ${v2Controllers.join(',')} none /sys/fs/cgroup/${v2Controllers[0]}) or boot with cgroup v2 only`;
    } else {
      check.available = true;
      const no = withoutUserNamespaces(oci, idmapped);
      check.userNamespaces = !no.why;
      const userns = idmapped.supported
        ? `each sandbox in a user namespace of its own (its root an unprivileged host id range; idmapped layers passed by ${idmapped.passing})`
        : '';
      check.reason = `${v}, cgroups ${layout}; ${no.why || userns}; ${procViews.detail}`;
      check.fix = [no.fix, procViews.fix].filter(Boolean).join('; ') || undefined;
    }
    checks.push(check);
  }

  // QEMU microVMs.
  const qemu = await version('qemu-system-x86_64');
  const qemuImg = await version('qemu-img');
  const missingQemu = !qemu ? 'qemu-system-x86' : !qemuImg ? 'qemu-utils' : undefined;
  checks.push({
    driver: 'qemu-microvm',
    variant: 'kvm',
    available: !missingQemu && kvm.standardGuests,
    degraded: false,
    reason: missingQemu ? `${missingQemu} is not installed` : kvm.reason,
    fix: missingQemu
      ? `apt-get install ${missingQemu}`
      : kvm.standardGuests
        ? undefined
        : 'run on a host (or a VM with nested virtualization) whose CPU exposes vmx or svm',
  });
  checks.push({
    driver: 'qemu-microvm',
    variant: 'tcg',
    available: !missingQemu,
    degraded: true,
    reason: missingQemu
      ? `${missingQemu} is not installed`
      : 'full emulation (TCG): a real VM, boots in seconds and runs several times slower than KVM',
    fix: missingQemu ? `apt-get install ${missingQemu}` : undefined,
  });

  // Firecracker.
  const fc = await version('firecracker');
  checks.push({
    driver: 'firecracker',
    variant: 'kvm',
    available: Boolean(fc) && kvm.standardGuests,
    degraded: false,
    reason: !fc ? 'firecracker is not on PATH' : kvm.standardGuests ? fc : kvm.reason,
    fix: !fc ? 'install the firecracker binary (and jailer) from its releases onto PATH' : undefined,
  });

  const pick = (driver: DriverName, variant?: string) =>
    checks.find((c) => c.driver === driver && c.available && (!variant || c.variant === variant));
  // firecracker > qemu-microvm on real KVM > container (one that runs sandboxes in user
  // namespaces first) > qemu-microvm under TCG.
  const best =
    pick('firecracker') ??
    pick('qemu-microvm', 'kvm') ??
    pickContainer(checks) ??
    pick('qemu-microvm', 'tcg');
  return {
    idmappedOverlay: idmapped,
    checks,
    defaultDriver: best?.driver,
    vmUser: (await userExists(VM_USER)) ? VM_USER : undefined,
    network: await network,
  };
}

/** The container variant to use: the first available that runs sandboxes in user namespaces, else the first available. */
function pickContainer(checks: DriverCheck[]): DriverCheck | undefined {
  const ok = checks.filter((c) => c.driver === 'container' && c.available);
  return ok.find((c) => c.userNamespaces) ?? ok[0];
}

export interface RuntimeConfig {
  /**
   * What of the host is this node's: OCI runtime state and LXCFS go under its `stateDir`,
   * CPU placement reads the cpusets under its `cgroupParent`. Default: the host's only node (/run/aiva).
   */
  scope?: HostScope;
  /** Force a container OCI runtime instead of the first that works. */
  oci?: OciRuntime;
  /** Where qemu-microvm keeps VM snapshots (VM templating); without it every microVM cold-boots. */
  vmSnapshotDir?: string;
  /** false: containers without user namespaces even where the host can (default: where it can). */
  userNamespaces?: boolean;
}

/** The runtimes this host can run, built from `checkHost`. */
export function createRuntimes(
  host: HostCapabilities,
  config: RuntimeConfig = {},
): Map<DriverName, SandboxRuntime> {
  const scope = config.scope ?? DEFAULT_HOST_SCOPE;
  const stateRoot = scope.stateDir;
  const runtimes = new Map<DriverName, SandboxRuntime>();
  const ok = (driver: DriverName, variant?: string) =>
    host.checks.find((c) => c.driver === driver && c.available && (!variant || c.variant === variant));
  const oci = config.oci ? ok('container', config.oci) : pickContainer(host.checks);
  if (config.oci && !oci) {
    const why = host.checks.find((c) => c.driver === 'container' && c.variant === config.oci)?.reason;
    throw new Error(`${config.oci} cannot run containers here: ${why}`);
  }
  if (oci) {
    runtimes.set(
      'container',
      new ContainerRuntime({
        oci: oci.variant as OciRuntime,
        stateRoot: `${stateRoot}/${oci.variant}`,
        lxcfs: Lxcfs.forNode(stateRoot),
        cpuPlacement: new CpuPlacement(undefined, scope.cgroupParent),
        userNamespaces:
          oci.userNamespaces && host.idmappedOverlay.supported && config.userNamespaces !== false
            ? { passing: host.idmappedOverlay.passing }
            : undefined,
      }),
    );
  }
  const qemu = ok('qemu-microvm', 'kvm') ?? ok('qemu-microvm', 'tcg');
  if (qemu)
    runtimes.set(
      'qemu-microvm',
      new QemuRuntime({
        accel: qemu.variant as 'kvm' | 'tcg',
        runAs: host.vmUser,
        snapshotDir: config.vmSnapshotDir,
      }),
    );
  if (ok('firecracker')) runtimes.set('firecracker', new FirecrackerRuntime());
  return runtimes;
}
