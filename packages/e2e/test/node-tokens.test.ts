// `aiva node token create | ls | rm` through the built CLI against a real `aiva up`: a
// token is shown once and never listed, rm revokes it, only the operator team's keys
// manage tokens (403 for others), and bad input is a 400 that changes nothing.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { aivaUpForFile } from './helpers/aiva-up.js';

const cli = fileURLToPath(import.meta.resolve('@aiva/cli/aiva'));
const server = aivaUpForFile();

interface Listed {
  id: string;
  name: string;
  prefix: string;
  state: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

/** The built `aiva` with the server's URL and a key (the operator's unless given); never rejects. */
function aiva(
  args: string[],
  apiKey = server.up.apiKey,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cli, ...args],
      {
        env: { ...process.env, AIVA_HOME: server.up.home, E2B_API_URL: server.up.url, E2B_API_KEY: apiKey },
        timeout: 60_000,
      },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function ok(args: string[]): Promise<string> {
  const r = await aiva(args);
  assert.equal(r.code, 0, `aiva ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const listed = async (...flags: string[]) =>
  JSON.parse(await ok(['node', 'token', 'ls', '--json', ...flags])) as Listed[];

/** Calls the API directly (bad input the CLI would not send). */
async function api(method: string, path: string, body?: unknown, apiKey: string | null = server.up.apiKey) {
  const r = await fetch(`${server.up.url}${path}`, {
    method,
    headers: {
      ...(apiKey ? { 'x-api-key': apiKey } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

test('a token is created, listed without its secret, and rm revokes it', { timeout: 120_000 }, async () => {
  assert.deepEqual(await listed(), []);
  const made = await aiva(['node', 'token', 'create', '--name', 'rack-1', '--expires-in', '24h']);
  assert.equal(made.code, 0, made.stderr);
  const token = made.stdout.trim();
  assert.match(token, /^aiva_join_[0-9a-f]{64}$/);
  assert.match(made.stderr, /not shown again/);
  const id = /created node token (nt_[0-9a-f]+)/.exec(made.stderr)?.[1];
  assert.ok(id, made.stderr);

  const [row, ...rest] = await listed();
  assert.equal(rest.length, 0);
  assert.equal(row?.id, id);
  assert.equal(row?.name, 'rack-1');
  assert.equal(row?.state, 'active');
  assert.ok(token.startsWith(row?.prefix.replace('…', '') ?? '-'));
  const expiresIn = Date.parse(row?.expiresAt ?? '') - Date.now();
  assert.ok(expiresIn > 23.9 * 3600_000 && expiresIn <= 24 * 3600_000, `expires in ${expiresIn} ms`);

  const table = await ok(['node', 'token', 'ls']);
  assert.match(table, /^ID\s+NAME\s+TOKEN\s+STATE/);
  assert.match(table, new RegExp(`${id}\\s+rack-1\\s+aiva_join_\\S+…\\s+active`));
  const secret = token.slice('aiva_join_'.length + 4);
  assert.ok(!table.includes(secret) && !JSON.stringify(await listed('--all')).includes(secret));

  const never = await aiva(['node', 'token', 'create']);
  assert.equal(never.code, 0, never.stderr);
  assert.match(never.stderr, /does not expire/);
  const second = (await listed()).find((t) => t.id !== id);
  assert.equal(second?.expiresAt, null);

  assert.equal(
    await ok(['node', 'token', 'rm', id, second?.id ?? '-']),
    `revoked ${id}\nrevoked ${second?.id}\n`,
  );
  assert.deepEqual(await listed(), []);
  const all = await listed('--all');
  assert.deepEqual(
    all.map((t) => [t.id, t.state]),
    [
      [id, 'revoked'],
      [second?.id, 'revoked'],
    ],
  );
  const again = await aiva(['node', 'token', 'rm', id]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, new RegExp(`node token ${id} not found`));
});

test('a key of another team gets 403 and changes nothing', { timeout: 60_000 }, async () => {
  const team = await api('POST', '/v1/teams', { name: 'tenant' });
  assert.equal(team.status, 201);
  const key = String(team.body?.key);
  const kept = await ok(['node', 'token', 'create', '--name', 'kept']);
  const keptId = (await listed()).find((t) => t.name === 'kept')?.id ?? '-';

  for (const args of [['ls'], ['create', '--name', 'x'], ['rm', keptId]]) {
    const r = await aiva(['node', 'token', ...args], key);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, /only the operator team \(made on first start\) may manage node join tokens/);
  }
  assert.equal((await api('GET', '/v1/node-tokens', undefined, key)).status, 403);
  assert.equal((await api('POST', '/v1/node-tokens', {}, key)).status, 403);
  assert.equal((await api('DELETE', `/v1/node-tokens/${keptId}`, undefined, key)).status, 403);
  assert.equal((await api('GET', '/v1/node-tokens', undefined, null)).status, 401);
  assert.equal(
    (await api('POST', '/v1/node-tokens', {}, 'e2b_0000000000000000000000000000000000000000')).status,
    401,
  );

  assert.deepEqual(
    (await listed()).map((t) => [t.id, t.name]),
    [[keptId, 'kept']],
  );
  assert.match(kept, /^aiva_join_/);
  await ok(['node', 'token', 'rm', keptId]);
});

test('bad input is refused with 400 and makes no token', { timeout: 60_000 }, async () => {
  const before = await listed('--all');
  const cases: [string, string, unknown, RegExp][] = [
    ['POST', '/v1/node-tokens', { expiresInSeconds: 0 }, /expiresInSeconds must be >= 1/],
    ['POST', '/v1/node-tokens', { expiresInSeconds: 1.5 }, /expiresInSeconds must be integer/],
    ['POST', '/v1/node-tokens', { expiresInSeconds: 11 * 365 * 86_400 }, /expiresInSeconds must be <= /],
    ['POST', '/v1/node-tokens', { expiresIn: '24h' }, /unknown field expiresIn/],
    ['POST', '/v1/node-tokens', { name: 'x'.repeat(101) }, /name must NOT have more than 100 characters/],
    ['POST', '/v1/node-tokens', { name: 'a\u0000b' }, /name must match pattern/],
    ['POST', '/v1/node-tokens', [], /body/],
    ['DELETE', '/v1/node-tokens/Not-An-Id!', undefined, /tokenID must match pattern/],
    ['GET', '/v1/node-tokens?revoked=maybe', undefined, /revoked must be boolean/],
  ];
  for (const [method, path, body, message] of cases) {
    const r = await api(method, path, body);
    assert.equal(r.status, 400, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    assert.match(String(r.body?.message), message);
  }
  const missing = await api('DELETE', '/v1/node-tokens/nt_0000000000000000');
  assert.equal(missing.status, 404);
  assert.equal(missing.body?.message, 'node token nt_0000000000000000 not found');

  for (const bad of ['0h', '24', '1y', '-5m', 'soon']) {
    const r = await aiva(['node', 'token', 'create', '--expires-in', bad]);
    assert.equal(r.code, 1, bad);
    assert.match(r.stderr, /expected a positive number and a unit s, m, h, d or w/);
  }
  assert.deepEqual(await listed('--all'), before);
});
