// The tunnel on loopback, both ends real: a node's TunnelServer dials the server's HTTP
// server, which takes the Upgrade and runs HTTP/2 back over it; requests reach plain TCP and
// HTTP servers standing in for a sandbox's ports. Checks the tickets, refusals, resets, a
// big transfer both ways, a dropped session, and that nothing stays open.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, get, type IncomingMessage, request, type Server } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server as NetServer,
  connect as netConnect,
} from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import { TunnelDialError, TunnelServer } from '@aiva/node';
import { mintTicket, TICKET_MAX_AHEAD_MS, verifyTicket } from '@aiva/protocol/node';
import { TunnelAgent } from '../src/nodes/tunnel-agent.js';
import { TunnelConnectError, TunnelSessions } from '../src/nodes/tunnel-sessions.js';

const KEY = randomBytes(32);
const OTHER_KEY = randomBytes(32);
const HOST = '127.0.0.1';
/** The sandboxes the test node has: each reached on loopback at the port asked for. */
const SANDBOXES = new Set(['sbx1', 'sbx2']);
/** Credentials the server knows: n1 with its key; n2 registered with a key it does not have. */
const NODES: Record<string, { nodeId: string; tunnelKey: Buffer }> = {
  'cred-n1': { nodeId: 'n1', tunnelKey: KEY },
  'cred-n2': { nodeId: 'n2', tunnelKey: OTHER_KEY },
  'cred-n3': { nodeId: 'n3', tunnelKey: KEY },
};

const resources = () =>
  process
    .getActiveResourcesInfo()
    .filter((r) => /TCP|Http2|Timeout/.test(r))
    .sort();
const baseline = resources();

let http: Server;
let serverUrl: string;
let sessions: TunnelSessions;
let node: TunnelServer;
let skewMs = 0;
let app: Server;
let appConnections = 0;
let echo: NetServer;
let closedPort: number;

function listen<T extends Server | NetServer>(server: T): Promise<number> {
  server.listen(0, HOST);
  return once(server, 'listening').then(() => (server.address() as AddressInfo).port);
}

function nodeFor(nodeId: string, tunnelKey: Buffer): TunnelServer {
  return new TunnelServer({
    nodeId,
    tunnelKey,
    resolve: (sandboxId, port) => (SANDBOXES.has(sandboxId) ? { host: HOST, port } : undefined),
    now: () => Date.now() + skewMs,
  });
}

/** A node's session is up at the server once `up` names it. */
async function dialed(n: TunnelServer, nodeId: string, credential: string) {
  const up = new Promise<void>((resolve) => {
    const on = (id: string) => {
      if (id !== nodeId) return;
      sessions.off('up', on);
      resolve();
    };
    sessions.on('up', on);
  });
  const connection = await n.dial(serverUrl, credential);
  await up;
  return connection;
}

before(async () => {
  app = createHttpServer((req, res) => res.end(`hello ${req.url}`));
  app.on('connection', () => appConnections++);
  app.on('upgrade', (_req, socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n');
    socket.pipe(socket);
  });
  await listen(app);
  echo = createNetServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await listen(echo);
  const spare = createNetServer();
  closedPort = await listen(spare);
  spare.close();
  sessions = new TunnelSessions({ authenticate: (c) => NODES[c] });
  http = createHttpServer((_req, res) => res.end('api'));
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!sessions.handleUpgrade(req, socket, head)) socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
  });
  serverUrl = `http://${HOST}:${await listen(http)}`;
  node = nodeFor('n1', KEY);
  await dialed(node, 'n1', 'cred-n1');
});

after(async () => {
  await sessions.close();
  await node.close();
  await Promise.all([http, app, echo].map((s) => new Promise((r) => s.close(r))));
  // Sockets close on the next turns of the loop.
  for (let i = 0; i < 50 && resources().length > baseline.length; i++)
    await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(resources(), baseline, 'no listening socket, connection, session or timer is left');
});

const appPort = () => (app.address() as AddressInfo).port;
const echoPort = () => (echo.address() as AddressInfo).port;

function getVia(agent: TunnelAgent, sandboxId: string, port: number, path: string) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    get({ host: sandboxId, port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

async function refusedWith(p: Promise<unknown>, reason: string, code?: string) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TunnelConnectError, String(e));
    assert.equal(e.reason, reason, e.message);
    if (code) assert.equal(e.code, code);
    return true;
  });
}

