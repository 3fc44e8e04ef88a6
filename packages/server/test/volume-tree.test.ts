// A volume's files as the content API (the host's root) touches them, on this host's
// disk: what a sandbox may put in a shared volume — symlinks out of it, a FIFO, a
// directory swapped for a symlink — is never followed or opened; removing a directory
// removes what it holds and nothing a symlink in it names.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ConflictError, InvalidRequestError, NotFoundError } from '../src/services/errors.js';
import { VolumeTree } from '../src/services/volume-tree.js';

const body = (text: string) => Readable.from([Buffer.from(text)]);

/** This process's open descriptors of files under `dir` (one left open keeps a volume's mount busy). */
async function openUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target === dir || target.startsWith(`${dir}/`)) out.push(target);
  }
  return out;
}

describe('a volume’s files through VolumeTree', () => {
  let root: string;
  let outside: string;
  let tree: VolumeTree;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'aiva-volume-tree-'));
    outside = await mkdtemp(join(tmpdir(), 'aiva-volume-outside-'));
    await writeFile(join(outside, 'secret'), 'host secret');
    tree = new VolumeTree(root);
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  test('write, read, list, metadata and remove, with owners and modes', async () => {
    await assert.rejects(tree.writeFile('d/f', body('x'), {}), NotFoundError);
    await tree.makeDir('d', {});
    const f = await tree.writeFile('d/f', body('hello'), { mode: 0o600 });
    assert.deepEqual([f.path, f.size, f.mode, f.uid, f.gid], ['/d/f', 5, 0o600, 1000, 1000]);
    await assert.rejects(tree.writeFile('d/f', body('again'), {}), ConflictError);
    await tree.writeFile('/d/f', body('hi'), { overwrite: true });
    assert.equal(await readFile(join(root, 'd/f'), 'utf8'), 'hi');
    const { stream, size } = await tree.openFile('d/f');
    assert.equal(size, 2);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'hi');
    await tree.makeDir('x/y/z', { parents: true, uid: 5, gid: 6 });
    assert.equal((await lstat(join(root, 'x/y'))).uid, 5);
    assert.deepEqual(
      (await tree.list('/', 3)).map((e) => `${e.path}:${e.type}`),
      ['/d:directory', '/d/f:file', '/x:directory', '/x/y:directory', '/x/y/z:directory'],
    );
    const changed = await tree.updateMetadata('d/f', { uid: 0, mode: 0o644 });
    assert.deepEqual([changed.uid, changed.gid, changed.mode], [0, 1000, 0o644]);
    assert.equal((await tree.info('/')).type, 'directory');
    assert.equal(await tree.bytes(), 2);
    await tree.remove('x');
    await tree.remove('d/f');
    assert.deepEqual(
      (await tree.list('/', 2)).map((e) => e.path),
      ['/d'],
    );
    await assert.rejects(tree.remove('/'), InvalidRequestError);
    await assert.rejects(tree.info('../etc'), InvalidRequestError);
    await assert.rejects(tree.list('/', 0), InvalidRequestError);
    await tree.remove('d');
  });

  test('symlinks a sandbox made are reported, never followed', async () => {
    await symlink(outside, join(root, 'out'));
    await symlink(join(outside, 'secret'), join(root, 'secret'));
    assert.deepEqual(
      (await tree.list('/')).map((e) => [e.name, e.type, e.target]),
      [
        ['out', 'symlink', outside],
        ['secret', 'symlink', join(outside, 'secret')],
      ],
    );
    await assert.rejects(tree.openFile('secret'), /not a regular file/);
    await assert.rejects(tree.openFile('out/secret'), /is a symlink/);
    await assert.rejects(tree.list('out'), /is a symlink/);
    await assert.rejects(tree.writeFile('out/new', body('x'), {}), /is a symlink/);
    await assert.rejects(tree.writeFile('secret', body('x'), { overwrite: true }), /not a regular file/);
    await assert.rejects(tree.makeDir('out/sub', { parents: true }), /is a symlink/);
    await assert.rejects(tree.updateMetadata('secret', { mode: 0o777 }), /is a symlink/);
    await assert.rejects(tree.remove('out/secret'), /is a symlink/);
    assert.equal(existsSync(join(outside, 'new')), false);
    assert.equal(existsSync(join(outside, 'sub')), false);
    assert.equal(await readFile(join(outside, 'secret'), 'utf8'), 'host secret');
    assert.equal((await lstat(join(outside, 'secret'))).mode & 0o777, 0o644);
    assert.deepEqual(await openUnder(root), [], 'the refusals left no descriptor open');

    // A directory holding a symlink out of the volume: removing it removes the link only.
    await mkdir(join(root, 'tree'));
    await symlink(outside, join(root, 'tree', 'link'));
    await tree.remove('tree');
    assert.equal(await readFile(join(outside, 'secret'), 'utf8'), 'host secret');
    await tree.remove('out');
    await tree.remove('secret');
    assert.equal(existsSync(outside), true);
  });

  test('a FIFO is neither opened nor written (no call hangs on it)', async () => {
    execFileSync('mkfifo', [join(root, 'pipe')]);
    await assert.rejects(tree.openFile('pipe'), /not a regular file/);
    await assert.rejects(tree.writeFile('pipe', body('x'), { overwrite: true }), /not a regular file/);
    assert.equal((await tree.info('pipe')).type, 'unknown');
    assert.equal(await tree.bytes(), 0);
    await tree.remove('pipe');
  });
});
