import type { ResolvedKernel, ResolvedTemplate } from '../image/image-types.js';

export const DRIVER_NAMES = ['container', 'qemu-microvm', 'firecracker'] as const;
export type DriverName = (typeof DRIVER_NAMES)[number];

export interface SandboxResources {
  vcpus: number;
  memoryMiB: number;
  diskMiB: number;
}

/**
 * A sandbox's own user namespace, pinned on `path`: its ids 0..count-1 are host ids
 * hostId… (uid_map and gid_map `0 hostId count`). It owns the sandbox's network namespace.
 */
export interface SandboxUserNamespace {
  path: string;
  hostId: number;
  count: number;
}

/** How a sandbox is attached to the host network (prepared by the network module). */
export interface SandboxNetworkAttachment {
  /** Network namespace name (under /run/netns) the sandbox lives in. */
  netns: string;
  /**
   * The user namespace that owns the network namespace, when the node makes them
   * (`RuntimeCapabilities.userNamespace`): a container runs in it; a microVM ignores it.
   */
  userns?: SandboxUserNamespace;
  /** The address by which the host reaches the sandbox's ports. */
  address: string;
  /** What the guest configures on its interface (microVMs configure it themselves). */
  guest: { address: string; prefix: number; gateway: string; dns?: string };
  /** For microVMs: the TAP device inside the namespace. */
  tap?: string;
}

/** Everything a driver needs to run one sandbox. */
export interface RuntimeSpec {
  id: string;
  /** The sandbox's own directory (created and removed by the manager). */
  dir: string;
  /** The cgroup under which the sandbox's cgroup `<cgroupParent>/<id>` is made (default `aiva`). */
  cgroupParent?: string;
  template: ResolvedTemplate;
  /** microVM drivers only. */
  kernel?: ResolvedKernel;
  resources: SandboxResources;
  network: SandboxNetworkAttachment;
  hostname: string;
  /** Where the guest's console output (init and envd) goes. */
  consoleLog: string;
  /**
   * A checkpoint directory this driver made (`checkpoint`): the sandbox starts from it
   * instead of from the template, and `start` fails rather than boot without it.
   */
  restoreFrom?: string;
  /**
   * The sandbox's disk from an earlier run is in its directory (`shutdown` kept it):
   * `create` and `start` boot the sandbox afresh over it instead of making a new one.
   */
  keptDisk?: boolean;
  /**
   * The node's volumes in the sandbox at `path`, read-write (drivers with
   * `capabilities.volumes`): a `shared` driver binds the volume's mounted directory
   * `hostDir`, an `exclusive` one attaches its ext4 image `image` as a disk of its own
   * (the node has unmounted it from the host first).
   */
  volumes?: { hostDir: string; image: string; path: string }[];
}

/** What `SandboxRuntime.checkpoint` saved. */
export interface CheckpointResult {
  /**
   * true: memory and device state too; a restore resumes the sandbox's processes where
   * they were (and its envd still holds the old access token). false: the filesystem
   * only; a restore boots afresh over it.
   */
  memory: boolean;
}

/** What identifies a sandbox to its driver once it runs: enough to control and remove it. */
export type SandboxRef = Pick<RuntimeSpec, 'id' | 'dir' | 'cgroupParent'>;

/** The cgroup (relative to the hierarchy root) of a sandbox: its process tree, limits and usage. */
export const sandboxCgroupPath = (sandbox: Pick<SandboxRef, 'id' | 'cgroupParent'>) =>
  `${sandbox.cgroupParent ?? 'aiva'}/${sandbox.id}`;

/** What a driver records about a running sandbox so that it can find it again after a restart. */
export interface RuntimeState {
  driver: DriverName;
  /** The process that is the sandbox: QEMU, or the container's init. */
  pid: number;
  /** Start time of `pid` (clock ticks since boot, /proc/PID/stat field 22): guards against pid reuse. */
  pidStartTime: number;
  /** How the guest is accelerated (microVMs): kvm or tcg. */
  accel?: 'kvm' | 'tcg';
  /** The template's start command already runs (restored from a snapshot taken once it was ready). */
  startCommandRunning?: boolean;
  [extra: string]: unknown;
}

export interface RuntimeStats {
  /** CPU time used by the sandbox, in microseconds. */
  cpuUsageUs: number;
  /** Host memory charged to the sandbox, in bytes. */
  memoryBytes: number;
  memoryLimitBytes: number;
  pids?: number;
}

/**
 * What a driver can do, declared once by the driver, so that the sandbox manager asks
 * about a capability instead of about a driver's name.
 */
