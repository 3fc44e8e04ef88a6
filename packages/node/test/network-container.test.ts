// Sandbox networking with container sandboxes, against a test "internet" in a namespace
// of its own (198.18.0.0/15, web servers and a DNS server, reachable only through the
// host's NAT): egress by address and by name, allow_internet_access, allowOut/denyOut
// by CIDR and by name, live updates, isolation from other sandboxes, the host and
// private ranges, host-initiated connections to guest ports, adoption after a restart,
// the namespace pool, debris of a crashed node; and nothing left on the host after.
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import {
  idmappedOverlaySupported,
  pinUserNamespace,
  sandboxIdRange,
  unpinNamespace,
} from '../src/host/idmapped-overlay.js';
import {
  hostResources,
  runCommand,
  type SandboxManager,
  SandboxNotFoundError,
  SandboxSpecError,
} from '../src/index.js';
import { TestInternet } from '../src/lab/test-internet.js';
import { USERNS_DIR, userNamespaceFile } from '../src/network/sandbox-network.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { fetchJson, hostConnect, hostServer, reach, sandboxServer, sh } from './helpers/network.js';
import { tempDir } from './helpers/temp-dir.js';
import { closeManager, testManager } from './helpers/test-node.js';

checkHostLeaks();

const [WEB1, WEB2, WEB3, WEB4] = TestInternet.WEB;
const url = (host: string | undefined) => `http://${host}/`;
const records = {
  'web.test': { A: [WEB1 as string] },
  'alias.test': { CNAME: 'web.test' },
  'other.test': { A: [WEB2 as string] },
  'a.wild.test': { A: [WEB3 as string] },
  'moving.test': { A: [WEB3 as string], ttl: 1 },
};
const small = { memoryMiB: 256, vcpus: 1 } as const;
const table = async () => (await runCommand('nft', ['list', 'table', 'inet', 'aiva'])).stdout;

const home = await tempDir('aiva-node-');

