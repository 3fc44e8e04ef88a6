// Lifecycle events and webhook deliveries on both databases the server runs on: the
// trigger of migration 0006 records an event for each change of a sandbox row's state and
// queues a delivery for each enabled webhook that wants it; the dispatcher POSTs them to a
// receiver on loopback, signed, retries a 500 with backoff, gives up after MAX_ATTEMPTS,
// and two dispatchers on one PostgreSQL send each attempt once.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import pino from 'pino';
import { openDatabase } from '../src/db/database.js';
import { sandboxEvents, sandboxes, teams, webhookDeliveries } from '../src/db/schema.js';
import { SandboxEvents } from '../src/services/sandbox-events.js';
import { MAX_ATTEMPTS, WebhookDispatcher } from '../src/services/webhook-dispatcher.js';
import { WebhookService } from '../src/services/webhook-service.js';
import { BACKENDS, openTestDatabase, type TestDatabase } from './helpers/test-databases.js';

const log = pino({ level: 'silent' });
const caller = { teamId: 'team_a', keyId: 'key_a', scopes: [] };

for (const backend of BACKENDS)
  describe(`webhook deliveries on ${backend}`, () => {
    let db: TestDatabase;
    let receiver: Server;
    let url = '';
    /** status to answer, by path; what came, in order. */
    const answer = new Map<string, number>();
    const got: { path: string; body: string; signature: string }[] = [];

    before(async () => {
      db = await openTestDatabase(backend, 'aiva-webhooks-');
      await db.database.db.insert(teams).values([
        { id: 'team_a', name: 'a' },
        { id: 'team_b', name: 'b' },
      ]);
      receiver = createServer((req, res) => {
        let body = '';
        req.setEncoding('utf8').on('data', (d: string) => {
          body += d;
        });
        req.on('end', () => {
          const path = req.url ?? '/';
          got.push({ path, body, signature: String(req.headers['aiva-signature']) });
          res.writeHead(answer.get(path) ?? 200).end();
        });
      });
      receiver.listen(0, '127.0.0.1');
      await new Promise((r) => receiver.once('listening', r));
      url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    });
    after(async () => {
      await new Promise((r) => receiver.close(r));
      await db?.close();
    });

    const newSandbox = async (id: string, teamId = 'team_a') => {
      const now = new Date();
      await db.database.db.insert(sandboxes).values({
        id,
        teamId,
        templateId: 'base',
        nodeId: 'local',
        state: 'creating',
        cpuCount: 2,
        memoryMb: 512,
        diskSizeMb: 1024,
        envdVersion: '0.1.0',
        envdAccessToken: 't',
        startedAt: now,
        endAt: new Date(now.getTime() + 60_000),
      });
    };
    const setRow = (id: string, set: Partial<typeof sandboxes.$inferInsert>) =>
      db.database.db.update(sandboxes).set(set).where(eq(sandboxes.id, id));
    const deliveriesOf = (webhookId: string) =>
      db.database.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.webhookId, webhookId));

    test('each change of state is one event, and only wanted, enabled, own-team webhooks get a delivery', async () => {
      const hooks = new WebhookService(db.database.db);
      const all = await hooks.create(caller, {
        url: `${url}/all`,
        events: ['sandbox.lifecycle.created', 'sandbox.lifecycle.killed', 'sandbox.lifecycle.updated'],
        signatureSecret: 's',
      });
      const off = await hooks.create(caller, {
        url: `${url}/off`,
        events: ['sandbox.lifecycle.created'],
        signatureSecret: 's',
        enabled: false,
      });
      const theirs = await hooks.create(
        { teamId: 'team_b', keyId: 'key_b', scopes: [] },
        { url: `${url}/b`, events: ['sandbox.lifecycle.created'], signatureSecret: 's' },
      );
      await newSandbox('sbx1');
      await setRow('sbx1', { state: 'running' });
      await setRow('sbx1', { endAt: new Date(Date.now() + 120_000) });
      await setRow('sbx1', { metadata: { a: 'b' } }); // no event: not a change of state or end
      await setRow('sbx1', { state: 'paused' });
      await setRow('sbx1', { state: 'running' });
      await setRow('sbx1', { state: 'killed', error: 'timeout', endedAt: new Date() });
      const events = await new SandboxEvents(db.database.db).list(
        caller,
        { orderAsc: true, limit: 100 },
        'sbx1',
      );
      assert.deepEqual(
        events.map((e) => e.type),
        [
          'sandbox.lifecycle.created',
          'sandbox.lifecycle.updated',
          'sandbox.lifecycle.paused',
          'sandbox.lifecycle.resumed',
          'sandbox.lifecycle.killed',
        ],
      );
      assert.equal(events[4]?.eventData?.reason, 'timeout');
      assert.deepEqual(
        (events[4]?.eventData?.execution as { vcpu_count?: number } | undefined)?.vcpu_count,
        2,
      );
      assert.equal((await deliveriesOf(all.id)).length, 3, 'created, updated, killed');
      assert.equal((await deliveriesOf(off.id)).length, 0, 'disabled');
      assert.equal((await deliveriesOf(theirs.id)).length, 0, 'another team’s');
      assert.deepEqual(
        await new SandboxEvents(db.database.db).list({ teamId: 'team_b', keyId: '', scopes: [] }, {}),
        [],
      );

      const dispatcher = new WebhookDispatcher({ db: db.database.db, log, retryBaseMs: 20 });
      await dispatcher.tick();
      await dispatcher.stop();
      const mine = got.filter((g) => g.path === '/all');
      assert.equal(mine.length, 3);
      for (const g of mine)
        assert.equal(g.signature, `sha256=${createHmac('sha256', 's').update(g.body).digest('hex')}`);
      const sent = await deliveriesOf(all.id);
      assert.deepEqual(
        sent.map((d) => [d.state, d.attempts]),
        [
          ['delivered', 1],
          ['delivered', 1],
          ['delivered', 1],
        ],
      );
    });

    test('a failing receiver is retried with backoff, then given up after MAX_ATTEMPTS', async () => {
      const hooks = new WebhookService(db.database.db);
      const hook = await hooks.create(caller, {
        url: `${url}/down`,
        events: ['sandbox.lifecycle.created'],
        signatureSecret: 's',
      });
      answer.set('/down', 503);
      await newSandbox('sbx2');
      await setRow('sbx2', { state: 'running' });
      const dispatcher = new WebhookDispatcher({ db: db.database.db, log, retryBaseMs: 5, pollMs: 20 });
      dispatcher.start();
      const end = Date.now() + 20_000;
      let d = (await deliveriesOf(hook.id))[0];
      while (d?.state === 'pending' && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 50));
        d = (await deliveriesOf(hook.id))[0];
      }
      await dispatcher.stop();
      assert.equal(d?.state, 'failed');
      assert.equal(d?.attempts, MAX_ATTEMPTS);
      assert.equal(got.filter((g) => g.path === '/down').length, MAX_ATTEMPTS);
      assert.ok(d?.log.every((a) => a.status === 503));
      // The gaps between attempts grow: the last one waited at least base × 2^(attempts − 2)
      // (a lower bound, whatever the load: the delay is counted from after the attempt before).
      const at = d?.log.map((a) => Date.parse(a.at)) ?? [];
      assert.ok((at.at(-1) ?? 0) - (at.at(-2) ?? 0) >= 5 * 2 ** (MAX_ATTEMPTS - 2));
    });

    if (backend !== 'PGlite')
      test('two dispatchers on one PostgreSQL send each delivery once', async () => {
        const second = await openDatabase({ databaseUrl: db.url, pgliteDir: '/nonexistent' });
        try {
          const hooks = new WebhookService(db.database.db);
          const hook = await hooks.create(caller, {
            url: `${url}/race`,
            events: ['sandbox.lifecycle.created'],
            signatureSecret: 's',
          });
          for (let i = 0; i < 40; i++) {
            await newSandbox(`race${i}`);
            await setRow(`race${i}`, { state: 'running' });
          }
          const a = new WebhookDispatcher({ db: db.database.db, log });
          const b = new WebhookDispatcher({ db: second.db, log });
          for (let i = 0; i < 6; i++) await Promise.all([a.tick(), b.tick()]);
          await Promise.all([a.stop(), b.stop()]);
          const delivered = (await deliveriesOf(hook.id)).filter((d) => d.state === 'delivered');
          assert.equal(delivered.length, 40);
          assert.equal(got.filter((g) => g.path === '/race').length, 40, 'no delivery was sent twice');
        } finally {
          await second.close();
        }
      });

    test('events past their retention are pruned', async () => {
      const events = new SandboxEvents(db.database.db);
      const before = (await db.database.db.select().from(sandboxEvents)).length;
      assert.equal(await events.prune(Date.now()), 0);
      assert.equal(await events.prune(Date.now() + 8 * 24 * 3600 * 1000), before);
    });
  });
