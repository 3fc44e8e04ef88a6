// Scoped, expiring API keys and the audit log against a real `aiva up`, through the e2b
// SDK, fetch and the built CLI: an expired key is a 401, a read-only key lists but cannot
// create (403 naming the scope), a templates-only key cannot create a sandbox; every
// mutating call leaves exactly one audit row with its action, targets and result; the
// audit API pages, filters and keeps teams apart; and the server's own database refuses
// to change the log.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openDatabase } from '@aiva/server';
import { sql } from 'drizzle-orm';
import { AuthenticationError, Sandbox, SandboxError } from 'e2b';
import { aivaUpForFile, runAiva } from './helpers/aiva-up.js';

const server = aivaUpForFile();

interface KeyInfo {
  id: string;
  name: string;
  scopes: string[];
  expiresAt: string | null;
  lastUsedAt: string | null;
}
interface AuditEntry {
  id: string;
  keyId: string;
  teamId: string;
  action: string;
  route: string;
  targets: string[];
  status: number;
  result: 'ok' | 'error';
  clientAddress?: string;
}

/** Calls the API with a key (the operator's unless given). */
async function api(method: string, path: string, body?: unknown, apiKey = server.up.apiKey) {
  const r = await fetch(`${server.up.url}${path}`, {
    method,
    headers: {
      'x-api-key': apiKey,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  // biome-ignore lint/suspicious/noExplicitAny: test reads whatever the API answered
  return { status: r.status, body: (text ? JSON.parse(text) : undefined) as any };
}

async function createKey(spec: { name: string; scopes?: string[]; expiresInSeconds?: number }, by?: string) {
  const r = await api('POST', '/v1/keys', spec, by);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body as { key: string; info: KeyInfo };
}

/** Every audit entry the key sees, newest first, page by page (`limit` per page). */
async function auditAll(query = '', apiKey = server.up.apiKey, limit = 1000): Promise<AuditEntry[]> {
  const all: AuditEntry[] = [];
  let cursor: string | undefined;
  do {
    const q = new URLSearchParams(query);
    q.set('limit', String(limit));
    if (cursor) q.set('cursor', cursor);
    const r = await api('GET', `/v1/audit?${q}`, undefined, apiKey);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    all.push(...r.body.entries);
    cursor = r.body.nextToken;
  } while (cursor);
  return all;
}

/**
 * The key's audit entries, oldest first, once there are `count` of them (rows are written
 * after the answer) and still `count` a moment later: never more.
 */
async function entriesOf(keyId: string, count: number): Promise<AuditEntry[]> {
  const deadline = Date.now() + 10_000;
  let mine: AuditEntry[] = [];
  for (;;) {
    mine = (await auditAll()).filter((e) => e.keyId === keyId).reverse();
    if (mine.length >= count || Date.now() > deadline) break;
    await sleep(100);
  }
  await sleep(500);
  mine = (await auditAll()).filter((e) => e.keyId === keyId).reverse();
  assert.equal(mine.length, count, JSON.stringify(mine, null, 2));
  return mine;
}

const brief = (e: AuditEntry) => ({
  action: e.action,
  targets: e.targets,
  status: e.status,
  result: e.result,
});

describe('scoped and expiring keys', () => {
  test('an expired key is refused with 401 "API key expired", by fetch and the SDK', async () => {
    const { key } = await createKey({ name: 'short', expiresInSeconds: 1 });
    assert.equal((await api('GET', '/sandboxes', undefined, key)).status, 200);
    await sleep(1500);
    const r = await api('GET', '/sandboxes', undefined, key);
    assert.equal(r.status, 401);
    assert.equal(r.body.message, 'API key expired');
    await assert.rejects(Sandbox.list({ apiKey: key }).nextItems(), (e: Error) => {
      assert.ok(e instanceof AuthenticationError, String(e));
      assert.match(e.message, /API key expired/);
      return true;
    });
  });

  test('a read-only key lists sandboxes but may not create one (403 naming the scope)', async () => {
    const { key } = await createKey({ name: 'viewer', scopes: ['read-only'] });
    const listed = await Sandbox.list({ apiKey: key }).nextItems();
    assert.ok(Array.isArray(listed));
    assert.equal((await api('GET', '/templates', undefined, key)).status, 200);
    assert.equal((await api('GET', '/v1/keys', undefined, key)).status, 200);
    await assert.rejects(Sandbox.create({ apiKey: key }), (e: Error) => {
      assert.ok(e instanceof SandboxError, String(e));
      assert.match(e.message, /^403: .*lacks the scope "sandboxes"/);
      return true;
    });
    const r = await api('POST', '/v1/keys', { name: 'wider' }, key);
    assert.equal(r.status, 403);
    assert.match(r.body.message, /lacks the scope "admin"/);
    const live = (await Sandbox.list().nextItems()).length;
    assert.equal(live, listed.length, 'the refused create made nothing');
  });

  test('a templates-only key may not create a sandbox, but lists templates', async () => {
    const { key } = await createKey({ name: 'builder', scopes: ['templates'] });
    assert.equal((await api('GET', '/templates', undefined, key)).status, 200);
    const r = await api('POST', '/sandboxes', { templateID: 'base' }, key);
    assert.equal(r.status, 403);
    assert.match(r.body.message, /lacks the scope "sandboxes" needed for POST \/sandboxes/);
    await assert.rejects(Sandbox.create({ apiKey: key }), /^(SandboxError: )?403: /);
    assert.equal((await api('GET', '/sandboxes', undefined, key)).status, 403, 'not read-only either');
  });

  test('a scoped key may not make a wider key; bad scopes and fields are 400s', async () => {
    const { key } = await createKey({ name: 'admin-ro', scopes: ['admin', 'read-only'] });
    assert.equal((await api('POST', '/v1/keys', { name: 'full' }, key)).status, 403);
    assert.equal((await api('POST', '/v1/keys', { name: 'sbx', scopes: ['sandboxes'] }, key)).status, 403);
    const narrower = await createKey({ name: 'ro', scopes: ['read-only'] }, key);
    assert.deepEqual(narrower.info.scopes, ['read-only']);
    for (const body of [
      { name: 'x', scopes: ['root'] },
      { name: 'x', expiresInSeconds: 0 },
      { name: 'x', expiresIn: 60 },
    ])
      assert.equal((await api('POST', '/v1/keys', body)).status, 400, JSON.stringify(body));
  });

  test('aiva keys create --expires-in --scope, and keys ls shows scopes, expiry and last use', async () => {
    const made = await runAiva(server.up.home, [
      'keys',
      'create',
      'ci',
      '--expires-in',
      '30d',
      '--scope',
      'read-only',
      '--scope',
      'sandboxes',
    ]);
    const key = made.stdout.trim();
    assert.match(key, /^e2b_[0-9a-f]{40}$/);
    assert.equal((await api('GET', '/sandboxes', undefined, key)).status, 200);
    const listed = JSON.parse((await runAiva(server.up.home, ['keys', 'ls', '--json'])).stdout) as KeyInfo[];
    const ci = listed.find((k) => k.name === 'ci');
    assert.deepEqual(ci?.scopes, ['read-only', 'sandboxes']);
    const expiresIn = Date.parse(ci?.expiresAt ?? '') - Date.now();
    assert.ok(expiresIn > 29.9 * 86_400_000 && expiresIn <= 30 * 86_400_000, `expires in ${expiresIn} ms`);
    assert.ok(ci?.lastUsedAt, 'lastUsedAt is set once the key was used');
    const table = (await runAiva(server.up.home, ['keys', 'ls'])).stdout;
    assert.match(table, /read-only,sandboxes/);
    await assert.rejects(
      runAiva(server.up.home, ['keys', 'create', 'bad', '--scope', 'root']),
      /expected one of/,
    );
  });
});

describe('the audit log', () => {
  test('each mutating call leaves one row: action, targets, result', async () => {
    const { key, info } = await createKey({ name: 'audited' });
    const sbx = await Sandbox.create({ apiKey: key, timeoutMs: 60_000 });
    await sbx.setTimeout(90_000);
    await sbx.kill();
    const made = await createKey({ name: 'child', scopes: ['read-only'] }, key);
    const bad = await api('POST', `/sandboxes/${sbx.sandboxId}/timeout`, { timeout: 'soon' }, key);
    assert.equal(bad.status, 400);
    const gone = await api('DELETE', `/sandboxes/${sbx.sandboxId}`, undefined, key);
    assert.equal(gone.status, 404);
    // Reads are not recorded.
    await api('GET', '/sandboxes', undefined, key);

    const entries = await entriesOf(info.id, 6);
    const s = sbx.sandboxId;
    assert.deepEqual(entries.map(brief), [
      { action: 'sandbox.create', targets: [s, 'base'], status: 201, result: 'ok' },
      { action: 'sandbox.set_timeout', targets: [s], status: 204, result: 'ok' },
      { action: 'sandbox.kill', targets: [s], status: 204, result: 'ok' },
      { action: 'key.create', targets: [made.info.id], status: 201, result: 'ok' },
      { action: 'sandbox.set_timeout', targets: [s], status: 400, result: 'error' },
      { action: 'sandbox.kill', targets: [s], status: 404, result: 'error' },
    ]);
    for (const e of entries) {
      assert.equal(e.keyId, info.id);
      assert.match(e.clientAddress ?? '', /^(::ffff:)?127\.0\.0\.1$|^::1$/);
    }
    assert.ok(!JSON.stringify(entries).includes(made.key), 'no secret is kept');
  });

  test('a call refused for a scope is recorded as an error; an unauthenticated one is not', async () => {
    const { key, info } = await createKey({ name: 'ro-audited', scopes: ['read-only'] });
    assert.equal((await api('POST', '/sandboxes', { templateID: 'base' }, key)).status, 403);
    assert.equal(
      (await api('POST', '/sandboxes', { templateID: 'base' }, `e2b_${'0'.repeat(40)}`)).status,
      401,
    );
    const [entry] = await entriesOf(info.id, 1);
    assert.deepEqual(entry && brief(entry), {
      action: 'sandbox.create',
      targets: [],
      status: 403,
      result: 'error',
    });
  });

  test('the audit API pages and filters; a team sees its own entries, the operator every team’s', async () => {
    const everything = await auditAll();
    assert.ok(everything.length >= 10, `${everything.length} entries`);
    const paged = await auditAll('', server.up.apiKey, 3);
    assert.deepEqual(
      paged.map((e) => e.id),
      everything.map((e) => e.id),
    );
    const kills = await auditAll('action=sandbox.kill');
    assert.ok(kills.length >= 2);
    assert.ok(kills.every((e) => e.action === 'sandbox.kill'));
    assert.deepEqual(await auditAll('action=no.such'), []);
    const cli = JSON.parse(
      (await runAiva(server.up.home, ['audit', '--action', 'sandbox.kill', '--limit', '1', '--json'])).stdout,
    ) as { entries: AuditEntry[]; nextToken?: string };
    assert.deepEqual(
      cli.entries.map((e) => e.id),
      [kills[0]?.id],
    );
    assert.ok(cli.nextToken, 'aiva audit says there is a next page');
    const someSandbox = kills[0]?.targets[0] ?? '';
    const about = await auditAll(`target=${someSandbox}`);
    assert.ok(about.length >= 3 && about.every((e) => e.targets.includes(someSandbox)));
    assert.equal((await api('GET', '/v1/audit?cursor=not-a-cursor')).status, 400);
    assert.equal((await api('GET', '/v1/audit?limit=0')).status, 400);

    const team = await api('POST', '/v1/teams', { name: 'other' });
    assert.equal(team.status, 201);
    const other: string = team.body.key;
    assert.equal((await api('POST', '/sandboxes', { templateID: 'no-such-template' }, other)).status, 400);
    const theirs = await until(async () => {
      const seen = await auditAll('', other);
      return seen.length > 0 ? seen : undefined;
    });
    assert.deepEqual(theirs.map(brief), [
      { action: 'sandbox.create', targets: [], status: 400, result: 'error' },
    ]);
    assert.ok(theirs.every((e) => e.teamId === team.body.teamId));
    const operatorSees = await auditAll();
    assert.ok(
      operatorSees.some((e) => e.id === theirs[0]?.id),
      'the operator sees every team',
    );
    assert.ok(operatorSees.some((e) => e.action === 'team.create' && e.targets.includes(team.body.teamId)));
  });

  test('the server’s database refuses to change or remove audit rows', async () => {
    const before = await auditAll();
    assert.equal(await server.up.stop(), 0, server.up.output());
    const d = await openDatabase({ pgliteDir: join(server.up.home, 'db') });
    const count = async () =>
      (
        (await d.db.execute(sql`SELECT count(*)::int AS n FROM audit_log`)) as unknown as {
          rows: { n: number }[];
        }
      ).rows[0]?.n;
    try {
      assert.equal(await count(), before.length);
      for (const statement of [sql`UPDATE audit_log SET status = 200`, sql`DELETE FROM audit_log`])
        await assert.rejects(d.db.execute(statement), (e: Error) => {
          assert.match(
            String((e.cause as Error | undefined)?.message ?? e.message),
            /audit_log is append-only/,
          );
          return true;
        });
      assert.equal(await count(), before.length);
    } finally {
      await d.close();
    }
  });
});

async function until<T>(probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(100);
  }
}
