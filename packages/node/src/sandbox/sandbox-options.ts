import type { EnvdInit } from '@aiva/protocol';
import type { VolumeMount } from '@aiva/protocol/node';
import type { Logger } from 'pino';
import type { HostScope } from '../host/host-scope.js';
import type { BuildReporter } from '../image/build-reporter.js';
import type { ImageStore } from '../image/image-store.js';
import type { TemplateDefinition } from '../image/image-types.js';
import type { NetworkPolicy } from '../network/network-policy.js';
import type { DriverName, SandboxRuntime } from '../runtime/types.js';
import type { SandboxInfo } from './sandbox-records.js';

export interface CreateSandboxOptions {
  /** Chosen by the caller (the server) or generated. Lower-case letters and digits. */
  id?: string;
  /** A recipe template's name (default `base`), or a built template's definition. */
  template?: string | TemplateDefinition;
  driver?: DriverName;
  vcpus?: number;
  memoryMiB?: number;
  diskMiB?: number;
  /** Sent to envd's /init once it answers: env vars, default user …; an access token is made if none is given. */
  envd?: EnvdInit;
  /** Egress policy (E2B's `allow_internet_access` and `network.allowOut/denyOut`); checked before anything is made. */
  network?: NetworkPolicy;
  signal?: AbortSignal;
  /** Progress of an image build, if the template has to be built first. */
  reporter?: BuildReporter;
  /**
   * Start from this checkpoint (its name) instead of from a template: the template,
   * driver and size are the checkpoint's, and `template`, `driver` and sizes must not
   * say otherwise.
   */
  fromCheckpoint?: string;
  /** Volumes of this node (`<home>/volumes/<volumeId>`) bound into the sandbox at `path`. */
  volumes?: VolumeMount[];
}

export interface SandboxManagerOptions {
  home: string;
  images: ImageStore;
  runtimes: Map<DriverName, SandboxRuntime>;
  defaultDriver: DriverName;
  /** IPv4 block cut into one /30 per sandbox. */
  addressBlock?: string;
  /**
   * What of the host is this node's: its runtime state directory (the node lock is
   * there), namespace names, sandbox cgroups and host id ranges. Default: the host's only
   * node (/run/aiva, `aiva-n<slot>`, `aiva/<id>`). Give the runtimes the same scope.
   */
  scope?: HostScope;
  /** A volume's size when its create gives none, and when a volume directory of before is converted (default 1024 MiB). */
  volumeSizeMiB?: number;
  /** Network namespaces kept ready ahead of creates (default 0). */
  networkPoolSize?: number;
  /** Where the sandboxes' DNS forwarder sends queries: `a.b.c.d[:port]` (default: /etc/resolv.conf's nameservers). */
  dnsUpstreams?: string[];
  /** How long a new sandbox has to answer on envd, per driver. */
  readyTimeoutMs?: Partial<Record<DriverName, number>>;
  /** How long a template's start command has to pass its ready check (default 10 minutes, as E2B's builds). */
  startTimeoutMs?: number;
  /** How often to look for sandboxes whose process died. */
  monitorIntervalMs?: number;
  /** Wait (up to 5 minutes) for another node on this host to close instead of failing (tests run one after another). */
  waitForLock?: boolean;
  /** Hears every state change from the start, recovery's included. */
  onState?: (sandbox: SandboxInfo) => void;
  logger?: Logger;
}

/** Where the untagged node's lock is: one such node per host, whatever its data directory (HostScope.stateDir). */
export const NODE_LOCK_DIR = '/run/aiva';

export class NodeBusyError extends Error {
  override name = 'NodeBusyError';
}

// Sandbox ids are the contract's (the server makes them; `aiva sandbox` makes its own).
export { newSandboxId, SANDBOX_ID_PATTERN } from '@aiva/protocol/node';

export const DEFAULT_START_TIMEOUT_MS = 600_000;

export const DEFAULT_READY_TIMEOUT: Record<DriverName, number> = {
  container: 30_000,
  'qemu-microvm': 120_000,
  firecracker: 30_000,
};
