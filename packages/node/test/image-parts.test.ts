// The pure parts of the image builder: recipe validation, module ordering, progress
// parsing, and the build lock.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AptProgress, setupScript } from '../src/image/debian-rootfs.js';
import { moduleLoadOrder } from '../src/image/guest-kernel.js';
import { contentHash, loadRecipe } from '../src/image/recipe.js';
import { lockFile, RecipeError } from '../src/index.js';
import { repoImages } from './helpers/repo.js';
import { tempDir } from './helpers/temp-dir.js';

describe('recipes', () => {
  test('the base recipe loads and hashes the same whatever its key order', async () => {
    const r = await loadRecipe(repoImages, 'base');
    assert.equal(r.user.name, 'user');
    const reversed = Object.fromEntries(Object.entries(r).reverse());
    assert.equal(contentHash(reversed), contentHash(r));
    assert.notEqual(contentHash({ ...r, packages: [...r.packages, 'vim'] }), contentHash(r));
  });

  test('bad recipes are refused with the reason', async () => {
    const dir = await tempDir();
    await assert.rejects(loadRecipe(dir, 'nothere'), /unknown template "nothere"/);
    await assert.rejects(loadRecipe(dir, '../etc'), RecipeError);
    await mkdir(join(dir, 'bad'));
    await writeFile(join(dir, 'bad', 'recipe.json'), '{"name": "bad",');
    await assert.rejects(loadRecipe(dir, 'bad'), /not valid JSON/);
    await writeFile(join(dir, 'bad', 'recipe.json'), JSON.stringify({ name: 'bad', packages: 'bash' }));
    await assert.rejects(loadRecipe(dir, 'bad'), /invalid recipe: .*\/packages/);
  });

  test('a recipe may have a start command with its ready check (code-interpreter-v1 does)', async () => {
    const r = await loadRecipe(repoImages, 'code-interpreter-v1');
    assert.equal(r.start?.cmd, '/usr/local/lib/aiva/code-interpreter/start');
    assert.match(r.start?.ready ?? '', /49999\/health/);
    assert.equal((await loadRecipe(repoImages, 'base')).start, undefined);
    assert.equal(
      (await loadRecipe(repoImages, 'code-interpreter')).name,
      'code-interpreter-v1',
      'by its alias',
    );
    const dir = await tempDir();
    await mkdir(join(dir, 'bad'));
    await writeFile(
      join(dir, 'bad', 'recipe.json'),
      JSON.stringify({ ...r, name: 'bad', start: { ready: 'true' } }),
    );
    await assert.rejects(loadRecipe(dir, 'bad'), /invalid recipe: .*\/start/);
  });

  test("a recipe that extends another has its packages and run commands after the parent's", async () => {
    const base = await loadRecipe(repoImages, 'base');
    const ci = await loadRecipe(repoImages, 'code-interpreter-v1');
    assert.deepEqual(ci.debian, base.debian);
    assert.deepEqual(ci.user, base.user);
    assert.ok(base.packages.every((p) => ci.packages.includes(p)));
    assert.ok(ci.packages.includes('python3-ipykernel'));
    assert.deepEqual(ci.run.slice(0, base.run.length), base.run);
    assert.equal(ci.defaults.memoryMiB, 2048);
    assert.equal(ci.defaults.workdir, base.defaults.workdir);
    const dir = await tempDir();
    const write = async (name: string, recipe: object) => {
      await mkdir(join(dir, name), { recursive: true });
      await writeFile(join(dir, name, 'recipe.json'), JSON.stringify(recipe));
    };
    await write('a', { name: 'a', description: 'a', extends: 'b' });
    await write('b', { name: 'b', description: 'b', extends: 'a' });
    await assert.rejects(loadRecipe(dir, 'a'), /extends "a", which extends it back/);
    await write('c', { name: 'c', description: 'c', extends: 'nothere' });
    await assert.rejects(loadRecipe(dir, 'c'), /unknown template "nothere"/);
    const files = (await loadRecipe(repoImages, 'code-interpreter-v1')).files ?? {};
    assert.equal(
      files['/usr/local/lib/aiva-js-kernel/package-lock.json'],
      'code-interpreter-v1/js-kernel/package-lock.json',
      "a recipe's files are found beside it",
    );
    assert.equal((await loadRecipe(repoImages, 'base')).files, undefined);
    await write('base', await loadRecipe(repoImages, 'base'));
    await write('e', {
      name: 'e',
      description: 'e',
      extends: 'base',
      files: { '/x': '../base/recipe.json' },
    });
    await assert.rejects(loadRecipe(dir, 'e'), /outside its directory|invalid recipe/);
    await write('d', { name: 'd', description: 'd' });
    await assert.rejects(loadRecipe(dir, 'd'), /invalid recipe: /, 'without extends, every part is needed');
  });

  test('the setup script quotes the recipe commands and grants sudo', async () => {
    const r = await loadRecipe(repoImages, 'base');
    const script = setupScript({ ...r, run: ["echo 'it''s' > /x"] });
    assert.match(script, /^useradd --create-home --uid 1000 .* user$/m);
    assert.match(script, /NOPASSWD: ALL/);
    assert.ok(script.includes(`printf '+ %s\\n' 'echo '"'"'it'"'"''"'"'s'"'"' > /x'`));
  });
});

describe('initramfs modules', () => {
  const dep = [
    'kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko',
    'kernel/drivers/virtio/virtio.ko:',
    'kernel/drivers/virtio/virtio_ring.ko:',
    'kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko',
    'kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko',
    'kernel/net/core/failover.ko:',
    'kernel/a.ko: kernel/b.ko',
    'kernel/b.ko: kernel/a.ko',
  ].join('\n');

  test('dependencies load first and each module once', () => {
    assert.deepEqual(
      moduleLoadOrder(dep, ['virtio_net', 'virtio-mmio']).map((m) => m.replace(/^.*\//, '')),
      ['failover.ko', 'net_failover.ko', 'virtio_ring.ko', 'virtio.ko', 'virtio_net.ko', 'virtio_mmio.ko'],
    );
  });

  test('a missing module or a cycle is an error', () => {
    assert.throws(() => moduleLoadOrder(dep, ['ext4']), /ext4 is not in this kernel/);
    assert.throws(() => moduleLoadOrder(dep, ['a']), /cycle/);
  });
});

test('apt progress counts packages set up against packages to install', () => {
  const p = new AptProgress();
  for (const line of [
    'I: downloading packages with apt...',
    '0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.',
    'Setting up a (1) ...',
    'Setting up b (1) ...',
    'I: installing remaining packages inside the chroot...',
    '0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.',
    'Setting up c (1) ...',
  ]) {
    p.feed(line);
  }
  assert.deepEqual([p.done, p.total, p.phase], [3, 5, 'installing remaining packages inside the chroot']);
});

test('a file lock excludes a second holder until released', async () => {
  const path = join(await tempDir(), 'x.lock');
  const first = await lockFile(path);
  let waited = false;
  let acquired = false;
  const second = lockFile(path, { onWait: () => (waited = true) }).then((l) => {
    acquired = true;
    return l;
  });
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(acquired, false);
  assert.equal(waited, true);
  await first.release();
  await (await second).release();
  assert.equal(acquired, true);
  const aborted = new AbortController();
  const held = await lockFile(path);
  const third = lockFile(path, { signal: aborted.signal });
  aborted.abort();
  await assert.rejects(third, /interrupted/);
  await held.release();
});
