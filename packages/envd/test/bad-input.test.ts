// Bad input: a clear Connect or HTTP error, envd keeps running, nothing leaks.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NotEnoughSpaceError } from 'e2b';
import { ENVD_URL } from './helpers/harness.js';
import { eventually, rawClients, sdk, useSandbox } from './helpers/sandbox.js';

const sandbox = useSandbox({ smallTmpfs: { path: '/mnt/small', sizeKiB: 1024 } });

/** One Connect envelope: flags, big-endian length, payload. */
function envelope(payload: Buffer, flags = 0, declaredLength = payload.length): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([head, payload]);
}

/** Splits a Connect streaming response body into its envelopes. */
function envelopes(body: Buffer): { flags: number; json: unknown }[] {
  const out = [];
  let at = 0;
  while (at + 5 <= body.length) {
    const flags = body.readUInt8(at);
    const len = body.readUInt32BE(at + 1);
    out.push({ flags, json: JSON.parse(body.subarray(at + 5, at + 5 + len).toString() || 'null') });
    at += 5 + len;
  }
  return out;
}

const streamCall = (path: string, body: Buffer) =>
  fetch(`${ENVD_URL}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/connect+json', 'connect-protocol-version': '1' },
    body,
  });

async function stillHealthy(): Promise<void> {
  assert.equal((await fetch(`${ENVD_URL}/health`)).status, 204);
  assert.equal((await (await sdk()).commands.run('echo alive')).stdout, 'alive\n');
}

describe('malformed requests', () => {
  test('a streaming request with a broken envelope or bad JSON ends with a Connect error', async () => {
    for (const body of [
      Buffer.from([1, 2, 3]),
      envelope(Buffer.from('{"process":{"cmd":"/bin/true"}}'), 0, 1000),
      envelope(Buffer.from('{not json')),
      envelope(Buffer.from('{"process":{"cmd":42}}')),
    ]) {
      const res = await streamCall('/process.Process/Start', body);
      const raw = Buffer.from(await res.arrayBuffer());
      if (res.status === 200) {
        const frames = envelopes(raw);
        const end = frames.at(-1);
        assert.equal(end?.flags, 2, 'the error is in an end-stream frame');
        const code = (end?.json as { error?: { code?: string } } | undefined)?.error?.code;
        assert.ok(code === 'invalid_argument' || code === 'internal', `code ${code}`);
      } else {
        assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}`);
      }
    }
    await stillHealthy();
  });

  test('a unary request with bad JSON is invalid_argument', async () => {
    const res = await fetch(`${ENVD_URL}/process.Process/List`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{bad',
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { code: string }).code, 'invalid_argument');
    await stillHealthy();
  });

  test('unknown methods and services are 404 unimplemented', async () => {
    for (const path of ['/process.Process/Explode', '/nope.Nothing/Call']) {
      const res = await fetch(`${ENVD_URL}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      assert.equal(res.status, 404);
      assert.equal(((await res.json()) as { code: string }).code, 'unimplemented');
    }
    const { process } = rawClients();
    await assert.rejects(
      process.sendSignal({ process: { selector: { case: 'pid', value: 1 } }, signal: 0 }),
      /not found|invalid_argument/,
    );
    await stillHealthy();
  });

  test('a pid that does not exist is not_found everywhere', async () => {
    const { process } = rawClients();
    const sel = { selector: { case: 'pid' as const, value: 4_000_000 } };
    await assert.rejects(process.sendSignal({ process: sel, signal: 9 }), /not_found|not found/);
    await assert.rejects(
      process.sendInput({ process: sel, input: { input: { case: 'stdin', value: new Uint8Array([1]) } } }),
      /not found/,
    );
    await assert.rejects(process.closeStdin({ process: sel }), /not found/);
    await assert.rejects(
      process.update({ process: sel, pty: { size: { cols: 10, rows: 10 } } }),
      /not found/,
    );
    const stream = process.connect({ process: sel });
    await assert.rejects(
      (async () => {
        for await (const _ of stream) {
        }
      })(),
      /not found/,
    );
  });

  test('invalid paths are invalid_argument / 400', async () => {
    const { filesystem } = rawClients();
    await assert.rejects(filesystem.stat({ path: '/tmp/a\0b' }), /invalid_argument|NUL/);
    await assert.rejects(filesystem.listDir({ path: '~other/x' }), /invalid_argument|expand/);
    const res = await fetch(`${ENVD_URL}/files?path=${encodeURIComponent('/tmp/x\0y')}&username=user`);
    assert.equal(res.status, 400);
    const user = await fetch(`${ENVD_URL}/files?path=/etc/hostname&username=nobody-such`);
    assert.equal(user.status, 401);
    const noType = await fetch(`${ENVD_URL}/files?path=/tmp/t.txt&username=user`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'x',
    });
    assert.equal(noType.status, 400);
    await stillHealthy();
  });
});

describe('disk full', () => {
  test('an upload larger than the free space is 507 NotEnoughSpaceError and leaves no partial file', async () => {
    const sbx = await sdk();
    const big = new Uint8Array(2 * 1024 * 1024).fill(65);
    // With a Content-Length, refused before a byte is written.
    const declared = await fetch(`${ENVD_URL}/files?path=/mnt/small/big0.bin&username=user`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.from(big),
    });
    assert.equal(declared.status, 507);
    assert.deepEqual(await declared.json(), {
      code: 507,
      message: `attempted to write ${big.length} bytes: not enough disk space available`,
    });
    // octet-stream, streamed by the SDK (no length): the write runs out of space.
    await assert.rejects(
      sbx.files.write('/mnt/small/big.bin', big.buffer, { useOctetStream: true }),
      (e: unknown) => e instanceof NotEnoughSpaceError,
    );
    // multipart: the write itself runs out of space.
    await assert.rejects(
      sbx.files.write('/mnt/small/big2.bin', big.buffer),
      (e: unknown) => e instanceof NotEnoughSpaceError,
    );
    // gzip (size unknown up front): the write runs out of space too.
    await assert.rejects(
      sbx.files.write('/mnt/small/big3.bin', big.buffer, { gzip: true }),
      (e: unknown) => e instanceof NotEnoughSpaceError,
    );
    assert.deepEqual(await sbx.files.list('/mnt/small'), []);
    await sbx.files.write('/mnt/small/ok.txt', 'fits');
    assert.equal(await sbx.files.read('/mnt/small/ok.txt'), 'fits');
    await stillHealthy();
  });
});

describe('clients that go away', () => {
  test('a client that disconnects mid-stream: the process keeps running, envd keeps serving, nothing leaks', async () => {
    const s = sandbox();
    const sbx = await sdk();
    await sbx.commands.run('true');
    const fds = await s.envdFds();
    const controller = new AbortController();
    let received = 0;
    const { process } = rawClients();
    const run = (async () => {
      for await (const m of process.start(
        { process: { cmd: '/bin/sh', args: ['-c', 'while :; do echo spam; done'] }, tag: 'spammer' },
        { signal: controller.signal },
      )) {
        if (m.event?.event.case === 'data') received++;
        if (received >= 5) controller.abort();
      }
    })();
    await assert.rejects(run);
    const spammer = (await process.list({})).processes.find((p) => p.tag === 'spammer');
    assert.ok(spammer, 'the process outlives its client');
    await process.sendSignal({ process: { selector: { case: 'tag', value: 'spammer' } }, signal: 9 });

    // A download abandoned half-way.
    await sbx.files.write('/tmp/big-download.bin', new Uint8Array(20 * 1024 * 1024).buffer);
    const dl = new AbortController();
    const res = await fetch(`${ENVD_URL}/files?path=/tmp/big-download.bin&username=user`, {
      signal: dl.signal,
    });
    const reader = res.body?.getReader();
    await reader?.read();
    dl.abort();

    // An upload abandoned half-way leaves no partial file.
    const up = new AbortController();
    let sent = 0;
    const body = new ReadableStream({
      async pull(c) {
        if (sent >= 4 * 1024 * 1024) {
          up.abort();
          return;
        }
        sent += 256 * 1024;
        c.enqueue(new Uint8Array(256 * 1024));
        await new Promise((r) => setTimeout(r, 5));
      },
    });
    await assert.rejects(
      fetch(`${ENVD_URL}/files?path=/tmp/abandoned.bin&username=user`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body,
        signal: up.signal,
        duplex: 'half',
      } as RequestInit),
    );
    await eventually(
      async () => !(await sbx.files.exists('/tmp/abandoned.bin')),
      'the partial upload to be removed',
    );
    // The same as a multipart upload.
    const mp = new AbortController();
    let mpSent = 0;
    const boundary = 'aivaboundary';
    const mpBody = new ReadableStream({
      async pull(c) {
        if (mpSent === 0) {
          c.enqueue(
            new TextEncoder().encode(
              `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="/tmp/abandoned-mp.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
            ),
          );
        }
        if (mpSent >= 4 * 1024 * 1024) {
          mp.abort();
          return;
        }
        mpSent += 256 * 1024;
        c.enqueue(new Uint8Array(256 * 1024).fill(66));
        await new Promise((r) => setTimeout(r, 5));
      },
    });
    await assert.rejects(
      fetch(`${ENVD_URL}/files?username=user`, {
        method: 'POST',
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        body: mpBody,
        signal: mp.signal,
        duplex: 'half',
      } as RequestInit),
    );
    await eventually(
      async () => !(await sbx.files.exists('/tmp/abandoned-mp.bin')),
      'the partial multipart upload to be removed',
    );

    // A watch abandoned.
    const w = new AbortController();
    const handle = await sbx.files.watchDir('/tmp', () => {}, { signal: w.signal });
    w.abort();
    await handle.stop();

    await eventually(async () => (await s.envdChildren()).length === 0, 'envd to have no children');
    await eventually(async () => (await s.envdFds()) <= fds + 4, `envd fds to settle (was ${fds})`);
    await stillHealthy();
  });

  test('a command that forks a daemon and exits returns, and leaves no zombie', async () => {
    const s = sandbox();
    const sbx = await sdk();
    // The daemon keeps the command's stdout open: the command still ends when its shell does.
    const r = await sbx.commands.run('(setsid sleep 300 &); echo parent done');
    assert.equal(r.stdout, 'parent done\n');
    const r2 = await sbx.commands.run('nohup sleep 301 >/dev/null 2>&1 & echo started');
    assert.equal(r2.stdout, 'started\n');
    const sleepers = (await s.processes()).filter((p) => /sleep 30[01]/.test(p.cmd));
    assert.equal(sleepers.length, 2, 'the daemons run on');
    await s.exec(['pkill', '-f', 'sleep 30[01]']);
    await eventually(
      async () => !(await s.processes()).some((p) => /sleep 30[01]/.test(p.cmd)),
      'daemons reaped',
    );
    assert.deepEqual(await s.zombies(), []);
    assert.deepEqual(await s.envdChildren(), []);
  });
});
