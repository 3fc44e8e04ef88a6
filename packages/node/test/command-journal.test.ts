// The node agent's record of its commands, without a server: a command seen before is
// answered from it, one a killed agent left running is answered INTERRUPTED, and the
// agent's retries back off within their bounds.
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { CommandJournal } from '../src/agent/command-journal.js';
import { backoffMs } from '../src/agent/node-agent.js';
import { tempDir } from './helpers/temp-dir.js';

const ID = 'c0ffee00-0000-4000-8000-000000000001';

test('a done command is answered from the journal, across a reopen', async () => {
  const dir = join(await tempDir(), 'journal');
  const j = new CommandJournal(dir);
  assert.deepEqual(await j.open(), []);
  assert.equal(await j.get(ID), undefined);
  await j.started(ID, 'sandbox.kill');
  const outcome = { commandId: ID, ok: true as const, data: { existed: true } };
  await j.done(ID, 'sandbox.kill', outcome);
  const again = new CommandJournal(dir);
  assert.deepEqual(await again.open(), [], 'a done command is not re-sent on open');
  assert.deepEqual(await again.get(ID), { state: 'done', kind: 'sandbox.kill', outcome });
});

test('a command a killed agent left running is answered INTERRUPTED; debris goes', async () => {
  const dir = join(await tempDir(), 'journal');
  const j = new CommandJournal(dir);
  await j.open();
  await j.started(ID, 'sandbox.create');
  await writeFile(join(dir, 'half-written.json.tmp'), '{');
  const unsent = await new CommandJournal(dir).open();
  assert.equal(unsent.length, 1);
  assert.deepEqual(unsent[0], {
    commandId: ID,
    ok: false,
    error: { code: 'INTERRUPTED', message: 'the node agent restarted while the command ran' },
  });
  assert.equal((await j.get(ID))?.state, 'done');
  assert.deepEqual(await readdir(dir), [`${ID}.json`]);
});

test('retries back off with full jitter from 250 ms up to 30 s', () => {
  for (let attempt = 0; attempt < 20; attempt++)
    for (let i = 0; i < 50; i++) {
      const ms = backoffMs(attempt);
      assert.ok(ms >= 0 && ms <= Math.min(30_000, 250 * 2 ** attempt), `attempt ${attempt}: ${ms}`);
    }
  const late = Array.from({ length: 200 }, () => backoffMs(30));
  assert.ok(Math.max(...late) > 15_000, 'late attempts wait up to the cap');
});
