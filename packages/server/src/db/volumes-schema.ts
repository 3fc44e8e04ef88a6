import { bigint, index, pgTable, primaryKey, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';
import { sandboxes, teams } from './schema.js';

/**
 * Volumes (E2B's `/volumes`): a directory on the disk of the node that made it
 * (`<home>/volumes/<id>`), which sandboxes of its team mount and which outlives them.
 */
export const volumes = pgTable(
  'volumes',
  {
    /** `vol` + lower-case letters and digits; also the directory's name. */
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    /** Unique in the team: `volumeMounts` name volumes by it. */
    name: text('name').notNull(),
    /** The node whose disk holds it: a sandbox that mounts it is placed there. */
    nodeId: text('node_id').notNull(),
    /** The bearer token of its content API (returned by create and get, as E2B's). */
    token: text('token').notNull(),
    /** What it held when last measured (on writes through the API, on mounts, on a sandbox's end). */
    bytes: bigint('bytes', { mode: 'number' }).notNull().default(0),
    measuredAt: timestamp('measured_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('volumes_team_name_idx').on(t.teamId, t.name),
    uniqueIndex('volumes_token_idx').on(t.token),
  ],
);

/** Which volume a sandbox mounts where (a volume is in use while such a sandbox has not ended). */
export const sandboxVolumes = pgTable(
  'sandbox_volumes',
  {
    sandboxId: text('sandbox_id')
      .notNull()
      .references(() => sandboxes.id, { onDelete: 'cascade' }),
    volumeId: text('volume_id')
      .notNull()
      .references(() => volumes.id, { onDelete: 'cascade' }),
    /** The absolute path in the sandbox it is mounted at. */
    path: text('path').notNull(),
  },
  (t) => [primaryKey({ columns: [t.sandboxId, t.path] }), index('sandbox_volumes_volume_idx').on(t.volumeId)],
);
