// Host routing, as E2B's cloud is used, set up the way the README says: `aiva tls init
// --domain aiva.test`, then `aiva up --domain aiva.test --port 443 --dns-listen …`. The
// real e2b SDK runs in a process of its own configured by E2B_DOMAIN, E2B_API_KEY and
// NODE_EXTRA_CA_CERTS (aiva's CA) only, and asks aiva's DNS listener for names under the
// domain (a lookup preloaded into that process; the host's DNS is not touched).
// A volume is made, written and read through https://api.<domain> as well.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as dnsPacket from 'dns-packet';
import { type AivaUp, aivaUp, makeHome, removeHome, runAiva } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';

const run = promisify(execFile);
const DOMAIN = 'aiva.test';
const helper = (name: string) => fileURLToPath(new URL(`./helpers/${name}`, import.meta.url));

// The only upstream aiva knows of (the sandboxes' forwarder, `--dns`): it counts what it is
// asked, so that the domain's DNS listener can be seen to forward nothing.
const upstream = createSocket('udp4');
const upstreamAsked: string[] = [];
upstream.on('message', (m) => {
  for (const q of dnsPacket.decode(m).questions ?? []) upstreamAsked.push(q.name.toLowerCase());
});

let home = '';
let up: AivaUp;
let dnsServer = '';
before(async () => {
  home = await makeHome();
  const init = await runAiva(home, ['tls', 'init', '--domain', DOMAIN]);
  assert.match(init.stdout, new RegExp(`export NODE_EXTRA_CA_CERTS=${join(home, 'tls', 'ca.pem')}\\n`));
  upstream.bind(0, '127.0.0.1');
  await once(upstream, 'listening');
  up = await aivaUp(
    [
      '--port',
      '443',
      '--domain',
      DOMAIN,
      '--dns-listen',
      '127.0.0.1:0',
      '--dns',
      `127.0.0.1:${upstream.address().port}`,
    ],
    { home },
  );
  dnsServer = new RegExp(
    `DNS: aiva answers for ${DOMAIN} and \\*\\.${DOMAIN} with 127\\.0\\.0\\.1 at (127\\.0\\.0\\.1:\\d+) `,
  ).exec(up.output())?.[1] as string;
  assert.ok(dnsServer, up.output());
});
after(async () => {
  const code = await up?.stop();
  upstream.close();
  if (home) await removeHome(home);
  assert.equal(code, 0, up?.output());
});
// Registered after the hooks above: `after` hooks run in the order they were added.
checkHostLeaks();

test('the e2b SDK with E2B_DOMAIN reaches the API and sandboxes by host name over TLS', async () => {
  assert.equal(up.url, 'https://127.0.0.1:443', up.output());
  const ca = join(home, 'tls', 'ca.pem');
  // The banner gives the exact variables the SDK needs.
  assert.ok(
    up
      .output()
      .includes(`  export E2B_DOMAIN=${DOMAIN} E2B_API_KEY=${up.apiKey} NODE_EXTRA_CA_CERTS=${ca}\n`),
    up.output(),
  );
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    E2B_DOMAIN: DOMAIN,
    E2B_API_KEY: up.apiKey,
    NODE_EXTRA_CA_CERTS: ca,
    AIVA_TEST_DOMAIN: DOMAIN,
    AIVA_TEST_DNS: dnsServer,
  };
  for (const k of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_VOLUME_API_URL', 'E2B_DEBUG']) delete env[k];
  const { stdout } = await run(
    process.execPath,
    ['--import', helper('test-domain-resolver.js'), helper('host-routing-client.js')],
    { env, timeout: 120_000 },
  );
  const seen = JSON.parse(stdout) as {
    id: string;
    run: string;
    read: string;
    host: string;
    status: number;
    body: string;
    uploadUrl: string;
    uploadStatus: number;
    downloadUrl: string;
    downloaded: { status: number; body: string };
    listed: string[];
    volume: string;
  };
  assert.equal(seen.run, 'host user\n');
  assert.equal(seen.read, 'by host name');
  assert.equal(seen.host, `8000-${seen.id}.${DOMAIN}`);
  assert.equal(seen.status, 200);
  assert.equal(seen.body, 'by host name');
  assert.match(seen.uploadUrl, new RegExp(`^https://49983-${seen.id}\\.${DOMAIN}/files\\?.*signature=`));
  assert.equal(seen.uploadStatus, 200);
  assert.match(seen.downloadUrl, new RegExp(`^https://49983-${seen.id}\\.${DOMAIN}/files\\?.*signature=`));
  assert.deepEqual(seen.downloaded, { status: 200, body: 'through a signed URL' });
  assert.deepEqual(seen.listed, [seen.id]);
  assert.equal(seen.volume, 'through api.<domain>');
});

test('aiva’s DNS listener answers for the domain only, and forwards nothing', async () => {
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([dnsServer]);
  for (const name of [DOMAIN, `api.${DOMAIN}`, `49983-abc123.${DOMAIN}`, `API.AIVA.TEST`])
    assert.deepEqual(await resolver.resolve4(name), ['127.0.0.1'], name);
  await assert.rejects(resolver.resolve6(`api.${DOMAIN}`), { code: 'ENODATA' });
  const outside = ['example.com', `${DOMAIN}.example.com`, `x${DOMAIN}`, 'localhost', 'test'];
  for (const name of outside) await assert.rejects(resolver.resolve4(name), { code: 'EREFUSED' }, name);
  // The upstream is asked by nothing here; give a forward that would be in flight time to land.
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(
    upstreamAsked.filter((n) => outside.includes(n)),
    [],
  );
});

test('the web console over TLS: its session cookie is Secure', async () => {
  const ca = await readFile(join(home, 'tls', 'ca.pem'));
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: 443,
        servername: `api.${DOMAIN}`,
        path: '/v1/console/session',
        method: 'POST',
        headers: { host: `api.${DOMAIN}`, 'content-type': 'application/json' },
        ca,
      },
      resolve,
    );
    req.on('error', reject);
    req.end(JSON.stringify({ apiKey: up.apiKey }));
  });
  res.resume();
  assert.equal(res.statusCode, 201);
  const cookie = res.headers['set-cookie']?.[0] ?? '';
  assert.match(cookie, /^aiva_console=[A-Za-z0-9_-]{43};/);
  for (const attribute of [/; HttpOnly(;|$)/, /; Secure(;|$)/, /; SameSite=Strict(;|$)/, /; Path=\/(;|$)/])
    assert.match(cookie, attribute);
});

test('/mcp over TLS: its tools call the API back (on a loopback listener of the server’s own)', async () => {
  const ca = await readFile(join(home, 'tls', 'ca.pem'));
  const call = {
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: 'list_sandboxes', arguments: {} },
  };
  const { status, body } = await new Promise<{ status?: number; body: string }>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: 443,
        servername: `api.${DOMAIN}`,
        path: '/mcp',
        method: 'POST',
        headers: {
          host: `api.${DOMAIN}`,
          authorization: `Bearer ${up.apiKey}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        ca,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode, body: text }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(call));
  });
  assert.equal(status, 200, body);
  // One server-sent event carrying the call's result: the team's sandboxes, as JSON text.
  const message = JSON.parse(/^data: (.*)$/m.exec(body)?.[1] ?? '{}') as {
    result?: { isError?: boolean; content?: { type: string; text: string }[] };
  };
  assert.equal(message.result?.isError, undefined, body);
  assert.ok(Array.isArray(JSON.parse(message.result?.content?.[0]?.text ?? 'null')), body);
});
