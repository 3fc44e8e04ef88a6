import { NodeCommandError } from '@aiva/protocol/node';
import { CapacityError } from '../services/errors.js';
import { type ArtefactSupplier, NodeClient } from './node-client.js';
import type { NodeLink } from './node-link.js';
import { type PlacementRequest, rankNodes } from './placement.js';

/** A node as the control plane keeps it: its client, and the operator's view of it. */
interface NodeEntry {
  client: NodeClient;
  /** ready | cordoned | draining | unreachable */
  state: string;
  labels: Record<string, string>;
  /** False while a remote node's tunnel is down. */
  connected?: boolean;
}

/**
 * The nodes the control plane runs sandboxes on: `aiva up`'s one in-process node, or the
 * nodes that joined a cluster. The services address a sandbox's node by the id its row
 * keeps, and ask for a node to place a new one on.
 */
export class Nodes {
  private readonly entries = new Map<string, NodeEntry>();
  /** Where a node's missing layers and checkpoints come from (a cluster's server store; none in `aiva up`). */
  artefacts: ArtefactSupplier | undefined;

  /** `allocatedMiB(nodeId)`: the memory of the live sandboxes the server has placed on the node. */
  constructor(private readonly allocatedMiB: (nodeId: string) => number = () => 0) {}

  add(link: NodeLink, meta: { state?: string; labels?: Record<string, string> } = {}): NodeClient {
    const client = new NodeClient(link, () => this.artefacts);
    this.entries.set(link.id, { client, state: meta.state ?? 'ready', labels: meta.labels ?? {} });
    for (const l of this.listeners) client.onSandboxFailed(l);
    return client;
  }

  /** Records the operator's view of a node (its state, its labels). */
  describe(id: string, meta: { state: string; labels: Record<string, string> }): void {
    const e = this.entries.get(id);
    if (e) Object.assign(e, meta);
  }

  /** The operator's view of a node's state (`ready`, `cordoned`, `draining`, `unreachable`); undefined for none. */
  stateOf(id: string): string | undefined {
    return this.entries.get(id)?.state;
  }

  /** Records whether a remote node's tunnel to this server is up. */
  setConnected(id: string, connected: boolean): void {
    const e = this.entries.get(id);
    if (e) e.connected = connected;
  }

  remove(id: string): void {
    this.entries.delete(id);
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  /** The node a sandbox's row names; one this server does not know fails each command as unreachable. */
  of(id: string): NodeClient {
    const e = this.entries.get(id);
    if (e) return e.client;
    return new NodeClient(absentNode(id));
  }

  all(): NodeClient[] {
    return [...this.entries.values()].map((e) => e.client);
  }

  /** The first node (`aiva up`'s only one). */
  get first(): NodeClient | undefined {
    return this.entries.values().next().value?.client;
  }

  private readonly listeners: ((id: string, reason: string, endReason?: 'timeout') => void)[] = [];

  /** Hears a sandbox of any node, present or future, end or fail without being asked to. */
  onSandboxFailed(listener: (id: string, reason: string, endReason?: 'timeout') => void): void {
    this.listeners.push(listener);
    for (const e of this.entries.values()) e.client.onSandboxFailed(listener);
  }

  /**
   * The node for a new sandbox. With one node there is nothing to choose (the server's
   * capacity check counts for it); with several, the best that can take it.
   */
  async place(request: PlacementRequest): Promise<NodeClient> {
    const entries = [...this.entries.values()];
    const [only] = entries;
    if (
      only &&
      entries.length === 1 &&
      (request.node ?? only.client.id) === only.client.id &&
      !request.labels
    )
      return only.client;
    const candidates = await Promise.all(
      entries.map(async (e) => ({
        id: e.client.id,
        state: e.state,
        labels: e.labels,
        snapshot: await e.client.link.snapshot().catch(() => undefined),
        allocatedMiB: this.allocatedMiB(e.client.id),
        ...(e.connected === undefined ? {} : { connected: e.connected }),
      })),
    );
    const ranked = rankNodes(request, candidates);
    const best = typeof ranked === 'string' ? undefined : this.entries.get(ranked[0]?.id ?? '');
    if (!best) throw new CapacityError(`no node can take the sandbox: ${ranked}`);
    return best.client;
  }
}

/** A node this server does not know (it left, or it was never here). */
function absentNode(id: string): NodeLink {
  const unreachable = () =>
    new NodeCommandError({ code: 'INTERNAL', message: `node ${id} is not connected to this server` });
  return {
    id,
    fresh: false,
    send: async () => {
      throw unreachable();
    },
    snapshot: async () => {
      throw unreachable();
    },
    sandbox: () => undefined,
    sandboxes: () => [],
    endpoint: () => undefined,
    onSandbox: () => {},
  };
}
