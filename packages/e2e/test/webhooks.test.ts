// Sandbox lifecycle events and webhooks (issue 18): the e2b SDK drives a sandbox through
// its life on a real `aiva up`; E2B's event API lists what happened, and a receiver on
// loopback gets each event signed (E2B's e2b-signature and aiva's HMAC-SHA256), one of
// them after a 500 and a retry. And the Grafana dashboard asks for metrics that exist.
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Sandbox } from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

const server = aivaUpForFile();
const SECRET = 'whsec-test-secret';

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}
const received: Received[] = [];
let receiver: Server;
let receiverUrl = '';
/** Paths whose first request is answered 500. */
const failOnce = new Set(['/flaky']);

before(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => {
      body += d;
    });
    req.on('end', () => {
      const path = req.url ?? '/';
      const status = failOnce.delete(path) ? 500 : 200;
      received.push({ path, headers: req.headers, body, status });
      res.writeHead(status).end();
    });
  });
  receiver.listen(0, '127.0.0.1');
  await new Promise((r) => receiver.once('listening', r));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});

after(() => new Promise<void>((r) => receiver.close(() => r())));

async function api<T = Record<string, unknown>>(
  method: string,
  path: string,
  body?: unknown,
  key = server.up.apiKey,
) {
  const r = await fetch(`${server.up.url}${path}`, {
    method,
    headers: { 'x-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: (text ? JSON.parse(text) : undefined) as T };
}

async function until<T>(what: string, f: () => T | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const eventsAt = (path: string, sandboxId: string) =>
  received
    .filter((r) => r.path === path && r.status === 200)
    .map(
      (r) =>
        JSON.parse(r.body) as { type: string; sandboxId: string; eventData: Record<string, unknown> | null },
    )
    .filter((e) => e.sandboxId === sandboxId);

const ALL = [
  'sandbox.lifecycle.created',
  'sandbox.lifecycle.updated',
  'sandbox.lifecycle.paused',
  'sandbox.lifecycle.resumed',
  'sandbox.lifecycle.killed',
];

describe('sandbox lifecycle events and webhooks', () => {
  let hookId = '';
  let flakyId = '';

  test('bad webhooks are refused and nothing is made', async () => {
    const base = { url: `${receiverUrl}/x`, events: ALL, signatureSecret: SECRET };
    for (const [body, why] of [
      [{ ...base, url: 'ftp://127.0.0.1/x' }, /http or https/],
      [{ ...base, url: 'not a url' }, /not a URL/],
      [{ ...base, events: ['sandbox.lifecycle.exploded'] }, /unknown event type/],
      [{ ...base, events: [] }, /at least one event/],
      [{ url: base.url, events: ALL }, /signatureSecret/],
    ] as const) {
      const r = await api<{ message: string }>('POST', '/events/webhooks', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.body.message, why);
    }
    assert.deepEqual((await api<unknown[]>('GET', '/events/webhooks')).body, []);
  });

  test('a sandbox’s life reaches the webhook, signed, and E2B’s event API lists it', async () => {
    const made = await api<{ id: string; events: string[]; teamID: string }>('POST', '/events/webhooks', {
      name: 'all',
      url: `${receiverUrl}/ok`,
      events: ALL,
      signatureSecret: SECRET,
    });
    assert.equal(made.status, 201);
    assert.deepEqual(made.body.events, ALL);
    assert.equal(
      (made.body as Record<string, unknown>).signatureSecret,
      undefined,
      'the secret is never shown',
    );
    hookId = made.body.id;
    const flaky = await api<{ id: string }>('POST', '/events/webhooks', {
      url: `${receiverUrl}/flaky`,
      events: ['sandbox.lifecycle.created'],
      signatureSecret: SECRET,
    });
    flakyId = flaky.body.id;

    const sbx = await Sandbox.create({ timeoutMs: 120_000 });
    await sbx.setTimeout(300_000);
    assert.equal(await sbx.pause(), true);
    await Sandbox.connect(sbx.sandboxId);
    await sbx.kill();

    // A connect resumes the sandbox and gives it a new end time: resumed, then updated.
    const life = [...ALL.slice(0, 4), 'sandbox.lifecycle.updated', 'sandbox.lifecycle.killed'];
    const got = await until('six events at the receiver', () => {
      const e = eventsAt('/ok', sbx.sandboxId);
      return e.length >= life.length ? e : undefined;
    });
    // Deliveries go in parallel and may be retried: they need not arrive in order.
    assert.deepEqual(got.map((e) => e.type).sort(), [...life].sort());
    const killed = got.find((e) => e.type === 'sandbox.lifecycle.killed');
    assert.equal(killed?.eventData?.reason, 'killed');
    const execution = (killed?.eventData?.execution ?? {}) as { vcpu_count?: number };
    assert.ok((execution.vcpu_count ?? 0) > 0);
    for (const e of got.filter((x) => x.type === 'sandbox.lifecycle.updated'))
      assert.match(String(e.eventData?.set_timeout), /^\d{4}-/);
    for (const r of received.filter((x) => x.path === '/ok')) {
      const e2b = createHash('sha256')
        .update(SECRET + r.body)
        .digest('base64')
        .replace(/=+$/, '');
      assert.equal(r.headers['e2b-signature'], e2b);
      assert.equal(
        r.headers['aiva-signature'],
        `sha256=${createHmac('sha256', SECRET).update(r.body).digest('hex')}`,
      );
      assert.equal(r.headers['e2b-webhook-id'], hookId);
      assert.equal(r.headers['e2b-signature-version'], 'v1');
    }

    // The same events through E2B's API, in order when asked, and filtered by type.
    const listed = await api<{ type: string; sandboxTeamId: string; version: string }[]>(
      'GET',
      `/events/sandboxes/${sbx.sandboxId}?orderAsc=true`,
    );
    assert.equal(listed.status, 200);
    assert.deepEqual(
      listed.body.map((e) => e.type),
      life,
    );
    assert.equal(listed.body[0]?.version, 'v1');
    assert.equal(listed.body[0]?.sandboxTeamId, made.body.teamID);
    const kills = await api<{ type: string }[]>(
      'GET',
      `/events/sandboxes?types=sandbox.lifecycle.killed&types=sandbox.lifecycle.paused&limit=100`,
    );
    assert.deepEqual(
      kills.body.map((e) => e.type),
      ['sandbox.lifecycle.killed', 'sandbox.lifecycle.paused'],
    );
  });

  test('a delivery answered 500 is retried, and the delivery log shows both attempts', async () => {
    const r = await until('a delivery to /flaky after its 500', () =>
      received.some((x) => x.path === '/flaky' && x.status === 200) ? true : undefined,
    );
    assert.ok(r);
    const attempts = received.filter((x) => x.path === '/flaky');
    assert.deepEqual(
      attempts.map((x) => x.status),
      [500, 200],
    );
    assert.equal(attempts[0]?.headers['e2b-delivery-id'], attempts[1]?.headers['e2b-delivery-id']);
    // The attempt is recorded once the receiver has answered.
    await new Promise((r) => setTimeout(r, 300));
    const deliveries = await api<{ state: string; attempts: number; log: { status?: number }[] }[]>(
      'GET',
      `/events/webhooks/${flakyId}/deliveries`,
    );
    assert.equal(deliveries.status, 200);
    const [d] = deliveries.body;
    assert.equal(d?.state, 'delivered');
    assert.equal(d?.attempts, 2);
    assert.deepEqual(
      d?.log.map((a) => a.status),
      [500, 200],
    );
    const metrics = await (await fetch(`${server.up.url}/metrics`)).text();
    assert.match(metrics, /aiva_webhook_attempts_total\{outcome="retry"\} [1-9]/);
  });

  test('a disabled webhook gets nothing; another team sees none of it; a deleted one is gone', async () => {
    const off = await api<{ enabled: boolean }>('PATCH', `/events/webhooks/${hookId}`, { enabled: false });
    assert.equal(off.status, 200);
    assert.equal(off.body.enabled, false);
    const sbx = await Sandbox.create({ timeoutMs: 60_000 });
    const live = await (await fetch(`${server.up.url}/metrics`)).text();
    assert.match(live, /aiva_team_sandboxes\{team="team_\w+",state="running"\} 1/);
    await sbx.kill();
    const ended = await (await fetch(`${server.up.url}/metrics`)).text();
    assert.match(ended, /aiva_sandbox_lifetime_seconds_count\{reason="killed"\} [2-9]/);
    const listed = await api<unknown[]>('GET', `/events/sandboxes/${sbx.sandboxId}`);
    assert.equal(listed.body.length, 2, 'created and killed are recorded');
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(eventsAt('/ok', sbx.sandboxId), [], 'nothing was sent to the disabled webhook');

    const other = await api<{ key: string }>('POST', '/v1/teams', { name: 'others' });
    assert.equal(other.status, 201);
    assert.equal((await api('GET', `/events/webhooks/${hookId}`, undefined, other.body.key)).status, 404);
    assert.deepEqual((await api<unknown[]>('GET', '/events/sandboxes', undefined, other.body.key)).body, []);
    assert.equal((await api('DELETE', `/events/webhooks/${hookId}`, undefined, other.body.key)).status, 404);

    assert.equal((await api('DELETE', `/events/webhooks/${hookId}`)).status, 200);
    assert.equal((await api('GET', `/events/webhooks/${hookId}`)).status, 404);
    assert.equal((await api('DELETE', `/events/webhooks/${hookId}`)).status, 404);
  });

  test('the Grafana dashboard (deploy/grafana) queries only metrics the server exports', async () => {
    const file = fileURLToPath(new URL('../../../../deploy/grafana/aiva-dashboard.json', import.meta.url));
    const dashboard = JSON.parse(await readFile(file, 'utf8')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    const names = new Set(
      exprs.flatMap((e) => e.match(/aiva_[a-z_]+/g) ?? []).map((n) => n.replace(/_(bucket|count|sum)$/, '')),
    );
    assert.ok(names.size >= 10);
    const exported = await (await fetch(`${server.up.url}/metrics`)).text();
    for (const name of names)
      assert.match(exported, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is not exported`);
  });
});
