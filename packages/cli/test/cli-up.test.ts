import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkHostLeaks } from '@aiva/node/testkit';
import { type RunningUp, startUp } from './helpers/aiva-up.js';
import { explain, removeHome, runCli, tempHome } from './helpers/run-cli.js';

describe('aiva up', () => {
  let home = '';
  let up: RunningUp | undefined;
  before(async () => {
    home = await tempHome('aiva-cli-up-');
  });
  after(async () => {
    await up?.stop();
    if (home) await removeHome(home);
  });

  it('--help lists its options', async () => {
    const r = await runCli(['up', '--help']);
    assert.equal(r.code, 0, explain(r));
    for (const option of [
      '--host',
      '--port',
      '--domain',
      '--no-tls',
      '--dns-listen',
      '--dns-answer',
      '--database-url',
      '--runtime',
      '--warm-pool',
      '--log-level',
    ]) {
      assert.match(r.stdout, new RegExp(`^ +(-\\w, )?${option} `, 'm'), option);
    }
  });

  it('refuses a bad option value and says why, before starting anything', async () => {
    const cases: [string[], RegExp][] = [
      [['--port', '70000'], /argument '70000' is invalid\. port must be a whole number from 0 to 65535/],
      [['--runtime', 'nope'], /argument 'nope' is invalid\. one of container, qemu-microvm, firecracker/],
      [['--warm-pool', 'base'], /argument 'base' is invalid\. template=n, e\.g\. base=4/],
      [['--log-level', 'loud'], /argument 'loud' is invalid\. one of fatal, error, warn, info, debug/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['up', ...args], { env: { AIVA_HOME: home } });
      assert.equal(r.code, 1, `${args.join(' ')}: ${explain(r)}`);
      assert.match(r.stderr, message);
    }
    const tls = await runCli(['up', '--tls-cert', '/nonexistent.pem'], { env: { AIVA_HOME: home } });
    assert.equal(tls.code, 1, explain(tls));
    assert.equal(tls.stderr, 'aiva: --tls-cert and --tls-key go together\n');
    const domainCases: [string[], string][] = [
      [['--dns-listen', '127.0.0.1'], `argument '127.0.0.1' is invalid. bad listen address`],
      [['--dns-answer', 'here'], `argument 'here' is invalid. an IPv4 or IPv6 address`],
      [['--dns-listen', '127.0.0.1:5353'], 'aiva: --dns-listen goes with --domain\n'],
      [['--no-tls'], 'aiva: --no-tls goes with --domain\n'],
      [['--domain', 'aiva.test', '--dns-answer', '127.0.0.1'], 'aiva: --dns-answer goes with --dns-listen\n'],
      // E2B_DOMAIN clients speak HTTPS only: no certificate for the domain is an error that names the fix.
      [
        ['--domain', 'aiva.test'],
        'aiva: aiva has no certificate for aiva.test. Make one with `aiva tls init --domain aiva.test`, or give --tls-cert and --tls-key, or --no-tls to serve plain HTTP (which E2B_DOMAIN clients cannot use)\n',
      ],
    ];
    for (const [args, message] of domainCases) {
      const r = await runCli(['up', ...args], { env: { AIVA_HOME: home } });
      assert.equal(r.code, 1, `${args.join(' ')}: ${explain(r)}`);
      assert.ok(r.stderr.includes(message), `${args.join(' ')}: ${explain(r)}`);
    }
  });

  it('serves on --port 0, logs JSON lines when not on a terminal, and exits 0 on SIGTERM', async () => {
    // A domain without TLS, asked for: served over HTTP, with a banner that says E2B_DOMAIN cannot use it.
    up = await startUp(home, ['--log-level', 'info', '--domain', 'aiva.test', '--no-tls']);
    assert.match(up.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.doesNotMatch(up.url, /:0$/);
    assert.match(up.stderr(), /First start: created team "default" and its API key/);
    const credentials = JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8')) as {
      apiUrl: string;
      apiKey: string;
    };
    assert.equal(credentials.apiUrl, up.url);
    assert.equal((await stat(join(home, 'credentials.json'))).mode & 0o777, 0o600);
    assert.match(up.stderr(), new RegExp(`E2B_API_KEY=${credentials.apiKey}`));
    assert.match(
      up.stderr(),
      /^ {2}E2B_DOMAIN=aiva\.test needs HTTPS on port 443; this server is http:\/\/127\.0\.0\.1:\d+: start it with --port 443 and a certificate \(aiva tls init\)$/m,
    );
    assert.match(
      up.stderr(),
      /^DNS: aiva\.test and \*\.aiva\.test must resolve to this machine: add --dns-listen 127\.0\.0\.1:5353/m,
    );

    const health = await fetch(`${up.url}/health`);
    assert.equal(health.status, 200);
    await health.arrayBuffer();

    const code = await up.stop();
    assert.equal(code, 0, up.stderr());
    const lines = up
      .stdout()
      .split('\n')
      .filter((l) => l.length > 0);
    assert.ok(lines.length > 0, 'it logged');
    const entries = lines.map((l) => JSON.parse(l) as { level: number; msg: string; signal?: string });
    assert.ok(
      entries.some((e) => e.msg.startsWith('stopping') && e.signal === 'SIGTERM'),
      up.stdout(),
    );
    up = undefined;
  });
});

checkHostLeaks({ betweenNodes: true });
