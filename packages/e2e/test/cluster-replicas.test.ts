// Two `aiva server` replicas on one PostgreSQL behind a round-robin TCP load balancer
// (issue 17, item 7): nodes join through the balancer, each node's tunnel lands on one
// replica, and either replica serves any sandbox (API and traffic), passing traffic to the
// replica that holds the node's tunnel; layers and build files uploaded to one replica are
// found by the others. One replica leads (expiry, silent nodes); kill -9
// of it hands the lead over, and the nodes and sandboxes carry on through the other.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCommand } from '@aiva/node';
import { Sandbox } from 'e2b';
import pg from 'pg';
import {
  addServerAddress,
  type ClusterNode,
  type ClusterServer,
  makeNode,
  nodeCredentials,
  removeNodesNotingLeftovers,
  removeServerAddress,
  SERVER_ADDRESS,
  startAgent,
  startClusterServer,
  until,
} from './helpers/cluster.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { type PostgresServer, startPostgres } from './helpers/postgres-server.js';

let db: PostgresServer;
const replicas: ClusterServer[] = [];
let balancer: { server: Server; url: string; sockets: Set<Socket> };
let apiKey = '';
const nodes: ClusterNode[] = [];
const ids = new Map<string, string>(); // node name → node id

/** A TCP load balancer on SERVER_ADDRESS: each connection to the next replica that accepts it. */
async function startBalancer(): Promise<typeof balancer> {
  let next = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    const first = next++;
    const tryBackend = (attempt: number) => {
      const target = replicas[(first + attempt) % replicas.length] as ClusterServer;
      const port = Number(new URL(target.url).port);
      const upstream = netConnect({ host: SERVER_ADDRESS, port });
      upstream.once('connect', () => {
        client.pipe(upstream).pipe(client);
        upstream.on('error', () => client.destroy());
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
      });
      upstream.once('error', () => {
        if (upstream.readyState === 'opening' || !upstream.remoteAddress) {
          if (attempt + 1 < replicas.length) tryBackend(attempt + 1);
          else client.destroy();
        }
      });
    };
    tryBackend(0);
  });
  server.listen(0, SERVER_ADDRESS);
  await new Promise((r) => server.once('listening', r));
  const address = server.address() as { port: number };
  return { server, url: `http://${SERVER_ADDRESS}:${address.port}`, sockets };
}

async function query<T>(text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}

/** The SDK's options to talk to `url` only (one replica, or the balancer). */
const via = (url: string) => ({ apiUrl: url, sandboxUrl: url, apiKey });

/** Which replica leads, by their logs. */
const leader = () =>
  until('a leader', async () => replicas.find((r) => /"msg":"this replica leads"/.test(r.output())));

/** Each node's id → the replica id its tunnel is on. */
const tunnelHolders = async () =>
  new Map(
    (await query<{ id: string; tunnel_replica: string | null }>('select id, tunnel_replica from nodes')).map(
      (r) => [r.id, r.tunnel_replica],
    ),
  );

const replicaIdOf = (r: ClusterServer) => /"replica":"(r-[0-9a-f]+)"/.exec(r.output())?.[1];

