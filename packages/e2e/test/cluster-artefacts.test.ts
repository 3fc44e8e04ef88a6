// Layers reach the node that needs them (issue 17): a cluster of two node agents, node-1
// on the shared image store (it holds `base`) and node-2 on an empty store of its own
// that does not build `base` (--no-prepare). What node-2 lacks comes from node-1 through
// the server's store, as digest-checked tar streams; a bad upload or download leaves
// nothing behind. Snapshots (node checkpoints) move the same way when their node cannot
// take a create.
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
      assert.match(node1.agent?.output() ?? '', /layer \w+ pushed to the server/);
      assert.match(node2.agent?.output() ?? '', /layer \w+ fetched from the server/);
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

describe('snapshots move between nodes through the server’s store', () => {
  const onNode1 = () => ({ 'aiva.placement.node': ids.get('node-1') as string });
  const checkpointsOf = (n: ClusterNode) => list(join(n.home, 'checkpoints'));
  const serverCheckpoints = () => list(join(server.home, 'artefacts', 'checkpoints'));
  /** A snapshot of a sandbox on node-1 whose file says so; the sandbox is gone after. */
  async function snapshotOnNode1(name: string): Promise<{ snapshotId: string; checkpoint: string }> {
    const src = await Sandbox.create({ timeoutMs: 120_000, metadata: onNode1() });
    try {
      await src.files.write('/home/user/state.txt', `${name} on node-1`);
      const before = new Set(await checkpointsOf(node1));
      const snap = await src.createSnapshot({ name });
      const [checkpoint] = (await checkpointsOf(node1)).filter((c) => !before.has(c) && c !== 'tmp');
      assert.ok(checkpoint, 'node-1 holds the snapshot’s checkpoint');
      return { snapshotId: snap.snapshotId, checkpoint };
    } finally {
      await src.kill();
    }
  }

  test('a snapshot whose node is cordoned starts on another, which fetched it; deleting it removes every copy', async () => {
    const { snapshotId, checkpoint } = await snapshotOnNode1('moved-snap');
    assert.equal((await api('POST', '/v1/nodes/node-1/cordon')).status, 200);
    let copy: Sandbox;
    try {
      copy = await Sandbox.create(snapshotId, { timeoutMs: 120_000 });
    } finally {
      assert.equal((await api('POST', '/v1/nodes/node-1/uncordon')).status, 200);
    }
    try {
      const { body } = await api<{ sandboxID: string; clientID: string }[]>('GET', '/sandboxes');
      assert.equal(body.find((s) => s.sandboxID === copy.sandboxId)?.clientID, ids.get('node-2'));
      assert.equal(await copy.files.read('/home/user/state.txt'), 'moved-snap on node-1');
      assert.ok((await checkpointsOf(node2)).includes(checkpoint), 'node-2 holds a copy');
      assert.ok((await serverCheckpoints()).includes(checkpoint), 'the server’s store holds a copy');
      assert.match(node1.agent?.output() ?? '', /checkpoint \S+ pushed to the server/);
      assert.match(node2.agent?.output() ?? '', /checkpoint \S+ fetched from the server/);
    } finally {
      await copy.kill();
    }
    // A second copy, with node-1 ready again, goes to a node that holds it and fetches nothing more.
    const again = await Sandbox.create(snapshotId, { timeoutMs: 60_000 });
    try {
      assert.equal(await again.files.read('/home/user/state.txt'), 'moved-snap on node-1');
    } finally {
      await again.kill();
    }
    assert.equal(await Sandbox.deleteSnapshot(snapshotId), true);
    for (const [where, names] of [
      ['node-1', await checkpointsOf(node1)],
      ['node-2', await checkpointsOf(node2)],
      ['the server', await serverCheckpoints()],
    ] as const)
      assert.ok(!names.includes(checkpoint), `${where} still holds ${checkpoint}`);
  });

  test('a snapshot whose only node is unreachable is a 503 that leaves nothing, and starts once its node is back', async () => {
    const { snapshotId, checkpoint } = await snapshotOnNode1('stranded-snap');
    assert.equal(await node1.agent?.stop(), 0);
    await until('node-1 unreachable', async () => {
      const { body } = await api<{ name: string; state: string }[]>('GET', '/v1/nodes');
      return body.find((n) => n.name === 'node-1')?.state === 'unreachable' || undefined;
    });
    const before = (await api<unknown[]>('GET', '/sandboxes')).body.length;
    const refused = await api<{ message: string }>('POST', '/sandboxes', {
      templateID: snapshotId,
      timeout: 60,
    });
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.match(refused.body.message, new RegExp(`checkpoint ${checkpoint}`));
    assert.equal((await api<unknown[]>('GET', '/sandboxes')).body.length, before, 'no sandbox row stays');
    assert.ok(!(await checkpointsOf(node2)).includes(checkpoint));
    assert.deepEqual(
      (await list(join(node2.home, 'checkpoints', 'tmp'))).filter((t) => t.startsWith(checkpoint)),
      [],
    );
    await startAgent(node1, server.url);
    await until('node-1 ready', async () => {
      const { body } = await api<{ name: string; state: string; tunnel: boolean }[]>('GET', '/v1/nodes');
      const n = body.find((x) => x.name === 'node-1');
      return (n?.state === 'ready' && n.tunnel) || undefined;
    });
    const copy = await Sandbox.create(snapshotId, { timeoutMs: 60_000 });
    try {
      assert.equal(await copy.files.read('/home/user/state.txt'), 'stranded-snap on node-1');
    } finally {
      await copy.kill();
    }
    assert.equal(await Sandbox.deleteSnapshot(snapshotId), true);
    assert.ok(!(await checkpointsOf(node1)).includes(checkpoint));
  });
});