export interface RuntimeCapabilities {
  /**
   * How the sandbox joins its network namespace: its processes live in the namespace
   * (`namespace`, containers), or a guest kernel drives a TAP device there (`tap`).
   */
  network: 'namespace' | 'tap';
  /** It boots a guest kernel from the image store. */
  guestKernel: boolean;
  /** A paused sandbox can be saved to disk (`checkpoint`) and its process ended; a start with `restoreFrom` brings it back. */
  pauseToDisk: boolean;
  /**
   * Its processes can be ended with its disk kept (`shutdown`), and a `create` + `start`
   * with `keptDisk` boots it again over that disk: a pause without memory.
   */
  coldResume: boolean;
  /**
   * The guest has a kernel RNG of its own, which envd's `/init` reseeds with host entropy
   * (microVMs: clones of one saved VM would share its random state). Containers share the host's.
   */
  entropyReseed: boolean;
  /**
   * `checkpoint` saves the sandbox's file changes as an overlay upper directory
   * (`<dir>/upper`, whiteouts included): what a template build step's layer is.
   */
  changesAsLayer: boolean;
  /**
   * Its sandboxes run in the user namespace of their network attachment (`userns`):
   * the network namespaces the node makes are then made inside user namespaces.
   */
  userNamespace: boolean;
  /**
   * How it mounts the node's volumes (`RuntimeSpec.volumes`): `shared` binds the
   * volume's directory, mounted on the host, so that many sandboxes (and the content
   * API) use it at once; `exclusive` attaches its image as the guest's own disk, so
   * that one sandbox holds it, from its create to its end, and nothing else may mount
   * it meanwhile; `false`: not at all (a create that asks is refused).
   */
  volumes: false | 'shared' | 'exclusive';
}

/**
 * One way of running sandboxes. Drivers execute; the sandbox manager decides. Every
 * method is safe to call on partial state (after a failed `create` or `start`), and
 * `destroy` frees everything the driver took, whatever state it is in.
 */
export interface SandboxRuntime {
  readonly name: DriverName;
  readonly capabilities: RuntimeCapabilities;
  /** Prepares host resources (disk, bundle, cgroup) without running anything. */
  create(spec: RuntimeSpec, signal?: AbortSignal): Promise<void>;
  /** Runs the sandbox; resolves once the guest is starting (envd readiness is the manager's concern). */
  start(spec: RuntimeSpec, signal?: AbortSignal): Promise<RuntimeState>;
  /** Freezes every vCPU or process; memory stays. */
  pause(sandbox: SandboxRef, state: RuntimeState): Promise<void>;
  resume(sandbox: SandboxRef, state: RuntimeState): Promise<void>;
  /**
   * Saves a paused sandbox into `dir` (an empty directory the manager made), such that a
   * create with `restoreFrom: dir` makes an independent copy of it: nothing the copy
   * uses may point back into the sandbox's own directory. The sandbox stays paused.
   */
  checkpoint(
    sandbox: SandboxRef,
    state: RuntimeState,
    dir: string,
    signal?: AbortSignal,
  ): Promise<CheckpointResult>;
  /** Asks the guest to stop, waits up to `graceMs`, then kills it. Host resources stay. */
  stop(sandbox: SandboxRef, state: RuntimeState, graceMs: number): Promise<void>;
  /**
   * Kills whatever runs and frees every host resource the driver took except the
   * sandbox's disk, which stays in its directory for a start with `keptDisk` (drivers
   * with `coldResume`). Idempotent; `destroy` still frees everything after it.
   */
  shutdown?(sandbox: SandboxRef, state: RuntimeState | undefined): Promise<void>;
  /**
   * Kills whatever runs and frees every host resource the driver took. Idempotent, and
   * needs nothing but the sandbox's id and directory (its template may be gone).
   */
  destroy(sandbox: SandboxRef, state: RuntimeState | undefined): Promise<void>;
  /** Whether the sandbox's process still runs. */
  alive(state: RuntimeState): Promise<boolean>;
  stats(sandbox: SandboxRef, state: RuntimeState): Promise<RuntimeStats>;
  /**
   * Removes what the driver keeps outside sandbox directories (runtime state) for
   * sandboxes not in `keep`: debris of a node that crashed mid-operation.
   */
  sweep(keep: Set<string>): Promise<void>;
  /**
   * Stops what the driver runs on the host for its sandboxes (the containers' LXCFS), if
   * none of its sandboxes is left on this host: called when a node closes with none.
   */
  releaseHostServices?(): Promise<void>;
}

/** A request the sandbox cannot satisfy as given (bad limits, unknown image …). */
export class SandboxSpecError extends Error {
  override name = 'SandboxSpecError';
}

/** The runtime failed to do what it was asked. */
export class RuntimeError extends Error {
  override name = 'RuntimeError';
}
