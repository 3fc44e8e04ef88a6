// Layers reach the node that needs them (issue 17): a cluster of two node agents, node-1
// on the shared image store (it holds `base`) and node-2 on an empty store of its own
// that does not build `base` (--no-prepare). What node-2 lacks comes from node-1 through
// the server's store, as digest-checked tar streams; a bad upload or download leaves
// nothing behind.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox, Template } from 'e2b';
import {
  addServerAddress,
  type ClusterNode,
  type ClusterServer,
  makeNode,
  nodeCredentials,
  removeNodesNotingLeftovers,
  removeServerAddress,
  startAgent,
  startClusterServer,
  until,
} from './helpers/cluster.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { type PostgresServer, startPostgres } from './helpers/postgres-server.js';

let db: PostgresServer;
let server: ClusterServer;
let node1: ClusterNode;
let node2: ClusterNode;
const ids = new Map<string, string>();

async function api<T>(method: string, path: string, body?: unknown) {
  const r = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      'x-api-key': server.apiKey,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: (text ? JSON.parse(text) : undefined) as T };
}

const list = (dir: string) => readdir(dir).catch(() => [] as string[]);
const serverLayers = () => list(join(server.home, 'artefacts', 'layers'));
const nodeLayers = (n: ClusterNode) => list(join(n.home, 'images', 'layers'));
const onNode2 = () => ({ 'aiva.placement.node': ids.get('node-2') as string });

before(async () => {
  await addServerAddress();
  db = await startPostgres(54332);
  server = await startClusterServer(db.url, ['--unreachable-after', '12', '--lost-after', '25']);
  process.env.E2B_API_URL = server.url;
  process.env.E2B_SANDBOX_URL = server.url;
  process.env.E2B_API_KEY = server.apiKey;
  const made = await api<{ token: string }>('POST', '/v1/node-tokens', { name: 'artefacts-test' });
  assert.equal(made.status, 201);
  node1 = await makeNode(1);
  node2 = await makeNode(2, { ownStore: true });
  await startAgent(node1, server.url, { token: made.body.token });
  await startAgent(node2, server.url, { token: made.body.token, args: ['--no-prepare'] });
  for (const n of [node1, node2]) ids.set(n.name, (await nodeCredentials(n)).nodeId);
  await until('two ready nodes', async () => {
    const { body } = await api<{ state: string; tunnel: boolean }[]>('GET', '/v1/nodes');
    return body.filter((n) => n.state === 'ready' && n.tunnel).length === 2 || undefined;
  });
});

after(async () => {
  const { body } = await api<{ sandboxID: string }[]>('GET', '/sandboxes').catch(() => ({ body: [] }));
  for (const s of body ?? []) await api('DELETE', `/sandboxes/${s.sandboxID}`).catch(() => {});
  const nodes = [node1, node2].filter(Boolean);
  const codes = [];
  for (const n of nodes) codes.push(await n.agent?.stop());
  await server?.stop();
  await db?.stop();
  const left = await removeNodesNotingLeftovers(nodes);
  if (server) await rm(server.home, { recursive: true, force: true });
  await removeServerAddress();
  assert.deepEqual(codes, [0, 0], 'each agent stopped on SIGTERM');
  assert.deepEqual(left, {}, 'a node left sandbox resources behind');
});

checkHostLeaks();

