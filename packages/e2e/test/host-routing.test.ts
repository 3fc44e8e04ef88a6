// Host routing, as E2B's cloud is used: `aiva up --domain aiva.test` with TLS on
// 127.0.0.1:443, and the real e2b SDK in a process of its own configured by E2B_DOMAIN
// and E2B_API_KEY only, trusting a CA the test makes (NODE_EXTRA_CA_CERTS) and resolving
// *.aiva.test to 127.0.0.1 (a resolver preloaded into that process; the host's DNS is
// not touched).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type AivaUp, aivaUp, removeHome } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';

const run = promisify(execFile);
const DOMAIN = 'aiva.test';
const helper = (name: string) => fileURLToPath(new URL(`./helpers/${name}`, import.meta.url));

let up: AivaUp;
let pki: string;
before(async () => {
  pki = await mkdtemp(join(tmpdir(), 'aiva-pki-'));
  const f = (n: string) => join(pki, n);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=aiva test CA',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
  ]);
  await run('openssl', [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=${DOMAIN}`,
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
  ]);
  await writeFile(f('san.ext'), `subjectAltName=DNS:${DOMAIN},DNS:*.${DOMAIN}\n`);
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    f('san.ext'),
    '-out',
    f('server.pem'),
  ]);
  up = await aivaUp([
    '--port',
    '443',
    '--domain',
    DOMAIN,
    '--tls-cert',
    f('server.pem'),
    '--tls-key',
    f('server.key'),
  ]);
});
after(async () => {
  const code = await up?.stop();
  if (up) await removeHome(up.home);
  await rm(pki, { recursive: true, force: true });
  assert.equal(code, 0, up?.output());
});
// Registered after the hooks above: `after` hooks run in the order they were added.
checkHostLeaks();

test('the e2b SDK with E2B_DOMAIN reaches the API and sandboxes by host name over TLS', async () => {
  assert.equal(up.url, 'https://127.0.0.1:443', up.output());
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    E2B_DOMAIN: DOMAIN,
    E2B_API_KEY: up.apiKey,
    NODE_EXTRA_CA_CERTS: join(pki, 'ca.pem'),
    AIVA_TEST_DOMAIN: DOMAIN,
  };
  for (const k of ['E2B_API_URL', 'E2B_SANDBOX_URL', 'E2B_DEBUG']) delete env[k];
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
    listed: string[];
  };
  assert.equal(seen.run, 'host user\n');
  assert.equal(seen.read, 'by host name');
  assert.equal(seen.host, `8000-${seen.id}.${DOMAIN}`);
  assert.equal(seen.status, 200);
  assert.equal(seen.body, 'by host name');
  assert.deepEqual(seen.listed, [seen.id]);
});
