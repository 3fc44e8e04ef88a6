// The acceptance suite's subset on microVMs: `aiva up --runtime qemu-microvm` (KVM where
// it runs ordinary guests, TCG here) driven by the real e2b SDK with header routing:
// create (restored from the template's snapshot after the first), env vars, commands,
// files, a terminal, a port through the proxy, pause/resume, fork and snapshots, kill;
// a volume that a microVM holds alone as its own disk.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Sandbox, Template, Volume, waitForPort } from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

const server = aivaUpForFile(['--runtime', 'qemu-microvm']);

test('a microVM sandbox through the e2b SDK', { timeout: 600_000 }, async (t) => {
  const [a, b] = await Promise.all([
    Sandbox.create({ envs: { WHO: 'vm' }, timeoutMs: 300_000 }),
    Sandbox.create({ timeoutMs: 300_000 }),
  ]);
  t.after(() => a.kill());
  t.after(() => b.kill());
  assert.equal((await a.commands.run('echo "$WHO $(whoami)"')).stdout, 'vm user\n');
  assert.match((await a.commands.run('uname -r')).stdout, /cloud-amd64/, 'its own kernel');

  await a.files.write('/home/user/site/index.html', 'from a microVM');
  assert.equal(await b.files.exists('/home/user/site/index.html'), false, 'clones have their own disks');
  await a.commands.run('cd /home/user/site && (setsid python3 -m http.server 8000 >/dev/null 2>&1 &)');
  const headers = { 'e2b-sandbox-id': a.sandboxId, 'e2b-sandbox-port': '8000' };
  let res: Response | undefined;
  for (let i = 0; i < 300 && res?.status !== 200; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    res = await fetch(`${server.up.url}/index.html`, { headers });
    if (res.status !== 200) await res.body?.cancel();
  }
  assert.equal(res?.status, 200);
  assert.equal(await res?.text(), 'from a microVM');

  let output = '';
  const pty = await a.pty.create({
    cols: 90,
    rows: 20,
    onData: (d) => {
      output += new TextDecoder().decode(d);
    },
  });
  await a.pty.sendInput(pty.pid, new TextEncoder().encode('tput cols; exit\n'));
  await pty.wait();
  assert.match(output, /\b90\b/);

  // Pause saves the VM to disk and ends QEMU; connect restores it with its processes.
  const sleeper = await a.commands.run('sleep 3600', { background: true });
  assert.equal(await a.pause(), true);
  assert.equal((await a.getInfo()).state, 'paused');
  const resumed = await Sandbox.connect(a.sandboxId);
  assert.equal((await resumed.commands.run(`kill -0 ${sleeper.pid} && echo alive`)).stdout, 'alive\n');
  assert.equal((await fetch(`${server.up.url}/index.html`, { headers })).status, 200);

  // A fork and a sandbox made from a snapshot resume a's memory: its sleeper runs on in
  // them, and its HTTP server answers through the proxy under each one's own id.
  const [fork] = await a.fork({ count: 1, timeoutMs: 300_000 });
  assert.ok(fork instanceof Sandbox, String(fork));
  t.after(() => fork.kill());
  const snapshot = await a.createSnapshot({ name: 'vm-snap' });
  const copy = await Sandbox.create(snapshot.snapshotId, { timeoutMs: 300_000 });
  t.after(() => copy.kill());
  for (const s of [fork, copy]) {
    assert.equal((await s.commands.run(`kill -0 ${sleeper.pid} && echo alive`)).stdout, 'alive\n');
    const own = await fetch(`${server.up.url}/index.html`, {
      headers: { 'e2b-sandbox-id': s.sandboxId, 'e2b-sandbox-port': '8000' },
    });
    assert.equal(await own.text(), 'from a microVM');
  }
  await fork.files.write('/home/user/site/index.html', 'from the fork');
  assert.equal(await a.files.read('/home/user/site/index.html'), 'from a microVM');
  assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId), true);
  assert.equal((await copy.commands.run('echo still')).stdout, 'still\n');

  assert.equal(await b.kill(), true);
  assert.equal(await Sandbox.kill(b.sandboxId), false);
});

test('a microVM paused without memory boots again from its disk', { timeout: 300_000 }, async (t) => {
  // QEMU ends and the VM's qcow2 layer stays (folded over the template's ext4); connect
  // cold-boots it over that disk with the same id and envd token.
  const sbx = await Sandbox.create({ envs: { WHO: 'vm' }, timeoutMs: 300_000 });
  t.after(() => sbx.kill());
  const sleeper = await sbx.commands.run('sleep 600', { background: true });
  // Not synced by the test: the pause has the guest sync its page cache first.
  await sbx.files.write('/home/user/kept.txt', 'on the VM disk');
  assert.equal(await sbx.pause({ keepMemory: false }), true);
  assert.equal((await sbx.getInfo()).state, 'paused');
  const resumed = await Sandbox.connect(sbx.sandboxId);
  assert.equal(await resumed.files.read('/home/user/kept.txt'), 'on the VM disk');
  const cmd = await sbx.commands.run(`tr '\\0' ' ' < /proc/${sleeper.pid}/cmdline 2>/dev/null || true`);
  assert.doesNotMatch(cmd.stdout, /sleep 600/, 'booted afresh: the sleep is gone');
  assert.equal((await sbx.commands.run('echo "$WHO"')).stdout, 'vm\n');
});

