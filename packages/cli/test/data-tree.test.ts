// The trees `aiva data` compares: the local walk, and the listing script it runs in a
// sandbox (run here with this host's GNU find and sha256sum, as the sandbox runs it),
// which must describe the same tree the same way, whatever its names; and the plan made
// from two trees.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import {
  localTree,
  parseRemoteList,
  remoteListScript,
  remotePath,
  type Tree,
} from '../src/data-sync/tree.js';
import { planTransfer } from '../src/data-sync/tree-diff.js';

let work = '';

async function listedByScript(root: string): Promise<Tree> {
  const out = join(work, 'listing');
  await promisify(execFile)('bash', ['-c', remoteListScript(root, out)]);
  return parseRemoteList(await readFile(out, 'utf8'));
}

describe('data trees', () => {
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'aiva-data-tree-'));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('the listing script and the local walk see the same tree, odd names included', async () => {
    const root = join(work, 'tree');
    const names = [
      'plain',
      'with space',
      'new\nline',
      'tab\there',
      'ünïcødé ✓',
      '-dash',
      "quote'd",
      'back\\slash',
    ];
    await mkdir(join(root, 'sub dir'), { recursive: true });
    for (const n of names) await writeFile(join(root, 'sub dir', n), `content of ${n}`);
    await writeFile(join(root, 'exec'), 'x');
    await chmod(join(root, 'exec'), 0o750);
    await writeFile(join(root, 'empty'), '');
    await symlink('../outside/target', join(root, 'link'));
    await symlink('sub dir', join(root, 'dirlink'));
    const local = await localTree(root);
    const remote = await listedByScript(root);
    const sorted = (t: Tree) => [...t.entries.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
    assert.deepEqual(sorted(remote), sorted(local));
    assert.equal(local.entries.size, names.length + 5);
    assert.deepEqual(local.entries.get('link'), { type: 'link', path: 'link', target: '../outside/target' });
    assert.equal((local.entries.get('exec') as { mode: number }).mode, 0o750);
  });

  it('a root that is not there is an empty tree there, and an error here', async () => {
    assert.equal((await listedByScript(join(work, 'nothing'))).entries.size, 0);
    await assert.rejects(localTree(join(work, 'nothing')), /does not exist/);
    assert.equal((await localTree(join(work, 'nothing'), true)).entries.size, 0);
  });

  it('plans only what differs; sync also removes what the source lacks, topmost only', async () => {
    const a = join(work, 'a');
    const b = join(work, 'b');
    for (const r of [a, b]) {
      await mkdir(join(r, 'keep'), { recursive: true });
      await writeFile(join(r, 'keep/same'), 'same');
    }
    await writeFile(join(a, 'changed'), 'new');
    await writeFile(join(b, 'changed'), 'old');
    await writeFile(join(a, 'moded'), 'm');
    await writeFile(join(b, 'moded'), 'm');
    await chmod(join(a, 'moded'), 0o700);
    await writeFile(join(a, 'was-dir'), 'now a file');
    await mkdir(join(b, 'was-dir'));
    await writeFile(join(b, 'was-dir/inner'), 'i');
    await mkdir(join(b, 'extra/deep'), { recursive: true });
    await writeFile(join(b, 'extra/deep/f'), 'f');
    await writeFile(join(b, 'extra-file'), 'e');
    const plan = planTransfer(await localTree(a), await localTree(b), true);
    assert.deepEqual(
      plan.send.map((e) => e.path),
      ['changed', 'moded', 'was-dir'],
    );
    assert.deepEqual(plan.clear, ['was-dir']);
    assert.deepEqual(plan.remove, ['extra', 'extra-file', 'was-dir/inner']);
    assert.deepEqual(
      {
        sent: plan.sent,
        added: plan.added,
        removed: plan.removed,
        unchanged: plan.unchanged,
        bytes: plan.bytes,
      },
      { sent: 3, added: 1, removed: 3, unchanged: 1, bytes: 3 + 1 + 10 },
    );
    const push = planTransfer(await localTree(a), await localTree(b), false);
    assert.deepEqual(push.remove, []);
    assert.equal(push.removed, 0);
  });

  it('remote paths: relative ones are under /data; ".." is refused', () => {
    assert.equal(remotePath('app'), '/data/app');
    assert.equal(remotePath('.'), '/data');
    assert.equal(remotePath('/srv/x/'), '/srv/x');
    assert.equal(remotePath('/'), '/');
    for (const bad of ['..', '../x', 'a/../../b', '/data/..'])
      assert.throws(() => remotePath(bad), /has a "\.\." segment/);
    assert.throws(() => remotePath(''), /empty/);
  });
});
