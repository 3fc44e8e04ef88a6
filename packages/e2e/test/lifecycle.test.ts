// Pause and resume through the e2b SDK (container driver: the cgroup freezer): processes,
// files and open ports survive; pausing twice is E2B's 409 (the SDK says false); a
// sandbox made with autoPause + autoResume pauses at its timeout and wakes when traffic
// arrives through the proxy; connecting to a killed sandbox is 404.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NotFoundError, Sandbox } from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

const server = aivaUpForFile();

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const port8000 = (sbx: Sandbox) =>
  fetch(`${server.up.url}/`, { headers: { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '8000' } });

describe('pause and resume', () => {
  test('a paused sandbox keeps its processes, files and open ports', async (t) => {
    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    t.after(() => sbx.kill());
    const sleeper = await sbx.commands.run('sleep 3600', { background: true });
    await sbx.commands.run('cd /tmp && python3 -m http.server 8000', { background: true });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    await waitFor('the HTTP server', async () => (await port8000(sbx)).status === 200);

    assert.equal(await sbx.pause(), true);
    assert.equal((await sbx.getInfo()).state, 'paused');
    assert.equal(
      await sbx.pause(),
      false,
      'pausing a paused sandbox is a 409, which the SDK reports as false',
    );
    const whilePaused = await port8000(sbx);
    assert.equal(whilePaused.status, 502, 'no traffic reaches a paused sandbox');
    const listed = await Sandbox.list({ query: { state: ['paused'] } }).nextItems();
    assert.deepEqual(
      listed.map((s) => s.sandboxId),
      [sbx.sandboxId],
    );

    const resumed = await Sandbox.connect(sbx.sandboxId);
    assert.equal((await resumed.getInfo()).state, 'running');
    assert.equal(
      (await resumed.commands.run(`kill -0 ${sleeper.pid} && echo alive`)).stdout,
      'alive\n',
      'the sleep started before the pause still runs',
    );
    assert.equal(await resumed.files.read('/home/user/kept.txt'), 'kept');
    assert.equal((await port8000(sbx)).status, 200, 'the HTTP server answers again');
  });

  test('autoPause at the timeout, then traffic through the proxy wakes it (autoResume)', async (t) => {
    const sbx = await Sandbox.create({
      timeoutMs: 3_000,
      lifecycle: { onTimeout: 'pause', autoResume: true },
    });
    t.after(() => sbx.kill());
    const info = await sbx.getInfo();
    assert.deepEqual(info.lifecycle, { onTimeout: 'pause', autoResume: true });
    // Started detached: a background command's open stream would be traffic that wakes it.
    await sbx.commands.run('cd /tmp && (setsid python3 -m http.server 8000 >/dev/null 2>&1 &)');
    await waitFor('the HTTP server', async () => (await port8000(sbx)).status === 200);
    await waitFor('the pause at the timeout', async () => (await sbx.getInfo()).state === 'paused', 10_000);
    // Traffic wakes it: first through a port, then envd works as before.
    assert.equal((await port8000(sbx)).status, 200);
    assert.equal((await sbx.getInfo()).state, 'running');
    assert.equal((await sbx.commands.run('echo awake')).stdout, 'awake\n');
    const endAt = (await sbx.getInfo()).endAt.getTime();
    assert.ok(endAt - Date.now() > 200_000, 'woken by traffic, it runs at least the default timeout again');
  });

  test('a paused sandbox without autoResume stays paused when traffic comes', async (t) => {
    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    t.after(() => sbx.kill());
    await sbx.pause();
    assert.equal((await port8000(sbx)).status, 502);
    assert.equal((await sbx.getInfo()).state, 'paused');
  });

  test('connect to a killed sandbox is not found; kill of a paused one works', async () => {
    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    await sbx.pause();
    assert.equal(await sbx.kill(), true);
    await assert.rejects(Sandbox.connect(sbx.sandboxId), NotFoundError);
    assert.equal(await Sandbox.kill(sbx.sandboxId), false);
  });
});
