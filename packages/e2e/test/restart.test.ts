// kill -9 of `aiva up` with sandboxes running, then a new start on the same data
// directory: live sandboxes are adopted and keep working, dead ones are cleaned up,
// nothing is orphaned.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Sandbox } from 'e2b';
import { aivaUp, removeHome, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';

checkHostLeaks();

test('a crashed server’s sandboxes are adopted or cleaned up when it starts again', {
  timeout: 120_000,
}, async (t) => {
  const first = await aivaUp();
  let second: Awaited<ReturnType<typeof aivaUp>> | undefined;
  t.after(async () => {
    await first.crash();
    if (second) assert.equal(await second.stop(), 0, second.output());
    await removeHome(first.home);
  });
  useServer(first);
  const live = await Sandbox.create({ timeoutMs: 600_000 });
  const doomed = await Sandbox.create({ timeoutMs: 600_000 });
  await live.files.write('/home/user/state.txt', 'before the crash');
  const doomedPid = JSON.parse(
    await readFile(join(first.home, 'sandboxes', doomed.sandboxId, 'sandbox.json'), 'utf8'),
  ).runtime.pid as number;

  await first.crash();
  // While the server is down, one sandbox dies.
  process.kill(doomedPid, 'SIGKILL');

  second = await aivaUp([], { home: first.home });
  useServer(second);
  const adopted = await Sandbox.connect(live.sandboxId);
  assert.equal(await adopted.files.read('/home/user/state.txt'), 'before the crash');
  assert.equal((await adopted.commands.run('echo alive')).stdout, 'alive\n');
  assert.equal((await adopted.getInfo()).state, 'running');
  await assert.rejects(Sandbox.getInfo(doomed.sandboxId), /not found/);
  const listed = [];
  const p = Sandbox.list();
  while (p.hasNext) listed.push(...(await p.nextItems()));
  assert.deepEqual(
    listed.map((s) => s.sandboxId),
    [live.sandboxId],
  );
});

test('a sandbox paused without memory stays paused across a crash and restart and boots again from its disk', {
  timeout: 120_000,
}, async (t) => {
  const first = await aivaUp();
  let second: Awaited<ReturnType<typeof aivaUp>> | undefined;
  t.after(async () => {
    await first.crash();
    if (second) assert.equal(await second.stop(), 0, second.output());
    await removeHome(first.home);
  });
  useServer(first);
  const sbx = await Sandbox.create({ timeoutMs: 600_000 });
  await sbx.files.write('/home/user/state.txt', 'before the restart');
  assert.equal(await sbx.pause({ keepMemory: false }), true);
  // A crash: a clean stop of `aiva up` ends its sandboxes, paused ones included.
  await first.crash();

  second = await aivaUp([], { home: first.home });
  useServer(second);
  assert.equal((await Sandbox.getInfo(sbx.sandboxId)).state, 'paused');
  const resumed = await Sandbox.connect(sbx.sandboxId);
  assert.equal(await resumed.files.read('/home/user/state.txt'), 'before the restart');
  assert.equal((await resumed.getInfo()).state, 'running');
});
