// Checkpoints: a sandbox saved under a name, and independent copies made from it. On
// microVMs the copy resumes the saved processes and memory; containers keep files only.
import assert from 'node:assert/strict';
import { readdir, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConnectError } from '@connectrpc/connect';
import {
  checkHost,
  execInSandbox,
  type SandboxInfo,
  type SandboxManager,
  SandboxSpecError,
} from '../src/index.js';
import { createRuntimes } from '../src/runtime/select.js';
import type { DriverName } from '../src/runtime/types.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { tempDir } from './helpers/temp-dir.js';
import { closeManager, testManager } from './helpers/test-node.js';

const homes = { container: await tempDir('aiva-node-'), 'qemu-microvm': await tempDir('aiva-node-') };
const snapshots = await tempDir('aiva-snapshots-');

const run = (s: SandboxInfo, cmd: string, user = 'root') =>
  execInSandbox(s.network?.address ?? '', cmd, { accessToken: s.accessToken, user });
const out = async (s: SandboxInfo, cmd: string) => (await run(s, cmd)).stdout.trim();

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = Date.now();
  return [await fn(), Date.now() - t0];
}

for (const driver of ['container', 'qemu-microvm'] as const satisfies DriverName[]) {
  const memory = driver === 'qemu-microvm';
  const home = homes[driver];

  describe(`checkpoints of ${driver} sandboxes`, () => {
    let m: SandboxManager;
    let src: SandboxInfo;
    before(async () => {
      m = await testManager({
        defaultDriver: driver,
        home,
        runtimes: createRuntimes(await checkHost(), { vmSnapshotDir: snapshots }),
      });
      src = await m.create({ memoryMiB: 256, vcpus: 1 });
    });
    after(() => closeManager(m));

    test('a copy has the files (and on microVMs the processes) of the moment it was saved', async (t) => {
      await run(src, 'echo saved > /root/state.txt && (nohup sleep 3600 >/dev/null 2>&1 &) && sync');
      const pid = await out(src, 'pgrep -x sleep');
      assert.match(pid, /^\d+$/);
      const [c, saveMs] = await timed(() => m.checkpoint(src.id, 'first'));
      assert.equal(c.memory, memory);
      assert.equal(c.source, src.id);
      assert.ok(c.bytes > 0);
      assert.equal(m.get(src.id).state, 'running', 'the source runs on');
      await run(src, 'echo later > /root/state.txt');
      const [copy, restoreMs] = await timed(() => m.create({ fromCheckpoint: 'first' }));
      t.diagnostic(
        `checkpoint ${saveMs} ms (${(c.bytes / 2 ** 20).toFixed(1)} MiB), create from it ${restoreMs} ms`,
      );
      assert.equal(await out(copy, 'cat /root/state.txt'), 'saved');
      assert.equal(await out(src, 'cat /root/state.txt'), 'later');
      assert.equal(
        await out(copy, 'pgrep -x sleep || true'),
        memory ? pid : '',
        'processes survive only with memory',
      );
      assert.equal(copy.resources.memoryMiB, 256);
      assert.equal(copy.template.hash, src.template.hash);
      // The copy has its own token; the source's (which the saved envd held) is refused.
      assert.notEqual(copy.accessToken, src.accessToken);
      await assert.rejects(
        execInSandbox(copy.network?.address ?? '', 'true', { accessToken: src.accessToken }),
        ConnectError,
      );
      // Independent: a write in the copy is not in the source, and the checkpoint can go.
      await run(copy, 'echo copy > /root/copy.txt');
      assert.equal(await out(src, 'test -e /root/copy.txt; echo $?'), '1');
      assert.equal(await m.removeCheckpoint('first'), true);
      assert.equal(await m.removeCheckpoint('first'), false);
      assert.equal(await out(copy, 'cat /root/copy.txt /root/state.txt'), 'copy\nsaved');
      await m.kill(copy.id);
    });

    test('a paused sandbox is saved and stays paused; two copies are independent of each other', async () => {
      await m.pause(src.id);
      await m.checkpoint(src.id, 'paused');
      // A microVM is saved to disk when paused (suspended): its checkpoint is a copy of that.
      assert.equal(m.get(src.id).state, memory ? 'suspended' : 'paused');
      await m.resume(src.id);
      assert.equal(await out(src, 'cat /root/state.txt'), 'later');
      const [a, b] = await Promise.all([
        m.create({ fromCheckpoint: 'paused' }),
        m.create({ fromCheckpoint: 'paused' }),
      ]);
      // Restored from the same memory, they still draw different random numbers: the
      // host reseeded each one's kernel RNG through /init.
      const random = 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"';
      assert.notEqual(await out(a, random), await out(b, random));
      if (memory) assert.match(await m.consoleLog(a.id), /random number generator reseeded/);
      await run(a, 'echo a > /root/who.txt');
      assert.equal(await out(b, 'test -e /root/who.txt; echo $?'), '1');
      assert.equal(await out(b, 'cat /root/state.txt'), 'later');
      await Promise.all([m.kill(a.id), m.kill(b.id)]);
      assert.equal(await m.removeCheckpoint('paused'), true);
    });

    test('bad names, a taken name, a missing checkpoint and a size that differs are refused cleanly', async () => {
      await assert.rejects(m.checkpoint(src.id, '../x'), SandboxSpecError);
      await m.checkpoint(src.id, 'taken');
      await assert.rejects(m.checkpoint(src.id, 'taken'), /already exists/);
      await assert.rejects(m.create({ fromCheckpoint: 'nothing' }), /no checkpoint nothing/);
      await assert.rejects(m.create({ fromCheckpoint: 'taken', memoryMiB: 512 }), /not 512 MiB/);
      assert.deepEqual(
        (await m.listCheckpoints()).map((c) => c.name),
        ['taken'],
      );
      assert.deepEqual(await readdir(join(home, 'checkpoints', 'tmp')), [], 'no half-written checkpoint');
      // A damaged checkpoint: the create fails with the reason, and leaves nothing.
      await m.checkpoint(src.id, 'damaged');
      const damaged = join(home, 'checkpoints', 'damaged');
      if (memory) await truncate(join(damaged, 'state'), 4096);
      else await rm(join(damaged, 'upper'), { recursive: true });
      await assert.rejects(m.create({ fromCheckpoint: 'damaged' }), /could not start/);
      await m.removeCheckpoint('damaged');
      assert.equal(m.list().length, 1, 'no sandbox was left by the refused creates');
      await m.kill(src.id);
      // The checkpoint outlives its source.
      const copy = await m.create({ fromCheckpoint: 'taken' });
      assert.equal(await out(copy, 'cat /root/state.txt'), 'later');
      await m.kill(copy.id);
      await m.removeCheckpoint('taken');
      await assert.rejects(stat(join(home, 'checkpoints', 'taken')), /ENOENT/);
    });
  });
}

checkHostLeaks();
