// VM templating of the qemu-microvm driver: the first create saves the template VM, every
// create restores a clone of it; clones are independent and re-identified through envd's
// /init; a snapshot that does not restore falls back to a cold boot and is made again.
import assert from 'node:assert/strict';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConnectError } from '@connectrpc/connect';
import { checkHost, execInSandbox, type SandboxInfo, type SandboxManager } from '../src/index.js';
import type { SnapshotManifest } from '../src/runtime/qemu/vm-snapshot.js';
import { createRuntimes } from '../src/runtime/select.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { tempDir } from './helpers/temp-dir.js';
import { closeManager, testManager } from './helpers/test-node.js';

const home = await tempDir('aiva-node-');
const snapshots = await tempDir('aiva-snapshots-');

const run = (s: SandboxInfo, cmd: string, user?: string) =>
  execInSandbox(s.network?.address ?? '', cmd, { accessToken: s.accessToken, user });

const started = (s: SandboxInfo) => s.runtime?.startedFrom;

async function snapshotDirs(): Promise<string[]> {
  return (await readdir(snapshots)).filter((d) => d !== 'locks' && d !== 'tmp');
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = Date.now();
  const v = await fn();
  return [v, Date.now() - t0];
}

describe('qemu-microvm sandboxes restored from a VM snapshot', () => {
  let m: SandboxManager;
  let a: SandboxInfo;
  let b: SandboxInfo;
  const spec = { memoryMiB: 256, vcpus: 1 };

  before(async () => {
    m = await testManager({
      defaultDriver: 'qemu-microvm',
      home,
      runtimes: createRuntimes(await checkHost(), { vmSnapshotDir: snapshots }),
    });
  });
  after(() => closeManager(m));

  test('two first creates make the snapshot once and both come up restored from it', async (t) => {
    const [[x, xMs], [y, yMs]] = await Promise.all([
      timed(() => m.create(spec)),
      timed(() => m.create(spec)),
    ]);
    for (const s of [x, y]) assert.equal(started(s), 'snapshot', JSON.stringify(s.runtime));
    assert.deepEqual(
      [x, y].map((s) => s.runtime?.snapshotBuilt).sort(),
      [false, true],
      'exactly one of the two creates built the snapshot',
    );
    [a, b] = [x, y];
    const dirs = await snapshotDirs();
    assert.equal(dirs.length, 1);
    const manifest = JSON.parse(
      await readFile(join(snapshots, dirs[0] ?? '', 'snapshot.json'), 'utf8'),
    ) as SnapshotManifest;
    assert.equal(manifest.memoryMiB, 256);
    assert.equal(manifest.vcpus, 1);
    assert.deepEqual(await readdir(join(snapshots, 'tmp')), [], 'no build debris');
    // A third create with the snapshot in place: only a restore.
    const [c, cMs] = await timed(() => m.create(spec));
    assert.equal(started(c), 'snapshot');
    assert.equal(c.runtime?.snapshotBuilt, false);
    t.diagnostic(
      `template cold boot to envd ${manifest.bootMs} ms, save ${manifest.saveMs} ms, state ${manifest.stateBytes} B; ` +
        `creates: ${xMs} / ${yMs} ms (build + restore, concurrent), ${cMs} ms (restore only, QEMU restore to envd ${c.runtime?.restoreMs} ms)`,
    );
    await m.kill(c.id);
  });

  test('clones have their own filesystem, processes, clock and envd token', async () => {
    await run(a, 'echo only-in-a > /home/user/mine.txt && (sleep 600 >/dev/null 2>&1 &)');
    assert.equal((await run(a, 'cat /home/user/mine.txt')).stdout, 'only-in-a\n');
    assert.equal((await run(b, 'test -e /home/user/mine.txt; echo $?')).stdout, '1\n');
    assert.match((await run(a, 'pgrep -x sleep || true', 'root')).stdout, /^\d+\n$/);
    assert.equal((await run(b, 'pgrep -x sleep || true', 'root')).stdout, '');
    // The snapshot was taken earlier: /init's timestamp set the clone's clock.
    const guest = Number((await run(b, 'date +%s')).stdout.trim());
    assert.ok(Math.abs(guest - Date.now() / 1000) < 5, `guest clock ${guest} vs host ${Date.now() / 1000}`);
    assert.notEqual(a.accessToken, b.accessToken);
    await assert.rejects(
      execInSandbox(b.network?.address ?? '', 'true', { accessToken: a.accessToken }),
      ConnectError,
      'a’s token does not work in b',
    );
    await assert.rejects(
      execInSandbox(a.network?.address ?? '', 'true', { accessToken: b.accessToken }),
      ConnectError,
      'b’s token does not work in a',
    );
    assert.equal((await run(b, 'echo ok')).stdout, 'ok\n');
  });

  test('a corrupted snapshot falls back to a cold boot, leaves nothing behind and is made again', async (t) => {
    await m.kill(a.id);
    await m.kill(b.id);
    const [dir] = await snapshotDirs();
    assert.ok(dir);
    // Zeros over the guest kernel's memory: the state file still checks out, the restore does not.
    const memory = await open(join(snapshots, dir, 'memory'), 'r+');
    await memory.write(Buffer.alloc(64 * 1024 * 1024), 0, 64 * 1024 * 1024, 16 * 1024 * 1024);
    await memory.close();
    const [c, cMs] = await timed(() => m.create(spec));
    assert.equal(started(c), 'boot', JSON.stringify(c.runtime));
    assert.match(String(c.runtime?.snapshotError), /restore failed/);
    assert.equal((await run(c, 'echo cold')).stdout, 'cold\n');
    assert.deepEqual(await snapshotDirs(), [], 'the bad snapshot is gone');
    const procs = (await readFile(`/proc/${c.runtime?.pid}/cgroup`, 'utf8')).trim();
    assert.ok(procs.includes(c.id), 'QEMU runs in the sandbox cgroup');
    const [d, dMs] = await timed(() => m.create(spec));
    assert.equal(started(d), 'snapshot');
    assert.equal(d.runtime?.snapshotBuilt, true, 'the next create made a new snapshot');
    t.diagnostic(`fallback create ${cMs} ms (${c.runtime?.snapshotError}); rebuild + restore ${dMs} ms`);
    await m.kill(c.id);
    await m.kill(d.id);
    assert.deepEqual(await readdir(join(snapshots, 'tmp')), []);
    assert.deepEqual(
      (await readdir(tmpdir())).filter((f) => f.startsWith('aiva-snapshot-')),
      [],
      'no migration socket directory is left',
    );
    assert.ok((await stat(join(snapshots, (await snapshotDirs())[0] ?? '', 'memory'))).size > 0);
  });
});

checkHostLeaks();
