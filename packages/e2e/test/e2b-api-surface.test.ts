// E2B's newer API surface through `aiva up`: refresh, batch and team metrics,
// network.httpsPorts and maskRequestHost at the proxy, and the create options aiva does
// not implement, which are refused (400) rather than ignored.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Sandbox } from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

const aiva = aivaUpForFile();

/** A call to aiva's API with the team's key (these routes have no SDK method). */
async function api(method: string, path: string, body?: unknown, key = aiva.up.apiKey) {
  const res = await fetch(`${aiva.up.url}${path}`, {
    method,
    headers: { 'x-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
}

/** A request to a sandbox's port through aiva's proxy, by E2B's routing headers. */
async function viaProxy(id: string, port: number, path = '/', headers: Record<string, string> = {}) {
  const res = await fetch(`${aiva.up.url}${path}`, {
    headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(port), ...headers },
  });
  return { status: res.status, text: await res.text() };
}

/** Answers every GET with what it saw (Host, X-Forwarded-Host); an Upgrade is switched and echoed. */
const ECHO_SERVER = `
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get('Upgrade'):
            self.send_response(101)
            self.send_header('Upgrade', self.headers['Upgrade'])
            self.send_header('Connection', 'Upgrade')
            self.end_headers()
            self.wfile.flush()
            while True:
                b = self.connection.recv(1024)
                if not b:
                    return
                self.connection.sendall(b)
        body = json.dumps({'host': self.headers.get('Host'), 'xfh': self.headers.get('X-Forwarded-Host'),
                           'xfp': self.headers.get('X-Forwarded-Proto'), 'tls': len(sys.argv) > 2}).encode()
        self.send_response(200)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(('0.0.0.0', int(sys.argv[1])), H)
if len(sys.argv) > 2:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain('/tmp/cert.pem', '/tmp/key.pem')
    s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
`;

/** Starts the echo server in the sandbox on `port` (over TLS if `tls`) and waits until it answers. */
async function serve(sbx: Sandbox, port: number, tls: boolean): Promise<void> {
  await sbx.commands.run(`python3 /tmp/echo.py ${port}${tls ? ' tls' : ''}`, { background: true });
  for (let i = 0; i < 100; i++) {
    const r = await sbx.commands.run(`(echo > /dev/tcp/127.0.0.1/${port}) 2>/dev/null && echo up || true`);
    if (r.stdout.includes('up')) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

describe('refresh', () => {
  test('extends a running sandbox’s life by duration (min 15 s), never shortens it; 404 unknown, paused or another team’s', async (t) => {
    const sbx = await Sandbox.create({ timeoutMs: 30_000 });
    t.after(() => sbx.kill());
    const before = (await sbx.getInfo()).endAt.getTime();
    assert.equal((await api('POST', `/sandboxes/${sbx.sandboxId}/refreshes`, { duration: 600 })).status, 204);
    const extended = (await sbx.getInfo()).endAt.getTime();
    assert.ok(
      extended > before + 500_000,
      `${new Date(before).toISOString()} → ${new Date(extended).toISOString()}`,
    );
    assert.ok(Math.abs(extended - (Date.now() + 600_000)) < 10_000);
    // Shorter than what is left: no change (setTimeout is the way to shorten).
    assert.equal((await api('POST', `/sandboxes/${sbx.sandboxId}/refreshes`, { duration: 20 })).status, 204);
    assert.equal((await api('POST', `/sandboxes/${sbx.sandboxId}/refreshes`)).status, 204);
    assert.equal((await sbx.getInfo()).endAt.getTime(), extended);

    const unknown = await api('POST', '/sandboxes/nosuchsandbox/refreshes', { duration: 60 });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body?.code, 404);
    assert.equal((await api('POST', '/sandboxes/NOT-AN-ID/refreshes', {})).status, 400);

    const other = await api('POST', '/v1/teams', { name: 'refresh-other' });
    const otherKey = other.body?.key as string;
    assert.equal((await api('POST', `/sandboxes/${sbx.sandboxId}/refreshes`, {}, otherKey)).status, 404);

    await sbx.pause();
    const paused = await api('POST', `/sandboxes/${sbx.sandboxId}/refreshes`, { duration: 60 });
    assert.equal(paused.status, 404);
    assert.match(String(paused.body?.message), /paused/);
  });
});

describe('metrics', () => {
  test('GET /sandboxes/metrics gives the newest sample of each of the team’s sandboxes named; others are left out', async (t) => {
    const a = await Sandbox.create({ timeoutMs: 120_000 });
    t.after(() => a.kill());
    const b = await Sandbox.create({ timeoutMs: 120_000 });
    t.after(() => b.kill());
    const r = await api('GET', `/sandboxes/metrics?sandbox_ids=${a.sandboxId},${b.sandboxId},nosuchsandbox`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const got = r.body?.sandboxes as Record<
      string,
      { cpuCount: number; memTotal: number; timestampUnix: number }
    >;
    assert.deepEqual(Object.keys(got).sort(), [a.sandboxId, b.sandboxId].sort());
    for (const m of Object.values(got)) {
      assert.ok(m.cpuCount >= 1 && m.memTotal > 0, JSON.stringify(m));
      assert.ok(Math.abs(m.timestampUnix - Date.now() / 1000) < 60);
    }
    // Another team sees none of them.
    const other = await api('POST', '/v1/teams', { name: 'metrics-other' });
    const theirs = await api(
      'GET',
      `/sandboxes/metrics?sandbox_ids=${a.sandboxId}`,
      undefined,
      other.body?.key as string,
    );
    assert.deepEqual(theirs.body, { sandboxes: {} });

    const many = Array.from({ length: 101 }, (_, i) => `s${i}`).join(',');
    const tooMany = await api('GET', `/sandboxes/metrics?sandbox_ids=${many}`);
    assert.equal(tooMany.status, 400);
    assert.match(String(tooMany.body?.message), /maximum is 100/);
    assert.equal((await api('GET', '/sandboxes/metrics?sandbox_ids=Bad-Id')).status, 400);
    assert.equal((await api('GET', '/sandboxes/metrics')).status, 400);
  });

  test('team metrics: sandboxes at once and starts per second, their maxima; only the team’s own', async (t) => {
    const keys = (await api('GET', '/v1/keys')).body as unknown as { teamId: string }[];
    const teamId = keys[0]?.teamId as string;
    // From the next whole second: the sandboxes of the tests before (ended) are not counted.
    const since = Math.ceil(Date.now() / 1000);
    await new Promise((r) => setTimeout(r, since * 1000 - Date.now() + 10));
    const a = await Sandbox.create({ timeoutMs: 120_000 });
    t.after(() => a.kill());
    const b = await Sandbox.create({ timeoutMs: 120_000 });
    t.after(() => b.kill());

    const series = await api('GET', `/teams/${teamId}/metrics?start=${since}`);
    assert.equal(series.status, 200, JSON.stringify(series.body));
    const points = series.body as unknown as {
      timestampUnix: number;
      timestamp: string;
      concurrentSandboxes: number;
      sandboxStartRate: number;
    }[];
    assert.ok(points.length > 0);
    assert.ok(points.every((p) => p.timestampUnix % 5 === 0 && p.timestampUnix >= since - 5));
    assert.ok(
      points.some((p) => p.concurrentSandboxes >= 2),
      JSON.stringify(points),
    );
    // Two starts, each 0.2/s in its 5 s step.
    const starts = points.reduce((n, p) => n + p.sandboxStartRate * 5, 0);
    assert.ok(Math.abs(starts - 2) < 1e-6, JSON.stringify(points));

    const maxConc = await api(
      'GET',
      `/teams/${teamId}/metrics/max?metric=concurrent_sandboxes&start=${since}`,
    );
    assert.equal(maxConc.status, 200);
    assert.ok((maxConc.body?.value as number) >= 2, JSON.stringify(maxConc.body));
    const maxRate = await api('GET', `/teams/${teamId}/metrics/max?metric=sandbox_start_rate&start=${since}`);
    assert.ok((maxRate.body?.value as number) >= 0.2, JSON.stringify(maxRate.body));
    // No data: 0.
    const empty = await api(
      'GET',
      `/teams/${teamId}/metrics/max?metric=concurrent_sandboxes&start=1000&end=2000`,
    );
    assert.equal(empty.body?.value, 0);
    assert.deepEqual((await api('GET', `/teams/${teamId}/metrics?start=1000&end=2000`)).body, []);

    const foreign = await api('GET', '/teams/team_someoneelse/metrics');
    assert.equal(foreign.status, 403);
    assert.equal(foreign.body?.code, 403);
    assert.equal((await api('GET', `/teams/${teamId}/metrics/max?metric=cpu`)).status, 400);
    assert.equal((await api('GET', `/teams/${teamId}/metrics?start=2000&end=1000`)).status, 400);
  });
});

describe('the proxy and network options', () => {
  test('httpsPorts: the proxy speaks TLS to those ports (self-signed), WebSockets too; an unlisted HTTPS port gets a 502 that says so', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'aiva-tls-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=sandbox',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' }); // biome-ignore format: one command
    const sbx = await Sandbox.create({ timeoutMs: 120_000, network: { httpsPorts: [8443] } });
    t.after(() => sbx.kill());
    assert.deepEqual((await sbx.getInfo()).network?.httpsPorts, [8443]);
    await sbx.files.write('/tmp/cert.pem', await readFile(join(dir, 'cert.pem'), 'utf8'));
    await sbx.files.write('/tmp/key.pem', await readFile(join(dir, 'key.pem'), 'utf8'));
    await sbx.files.write('/tmp/echo.py', ECHO_SERVER);
    await serve(sbx, 8443, true);
    await serve(sbx, 8444, true);
    await serve(sbx, 8080, false);

    const https = await viaProxy(sbx.sandboxId, 8443, '/x');
    assert.equal(https.status, 200, https.text);
    assert.equal((JSON.parse(https.text) as { tls: boolean }).tls, true);
    // The same server on a port not listed: plain HTTP cannot reach it.
    const unlisted = await viaProxy(sbx.sandboxId, 8444);
    assert.equal(unlisted.status, 502, unlisted.text);
    assert.match(unlisted.text, /network\.httpsPorts/);
    assert.equal(JSON.parse(unlisted.text).port, 8444);
    // Plain ports stay plain.
    assert.equal((await viaProxy(sbx.sandboxId, 8080)).status, 200);

    // An upgrade to the HTTPS port is spliced over TLS.
    const u = new URL(aiva.up.url);
    const req = request({
      host: u.hostname,
      port: u.port,
      path: '/ws',
      headers: {
        'e2b-sandbox-id': sbx.sandboxId,
        'e2b-sandbox-port': '8443',
        connection: 'Upgrade',
        upgrade: 'websocket',
      },
    });
    req.end();
    const [res, socket] = (await once(req, 'upgrade')) as [{ statusCode: number }, import('node:net').Socket];
    assert.equal(res.statusCode, 101);
    socket.write('ping over tls');
    const [echoed] = (await once(socket, 'data')) as [Buffer];
    assert.equal(echoed.toString(), 'ping over tls');
    socket.destroy();

    for (const bad of [[49983], [70000], [0]]) {
      const r = await api('POST', '/v2/sandboxes', { templateID: 'base', network: { httpsPorts: bad } });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.match(String(r.body?.message), /httpsPorts/);
    }
  });

  test('maskRequestHost: ports other than envd get that Host (its port placeholder filled in), the client’s in X-Forwarded-Host; X-Forwarded-Proto says http', async (t) => {
    const mask = ['masked.example:', '$', '{PORT}'].join('');
    const sbx = await Sandbox.create({ timeoutMs: 120_000, network: { maskRequestHost: mask } });
    t.after(() => sbx.kill());
    assert.equal((await sbx.getInfo()).network?.maskRequestHost, mask);
    await sbx.files.write('/tmp/echo.py', ECHO_SERVER);
    await serve(sbx, 8080, false);
    const r = await viaProxy(sbx.sandboxId, 8080);
    const seen = JSON.parse(r.text) as { host: string; xfh: string; xfp: string };
    assert.equal(seen.host, 'masked.example:8080');
    assert.equal(seen.xfh, new URL(aiva.up.url).host);
    // How the client reached aiva (plain HTTP here), for servers that hand out addresses.
    assert.equal(seen.xfp, 'http');
    // envd still works (its Host is not masked).
    assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n');
    const bad = await api('POST', '/v2/sandboxes', {
      templateID: 'base',
      network: { maskRequestHost: 'bad host/x' },
    });
    assert.equal(bad.status, 400);
    assert.match(String(bad.body?.message), /mask request host is not valid/);
  });
});

describe('options aiva does not implement', () => {
  test('Sandbox.create() with no options sends none of them (captured)', async () => {
    const bodies: Record<string, unknown>[] = [];
    const server = createServer((req, res) => {
      let text = '';
      req.on('data', (d: Buffer) => {
        text += d.toString();
      });
      req.on('end', () => {
        bodies.push(JSON.parse(text) as Record<string, unknown>);
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"code":400,"message":"captured"}');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await assert.rejects(Sandbox.create({ apiUrl }), /captured/);
      await assert.rejects(Sandbox.create({ apiUrl, volumeMounts: {} }), /captured/);
    } finally {
      server.close();
    }
    assert.deepEqual(Object.keys(bodies[0] ?? {}), ['templateID']);
    assert.deepEqual(bodies[1]?.volumeMounts, []);
  });

  test('egressProxy, rules and iam are refused with 400 on both create routes and the network update; empty ones pass', async (t) => {
    await assert.rejects(
      Sandbox.create({ network: { egressProxy: { address: '198.18.0.1:1080' } } }),
      /egressProxy is not supported by aiva/,
    );
    const refused: [string, Record<string, unknown>][] = [
      ['iam', { iam: { tokens: { gcp: { audience: 'x', tokenType: 'jwt-svid' } } } }],
      [
        'network.rules',
        { network: { rules: { 'api.example.com': [{ transform: { headers: { a: 'b' } } }] } } },
      ],
      ['network.egressProxy', { network: { egressProxy: { address: '198.18.0.1:1080' } } }],
    ];
    for (const path of ['/v2/sandboxes', '/sandboxes'])
      for (const [field, extra] of refused) {
        const r = await api('POST', path, { templateID: 'base', ...extra });
        assert.equal(r.status, 400, `${path} ${field}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body?.code, 400);
        assert.ok(
          String(r.body?.message).startsWith(`${field} is not supported by aiva`),
          JSON.stringify(r.body),
        );
      }
    // Nothing was left half-made.
    assert.equal((await Sandbox.list().nextItems()).length, 0);

    const empty = await api('POST', '/v2/sandboxes', {
      templateID: 'base',
      iam: {},
      mcp: null,
      volumeMounts: [],
      network: { rules: {}, egressProxy: null },
    });
    assert.equal(empty.status, 201, JSON.stringify(empty.body));
    const id = empty.body?.sandboxID as string;
    t.after(() => Sandbox.kill(id));
    const update = await api('PUT', `/sandboxes/${id}/network`, { rules: { 'a.example': [{}] } });
    assert.equal(update.status, 400);
    assert.match(String(update.body?.message), /network\.rules is not supported by aiva/);
  });
});
