// `aiva tls init`, run as a user would: the CA is made once and kept, a certificate per
// domain is made on request and again only when it must be (ending soon, or not this CA's).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { explain, removeHome, runCli, tempHome } from './helpers/run-cli.js';

const run = promisify(execFile);
let home = '';
const aiva = (...args: string[]) => runCli(args, { env: { AIVA_HOME: home } });
const tls = (...p: string[]) => join(home, 'tls', ...p);
const cert = async (file: string) => new X509Certificate(await readFile(file));

describe('aiva tls init', () => {
  before(async () => {
    home = await tempHome('aiva-cli-tls-');
  });
  after(async () => {
    if (home) await removeHome(home);
  });

  it('makes a CA and a certificate for the domain and its wildcard, and says how to trust the CA', async () => {
    const r = await aiva('tls', 'init', '--domain', 'aiva.test');
    assert.equal(r.code, 0, explain(r));
    const ca = await cert(tls('ca.pem'));
    assert.equal(ca.ca, true);
    assert.equal((await stat(tls('ca.key'))).mode & 0o777, 0o600);
    assert.equal((await stat(tls('domains', 'aiva.test', 'key.pem'))).mode & 0o777, 0o600);
    const server = await cert(tls('domains', 'aiva.test', 'cert.pem'));
    assert.ok(server.verify(ca.publicKey));
    for (const name of ['aiva.test', 'api.aiva.test', '49983-abc123.aiva.test'])
      assert.ok(server.checkHost(name), name);
    assert.equal(server.checkHost('a.b.aiva.test'), undefined, 'a wildcard covers one label');
    assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1');
    // Strict verification (as Python 3.13 does by default) accepts the chain.
    const verified = await run('openssl', [
      'verify',
      '-x509_strict',
      '-CAfile',
      tls('ca.pem'),
      tls('domains', 'aiva.test', 'cert.pem'),
    ]);
    assert.match(verified.stdout, /: OK\n$/);
    assert.match(r.stdout, new RegExp(`^CA: ${tls('ca.pem')} \\(made now;`, 'm'));
    assert.match(r.stdout, new RegExp(`SHA-256 fingerprint ${ca.fingerprint256}\\n`));
    for (const line of [
      `export NODE_EXTRA_CA_CERTS=${tls('ca.pem')}`,
      `export SSL_CERT_FILE=${tls('ca.pem')} REQUESTS_CA_BUNDLE=${tls('ca.pem')}`,
      `cp ${tls('ca.pem')} /usr/local/share/ca-certificates/aiva-local-ca.crt && update-ca-certificates`,
      'aiva up --domain aiva.test --port 443 --dns-listen 127.0.0.1:5353',
    ])
      assert.ok(r.stdout.includes(line), `${line}\n${r.stdout}`);
  });

  it('run again, keeps the CA and the certificate; a new domain gets one of its own from the same CA', async () => {
    const caBefore = (await cert(tls('ca.pem'))).fingerprint256;
    const serverBefore = (await cert(tls('domains', 'aiva.test', 'cert.pem'))).fingerprint256;
    const again = await aiva('tls', 'init', '--domain', 'aiva.test');
    assert.equal(again.code, 0, explain(again));
    assert.match(again.stdout, /^CA: .* \(kept;/m);
    assert.match(again.stdout, /^Certificate for aiva\.test and \*\.aiva\.test: .* \(kept;/m);
    assert.equal((await cert(tls('ca.pem'))).fingerprint256, caBefore);
    assert.equal((await cert(tls('domains', 'aiva.test', 'cert.pem'))).fingerprint256, serverBefore);

    const other = await aiva('tls', 'init', '--domain', 'Sandboxes.Example.com.');
    assert.equal(other.code, 0, explain(other));
    assert.match(
      other.stdout,
      /^Certificate for sandboxes\.example\.com and \*\.sandboxes\.example\.com: .* \(made now: there was none;/m,
    );
    const ca = await cert(tls('ca.pem'));
    assert.equal(ca.fingerprint256, caBefore);
    const made = await cert(tls('domains', 'sandboxes.example.com', 'cert.pem'));
    assert.ok(made.verify(ca.publicKey));
    assert.ok(made.checkHost('8000-x.sandboxes.example.com'));
    assert.equal((await cert(tls('domains', 'aiva.test', 'cert.pem'))).fingerprint256, serverBefore);
    assert.deepEqual((await readdir(tls())).sort(), ['ca.key', 'ca.pem', 'domains'], 'no scratch left');
  });

  it('without --domain, makes again the certificates that end soon or are not this CA’s, and keeps the rest', async () => {
    // One that ends tomorrow, signed by the CA; one signed by a stranger.
    const soon = tls('domains', 'aiva.test');
    await run('openssl', [
      'req',
      '-x509',
      '-subj',
      '/CN=aiva.test',
      '-addext',
      'subjectAltName=DNS:aiva.test,DNS:*.aiva.test',
      '-CA',
      tls('ca.pem'),
      '-CAkey',
      tls('ca.key'),
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-noenc',
      '-days',
      '1',
      '-keyout',
      join(soon, 'key.pem'),
      '-out',
      join(soon, 'cert.pem'),
    ]);
    const stranger = tls('domains', 'sandboxes.example.com');
    await run('openssl', [
      'req',
      '-x509',
      '-subj',
      '/CN=sandboxes.example.com',
      '-addext',
      'subjectAltName=DNS:sandboxes.example.com,DNS:*.sandboxes.example.com',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-noenc',
      '-days',
      '365',
      '-keyout',
      join(stranger, 'key.pem'),
      '-out',
      join(stranger, 'cert.pem'),
    ]);
    const r = await aiva('tls', 'init');
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stdout, /^Certificate for aiva\.test and \*\.aiva\.test: .* \(made now: it ends on /m);
    assert.match(
      r.stdout,
      /^Certificate for sandboxes\.example\.com .* \(made now: it was not signed by this CA;/m,
    );
    const ca = await cert(tls('ca.pem'));
    for (const d of ['aiva.test', 'sandboxes.example.com']) {
      const c = await cert(tls('domains', d, 'cert.pem'));
      assert.ok(c.verify(ca.publicKey), d);
      assert.ok(Date.parse(c.validTo) - Date.now() > 300 * 24 * 3600_000, d);
    }
  });

  it('refuses a bad domain and an incomplete CA, and says what to do', async () => {
    for (const bad of ['test', 'a..b', '-x.example', 'under_score.example', `${'a'.repeat(64)}.example`]) {
      const r = await aiva('tls', 'init', '--domain', bad);
      assert.equal(r.code, 1, explain(r));
      assert.match(r.stderr, /^aiva: bad domain ".*": expected a DNS name of two labels or more/, bad);
    }
    const pem = await readFile(tls('ca.pem'));
    await rm(tls('ca.pem'));
    const r = await aiva('tls', 'init');
    assert.equal(r.code, 1, explain(r));
    assert.equal(
      r.stderr,
      `aiva: the CA in ${tls()} is incomplete (${tls('ca.pem')} is missing): remove ${tls('ca.key')} to make a new one\n`,
    );
    await writeFile(tls('ca.pem'), pem);
  });
});
