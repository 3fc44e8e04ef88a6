import { join } from 'node:path';
import { VOLUME_ID_PATTERN, type VolumeMount, volumeMountPathProblem } from '@aiva/protocol/node';
import { type RuntimeSpec, type SandboxRuntime, SandboxSpecError } from '../runtime/types.js';
import type { VolumeDiskStore } from './volume-disks.js';

/** Where a volume is mounted on the node: its image's mount point under `<home>/volumes` (`VolumeDisks`). */
export const volumeDir = (home: string, volumeId: string) => join(home, 'volumes', volumeId);

/**
 * A create's volumes, checked before anything is made: each a volume this node has
 * mounted (its image at its directory: writes there are bounded by it), each path one a volume may be mounted at and used once, and a driver
 * that binds volumes — microVMs do not yet: a create that asks is refused, never run
 * without them. Answers the mounts with normalized paths.
 */
export async function checkVolumes(
  disks: Pick<VolumeDiskStore, 'isMounted'>,
  volumes: VolumeMount[] | undefined,
  runtime: SandboxRuntime,
): Promise<VolumeMount[] | undefined> {
  if (!volumes || volumes.length === 0) return undefined;
  if (!runtime.capabilities.volumes)
    throw new SandboxSpecError(
      `volume mounts are not supported by the ${runtime.name} runtime yet (only containers mount volumes)`,
    );
  const paths = new Set<string>();
  const checked: VolumeMount[] = [];
  for (const v of volumes) {
    if (!new RegExp(VOLUME_ID_PATTERN).test(v.volumeId))
      throw new SandboxSpecError(`"${v.volumeId}" is not a volume id`);
    const problem = volumeMountPathProblem(v.path);
    if (problem) throw new SandboxSpecError(`volume mount path ${JSON.stringify(v.path)} ${problem}`);
    const path = `/${v.path.split('/').filter(Boolean).join('/')}`;
    if (paths.has(path)) throw new SandboxSpecError(`two volumes are mounted at ${path}`);
    paths.add(path);
    if (!(await disks.isMounted(v.volumeId)))
      throw new SandboxSpecError(`volume ${v.volumeId} is not on this node (or its image is not mounted)`);
    checked.push({ volumeId: v.volumeId, path });
  }
  return checked;
}

/** The runtime's view of a record's volumes: host directories and where they go. */
export function volumeSpecs(home: string, volumes: VolumeMount[] | undefined): RuntimeSpec['volumes'] {
  return volumes?.map((v) => ({ hostDir: volumeDir(home, v.volumeId), path: v.path }));
}
