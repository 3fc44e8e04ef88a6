import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { and, eq, inArray, ne, notInArray, sql } from 'drizzle-orm';
import type pg from 'pg';
import type { Logger } from 'pino';
import { clusterSecrets, nodes, serverReplicas } from '../db/cluster-schema.js';
import type { Database } from '../db/database.js';

/** The advisory lock the leader holds on its own connection ("aiva" in ASCII, then 1). */
const LEADER_LOCK = 0x61697661_01;
const TICK_MS = 2000;
/** A replica whose row is older than this is gone: its tunnels are forgotten. */
const REPLICA_GONE_MS = 20_000;
/** Most a notification payload may carry (PostgreSQL's limit is 8000 bytes). */
const MAX_PAYLOAD = 7800;

const CHANNELS = ['aiva_sandboxes', 'aiva_nodes', 'aiva_node_commands', 'aiva_progress'] as const;

export interface ServerReplicaOptions {
  db: Database;
  /** A connection outside the pool, for LISTEN and the leader's lock. */
  connect: () => Promise<pg.Client>;
  /** Where the other replicas reach this one (`aiva server --advertise-url`); `advertise` sets it once known. */
  url?: string;
  log: Logger;
  /** This replica's id (made at start); its connections' application_name is `aiva-server/<id>`. */
  id?: string;
  /** The operator's shared secret (AIVA_CLUSTER_SECRET); without it the first replica makes one in the database. */
  secret?: string;
}

export function newReplicaId(): string {
  return `r-${randomBytes(5).toString('hex')}`;
}

export const applicationNameOf = (replicaId: string) => `aiva-server/${replicaId}`;

/**
 * One `aiva server` process among the replicas that share a PostgreSQL database. It hears
 * the others' writes through LISTEN/NOTIFY (row triggers, migration 0005) and emits them:
 * `sandbox` (id) and `node` (id) for rows another replica changed, `command-issued`
 * (node id) and `command-done` (command id) for the command table, `progress` for a build's
 * log lines posted to another replica, `resync` after its connection came back (what it
 * missed meanwhile must be read again), and `leader` (boolean). One replica at a time is
 * the leader (a session advisory lock: it passes on when the leader's connection ends);
 * the leader alone runs the watches that act on everyone's rows (expiry, silent nodes).
 */
export class ServerReplica extends EventEmitter {
  readonly id: string;
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private stopped = false;
  private secret: Buffer | undefined;
  private url: string;

  constructor(private readonly o: ServerReplicaOptions) {
    super();
    this.setMaxListeners(0);
    this.id = o.id ?? newReplicaId();
    this.url = o.url ?? '';
  }

  /** Where the other replicas reach this one, once the server listens. */
  async advertise(url: string): Promise<void> {
    this.url = url;
    await this.heartbeat();
    await this.forgetPredecessors();
  }

  get leader(): boolean {
    return this.leading;
  }

  /** Connects, LISTENs, registers this replica and tries for the leadership. */
  async start(): Promise<void> {
    await this.heartbeat();
    await this.forgetPredecessors();
    await this.connect();
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.setLeader(false);
    await this.client?.end().catch(() => {});
    await this.o.db
      .delete(serverReplicas)
      .where(eq(serverReplicas.id, this.id))
      .catch(() => {});
  }

  /** The secret the replicas share (made by the first one that asks). */
  async sharedSecret(): Promise<Buffer> {
    if (this.secret) return this.secret;
    if (this.o.secret) {
      this.secret = createHash('sha256').update(this.o.secret).digest();
      return this.secret;
    }
    await this.o.db
      .insert(clusterSecrets)
      .values({ name: 'replica-hmac', value: randomBytes(32).toString('base64') })
      .onConflictDoNothing();
    const [row] = await this.o.db
      .select()
      .from(clusterSecrets)
      .where(eq(clusterSecrets.name, 'replica-hmac'));
    if (!row) throw new Error('the replicas’ shared secret is missing');
    this.secret = Buffer.from(row.value, 'base64');
    return this.secret;
  }

  /** Where replica `id` is reached, if it is alive. */
  async urlOf(id: string): Promise<string | undefined> {
    const [row] = await this.o.db
      .select({ url: serverReplicas.url })
      .from(serverReplicas)
      .where(
        and(
          eq(serverReplicas.id, id),
          sql`${serverReplicas.seenAt} > now() - make_interval(secs => ${REPLICA_GONE_MS / 1000})`,
        ),
      );
    return row?.url;
  }

  /** Where the other live replicas are reached. */
  async peers(): Promise<string[]> {
    const rows = await this.o.db
      .select({ id: serverReplicas.id, url: serverReplicas.url })
      .from(serverReplicas)
      .where(sql`${serverReplicas.seenAt} > now() - make_interval(secs => ${REPLICA_GONE_MS / 1000})`);
    return rows.filter((r) => r.id !== this.id && r.url).map((r) => r.url);
  }

