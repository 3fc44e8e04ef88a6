import type { Logger } from 'pino';
import type { NodeClient } from '../nodes/node-client.js';
import { type LiveSandboxes, liveFromRow } from './live-sandboxes.js';
import type { SandboxRows } from './sandbox-rows.js';
import { isApiState, transition } from './sandbox-states.js';

/**
 * Keeps the rows of a node's sandboxes and what the node runs in agreement: at start-up
 * (`aiva up`'s own node), when a remote node first reports to this server process or
 * reports after being unreachable, and when a node is lost.
 */
export class NodeReconciliation {
  /** Sandboxes served as their rows say, on nodes that have not reported since this server started. */
  private readonly unconfirmed = new Set<string>();
  /**
   * Other server replicas may be making sandboxes: a row still `creating` is theirs to
   * finish (or the leader's to end, if they stop: ReplicaSync), not a create cut short.
   */
  othersCreate = false;

  constructor(
    private readonly live: LiveSandboxes,
    private readonly rows: SandboxRows,
    private readonly log: Logger,
    /** Takes a sandbox out of the live index and tells the proxy it ended. */
    private readonly ended: (id: string) => void,
  ) {}

  /**
   * Serves a remote node's running and paused sandboxes as their rows say, until the node
   * reports (its stored view may be behind after a server restart); `reconcile` then.
   */
  async serveFromRows(nodeId: string): Promise<void> {
    for (const row of await this.rows.liveOn(nodeId))
      if (isApiState(row.state)) {
        this.live.add(liveFromRow(row, row.state));
        this.unconfirmed.add(row.id);
      }
  }

  /**
   * Rows of sandboxes the node no longer runs end (`lost`); sandboxes no live row knows are
   * killed on it (killed or lost meanwhile). Rows this process already serves (made since
   * it started) are left alone.
   */
  async reconcile(node: NodeClient): Promise<void> {
    const onNode = new Map(node.list().map((s) => [s.id, s]));
    for (const row of await this.rows.liveOn(node.id)) {
      const unconfirmed = this.unconfirmed.delete(row.id);
      if ((this.live.get(row.id) && !unconfirmed) || (this.othersCreate && row.state === 'creating')) {
        onNode.delete(row.id);
        continue;
      }
      const n = onNode.get(row.id);
      onNode.delete(row.id);
      if (!isApiState(row.state) || !n || !isApiState(n.state)) {
        this.log.warn(
          { sandbox: row.id, rowState: row.state, nodeState: n?.state },
          'sandbox did not survive the restart',
        );
        if (unconfirmed) this.ended(row.id);
        if (n) await node.kill(row.id).catch(() => {});
        await this.rows.markEnded(row.id, row.state, 'lost', n?.error);
        continue;
      }
      this.live.add(liveFromRow(row, n.state));
      if (n.state !== row.state)
        await this.rows.updateLive(row.id, { state: transition(row.id, row.state, n.state) });
    }
    for (const orphan of onNode.values()) {
      this.log.warn({ sandbox: orphan.id }, 'killing a sandbox the database does not know');
      await node.kill(orphan.id).catch(() => {});
    }
  }

  /**
   * Ends every live sandbox on node `nodeId` (unreachable past its grace period) with
   * reason `node-lost`; when the node comes back, `reconcile` kills what it still runs.
   */
  async endAllOn(nodeId: string, why: string): Promise<number> {
    const ids = [...this.live.values()].filter((s) => s.nodeId === nodeId).map((s) => s.id);
    for (const id of ids) {
      const live = this.live.get(id);
      if (!live) continue;
      this.ended(id);
      this.unconfirmed.delete(id);
      await this.rows.markEnded(id, live.state, 'node-lost', why);
    }
    if (ids.length > 0)
      this.log.warn({ node: nodeId, sandboxes: ids }, 'sandboxes ended: their node is lost');
    return ids.length;
  }
}