describe('container sandbox networking', () => {
  let inet: TestInternet;
  let m: SandboxManager;
  before(async () => {
    inet = await TestInternet.start(records);
    m = await testManager({ home, dnsUpstreams: [inet.dnsUpstream] });
  });
  after(async () => {
    await closeManager(m);
    await inet.stop();
  });

  test('reaches the test internet by address and by name, through the host NAT', async () => {
    const s = await m.create(small);
    assert.equal((await sh(s, 'cat /etc/resolv.conf')).trim(), `nameserver ${s.network?.guest.dns}`);
    assert.deepEqual(await fetchJson(s, url('web.test')), {
      server: WEB1,
      client: TestInternet.HOST_END,
      received: 0,
    });
    assert.deepEqual(await reach(s, [url(WEB2), url('alias.test'), url('nothing.test')]), {
      [url(WEB2)]: 'ok',
      [url('alias.test')]: 'ok',
      [url('nothing.test')]: 'no-dns',
    });
    // Any resolver address is answered by the node's forwarder (the template's own is 10.255.255.53).
    assert.match(await sh(s, 'getent hosts web.test'), new RegExp(WEB1 as string));
    assert.equal((await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim(), '1', 'forwarding is on');
    await m.kill(s.id);
  });

  test('cannot reach other sandboxes, the host or private ranges; the host reaches any guest port', async () => {
    const host = await hostServer();
    try {
      const [a, b] = await Promise.all([m.create(small), m.create(small)]);
      await sandboxServer(b, 8080);
      const hostEndA = a.network?.guest.gateway;
      const hostEndB = b.network?.guest.gateway;
      // The host service answers (positive control), from the host.
      assert.equal(await hostConnect(hostEndA ?? '', host.port), 'ok');
      assert.deepEqual(
        await reach(a, [
          `http://${b.network?.address}:8080/`,
          `http://${hostEndA}:${host.port}/`,
          `http://${hostEndB}:${host.port}/`,
          `http://${TestInternet.HOST_END}:${host.port}/`,
          `http://127.0.0.1:${host.port}/`,
          ...TestInternet.FORBIDDEN.map(url),
        ]),
        {
          [`http://${b.network?.address}:8080/`]: 'timeout',
          [`http://${hostEndA}:${host.port}/`]: 'timeout',
          [`http://${hostEndB}:${host.port}/`]: 'timeout',
          [`http://${TestInternet.HOST_END}:${host.port}/`]: 'timeout',
          // Its own loopback: nothing listens there.
          [`http://127.0.0.1:${host.port}/`]: 'refused',
          // Served by the test internet (routed there from the host): only the firewall stops them.
          ...Object.fromEntries(TestInternet.FORBIDDEN.map((a) => [url(a), 'timeout'])),
        },
      );
      // What the proxy will do: the host opens connections to any guest port.
      assert.equal(await hostConnect(b.network?.address ?? '', 8080), 'ok');
      assert.equal(
        await hostConnect(a.network?.address ?? '', 8080),
        'refused',
        'closed ports answer at once',
      );
      // Nobody else can: the test internet, given a route to sandboxes through the host, cannot connect.
      await inet.exec(['ip', 'route', 'add', '10.11.0.0/16', 'via', TestInternet.HOST_END]);
      const fromOutside = await inet.exec([
        process.execPath,
        '-e',
        `const c=require('net').connect({host:'${b.network?.address}',port:8080});c.on('connect',()=>{console.log('ok');process.exit(0)});c.on('error',e=>{console.log(e.code);process.exit(0)});setTimeout(()=>{console.log('timeout');process.exit(0)},2000)`,
      ]);
      assert.equal(fromOutside.stdout.trim(), 'timeout');
      await inet.exec(['ip', 'route', 'del', '10.11.0.0/16']);
      await Promise.all([m.kill(a.id), m.kill(b.id)]);
    } finally {
      await host.close();
    }
  });

  test('allow_internet_access=false denies every address and DNS', async () => {
    const s = await m.create({ ...small, network: { allowInternetAccess: false } });
    assert.deepEqual(s.networkPolicy, { allowInternetAccess: false });
    assert.deepEqual(await reach(s, [url(WEB1), url('web.test')]), {
      [url(WEB1)]: 'timeout',
      [url('web.test')]: 'no-dns',
    });
    await m.kill(s.id);
  });

  test('denyOut and allowOut by CIDR, replaced live', async () => {
    const s = await m.create({ ...small, network: { denyOut: ['198.18.1.0/24'] } });
    assert.deepEqual(await reach(s, [url(WEB1), url(WEB2)]), { [url(WEB1)]: 'timeout', [url(WEB2)]: 'ok' });

    // A connection opened while allowed is judged again when the policy changes.
    await sh(
      s,
      `(setsid node -e "const c=require('net').connect({host:'${WEB2}',port:7});let n=0;c.on('data',()=>{n++});setInterval(()=>{c.write('x');require('fs').writeFileSync('/tmp/echoes',String(n))},100)" >/dev/null 2>&1 &); sleep 1`,
    );
    const echoesBefore = Number(await sh(s, 'cat /tmp/echoes'));
    assert.ok(echoesBefore > 0, 'the echo connection works');

    await m.updateNetwork(s.id, { allowInternetAccess: false, allowOut: ['198.18.1.0/24'] });
    assert.deepEqual(m.get(s.id).networkPolicy, { allowInternetAccess: false, allowOut: ['198.18.1.0/24'] });
    assert.deepEqual(await reach(s, [url(WEB1), url(WEB2), url(WEB3)]), {
      [url(WEB1)]: 'ok',
      [url(WEB2)]: 'timeout',
      [url(WEB3)]: 'timeout',
    });
    const stalled = Number(await sh(s, 'sleep 1; cat /tmp/echoes'));
    assert.equal(
      Number(await sh(s, 'sleep 1; cat /tmp/echoes')),
      stalled,
      'the open connection no longer gets through',
    );

    await m.updateNetwork(s.id, {});
    assert.deepEqual(await reach(s, [url(WEB1), url(WEB2)]), { [url(WEB1)]: 'ok', [url(WEB2)]: 'ok' });
    await m.kill(s.id);
  });

  test('allowOut and denyOut by name (CNAMEs, wildcards), kept current, replaced live', async () => {
    await inet.setRecords(records);
    const s = await m.create({
      ...small,
      network: { denyOut: ['0.0.0.0/0'], allowOut: ['web.test', '*.wild.test', 'moving.test'] },
    });
    assert.deepEqual(await reach(s, [url('web.test'), url('other.test'), url(WEB2)]), {
      [url('web.test')]: 'ok',
      [url('other.test')]: 'timeout',
      [url(WEB2)]: 'timeout',
    });
    assert.deepEqual(await reach(s, [url('alias.test'), url('a.wild.test')]), {
      [url('alias.test')]: 'ok',
      [url('a.wild.test')]: 'ok',
    });
    // The address of an allowed name is allowed as such (a documented limit of name rules).
    assert.equal((await reach(s, [url(WEB1)]))[url(WEB1)], 'ok');

    // The name moves: the new answer is allowed as soon as the sandbox resolves it.
    assert.equal((await fetchJson(s, url('moving.test'))).server, WEB3);
    await inet.setRecords({ ...records, 'moving.test': { A: [WEB4 as string], ttl: 1 } });
    assert.equal((await fetchJson(s, url('moving.test'))).server, WEB4);

    // Deny by name: its addresses are dropped once resolved; other names still go out.
    await m.updateNetwork(s.id, { denyOut: ['other.test'] });
    assert.deepEqual(await reach(s, [url('other.test'), url('web.test')]), {
      [url('other.test')]: 'timeout',
      [url('web.test')]: 'ok',
    });
    assert.equal(
      (await reach(s, [url(WEB2)]))[url(WEB2)],
      'timeout',
      'the resolved address is denied as such',
    );

    // A new policy applies at once to names the sandbox resolved before it.
    await m.updateNetwork(s.id, { allowInternetAccess: false, allowOut: ['other.test'] });
    assert.deepEqual(await reach(s, [url(WEB2), url(WEB1)]), { [url(WEB2)]: 'ok', [url(WEB1)]: 'timeout' });
    await m.kill(s.id);
  });

  test('bad policies are refused with clear errors and change nothing', async () => {
    const before = await hostResources();
    await assert.rejects(
      m.create({ ...small, network: { allowOut: ['10.1.2.3'] } }),
      (e: Error) => e instanceof SandboxSpecError && /lies in 10.0.0.0\/8/.test(e.message),
    );
    await assert.rejects(m.create({ ...small, network: { denyOut: ['nope nope'] } }), SandboxSpecError);
    assert.deepEqual(m.list(), []);
    assert.deepEqual(await hostResources(), before);

    const s = await m.create({ ...small, network: { denyOut: [`${WEB1}/32`] } });
    await assert.rejects(m.updateNetwork(s.id, { denyOut: ['300.0.0.1'] }), /not a valid IPv4 address/);
    assert.deepEqual(m.get(s.id).networkPolicy, { denyOut: [WEB1] });
    assert.equal((await reach(s, [url(WEB1)]))[url(WEB1)], 'timeout', 'the old policy still holds');
    await assert.rejects(m.updateNetwork('nosuchsandbox', {}), SandboxNotFoundError);
    await m.kill(s.id);
  });
});

describe('container sandbox networking across node restarts', () => {
  let inet: TestInternet;
  before(async () => {
    inet = await TestInternet.start(records);
  });
  after(async () => {
    await inet.stop();
  });

  test('a restarted node re-applies each sandbox’s policy', async (t) => {
    const home = await tempDir('aiva-node-');
    const first = await testManager({ home, dnsUpstreams: [inet.dnsUpstream] });
    const s = await first.create({ ...small, network: { denyOut: ['198.18.1.0/24'] } });
    await first.close();
    // The sandbox keeps running, and so do its rules.
    assert.match(await table(), new RegExp(`sb-${s.id}`));
    assert.equal((await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim(), '1');

    const second = await testManager({ home, dnsUpstreams: [inet.dnsUpstream] });
    t.after(() => closeManager(second));
    assert.deepEqual(second.get(s.id).networkPolicy, { denyOut: ['198.18.1.0/24'] });
    assert.deepEqual(await reach(s, [url(WEB1), url('other.test')]), {
      [url(WEB1)]: 'timeout',
      [url('other.test')]: 'ok',
    });
    await second.kill(s.id);
  });

  test('a crashed node’s debris is swept and forwarding restored', async (t) => {
    // What a node killed mid-way leaves: a namespace (in a user namespace where the node
    // makes them), a stale chain, forwarding it turned on.
    const userns = (await idmappedOverlaySupported()).supported;
    if (userns) {
      await mkdir(USERNS_DIR, { recursive: true });
      await pinUserNamespace(sandboxIdRange(4000), userNamespaceFile('aiva-n4000'), '/run/netns/aiva-n4000');
    } else await runCommand('ip', ['netns', 'add', 'aiva-n4000']);
    await runCommand('nft', ['-f', '-'], {
      input: 'add table inet aiva\nadd chain inet aiva sb-ghost\nadd rule inet aiva sb-ghost drop\n',
    });
    await writeFile('/run/aiva/ip_forward.saved', '0\n');
    await runCommand('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    t.after(async () => {
      await runCommand('ip', ['netns', 'del', 'aiva-n4000']).catch(() => {});
      await unpinNamespace(userNamespaceFile('aiva-n4000'));
      await rm('/run/aiva/ip_forward.saved', { force: true });
    });

    const m = await testManager({ dnsUpstreams: [inet.dnsUpstream] });
    try {
      assert.ok(!(await hostResources()).netns.includes('aiva-n4000'), 'the orphaned namespace is removed');
      if (userns)
        await assert.rejects(stat(userNamespaceFile('aiva-n4000')), /ENOENT/, 'and its user namespace');
      assert.doesNotMatch(await table(), /sb-ghost/);
      assert.equal(
        (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim(),
        '0',
        'no sandbox: restored',
      );
      const s = await m.create(small);
      assert.equal((await reach(s, [url('web.test')]))[url('web.test')], 'ok');
    } finally {
      await closeManager(m);
    }
    const left = await hostResources();
    assert.deepEqual(left.nftTables, []);
    assert.deepEqual(left.ipForward, ['0']);
  });

  test('with a pool, creates take ready namespaces, and the pool is removed on close', async () => {
    const others = new Set((await hostResources()).netns);
    const ours = async () => (await hostResources()).netns.filter((n) => !others.has(n));
    const m = await testManager({ dnsUpstreams: [inet.dnsUpstream], networkPoolSize: 2 });
    try {
      await m.fillNetworkPool();
      const pooled = await ours();
      assert.equal(pooled.length, 2);
      const s = await m.create(small);
      assert.ok(pooled.includes(s.network?.netns ?? ''), 'the sandbox got a pooled namespace');
      assert.equal((await reach(s, [url('web.test')]))[url('web.test')], 'ok');
      await m.fillNetworkPool();
      assert.equal((await ours()).length, 3, 'the pool is full again');
      // A pooled namespace is cut off until a sandbox takes it.
      const idle = (await ours()).find((n) => n !== s.network?.netns) ?? '';
      const { stdout } = await runCommand('nsenter', [
        `--net=/run/netns/${idle}`,
        '--',
        'curl',
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '--connect-timeout',
        '2',
        url(WEB1),
      ]).catch((e: Error) => ({ stdout: e.message }));
      assert.match(stdout, /exited with code 28/);
    } finally {
      await closeManager(m);
    }
    assert.deepEqual(await ours(), []);
  });
});
