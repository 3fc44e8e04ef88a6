// Volumes outlive `aiva up` as they outlive sandboxes: after a crash (kill -9) and a new
// start on the same data directory, the volume and its files are there, the sandbox that
// mounted it is adopted still mounting it (so destroying it is still a 409), and a new
// sandbox mounts it by name. A volume's image left mounted by the crash is kept as it is;
// one found unmounted (as after a reboot) is mounted again; a clean stop unmounts them all.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { Sandbox, Volume, VolumeError } from 'e2b';
import { type AivaUp, aivaUp, removeHome, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';

checkHostLeaks();

/** Whether something is mounted at `dir` on the host. */
const mountedAt = async (dir: string) =>
  (await readFile('/proc/self/mounts', 'utf8')).split('\n').some((l) => l.split(' ')[1] === dir);

test('a volume, its files and its mounts survive a crash and restart of aiva up', {
  timeout: 180_000,
}, async (t) => {
  const first = await aivaUp();
  let second: AivaUp | undefined;
  t.after(async () => {
    await first.crash();
    if (second) assert.equal(await second.stop(), 0, second.output());
    await removeHome(first.home);
  });
  useServer(first);
  const vol = await Volume.create('kept-across-restarts');
  const a = await Sandbox.create({ volumeMounts: { '/v': vol }, timeoutMs: 600_000 });
  await a.commands.run('echo before > /v/f');
  const idle = await Volume.create('idle');
  await idle.writeFile('g', 'kept in the image');
  const dirOf = (v: Volume) => join(first.home, 'volumes', v.volumeId);

  await first.crash();
  assert.ok(await mountedAt(dirOf(vol)), 'a crash leaves the volumes mounted');
  // As after a reboot: the idle volume's image is found unmounted.
  await promisify(execFile)('umount', [dirOf(idle)]);
  second = await aivaUp([], { home: first.home });
  useServer(second);
  assert.ok(await mountedAt(dirOf(vol)));
  assert.ok(await mountedAt(dirOf(idle)), 'the restarted node mounted the image again');
  assert.equal(await (await Volume.connect(idle.volumeId)).readFile('g'), 'kept in the image');

  assert.deepEqual(
    (await Volume.list()).map((v) => [v.volumeId, v.name]),
    [
      [vol.volumeId, 'kept-across-restarts'],
      [idle.volumeId, 'idle'],
    ],
  );
  const again = await Volume.connect(vol.volumeId);
  assert.equal(await again.readFile('f'), 'before\n');
  const adopted = await Sandbox.connect(a.sandboxId);
  await adopted.commands.run('echo after >> /v/f');
  await assert.rejects(Volume.destroy(vol.volumeId), (e: unknown) => {
    assert.ok(e instanceof VolumeError, String(e));
    assert.match(e.message, new RegExp(`^409: .*in use by sandbox ${a.sandboxId}`));
    return true;
  });
  const b = await Sandbox.create({ volumeMounts: { '/data': 'kept-across-restarts' } });
  assert.equal(await b.files.read('/data/f'), 'before\nafter\n');
  await b.kill();
  await adopted.kill();
  assert.equal(await Volume.destroy(vol.volumeId), true);
  assert.equal(await mountedAt(dirOf(vol)), false, 'a destroyed volume is unmounted');
  // A clean stop unmounts the volumes it leaves (the leak check sees no mount or loop device).
  assert.equal(await second.stop(), 0, second.output());
  assert.equal(await mountedAt(dirOf(idle)), false);
});
