import type {
  BuildLogLine,
  NodeCommand,
  NodeCommandOutcome,
  NodeSandbox,
  NodeSnapshot,
} from '@aiva/protocol/node';
import type { NodeCommandQueue } from './command-queue.js';
import type { NodeEndpoint, NodeLink, ProxyVia } from './node-link.js';

/**
 * A node on another host (`aiva node join`): commands go through the command table, which
 * the node polls; what it runs is what its last snapshot said.
 */
export class RemoteNodeLink implements NodeLink {
  private last: NodeSnapshot | undefined;
  /** The node reported to this server process (not only a stored snapshot). */
  fresh = false;
  private byId = new Map<string, NodeSandbox>();
  private readonly listeners: ((s: NodeSandbox) => void)[] = [];

  constructor(
    readonly id: string,
    private readonly queue: NodeCommandQueue,
    /** The agents whose connections are streams of the node's tunnel (plain, and TLS inside for https ports). */
    private readonly via: ProxyVia,
  ) {}

  send(command: NodeCommand, progress?: (line: BuildLogLine) => void): Promise<NodeCommandOutcome> {
    return this.queue.send(this.id, command, progress);
  }

  async snapshot(): Promise<NodeSnapshot> {
    if (!this.last) throw new Error(`node ${this.id} has not reported yet`);
    return this.last;
  }

  /** The node's direct listener, as its last snapshot told it. */
  get direct(): NodeSnapshot['direct'] {
    return this.last?.direct;
  }

  /** When the node reported last (ms since the epoch), if it did. */
  get reportedAt(): number | undefined {
    return this.last ? Date.parse(this.last.sentAt) : undefined;
  }

  /**
   * Takes a snapshot the node sent (only sandboxes it owns: the caller filtered them) and,
   * unless `quiet`, tells the listeners of each sandbox whose state changed or that went.
   */
  update(snapshot: NodeSnapshot, live: boolean, o: { quiet?: boolean } = {}): void {
    this.fresh ||= live;
    const before = this.byId;
    this.last = snapshot;
    this.byId = new Map(snapshot.sandboxes.map((s) => [s.id, s]));
    // A snapshot another replica took: that replica tells its listeners.
    if (o.quiet) return;
    for (const s of snapshot.sandboxes)
      if (before.get(s.id)?.state !== s.state) for (const l of this.listeners) l(s);
    const ended = new Set((snapshot.ended ?? []).map((e) => e.id));
    for (const [id, s] of before)
      if (!this.byId.has(id))
        for (const l of this.listeners)
          l(
            ended.has(id)
              ? { ...s, state: 'stopped', endReason: 'timeout', error: 'the node ended it at its deadline' }
              : { ...s, state: 'error', error: 'the node no longer runs it' },
          );
  }

  sandbox(id: string): NodeSandbox | undefined {
    return this.byId.get(id);
  }

  sandboxes(): NodeSandbox[] {
    return [...this.byId.values()];
  }

  /** Through the node's tunnel: the host is the sandbox id, which the node looks up itself. */
  endpoint(id: string, port: number): NodeEndpoint {
    return { host: id, port, via: this.via };
  }

  onSandbox(listener: (sandbox: NodeSandbox) => void): void {
    this.listeners.push(listener);
  }
}
