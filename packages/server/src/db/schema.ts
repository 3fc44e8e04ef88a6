import {
  bigint,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
} from 'drizzle-orm/pg-core';

/** A team owns API keys and sandboxes; a key sees only its team's sandboxes. */
export const teams = pgTable('teams', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  /** The team made on first start: its keys may create other teams. */
  operator: boolean('operator').notNull().default(false),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  // The team's quotas, set by the operator (`services/team-quotas.ts`); null: none beyond the server's default.
  /** Sandboxes alive at once (creating, running or paused); replaces `limits.maxSandboxesPerTeam`. */
  maxSandboxes: integer('max_sandboxes'),
  /** vCPUs of its creating and running sandboxes together. */
  maxVcpus: integer('max_vcpus'),
  /** Memory (MiB) of its creating and running sandboxes together. */
  maxMemoryMib: integer('max_memory_mib'),
  /** Disk (MiB) of its live sandboxes (paused ones too) together. */
  maxDiskMib: integer('max_disk_mib'),
  /** Sandboxes created in any 60 s. */
  createsPerMinute: integer('creates_per_minute'),
  /** API requests per second, per key (a token bucket in `rate_buckets`). */
  requestsPerSecond: integer('requests_per_second'),
  /** The longest timeout a create, `setTimeout` or connect may ask for (400 beyond). */
  maxLifetimeS: integer('max_lifetime_s'),
});

/**
 * One API key's request-rate token bucket, shared by every server replica: each request
 * takes a token in one statement (`services/team-quotas.ts`); `rate` tokens a second come back,
 * `rate` at most are held.
 */
export const rateBuckets = pgTable('rate_buckets', {
  keyId: text('key_id')
    .primaryKey()
    .references(() => apiKeys.id, { onDelete: 'cascade' }),
  rate: integer('rate').notNull(),
  tokens: doublePrecision('tokens').notNull(),
  /** Whether the last request took a token. */
  allowed: boolean('allowed').notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull(),
});

/** API keys, stored as SHA-256 digests: the key itself is shown once, when made. */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    /** sha256(key) in hex. */
    keyHash: text('key_hash').notNull().unique(),
    /** The first characters of the key, to tell keys apart in listings. */
    keyPrefix: text('key_prefix').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    /** Written at most once a minute per key (see TeamService.authenticate). */
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    /** After this the key is refused (401 "API key expired"); null: never. */
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    /** What the key may do (`auth/scopes.ts`); empty: everything its team may (keys made before scopes). */
    scopes: jsonb('scopes').$type<string[]>().notNull().default([]),
  },
  (t) => [index('api_keys_team_idx').on(t.teamId)],
);

/**
 * Every mutating API call (`api/audit-hook.ts`), append-only: no code updates or deletes a
 * row, and the migration's trigger refuses UPDATE, DELETE and TRUNCATE on the table. No
 * foreign keys, so that removing a team or key leaves its history.
 */
export const auditLog = pgTable(
  'audit_log',
  {
    id: text('id').primaryKey(),
    time: timestamp('time', { withTimezone: true }).notNull(),
    keyId: text('key_id').notNull(),
    teamId: text('team_id').notNull(),
    /** `sandbox.create`, `key.delete` … (`api/route-policy.ts`). */
    action: text('action').notNull(),
    method: text('method').notNull(),
    /** The route's pattern, e.g. `/sandboxes/:sandboxID`. */
    route: text('route').notNull(),
    /** The ids the call named or made (sandbox, template, build, key …). */
    targets: jsonb('targets').$type<string[]>().notNull().default([]),
    status: integer('status').notNull(),
    result: text('result').$type<'ok' | 'error'>().notNull(),
    clientAddress: text('client_address'),
  },
  (t) => [
    index('audit_log_team_time_idx').on(t.teamId, t.time, t.id),
    index('audit_log_time_idx').on(t.time, t.id),
  ],
);

/**
 * The states a sandbox's row can be in: creating → running ⇄ paused, then killed or error.
 * Which moves are allowed is `services/sandbox-states.ts`'s table.
 */
