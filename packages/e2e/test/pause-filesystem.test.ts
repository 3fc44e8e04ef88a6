// Pause without memory through the e2b SDK (container driver): `pause({ keepMemory:
// false })` ends the sandbox's processes and keeps its disk; it shows as paused, traffic
// does not wake it, and connect boots it afresh over its files with the same id and
// token. `onTimeout: { action: 'pause', keepMemory: false }` does the same at the
// timeout; autoResume with it is E2B's 400; a kill frees everything (checkHostLeaks).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Sandbox } from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

const server = aivaUpForFile();

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** What runs as `pid` in the sandbox: a fresh boot's pids start over, so the pid alone says nothing. */
const commandOf = async (sbx: Sandbox, pid: number) =>
  (await sbx.commands.run(`tr '\\0' ' ' < /proc/${pid}/cmdline 2>/dev/null || true`)).stdout;

const envd = (sbx: Sandbox) =>
  fetch(`${server.up.url}/health`, {
    headers: { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '49983' },
  });

describe('pause without memory', () => {
  test('keeps the files, ends the processes, and connect boots it again', async (t) => {
    const sbx = await Sandbox.create({ timeoutMs: 300_000, envs: { WHO: 'kept' }, metadata: { m: '1' } });
    t.after(() => sbx.kill());
    const sleeper = await sbx.commands.run('sleep 600', { background: true });
    await sbx.files.write('/home/user/kept.txt', 'written before the pause');
    assert.match(await commandOf(sbx, sleeper.pid), /sleep 600/);

    assert.equal(await sbx.pause({ keepMemory: false }), true);
    const info = await sbx.getInfo();
    assert.equal(info.state, 'paused');
    assert.deepEqual(info.metadata, { m: '1' });
    assert.equal(await sbx.pause({ keepMemory: false }), false, 'pausing it again is a 409');
    const listed = await Sandbox.list({ query: { state: ['paused'] } }).nextItems();
    assert.deepEqual(
      listed.map((s) => s.sandboxId),
      [sbx.sandboxId],
    );
    const traffic = await envd(sbx);
    assert.equal(traffic.status, 502, 'traffic does not reach it');
    assert.equal(((await traffic.json()) as { message: string }).message, 'The sandbox was not found');
    assert.equal((await sbx.getInfo()).state, 'paused', 'nor wakes it');

    const resumed = await Sandbox.connect(sbx.sandboxId);
    assert.equal((await resumed.getInfo()).state, 'running');
    assert.equal(await resumed.files.read('/home/user/kept.txt'), 'written before the pause');
    assert.doesNotMatch(
      await commandOf(resumed, sleeper.pid),
      /sleep 600/,
      'the sleep started before the pause does not run',
    );
    assert.equal((await resumed.commands.run('echo "$WHO"')).stdout, 'kept\n', 'its env vars are set again');
    // The handle made before the pause still works: same id, same envd token.
    assert.equal((await sbx.commands.run('echo same token')).stdout, 'same token\n');
  });

  test('onResume reboot (connect memory: false) boots a sandbox paused with its memory afresh', async (t) => {
    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    t.after(() => sbx.kill());
    const sleeper = await sbx.commands.run('sleep 600', { background: true });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    await sbx.pause();
    const resumed = await Sandbox.connect(sbx.sandboxId, { onResume: 'reboot' });
    assert.equal(await resumed.files.read('/home/user/kept.txt'), 'kept');
    assert.doesNotMatch(
      await commandOf(resumed, sleeper.pid),
      /sleep 600/,
      'the sleep started before the pause does not run',
    );
  });

  test('onTimeout pause with keepMemory false pauses at the timeout; connect brings the files back', async (t) => {
    const sbx = await Sandbox.create({
      timeoutMs: 3_000,
      lifecycle: { onTimeout: { action: 'pause', keepMemory: false } },
    });
    t.after(() => sbx.kill());
    await sbx.files.write('/tmp/kept.txt', 'through the timeout');
    await waitFor('the pause at the timeout', async () => (await sbx.getInfo()).state === 'paused', 15_000);
    assert.equal((await envd(sbx)).status, 502);
    const resumed = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 300_000 });
    assert.equal(await resumed.files.read('/tmp/kept.txt'), 'through the timeout');
  });

  test('autoResume with autoPauseMemory false is a 400; so is autoPauseMemory false without autoPause', async () => {
    const create = (body: object) =>
      fetch(`${server.up.url}/sandboxes`, {
        method: 'POST',
        headers: { 'x-api-key': server.up.apiKey, 'content-type': 'application/json' },
        body: JSON.stringify({ templateID: 'base', ...body }),
      });
    const both = await create({ autoPause: true, autoPauseMemory: false, autoResume: { enabled: true } });
    assert.equal(both.status, 400);
    assert.match(((await both.json()) as { message: string }).message, /cannot be combined with autoResume/);
    const alone = await create({ autoPauseMemory: false });
    assert.equal(alone.status, 400);
    assert.match(
      ((await alone.json()) as { message: string }).message,
      /only applies when autoPause is true/,
    );
    assert.deepEqual(await Sandbox.list().nextItems(), [], 'nothing was made');
  });

  test('a kill of a sandbox paused without memory frees it', async () => {
    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    await sbx.files.write('/home/user/x', 'x');
    await sbx.pause({ keepMemory: false });
    assert.equal(await sbx.kill(), true);
    await assert.rejects(Sandbox.connect(sbx.sandboxId), /not found/i);
  });
});
