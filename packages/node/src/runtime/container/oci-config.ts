import { GUEST_INIT } from '../../image/image-types.js';
import { type RuntimeSpec, sandboxCgroupPath } from '../types.js';
import { seccompProfile } from './seccomp-profile.js';
import type { UserCgroup } from './user-cgroup.js';

/** Docker's default capability set: enough for root in the sandbox to manage its own users and files. */
export const CONTAINER_CAPABILITIES = [
  'CAP_AUDIT_WRITE',
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_MKNOD',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_RAW',
  'CAP_SETFCAP',
  'CAP_SETGID',
  'CAP_SETPCAP',
  'CAP_SETUID',
  'CAP_SYS_CHROOT',
];

export const MAX_PIDS = 4096;

/** The cgroup (relative to the hierarchy root) a sandbox's container lives in. */
export const containerCgroupPath = (id: string, cgroupParent?: string) =>
  sandboxCgroupPath({ id, cgroupParent });

const tmpfs = (destination: string, options: string[]) => ({
  destination,
  type: 'tmpfs',
  source: 'tmpfs',
  options,
});

/**
 * The OCI runtime config (config.json) of a container sandbox: the template's init as
 * PID 1 in new pid, mount, uts, ipc and cgroup namespaces, inside the sandbox's network
 * namespace; Docker's capabilities, masked and read-only /proc paths, a seccomp filter
 * and cgroup limits.
 *
 * `noNewPrivileges` stays off when the template's user has sudo: no_new_privs would stop
 * sudo (a setuid program) from working, and E2B's base template promises it does.
 */
export function ociConfig(
  spec: RuntimeSpec,
  rootfs: string,
  options: {
    noNewPrivileges: boolean;
    maxOpenFiles: number;
    /** The node may lower a score (CAP_SYS_RESOURCE): init and envd get -1000. */
    protectAgent: boolean;
    /** The user's cgroup inside the sandbox's, bound into the sandbox (`UserCgroup`). */
    userCgroup?: UserCgroup;
    /** Host CPUs to pin the container to (a cpuset list, `0-1`), so that nproc inside is `vcpus`. */
    cpus?: string;
    /** Bind mounts of LXCFS's files over /proc and /sys ones, so that free and os.cpus() inside see the limits. */
    lxcfsMounts?: object[];
    /** Bind mounts of the sandbox's volumes (`volume-binds.ts`), last: over anything above. */
    volumeMounts?: object[];
  },
): object {
  const caps = CONTAINER_CAPABILITIES;
  const { memoryMiB, vcpus } = spec.resources;
  const user = options.userCgroup;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [GUEST_INIT],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', `HOSTNAME=${spec.hostname}`],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: options.maxOpenFiles, soft: options.maxOpenFiles }],
      noNewPrivileges: options.noNewPrivileges,
      // init and envd: the out-of-memory killer takes the user's processes (aiva-exec
      // gives them 500) before the sandbox's agent, and never it where -1000 is allowed.
      oomScoreAdj: options.protectAgent ? -1000 : 0,
    },
    root: { path: rootfs, readonly: false },
    hostname: spec.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      tmpfs('/dev', ['nosuid', 'strictatime', 'mode=755', 'size=65536k']),
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
      },
      tmpfs('/dev/shm', ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k']),
      {
        destination: '/dev/mqueue',
        type: 'mqueue',
        source: 'mqueue',
        options: ['nosuid', 'noexec', 'nodev'],
      },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      {
        destination: '/sys/fs/cgroup',
        type: 'cgroup',
        source: 'cgroup',
        options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
      },
      // Memory-backed, so bounded: /tmp is on the sandbox's disk instead.
      tmpfs('/run', ['nosuid', 'nodev', 'mode=755', 'size=65536k']),
      ...(user?.mounts() ?? []),
      ...(options.lxcfsMounts ?? []),
      ...(options.volumeMounts ?? []),
    ],
    linux: {
      namespaces: [
        { type: 'pid' },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'mount' },
        { type: 'cgroup' },
        { type: 'network', path: `/run/netns/${spec.network.netns}` },
      ],
      cgroupsPath: `/${sandboxCgroupPath(spec)}`,
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        memory: { limit: memoryMiB * 1024 * 1024, swap: memoryMiB * 1024 * 1024 },
        cpu: { quota: vcpus * 100_000, period: 100_000, ...(options.cpus ? { cpus: options.cpus } : {}) },
        pids: { limit: MAX_PIDS },
      },
      seccomp: seccompProfile(),
      maskedPaths: [
        '/proc/acpi',
        '/proc/asound',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/proc/scsi',
        '/sys/firmware',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
