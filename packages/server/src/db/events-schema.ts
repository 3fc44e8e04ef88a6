import {
  bigserial,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';
import { teams } from './schema.js';

/**
 * Sandbox lifecycle events (E2B's `sandbox.lifecycle.*`), written by a trigger on
 * `sandboxes` as a row changes state (migration 0006), so every path that changes a
 * sandbox — any replica, the expiry, a lost node — records them in the same transaction.
 * Kept seven days.
 */
export const sandboxEvents = pgTable(
  'sandbox_events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** The order events happened in (their ids are random). */
    seq: bigserial('seq', { mode: 'number' }).notNull(),
    teamId: text('team_id').notNull(),
    sandboxId: text('sandbox_id').notNull(),
    templateId: text('template_id').notNull(),
    /** `sandbox.lifecycle.created | updated | paused | resumed | killed | failed` */
    type: text('type').notNull(),
    data: jsonb('data').$type<Record<string, unknown> | null>(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('sandbox_events_team_idx').on(t.teamId, t.seq),
    index('sandbox_events_sandbox_idx').on(t.sandboxId, t.seq),
  ],
);

/** A team's webhook (E2B's `/events/webhooks`): the events it wants, where, and the secret deliveries are signed with. */
export const webhooks = pgTable(
  'webhooks',
  {
    id: text('id').primaryKey(),
    teamId: text('team_id')
      .notNull()
      .references(() => teams.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    url: text('url').notNull(),
    enabled: boolean('enabled').notNull().default(true),
    events: jsonb('events').$type<string[]>().notNull(),
    /** Kept as given, not hashed: the server signs each delivery with it. */
    signatureSecret: text('signature_secret').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('webhooks_team_idx').on(t.teamId)],
);

export type DeliveryState = 'pending' | 'delivered' | 'failed';

/** One event to one webhook, made by the same trigger as the event: its attempts, and how each went. */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    webhookId: text('webhook_id')
      .notNull()
      .references(() => webhooks.id, { onDelete: 'cascade' }),
    eventId: uuid('event_id').notNull(),
    state: text('state').$type<DeliveryState>().notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    /** When it is next due; a replica that takes it moves this on, so that no other takes it meanwhile. */
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true }).notNull().defaultNow(),
    /** Each attempt: when, the status or error, how long it took. */
    log: jsonb('log')
      .$type<{ at: string; status?: number; error?: string; ms: number }[]>()
      .notNull()
      .default([]),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true }),
  },
  (t) => [
    index('webhook_deliveries_due_idx').on(t.state, t.nextAttemptAt),
    index('webhook_deliveries_webhook_idx').on(t.webhookId, t.createdAt),
  ],
);
