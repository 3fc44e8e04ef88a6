// Forks and persistent snapshots through the real e2b SDK (containers: a copy has the
// source's files; microVM copies keep processes too, see e2b-sdk-microvm.test.ts).
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Sandbox, SandboxError } from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

const server = aivaUpForFile();

async function allSnapshots(opts: Parameters<typeof Sandbox.listSnapshots>[0] = {}) {
  const pages = Sandbox.listSnapshots(opts);
  const all = [];
  while (pages.hasNext) all.push(...(await pages.nextItems()));
  return all;
}

async function api(method: string, path: string, body?: unknown, apiKey = server.up.apiKey) {
  const res = await fetch(`${server.up.url}${path}`, {
    method,
    headers: { 'x-api-key': apiKey, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json().catch(() => undefined)) as Record<string, unknown> };
}

const checkpointsOnNode = async () =>
  (await readdir(join(server.up.home, 'checkpoints')).catch(() => [] as string[])).filter((d) => d !== 'tmp');

describe('forks and snapshots of container sandboxes', () => {
  test('a snapshot makes sandboxes with the files of its moment, and outlives its source', async (t) => {
    const src = await Sandbox.create({ metadata: { role: 'source' } });
    t.after(() => src.kill());
    await src.files.write('/home/user/state.txt', 'one');
    const snap = await src.createSnapshot({ name: 'my-snap' });
    assert.deepEqual(snap, { snapshotId: 'my-snap:default', names: ['my-snap:default'] });
    const unnamed = await Sandbox.createSnapshot(src.sandboxId);
    assert.match(unnamed.snapshotId, /^[a-z0-9]+:default$/);
    assert.deepEqual(unnamed.names, []);
    await src.files.write('/home/user/state.txt', 'two');

    const copy = await Sandbox.create(snap.snapshotId);
    t.after(() => copy.kill());
    assert.equal(await copy.files.read('/home/user/state.txt'), 'one');
    assert.equal((await copy.getInfo()).templateId, 'base');
    await copy.files.write('/home/user/copy.txt', 'mine');
    assert.equal(await src.files.exists('/home/user/copy.txt'), false);
    // By name without the tag too.
    const byName = await Sandbox.create('my-snap');
    assert.equal(await byName.files.read('/home/user/state.txt'), 'one');
    await byName.kill();

    const listed = await allSnapshots({ sandboxId: src.sandboxId });
    assert.deepEqual(
      listed.map((s) => s.snapshotId),
      [unnamed.snapshotId, snap.snapshotId],
      'newest first',
    );
    const paged = Sandbox.listSnapshots({ limit: 1 });
    assert.equal((await paged.nextItems()).length, 1);
    assert.equal(paged.hasNext, true, 'X-Next-Token leads to the second page');
    assert.deepEqual(
      (await paged.nextItems()).map((s) => s.snapshotId),
      [snap.snapshotId],
    );
    assert.deepEqual(
      (await allSnapshots({ name: 'my-snap' })).map((s) => s.snapshotId),
      [snap.snapshotId],
    );

    // Deleting the snapshot leaves the sandbox made from it running; its source too.
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), true);
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), false);
    assert.equal(await copy.files.read('/home/user/state.txt'), 'one');
    await assert.rejects(Sandbox.create(snap.snapshotId), /400: template "my-snap:default" does not exist/);
    // The unnamed one outlives the sandbox it was taken from.
    await src.kill();
    const late = await Sandbox.create(unnamed.snapshotId);
    assert.equal(await late.files.read('/home/user/state.txt'), 'one');
    await late.kill();
    assert.equal(await Sandbox.deleteSnapshot(unnamed.snapshotId), true);
    assert.deepEqual(await allSnapshots(), []);
    assert.deepEqual(await checkpointsOnNode(), [], 'no checkpoint is left on the node');
  });

  test('fork makes N independent sandboxes from one save; the source runs on', async (t) => {
    const src = await Sandbox.create({ metadata: { role: 'source' }, timeoutMs: 120_000 });
    t.after(() => src.kill());
    await src.files.write('/home/user/state.txt', 'forked');
    const before = await src.getInfo();
    const forks = await src.fork({ count: 3, timeoutMs: 60_000 });
    assert.equal(forks.length, 3);
    const sandboxes = forks.map((f) => {
      assert.ok(f instanceof Sandbox, String(f));
      t.after(() => f.kill());
      return f;
    });
    assert.equal(new Set(sandboxes.map((s) => s.sandboxId)).size, 3);
    await Promise.all(
      sandboxes.map(async (s, i) => {
        assert.equal(await s.files.read('/home/user/state.txt'), 'forked');
        await s.files.write('/home/user/who.txt', String(i));
        const info = await s.getInfo();
        assert.deepEqual(info.metadata, { role: 'source' });
        assert.ok(info.endAt.getTime() - Date.now() <= 60_000);
      }),
    );
    assert.equal(await sandboxes[0]?.files.read('/home/user/who.txt'), '0');
    assert.equal(await src.files.exists('/home/user/who.txt'), false);
    const after = await src.getInfo();
    assert.equal(after.state, 'running');
    assert.equal(after.endAt.getTime(), before.endAt.getTime(), 'the source keeps its end time');
    assert.deepEqual(await checkpointsOnNode(), [], 'the fork’s checkpoint is gone once the forks run');
  });

  test('bad requests: unknown sandbox 404, bad count or name 400, a taken name 409, other teams see nothing', async (t) => {
    await assert.rejects(Sandbox.fork('nosuchsandbox'), /not found/i);
    await assert.rejects(Sandbox.createSnapshot('nosuchsandbox'), /not found/i);
    const src = await Sandbox.create();
    t.after(() => src.kill());
    // E2B's checks and words; the SDK raises its SandboxError with the status for an API 400.
    await assert.rejects(src.fork({ count: 0 }), (e: unknown) => {
      assert.ok(e instanceof SandboxError, String(e));
      assert.equal((e as SandboxError & { statusCode?: number }).statusCode, 400);
      assert.match((e as Error).message, /^400: Count must be at least 1$/);
      return true;
    });
    for (const [count, message] of [
      [-1, 'Count must be at least 1'],
      [101, 'Count cannot be greater than 100'],
      [100, 'Count must be lower than the maximum number of concurrent sandboxes (100)'],
    ] as const) {
      const r = await api('POST', `/sandboxes/${src.sandboxId}/fork`, { count });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.deepEqual(r.body, { code: 400, message });
    }
    for (const name of ['Bad Name', '../x', 'a'.repeat(64)]) {
      const r = await api('POST', `/sandboxes/${src.sandboxId}/snapshots`, { name });
      assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.body)}`);
    }
    assert.equal((await api('POST', `/sandboxes/${src.sandboxId}/snapshots`, { name: 'base' })).status, 409);
    const snap = await src.createSnapshot({ name: 'taken' });
    const again = await api('POST', `/sandboxes/${src.sandboxId}/snapshots`, { name: 'taken' });
    assert.equal(again.status, 409);
    assert.match(String(again.body.message), /already has a snapshot named taken/);
    assert.equal((await api('GET', '/snapshots?nextToken=garbage')).status, 400);
    assert.equal((await api('DELETE', '/templates/base')).status, 404);

    const created = await api('POST', '/v1/teams', { name: 'snapshot-other' });
    assert.equal(created.status, 201);
    const other = { apiKey: String(created.body.key) };
    assert.deepEqual(await allSnapshots(other), []);
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId, other), false);
    await assert.rejects(Sandbox.create(snap.snapshotId, other), /400/);
    await assert.rejects(Sandbox.fork(src.sandboxId, other), /not found/i);
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), true);
    assert.deepEqual(await checkpointsOnNode(), []);
  });
});