before(async () => {
  await addServerAddress();
  db = await startPostgres(54333);
  replicas.push(await startClusterServer(db.url, ['--unreachable-after', '10', '--lost-after', '120']));
  apiKey = replicas[0]?.apiKey ?? '';
  replicas.push(await startClusterServer(db.url, ['--unreachable-after', '10', '--lost-after', '120']));
  assert.equal(replicas[1]?.apiKey, '', 'the second replica found the first team made');
  balancer = await startBalancer();
  const r = await fetch(`${balancer.url}/v1/node-tokens`, {
    method: 'POST',
    headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'replicas-test' }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  const { token } = (await r.json()) as { token: string };
  // node-2 has an image store of its own, empty: what it runs comes from node-1's, pushed
  // to whichever replica the balancer picks and fetched through whichever it picks next.
  for (const i of [1, 2]) {
    const n = await makeNode(i, { ownStore: i === 2 });
    nodes.push(n);
    await startAgent(n, balancer.url, { token, args: i === 2 ? ['--no-prepare'] : [] });
    ids.set(n.name, (await nodeCredentials(n)).nodeId);
  }
});

after(async () => {
  for (const r of replicas.filter((x) => x.child.exitCode === null && x.child.signalCode === null)) {
    const live = await query<{ id: string }>(
      "select id from sandboxes where state in ('creating','running','paused')",
    ).catch(() => []);
    for (const s of live)
      await fetch(`${r.url}/sandboxes/${s.id}`, { method: 'DELETE', headers: { 'x-api-key': apiKey } }).catch(
        () => {},
      );
    break;
  }
  const codes = [];
  for (const n of nodes) codes.push(await n.agent?.stop());
  for (const r of replicas) {
    await r.stop();
    // Its layer store holds what node-2 fetched (hundreds of MB).
    await rm(r.home, { recursive: true, force: true });
  }
  for (const s of balancer?.sockets ?? []) s.destroy();
  balancer?.server.close();
  await db?.stop();
  const left = await removeNodesNotingLeftovers(nodes);
  await removeServerAddress();
  assert.deepEqual(codes, [0, 0], 'each agent stopped on SIGTERM');
  assert.deepEqual(left, {}, 'a node left sandbox resources behind');
});

describe('server replicas on one PostgreSQL', () => {
  test('either replica serves any sandbox: API calls and traffic, through the replica holding the node’s tunnel', async () => {
    await until('both tunnels held', async () => {
      const held = await tunnelHolders();
      return [...ids.values()].every((id) => held.get(id)) || undefined;
    });
    const [a, b] = replicas as [ClusterServer, ClusterServer];
    const made: Sandbox[] = [];
    try {
      // One sandbox per node, each made through a different replica.
      for (const [i, name] of ['node-1', 'node-2'].entries()) {
        const through = (i === 0 ? a : b) as ClusterServer;
        made.push(
          await Sandbox.create({
            ...via(through.url),
            timeoutMs: 300_000,
            metadata: { 'aiva.placement.node': ids.get(name) as string },
          }),
        );
      }
      const held = await tunnelHolders();
      let forwarded = 0;
      for (const sbx of made) {
        const [row] = await query<{ node_id: string }>('select node_id from sandboxes where id = $1', [
          sbx.sandboxId,
        ]);
        const holder = held.get(row?.node_id ?? '');
        for (const r of replicas) {
          if (holder !== replicaIdOf(r)) forwarded++;
          const s = await Sandbox.connect(sbx.sandboxId, via(r.url));
          const out = await s.commands.run(`echo ${r === a ? 'a' : 'b'}-$(hostname)`);
          assert.match(out.stdout, new RegExp(`^${r === a ? 'a' : 'b'}-`));
          await s.files.write('/tmp/through.txt', r.url);
          assert.equal(await s.files.read('/tmp/through.txt'), r.url);
        }
      }
      assert.ok(forwarded >= 2, 'some traffic went through the replica without the tunnel');
      // Ended through one replica: gone from the other's list and proxy at once.
      const first = made[0] as Sandbox;
      await Sandbox.kill(first.sandboxId, via(b.url));
      const listed = await Sandbox.list(via(a.url)).nextItems();
      assert.ok(
        !listed.some((s) => s.sandboxId === first.sandboxId),
        'replica A still lists a killed sandbox',
      );
      await until('replica A no longer serves it', async () => {
        const r = await fetch(`${a.url}/health`, {
          headers: { 'e2b-sandbox-id': first.sandboxId, 'e2b-sandbox-port': '49983' },
        });
        return r.status === 502 || r.status === 404 ? true : undefined;
      });
    } finally {
      for (const s of made) await Sandbox.kill(s.sandboxId, via(a.url)).catch(() => {});
    }
  });

  test('the leader expires sandboxes made through any replica', async () => {
    const lead = await leader();
    const other = replicas.find((r) => r !== lead) as ClusterServer;
    const sbx = await Sandbox.create({ ...via(other.url), timeoutMs: 4_000 });
    const row = await until(
      'the sandbox made through the follower to expire',
      async () => {
        const [r] = await query<{ state: string; error: string | null }>(
          'select state, error from sandboxes where id = $1',
          [sbx.sandboxId],
        );
        return r?.state === 'killed' ? r : undefined;
      },
      30_000,
    );
    assert.equal(row.error, 'timeout');
  });

  test('a build’s files uploaded to one replica are found by the other, and its build runs from there', async () => {
    const [a, b] = replicas as [ClusterServer, ClusterServer];
    const call = async (base: string, method: string, path: string, body?: unknown) => {
      const r = await fetch(`${base}${path}`, {
        method,
        headers: { 'x-api-key': apiKey, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await r.text();
      assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
      return (text ? JSON.parse(text) : undefined) as Record<string, unknown>;
    };
    const made = await call(a.url, 'POST', '/v3/templates', { name: 'replica-files' });
    const [templateId, buildId] = [String(made.templateID), String(made.buildID)];
    const hash = createHash('sha256').update(`replica-files-${Date.now()}`).digest('hex');
    const link = await call(a.url, 'GET', `/templates/${templateId}/files/${hash}`);
    assert.equal(link.present, false);
    assert.ok(String(link.url).startsWith(a.url), 'replica A signed a link to itself');
    const dir = await mkdtemp(join(tmpdir(), 'aiva-replica-files-'));
    try {
      await writeFile(join(dir, 'hello.txt'), 'carried between replicas\n');
      await runCommand('tar', ['-czf', join(dir, 'files.tar.gz'), '-C', dir, 'hello.txt']);
      const put = await fetch(String(link.url), {
        method: 'PUT',
        body: await readFile(join(dir, 'files.tar.gz')),
      });
      assert.equal(put.status, 201, await put.text());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // Replica B has not got it, and finds it on A.
    const team = new URL(String(link.url)).searchParams.get('team') as string;
    const onB = join(b.home, 'template-files', team, `${hash}.tar.gz`);
    await assert.rejects(readFile(onB));
    assert.equal((await call(b.url, 'GET', `/templates/${templateId}/files/${hash}`)).present, true);
    assert.ok((await readFile(onB)).length > 0, 'replica B keeps the file it fetched');
    // A replica link forged without the shared secret is refused.
    const forged = await fetch(
      `${a.url}/v1/replica/template-files/${team}/${hash}?expires=${Date.now() + 30_000}&signature=${'0'.repeat(64)}`,
    );
    assert.equal(forged.status, 403);
    await call(b.url, 'POST', `/v2/templates/${templateId}/builds/${buildId}`, {
      fromTemplate: 'base',
      steps: [{ type: 'COPY', args: ['hello.txt', '/home/user/hello.txt'], filesHash: hash }],
    });
    await until(
      'the build to be ready',
      async () => {
        const st = await call(a.url, 'GET', `/templates/${templateId}/builds/${buildId}/status`);
        assert.notEqual(st.status, 'error', JSON.stringify(st));
        return st.status === 'ready' || undefined;
      },
      180_000,
    );
    const sbx = await Sandbox.create('replica-files', { ...via(balancer.url), timeoutMs: 60_000 });
    try {
      assert.equal(await sbx.files.read('/home/user/hello.txt'), 'carried between replicas\n');
    } finally {
      await sbx.kill();
    }
  });

  test('kill -9 of the leading replica: the other leads, the nodes move their tunnels to it, and sandboxes carry on', async () => {
    const lead = await leader();
    const survivor = replicas.find((r) => r !== lead) as ClusterServer;
    const sbx = await Sandbox.create({ ...via(survivor.url), timeoutMs: 300_000 });
    try {
      await lead.stop('SIGKILL');
      await survivor.waitFor(/"msg":"this replica leads"/, 30_000);
      const me = replicaIdOf(survivor);
      await until(
        'both tunnels on the survivor',
        async () => {
          const held = await tunnelHolders();
          return [...ids.values()].every((id) => held.get(id) === me) || undefined;
        },
        60_000,
      );
      const s = await Sandbox.connect(sbx.sandboxId, via(balancer.url)).catch((e) => {
        throw new Error(`${e} ${(e as { cause?: unknown }).cause}\n${survivor.output().slice(-4000)}`);
      });
      assert.equal((await s.commands.run('echo still')).stdout, 'still\n');
      const fresh = await Sandbox.create({ ...via(balancer.url), timeoutMs: 4_000 });
      assert.equal((await fresh.commands.run('echo new')).stdout, 'new\n');
      await until(
        'the survivor to expire a sandbox',
        async () => {
          const [r] = await query<{ state: string }>('select state from sandboxes where id = $1', [
            fresh.sandboxId,
          ]);
          return r?.state === 'killed' || undefined;
        },
        30_000,
      );
      const nodesNow = (await (
        await fetch(`${survivor.url}/v1/nodes`, { headers: { 'x-api-key': apiKey } })
      ).json()) as { name: string; state: string }[];
      assert.deepEqual(
        nodesNow.map((n) => n.state),
        ['ready', 'ready'],
      );
    } finally {
      await Sandbox.kill(sbx.sandboxId, via(survivor.url)).catch(() => {});
    }
  });
});

checkHostLeaks();
