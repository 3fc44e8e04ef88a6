import { index, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { apiKeys, teams } from './schema.js';

/**
 * The web console's sign-in sessions (`services/console-sessions.ts`): a session stands for
 * the API key it was made from, so it ends with that key (deleted: cascade; expired:
 * checked on every use). The browser holds the token in an HttpOnly cookie; only its
 * SHA-256 is stored.
 */
export const consoleSessions = pgTable(
  'console_sessions',
  {
    id: text('id').primaryKey(),
    /** sha256(token) in hex. */
    tokenHash: text('token_hash').notNull().unique(),
    keyId: text('key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('console_sessions_expires_idx').on(t.expiresAt)],
);
