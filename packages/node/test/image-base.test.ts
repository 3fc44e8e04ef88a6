// Builds the real base template (cached under the data directory between runs) and
// checks what E2B's users expect to find in it.
import assert from 'node:assert/strict';
import { appendFile, cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { dataDir, ImageStore, type ResolvedTemplate, runCommand } from '../src/index.js';
import { RecordingReporter } from './helpers/recipes.js';
import { envdDir, repoImages } from './helpers/repo.js';
import { tempDir } from './helpers/temp-dir.js';

const store = new ImageStore({ home: dataDir(), recipesDir: repoImages, envdDir });
let base: ResolvedTemplate;

/** Runs `cmd` inside the Debian layer of base, in private mount and pid namespaces. */
async function inRootfs(rootfs: string, cmd: string): Promise<string> {
  const { stdout } = await runCommand('unshare', [
    '--mount',
    '--propagation',
    'private',
    '--pid',
    '--fork',
    `--mount-proc=${rootfs}/proc`,
    'chroot',
    rootfs,
    '/bin/sh',
    '-c',
    cmd,
  ]);
  return stdout.trim();
}

/** Reads a file out of the ext4 image without mounting it. */
async function readFromDisk(disk: string, path: string): Promise<string> {
  return (await runCommand('debugfs', ['-R', `cat ${path}`, disk])).stdout;
}

describe('base template', () => {
  before(async () => {
    base = await store.ensureDisk(await store.ensureTemplate('base', { reporter: new RecordingReporter() }));
  });

  test('has the user, sudo and shell of E2B base', async () => {
    const rootfs = base.rootfsLayers[1] ?? '';
    assert.equal(
      await inRootfs(rootfs, 'id user'),
      'uid=1000(user) gid=1000(user) groups=1000(user),27(sudo)',
    );
    assert.equal(await inRootfs(rootfs, 'getent passwd user | cut -d: -f6,7'), '/home/user:/bin/bash');
    assert.equal(await inRootfs(rootfs, 'stat -c %U:%a /home/user'), 'user:755');
    assert.equal(await inRootfs(rootfs, 'runuser -u user -- sudo -n id -u'), '0');
    assert.equal(await inRootfs(rootfs, "runuser -u user -- bash -lc 'umask'"), '0022');
  });

  test('has python, pip, node, npm, git, curl and tput', async () => {
    const rootfs = base.rootfsLayers[1] ?? '';
    assert.match(await inRootfs(rootfs, 'python3 --version'), /^Python 3\.11\./);
    assert.match(await inRootfs(rootfs, 'python --version'), /^Python 3\.11\./);
    assert.match(await inRootfs(rootfs, 'pip --version'), /^pip \d+/);
    assert.match(await inRootfs(rootfs, 'node --version'), /^v18\./);
    assert.match(await inRootfs(rootfs, 'npm --version'), /^\d+\.\d+/);
    assert.match(await inRootfs(rootfs, 'git --version'), /^git version 2\./);
    assert.match(await inRootfs(rootfs, 'git daemon -h 2>&1; true'), /usage: git daemon/);
    assert.match(await inRootfs(rootfs, 'curl --version'), /^curl \d/);
    assert.equal(await inRootfs(rootfs, 'TERM=xterm tput cols'), '80');
    assert.match(await inRootfs(rootfs, 'for c in tini ps ip; do command -v $c; done'), /tini\n.*ps\n.*ip$/);
  });

  test('the disk image holds the Debian layer plus envd and init', async () => {
    const passwd = await readFromDisk(base.disk, '/etc/passwd');
    assert.match(passwd, /^user:x:1000:1000::\/home\/user:\/bin\/bash$/m);
    assert.equal(
      await readFromDisk(base.disk, '/etc/sudoers.d/90-user'),
      'user ALL=(ALL:ALL) NOPASSWD: ALL\n',
    );
    assert.equal(
      await readFromDisk(base.disk, '/usr/local/lib/aiva/envd.js'),
      await readFile(join(envdDir, 'envd.js'), 'utf8'),
    );
    const init = await runCommand('debugfs', ['-R', 'stat /usr/local/lib/aiva/init', base.disk]);
    assert.match(init.stdout, /Mode: {2}0755/);
    assert.match(init.stdout, /User: {5}0 {3}Group: {5}0/);
    // envd's native helper keeps its executable bit; envd.js is plain data.
    const helper = await runCommand('debugfs', ['-R', 'stat /usr/local/lib/aiva/aiva-exec', base.disk]);
    assert.match(helper.stdout, /Mode: {2}0755/);
    const bundle = await runCommand('debugfs', ['-R', 'stat /usr/local/lib/aiva/envd.js', base.disk]);
    assert.match(bundle.stdout, /Mode: {2}0644/);
  });

  test('the disk image is sparse ext4 with extended attributes on by default', async () => {
    const { stdout } = await runCommand('dumpe2fs', ['-h', base.disk]);
    assert.match(stdout, /Filesystem features:.*\bext_attr\b/);
    assert.match(stdout, /Default mount options:.*\buser_xattr\b/);
    const list = await store.list();
    const row = list.find((a) => a.hash === base.hash);
    assert.ok(row, 'base is listed');
    assert.equal(row.apparentBytes, 4096 * 1024 * 1024);
    assert.ok(row.allocatedBytes < row.apparentBytes / 2, `allocated ${row.allocatedBytes} is not sparse`);
    assert.equal(row.current, true);
  });

  test('a second build is a cache hit', async () => {
    const reporter = new RecordingReporter();
    const again = await store.ensureTemplate('base', { reporter });
    assert.equal(again.hash, base.hash);
    assert.deepEqual(reporter.steps, [{ id: 'template', state: 'cached' }]);
  });

  test('a new envd rebuilds only the guest layer and the disk', async () => {
    const dir = await tempDir();
    const otherEnvd = join(dir, 'guest');
    await cp(envdDir, otherEnvd, { recursive: true });
    await appendFile(join(otherEnvd, 'envd.js'), '\n// another envd\n');
    const other = new ImageStore({ home: dataDir(), recipesDir: repoImages, envdDir: otherEnvd });
    const reporter = new RecordingReporter();
    const rebuilt = await other.ensureDisk(await other.ensureTemplate('base', { reporter }), { reporter });
    try {
      assert.notEqual(rebuilt.hash, base.hash);
      assert.equal(rebuilt.layers[1], base.layers[1], 'the Debian layer is shared');
      assert.equal(reporter.stateOf('debian'), 'cached');
      assert.equal(reporter.stateOf('guest'), 'running');
      assert.equal(reporter.stateOf('ext4'), 'running');
      assert.match(await readFromDisk(rebuilt.disk, '/usr/local/lib/aiva/envd.js'), /another envd/);
    } finally {
      const removed = (await other.remove(rebuilt.hash)).map((r) => r.hash);
      // The new image and its own guest layer go (with any other guest layer no image uses
      // in this shared store); the shared Debian layer and base's own layers stay.
      for (const gone of [rebuilt.hash, rebuilt.layers[0]]) assert.ok(removed.includes(gone as string), gone);
      for (const kept of [base.hash, ...base.layers]) assert.ok(!removed.includes(kept), kept);
      assert.ok((await store.list()).some((a) => a.hash === base.layers[1]));
    }
  });
});

describe('guest kernel', () => {
  test('is Debian’s cloud kernel with an initramfs that loads virtio in order', async () => {
    const k = await store.ensureKernel();
    assert.match(k.release, /^\d+\.\d+\.\d+-\d+-cloud-amd64$/);
    // The x86 boot protocol header: "HdrS" at offset 0x202 of a bzImage.
    assert.equal((await readFile(k.kernel)).subarray(0x202, 0x206).toString('latin1'), 'HdrS');
    const names = k.modules.map((m) => m.replace(/^.*\//, '').replace(/\.ko$/, ''));
    for (const [a, b] of [
      ['virtio_ring', 'virtio_mmio'],
      ['virtio', 'virtio_blk'],
      ['failover', 'net_failover'],
      ['net_failover', 'virtio_net'],
    ] as const) {
      assert.ok(names.indexOf(a) >= 0 && names.indexOf(a) < names.indexOf(b), `${a} loads before ${b}`);
    }
    const listing = await runCommand('sh', ['-c', `zcat ${k.initrd} | cpio -t --quiet`]);
    for (const f of ['init', 'bin/busybox', 'modules/load-order', ...k.modules.map((m) => `modules/${m}`)]) {
      assert.ok(listing.stdout.split('\n').includes(f), `initramfs has ${f}`);
    }
  });
});
