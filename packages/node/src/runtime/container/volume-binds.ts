import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../../host/command.js';
import { aivaMountPath } from '../../host/idmapped-overlay.js';
import type { RuntimeSpec, SandboxUserNamespace } from '../types.js';

/** Where a container sandbox's idmapped volume mounts are attached on the host, under its directory. */
export const volumeAttachDir = (sandboxDir: string) => join(sandboxDir, 'volumes');

/**
 * The OCI mounts that bind a sandbox's volumes (read-write, nosuid, nodev) at their paths.
 * In a user namespace, each volume is first attached under the sandbox's directory as an
 * idmapped mount through that namespace (`aiva-mount bind`): files keep the sandbox's own
 * ids on disk (its `user` writes 1000), so sandboxes of any id range share them; runc
 * then binds that mount. The attached mounts go with the sandbox's directory's mounts
 * (`unmountAll(dir)` when the container is freed).
 */
export async function volumeBinds(
  spec: RuntimeSpec,
  userns: SandboxUserNamespace | undefined,
  signal?: AbortSignal,
): Promise<object[]> {
  const mounts: object[] = [];
  for (const [i, v] of (spec.volumes ?? []).entries()) {
    let source = v.hostDir;
    if (userns) {
      source = join(volumeAttachDir(spec.dir), String(i));
      await mkdir(source, { recursive: true, mode: 0o711 });
      await runCommand(aivaMountPath(), ['bind', '--userns', userns.path, v.hostDir, source], {
        signal,
        displayName: 'aiva-mount bind',
      });
    }
    mounts.push({ destination: v.path, type: 'bind', source, options: ['rbind', 'rw', 'nosuid', 'nodev'] });
  }
  return mounts;
}