test('a ticket verifies only for its node, sandbox, port and key, until it expires', () => {
  const now = 1_700_000_000_000;
  const subject = { nodeId: 'n1', sandboxId: 'sbx1', port: 49983 };
  const { ticket, exp } = mintTicket(KEY, subject, 30_000, now);
  const check = (over = {}, key: Buffer = KEY, t = ticket, e = String(exp), at = now) =>
    verifyTicket(key, { ...subject, ...over }, t, e, at);
  assert.equal(check(), 'ok');
  assert.equal(check({ sandboxId: 'sbx2' }), 'forged');
  assert.equal(check({ port: 8080 }), 'forged');
  assert.equal(check({ nodeId: 'n2' }), 'forged');
  assert.equal(check({}, OTHER_KEY), 'forged');
  assert.equal(check({}, KEY, ticket, String(exp + 1)), 'forged');
  assert.equal(check({}, KEY, `${ticket.slice(0, -1)}${ticket.endsWith('A') ? 'B' : 'A'}`), 'forged');
  assert.equal(check({}, KEY, ticket, String(exp), exp), 'expired');
  assert.equal(check({}, KEY, ticket, String(exp), exp - TICKET_MAX_AHEAD_MS - 1), 'too-far-ahead');
  assert.equal(verifyTicket(KEY, subject, undefined, String(exp), now), 'missing');
  assert.equal(check({}, KEY, 'short', String(exp)), 'malformed');
  assert.equal(check({}, KEY, ticket, '1e99'), 'malformed');
  assert.equal(check({ sandboxId: 'a|b' }), 'malformed');
  assert.throws(() => mintTicket(KEY, subject, TICKET_MAX_AHEAD_MS + 1), RangeError);
  assert.throws(() => mintTicket(KEY, { ...subject, port: 0 }), TypeError);
});

test('GETs through the agent reach the sandbox port and reuse one kept-alive stream', async () => {
  const agent = new TunnelAgent((id, port) => sessions.connect('n1', id, port));
  try {
    const before = appConnections;
    assert.deepEqual(await getVia(agent, 'sbx1', appPort(), '/a'), { status: 200, body: 'hello /a' });
    assert.deepEqual(await getVia(agent, 'sbx1', appPort(), '/b'), { status: 200, body: 'hello /b' });
    assert.equal(appConnections - before, 1, 'the second GET went over the first one’s connection');
    assert.equal(node.openStreams('sbx1'), 1, 'one stream stays open, kept alive');
  } finally {
    agent.destroy();
  }
});

test('a request with a body arrives byte for byte (its head and body are written as one vector)', async () => {
  // What Node's HTTP client does for `end(body)`: head and body corked, written together.
  const seen: Buffer[] = [];
  const recorder = createHttpServer((req, res) => {
    const raw = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
    req.on('data', (d: Buffer) => seen.push(d));
    req.on('end', () => res.end(`${raw[0]} ${Buffer.concat(seen).toString()}`));
  });
  const port = await listen(recorder);
  const agent = new TunnelAgent((id, p) => sessions.connect('n1', id, p));
  try {
    for (const path of ['/filesystem.Filesystem/ListDir', '/process.Process/Start']) {
      seen.length = 0;
      const body = await new Promise<string>((resolve, reject) => {
        const req = request(
          {
            host: 'sbx1',
            port,
            method: 'POST',
            path,
            agent,
            headers: { 'content-type': 'application/json' },
          },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => {
              text += d;
            });
            res.on('end', () => resolve(text));
          },
        );
        req.on('error', reject);
        req.end('{"path":"/"}');
      });
      assert.equal(body, `POST ${path} HTTP/1.1 {"path":"/"}`);
    }
  } finally {
    agent.destroy();
    await new Promise((r) => recorder.close(r));
  }
});

test('an upgrade is spliced through a tunnel stream', async () => {
  const agent = new TunnelAgent((id, port) => sessions.connect('n1', id, port));
  try {
    const socket = await new Promise<Duplex>((resolve, reject) => {
      const req = request({
        host: 'sbx1',
        port: appPort(),
        path: '/ws',
        agent,
        headers: { connection: 'upgrade', upgrade: 'echo' },
      });
      req.on('upgrade', (_res, s: Duplex) => resolve(s));
      req.on('error', reject);
      req.end();
    });
    socket.write('ping');
    const [data] = await once(socket, 'data');
    assert.equal(String(data), 'ping');
    socket.destroy();
  } finally {
    agent.destroy();
  }
});

