import { createHash, createHmac } from 'node:crypto';
import { and, asc, eq, inArray, lte, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import type { Database } from '../db/database.js';
import { sandboxEvents, webhookDeliveries, webhooks } from '../db/schema.js';
import { eventOf, type SandboxEvent } from './sandbox-events.js';

// Delivers the rows the lifecycle trigger puts in `webhook_deliveries`: every replica
// polls for due ones and claims a batch by moving their due time on (`FOR UPDATE SKIP
// LOCKED`), so two replicas never send the same attempt and a replica that dies mid-way
// leaves them to be taken again. A delivery is a POST of the event (E2B's v1 shape)
// signed two ways, retried with exponential backoff until a 2xx or MAX_ATTEMPTS.

/** Attempts before a delivery is given up as failed. */
export const MAX_ATTEMPTS = 8;
/** How long a claimed delivery is held from other replicas: longer than one attempt may take. */
const CLAIM_MS = 30_000;
/** How long the receiver has to answer. */
const ATTEMPT_TIMEOUT_MS = 10_000;
const BATCH = 16;

/** E2B's signature: unpadded base64 of sha256(secret ‖ body). */
export function e2bSignature(secret: string, body: string): string {
  return createHash('sha256')
    .update(secret + body)
    .digest('base64')
    .replace(/=+$/, '');
}

/** aiva's signature: `sha256=` and the hex HMAC-SHA256 of the body keyed by the secret. */
export function hmacSignature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

export interface WebhookDispatcherOptions {
  db: Database;
  log: Logger;
  /** Outcomes of attempts: `delivered`, `retry`, `failed`. */
  attempts?: Counter<'outcome'>;
  /** The first retry's delay; each next one doubles it, up to a minute. */
  retryBaseMs?: number;
  pollMs?: number;
}

export class WebhookDispatcher {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly o: WebhookDispatcherOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.pollMs ?? 500);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.allSettled([...this.inFlight]);
  }

  /** Claims the due deliveries and sends each (one pass; exported for tests). */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const { db } = this.o;
      const now = new Date();
      const due = db
        .select({ id: webhookDeliveries.id })
        .from(webhookDeliveries)
        .where(and(eq(webhookDeliveries.state, 'pending'), lte(webhookDeliveries.nextAttemptAt, now)))
        .orderBy(asc(webhookDeliveries.nextAttemptAt))
        .limit(BATCH)
        .for('update', { skipLocked: true });
      const claimed = await db
        .update(webhookDeliveries)
        .set({ nextAttemptAt: new Date(now.getTime() + CLAIM_MS) })
        .where(inArray(webhookDeliveries.id, due))
        .returning();
      for (const d of claimed) {
        const p = this.attempt(d).catch((e: Error) =>
          this.o.log.error({ delivery: d.id, err: e }, 'a webhook delivery could not be recorded'),
        );
        this.inFlight.add(p);
        void p.finally(() => this.inFlight.delete(p));
      }
    } catch (e) {
      this.o.log.warn({ err: e }, 'polling webhook deliveries failed');
    } finally {
      this.busy = false;
    }
  }

  private async attempt(d: typeof webhookDeliveries.$inferSelect): Promise<void> {
    const { db, log } = this.o;
    const [hook] = await db.select().from(webhooks).where(eq(webhooks.id, d.webhookId));
    const [event] = await db.select().from(sandboxEvents).where(eq(sandboxEvents.id, d.eventId));
    if (!hook || !event) {
      // Its webhook was deleted, or its event is past retention: nothing to send.
      await db.update(webhookDeliveries).set({ state: 'failed' }).where(eq(webhookDeliveries.id, d.id));
      return;
    }
    const body = JSON.stringify(eventOf(event) satisfies SandboxEvent);
    const started = Date.now();
    let status: number | undefined;
    let error: string | undefined;
    try {
      const r = await fetch(hook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'aiva-webhooks/1',
          'e2b-webhook-id': hook.id,
          'e2b-delivery-id': d.id,
          'e2b-signature-version': 'v1',
          'e2b-signature': e2bSignature(hook.signatureSecret, body),
          'aiva-signature': hmacSignature(hook.signatureSecret, body),
          'aiva-attempt': String(d.attempts + 1),
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
      });
      status = r.status;
      await r.body?.cancel();
    } catch (e) {
      error = (e as Error).cause ? String((e as Error).cause) : (e as Error).message;
    }
    const attempts = d.attempts + 1;
    const entry = {
      at: new Date(started).toISOString(),
      ms: Date.now() - started,
      ...(status !== undefined ? { status } : {}),
      ...(error ? { error } : {}),
    };
    const ok = status !== undefined && status >= 200 && status < 300;
    const outcome = ok ? 'delivered' : attempts >= MAX_ATTEMPTS ? 'failed' : 'retry';
    const delay = Math.min(60_000, (this.o.retryBaseMs ?? 1000) * 2 ** (attempts - 1));
    await db
      .update(webhookDeliveries)
      .set({
        attempts,
        state: outcome === 'retry' ? 'pending' : outcome,
        nextAttemptAt: new Date(Date.now() + delay),
        log: sql`${webhookDeliveries.log} || ${JSON.stringify([entry])}::jsonb`,
        ...(ok ? { deliveredAt: new Date() } : {}),
      })
      .where(eq(webhookDeliveries.id, d.id));
    this.o.attempts?.inc({ outcome });
    const fields = { webhook: hook.id, delivery: d.id, event: event.type, attempt: attempts, status, error };
    if (outcome === 'delivered') log.debug(fields, 'webhook delivered');
    else if (outcome === 'retry') log.info(fields, `webhook delivery failed; retrying in ${delay} ms`);
    else log.warn(fields, `webhook delivery failed ${attempts} times: given up`);
  }
}
