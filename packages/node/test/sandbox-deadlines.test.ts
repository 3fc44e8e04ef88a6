// A node's own copy of its sandboxes' end times (`sandbox.set-deadline`): the timer logic on
// its own, then the command on the node's executor — the one both `aiva up`'s in-process
// node and a remote node agent run — with real container sandboxes: at its deadline plus
// the grace a sandbox is killed (reported `endReason: timeout`) or paused, a later deadline
// replaces an earlier one, `null` clears it, and an unknown sandbox is refused; deadlines kept
// in a file are armed again by the next process.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeCommand, NodeSandbox } from '@aiva/protocol/node';
import { NodeExecutor } from '../src/agent/node-executor.js';
import { SandboxDeadlines } from '../src/agent/sandbox-deadlines.js';
import type { LocalNode } from '../src/local-node.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { closeManager, testManager, until } from './helpers/test-node.js';

checkHostLeaks();

test('deadlines: due at the time plus the grace, replaced by a later one, cleared by none', async () => {
  const expired: string[] = [];
  const d = new SandboxDeadlines({
    expire: async (id, action) => {
      expired.push(`${id}:${action}`);
    },
  });
  try {
    const now = Date.now();
    d.set('a', now, 100);
    d.set('b', now + 50, 0, 'pause');
    d.set('c', now, 0);
    d.set('c', now + 60_000, 0); // moved later: not due
    d.set('e', now, 0);
    d.set('e', undefined); // cleared
    assert.equal(d.dueAt('a'), now + 100);
    await sleep(30);
    assert.deepEqual(expired, [], 'a has its grace, b its time to come');
    await sleep(150);
    assert.deepEqual(expired.sort(), ['a:kill', 'b:pause']);
    assert.equal(d.dueAt('c'), now + 60_000);
    assert.deepEqual(
      d.recentlyEnded().map((e) => [e.id, e.reason]),
      [['a', 'timeout']],
      'a pause is no end',
    );
    assert.ok(d.endedByDeadline('a') && !d.endedByDeadline('b'));
  } finally {
    d.close();
  }
});

function command(payload: NodeCommand<'sandbox.set-deadline'>['payload']): NodeCommand {
  return { id: randomUUID(), kind: 'sandbox.set-deadline', issuedAt: new Date().toISOString(), payload };
}

test('sandbox.set-deadline on the node’s executor ends real sandboxes at their time, reason timeout', async () => {
  const m = await testManager({ defaultDriver: 'container' });
  // The executor runs commands on the node's sandbox manager (all this command needs of a LocalNode).
  const executor = new NodeExecutor({ sandboxes: m } as unknown as LocalNode, {
    buildFiles: async () => (h) => h,
  });
  const heard: NodeSandbox[] = [];
  executor.onSandbox((s) => heard.push(s));
  try {
    const killed = await m.create({ memoryMiB: 256, vcpus: 1 });
    const paused = await m.create({ memoryMiB: 256, vcpus: 1 });
    const kept = await m.create({ memoryMiB: 256, vcpus: 1 });
    const soon = new Date(Date.now() + 1500).toISOString();
    for (const payload of [
      { sandboxId: killed.id, deadline: soon, graceSeconds: 1 },
      { sandboxId: paused.id, deadline: soon, onDeadline: 'pause' as const },
      { sandboxId: kept.id, deadline: soon },
      { sandboxId: kept.id, deadline: null },
    ]) {
      const o = await executor.execute(command(payload));
      assert.deepEqual(o, { commandId: o.commandId, ok: true, data: {} });
    }
    const unknown = await executor.execute(command({ sandboxId: 'nosuchsandbox', deadline: soon }));
    assert.equal(unknown.ok ? 'ok' : unknown.error.code, 'SANDBOX_NOT_FOUND');
    const bad = await executor.execute(command({ sandboxId: kept.id, deadline: 'tomorrow' }));
    assert.equal(bad.ok ? 'ok' : bad.error.code, 'INVALID_SPEC');

    await until('the paused one', async () =>
      executor.sandbox(paused.id)?.state === 'paused' ? true : undefined,
    );
    assert.equal(executor.sandbox(killed.id)?.state, 'running', 'the grace is not over yet');
    const end = await until('the killed one', async () =>
      heard.find((s) => s.id === killed.id && s.state === 'stopped'),
    );
    assert.equal(end.endReason, 'timeout');
    assert.deepEqual(
      executor.deadlines.recentlyEnded().map((e) => e.id),
      [killed.id],
    );
    await sleep(1000);
    assert.equal(executor.sandbox(kept.id)?.state, 'running', 'a cleared deadline ends nothing');
  } finally {
    // Before the test's directory goes: its sandboxes are mounted there.
    executor.deadlines.close();
    await closeManager(m);
  }
});

test('deadlines kept in a file outlive the process that set them: restored for known sandboxes only', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'aiva-deadlines-'));
  const file = join(dir, 'agent', 'deadlines.json');
  try {
    const now = Date.now();
    const first = new SandboxDeadlines({ expire: async () => {}, file });
    first.set('a', now + 150, 50);
    first.set('b', now + 60_000, 0, 'pause');
    first.set('gone', now + 60_000, 0);
    first.set('c', now + 60_000);
    first.set('c', undefined);
    first.close(); // the agent stops; its file stays
    assert.deepEqual(Object.keys(JSON.parse(await readFile(file, 'utf8'))).sort(), ['a', 'b', 'gone']);

    const expired: string[] = [];
    const second = new SandboxDeadlines({
      expire: async (id, action) => void expired.push(`${id}:${action}`),
      file,
    });
    try {
      assert.equal(
        second.restore((id) => id !== 'gone'),
        2,
      );
      assert.equal(second.dueAt('a'), now + 200);
      assert.equal(second.dueAt('b'), now + 60_000);
      assert.equal(second.dueAt('gone'), undefined, 'a sandbox the node no longer has');
      await until('a ended at its kept time', async () => (expired.length > 0 ? true : undefined));
      assert.deepEqual(expired, ['a:kill']);
      assert.ok(second.endedByDeadline('a'));
      assert.deepEqual(Object.keys(JSON.parse(await readFile(file, 'utf8'))), ['b'], 'the file follows');
    } finally {
      second.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
