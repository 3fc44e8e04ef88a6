// A cluster on one host (issue 17): `aiva server` on a real PostgreSQL, three node agents
// (`aiva node join`), each in a network namespace of its own with its own data directory
// and host scope, and the e2b SDK as the client. Sandboxes are placed across the nodes and
// reached through each node's own outbound connection (the tunnel); a node that goes
// silent is avoided and comes back with its sandboxes; what a node says is checked; the
// console's Nodes page shows the nodes and cordons one (Debian's Chromium).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { runCommand } from '@aiva/node';
import { Sandbox } from 'e2b';
import pg from 'pg';
import { runAiva } from './helpers/aiva-up.js';
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
import { assertAccessible } from './helpers/console-accessibility.js';
import { assertNoConsoleErrors, consoleBrowserForFile, signedInPage } from './helpers/console-browser.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { type PostgresServer, startPostgres } from './helpers/postgres-server.js';

let db: PostgresServer;
let server: ClusterServer;
let token = '';
const nodes: ClusterNode[] = [];
const ids = new Map<string, string>(); // node name → node id
const ui = consoleBrowserForFile('cluster-console');

async function api<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      'x-api-key': server.apiKey,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** The node each of the team's live sandboxes runs on (E2B's clientID is the node id). */
async function placement(): Promise<Map<string, string>> {
  const { body } = await api<{ sandboxID: string; clientID: string }[]>('GET', '/sandboxes');
  return new Map(body.map((s) => [s.sandboxID, s.clientID]));
}

/** Each node's state, with `+tunnel` when its tunnel is up. */
async function nodeStates(): Promise<Record<string, string>> {
  const { body } = await api<{ name: string; state: string; tunnel: boolean }[]>('GET', '/v1/nodes');
  return Object.fromEntries(body.map((n) => [n.name, `${n.state}${n.tunnel ? '+tunnel' : ''}`]));
}

before(async () => {
  await addServerAddress();
  db = await startPostgres(54331);
  server = await startClusterServer(db.url, ['--unreachable-after', '12', '--lost-after', '25']);
  process.env.E2B_API_URL = server.url;
  process.env.E2B_SANDBOX_URL = server.url;
  process.env.E2B_API_KEY = server.apiKey;
  const made = await api<{ token: string }>('POST', '/v1/node-tokens', { name: 'cluster-test' });
  assert.equal(made.status, 201);
  token = made.body.token;
  for (const i of [1, 2, 3]) {
    const n = await makeNode(i);
    nodes.push(n);
    await startAgent(n, server.url, { token, labels: { zone: `z${i}` } });
    ids.set(n.name, (await nodeCredentials(n)).nodeId);
  }
  await until('three ready nodes', async () => {
    const s = await nodeStates();
    return Object.values(s).filter((v) => v === 'ready+tunnel').length === 3 || undefined;
  });
});

after(async () => {
  // Sandboxes first (an agent that stops leaves its sandboxes running, to adopt them).
  const { body } = await api<{ sandboxID: string }[]>('GET', '/sandboxes').catch(() => ({ body: [] }));
  for (const s of body ?? []) await api('DELETE', `/sandboxes/${s.sandboxID}`).catch(() => {});
  const codes = [];
  for (const n of nodes) codes.push(await n.agent?.stop());
  await server?.stop();
  await db?.stop();
  const left = await removeNodesNotingLeftovers(nodes);
  await removeServerAddress();
  assert.deepEqual(codes, [0, 0, 0], 'each agent stopped on SIGTERM');
  assert.deepEqual(
    left,
    {},
    `a node left sandbox resources behind; the agents said:\n${nodes.map((n) => n.agent?.output().slice(-3000)).join('\n---\n')}`,
  );
});

// After the cluster's own teardown: hooks run in the order they were added.
checkHostLeaks();