describe('layers move between nodes through the server’s store', () => {
  let appLayers: string[] = [];
  let appName = '';

  test('a sandbox of base on the node with an empty store: its Debian layer came from node-1', async () => {
    assert.deepEqual(await serverLayers(), []);
    const sbx = await Sandbox.create({ timeoutMs: 120_000, metadata: onNode2() });
    try {
      const { body } = await api<{ sandboxID: string; clientID: string }[]>('GET', '/sandboxes');
      assert.equal(body.find((s) => s.sandboxID === sbx.sandboxId)?.clientID, ids.get('node-2'));
      const r = await sbx.commands.run('test -f /etc/debian_version && id -un');
      assert.equal(r.stdout, 'user\n');
      const moved = await serverLayers();
      assert.equal(moved.length, 1, 'one layer (base’s Debian layer) went through the server');
      const [debian] = moved as [string];
      assert.ok((await nodeLayers(node2)).includes(debian), 'node-2 holds it now');
      const stored = JSON.parse(
        await readFile(join(server.home, 'artefacts', 'layers', debian, 'digest.json'), 'utf8'),
      ) as { from: string; digest: string };
      assert.equal(stored.from, ids.get('node-1'), 'node-1 uploaded it');
      assert.match(server.output(), /node-2|fetches layer/);
      assert.match(node1.agent?.output() ?? '', /layer pushed to the server/);
      assert.match(node2.agent?.output() ?? '', /layer fetched from the server/);
    } finally {
      await sbx.kill();
    }
  });

  test('a template built on node-1 runs on node-2 with its files', async () => {
    // node-1 builds it: node-2 takes nothing new while cordoned.
    assert.equal((await api('POST', `/v1/nodes/node-2/cordon`)).status, 200);
    const name = `artefacts-app-${randomBytes(3).toString('hex')}`;
    const before = new Set(await serverLayers());
    try {
      await Template.build(
        Template().fromTemplate('base').runCmd('echo built-on-node-1 > /home/user/origin.txt'),
        name,
        { cpuCount: 1, memoryMB: 512 },
      );
    } finally {
      assert.equal((await api('POST', `/v1/nodes/node-2/uncordon`)).status, 200);
    }
    const sbx = await Sandbox.create(name, { timeoutMs: 120_000, metadata: onNode2() });
    try {
      assert.equal(await sbx.files.read('/home/user/origin.txt'), 'built-on-node-1\n');
      appLayers = (await serverLayers()).filter((l) => !before.has(l));
      assert.ok(appLayers.length >= 1, 'the build’s layers went through the server');
      for (const l of appLayers) assert.ok((await nodeLayers(node2)).includes(l));
    } finally {
      await sbx.kill();
    }
    appName = name;
  });

  test('a corrupted upload or download is refused and leaves nothing in either store', async () => {
    const { credential } = await nodeCredentials(node2);
    const fake = createHash('sha256').update('not a layer').digest('hex');
    const body = randomBytes(64 * 1024);
    const headers = {
      authorization: `Bearer ${credential}`,
      'content-type': 'application/x-tar',
      'aiva-node-protocol': '1.1',
    };
    const put = (h: Record<string, string>) =>
      fetch(`${server.url}/v1/node/layers/${fake}`, { method: 'PUT', headers: { ...headers, ...h }, body });
    // The digest of other bytes: 400, and neither the layer nor its upload is kept.
    const wrong = `sha256:${createHash('sha256').update('other bytes').digest('hex')}`;
    const bad = await put({ 'aiva-digest': wrong });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { message: string }).message, /digest/);
    assert.equal((await put({})).status, 400, 'no digest');
    assert.equal((await fetch(`${server.url}/v1/node/layers/${fake}`, { method: 'PUT', body })).status, 401);
    assert.ok(!(await serverLayers()).includes(fake));
    assert.deepEqual(await list(join(server.home, 'artefacts', 'tmp')), []);

    // A layer in the server's store whose bytes changed: node-2 refuses it on download.
    const name = appName;
    const layer = appLayers[0] as string;
    assert.ok(name && layer, 'the previous test built the template');
    const tar = join(server.home, 'artefacts', 'layers', layer, 'layer.tar');
    const good = await readFile(tar);
    const spoiled = Buffer.from(good);
    const at = Math.floor(spoiled.length / 2);
    spoiled[at] = (spoiled[at] ?? 0) ^ 0xff;
    await writeFile(tar, spoiled);
    // node-2 forgets the layer and the images made with it.
    const images = join(node2.home, 'images', 'images');
    for (const i of await list(images)) {
      const image = JSON.parse(await readFile(join(images, i, 'image.json'), 'utf8').catch(() => '{}'));
      if (image.layers?.includes(layer)) await rm(join(images, i), { recursive: true });
    }
    await rm(join(node2.home, 'images', 'layers', layer), { recursive: true });
    await assert.rejects(Sandbox.create(name, { timeoutMs: 60_000, metadata: onNode2() }));
    assert.ok(!(await nodeLayers(node2)).includes(layer), 'the bad layer was not put in place');
    const tmp = await list(join(node2.home, 'images', 'tmp'));
    assert.deepEqual(
      tmp.filter((t) => t.includes(layer)),
      [],
      'nothing of it is left in tmp/',
    );
    assert.match(server.output(), /its digest is sha256:\w+, not sha256|tar -x failed/);
    // Mended, the same create works.
    await writeFile(tar, good);
    const sbx = await Sandbox.create(name, { timeoutMs: 60_000, metadata: onNode2() });
    try {
      assert.equal(await sbx.files.read('/home/user/origin.txt'), 'built-on-node-1\n');
    } finally {
      await sbx.kill();
    }
  });
});
