// Direct mode (issue 17): a node agent in a network namespace of its own that says where
// the server can reach it (`aiva node join --direct-address`). The server dials its TLS
// listener, pinned to the fingerprint of the node's self-signed certificate, and the e2b
// SDK's traffic goes there instead of through the node's tunnel; a listener the firewall
// blocks, and a certificate that is not the node's, send it back through the tunnel.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import { runCommand } from '@aiva/node';
import { Sandbox } from 'e2b';
import {
  addServerAddress,
  type ClusterNode,
  type ClusterServer,
  killLeftSandboxes,
  makeNode,
  nodeLeftovers,
  removeNode,
  removeServerAddress,
  startAgent,
  startClusterServer,
  until,
} from './helpers/cluster.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { type PostgresServer, startPostgres } from './helpers/postgres-server.js';

const DIRECT_PORT = 7443;
let db: PostgresServer;
let server: ClusterServer;
let token = '';
let node: ClusterNode;
let nodeAddress = '';

interface NodeView {
  name: string;
  state: string;
  tunnel: boolean;
  mode: 'tunnel' | 'direct';
  direct: { address: string; error?: string } | null;
}

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

async function view(): Promise<NodeView> {
  return ((await api<NodeView[]>('GET', '/v1/nodes')).body as NodeView[])[0] as NodeView;
}

/** TCP connections established to the node's direct listener, as its namespace sees them. */
async function directConnections(): Promise<number> {
  const { stdout } = await runCommand('ip', [
    'netns',
    'exec',
    node.netns,
    'ss',
    '-Htn',
    'state',
    'established',
    `( sport = :${DIRECT_PORT} )`,
  ]);
  return stdout.split('\n').filter((l) => l.trim()).length;
}

const nft = (script: string) =>
  runCommand('nsenter', [`--net=/run/netns/${node.netns}`, 'nft', '-f', '-'], { input: script });

/** Sandboxes whose port 8000 serves already. */
const serving = new Set<string>();

/** Commands, files, a terminal and a port of one sandbox, through whatever path the server takes. */
async function exercise(sbx: Sandbox): Promise<void> {
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
  if (!serving.has(sbx.sandboxId)) {
    serving.add(sbx.sandboxId);
    await sbx.commands.run('python3 -m http.server 8000 --directory /tmp/www', { background: true });
  }
  const body = await until('the sandbox’s port', async () => {
    const res = await fetch(`${server.url}/i.txt`, {
      headers: { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '8000' },
    });
    return res.ok ? res.text() : undefined;
  });
  assert.equal(body, 'served\n');
}

before(async () => {
  await addServerAddress();
  db = await startPostgres(54332);
  server = await startClusterServer(db.url);
  process.env.E2B_API_URL = server.url;
  process.env.E2B_SANDBOX_URL = server.url;
  process.env.E2B_API_KEY = server.apiKey;
  const made = await api<{ token: string }>('POST', '/v1/node-tokens', { name: 'direct-test' });
  assert.equal(made.status, 201);
  token = made.body.token;
  node = await makeNode(1);
  nodeAddress = `10.200.${node.index}.2`;
  await startAgent(node, server.url, { token, args: ['--direct-address', `${nodeAddress}:${DIRECT_PORT}`] });
  await until('the node in direct mode', async () => ((await view()).mode === 'direct' ? true : undefined));
});

after(async () => {
  const { body } = await api<{ sandboxID: string }[]>('GET', '/sandboxes').catch(() => ({ body: [] }));
  for (const s of body ?? []) await api('DELETE', `/sandboxes/${s.sandboxID}`).catch(() => {});
  const code = await node?.agent?.stop();
  await server?.stop();
  await db?.stop();
  const left = node ? await nodeLeftovers(node) : {};
  if (node && Object.keys(left).length > 0) await killLeftSandboxes(node).catch(() => {});
  if (node) await removeNode(node);
  await removeServerAddress();
  assert.equal(code, 0, 'the agent stopped on SIGTERM');
  assert.deepEqual(
    left,
    {},
    `the node left sandbox resources behind:\n${node?.agent?.output().slice(-3000)}`,
  );
});

checkHostLeaks();

