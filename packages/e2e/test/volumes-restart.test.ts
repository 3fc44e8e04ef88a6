// Volumes outlive `aiva up` as they outlive sandboxes: after a crash (kill -9) and a new
// start on the same data directory, the volume and its files are there, the sandbox that
// mounted it is adopted still mounting it (so destroying it is still a 409), and a new
// sandbox mounts it by name.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Sandbox, Volume, VolumeError } from 'e2b';
import { type AivaUp, aivaUp, removeHome, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';

checkHostLeaks();

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

  await first.crash();
  second = await aivaUp([], { home: first.home });
  useServer(second);

  assert.deepEqual(
    (await Volume.list()).map((v) => [v.volumeId, v.name]),
    [[vol.volumeId, 'kept-across-restarts']],
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
});
