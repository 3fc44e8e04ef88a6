// Container sandboxes in user namespaces of their own: the sandbox's root is an
// unprivileged host id range, what it writes is stored with canonical owners, and what
// root could do in a sandbox before (sudo, /sys, raw sockets, port 80) still works.
import assert from 'node:assert/strict';
import { chmod, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { idmappedOverlaySupported, SANDBOX_ID_COUNT } from '../src/host/idmapped-overlay.js';
import { execInSandbox, type SandboxInfo, type SandboxManager } from '../src/index.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { tempDir } from './helpers/temp-dir.js';
import { closeManager, hostRuntimes, testManager } from './helpers/test-node.js';

checkHostLeaks();
const home = await tempDir('aiva-node-');
const support = await idmappedOverlaySupported();

/** The host uid of each process whose command line is `argv` (joined by spaces). */
async function hostUidsOf(argv: string): Promise<number[]> {
  const uids: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ').trim();
    if (cmd !== argv) continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    uids.push(Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]));
  }
  return uids;
}

describe('container sandboxes in user namespaces', {
  skip: support.supported ? false : support.reason,
}, () => {
  let m: SandboxManager;
  let a: SandboxInfo;
  let b: SandboxInfo;
  const run = async (s: SandboxInfo, cmd: string, user?: string) => {
    const r = await execInSandbox(s.network?.address ?? '', cmd, { accessToken: s.accessToken, user });
    assert.equal(r.exitCode, 0, `${cmd}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const hostId = (s: SandboxInfo) => s.network?.userns?.hostId as number;

  before(async () => {
    const runtimes = await hostRuntimes();
    assert.ok(
      runtimes.get('container')?.capabilities.userNamespace,
      'containers run in user namespaces here',
    );
    m = await testManager({ home, runtimes });
    [a, b] = await Promise.all([
      m.create({ memoryMiB: 256, vcpus: 1 }),
      m.create({ memoryMiB: 256, vcpus: 1 }),
    ]);
  });
  after(() => closeManager(m));

  test('each sandbox has a host id range of its own, disjoint from the other’s', () => {
    for (const s of [a, b]) {
      assert.equal(s.network?.userns?.count, SANDBOX_ID_COUNT);
      assert.ok(hostId(s) >= 2 ** 30, `${hostId(s)} is in the sandboxes' ids`);
    }
    const [lo, hi] = [a, b].sort((x, y) => hostId(x) - hostId(y)) as [SandboxInfo, SandboxInfo];
    assert.ok(hostId(lo) + SANDBOX_ID_COUNT <= hostId(hi), 'the ranges do not overlap');
  });

  test('inside, the map is its range and root is 0 (sudo too); from the host, its root and user are its ids', async () => {
    assert.equal(
      (await run(a, 'cat /proc/self/uid_map', 'root')).trim().split(/\s+/).join(' '),
      `0 ${hostId(a)} 65536`,
    );
    assert.equal(
      (await run(a, 'cat /proc/self/gid_map', 'root')).trim().split(/\s+/).join(' '),
      `0 ${hostId(a)} 65536`,
    );
    assert.equal(await run(a, 'id -u', 'root'), '0\n');
    assert.equal(await run(a, 'sudo -n id -u'), '0\n', 'setuid sudo works for the user');
    const init = m.get(a.id).runtime?.pid as number;
    const initUid = Number(/^Uid:\s+(\d+)/m.exec(await readFile(`/proc/${init}/status`, 'utf8'))?.[1]);
    assert.equal(initUid, hostId(a), "the sandbox's init runs as its first host id");
    // Commands running now, seen from the host.
    const asUser = run(a, 'sleep 2.71', 'user');
    const asRoot = run(b, 'sleep 2.72', 'root');
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(await hostUidsOf('sleep 2.71'), [hostId(a) + 1000]);
    assert.deepEqual(await hostUidsOf('sleep 2.72'), [hostId(b)]);
    await Promise.all([asUser, asRoot]);
  });

  test('files written inside are root’s and the user’s there, and 0 and 1000 on its disk', async () => {
    await run(a, 'touch /root/by-root /etc/by-root', 'root');
    await run(a, 'touch /home/user/by-user', 'user');
    assert.equal(
      await run(a, 'stat -c %U:%G /root/by-root /etc/by-root /home/user/by-user /', 'root'),
      'root:root\nroot:root\nuser:user\nroot:root\n',
    );
    const upper = join(home, 'sandboxes', a.id, 'disk', 'upper');
    for (const [f, id] of [
      ['root/by-root', 0],
      ['etc/by-root', 0],
      ['home/user/by-user', 1000],
      ['etc/resolv.conf', 0],
    ] as const) {
      const st = await stat(join(upper, f));
      assert.deepEqual([st.uid, st.gid], [id, id], f);
    }
    assert.equal(await run(a, 'cat /etc/resolv.conf'), `nameserver ${a.network?.guest.dns}\n`);
  });

  test('its root mounts its own /sys, makes raw sockets (ping) and binds port 80', async () => {
    assert.deepEqual((await run(a, 'ls /sys/class/net', 'root')).split('\n').filter(Boolean).sort(), [
      'eth0',
      'lo',
    ]);
    const ping = `
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(5)
body = struct.pack('!BBHHH', 8, 0, 0, 7, 1)
c = ~sum(struct.unpack('!4H', body)) & 0xffff
c = (c & 0xffff) + (c >> 16)
s.sendto(struct.pack('!BBHHH', 8, 0, c, 7, 1), ('127.0.0.1', 0))
while True:
    d = s.recv(64)
    if d[20] == 0: break
print('pong')`;
    assert.equal(await run(a, `python3 -c "${ping.replaceAll('"', '\\"')}"`, 'root'), 'pong\n');
    await run(a, 'nohup python3 -m http.server 80 >/dev/null 2>&1 & sleep 1', 'root');
    const r = await fetch(`http://${a.network?.address}:80/`);
    assert.equal(r.status, 200);
    await r.arrayBuffer();
  });

  test('it cannot make device nodes, nor user namespaces, nor see the host’s ids as its own', async () => {
    const r = await execInSandbox(a.network?.address ?? '', 'mknod /tmp/mem c 1 1', {
      accessToken: a.accessToken,
      user: 'root',
    });
    assert.notEqual(r.exitCode, 0, 'mknod failed');
    assert.match(r.stderr, /Operation not permitted/);
    const u = await execInSandbox(a.network?.address ?? '', 'unshare -U true', {
      accessToken: a.accessToken,
      user: 'root',
    });
    assert.notEqual(u.exitCode, 0, 'no nested user namespace');
    // A file of the host's root (in the template's layers) is root's inside; one of an
    // id outside its range would be nobody's (65534).
    assert.equal(await run(a, 'stat -c %u /usr/bin/sudo', 'root'), '0\n');
  });

  test('a restarted node adopts them with their ranges; a pooled namespace comes with its user namespace', async () => {
    const runtimes = await hostRuntimes();
    await m.close();
    m = await testManager({ home, runtimes, networkPoolSize: 1 });
    assert.deepEqual(m.get(a.id).network?.userns, a.network?.userns, 'the recorded range');
    assert.equal((await run(a, 'cat /proc/self/uid_map', 'root')).trim().split(/\s+/)[1], String(hostId(a)));
    await m.fillNetworkPool();
    const c = await m.create({ memoryMiB: 256, vcpus: 1 });
    assert.ok(c.network?.userns, 'made from the pool, in a user namespace');
    assert.equal(
      (await run(c, 'cat /proc/self/uid_map', 'root')).trim().split(/\s+/).join(' '),
      `0 ${hostId(c)} 65536`,
    );
    for (const s of [a, b]) assert.notEqual(hostId(s), hostId(c));
    await m.kill(c.id);
    await assert.rejects(stat(c.network?.userns?.path ?? ''), /ENOENT/, 'its user namespace is unpinned');
  });

  test('its data directory is opened to the sandboxes’ ids (o+x); a directory above it that aiva does not own is not', async () => {
    assert.equal((await stat(home)).mode & 0o001, 0o001, 'a 0700 data directory became searchable');
    const closed = await tempDir('aiva-closed-');
    await chmod(closed, 0o700);
    const inside = join(closed, 'home');
    await mkdir(inside);
    const runtimes = await hostRuntimes();
    await m.close();
    try {
      await assert.rejects(
        testManager({ home: inside, runtimes }),
        new RegExp(
          `cannot reach the data directory ${inside}: ${closed} \\(mode 0700\\) is not searchable by other users\\. ` +
            `Run \`chmod o\\+x ${closed}\`.*AIVA_USER_NAMESPACES=off`,
        ),
      );
      assert.equal((await stat(closed)).mode & 0o7777, 0o700, 'left as it was');
    } finally {
      m = await testManager({ home, runtimes });
    }
  });
});
