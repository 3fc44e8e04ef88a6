import type { NodeSnapshot } from '@aiva/protocol/node';

// Where a new sandbox goes: a pure function of what each node last reported, what the
// server has already placed there, and the request. Nodes that cannot take it are
// filtered out; the rest are ranked by free memory, CPU and disk, and a node that has
// the template's image warm wins over one that would have to fetch it. A create from a
// checkpoint goes to a node that holds it when one can take it, else to any other, which
// then fetches it.

export interface PlacementCandidate {
  id: string;
  /** ready | cordoned | draining | unreachable */
  state: string;
  labels: Record<string, string>;
  snapshot: NodeSnapshot | undefined;
  /** Memory (MiB) of the sandboxes the server has placed there and not ended. */
  allocatedMiB: number;
  /** False for a remote node whose tunnel is down: its sandboxes could not be reached. */
  connected?: boolean;
}

export interface PlacementRequest {
  memoryMiB: number;
  vcpus: number;
  /** A recipe's name, when the template is one. */
  recipe?: string;
  /** The template image's hash, when the server knows it. */
  imageHash?: string;
  /** Labels the node must have (`aiva.placement.labels` in metadata: `k=v,k2=v2`). */
  labels?: Record<string, string>;
  /** The node it must go to (`aiva.placement.node`). */
  node?: string;
  /** The checkpoint it is made from: a node that holds it wins. */
  checkpoint?: string;
}

export interface Ranked {
  id: string;
  score: number;
}

/** Why no node can take it, or the nodes that can, best first. */
export function rankNodes(request: PlacementRequest, nodes: PlacementCandidate[]): Ranked[] | string {
  const reasons: string[] = [];
  const ranked: Ranked[] = [];
  for (const n of nodes) {
    const s = n.snapshot;
    const refuse = (why: string) => reasons.push(`${n.id}: ${why}`);
    if (request.node && n.id !== request.node) continue;
    if (n.state !== 'ready') {
      refuse(n.state);
      continue;
    }
    if (!s) {
      refuse('has not reported yet');
      continue;
    }
    if (n.connected === false) {
      refuse('has no tunnel to this server');
      continue;
    }
    const missing = Object.entries(request.labels ?? {}).filter(([k, v]) => n.labels[k] !== v);
    if (missing.length > 0) {
      refuse(
        `lacks the label${missing.length > 1 ? 's' : ''} ${missing.map(([k, v]) => `${k}=${v}`).join(', ')}`,
      );
      continue;
    }
    if (request.recipe && !s.artefacts.recipes.includes(request.recipe)) {
      refuse(`has no template ${request.recipe}`);
      continue;
    }
    if (request.vcpus > s.capacity.cores) {
      refuse(`has ${s.capacity.cores} cores`);
      continue;
    }
    const freeMiB = s.capacity.memoryBudgetMiB - n.allocatedMiB;
    if (request.memoryMiB > freeMiB) {
      refuse(`has ${Math.max(0, freeMiB)} MiB of its memory budget left`);
      continue;
    }
    const count = s.sandboxes.length;
    if (s.capacity.maxSandboxes !== undefined && count >= s.capacity.maxSandboxes) {
      refuse(`runs its maximum of ${s.capacity.maxSandboxes} sandboxes`);
      continue;
    }
    const memory = (freeMiB - request.memoryMiB) / Math.max(1, s.capacity.memoryBudgetMiB);
    const cpu = Math.max(0, 1 - s.free.load1 / s.capacity.cores);
    const disk = s.free.diskFreeMiB / Math.max(1, s.capacity.diskMiB);
    const warm = request.imageHash && s.artefacts.images.includes(request.imageHash) ? 1 : 0;
    // Memory left counts most (what a sandbox is refused for); the image warm outweighs a
    // few sandboxes' worth of it; CPU load and disk break near-ties.
    const holds = request.checkpoint && s.checkpoints.some((c) => c.name === request.checkpoint) ? 1 : 0;
    // …and holding the checkpoint outweighs all of them: fetching one is a copy of a whole sandbox.
    ranked.push({ id: n.id, score: 4 * memory + 0.5 * cpu + 0.25 * disk + 1.5 * warm + 10 * holds });
  }
  if (ranked.length === 0)
    return request.node && !nodes.some((n) => n.id === request.node)
      ? `there is no node ${request.node}`
      : reasons.length > 0
        ? reasons.join('; ')
        : 'there are no nodes';
  return ranked.sort((a, b) => b.score - a.score);
}