export type SandboxState = 'creating' | 'running' | 'paused' | 'killed' | 'error';

/** Every sandbox the API created, alive or ended (ended ones keep their row for history). */
export const sandboxes = pgTable(
  'sandboxes',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    templateId: text('template_id').notNull(),
    alias: text('alias'),
    nodeId: text('node_id').notNull(),
    state: text('state').$type<SandboxState>().notNull(),
    cpuCount: integer('cpu_count').notNull(),
    memoryMb: integer('memory_mb').notNull(),
    diskSizeMb: integer('disk_size_mb').notNull(),
    metadata: jsonb('metadata').$type<Record<string, string>>().notNull().default({}),
    envdVersion: text('envd_version').notNull(),
    envdAccessToken: text('envd_access_token').notNull(),
    trafficAccessToken: text('traffic_access_token'),
    allowInternetAccess: boolean('allow_internet_access'),
    network: jsonb('network').$type<Record<string, unknown>>(),
    onTimeout: text('on_timeout').$type<'kill' | 'pause'>().notNull().default('kill'),
    autoResume: boolean('auto_resume').notNull().default(false),
    /** With `onTimeout: pause`: whether that pause keeps memory (E2B's `autoPauseMemory`), or the disk only. */
    autoPauseMemory: boolean('auto_pause_memory').notNull().default(true),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull(),
    endAt: timestamp('end_at', { withTimezone: true }).notNull(),
    endedAt: timestamp('ended_at', { withTimezone: true }),
    error: text('error'),
  },
  (t) => [
    index('sandboxes_team_state_idx').on(t.teamId, t.state),
    index('sandboxes_started_idx').on(t.startedAt),
  ],
);

/**
 * Persistent snapshots (E2B's `POST /sandboxes/{id}/snapshots`): a sandbox saved on a node
 * as a checkpoint named by the snapshot's id, which creates may start from.
 */
