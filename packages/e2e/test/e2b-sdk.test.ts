// The acceptance suite: `aiva up` driven by the real e2b SDK (2.51), pointed at it by
// environment variables only (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY), with E2B's
// header routing on one port. Container runtime; a subset on microVMs is in its own file.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AuthenticationError,
  CommandExitError,
  Sandbox,
  SandboxError,
  Secret,
  SecretError,
  TimeoutError,
} from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

const server = aivaUpForFile();

const seconds = (a: Date, b: Date) => (b.getTime() - a.getTime()) / 1000;

async function listAll(opts: Parameters<typeof Sandbox.list>[0] = {}) {
  const p = Sandbox.list(opts);
  const all = [];
  while (p.hasNext) all.push(...(await p.nextItems()));
  return all;
}

describe('sandboxes through the e2b SDK', () => {
  test('create with metadata, env vars and timeout; getInfo tells them back', async (t) => {
    const sbx = await Sandbox.create({
      metadata: { app: 'a1', owner: 'tests' },
      envs: { GREETING: 'hi' },
      timeoutMs: 120_000,
    });
    t.after(() => sbx.kill());
    assert.match(sbx.sandboxId, /^[a-z0-9]+$/);
    const info = await sbx.getInfo();
    assert.deepEqual(info.metadata, { app: 'a1', owner: 'tests' });
    assert.equal(info.templateId, 'base');
    assert.equal(info.state, 'running');
    assert.equal(info.envdVersion, '0.6.4');
    assert.ok(
      Math.abs(seconds(info.startedAt, info.endAt) - 120) < 2,
      `endAt ${info.endAt} is 120 s after ${info.startedAt}`,
    );
    const again = await sbx.getInfo();
    assert.equal(again.endAt.getTime(), info.endAt.getTime(), 'endAt is stable between reads');
    const r = await sbx.commands.run('echo "$GREETING from $(whoami)"');
    assert.equal(r.stdout, 'hi from user\n');
  });

  test('list filters by metadata, state, template and start time, and pages one at a time', async (t) => {
    const made: Sandbox[] = [];
    for (const i of [1, 2, 3]) {
      made.push(
        await Sandbox.create({ metadata: { suite: 'list', n: String(i), odd: String(i % 2 === 1) } }),
      );
    }
    t.after(() => Promise.all(made.map((s) => s.kill())));
    const ids = made.map((s) => s.sandboxId);

    const mine = await listAll({ query: { metadata: { suite: 'list' } } });
    assert.deepEqual(mine.map((s) => s.sandboxId).sort(), [...ids].sort());
    const odd = await listAll({ query: { metadata: { suite: 'list', odd: 'true' } } });
    assert.deepEqual(odd.map((s) => s.sandboxId).sort(), [ids[0], ids[2]].sort());
    assert.deepEqual(await listAll({ query: { metadata: { suite: 'list', n: 'no such' } } }), []);

    // Metadata keys and values with characters that need encoding.
    const odd2 = await Sandbox.create({ metadata: { 'we&ird=key': 'a b&c=d/é' } });
    t.after(() => odd2.kill());
    const found = await listAll({ query: { metadata: { 'we&ird=key': 'a b&c=d/é' } } });
    assert.deepEqual(
      found.map((s) => s.sandboxId),
      [odd2.sandboxId],
    );

    const pages: string[][] = [];
    const paginator = Sandbox.list({ query: { metadata: { suite: 'list' } }, limit: 1 });
    while (paginator.hasNext) pages.push((await paginator.nextItems()).map((s) => s.sandboxId));
    assert.deepEqual(
      pages,
      [[ids[2]], [ids[1]], [ids[0]]],
      'newest first, one per page, and no empty last page',
    );
    const asc = await listAll({ query: { metadata: { suite: 'list' } }, order: 'asc' } as never);
    assert.deepEqual(
      asc.map((s) => s.sandboxId),
      ids,
    );

    // At or after, to the millisecond, as E2B: a sandbox's own startedAt lists it too.
    const second = (await made[1]?.getInfo())?.startedAt as Date;
    const from2 = await listAll({ query: { metadata: { suite: 'list' }, startedAfter: second } });
    assert.deepEqual(
      from2.map((s) => s.sandboxId),
      [ids[2], ids[1]],
    );
    const after2 = await listAll({
      query: { metadata: { suite: 'list' }, startedAfter: new Date(second.getTime() + 1) },
    });
    assert.deepEqual(
      after2.map((s) => s.sandboxId),
      [ids[2]],
    );
    const raw = await fetch(
      `${server.up.url}/v2/sandboxes?limit=1&metadata=${encodeURIComponent('suite=list')}&state=running`,
      { headers: { 'x-api-key': server.up.apiKey } },
    );
    assert.equal(raw.headers.get('x-total-running'), '3', 'X-Total-Running counts every match, not the page');
    assert.equal(((await raw.json()) as unknown[]).length, 1);
    const tagged = await fetch(`${server.up.url}/v2/sandboxes?template=base:latest`, {
      headers: { 'x-api-key': server.up.apiKey },
    });
    assert.equal(tagged.status, 400);
    assert.match(((await tagged.json()) as { message: string }).message, /tags are not supported/);
    assert.equal((await listAll({ query: { metadata: { suite: 'list' }, template: 'base' } })).length, 3);
    assert.equal((await listAll({ query: { metadata: { suite: 'list' }, template: 'nope' } })).length, 0);

    await made[0]?.pause();
    const paused = await listAll({ query: { metadata: { suite: 'list' }, state: ['paused'] } });
    assert.deepEqual(
      paused.map((s) => [s.sandboxId, s.state]),
      [[ids[0], 'paused']],
    );
    const running = await listAll({ query: { metadata: { suite: 'list' }, state: ['running'] } });
    assert.deepEqual(running.map((s) => s.sandboxId).sort(), [ids[1], ids[2]].sort());
  });

  test('the next-page header is sent only when there is a next page', async (t) => {
    const s = await Sandbox.create({ metadata: { suite: 'header' } });
    t.after(() => s.kill());
    const q = `metadata=${encodeURIComponent('suite=header')}`;
    const one = await fetch(`${server.up.url}/v2/sandboxes?${q}&limit=1`, {
      headers: { 'x-api-key': server.up.apiKey },
    });
    assert.equal(one.headers.get('x-next-token'), null);
    assert.equal(((await one.json()) as unknown[]).length, 1);
  });

  test('kill ends a sandbox; killing an unknown or killed one returns false', async () => {
    const sbx = await Sandbox.create();
    assert.equal(await sbx.isRunning(), true);
    assert.equal(await sbx.kill(), true);
    assert.equal(await sbx.isRunning(), false, 'the proxy answers 502 for a killed sandbox');
    assert.equal(await Sandbox.kill(sbx.sandboxId), false);
    assert.equal(await Sandbox.kill('doesnotexist0'), false);
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId), /not found/);
    await assert.rejects(Sandbox.connect(sbx.sandboxId), /not found/);
  });

  test('setTimeout shortens and lengthens a sandbox’s life; it ends about a second after expiry', async () => {
    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    await sbx.setTimeout(600_000);
    let info = await sbx.getInfo();
    assert.ok(Math.abs(seconds(new Date(), info.endAt) - 600) < 3);
    await sbx.setTimeout(2_000);
    info = await sbx.getInfo();
    assert.ok(seconds(new Date(), info.endAt) <= 2.5);
    const deadline = info.endAt.getTime();
    while (await sbx.isRunning()) await new Promise((r) => setTimeout(r, 100));
    const late = (Date.now() - deadline) / 1000;
    assert.ok(late < 1.5, `ended ${late} s after its end time`);
    assert.deepEqual(
      (await listAll()).filter((s) => s.sandboxId === sbx.sandboxId),
      [],
    );
  });

  test('connect extends the life of a running sandbox and never shortens it', async (t) => {
    const sbx = await Sandbox.create({ timeoutMs: 60_000 });
    t.after(() => sbx.kill());
    const before = (await sbx.getInfo()).endAt;
    const connected = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 600_000 });
    const extended = (await connected.getInfo()).endAt;
    assert.ok(seconds(before, extended) > 500);
    await Sandbox.connect(sbx.sandboxId, { timeoutMs: 10_000 });
    assert.equal((await sbx.getInfo()).endAt.getTime(), extended.getTime());
    assert.equal((await connected.commands.run('echo connected')).stdout, 'connected\n');
  });

  test('a command running when its sandbox is killed fails as “the sandbox was killed”', async () => {
    const sbx = await Sandbox.create();
    const handle = await sbx.commands.run('sleep 600', { background: true });
    setTimeout(() => void Sandbox.kill(sbx.sandboxId), 500);
    await assert.rejects(handle.wait(), (e: unknown) => {
      assert.ok(e instanceof TimeoutError, `${(e as Error).name}: ${(e as Error).message}`);
      assert.match((e as Error).message, /sandbox was killed/);
      return true;
    });
  });

  test('commands, files and a terminal through the proxy', async (t) => {
    const sbx = await Sandbox.create();
    t.after(() => sbx.kill());
    await assert.rejects(
      sbx.commands.run('exit 3'),
      (e: unknown) => e instanceof CommandExitError && e.exitCode === 3,
    );
    await sbx.files.write('/home/user/dir/notes.txt', 'line one\n');
    assert.equal(await sbx.files.read('/home/user/dir/notes.txt'), 'line one\n');
    assert.deepEqual(
      (await sbx.files.list('/home/user/dir')).map((e) => e.name),
      ['notes.txt'],
    );
    const big = Buffer.alloc(8 * 1024 * 1024, 7);
    await sbx.files.write(
      '/home/user/big.bin',
      big.buffer.slice(big.byteOffset, big.byteOffset + big.length),
    );
    const back = await sbx.files.read('/home/user/big.bin', { format: 'bytes' });
    assert.equal(Buffer.compare(Buffer.from(back), big), 0);

    let output = '';
    const pty = await sbx.pty.create({
      cols: 100,
      rows: 30,
      onData: (d) => {
        output += new TextDecoder().decode(d);
      },
    });
    await sbx.pty.sendInput(pty.pid, new TextEncoder().encode('tput cols; exit\n'));
    await pty.wait();
    assert.match(output, /\b100\b/);
  });

  test('a port of the sandbox answers through the proxy; a closed one gets E2B’s 502', async (t) => {
    const sbx = await Sandbox.create();
    t.after(() => sbx.kill());
    await sbx.files.write('/home/user/site/index.html', '<h1>from the sandbox</h1>');
    await sbx.commands.run('python3 -m http.server 8000', { background: true, cwd: '/home/user/site' });
    const headers = { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '8000' };
    let res: Response | undefined;
    for (let i = 0; i < 100; i++) {
      res = await fetch(`${server.up.url}/index.html`, { headers });
      if (res.status === 200) break;
      await res.body?.cancel();
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(res?.status, 200);
    assert.equal(await res?.text(), '<h1>from the sandbox</h1>');
    assert.match(sbx.getHost(8000), new RegExp(`^8000-${sbx.sandboxId}\\.`));

    const closed = await fetch(`${server.up.url}/`, { headers: { ...headers, 'e2b-sandbox-port': '8001' } });
    assert.equal(closed.status, 502);
    assert.deepEqual(await closed.json(), {
      message: 'The sandbox is running but port is not open',
      sandboxId: sbx.sandboxId,
      port: 8001,
      code: 502,
    });
    const unknown = await fetch(`${server.up.url}/`, {
      headers: { 'e2b-sandbox-id': 'nosuchsandbox', 'e2b-sandbox-port': '8000' },
    });
    assert.deepEqual(await unknown.json(), {
      sandboxId: 'nosuchsandbox',
      message: 'The sandbox was not found',
      code: 502,
    });
    const init = await fetch(`${server.up.url}/init`, {
      method: 'POST',
      headers: { 'e2b-sandbox-id': sbx.sandboxId },
      body: '{}',
    });
    assert.equal(init.status, 403, 'envd’s /init is not reachable through the proxy');
  });

  test('a request waiting for its answer when the sandbox ends gets E2B’s 502, not a reset', async () => {
    const sbx = await Sandbox.create();
    const hold =
      'import socket,time\ns=socket.create_server(("0.0.0.0",8002))\nc=s.accept()\ntime.sleep(600)\n';
    await sbx.files.write('/tmp/hold.py', hold);
    await sbx.commands.run('python3 /tmp/hold.py', { background: true });
    await sbx.commands.run(
      'for i in $(seq 100); do ss -ltn | grep -q ":8002 " && exit 0; sleep 0.1; done; exit 1',
    );
    const pending = fetch(`${server.up.url}/`, {
      headers: { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '8002' },
    });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await sbx.kill(), true);
    const res = await pending;
    assert.equal(res.status, 502);
    assert.deepEqual(await res.json(), {
      sandboxId: sbx.sandboxId,
      message: 'The sandbox was not found',
      code: 502,
    });
  });

  test('signed file URLs work on the shared sandbox URL; an expired one gets E2B’s 401', async (t) => {
    const [sbx, other] = await Promise.all([Sandbox.create(), Sandbox.create()]);
    t.after(() => Promise.all([sbx.kill(), other.kill()]));
    await sbx.files.write('/home/user/signed.txt', 'mine');
    await other.files.write('/home/user/signed.txt', 'the other’s');
    const down = await sbx.downloadUrl('/home/user/signed.txt');
    assert.ok(down.startsWith(`${server.up.url}/files?`), down);
    const got = await fetch(down);
    assert.equal(got.status, 200);
    assert.equal(await got.text(), 'mine', 'the sandbox that signed the URL answers it');

    const up = await other.uploadUrl('/home/user/uploaded.txt', { useSignatureExpiration: 60 });
    const form = new FormData();
    form.append('file', new Blob(['uploaded by url']), 'uploaded.txt');
    const posted = await fetch(up, { method: 'POST', body: form });
    assert.equal(posted.status, 200, await posted.clone().text());
    assert.equal(await other.files.read('/home/user/uploaded.txt'), 'uploaded by url');
    assert.equal(await sbx.files.exists('/home/user/uploaded.txt'), false);

    const expired = await fetch(
      await sbx.downloadUrl('/home/user/signed.txt', { useSignatureExpiration: -10 }),
    );
    assert.equal(expired.status, 401);
    assert.deepEqual(await expired.json(), { code: 401, message: 'signature is already expired' });

    const tampered = await fetch(down.replace('signed.txt', 'other.txt'));
    assert.equal(tampered.status, 401);
    assert.match(((await tampered.json()) as { message: string }).message, /invalid signature/);
    await sbx.kill();
    const gone = await fetch(down);
    assert.equal(gone.status, 401, 'a URL of an ended sandbox matches no sandbox');
    await gone.body?.cancel();
  });

  test('metrics report CPU, memory and disk', async (t) => {
    const sbx = await Sandbox.create();
    t.after(() => sbx.kill());
    const metrics = await sbx.getMetrics();
    assert.ok(metrics.length >= 1);
    const m = metrics[0];
    assert.ok(m && m.memTotal > 0 && m.memUsed > 0 && m.diskTotal > 0 && m.cpuCount >= 1, JSON.stringify(m));
  });

  test('the API refuses a missing or wrong key with 401, and a team sees only its sandboxes', async (t) => {
    await assert.rejects(Sandbox.list({ apiKey: `e2b_${'0'.repeat(40)}` }).nextItems(), AuthenticationError);
    const noKey = await fetch(`${server.up.url}/v2/sandboxes`);
    assert.equal(noKey.status, 401);
    assert.deepEqual(Object.keys((await noKey.json()) as object).sort(), ['code', 'message']);
    const sbx = await Sandbox.create();
    t.after(() => sbx.kill());
    // A second team, made by the operator team's key, sees nothing of the first's.
    const created = await fetch(`${server.up.url}/v1/teams`, {
      method: 'POST',
      headers: { 'x-api-key': server.up.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'other' }),
    });
    assert.equal(created.status, 201);
    const other = { apiKey: ((await created.json()) as { key: string }).key };
    assert.ok((await listAll()).some((s) => s.sandboxId === sbx.sandboxId));
    assert.deepEqual(await listAll(other), []);
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId, other), /not found/);
    assert.equal(await Sandbox.kill(sbx.sandboxId, other), false);
    await assert.rejects(Sandbox.setTimeout(sbx.sandboxId, 1000, other), /not found/);
    assert.equal(await sbx.isRunning(), true);
    const notOperator = await fetch(`${server.up.url}/v1/teams`, {
      method: 'POST',
      headers: { 'x-api-key': other.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'third' }),
    });
    assert.equal(notOperator.status, 403);
  });

  test('secrets are refused as not supported (501), not as not found', async () => {
    await assert.rejects(Secret.exists('token'), /501: secrets are not supported/);
    await assert.rejects(Secret.create('token', 'value'), (e: unknown) => e instanceof SecretError);
    const raw = await fetch(`${server.up.url}/secrets/token`, { method: 'DELETE' });
    assert.equal(raw.status, 401, 'the API key is checked first');
    await raw.body?.cancel();
  });

  test('an unknown template is a 400', async () => {
    await assert.rejects(Sandbox.create('no-such-template'), (e: unknown) => {
      assert.ok(e instanceof SandboxError);
      assert.match((e as Error).message, /^400: template "no-such-template" does not exist/);
      return true;
    });
  });
});
