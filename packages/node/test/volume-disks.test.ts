// A volume's image on the host, for real (mkfs.ext4, loop mounts): made sparse and
// mounted with its root owned by the sandbox's user and nothing in it; full at its size
// (ENOSPC, the image no bigger on disk than that) and usable again once files go;
// unmounted at a node's close unless a sandbox still mounts it, mounted again by the next
// node with its files; a volume of before (a plain directory) converted with its files
// and owners; removed with no mount, loop device or file left.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runCommand } from '../src/host/command.js';
import { mountedUnder } from '../src/host/mounts.js';
import { VolumeDisks } from '../src/sandbox/volume-disks.js';

const A = `vol${'a'.repeat(20)}`;
const B = `vol${'b'.repeat(20)}`;
const OLD = `vol${'c'.repeat(20)}`;
let home: string;
let disks: VolumeDisks;

/** Loop devices whose backing file is under `home`. */
async function loopsUnder(dir: string): Promise<string[]> {
  const { stdout } = await runCommand('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE']);
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(`${dir}/`));
}

before(async () => {
  home = await mkdtemp(join(tmpdir(), 'aiva-volume-disks-'));
  disks = new VolumeDisks(home, { defaultSizeMiB: 16 });
});
after(async () => {
  for (const id of [A, B, OLD]) await disks.remove(id);
  assert.deepEqual(await mountedUnder(join(home, 'volumes')), []);
  assert.deepEqual(await loopsUnder(home), []);
  await rm(home, { recursive: true, force: true });
});

test('a new volume is a sparse image of its size, mounted, empty, its root the sandbox user’s', async () => {
  await disks.create(A, 32);
  assert.equal(await disks.isMounted(A), true);
  assert.equal(await disks.sizeOf(A), 32 * 1024 * 1024);
  const image = await stat(disks.imageOf(A));
  assert.ok(image.blocks * 512 < 32 * 1024 * 1024, 'the image is sparse');
  const root = await stat(disks.mountPointOf(A));
  assert.deepEqual([root.uid, root.gid, root.mode & 0o7777], [1000, 1000, 0o755]);
  assert.deepEqual(await readdir(disks.mountPointOf(A)), [], 'no lost+found');
  const options = (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .find((l) => l.split(' ')[1] === disks.mountPointOf(A));
  assert.match(options ?? '', / ext4 [^ ]*\bnosuid\b/);
  assert.match(options ?? '', / ext4 [^ ]*\bnodev\b/);
  await assert.rejects(disks.create(A, 32), /EEXIST/, 'an id is made once');
  await assert.rejects(disks.create(B, 4), /from 8 to/);
  await assert.rejects(disks.create('../x', 32), /not a volume id/);
  assert.equal(existsSync(disks.imageOf(B)), false, 'a refused create makes nothing');
});

test('a full volume is ENOSPC for the writer, the host gives it no more than its size, and it works again once emptied', async () => {
  const big = join(disks.mountPointOf(A), 'big');
  await assert.rejects(
    runCommand('dd', ['if=/dev/zero', `of=${big}`, 'bs=1M', 'count=100']),
    /No space left on device/,
  );
  const { stdout } = await runCommand('du', ['-s', '-B1', disks.imageOf(A)]);
  assert.ok(Number(stdout.split('\t')[0]) <= 32 * 1024 * 1024, stdout);
  await rm(big);
  await writeFile(join(disks.mountPointOf(A), 'small'), 'still works');
});

test('a node’s close unmounts volumes no sandbox mounts; the next node mounts them again with their files', async () => {
  await disks.create(B, 8);
  await writeFile(join(disks.mountPointOf(B), 'kept'), 'b');
  await disks.release(new Set([A]));
  assert.equal(await disks.isMounted(A), true, 'a volume a remaining sandbox mounts stays');
  assert.equal(await disks.isMounted(B), false);
  assert.deepEqual(await readdir(disks.mountPointOf(B)), [], 'its files are in its image only');
  const next = new VolumeDisks(home);
  assert.deepEqual(await next.adopt(), { mounted: [B], converted: [] });
  assert.equal(await readFile(join(disks.mountPointOf(B), 'kept'), 'utf8'), 'b');
  assert.equal(await readFile(join(disks.mountPointOf(A), 'small'), 'utf8'), 'still works');
  assert.deepEqual(await next.adopt(), { mounted: [], converted: [] }, 'adopting twice changes nothing');
  // Nor through a data directory reached by a symlink: the mount table names real paths.
  const linked = `${home}-link`;
  await symlink(home, linked);
  try {
    const viaLink = new VolumeDisks(linked);
    assert.equal(await viaLink.isMounted(B), true);
    assert.deepEqual(await viaLink.adopt(), { mounted: [], converted: [] });
    await viaLink.release(new Set([A]));
    assert.equal(await disks.isMounted(B), false, 'released through the link too');
    assert.deepEqual(await viaLink.adopt(), { mounted: [B], converted: [] });
  } finally {
    await rm(linked);
  }
});

test('a volume a microVM held when the node stopped stays its disk: the next node does not mount it', async () => {
  const held = new VolumeDisks(home);
  await held.hold(B, 'vm1');
  assert.equal(await held.isMounted(B), false);
  const next = new VolumeDisks(home);
  assert.deepEqual(await next.adopt(new Map([[B, 'vm1']])), { mounted: [], converted: [] });
  assert.equal(await next.isMounted(B), false, 'not mounted under the running VM');
  assert.equal(next.holderOf(B), 'vm1');
  await next.letGo(B, 'vm1');
  assert.equal(await next.isMounted(B), true, 'mounted once the VM has ended');
  assert.equal(await readFile(join(next.mountPointOf(B), 'kept'), 'utf8'), 'b');
});

test('a volume of before (a plain directory) becomes an image holding its files and owners', async () => {
  const dir = join(home, 'volumes', OLD);
  await mkdir(join(dir, 'sub'), { recursive: true });
  await writeFile(join(dir, 'sub', 'f'), 'old data');
  await chown(join(dir, 'sub', 'f'), 1000, 1000);
  // What a conversion cut short leaves is taken away.
  await writeFile(join(home, 'volumes', `${OLD}.converting`), 'half');
  const next = new VolumeDisks(home, { defaultSizeMiB: 16 });
  assert.deepEqual(await next.adopt(), { mounted: [], converted: [OLD] });
  assert.equal(await next.isMounted(OLD), true);
  assert.equal(await next.sizeOf(OLD), 16 * 1024 * 1024);
  const f = await stat(join(dir, 'sub', 'f'));
  assert.equal(f.uid, 1000);
  assert.equal(await readFile(join(dir, 'sub', 'f'), 'utf8'), 'old data');
  assert.deepEqual((await readdir(dir)).sort(), ['sub']);
  assert.deepEqual((await readdir(join(home, 'volumes'))).sort(), [
    A,
    `${A}.ext4`,
    B,
    `${B}.ext4`,
    OLD,
    `${OLD}.ext4`,
  ]);
});

test('removing a volume leaves no mount, loop device or file', async () => {
  await disks.remove(OLD);
  assert.equal(existsSync(disks.imageOf(OLD)), false);
  assert.equal(existsSync(disks.mountPointOf(OLD)), false);
  assert.equal(
    (await loopsUnder(home)).some((l) => l.includes(OLD)),
    false,
  );
  await disks.remove(OLD);
});
