// Sandbox networking with a microVM (qemu-microvm; one boot) next to a container: the
// guest's fixed address behind the namespace's NAT reaches the test internet by name
// (its resolver is its gateway, forwarded to the node's DNS forwarder), cannot reach the
// container sandbox nor be reached by it, cannot spoof its source address, takes live
// policy updates; the host reaches any of its ports.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { SandboxInfo, SandboxManager } from '../src/index.js';
import { TestInternet } from '../src/lab/test-internet.js';
import { VM_GUEST } from '../src/network/sandbox-network.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { fetchJson, hostConnect, reach, sandboxServer, sh } from './helpers/network.js';
import { tempDir } from './helpers/temp-dir.js';
import { closeManager, testManager } from './helpers/test-node.js';

checkHostLeaks();
const home = await tempDir('aiva-node-');

const [WEB1, WEB2] = TestInternet.WEB;
const url = (host: string | undefined) => `http://${host}/`;

describe('microVM sandbox networking', () => {
  let inet: TestInternet;
  let m: SandboxManager;
  let vm: SandboxInfo;
  let box: SandboxInfo;
  before(async () => {
    inet = await TestInternet.start({ 'web.test': { A: [WEB1 as string] } });
    m = await testManager({ home, dnsUpstreams: [inet.dnsUpstream] });
    [vm, box] = await Promise.all([
      m.create({ driver: 'qemu-microvm', memoryMiB: 512, vcpus: 1 }),
      m.create({ driver: 'container', memoryMiB: 256, vcpus: 1 }),
    ]);
    await Promise.all([sandboxServer(vm, 8080), sandboxServer(box, 8080)]);
  });
  after(async () => {
    await closeManager(m);
    await inet.stop();
  });

  test('the guest has the fixed address and reaches the test internet by name through two NATs', async () => {
    assert.match(await sh(vm, 'ip -4 -o addr show'), new RegExp(`inet ${VM_GUEST.address}/30`));
    assert.equal((await sh(vm, 'cat /etc/resolv.conf')).trim(), `nameserver ${VM_GUEST.gateway}`);
    assert.deepEqual(await fetchJson(vm, url('web.test')), {
      server: WEB1,
      client: TestInternet.HOST_END,
      received: 0,
    });
  });

  test('the host reaches any guest port; sandboxes cannot reach each other', async () => {
    assert.equal(await hostConnect(vm.network?.address ?? '', 8080), 'ok');
    assert.equal(await hostConnect(vm.network?.address ?? '', 8081), 'refused');
    assert.deepEqual(
      await reach(vm, [`http://${box.network?.address}:8080/`, ...TestInternet.FORBIDDEN.map(url)]),
      {
        [`http://${box.network?.address}:8080/`]: 'timeout',
        ...Object.fromEntries(TestInternet.FORBIDDEN.map((a) => [url(a), 'timeout'])),
      },
    );
    assert.deepEqual(await reach(box, [`http://${vm.network?.address}:8080/`]), {
      [`http://${vm.network?.address}:8080/`]: 'timeout',
    });
  });

  test('a guest that changes its source address gets nowhere', async () => {
    // Root in the guest may add addresses; the namespace forwards them without NAT and
    // the host drops any source but the sandbox's own.
    await sh(vm, 'sudo ip addr add 169.254.0.30/32 dev eth0');
    assert.match(await sh(vm, 'ip -4 -o addr show dev eth0'), /inet 169\.254\.0\.30\/32/);
    const spoofed = await sh(
      vm,
      `curl -s -o /dev/null --connect-timeout 2 --interface 169.254.0.30 ${url(WEB2)}; echo $?`,
      true,
    );
    assert.equal(spoofed.trim(), '28');
    assert.equal((await reach(vm, [url(WEB2)]))[url(WEB2)], 'ok', 'its own address still works');
  });

  test('a policy update applies to the guest at once', async () => {
    await m.updateNetwork(vm.id, { allowInternetAccess: false });
    assert.deepEqual(await reach(vm, [url(WEB2), url('web.test')]), {
      [url(WEB2)]: 'timeout',
      [url('web.test')]: 'no-dns',
    });
    await m.updateNetwork(vm.id, { denyOut: ['0.0.0.0/0'], allowOut: ['web.test'] });
    assert.deepEqual(await reach(vm, [url('web.test'), url(WEB2)]), {
      [url('web.test')]: 'ok',
      [url(WEB2)]: 'timeout',
    });
  });
});
