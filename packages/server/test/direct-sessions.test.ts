// Direct mode on loopback, both ends real: the server's DirectSessions dials a node's TLS
// listener (TunnelServer.listenDirect) pinned to its certificate's fingerprint and opens
// the same ticketed CONNECT streams; a certificate that is not the pinned one, or a
// listener that is gone, sends the stream through the fallback (the tunnel) instead.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer as createNetServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import { TunnelServer } from '@aiva/node';
import { normalizeFingerprint } from '@aiva/protocol/node';
import pino from 'pino';
import { DirectSessions } from '../src/nodes/direct-sessions.js';

const HOST = '127.0.0.1';
const KEY = randomBytes(32);
const NODE = { nodeId: 'n1', tunnelKey: KEY };

function selfSigned(): { key: Buffer; cert: Buffer; fingerprint: string } {
  const dir = mkdtempSync(join(tmpdir(), 'aiva-direct-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=node', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' }); // biome-ignore format: one command
    const cert = readFileSync(join(dir, 'cert.pem'));
    const fingerprint = normalizeFingerprint(new X509Certificate(cert).fingerprint256) as string;
    return { key: readFileSync(join(dir, 'key.pem')), cert, fingerprint };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let echo: NetServer;
let node: TunnelServer;
let nodeCert: ReturnType<typeof selfSigned>;
let address: string;
const logs: string[] = [];
const log = pino({ level: 'info' }, { write: (line: string) => logs.push(line) });

before(async () => {
  echo = createNetServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  echo.listen(0, HOST);
  await once(echo, 'listening');
  nodeCert = selfSigned();
  node = new TunnelServer({
    nodeId: 'n1',
    tunnelKey: KEY,
    resolve: (id, port) => (id === 'sbx1' ? { host: HOST, port } : undefined),
  });
  const at = await node.listenDirect({ key: nodeCert.key, cert: nodeCert.cert }, 0, HOST);
  address = `${HOST}:${at.port}`;
});

after(async () => {
  await node.close();
  await new Promise((r) => echo.close(r));
});

const echoPort = () => (echo.address() as AddressInfo).port;

/** A stand-in for the tunnel: counts its uses, gives a stream that echoes nothing. */
function fallback() {
  const used = { n: 0 };
  return {
    used,
    fn: async () => {
      used.n++;
      return new PassThrough() as never;
    },
  };
}

async function roundTrip(stream: NodeJS.ReadWriteStream & { end(s: string): void }): Promise<string> {
  stream.end('ping');
  let text = '';
  for await (const d of stream as AsyncIterable<Buffer>) text += String(d);
  return text;
}

test('a node’s direct listener with the pinned certificate carries the streams', async () => {
  const direct = new DirectSessions({ log });
  const tunnel = fallback();
  try {
    const target = { address, fingerprint: nodeCert.fingerprint };
    const stream = await direct.connect(NODE, target, 'sbx1', echoPort(), tunnel.fn);
    assert.equal(await roundTrip(stream), 'ping');
    assert.equal(tunnel.used.n, 0, 'not through the tunnel');
    assert.equal(direct.mode('n1'), 'direct');
    // The node's own refusals stand: no fallback for a sandbox it does not have.
    await assert.rejects(direct.connect(NODE, target, 'nope', echoPort(), tunnel.fn), {
      reason: 'sandbox-not-found',
    });
    assert.equal(tunnel.used.n, 0);
  } finally {
    await direct.close();
  }
});

test('another certificate at the address (a man in the middle) is refused: the tunnel is used, and why is logged once', async () => {
  const mitmCert = selfSigned();
  let appBytes = 0;
  const mitm = createTlsServer({ key: mitmCert.key, cert: mitmCert.cert, ALPNProtocols: ['h2'] }, (s) => {
    s.on('data', (d: Buffer) => {
      appBytes += d.length;
    });
    s.on('error', () => {});
  });
  mitm.listen(0, HOST);
  await once(mitm, 'listening');
  const direct = new DirectSessions({ log, retryAfterMs: 0 });
  const tunnel = fallback();
  logs.length = 0;
  try {
    const target = {
      address: `${HOST}:${(mitm.address() as AddressInfo).port}`,
      fingerprint: nodeCert.fingerprint,
    };
    for (let i = 0; i < 3; i++) await direct.connect(NODE, target, 'sbx1', echoPort(), tunnel.fn);
    assert.equal(tunnel.used.n, 3);
    assert.equal(appBytes, 0, 'nothing was sent to the impostor after the handshake');
    assert.equal(direct.mode('n1'), 'tunnel');
    assert.match(direct.lastError('n1') ?? '', /fingerprint/);
    assert.equal(logs.filter((l) => /direct connection to the node failed/.test(l)).length, 1);
  } finally {
    await direct.close();
    await new Promise((r) => mitm.close(r));
  }
});

test('a listener that is gone sends the streams through the tunnel until it is back', async () => {
  const spare = createNetServer();
  spare.listen(0, HOST);
  await once(spare, 'listening');
  const port = (spare.address() as AddressInfo).port;
  await new Promise((r) => spare.close(r));
  const direct = new DirectSessions({ log, retryAfterMs: 60_000 });
  const tunnel = fallback();
  try {
    await direct.connect(
      NODE,
      { address: `${HOST}:${port}`, fingerprint: nodeCert.fingerprint },
      'sbx1',
      1,
      tunnel.fn,
    );
    assert.equal(tunnel.used.n, 1);
    assert.match(direct.lastError('n1') ?? '', /ECONNREFUSED/);
    // A new address (the node reported another) is tried at once.
    const stream = await direct.connect(
      NODE,
      { address, fingerprint: nodeCert.fingerprint },
      'sbx1',
      echoPort(),
      tunnel.fn,
    );
    assert.equal(await roundTrip(stream), 'ping');
    assert.equal(tunnel.used.n, 1);
  } finally {
    await direct.close();
  }
});
