// Egress policy and inbound traffic through `aiva up` and the real e2b SDK: a test
// "internet" (a namespace behind the host's NAT, with its own web servers and DNS; see
// @aiva/node's lab/test-internet) stands for the world, and `--dns` points the sandboxes'
// resolver at it. Nothing here sends traffic to any other address.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TestInternet } from '@aiva/node/testkit';
import { Sandbox, SandboxError } from 'e2b';
import { type AivaUp, aivaUp, removeHome, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';

const [WEB1, WEB2] = TestInternet.WEB;

let up: AivaUp;
let inet: TestInternet;
before(async () => {
  inet = await TestInternet.start({
    'web.test': { A: [WEB1 as string] },
    'other.test': { A: [WEB2 as string] },
  });
  up = await aivaUp(['--dns', inet.dnsUpstream]);
  useServer(up);
});
after(async () => {
  const code = await up?.stop();
  await inet?.stop();
  assert.equal(code, 0, up?.output());
  await removeHome(up.home);
});
// Registered after the hooks above: `after` hooks run in the order they were added.
checkHostLeaks();

/** curl from inside the sandbox: `ok` for an HTTP answer, else curl's exit code. */
async function reach(sbx: Sandbox, url: string): Promise<string> {
  const r = await sbx.commands.run(`curl -s -o /dev/null --connect-timeout 2 -m 5 '${url}'; echo $?`);
  const code = r.stdout.trim();
  return code === '0' ? 'ok' : `curl-${code}`;
}

describe('sandbox networking through the e2b SDK', () => {
  test('the internet by name by default; nothing with allowInternetAccess: false; updateNetwork replaces the policy live', async (t) => {
    const open = await Sandbox.create({ timeoutMs: 120_000 });
    t.after(() => open.kill());
    const closed = await Sandbox.create({ timeoutMs: 120_000, allowInternetAccess: false });
    t.after(() => closed.kill());

    assert.equal(await reach(open, 'http://web.test/'), 'ok');
    assert.equal(await reach(open, `http://${WEB2}/`), 'ok');
    assert.notEqual(await reach(closed, `http://${WEB1}/`), 'ok');
    assert.equal((await closed.getInfo()).allowInternetAccess, false);

    // Denied by name and by CIDR; the rest stays open.
    await open.updateNetwork({ denyOut: ['other.test', `${WEB1}/32`] });
    assert.notEqual(await reach(open, 'http://other.test/'), 'ok');
    assert.equal(await reach(open, `http://${WEB1}/`), 'curl-28');
    // Everything denied but one name.
    await closed.updateNetwork({ allowOut: ['web.test'], allowInternetAccess: false });
    assert.equal(await reach(closed, 'http://web.test/'), 'ok');
    assert.notEqual(await reach(closed, 'http://other.test/'), 'ok');
    // An update with nothing in it clears the lists: the internet is open again.
    await open.updateNetwork({});
    assert.equal(await reach(open, 'http://other.test/'), 'ok');
    assert.equal(await reach(open, `http://${WEB1}/`), 'ok');
  });

  test('sandboxes cannot reach each other, the host, or private ranges', async (t) => {
    const a = await Sandbox.create({ timeoutMs: 120_000 });
    t.after(() => a.kill());
    const b = await Sandbox.create({ timeoutMs: 120_000 });
    t.after(() => b.kill());
    await b.commands.run('python3 -m http.server 8000', { background: true });
    // b's server is up: the proxy reaches it.
    for (let i = 0; ; i++) {
      const res = await fetch(`${up.url}/`, {
        headers: { 'e2b-sandbox-id': b.sandboxId, 'e2b-sandbox-port': '8000' },
      });
      if (res.status === 200) break;
      assert.ok(i < 50, `b's server never answered through the proxy (${res.status})`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const bAddress = (
      await b.commands.run("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")
    ).stdout.trim();
    const aGateway = (await a.commands.run("ip route | awk '/default/ {print $3}'")).stdout.trim();
    const serverPort = new URL(up.url).port;
    assert.notEqual(await reach(a, `http://${bAddress}:8000/`), 'ok', 'sandbox → sandbox');
    assert.notEqual(
      await reach(a, `http://${aGateway}:${serverPort}/health`),
      'ok',
      'sandbox → host via its gateway',
    );
    assert.notEqual(
      await reach(a, `http://127.0.0.1:${serverPort}/`),
      'ok',
      'sandbox → its own loopback is not the host',
    );
    assert.notEqual(await reach(a, 'http://10.0.0.1/'), 'ok', 'RFC 1918');
    assert.notEqual(await reach(a, 'http://169.254.169.254/'), 'ok', 'metadata');
  });

  test('bad policies are 400 and change nothing', async (t) => {
    const sbx = await Sandbox.create({ timeoutMs: 120_000 });
    t.after(() => sbx.kill());
    await assert.rejects(sbx.updateNetwork({ allowOut: ['10.1.2.0/24'] }), (e: Error) => {
      assert.ok(e instanceof SandboxError, `${e.name}: ${e.message}`);
      assert.match(e.message, /^400: .*lies in 10\.0\.0\.0\/8/);
      return true;
    });
    await assert.rejects(sbx.updateNetwork({ denyOut: ['not a name!'] }), /^SandboxError: 400: /);
    await assert.rejects(
      Sandbox.create({ network: { allowOut: ['192.168.1.1'] }, allowInternetAccess: false }),
      /400: .*192\.168\.1\.1/,
    );
    assert.equal(await reach(sbx, `http://${WEB1}/`), 'ok');
    const res = await fetch(`${up.url}/sandboxes/${sbx.sandboxId}/network`, {
      method: 'PUT',
      headers: { 'x-api-key': up.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ egressProxy: { address: 'socks5://198.18.1.10:1080' } }),
    });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { message: string }).message, /egressProxy is not supported/);
  });

  test('allowPublicTraffic: false needs the traffic access token on every port but envd', async (t) => {
    const sbx = await Sandbox.create({ timeoutMs: 120_000, network: { allowPublicTraffic: false } });
    t.after(() => sbx.kill());
    assert.ok(sbx.trafficAccessToken, 'the SDK got a traffic access token');
    await sbx.commands.run('python3 -m http.server 8000', { background: true });
    const route = { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '8000' };
    let withToken = 0;
    for (let i = 0; i < 50 && withToken !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      withToken = (
        await fetch(`${up.url}/`, {
          headers: { ...route, 'e2b-traffic-access-token': sbx.trafficAccessToken ?? '' },
        })
      ).status;
    }
    assert.equal(withToken, 200);
    assert.equal((await fetch(`${up.url}/`, { headers: route })).status, 403);
    assert.equal(
      (await fetch(`${up.url}/`, { headers: { ...route, 'e2b-traffic-access-token': 'wrong' } })).status,
      403,
    );
    // envd (commands, files) keeps working with the envd access token alone.
    assert.equal((await sbx.commands.run('echo ok')).stdout, 'ok\n');
  });
});