test('a template built with the SDK starts on microVMs with its start command already running', {
  timeout: 900_000,
}, async (t) => {
  // The build runs in container build sandboxes; the microVM boots the result once, runs
  // the start command to ready and saves it: every sandbox wakes from that save.
  const app = Template()
    .fromTemplate('base')
    .runCmd('mkdir -p /home/user/www && echo "served by a template" > /home/user/www/index.html')
    .setWorkdir('/home/user/www')
    .setStartCmd('date +%s%N > /tmp/started-at && exec python3 -m http.server 8100', waitForPort(8100));
  await Template.build(app, 'vm-web', { cpuCount: 1, memoryMB: 512 });
  t.after(async () => {
    await fetch(`${server.up.url}/templates/vm-web`, {
      method: 'DELETE',
      headers: { 'x-api-key': server.up.apiKey },
    });
  });
  const a = await Sandbox.create('vm-web', { timeoutMs: 300_000 });
  t.after(() => a.kill());
  const b = await Sandbox.create('vm-web', { timeoutMs: 300_000 });
  t.after(() => b.kill());
  for (const s of [a, b]) {
    const page = await s.commands.run('curl -s http://127.0.0.1:8100/index.html');
    assert.equal(page.stdout, 'served by a template\n');
  }
  // Both woke from one save: the start command ran once, before it.
  const [ta, tb] = await Promise.all([a.files.read('/tmp/started-at'), b.files.read('/tmp/started-at')]);
  assert.equal(ta, tb);
  assert.equal((await a.commands.run('echo "$(whoami) $(pwd)"')).stdout.trim(), 'user /home/user/www');
});

test('a volume in a microVM is its own disk, held alone until the sandbox ends', {
  timeout: 600_000,
}, async (t) => {
  const vol = await Volume.create('vm-data');
  const made: Sandbox[] = [];
  // Its sandboxes first: a volume in use cannot be destroyed.
  t.after(async () => {
    for (const s of made) await s.kill();
    await Volume.destroy(vol.volumeId);
  });
  const image = join(server.up.home, 'volumes', vol.volumeId);
  const mountedOnHost = async () =>
    (await readFile('/proc/self/mounts', 'utf8')).split('\n').some((l) => l.split(' ')[1] === image);
  await vol.writeFile('from-host.txt', 'written before');
  await assert.rejects(
    Sandbox.create({ volumeMounts: { '/my data': vol } }),
    /400.*in a microVM a volume's path has at most 200 characters/,
  );

  const a = await Sandbox.create({ volumeMounts: { '/home/user/data': vol }, timeoutMs: 300_000 });
  made.push(a);
  const seen = await a.commands.run(
    'echo "$(cat data/from-host.txt)" && echo from-vm > data/f && stat -c "%U" data/f && grep " /home/user/data " /proc/mounts',
  );
  assert.match(seen.stdout, /^written before\nuser\n\/dev\/vd[b-z] \/home\/user\/data ext4 /, seen.stdout);
  assert.equal(await mountedOnHost(), false, 'unmounted from the host while the VM has it');

  // Nobody else takes it meanwhile, and nothing copies the VM with it.
  const held = new RegExp(`409.*attached to microVM sandbox ${a.sandboxId}`);
  await assert.rejects(vol.readFile('from-host.txt'), held);
  await assert.rejects(Sandbox.create({ volumeMounts: { '/data': 'vm-data' } }), held);
  await assert.rejects(Volume.destroy(vol.volumeId), /409/);
  await assert.rejects(a.createSnapshot(), /409.*cannot be snapshotted or forked/);

  // A pause saves the VM to disk; the restored VM has the volume again, mounted as it was.
  assert.equal(await a.pause(), true);
  await assert.rejects(vol.readFile('from-host.txt'), held);
  const resumed = await Sandbox.connect(a.sandboxId);
  assert.equal(
    (await resumed.commands.run('echo more >> data/f && sync && cat data/f')).stdout,
    'from-vm\nmore\n',
  );

  assert.equal(await a.kill(), true);
  assert.equal(await mountedOnHost(), true, 'mounted on the host again once the VM has ended');
  assert.equal(await vol.readFile('f'), 'from-vm\nmore\n');
  const b = await Sandbox.create({ volumeMounts: { '/data': 'vm-data' }, timeoutMs: 300_000 });
  made.push(b);
  assert.equal(await b.files.read('/data/f'), 'from-vm\nmore\n');
});