  /** Tells the replica waiting for `commandId` its log lines (in pieces that fit a notification). */
  async progress(commandId: string, lines: unknown[]): Promise<void> {
    let batch: unknown[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const payload = JSON.stringify({ commandId, lines: batch });
      batch = [];
      await this.o.db.execute(sql`select pg_notify('aiva_progress', ${payload})`);
    };
    for (const line of lines) {
      if (JSON.stringify({ commandId, lines: [...batch, line] }).length > MAX_PAYLOAD) await flush();
      if (JSON.stringify({ commandId, lines: [line] }).length > MAX_PAYLOAD) continue; // a line too long to carry
      batch.push(line);
    }
    await flush();
  }

  private async connect(): Promise<void> {
    const client = await this.o.connect();
    client.on('error', (e) => {
      if (this.stopped || this.client !== client) return;
      this.o.log.warn({ err: e }, 'lost the replicas’ notification connection; reconnecting');
      this.client = undefined;
      this.setLeader(false);
      void client.end().catch(() => {});
    });
    client.on('notification', (n) => this.heard(n.channel, n.payload ?? ''));
    for (const channel of CHANNELS) await client.query(`LISTEN ${channel}`);
    this.client = client;
    await this.tryLead();
  }

  private heard(channel: string, payload: string): void {
    if (channel === 'aiva_progress') {
      try {
        this.emit('progress', JSON.parse(payload));
      } catch {}
      return;
    }
    const [subject = '', writer] = payload.split(' ');
    if (channel === 'aiva_node_commands') {
      const id = payload.slice(subject.length + 1);
      if (subject === 'issued') this.emit('command-issued', id);
      else if (subject === 'done') this.emit('command-done', id);
      return;
    }
    if (writer === applicationNameOf(this.id)) return; // our own write
    if (channel === 'aiva_sandboxes') this.emit('sandbox', subject);
    else if (channel === 'aiva_nodes') this.emit('node', subject);
  }

  private async tick(): Promise<void> {
    try {
      await this.heartbeat();
      if (!this.client) {
        await this.connect();
        this.emit('resync');
      } else if (!this.leading) await this.tryLead();
      if (this.leading) await this.pruneGone();
    } catch (e) {
      this.o.log.warn({ err: e }, 'replica upkeep failed');
    }
  }

  private async heartbeat(): Promise<void> {
    await this.o.db
      .insert(serverReplicas)
      .values({ id: this.id, url: this.url })
      .onConflictDoUpdate({ target: serverReplicas.id, set: { seenAt: sql`now()`, url: this.url } });
  }

  private async tryLead(): Promise<void> {
    const r = await this.client?.query<{ ok: boolean }>('select pg_try_advisory_lock($1) as ok', [
      LEADER_LOCK,
    ]);
    if (r?.rows[0]?.ok) this.setLeader(true);
  }

  private setLeader(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.o.log.info({ replica: this.id }, leading ? 'this replica leads' : 'this replica no longer leads');
    this.emit('leader', leading);
  }

  /**
   * Forgets the replicas that were reached at this one's address: one process listens
   * there now, so they are gone (a replica killed and started again), and so are the
   * tunnels they held. Without it, for as long as they seem alive, their nodes would seem
   * connected and streams would be forwarded to this very replica.
   */
  private async forgetPredecessors(): Promise<void> {
    if (!this.url) return;
    const gone = await this.o.db
      .delete(serverReplicas)
      .where(and(eq(serverReplicas.url, this.url), ne(serverReplicas.id, this.id)))
      .returning({ id: serverReplicas.id });
    if (gone.length === 0) return;
    const ids = gone.map((g) => g.id);
    const cleared = await this.o.db
      .update(nodes)
      .set({ tunnelReplica: null })
      .where(inArray(nodes.tunnelReplica, ids))
      .returning({ id: nodes.id });
    this.o.log.info(
      { replicas: ids, tunnelsOf: cleared.map((c) => c.id) },
      'forgot the replica this one replaces at its address',
    );
    // Our own writes are not heard back: this replica's view of those nodes is read again.
    for (const c of cleared) this.emit('node', c.id);
  }

  /** Forgets replicas that stopped reporting, and the tunnels they held. */
  private async pruneGone(): Promise<void> {
    const gone = await this.o.db
      .delete(serverReplicas)
      .where(sql`${serverReplicas.seenAt} < now() - make_interval(secs => ${REPLICA_GONE_MS / 1000})`)
      .returning({ id: serverReplicas.id });
    const alive = this.o.db.select({ id: serverReplicas.id }).from(serverReplicas);
    const cleared = await this.o.db
      .update(nodes)
      .set({ tunnelReplica: null })
      .where(notInArray(nodes.tunnelReplica, alive))
      .returning({ id: nodes.id });
    if (gone.length || cleared.length)
      this.o.log.info(
        { replicas: gone.map((g) => g.id), tunnelsOf: cleared.map((c) => c.id) },
        'forgot replicas that stopped',
      );
    for (const c of cleared) this.emit('node', c.id);
  }
}