test('100 MiB go each way through one stream with their sha256 intact, and half-close ends it', async () => {
  const stream = await sessions.connect('n1', 'sbx1', echoPort());
  const sent = createHash('sha256');
  const got = createHash('sha256');
  let received = 0;
  stream.on('data', (d: Buffer) => {
    got.update(d);
    received += d.length;
  });
  const ended = once(stream, 'end');
  const total = 100 << 20;
  for (let left = total; left > 0; left -= 1 << 20) {
    const chunk = randomBytes(1 << 20);
    sent.update(chunk);
    if (!stream.write(chunk)) await once(stream, 'drain');
  }
  stream.end();
  await ended;
  assert.equal(received, total);
  assert.equal(got.digest('hex'), sent.digest('hex'));
});

test('refusals: unknown sandbox 404, closed port 502 port-closed, a bad ticket 403', async () => {
  await refusedWith(
    sessions.connect('n1', 'nosuch', appPort()),
    'sandbox-not-found',
    'EAIVA_SANDBOX_NOT_FOUND',
  );
  await refusedWith(sessions.connect('n1', 'sbx1', closedPort), 'port-closed', 'ECONNREFUSED');
  // Through the agent, a closed port reads as the proxy's ECONNREFUSED.
  const agent = new TunnelAgent((id, port) => sessions.connect('n1', id, port));
  await assert.rejects(getVia(agent, 'sbx1', closedPort, '/'), { code: 'ECONNREFUSED' });
  agent.destroy();
  // The node's clock 40 s ahead: the server's 30 s tickets have expired there.
  skewMs = 40_000;
  try {
    await refusedWith(sessions.connect('n1', 'sbx1', appPort()), 'bad-ticket');
  } finally {
    skewMs = 0;
  }
  // n2 is known to the server under a key the node does not hold: every ticket is forged.
  const n2 = nodeFor('n2', KEY);
  await dialed(n2, 'n2', 'cred-n2');
  await refusedWith(sessions.connect('n2', 'sbx1', appPort()), 'bad-ticket', 'EAIVA_TICKET');
  await n2.close();
});

test('resetSandbox cuts off the sandbox’s open streams, and only its own', async () => {
  const a = await sessions.connect('n1', 'sbx1', echoPort());
  const b = await sessions.connect('n1', 'sbx2', echoPort());
  a.on('error', () => {});
  assert.equal(node.openStreams('sbx1') >= 1, true);
  const aClosed = new Promise((r) => a.once('close', r));
  assert.ok(node.resetSandbox('sbx1') >= 1);
  await aClosed;
  assert.equal(a.rstCode, 10, 'reset with CONNECT_ERROR');
  assert.equal(node.openStreams('sbx1'), 0);
  b.write('still here');
  const [data] = await once(b, 'data');
  assert.equal(String(data), 'still here');
  b.end();
  await once(b, 'close');
});

test('a wrong or missing credential gets 401 and no session', async () => {
  const other = nodeFor('n1', KEY);
  for (const credential of ['nope', '']) {
    await assert.rejects(other.dial(serverUrl, credential), (e: unknown) => {
      assert.ok(e instanceof TunnelDialError);
      assert.equal(e.status, 401);
      assert.match(e.message, /credential/);
      return true;
    });
  }
  assert.deepEqual(sessions.connected(), ['n1']);
  // An Upgrade to another protocol on the tunnel path is refused too.
  const s = netConnect((http.address() as AddressInfo).port, HOST);
  s.end('GET /v1/node/tunnel HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
  let text = '';
  for await (const d of s) text += String(d);
  assert.match(text, /^HTTP\/1.1 400 /);
  await other.close();
});

test('a node whose session drops: its streams fail and connect fails at once, clearly', async () => {
  const n3 = nodeFor('n3', KEY);
  const connection = await dialed(n3, 'n3', 'cred-n3');
  const open = await sessions.connect('n3', 'sbx1', echoPort());
  open.on('error', () => {});
  const down = once(sessions, 'down');
  const streamClosed = new Promise((r) => open.once('close', r));
  await n3.close();
  assert.equal((await down)[0], 'n3');
  await streamClosed;
  await connection.closed;
  // At once: not after a dial or PING timeout (10–15 s); the bound is loose so that a
  // loaded machine does not fail it.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    refusedWith(sessions.connect('n3', 'sbx1', echoPort()), 'no-session', 'EAIVA_NO_TUNNEL'),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('connect waited for a timeout')), 5000);
    }),
  ]).finally(() => clearTimeout(timer));
  assert.ok(!sessions.has('n3'));
});

