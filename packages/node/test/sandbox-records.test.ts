// The sandbox manager's pure parts: the state table, the records on disk (schema,
// versions, upgrades of older records) and the checkpoint store's bookkeeping.
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { RecordError, type SandboxRecord, SandboxSpecError, SandboxStateError } from '../src/index.js';
import { CheckpointStore } from '../src/sandbox/checkpoint-store.js';
import { readCheckpointRecord, readSandboxRecord, writeRecord } from '../src/sandbox/sandbox-record.js';
import { SandboxRecords } from '../src/sandbox/sandbox-records.js';
import { allows, mustAllow, nextState, SANDBOX_STATES } from '../src/sandbox/sandbox-state.js';
import { tempDir } from './helpers/temp-dir.js';

const silent = pino({ level: 'silent' });

function record(overrides: Partial<SandboxRecord> = {}): SandboxRecord {
  return {
    version: 1,
    id: 'abc123',
    driver: 'container',
    template: { name: 'base', hash: 'f'.repeat(64) },
    resources: { vcpus: 1, memoryMiB: 256, diskMiB: 4096 },
    state: 'running',
    slot: 3,
    hostname: 'sandbox',
    accessToken: 'secret',
    createdAt: new Date().toISOString(),
    runtime: { driver: 'container', pid: 42, pidStartTime: 7, oci: 'runc' },
    ...overrides,
  };
}

describe('the state table', () => {
  test('transitions go where the table says, and nowhere else', () => {
    assert.equal(nextState('x', 'creating', 'ready'), 'running');
    assert.equal(nextState('x', 'running', 'pause'), 'paused');
    assert.equal(nextState('x', 'paused', 'suspend'), 'suspended');
    assert.equal(nextState('x', 'suspended', 'resume'), 'running');
    assert.equal(nextState('x', 'paused', 'resume'), 'running');
    assert.equal(nextState('x', 'running', 'shelve'), 'shelved', 'a pause without memory');
    assert.equal(nextState('x', 'paused', 'shelve'), 'shelved', "a resume with memory: false's first step");
    assert.equal(nextState('x', 'shelved', 'resume'), 'running');
    assert.equal(nextState('x', 'shelved', 'stop'), 'stopping');
    assert.throws(() => nextState('x', 'shelved', 'pause'), /is shelved: cannot pause it/);
    assert.throws(() => nextState('x', 'suspended', 'shelve'), SandboxStateError);
    assert.equal(nextState('x', 'stopping', 'stop'), 'stopping', 'an interrupted end is taken up again');
    assert.throws(() => nextState('x', 'paused', 'pause'), SandboxStateError);
    assert.throws(() => nextState('x', 'running', 'suspend'), /is running: cannot suspend it/);
    assert.throws(() => nextState('x', 'stopped', 'stop'), SandboxStateError);
    for (const s of SANDBOX_STATES) assert.equal(allows(s, 'fail'), s !== 'stopped' && s !== 'error');
  });

  test('operations that keep the state are allowed only where they make sense', () => {
    assert.ok(allows('suspended', 'checkpoint'));
    assert.ok(!allows('creating', 'checkpoint'));
    assert.ok(!allows('suspended', 'measure'), 'a suspended sandbox has no process');
    assert.ok(allows('suspended', 'change the network policy of'));
    assert.ok(!allows('shelved', 'measure'), 'a shelved sandbox has no process');
    assert.ok(allows('shelved', 'change the network policy of'), 'its network stays');
    assert.throws(() => mustAllow('x', 'paused', 're-initialise'), /is paused: cannot re-initialise it/);
  });
});

