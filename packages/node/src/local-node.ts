import type { Logger } from 'pino';
import { TemplateBuilder } from './build/template-builder.js';
import { ImageStore } from './image/image-store.js';
import type { ImageStoreOptions } from './image/image-types.js';
import { imagePaths } from './paths.js';
import { checkHost, createRuntimes, type HostCapabilities, type RuntimeConfig } from './runtime/select.js';
import type { DriverName } from './runtime/types.js';
import { SandboxManager } from './sandbox/sandbox-manager.js';
import type { SandboxManagerOptions } from './sandbox/sandbox-options.js';

export interface LocalNodeOptions extends ImageStoreOptions, RuntimeConfig {
  /** Overrides the driver chosen from what the host can do. */
  defaultDriver?: DriverName;
  logger?: Logger;
  readyTimeoutMs?: SandboxManagerOptions['readyTimeoutMs'];
  /** IPv4 block cut into one /30 per sandbox (default 10.11.0.0/16). */
  addressBlock?: string;
  networkPoolSize?: SandboxManagerOptions['networkPoolSize'];
  dnsUpstreams?: SandboxManagerOptions['dnsUpstreams'];
  volumeSizeMiB?: SandboxManagerOptions['volumeSizeMiB'];
}

/** The node's parts for this host: its image store, what the host can run, and the sandbox manager. */
export interface LocalNode {
  images: ImageStore;
  host: HostCapabilities;
  sandboxes: SandboxManager;
  /** Builds templates in build sandboxes of `sandboxes`. */
  builder: TemplateBuilder;
}

/** Assembles the node for this host (the same in `aiva up` and the node-only CLI). */
export async function openLocalNode(options: LocalNodeOptions): Promise<LocalNode> {
  const images = new ImageStore(options);
  // What a node killed mid-build left half-made (a build step's layer, a disk) goes now.
  const swept = await images.artefacts.sweepTmp();
  if (swept.length > 0) options.logger?.warn({ swept }, 'removed unfinished image store work');
  const host = await checkHost();
  const runtimes = createRuntimes(host, {
    ...options,
    vmSnapshotDir: options.vmSnapshotDir ?? imagePaths(options.home).snapshots,
  });
  const defaultDriver = options.defaultDriver ?? host.defaultDriver;
  if (!defaultDriver) {
    throw new Error('no sandbox runtime works on this host: run `aiva doctor` to see why');
  }
  if (!runtimes.has(defaultDriver)) {
    const why = host.checks.find((c) => c.driver === defaultDriver)?.reason ?? 'unknown runtime';
    throw new Error(`the ${defaultDriver} runtime is not available here: ${why}`);
  }
  const sandboxes = await SandboxManager.open({
    home: options.home,
    scope: options.scope,
    images,
    runtimes,
    defaultDriver,
    logger: options.logger,
    readyTimeoutMs: options.readyTimeoutMs,
    addressBlock: options.addressBlock,
    networkPoolSize: options.networkPoolSize,
    dnsUpstreams: options.dnsUpstreams,
    volumeSizeMiB: options.volumeSizeMiB,
  });
  return { images, host, sandboxes, builder: new TemplateBuilder(images, sandboxes) };
}