test('a peer that stops answering PINGs is dropped', async () => {
  const quick = new TunnelSessions({ authenticate: (c) => NODES[c], pingIntervalMs: 100 });
  const server = createHttpServer();
  server.on('upgrade', (req, socket, head) => quick.handleUpgrade(req, socket, head));
  const port = await listen(server);
  // A "node" that takes the Upgrade and then says nothing, not even its HTTP/2 preface.
  const silent = netConnect(port, HOST);
  silent.write(
    `GET /v1/node/tunnel HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: aiva-tunnel/1\r\nauthorization: Bearer cred-n1\r\n\r\n`,
  );
  const [id, reason] = await once(quick, 'down');
  assert.equal(id, 'n1');
  assert.match(String(reason?.message), /PING/);
  silent.destroy();
  await quick.close();
  await new Promise((r) => server.close(r));
});

/** A self-signed certificate for 127.0.0.1, made by openssl. */
function selfSigned(): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'aiva-tunnel-tls-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' }); // biome-ignore format: one command
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('an HTTPS port (httpsPorts) is reached with TLS inside the stream, its certificate unchecked', async () => {
  const tls = selfSigned();
  const sandboxHttps = createHttpsServer(tls, (req, res) => res.end(`secure ${req.url}`));
  const port = await listen(sandboxHttps as unknown as Server);
  const agent = new TunnelAgent((id, p) => sessions.connect('n1', id, p), { https: true });
  try {
    assert.deepEqual(await getVia(agent, 'sbx1', port, '/s'), { status: 200, body: 'secure /s' });
    // Plain HTTP inside the stream to the same port fails, as it does without the tunnel.
    const plain = new TunnelAgent((id, p) => sessions.connect('n1', id, p));
    await assert.rejects(getVia(plain, 'sbx1', port, '/'));
    plain.destroy();
  } finally {
    agent.destroy();
    sandboxHttps.closeAllConnections();
    await new Promise((r) => sandboxHttps.close(r));
  }
});

test('direct mode: the node’s TLS listener serves the same CONNECT streams, tickets checked', async () => {
  const tls = selfSigned();
  const direct = nodeFor('n1', KEY);
  const address = await direct.listenDirect(tls, 0, HOST);
  const client = h2connect(`https://${HOST}:${address.port}`, { ca: tls.cert });
  client.on('error', () => {});
  const open = (port: number, ticket?: string) => {
    const minted = mintTicket(KEY, { nodeId: 'n1', sandboxId: 'sbx1', port });
    const stream = client.request(
      {
        ':method': 'CONNECT',
        ':authority': `sbx1:${port}`,
        'aiva-ticket': ticket ?? minted.ticket,
        'aiva-ticket-exp': String(minted.exp),
      },
      { endStream: false },
    );
    stream.on('error', () => {});
    return once(stream, 'response').then(([h]) => ({ stream, headers: h as Record<string, unknown> }));
  };
  try {
    const ok = await open(echoPort());
    assert.equal(ok.headers[':status'], 200);
    ok.stream.end('direct');
    let text = '';
    for await (const d of ok.stream) text += String(d);
    assert.equal(text, 'direct');
    const forged = await open(
      echoPort(),
      mintTicket(OTHER_KEY, { nodeId: 'n1', sandboxId: 'sbx1', port: echoPort() }).ticket,
    );
    assert.equal(forged.headers[':status'], 403);
    assert.equal(forged.headers['aiva-error'], 'bad-ticket');
    const closed = await open(closedPort);
    assert.deepEqual([closed.headers[':status'], closed.headers['aiva-error']], [502, 'port-closed']);
  } finally {
    client.close();
    await direct.close();
  }
});
