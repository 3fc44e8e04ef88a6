import type { NewSandbox } from '../api/e2b/schemas.js';
import type { PlacementRequest } from '../nodes/placement.js';
import { TYPICAL_MEMORY_MIB } from './live-sandboxes.js';
import type { SnapshotSource } from './sandbox-creation.js';
import type { ResolvedTemplate } from './template-catalog.js';

/**
 * What placement needs to know of a create: the template's size and recipe, the node
 * of its snapshot, and the hints in its metadata (`aiva.placement.node`,
 * `aiva.placement.labels` as `k=v,k2=v2`).
 */
export function placementOf(
  resolved: ResolvedTemplate | undefined,
  snapshot: SnapshotSource | undefined,
  body: NewSandbox,
): PlacementRequest {
  const definition = typeof resolved?.node === 'object' ? resolved.node : undefined;
  const hints = body.metadata ?? {};
  const labels = hints['aiva.placement.labels']
    ? Object.fromEntries(
        hints['aiva.placement.labels'].split(',').map((kv) => {
          const [k = '', ...v] = kv.split('=');
          return [k.trim(), v.join('=').trim()];
        }),
      )
    : undefined;
  return {
    memoryMiB: definition?.defaults.memoryMiB ?? TYPICAL_MEMORY_MIB,
    vcpus: definition?.defaults.vcpus ?? 1,
    ...(typeof resolved?.node === 'string' ? { recipe: resolved.node } : {}),
    ...(labels ? { labels } : {}),
    ...(snapshot ? { checkpoint: snapshot.checkpoint } : {}),
    ...(hints['aiva.placement.node'] ? { node: hints['aiva.placement.node'] } : {}),
  };
}