describe('direct mode: the server dials the node', () => {
  test('the SDK’s commands, files, terminal and ports go to the node’s direct listener', async () => {
    const v = await view();
    assert.deepEqual(
      [v.mode, v.direct?.address, v.tunnel],
      ['direct', `${nodeAddress}:${DIRECT_PORT}`, true],
    );
    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    try {
      await exercise(sbx);
      assert.ok((await directConnections()) >= 1, 'the server holds a connection to the direct listener');
      assert.equal((await view()).mode, 'direct');
    } finally {
      await sbx.kill();
    }
  });

  test('a direct listener blocked by nftables: the traffic falls back to the tunnel, and direct comes back when unblocked', async () => {
    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    let blocked = false;
    try {
      await nft(
        `table inet clt_direct {\n chain in {\n type filter hook input priority 0; policy accept;\n tcp dport ${DIRECT_PORT} drop\n }\n}\n`,
      );
      blocked = true;
      // The open direct session goes silent: its PINGs go unanswered and it is dropped.
      const v = await until('the node in tunnel mode', async () => {
        const n = await view();
        return n.mode === 'tunnel' ? n : undefined;
      });
      assert.ok(v.direct?.error, 'ls says why direct is not used');
      await exercise(sbx);
      await nft('delete table inet clt_direct\n');
      blocked = false;
      await until(
        'the node in direct mode again',
        async () => ((await view()).mode === 'direct' ? true : undefined),
        90_000,
      );
      assert.equal((await sbx.commands.run('echo back')).stdout, 'back\n');
    } finally {
      if (blocked) await nft('delete table inet clt_direct\n').catch(() => {});
      await sbx.kill();
    }
  });

  test('a certificate that is not the node’s (a man in the middle at the direct address) is refused', async () => {
    // An impostor on the host's end of the node's link, with a self-signed certificate of its own.
    const dir = mkdtempSync(join(tmpdir(), 'aiva-mitm-'));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=mitm', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' }); // biome-ignore format: one command
    let connections = 0;
    let bytesAfterHandshake = 0;
    const mitm = createTlsServer(
      {
        key: readFileSync(join(dir, 'key.pem')),
        cert: readFileSync(join(dir, 'cert.pem')),
        ALPNProtocols: ['h2'],
      },
      (s) => {
        s.on('data', (d: Buffer) => {
          bytesAfterHandshake += d.length;
        });
        s.on('error', () => {});
      },
    );
    // Counted as they come (the server drops each right after the handshake, before it completes here, maybe).
    mitm.on('connection', () => connections++);
    mitm.on('tlsClientError', () => {});
    rmSync(dir, { recursive: true, force: true });
    const hostEnd = `10.200.${node.index}.1`;
    mitm.listen(0, hostEnd);
    await once(mitm, 'listening');
    const mitmPort = (mitm.address() as { port: number }).port;
    try {
      // The node restarts saying its address is the impostor's (its own listener stays on its address).
      assert.equal(await node.agent?.stop(), 0);
      await startAgent(node, server.url, {
        args: [
          '--direct-address',
          `${hostEnd}:${mitmPort}`,
          '--direct-listen',
          `${nodeAddress}:${DIRECT_PORT}`,
        ],
      });
      let last: NodeView | undefined;
      const v = await until('the impostor refused', async () => {
        const n = await view();
        last = n;
        return n.direct?.address === `${hostEnd}:${mitmPort}` && n.direct.error && connections > 0
          ? n
          : undefined;
      }).catch((e: Error) => {
        const said = server
          .output()
          .split('\n')
          .filter((l) => /direct/.test(l));
        throw new Error(
          `${e.message}: ${JSON.stringify(last)}, ${connections} connections; the server said:\n${said.slice(-10).join('\n')}`,
        );
      });
      assert.equal(v.mode, 'tunnel');
      assert.match(v.direct?.error ?? '', /fingerprint/);
      const sbx = await Sandbox.create({ timeoutMs: 120_000 });
      try {
        await exercise(sbx);
      } finally {
        await sbx.kill();
      }
      assert.equal(bytesAfterHandshake, 0, 'nothing was sent to the impostor');
      assert.match(server.output(), /direct connection to the node failed/);
    } finally {
      mitm.close();
    }
  });
});