describe('sandbox records', () => {
  test('a record is written for root only and read back as it was', async () => {
    const dir = await tempDir();
    const file = join(dir, 'sandbox.json');
    const r = record();
    await writeRecord(file, r);
    assert.equal((await stat(file)).mode & 0o777, 0o600, 'it holds the envd token');
    assert.deepEqual(await readSandboxRecord(file), r);
    assert.equal(await readSandboxRecord(join(dir, 'none.json')), undefined);
  });

  test('an unversioned record is upgraded: suspended is a state, not a flag', async () => {
    const dir = await tempDir();
    const file = join(dir, 'sandbox.json');
    const { version: _v, ...old } = record({ state: 'paused', runtime: undefined });
    await writeFile(file, JSON.stringify({ ...old, suspended: true }));
    const r = await readSandboxRecord(file);
    assert.equal(r?.version, 1);
    assert.equal(r?.state, 'suspended');
    assert.equal('suspended' in (r ?? {}), false);
    await writeFile(file, JSON.stringify({ ...old, state: 'running', suspended: false }));
    assert.equal((await readSandboxRecord(file))?.state, 'running');
  });

  test('a damaged or foreign record is refused with what is wrong', async () => {
    const dir = await tempDir();
    const file = join(dir, 'sandbox.json');
    await writeFile(file, '{"id": ');
    await assert.rejects(readSandboxRecord(file), /is not JSON/);
    await writeFile(file, JSON.stringify(record({ state: 'dancing' as never })));
    await assert.rejects(readSandboxRecord(file), RecordError);
    await writeFile(file, JSON.stringify({ ...record(), version: 99 }));
    await assert.rejects(readSandboxRecord(file), /\/version/);
  });

  test('transitions are saved and heard; a refused one changes nothing', async () => {
    const dir = await tempDir();
    const records = new SandboxRecords(dir, silent);
    const r = record();
    await mkdir(records.dirOf(r.id));
    records.add(r);
    const heard: string[] = [];
    records.on('state', (s) => heard.push(s.state));
    await records.transition(r, 'pause');
    assert.equal((await readSandboxRecord(join(records.dirOf(r.id), 'sandbox.json')))?.state, 'paused');
    await assert.rejects(records.transition(r, 'pause'), SandboxStateError);
    assert.equal(r.state, 'paused');
    assert.deepEqual(heard, ['paused']);
    await writeFile(join(dir, 'junk'), 'not a sandbox');
    const loaded = await records.load();
    assert.deepEqual(loaded.map((l) => [l.id, l.record?.state]).sort(), [
      ['abc123', 'paused'],
      ['junk', undefined],
    ]);
  });
});

describe('the checkpoint store', () => {
  test('a checkpoint is written whole or not at all', async () => {
    const dir = await tempDir();
    const store = new CheckpointStore(dir, silent);
    const fields = {
      source: 'abc123',
      driver: 'container' as const,
      template: { name: 'base', hash: 'f'.repeat(64) },
      resources: { vcpus: 1, memoryMiB: 256, diskMiB: 4096 },
      memory: false,
    };
    await assert.rejects(
      store.write('half', async (work) => {
        await writeFile(join(work, 'part'), 'x');
        throw new Error('the driver failed');
      }),
      /the driver failed/,
    );
    assert.deepEqual(await store.list(), []);
    const c = await store.write('one', async (work) => {
      await writeFile(join(work, 'upper'), 'files');
      return fields;
    });
    assert.equal(c.version, 1);
    assert.ok(c.bytes > 0);
    assert.deepEqual(await readCheckpointRecord(join(dir, 'one', 'checkpoint.json')), c);
    assert.equal(await readFile(join(dir, 'one', 'upper'), 'utf8'), 'files');
    await assert.rejects(
      store.write('one', async () => fields),
      /already exists/,
    );
    await assert.rejects(
      store.write('Bad Name', async () => fields),
      SandboxSpecError,
    );
    await assert.rejects(store.get('nothere'), /there is no checkpoint nothere/);
    assert.equal(await store.remove('nothere'), false);
    assert.equal(await store.remove('../etc'), false);
    // A damaged record counts as no checkpoint, and is not listed.
    await mkdir(join(dir, 'broken'));
    await writeFile(join(dir, 'broken', 'checkpoint.json'), '{}');
    assert.deepEqual(
      (await store.list()).map((x) => x.name),
      ['one'],
    );
    assert.equal(await store.remove('one'), true);
    assert.deepEqual(await store.list(), []);
  });
});
