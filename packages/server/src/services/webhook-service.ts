import { randomBytes } from 'node:crypto';
import { and, desc, eq } from 'drizzle-orm';
import type { Database } from '../db/database.js';
import { webhookDeliveries, webhooks } from '../db/schema.js';
import { InvalidRequestError, NotFoundError } from './errors.js';
import { SANDBOX_EVENT_TYPES } from './sandbox-events.js';
import type { Caller } from './team-service.js';

type Row = typeof webhooks.$inferSelect;

/** A webhook as E2B's API shows it (its secret never). */
export interface WebhookInfo {
  id: string;
  teamID: string;
  name: string;
  url: string;
  enabled: boolean;
  events: string[];
  createdAt: string;
}

export interface WebhookInput {
  name?: string;
  url?: string;
  enabled?: boolean;
  events?: string[];
  signatureSecret?: string;
}

/** Webhooks a team may have. */
export const MAX_WEBHOOKS = 25;

const info = (r: Row): WebhookInfo => ({
  id: r.id,
  teamID: r.teamId,
  name: r.name,
  url: r.url,
  enabled: r.enabled,
  events: r.events,
  createdAt: r.createdAt.toISOString(),
});

function checkUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidRequestError(`webhook url "${url}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new InvalidRequestError(`webhook url must be http or https, not ${u.protocol}`);
  if (u.username || u.password) throw new InvalidRequestError('webhook url may not hold credentials');
}

function checkEvents(events: string[]): void {
  if (events.length === 0) throw new InvalidRequestError('a webhook needs at least one event type');
  const unknown = events.filter((e) => !(SANDBOX_EVENT_TYPES as readonly string[]).includes(e));
  if (unknown.length > 0)
    throw new InvalidRequestError(
      `unknown event type(s) ${unknown.join(', ')}; known: ${SANDBOX_EVENT_TYPES.join(', ')}`,
    );
}

/** A team's webhooks (E2B's `/events/webhooks`) and their delivery log. */
export class WebhookService {
  constructor(private readonly db: Database) {}

  async create(caller: Caller, input: WebhookInput): Promise<WebhookInfo> {
    const { url, events, signatureSecret } = input;
    if (!url || !events || !signatureSecret)
      throw new InvalidRequestError('a webhook needs url, events and signatureSecret');
    checkUrl(url);
    checkEvents(events);
    const count = (
      await this.db.select({ id: webhooks.id }).from(webhooks).where(eq(webhooks.teamId, caller.teamId))
    ).length;
    if (count >= MAX_WEBHOOKS)
      throw new InvalidRequestError(`a team may have at most ${MAX_WEBHOOKS} webhooks`);
    const [row] = await this.db
      .insert(webhooks)
      .values({
        id: `wh_${randomBytes(8).toString('hex')}`,
        teamId: caller.teamId,
        name: input.name ?? url,
        url,
        enabled: input.enabled ?? true,
        events: [...new Set(events)],
        signatureSecret,
      })
      .returning();
    if (!row) throw new Error('the webhook was not stored');
    return info(row);
  }

  async list(caller: Caller): Promise<WebhookInfo[]> {
    const rows = await this.db.select().from(webhooks).where(eq(webhooks.teamId, caller.teamId));
    return rows.map(info);
  }

  private async row(caller: Caller, id: string): Promise<Row> {
    const [row] = await this.db
      .select()
      .from(webhooks)
      .where(and(eq(webhooks.id, id), eq(webhooks.teamId, caller.teamId)));
    if (!row) throw new NotFoundError(`webhook ${id} not found`);
    return row;
  }

  async get(caller: Caller, id: string): Promise<WebhookInfo> {
    return info(await this.row(caller, id));
  }

  /** Replaces the fields given. */
  async update(caller: Caller, id: string, input: WebhookInput): Promise<WebhookInfo> {
    await this.row(caller, id);
    if (input.url !== undefined) checkUrl(input.url);
    if (input.events !== undefined) checkEvents(input.events);
    if (input.signatureSecret !== undefined && input.signatureSecret.length === 0)
      throw new InvalidRequestError('signatureSecret may not be empty');
    const set = {
      ...(input.name !== undefined ? { name: input.name } : {}),
      ...(input.url !== undefined ? { url: input.url } : {}),
      ...(input.enabled !== undefined ? { enabled: input.enabled } : {}),
      ...(input.events !== undefined ? { events: [...new Set(input.events)] } : {}),
      ...(input.signatureSecret !== undefined ? { signatureSecret: input.signatureSecret } : {}),
    };
    if (Object.keys(set).length === 0) return this.get(caller, id);
    const [row] = await this.db.update(webhooks).set(set).where(eq(webhooks.id, id)).returning();
    if (!row) throw new NotFoundError(`webhook ${id} not found`);
    return info(row);
  }

  /** Removes the webhook and its delivery log; false if there is none. */
  async remove(caller: Caller, id: string): Promise<boolean> {
    const gone = await this.db
      .delete(webhooks)
      .where(and(eq(webhooks.id, id), eq(webhooks.teamId, caller.teamId)))
      .returning({ id: webhooks.id });
    return gone.length > 0;
  }

  /** The webhook's latest deliveries, newest first: each one's state, attempts and their outcomes. */
  async deliveries(caller: Caller, id: string, limit = 50) {
    await this.row(caller, id);
    const rows = await this.db
      .select()
      .from(webhookDeliveries)
      .where(eq(webhookDeliveries.webhookId, id))
      .orderBy(desc(webhookDeliveries.createdAt))
      .limit(limit);
    return rows.map((r) => ({
      id: r.id,
      eventID: r.eventId,
      state: r.state,
      attempts: r.attempts,
      log: r.log,
      createdAt: r.createdAt.toISOString(),
      deliveredAt: r.deliveredAt?.toISOString() ?? null,
    }));
  }
}
