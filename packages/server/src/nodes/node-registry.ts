import { createHash, randomBytes } from 'node:crypto';
import {
  formatProtocol,
  NODE_PROTOCOL,
  type NodeJoinRequest,
  type NodeJoinResponse,
  type NodeSnapshot,
  parseProtocol,
  protocolCompatible,
} from '@aiva/protocol/node';
import { and, eq, inArray, ne, or, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { type NodeState, nodes as nodeRows } from '../db/cluster-schema.js';
import type { Database } from '../db/database.js';
import { sandboxes } from '../db/schema.js';
import { forwardConnect, ReplicaUnreachableError } from '../replicas/replica-forward.js';
import type { ServerReplica } from '../replicas/server-replica.js';
import {
  ConflictError,
  ForbiddenError,
  IncompatibleVersionError,
  InvalidRequestError,
  InvalidStateError,
  NotFoundError,
  UnauthorizedError,
} from '../services/errors.js';
import type { NodeTokenService } from '../services/node-token-service.js';
import type { NodeCommandQueue } from './command-queue.js';
import type { DirectSessions } from './direct-sessions.js';
import type { Nodes } from './nodes.js';
import { RemoteNodeLink } from './remote-node-link.js';
import { TunnelAgent } from './tunnel-agent.js';
import type { TunnelNode, TunnelSessions } from './tunnel-sessions.js';

/**
 * How long a stream to a sandbox waits for its node's tunnel: long enough for nodes to
 * redial a restarted server or move to another replica (their backoff starts at 1 s).
 */
const TUNNEL_WAIT_MS = 10_000;

export type NodeRow = typeof nodeRows.$inferSelect;

/** A node as `GET /v1/nodes` lists it. */
export interface NodeInfo {
  id: string;
  name: string;
  state: string;
  labels: Record<string, string>;
  aivaVersion: string;
  joinedAt: string;
  lastSeenAt: string | null;
  /** Its sandboxes that have not ended. */
  sandboxes: number;
  /** Whether its tunnel (its sandboxes' traffic) is connected to this server. */
  tunnel: boolean;
  /** How its sandboxes' traffic goes now: through its tunnel, or to its direct listener. */
  mode: 'tunnel' | 'direct';
  /** Its direct listener, if it has one, and why the server cannot use it, if it cannot. */
  direct: { address: string; error?: string } | null;
  capacity: NodeSnapshot['capacity'] | null;
  free: NodeSnapshot['free'] | null;
}

export interface NodeRegistryOptions {
  aivaVersion: string;
  /** How often a node reports when nothing changes. */
  heartbeatSeconds: number;
  /** How long a command poll waits for a command. */
  commandWaitSeconds: number;
  /** A node silent this long is unreachable: creates avoid it. */
  unreachableAfterSeconds: number;
  /** A node silent this long is lost: its sandboxes end (`onLost`). */
  lostAfterSeconds: number;
}

function hash(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/**
 * The nodes that joined this control plane: joining with a token, each later call
 * authenticated by the node's credential, the snapshots nodes push, and who is
 * reachable. Each node is a RemoteNodeLink in `nodes`.
 */
export class NodeRegistry {
  private readonly links = new Map<string, RemoteNodeLink>();
  /** Called with a node's id when it first reports to this server process, and when it reports after being unreachable. */
  onReported: ((nodeId: string) => Promise<void>) | undefined;
  /** Called (once per silence) with a node's id and why, when it has been silent past the grace period. */
  onLost: ((nodeId: string, why: string) => Promise<void>) | undefined;
  /** Nodes whose sandboxes were ended as lost during their current silence. */
  private readonly lost = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private prunedAt = 0;

  constructor(
    private readonly db: Database,
    private readonly tokens: NodeTokenService,
    private readonly queue: NodeCommandQueue,
    private readonly nodes: Nodes,
    private readonly tunnels: TunnelSessions,
    private readonly log: Logger,
    readonly options: NodeRegistryOptions,
    /** The replica this server is, when several share the database. */
    private readonly replica?: ServerReplica,
    /** Direct connections to nodes that have a direct listener; none: always the tunnel. */
    private readonly direct?: DirectSessions,
  ) {}

  /** Loads the nodes that joined before (their last snapshots) and starts watching who is silent. */
  async start(): Promise<void> {
    // A node is placed on only while its tunnel is up (its sandboxes are reached through it).
    this.tunnels.on('up', (id: string) => void this.holdTunnel(id, true).catch(() => {}));
    this.tunnels.on('down', (id: string) => void this.holdTunnel(id, false).catch(() => {}));
    for (const row of await this.db.select().from(nodeRows).where(ne(nodeRows.state, 'left'))) {
      const link = this.attach(row);
      if (row.lastSnapshot) link.update(row.lastSnapshot as unknown as NodeSnapshot, false);
    }
    // Another replica's writes: a node joined, reported, was cordoned, lost or removed.
    this.replica?.on('node', (id: string) => void this.reload(id).catch(() => {}));
    this.replica?.on('resync', async () => {
      for (const { id } of await this.db.select({ id: nodeRows.id }).from(nodeRows))
        await this.reload(id).catch(() => {});
    });
    this.timer = setInterval(() => void this.watch().catch(() => {}), 1000);
    this.timer.unref();
  }

  /** Takes a node's row as another replica left it: its state, labels, tunnel and last snapshot. */
  private async reload(id: string): Promise<void> {
    const [row] = await this.db.select().from(nodeRows).where(eq(nodeRows.id, id));
    if (!row || row.state === 'left') {
      this.links.delete(id);
      this.nodes.remove(id);
      return;
    }
    const link = this.links.get(id) ?? this.attach(row);
    this.nodes.describe(id, { state: row.state, labels: row.labels });
    this.nodes.setConnected(id, this.tunnels.has(id) || row.tunnelReplica !== null);
    if (row.lastSnapshot) link.update(row.lastSnapshot as unknown as NodeSnapshot, false, { quiet: true });
  }

  /**
   * A stream to a sandbox's port on `nodeId`: on its tunnel when this replica holds it, else
   * through the replica that does. A node whose tunnel is nowhere yet (it redials after a
   * server restart, or moves to another replica after one died) is waited for, up to
   * TUNNEL_WAIT_MS, before the stream fails saying the tunnel is down.
   */
  private async reach(nodeId: string, sandboxId: string, port: number) {
    const deadline = Date.now() + TUNNEL_WAIT_MS;
    for (;;) {
      if (this.tunnels.has(nodeId)) return this.tunnels.connect(nodeId, sandboxId, port);
      const url = await this.holderUrl(nodeId);
      if (url && this.replica)
        try {
          return await forwardConnect(url, await this.replica.sharedSecret(), nodeId, sandboxId, port);
        } catch (e) {
          // A holder that died (its row not yet gone): its tunnel moves, wait for it.
          if (!(e instanceof ReplicaUnreachableError) || Date.now() >= deadline) throw e;
        }
      const left = deadline - Date.now();
      if (left <= 0) return this.tunnels.connect(nodeId, sandboxId, port); // fails, saying the tunnel is down
      await this.tunnelUp(nodeId, Math.min(left, 500));
    }
  }

  /** Where the replica holding node `id`'s tunnel is reached: none for one box, for this replica, or for a holder gone. */
  private async holderUrl(id: string): Promise<string | undefined> {
    if (!this.replica) return undefined;
    const [row] = await this.db
      .select({ holder: nodeRows.tunnelReplica })
      .from(nodeRows)
      .where(eq(nodeRows.id, id));
    if (!row?.holder || row.holder === this.replica.id) return undefined;
    return this.replica.urlOf(row.holder);
  }

  /** Resolves when node `id`'s tunnel comes up on this replica, or after `ms`. */
  private tunnelUp(id: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const up = (nodeId: string) => {
        if (nodeId !== id) return;
        done();
      };
      const done = () => {
        clearTimeout(timer);
        this.tunnels.off('up', up);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.tunnels.on('up', up);
    });
  }

  /** Records (for the other replicas) that this replica now holds node `id`'s tunnel, or no longer does. */
  private async holdTunnel(id: string, held: boolean): Promise<void> {
    this.nodes.setConnected(id, held);
    if (!this.replica) return;
    const me = this.replica.id;
    await this.db
      .update(nodeRows)
      .set({ tunnelReplica: held ? me : null })
      .where(held ? eq(nodeRows.id, id) : and(eq(nodeRows.id, id), eq(nodeRows.tunnelReplica, me)));
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private attach(row: NodeRow): RemoteNodeLink {
    const node: TunnelNode = { nodeId: row.id, tunnelKey: Buffer.from(row.tunnelKey, 'base64') };
    // On the tunnel (this replica's, or through the replica holding it).
    const tunnel = (sandboxId: string, port: number) => this.reach(row.id, sandboxId, port);
    // To the node's direct listener when it has one (falling back to the tunnel), else the tunnel.
    const connect = (sandboxId: string, port: number) => {
      const target = this.direct && link.direct;
      return target && this.direct
        ? this.direct.connect(node, target, sandboxId, port, () => tunnel(sandboxId, port))
        : tunnel(sandboxId, port);
    };
    const link: RemoteNodeLink = new RemoteNodeLink(row.id, this.queue, {
      plain: new TunnelAgent(connect),
      https: new TunnelAgent(connect, { https: true }),
    });
    this.links.set(row.id, link);
    this.nodes.add(link, { state: row.state, labels: row.labels });
    this.nodes.setConnected(row.id, this.tunnels.has(row.id) || Boolean(this.replica && row.tunnelReplica));
    return link;
  }

  /** Marks nodes silent for too long unreachable (creates avoid them), and past the grace period lost. */
  private async watch(): Promise<void> {
    // With replicas, the leader alone watches (the others hear of what it changes).
    if (this.replica && !this.replica.leader) return;
    // Answered commands are kept a day (a node's journal keeps its own as long), then go.
    if (Date.now() - this.prunedAt > 10 * 60_000) {
      this.prunedAt = Date.now();
      await this.queue.prune(24 * 3600_000);
    }
    const lostLimit = Date.now() - this.options.lostAfterSeconds * 1000;
    for (const row of await this.db.select().from(nodeRows).where(eq(nodeRows.state, 'unreachable'))) {
      const seen = row.lastSeenAt?.getTime() ?? row.joinedAt.getTime();
      if (seen >= lostLimit || this.lost.has(row.id)) continue;
      this.lost.add(row.id);
      const why = `its node ${row.name} was unreachable for over ${this.options.lostAfterSeconds} s`;
      this.log.warn({ node: row.id, name: row.name }, 'node lost: ending its sandboxes');
      await this.onLost?.(row.id, why);
    }
    const limit = Date.now() - this.options.unreachableAfterSeconds * 1000;
    const rows = await this.db
      .select()
      .from(nodeRows)
      .where(inArray(nodeRows.state, ['ready', 'cordoned', 'draining']));
    for (const row of rows) {
      const seen = row.lastSeenAt?.getTime() ?? row.joinedAt.getTime();
      if (seen >= limit) continue;
      const [moved] = await this.db
        .update(nodeRows)
        .set({ state: 'unreachable' })
        .where(and(eq(nodeRows.id, row.id), eq(nodeRows.state, row.state)))
        .returning();
      if (moved) {
        this.log.warn(
          { node: row.id, name: row.name, silentS: Math.round((Date.now() - seen) / 1000) },
          'node unreachable',
        );
        this.nodes.describe(row.id, { state: 'unreachable', labels: row.labels });
      }
    }
  }

  /** Every node that has not left, for `aiva node ls`: its state, labels, capacity and sandboxes. */
  async list(): Promise<NodeInfo[]> {
    const rows = await this.db.select().from(nodeRows).where(ne(nodeRows.state, 'left'));
    const counts = await this.db
      .select({ nodeId: sandboxes.nodeId, n: sql<number>`count(*)::int` })
      .from(sandboxes)
      .where(inArray(sandboxes.state, ['creating', 'running', 'paused']))
      .groupBy(sandboxes.nodeId);
    const count = new Map(counts.map((c) => [c.nodeId, c.n]));
    return rows
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((r) => {
        const snap = r.lastSnapshot as unknown as NodeSnapshot | null;
        return {
          id: r.id,
          name: r.name,
          state: r.state,
          labels: r.labels,
          aivaVersion: r.aivaVersion,
          joinedAt: r.joinedAt.toISOString(),
          lastSeenAt: r.lastSeenAt?.toISOString() ?? null,
          sandboxes: count.get(r.id) ?? 0,
          tunnel: this.tunnels.has(r.id) || Boolean(this.replica && r.tunnelReplica),
          mode: this.direct && snap?.direct ? this.direct.mode(r.id) : 'tunnel',
          direct: snap?.direct
            ? {
                address: snap.direct.address,
                ...(this.direct
                  ? this.direct.lastError(r.id) !== undefined
                    ? { error: this.direct.lastError(r.id) }
                    : {}
                  : { error: 'the server does not dial nodes directly (--no-direct)' }),
              }
            : null,
          capacity: snap?.capacity ?? null,
          free: snap?.free ?? null,
        };
      });
  }

  private async find(idOrName: string): Promise<NodeRow> {
    const [row] = await this.db
      .select()
      .from(nodeRows)
      .where(and(or(eq(nodeRows.id, idOrName), eq(nodeRows.name, idOrName)), ne(nodeRows.state, 'left')));
    if (!row) throw new NotFoundError(`there is no node ${idOrName}`);
    return row;
  }

  /**
   * Cordons a node (it keeps its sandboxes, takes no new ones), drains it (no new ones,
   * and it is being emptied: its sandboxes end as they end), or makes it ready again.
   */
  async setState(idOrName: string, to: 'ready' | 'cordoned' | 'draining'): Promise<NodeInfo> {
    const row = await this.find(idOrName);
    if (row.state === 'unreachable' && to === 'ready')
      throw new InvalidStateError(`node ${row.name} is unreachable: it becomes ready when it reports again`);
    await this.db.update(nodeRows).set({ state: to }).where(eq(nodeRows.id, row.id));
    this.nodes.describe(row.id, { state: to, labels: row.labels });
    this.log.info({ node: row.id, name: row.name, from: row.state, to }, 'node state set');
    return (await this.list()).find((n) => n.id === row.id) as NodeInfo;
  }

  /** Removes a node with no live sandboxes: its credential stops working; its row stays (`left`). */
  async remove(idOrName: string): Promise<void> {
    const row = await this.find(idOrName);
    const [live] = await this.db
      .select({ n: sql<number>`count(*)::int` })
      .from(sandboxes)
      .where(and(eq(sandboxes.nodeId, row.id), inArray(sandboxes.state, ['creating', 'running', 'paused'])));
    if ((live?.n ?? 0) > 0)
      throw new ConflictError(
        `node ${row.name} runs ${live?.n} sandboxes: drain it and wait for them to end first`,
      );
    await this.db.update(nodeRows).set({ state: 'left' }).where(eq(nodeRows.id, row.id));
    this.links.delete(row.id);
    this.nodes.remove(row.id);
    this.tunnels.disconnect(row.id);
    this.direct?.forget(row.id);
    this.log.info({ node: row.id, name: row.name }, 'node removed');
  }

  /**
   * Lets a node join with a join token: the node gets its id, its credential and its
   * tunnel key (shown this once; the credential is stored hashed). A wrong, revoked or
   * expired token is a 401, logged; another major version of the contract a 426 naming both.
   */
  async join(body: NodeJoinRequest, address: string): Promise<NodeJoinResponse> {
    const theirs = parseProtocol(body.protocol);
    if (!theirs || !protocolCompatible(theirs, NODE_PROTOCOL)) {
      this.log.warn(
        { name: body.name, protocol: body.protocol, aiva: body.aivaVersion, address },
        'node refused: version',
      );
      throw new IncompatibleVersionError(
        `the node speaks aiva-node-protocol ${body.protocol} (aiva ${body.aivaVersion}); this server speaks ${formatProtocol(NODE_PROTOCOL)} (aiva ${this.options.aivaVersion})`,
      );
    }
    const checked = await this.tokens.check(body.token);
    if (!checked.ok) {
      this.log.warn(
        { name: body.name, reason: checked.reason, token: checked.tokenId, address },
        'node refused: join token',
      );
      throw new UnauthorizedError(
        checked.reason === 'revoked' || checked.reason === 'expired'
          ? `the join token is ${checked.reason}`
          : 'the join token is not valid',
      );
    }
    if (body.directAddress && !/^[^\s/]+:\d{1,5}$/.test(body.directAddress))
      throw new InvalidRequestError(`directAddress ${body.directAddress} is not host:port`);
    const id = `n-${randomBytes(6).toString('hex')}`;
    const credential = `aiva_node_${randomBytes(32).toString('hex')}`;
    const tunnelKey = randomBytes(32).toString('base64');
    try {
      const [row] = await this.db
        .insert(nodeRows)
        .values({
          id,
          name: body.name,
          labels: body.labels,
          credentialHash: hash(credential),
          tunnelKey,
          protocolVersion: body.protocol,
          aivaVersion: body.aivaVersion,
          joinTokenId: checked.token.id,
          directAddress: body.directAddress ?? null,
          lastSeenAt: new Date(),
        })
        .returning();
      if (!row) throw new Error('the node was not stored');
      this.attach(row);
    } catch (e) {
      if (/nodes_name_idx|unique/i.test(String((e as { cause?: unknown }).cause ?? e)))
        throw new ConflictError(
          `a node named ${body.name} has joined already: remove it first (aiva node rm ${body.name})`,
        );
      throw e;
    }
    this.log.info(
      { node: id, name: body.name, labels: body.labels, address, token: checked.token.id },
      'node joined',
    );
    return {
      nodeId: id,
      credential,
      tunnelKey,
      protocol: formatProtocol(NODE_PROTOCOL),
      heartbeatSeconds: this.options.heartbeatSeconds,
      commandWaitSeconds: this.options.commandWaitSeconds,
    };
  }

  /** The node a credential belongs to; a 401 (logged) for none, or for a node removed. */
  async authenticate(authorization: string | undefined, address: string): Promise<NodeRow> {
    const credential = /^Bearer (\S+)$/.exec(authorization ?? '')?.[1];
    const [row] = credential
      ? await this.db
          .select()
          .from(nodeRows)
          .where(eq(nodeRows.credentialHash, hash(credential)))
      : [];
    if (!row || row.state === 'left') {
      this.log.warn({ address, known: Boolean(row) }, 'node call refused: credential');
      throw new UnauthorizedError(
        row ? 'this node was removed from the cluster' : 'the node credential is not valid',
      );
    }
    return row;
  }

  /** The node a tunnel's credential belongs to, with the key its tickets are minted with. */
  async tunnelNode(credential: string): Promise<TunnelNode | undefined> {
    const [row] = await this.db
      .select()
      .from(nodeRows)
      .where(eq(nodeRows.credentialHash, hash(credential)));
    if (!row || row.state === 'left') return undefined;
    return { nodeId: row.id, tunnelKey: Buffer.from(row.tunnelKey, 'base64') };
  }

  /** The protocol header of every call after join: another major is a 426 naming both. */
  checkVersion(header: string | undefined): void {
    const theirs = parseProtocol(header);
    if (!theirs || !protocolCompatible(theirs, NODE_PROTOCOL))
      throw new IncompatibleVersionError(
        `the node speaks aiva-node-protocol ${header ?? '(none)'}; this server speaks ${formatProtocol(NODE_PROTOCOL)} (aiva ${this.options.aivaVersion})`,
      );
  }

  /**
   * Takes a node's snapshot. Sandboxes it reports that the control plane placed on
   * another node are not its own: they are left out (and logged), never adopted.
   */
  async snapshot(row: NodeRow, snapshot: NodeSnapshot): Promise<void> {
    if (snapshot.nodeId !== row.id)
      throw new ForbiddenError(`the snapshot is of node ${snapshot.nodeId}, not of this node (${row.id})`);
    const ids = snapshot.sandboxes.map((s) => s.id);
    const foreign = ids.length
      ? await this.db
          .select({ id: sandboxes.id, nodeId: sandboxes.nodeId })
          .from(sandboxes)
          .where(and(inArray(sandboxes.id, ids), ne(sandboxes.nodeId, row.id)))
      : [];
    if (foreign.length > 0)
      this.log.warn(
        { node: row.id, claimed: foreign.map((f) => `${f.id}@${f.nodeId}`) },
        'a node reported sandboxes of other nodes: ignored',
      );
    const notOwn = new Set(foreign.map((f) => f.id));
    const own = { ...snapshot, sandboxes: snapshot.sandboxes.filter((s) => !notOwn.has(s.id)) };
    const state: NodeState = row.state === 'unreachable' ? 'ready' : row.state;
    await this.db
      .update(nodeRows)
      .set({ lastSnapshot: own as unknown as Record<string, unknown>, lastSeenAt: new Date(), state })
      .where(eq(nodeRows.id, row.id));
    if (state !== row.state) {
      this.log.info({ node: row.id, name: row.name }, 'node reachable again');
      this.nodes.describe(row.id, { state, labels: row.labels });
    }
    const link = this.links.get(row.id) ?? this.attach({ ...row, state });
    const first = !link.fresh;
    link.update(own, true);
    if (own.direct && this.direct)
      this.direct.prepare({ nodeId: row.id, tunnelKey: Buffer.from(row.tunnelKey, 'base64') }, own.direct);
    this.lost.delete(row.id);
    // Its first report since this server started, or since it was unreachable: now what it
    // runs can be reconciled with the rows (sandboxes ended meanwhile are killed).
    if (first || row.state === 'unreachable') await this.onReported?.(row.id);
  }
}
