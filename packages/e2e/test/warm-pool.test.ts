// The container warm pool (`aiva up --warm-pool base=2 --warm-pool pooled-app=1`):
// creates are handed sandboxes made ahead of time, each with a fresh envd token (the
// pool's stops working), the tenant's env vars and network policy and nothing of anyone
// else; the pool refills; its sandboxes are neither listed nor left behind. A built
// template is pooled once its build is ready, with its start command running, and a new
// build or a delete replaces or removes its pooled sandboxes.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ENVD_PORT } from '@aiva/protocol';
import { Sandbox, Template, waitForPort } from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

const server = aivaUpForFile(['--warm-pool', 'base=2', '--warm-pool', 'pooled-app=1']);

interface NodeRecord {
  id: string;
  template: { name: string };
  state: string;
  accessToken: string;
  networkPolicy?: { allowInternetAccess?: boolean; denyOut?: string[] };
}

async function nodeRecords(): Promise<NodeRecord[]> {
  const dir = join(server.up.home, 'sandboxes');
  const out: NodeRecord[] = [];
  for (const id of await readdir(dir).catch(() => [] as string[])) {
    const text = await readFile(join(dir, id, 'sandbox.json'), 'utf8').catch(() => undefined);
    if (text) out.push(JSON.parse(text) as NodeRecord);
  }
  return out;
}

/** The node's running sandboxes that the API does not list: the pool (of base, or of the built templates). */
async function pooled(of: 'base' | 'built' = 'base'): Promise<NodeRecord[]> {
  const listed = new Set((await Sandbox.list().nextItems()).map((s) => s.sandboxId));
  return (await nodeRecords()).filter(
    (r) => r.state === 'running' && !listed.has(r.id) && (r.template.name === 'base') === (of === 'base'),
  );
}

/** Waits for the pool of `of` to hold `want` sandboxes, none of them one of `replaced`. */
async function poolFull(
  of: 'base' | 'built' = 'base',
  want = of === 'base' ? 2 : 1,
  replaced: (string | undefined)[] = [],
): Promise<NodeRecord[]> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const p = await pooled(of);
    if (p.length === want && !p.some((r) => replaced.includes(r.id))) return p;
    assert.ok(Date.now() < deadline, `the pool never filled (${p.length} ready, replaced: ${replaced})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const envd = (id: string, token: string) =>
  fetch(`${server.up.url}/envs`, {
    headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(ENVD_PORT), 'x-access-token': token },
  });

test('creates take pooled sandboxes with a new identity, and the pool refills', async (t) => {
  const ready = await poolFull();
  assert.equal((await Sandbox.list().nextItems()).length, 0, 'pooled sandboxes are not listed');

  const sbx = await Sandbox.create({ envs: { TENANT: 'one' }, metadata: { who: 'one' } });
  t.after(() => sbx.kill());
  const hit = ready.find((r) => r.id === sbx.sandboxId);
  assert.ok(
    hit,
    `the create was handed a pooled sandbox (${sbx.sandboxId} not in ${ready.map((r) => r.id)})`,
  );
  assert.equal((await envd(sbx.sandboxId, hit.accessToken)).status, 401, "the pool's token no longer works");
  const detail = (await (
    await fetch(`${server.up.url}/sandboxes/${sbx.sandboxId}`, { headers: { 'x-api-key': server.up.apiKey } })
  ).json()) as { envdAccessToken: string };
  assert.notEqual(detail.envdAccessToken, hit.accessToken);
  assert.equal((await envd(sbx.sandboxId, detail.envdAccessToken)).status, 200);
  assert.equal((await sbx.commands.run('echo "$TENANT $(whoami)"')).stdout, 'one user\n');
  await sbx.files.write('/tmp/secret', 'tenant one');

  // The policy asked for is the one the sandbox gets.
  const closed = await Sandbox.create({ allowInternetAccess: false, network: { denyOut: ['8.8.8.8'] } });
  t.after(() => closed.kill());
  const record = (await nodeRecords()).find((r) => r.id === closed.sandboxId);
  assert.deepEqual(record?.networkPolicy, { allowInternetAccess: false, denyOut: ['8.8.8.8'] });
  assert.equal((await closed.getInfo()).allowInternetAccess, false);
  assert.equal(await closed.files.exists('/tmp/secret'), false, "one tenant's files are not another's");

  // Back to two ready, none of them handed out.
  const refilled = await poolFull();
  for (const r of refilled) assert.ok(r.id !== sbx.sandboxId && r.id !== closed.sandboxId);
});

/** The pooled template: a file naming its version, and a start command with a ready check. */
const pooledApp = (version: string) =>
  Template()
    .fromTemplate('base')
    .runCmd(`echo ${version} > /home/user/version.txt`)
    .setStartCmd('python3 -m http.server 8000 --directory /home/user', waitForPort(8000));

test('a built template is pooled once its build is ready; a new build replaces its pooled sandboxes, a delete removes them', async (t) => {
  assert.deepEqual(await pooled('built'), [], 'nothing pooled before the template exists');
  assert.match(server.up.output(), /the warm pool cannot fill: template \\?"pooled-app\\?" does not exist/);

  await Template.build(pooledApp('v1'), 'pooled-app');
  const [v1] = await poolFull('built');
  const a = await Sandbox.create('pooled-app');
  t.after(() => a.kill());
  assert.equal(a.sandboxId, v1?.id, 'the create was handed the pooled sandbox of the build');
  assert.equal((await a.commands.run('cat version.txt')).stdout, 'v1\n');
  assert.equal(
    (await a.commands.run('curl -s localhost:8000/version.txt')).stdout,
    'v1\n',
    'its start command runs',
  );
  const [refill] = await poolFull('built');
  assert.notEqual(refill?.id, a.sandboxId);

  // The build reads ready before the pool has heard of it: wait for the replacement.
  await Template.build(pooledApp('v2'), 'pooled-app');
  const [v2] = await poolFull('built', 1, [refill?.id]);
  assert.notEqual((await nodeRecords()).find((r) => r.id === refill?.id)?.state, 'running');
  const b = await Sandbox.create('pooled-app');
  t.after(() => b.kill());
  assert.equal(b.sandboxId, v2?.id);
  assert.equal((await b.commands.run('cat version.txt')).stdout, 'v2\n');
  assert.equal(
    (await a.commands.run('cat version.txt')).stdout,
    'v1\n',
    'a sandbox of the old build keeps running',
  );

  await a.kill();
  await b.kill();
  await poolFull('built');
  const del = await fetch(`${server.up.url}/templates/pooled-app`, {
    method: 'DELETE',
    headers: { 'x-api-key': server.up.apiKey },
  });
  assert.equal(del.status, 204, await del.text());
  assert.deepEqual(await pooled('built'), [], 'its pooled sandbox went with the template');
  assert.equal((await Sandbox.list().nextItems()).length, 0);
});