export const snapshots = pgTable(
  'snapshots',
  {
    /** Also the name of the node's checkpoint. */
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    /** The name the team gave it, unique in the team. */
    name: text('name'),
    /** The sandbox it was taken from, and that sandbox's template. */
    sandboxId: text('sandbox_id').notNull(),
    templateId: text('template_id').notNull(),
    nodeId: text('node_id').notNull(),
    /** Whether it holds memory and processes (microVMs) or files only (containers). */
    memory: boolean('memory').notNull(),
    sizeBytes: bigint('size_bytes', { mode: 'number' }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('snapshots_team_name_idx').on(t.teamId, t.name),
    index('snapshots_team_created_idx').on(t.teamId, t.createdAt),
  ],
);

/** A template build's state, as E2B's: `waiting` for its steps, `building`, then `ready` or `error`. */
export type TemplateBuildStatus = 'waiting' | 'building' | 'ready' | 'error';

/**
 * Templates a team built (E2B's `/v3/templates`); aiva's recipe templates (`base`) have
 * no row. A template's name is unique in its team; a public one is visible to every team.
 */
export const templates = pgTable(
  'templates',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    public: boolean('public').notNull().default(false),
    cpuCount: integer('cpu_count').notNull(),
    memoryMb: integer('memory_mb').notNull(),
    diskSizeMb: integer('disk_size_mb').notNull(),
    /** The last build that became ready: what `Sandbox.create(name)` starts. */
    readyBuildId: text('ready_build_id'),
    buildCount: integer('build_count').notNull().default(0),
    spawnCount: bigint('spawn_count', { mode: 'number' }).notNull().default(0),
    lastSpawnedAt: timestamp('last_spawned_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('templates_team_name_idx').on(t.teamId, t.name),
    index('templates_public_idx').on(t.public),
  ],
);

/** One build of a template: its request, state, and (once ready) the definition nodes run. */
export const templateBuilds = pgTable(
  'template_builds',
  {
    id: text('id').primaryKey(),
    templateId: text('template_id')
      .notNull()
      .references(() => templates.id, { onDelete: 'cascade' }),
    status: text('status').$type<TemplateBuildStatus>().notNull(),
    cpuCount: integer('cpu_count').notNull(),
    memoryMb: integer('memory_mb').notNull(),
    /** Tags the build gets when it is ready. */
    tags: jsonb('tags').$type<string[]>().notNull().default([]),
    /** The node's template definition (layers, defaults, start command), once ready. */
    definition: jsonb('definition').$type<Record<string, unknown>>(),
    /** The user, workdir and env the build ended with: what a build from it starts with. */
    context: jsonb('context').$type<Record<string, unknown>>(),
    /** Every layer the build made or used: what deleting the template frees. */
    layers: jsonb('layers').$type<string[]>(),
    reason: jsonb('reason').$type<{ message: string; step?: string }>(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [index('template_builds_template_idx').on(t.templateId, t.createdAt)],
);

/** A template's tags (`name:tag`): each names one of its ready builds; `default` is the untagged name. */
export const templateTags = pgTable(
  'template_tags',
  {
    templateId: text('template_id')
      .notNull()
      .references(() => templates.id, { onDelete: 'cascade' }),
    tag: text('tag').notNull(),
    buildId: text('build_id').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('template_tags_idx').on(t.templateId, t.tag)],
);

/** A build's log, line by line (E2B's `logEntries`; `step` is base, a step number or finalize). */
export const templateBuildLogs = pgTable(
  'template_build_logs',
  {
    buildId: text('build_id')
      .notNull()
      .references(() => templateBuilds.id, { onDelete: 'cascade' }),
    seq: integer('seq').notNull(),
    timestamp: timestamp('timestamp', { withTimezone: true }).notNull(),
    level: text('level').$type<'debug' | 'info' | 'warn' | 'error'>().notNull(),
    step: text('step'),
    message: text('message').notNull(),
  },
  (t) => [uniqueIndex('template_build_logs_idx').on(t.buildId, t.seq)],
);

/** A metered span's state: a paused sandbox is metered for its disk only. */
export type MeteredState = 'running' | 'paused';

/**
 * Usage records (`services/usage-meter.ts`): one per sandbox per metering interval (and a
 * partial one where its state changed or it ended), each starting where the sandbox's
 * previous one ended, so no span is counted twice (the unique index holds that).
 */
export const usageRecords = pgTable(
  'usage_records',
  {
    sandboxId: text('sandbox_id').notNull(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    templateId: text('template_id').notNull(),
    state: text('state').$type<MeteredState>().notNull(),
    intervalStart: timestamp('interval_start', { withTimezone: true }).notNull(),
    intervalEnd: timestamp('interval_end', { withTimezone: true }).notNull(),
    vcpus: integer('vcpus').notNull(),
    vcpuSeconds: doublePrecision('vcpu_seconds').notNull(),
    memoryGibSeconds: doublePrecision('memory_gib_seconds').notNull(),
    diskGibSeconds: doublePrecision('disk_gib_seconds').notNull(),
    /** Measured: the samples' mean CPU use × the span (none sampled: 0). */
    cpuSeconds: doublePrecision('cpu_seconds').notNull(),
    /** The most memory a sample in the span saw in use; null if none was taken. */
    peakMemoryBytes: bigint('peak_memory_bytes', { mode: 'number' }),
    /**
     * Bytes the sandbox sent out of its node's host in the span (what its node's egress
     * counter rose by); null: not measured (a node that keeps no counter).
     */
    egressBytes: bigint('egress_bytes', { mode: 'number' }),
    /**
     * The node's egress counter of the sandbox as last read when the record was written:
     * where the next record counts from, also after the server restarts. Null: not known.
     */
    egressCounterBytes: bigint('egress_counter_bytes', { mode: 'number' }),
  },
  (t) => [
    uniqueIndex('usage_records_sandbox_start_idx').on(t.sandboxId, t.intervalStart),
    index('usage_records_team_start_idx').on(t.teamId, t.intervalStart),
    index('usage_records_start_idx').on(t.intervalStart),
  ],
);

/** The cluster's tables: nodes, their join tokens, the commands for them. */
export * from './cluster-schema.js';
export * from './console-schema.js';
export * from './environments-schema.js';
export * from './events-schema.js';
export * from './volumes-schema.js';
