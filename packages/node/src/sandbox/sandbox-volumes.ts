import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { VOLUME_ID_PATTERN, type VolumeMount, volumeMountPathProblem } from '@aiva/protocol/node';
import { MICROVM_VOLUME_PATH } from '../runtime/microvm-boot.js';
import {
  type DriverName,
  type RuntimeSpec,
  type SandboxRuntime,
  SandboxSpecError,
} from '../runtime/types.js';
import { readSandboxRecord, type SandboxRecord } from './sandbox-record.js';
import type { VolumeDisks } from './volume-disks.js';

/** Where a volume is mounted on the node: its image's mount point under `<home>/volumes` (`VolumeDisks`). */
export const volumeDir = (home: string, volumeId: string) => join(home, 'volumes', volumeId);

/** A volume's image on the node (`VolumeDisks.imageOf`). */
const volumeImage = (home: string, volumeId: string) => join(home, 'volumes', `${volumeId}.ext4`);

/**
 * A volume that another sandbox stands in the way of: one a microVM holds alone, or one
 * a microVM cannot take because others mount it (409 through the contract's RESOURCE_BUSY).
 */
export class VolumeBusyError extends SandboxSpecError {
  override name = 'VolumeBusyError';
  constructor(
    message: string,
    readonly volumeId: string,
    readonly holders: string[],
  ) {
    super(message);
  }
}

/**
 * A create's volumes, checked before anything is made: each a volume this node has
 * mounted (its image at its directory: writes there are bounded by it) and no microVM
 * holds, each path one a volume may be mounted at and used once (for a microVM, one its
 * kernel's command line can carry), and a driver that mounts volumes. Answers the mounts
 * with normalized paths.
 */
export async function checkVolumes(
  disks: Pick<VolumeDisks, 'isMounted' | 'holderOf'>,
  volumes: VolumeMount[] | undefined,
  runtime: SandboxRuntime,
): Promise<VolumeMount[] | undefined> {
  if (!volumes || volumes.length === 0) return undefined;
  const mode = runtime.capabilities.volumes;
  if (!mode)
    throw new SandboxSpecError(
      `volume mounts are not supported by the ${runtime.name} runtime (containers and qemu-microvm mount them)`,
    );
  const paths = new Set<string>();
  const checked: VolumeMount[] = [];
  for (const v of volumes) {
    if (!new RegExp(VOLUME_ID_PATTERN).test(v.volumeId))
      throw new SandboxSpecError(`"${v.volumeId}" is not a volume id`);
    const problem = volumeMountPathProblem(v.path);
    if (problem) throw new SandboxSpecError(`volume mount path ${JSON.stringify(v.path)} ${problem}`);
    const path = `/${v.path.split('/').filter(Boolean).join('/')}`;
    if (mode === 'exclusive' && !MICROVM_VOLUME_PATH.test(path))
      throw new SandboxSpecError(
        `volume mount path ${JSON.stringify(path)}: in a microVM a volume's path has at most 200 characters, letters, digits and . _ @ + = , : ~ / -`,
      );
    if (paths.has(path)) throw new SandboxSpecError(`two volumes are mounted at ${path}`);
    paths.add(path);
    const holder = disks.holderOf(v.volumeId);
    if (holder) throw heldBy(v.volumeId, holder);
    if (!(await disks.isMounted(v.volumeId)))
      throw new SandboxSpecError(`volume ${v.volumeId} is not on this node (or its image is not mounted)`);
    checked.push({ volumeId: v.volumeId, path });
  }
  return checked;
}

const heldBy = (volumeId: string, holder: string) =>
  new VolumeBusyError(
    `volume ${volumeId} is attached to microVM sandbox ${holder}, which holds it alone until it ends`,
    volumeId,
    [holder],
  );

/**
 * The other sandboxes of the node that stand in the way of a new one's volumes, checked
 * in the same step as its record is added (nothing awaited between): a microVM
 * (`exclusive`) takes only volumes no other sandbox mounts; anyone takes none a microVM
 * holds. Sandboxes that ended or failed and were freed hold nothing.
 */
export function checkVolumeHolders(
  others: SandboxRecord[],
  volumes: VolumeMount[] | undefined,
  mode: 'shared' | 'exclusive',
  modeOf: (driver: DriverName) => SandboxRuntime['capabilities']['volumes'],
): void {
  for (const v of volumes ?? []) {
    const users = others.filter((r) => mounts(r, v.volumeId));
    const exclusive = users.find((r) => modeOf(r.driver) === 'exclusive');
    if (exclusive) throw heldBy(v.volumeId, exclusive.id);
    if (mode === 'exclusive' && users.length > 0)
      throw new VolumeBusyError(
        `volume ${v.volumeId} is mounted by sandbox ${users.map((r) => r.id).join(', ')}: a microVM holds its volumes alone, so it can mount it only once no other sandbox does`,
        v.volumeId,
        users.map((r) => r.id),
      );
  }
}

/** Whether `r` mounts volume `id` and still has what it mounts it with. */
const mounts = (r: SandboxRecord, id: string) =>
  (r.volumes ?? []).some((v) => v.volumeId === id) &&
  r.state !== 'stopped' &&
  !(r.state === 'error' && !r.runtime && !r.network);

/**
 * At the node's open, before recovery: the volumes mounted again (`VolumeDisks.adopt`),
 * but those that microVMs recorded under `recordsDir` hold (their drivers' `exclusive`),
 * read from their records: a VM that outlived the node has them as its disks.
 */
export async function adoptVolumes(
  disks: VolumeDisks,
  recordsDir: string,
  runtimes: Iterable<SandboxRuntime>,
): ReturnType<VolumeDisks['adopt']> {
  const exclusive = new Set(
    [...runtimes].filter((r) => r.capabilities.volumes === 'exclusive').map((r) => r.name),
  );
  return disks.adopt(await volumesHeldByRecords(recordsDir, exclusive));
}

/** The volumes that sandboxes of `exclusive` drivers recorded under `dir` hold, by volume id. */
async function volumesHeldByRecords(dir: string, exclusive: Set<DriverName>): Promise<Map<string, string>> {
  const held = new Map<string, string>();
  if (exclusive.size === 0) return held;
  for (const id of await readdir(dir).catch(() => [] as string[])) {
    const r = await readSandboxRecord(join(dir, id, 'sandbox.json')).catch(() => undefined);
    if (!r || !exclusive.has(r.driver)) continue;
    for (const v of r.volumes ?? []) if (mounts(r, v.volumeId)) held.set(v.volumeId, r.id);
  }
  return held;
}

/** The runtime's view of a record's volumes: the host directory and image of each, and where it goes. */
export function volumeSpecs(home: string, volumes: VolumeMount[] | undefined): RuntimeSpec['volumes'] {
  return volumes?.map((v) => ({
    hostDir: volumeDir(home, v.volumeId),
    image: volumeImage(home, v.volumeId),
    path: v.path,
  }));
}