describe('a cluster of three nodes on one host', () => {
  test('creates spread across the nodes by capacity, and each sandbox works through its node’s tunnel', async () => {
    const made: Sandbox[] = [];
    try {
      for (let i = 0; i < 6; i++) made.push(await Sandbox.create({ timeoutMs: 300_000 }));
      const where = await placement();
      const perNode = new Map<string, number>();
      for (const s of made)
        perNode.set(where.get(s.sandboxId) ?? '?', (perNode.get(where.get(s.sandboxId) ?? '?') ?? 0) + 1);
      assert.deepEqual(
        [...perNode.entries()].sort(),
        [...ids.values()].map((id) => [id, 2]).sort(),
        'two sandboxes on each node',
      );
      // One sandbox on each node: commands, files, a terminal and a port of its own.
      const oneEach = [...ids.values()].map(
        (id) => made.find((s) => where.get(s.sandboxId) === id) as Sandbox,
      );
      for (const sbx of oneEach) {
        const r = await sbx.commands.run('echo $((6*7)) && id -un');
        assert.equal(r.stdout, '42\nuser\n');
        await sbx.files.write('/home/user/note.txt', `on ${sbx.sandboxId}`);
        assert.equal(await sbx.files.read('/home/user/note.txt'), `on ${sbx.sandboxId}`);
        let out = '';
        const pty = await sbx.pty.create({
          cols: 80,
          rows: 24,
          onData: (d) => {
            out += new TextDecoder().decode(d);
          },
        });
        await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('echo pty-$((40+2))\nexit\n'));
        await pty.wait().catch(() => {});
        assert.match(out, /pty-42/);
        await sbx.commands.run('mkdir -p /tmp/www && echo served > /tmp/www/i.txt');
        await sbx.commands.run('python3 -m http.server 8000 --directory /tmp/www', { background: true });
        const body = await until('the sandbox’s port', async () => {
          const res = await fetch(`${server.url}/i.txt`, {
            headers: { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '8000' },
          });
          return res.ok ? res.text() : undefined;
        });
        assert.equal(body, 'served\n');
      }
      // 8 MiB up and back down through the tunnel, unchanged.
      const big = Buffer.alloc(8 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE((i * 2654435761) >>> 0, i);
      const first = oneEach[0] as Sandbox;
      await first.files.write(
        '/tmp/big.bin',
        big.buffer.slice(big.byteOffset, big.byteOffset + big.length) as ArrayBuffer,
      );
      const back = Buffer.from(await first.files.read('/tmp/big.bin', { format: 'bytes' }));
      assert.ok(back.equals(big), 'the file came back unchanged');
    } finally {
      for (const s of made) await s.kill().catch(() => {});
    }
  });

  test('placement follows labels and placement hints, and says why no node can take a sandbox', async () => {
    const hinted = await Sandbox.create({
      timeoutMs: 60_000,
      metadata: { 'aiva.placement.labels': 'zone=z2' },
    });
    const pinned = await Sandbox.create({
      timeoutMs: 60_000,
      metadata: { 'aiva.placement.node': ids.get('node-3') as string },
    });
    try {
      const where = await placement();
      assert.equal(where.get(hinted.sandboxId), ids.get('node-2'));
      assert.equal(where.get(pinned.sandboxId), ids.get('node-3'));
      await assert.rejects(
        Sandbox.create({ timeoutMs: 60_000, metadata: { 'aiva.placement.labels': 'zone=z9' } }),
        /no node can take the sandbox: .*lacks the label zone=z9/,
      );
      // The operator's view, through the CLI: three nodes, their labels, their sandboxes.
      const listed = JSON.parse((await runAiva(server.home, ['node', 'ls', '--json'])).stdout) as {
        name: string;
        state: string;
        labels: Record<string, string>;
        sandboxes: number;
        tunnel: boolean;
      }[];
      assert.deepEqual(
        listed.map((n) => [n.name, n.state, n.labels.zone, n.sandboxes, n.tunnel]),
        [
          ['node-1', 'ready', 'z1', 0, true],
          ['node-2', 'ready', 'z2', 1, true],
          ['node-3', 'ready', 'z3', 1, true],
        ],
      );
      // A cordoned node takes no new sandboxes; uncordoned, it does again.
      assert.match(
        (await runAiva(server.home, ['node', 'cordon', 'node-1'])).stdout,
        /node-1 \(n-\w+\) is cordoned/,
      );
      await assert.rejects(
        Sandbox.create({ timeoutMs: 60_000, metadata: { 'aiva.placement.labels': 'zone=z1' } }),
        /node-\w+|cordoned/,
      );
      assert.equal((await api('POST', '/v1/nodes/node-1/uncordon')).status, 200);
      const back = await Sandbox.create({
        timeoutMs: 60_000,
        metadata: { 'aiva.placement.labels': 'zone=z1' },
      });
      assert.equal((await placement()).get(back.sandboxId), ids.get('node-1'));
      await back.kill();
    } finally {
      await hinted.kill();
      await pinned.kill();
    }
  });

  test('bad input from nodes is refused, logged, and changes nothing', async () => {
    const join = (body: Record<string, unknown>) =>
      fetch(`${server.url}/v1/node/join`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'intruder',
          labels: {},
          protocol: '1.0',
          aivaVersion: '0.1.0',
          ...body,
        }),
      });
    // A wrong token, a revoked one.
    let r = await join({ token: `aiva_join_${'0'.repeat(64)}` });
    assert.equal(r.status, 401);
    const spare = await api<{ token: string; info: { id: string } }>('POST', '/v1/node-tokens', {
      name: 'spare',
    });
    assert.equal((await api('DELETE', `/v1/node-tokens/${spare.body.info.id}`)).status, 204);
    r = await join({ token: spare.body.token });
    assert.equal(r.status, 401);
    assert.match(((await r.json()) as { message: string }).message, /revoked/);
    // Another major version of the contract: both versions are named.
    r = await join({ token, protocol: '2.0', aivaVersion: '9.9.9' });
    assert.equal(r.status, 426);
    const message = ((await r.json()) as { message: string }).message;
    assert.match(message, /2\.0 \(aiva 9\.9\.9\).*1\.\d+ \(aiva 0\.1\.0\)/);
    assert.match(server.output(), /node refused: join token/);
    assert.deepEqual(
      Object.keys(await nodeStates()).sort(),
      ['node-1', 'node-2', 'node-3'],
      'no node joined',
    );

    // A result for another node's command, replayed, or forged: rejected, the row unchanged.
    const sbx = await Sandbox.create({ timeoutMs: 60_000, metadata: { 'aiva.placement.labels': 'zone=z2' } });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query(
        "select id, state, result from node_commands where kind = 'sandbox.create' and sandbox_id = $1",
        [sbx.sandboxId],
      );
      const cmd = rows[0] as { id: string; state: string; result: unknown };
      assert.equal(cmd.state, 'done');
      const n1 = await nodeCredentials(nodes[0] as ClusterNode);
      const n2 = await nodeCredentials(nodes[1] as ClusterNode);
      const post = (cred: string, path: string, body: unknown) =>
        fetch(`${server.url}${path}`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${cred}`,
            'aiva-node-protocol': '1.0',
            'content-type': 'application/json',
          },
          body: JSON.stringify(body),
        });
      const forged = { commandId: cmd.id, ok: false, error: { code: 'INTERNAL', message: 'forged' } };
      let v = await (await post(n1.credential, '/v1/node/results', { outcomes: [forged] })).json();
      assert.deepEqual(v, { verdicts: [{ commandId: cmd.id, verdict: 'rejected' }] });
      v = await (await post(n2.credential, '/v1/node/results', { outcomes: [forged] })).json();
      assert.deepEqual(v, { verdicts: [{ commandId: cmd.id, verdict: 'duplicate' }] });
      const none = randomUUID();
      v = await (
        await post(n2.credential, '/v1/node/results', { outcomes: [{ ...forged, commandId: none }] })
      ).json();
      assert.deepEqual(v, { verdicts: [{ commandId: none, verdict: 'rejected' }] });
      const after1 = await client.query('select state, result from node_commands where id = $1', [cmd.id]);
      assert.deepEqual(after1.rows[0], { state: cmd.state, result: cmd.result });
      // A wrong credential: 401.
      assert.equal((await post('aiva_node_nope', '/v1/node/results', { outcomes: [] })).status, 401);
      // Node 1 claims node 2's sandbox in its snapshot: ignored, logged; it stays node 2's.
      const { rows: snaps } = await client.query('select last_snapshot from nodes where id = $1', [
        n1.nodeId,
      ]);
      const snapshot = snaps[0].last_snapshot as { sandboxes: unknown[] };
      const claim = {
        ...snapshot,
        sandboxes: [
          ...snapshot.sandboxes,
          {
            id: sbx.sandboxId,
            state: 'running',
            vcpus: 1,
            memoryMiB: 512,
            diskMiB: 1024,
            envdVersion: '0.2.0',
          },
        ],
      };
      assert.equal((await post(n1.credential, '/v1/node/snapshot', claim)).status, 200);
      assert.match(server.output(), /a node reported sandboxes of other nodes: ignored/);
      assert.equal((await placement()).get(sbx.sandboxId), n2.nodeId);
      assert.equal((await sbx.commands.run('echo still')).stdout, 'still\n');
      // A snapshot of another node: 403.
      assert.equal(
        (await post(n1.credential, '/v1/node/snapshot', { ...snapshot, nodeId: n2.nodeId })).status,
        403,
      );
    } finally {
      await client.end();
      await sbx.kill();
    }
  });

  test('kill -9 of a node agent: unreachable, avoided, then back with its sandboxes', async () => {
    const n3 = nodes[2] as ClusterNode;
    const sbx = await Sandbox.create({
      timeoutMs: 300_000,
      metadata: { 'aiva.placement.node': ids.get('node-3') as string },
    });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    await n3.agent?.stop('SIGKILL');
    await until(
      'node-3 unreachable',
      async () => ((await nodeStates())['node-3'] === 'unreachable' ? true : undefined),
      60_000,
    );
    const placed: Sandbox[] = [];
    try {
      for (let i = 0; i < 3; i++) placed.push(await Sandbox.create({ timeoutMs: 60_000 }));
      const where = await placement();
      for (const s of placed)
        assert.notEqual(where.get(s.sandboxId), ids.get('node-3'), 'creates avoid the silent node');
      await assert.rejects(
        Sandbox.create({
          timeoutMs: 60_000,
          metadata: { 'aiva.placement.node': ids.get('node-3') as string },
        }),
        /unreachable/,
      );
      // The agent comes back with its kept credential (no token) and adopts its sandbox.
      await startAgent(n3, server.url);
      await until('node-3 ready', async () =>
        (await nodeStates())['node-3'] === 'ready+tunnel' ? true : undefined,
      );
      assert.equal(await sbx.files.read('/home/user/kept.txt'), 'kept');
      assert.equal((await sbx.commands.run('echo back')).stdout, 'back\n');
    } finally {
      for (const s of placed) await s.kill().catch(() => {});
      await sbx.kill();
    }
  });

  test('a node cut off by nftables: unreachable, its sandboxes end after the grace period, and it rejoins clean', async () => {
    const n2 = nodes[1] as ClusterNode;
    const where = { metadata: { 'aiva.placement.node': ids.get('node-2') as string }, timeoutMs: 600_000 };
    const kept = await Sandbox.create(where);
    const killedMeanwhile = await Sandbox.create(where);
    // The node's own namespace drops what it sends to the server: its polls, snapshots and tunnel.
    const nft = (script: string) =>
      runCommand('nsenter', [`--net=/run/netns/${n2.netns}`, 'nft', '-f', '-'], { input: script });
    await nft(
      `table inet clt_cut {\n chain out {\n type filter hook output priority 0; policy accept;\n ip daddr ${SERVER_ADDRESS} drop\n }\n}\n`,
    );
    let cut = true;
    try {
      await until(
        'node-2 unreachable',
        async () => ((await nodeStates())['node-2'] === 'unreachable' ? true : undefined),
        60_000,
      );
      // A kill while the node is away answers at once; the node gets it when it is back.
      const started = Date.now();
      await killedMeanwhile.kill();
      assert.ok(Date.now() - started < 10_000, 'the kill did not wait for the unreachable node');
      // Past the grace period the node's sandboxes end, with the reason.
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        const row = await until(
          'the kept sandbox ended as lost',
          async () => {
            const { rows } = await client.query('select state, error from sandboxes where id = $1', [
              kept.sandboxId,
            ]);
            return rows[0]?.state === 'killed' ? rows[0] : undefined;
          },
          90_000,
        );
        assert.match(row.error, /its node node-2 was unreachable for over 25 s/);
        await assert.rejects(Sandbox.connect(kept.sandboxId), /not found/i);
        // The node comes back: what it still runs (both sandboxes) is killed, nothing is ended twice.
        await nft('delete table inet clt_cut\n');
        cut = false;
        await until('node-2 ready again', async () =>
          (await nodeStates())['node-2'] === 'ready+tunnel' ? true : undefined,
        );
        await until('node-2 empty', async () => {
          const { rows } = await client.query('select last_snapshot from nodes where id = $1', [
            ids.get('node-2'),
          ]);
          return (rows[0]?.last_snapshot?.sandboxes ?? [1]).length === 0 ? true : undefined;
        });
        const { rows: ended } = await client.query(
          'select id, state from sandboxes where id = any($1) order by id',
          [[kept.sandboxId, killedMeanwhile.sandboxId].sort()],
        );
        assert.deepEqual(
          ended.map((r) => r.state),
          ['killed', 'killed'],
        );
      } finally {
        await client.end();
      }
    } finally {
      if (cut) await nft('delete table inet clt_cut\n').catch(() => {});
    }
  });

  test('kill -9 of the server: it starts again on the same database and the nodes carry on', async () => {
    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    await server.stop('SIGKILL');
    const port = new URL(server.url).port;
    const apiKey = server.apiKey;
    server = {
      ...(await startClusterServer(
        db.url,
        ['--unreachable-after', '12', '--lost-after', '25', '--port', port],
        server.home,
      )),
      apiKey,
    };
    // The nodes find it again by themselves: their polls and tunnels retry, backing off.
    try {
      const again = await Sandbox.connect(sbx.sandboxId);
      const out = await until(
        'the sandbox through its node’s new tunnel',
        async () => (await again.commands.run('echo after')).stdout,
      );
      assert.equal(out, 'after\n');
      await until('three ready nodes again', async () =>
        Object.values(await nodeStates()).every((v) => v === 'ready+tunnel') ? true : undefined,
      );
      const fresh = await Sandbox.create({ timeoutMs: 60_000 });
      assert.equal((await fresh.commands.run('echo fresh')).stdout, 'fresh\n');
      await fresh.kill();
    } finally {
      await sbx.kill();
    }
  });

  test('the console’s Nodes page: the operator sees every node, and cordons and uncordons one from it', async () => {
    const context = await ui.browser.newContext({ viewport: { width: 1366, height: 768 } });
    try {
      const { page, errors } = await signedInPage(context, server.url, server.apiKey);
      await page
        .getByRole('navigation', { name: 'Main' })
        .getByRole('link', { name: 'Nodes', exact: true })
        .click();
      await page.getByRole('heading', { level: 1, name: 'Nodes' }).waitFor({ timeout: 30_000 });
      await page.locator('tr[data-node]').nth(2).waitFor({ timeout: 30_000 });
      assert.deepEqual(
        (
          await page
            .locator('tr[data-node]')
            .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-node')))
        ).sort(),
        nodes.map((n) => n.name).sort(),
      );
      await ui.screenshot(page, 'nodes');
      await assertAccessible(page, 'the nodes page');
      const name = (nodes[0] as ClusterNode).name;
      await page.getByRole('button', { name: `Cordon ${name}`, exact: true }).click();
      await page.getByRole('button', { name: `Uncordon ${name}`, exact: true }).waitFor({ timeout: 30_000 });
      assert.equal((await nodeStates())[name], 'cordoned+tunnel', 'the API sees what the page did');
      await page.getByRole('button', { name: `Uncordon ${name}`, exact: true }).click();
      await page.getByRole('button', { name: `Cordon ${name}`, exact: true }).waitFor({ timeout: 30_000 });
      assert.equal((await nodeStates())[name], 'ready+tunnel');
      assertNoConsoleErrors(errors);
    } finally {
      await context.close();
    }
  });
});
