import { integer, jsonb, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';
import { teams } from './schema.js';
import { volumes } from './volumes-schema.js';

/** A host port forwarded to a guest port of an environment's sandbox (`BIND:HOST:GUEST`). */
export interface EnvironmentPort {
  bind: string;
  host: number;
  guest: number;
}

/** What `restart` does when the service ends: always start it again, only after a failure, or never. */
export type RestartPolicy = 'always' | 'on-failure' | 'no';

/** The environment's service: what `deploy` installed and how it runs. */
export interface EnvironmentServiceDef {
  /** Run with `sh -c` in `/app`. */
  cmd: string;
  restart: RestartPolicy;
}

/**
 * Named environments (`aiva init|start|stop|rm`): a sandbox of a team with a name, no end
 * time and a volume of its own (mounted at /data), kept across restarts of aiva.
 */
export const environments = pgTable(
  'environments',
  {
    /** `env_` + 20 hex. */
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    /** `[a-z0-9][a-z0-9-]{0,62}`, unique in the team. */
    name: text('name').notNull(),
    /** The template its fresh sandboxes are made from. */
    template: text('template').notNull(),
    /** Sizes asked for its next fresh sandbox (null: the template's). */
    cpus: integer('cpus'),
    memoryMb: integer('memory_mb'),
    diskMb: integer('disk_mb'),
    ports: jsonb('ports').$type<EnvironmentPort[]>().notNull().default([]),
    /** The service's environment variables (`aiva config NAME set env.KEY=VALUE`). */
    env: jsonb('env').$type<Record<string, string>>().notNull().default({}),
    service: jsonb('service').$type<EnvironmentServiceDef>(),
    /** Its data (a volume named after it); removing the volume removes the environment. */
    volumeId: text('volume_id')
      .notNull()
      .references(() => volumes.id, { onDelete: 'cascade' }),
    /** Its current (or last) sandbox; null before the first start. */
    sandboxId: text('sandbox_id'),
    /** What the user last asked for: brought back to `running` when aiva starts. */
    desiredState: text('desired_state').$type<'running' | 'stopped'>().notNull().default('stopped'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('environments_team_name_idx').on(t.teamId, t.name)],
);
