import { sql } from 'drizzle-orm';
import { bigserial, index, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';

/**
 * A node's state as the control plane sees it: `ready` takes new sandboxes; `cordoned`
 * keeps its sandboxes and takes no new ones; `draining` takes none and is being emptied;
 * `unreachable` has been silent too long; `left` was removed (`aiva node rm`): its row stays,
 * because sandboxes' and snapshots' rows name it.
 */
export type NodeState = 'ready' | 'cordoned' | 'draining' | 'unreachable' | 'left';

/** Every node that joined the cluster. The server makes the id at join. */
export const nodes = pgTable(
  'nodes',
  {
    id: text('id').primaryKey(),
    /** The operator's name for it (`aiva node join --name`), unique among the nodes that have not left. */
    name: text('name').notNull(),
    labels: jsonb('labels').$type<Record<string, string>>().notNull().default({}),
    state: text('state').$type<NodeState>().notNull().default('ready'),
    /** sha256(credential) in hex: the node's secret for every call after join, shown to it once. */
    credentialHash: text('credential_hash').notNull().unique(),
    /**
     * The key the tunnel's tickets are HMAC'd with (32 random bytes, base64). Stored as is,
     * not hashed: the server signs with it, so it must be able to read it back.
     */
    tunnelKey: text('tunnel_key').notNull(),
    /** The node protocol version it joined with (`1.0`) and its aiva version. */
    protocolVersion: text('protocol_version').notNull(),
    aivaVersion: text('aiva_version').notNull(),
    /** What the node reported at join: capacity, drivers, supported commands … */
    facts: jsonb('facts').$type<Record<string, unknown>>().notNull().default({}),
    /** The last snapshot the node pushed, whole. */
    lastSnapshot: jsonb('last_snapshot').$type<Record<string, unknown>>(),
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }),
    joinedAt: timestamp('joined_at', { withTimezone: true }).notNull().defaultNow(),
    /** The join token it used (its id), for the record. */
    joinTokenId: text('join_token_id'),
    /** `host:port` where the server may reach the node directly, when the operator says it can. */
    directAddress: text('direct_address'),
    /** The server replica (`server_replicas.id`) its tunnel is connected to now; null while it is down. */
    tunnelReplica: text('tunnel_replica'),
  },
  (t) => [uniqueIndex('nodes_name_idx').on(t.name).where(sql`${t.state} <> 'left'`)],
);

/** Tokens a node joins with (`aiva node token create`): shown once, stored as sha256 only. */
export const nodeTokens = pgTable('node_tokens', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  /** sha256(token) in hex. */
  tokenHash: text('token_hash').notNull().unique(),
  /** The first characters of the token, to tell tokens apart in listings. */
  tokenPrefix: text('token_prefix').notNull(),
  /** The team and API key that made it; null when made outside the API. */
  createdByTeam: text('created_by_team'),
  createdByKey: text('created_by_key'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  /** Null: never expires. */
  expiresAt: timestamp('expires_at', { withTimezone: true }),
  revokedAt: timestamp('revoked_at', { withTimezone: true }),
  lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
});

/** pending (not yet fetched by its node) → delivered → done or failed. */
export type NodeCommandState = 'pending' | 'delivered' | 'done' | 'failed';

/**
 * Commands for nodes (create, kill, pause …): the way a command issued on one server
 * replica reaches the node, whichever replica it polls, and the record that makes a
 * command id applied twice applied once.
 */
export const nodeCommands = pgTable(
  'node_commands',
  {
    /** Made by the server. */
    id: uuid('id').primaryKey(),
    /** The order commands are delivered in. */
    seq: bigserial('seq', { mode: 'number' }).notNull(),
    nodeId: text('node_id')
      .notNull()
      .references(() => nodes.id, { onDelete: 'cascade' }),
    sandboxId: text('sandbox_id'),
    kind: text('kind').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    state: text('state').$type<NodeCommandState>().notNull().default('pending'),
    /** The result's data when done; `{message, retryable, details}` when failed. */
    result: jsonb('result').$type<Record<string, unknown>>(),
    errorCode: text('error_code'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true }),
    doneAt: timestamp('done_at', { withTimezone: true }),
    /** After this the command is not run (the node answers DEADLINE_EXCEEDED). */
    deadline: timestamp('deadline', { withTimezone: true }).notNull(),
  },
  (t) => [
    index('node_commands_node_state_idx').on(t.nodeId, t.state, t.seq),
    index('node_commands_sandbox_idx').on(t.sandboxId),
  ],
);

/**
 * The `aiva server` processes sharing this database. Each one, while it runs, keeps its
 * row fresh (`seenAt`); the others reach it at `url` (its `--advertise-url`) to carry a
 * sandbox's traffic to a node whose tunnel it holds.
 */
export const serverReplicas = pgTable('server_replicas', {
  /** Made at each start. */
  id: text('id').primaryKey(),
  url: text('url').notNull(),
  startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
  seenAt: timestamp('seen_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Secrets the replicas share, made by the first one to start: `replica-hmac` signs what
 * one replica asks of another and the file URLs of template builds.
 */
export const clusterSecrets = pgTable('cluster_secrets', {
  name: text('name').primaryKey(),
  /** 32 random bytes, base64. */
  value: text('value').notNull(),
});
