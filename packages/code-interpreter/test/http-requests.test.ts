// The server's HTTP layer without a kernel: what it refuses, and how (status, reason
// phrase, body), before any kernel would start. Kernels themselves are exercised end to
// end (packages/e2e/test/code-interpreter.test.ts): the host has no ipykernel.
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ContextManager } from '../src/code-context.js';
import { codeInterpreterServer } from '../src/http-server.js';

describe('the code-interpreter HTTP server, without kernels', () => {
  const server = codeInterpreterServer(
    new ContextManager({ runtimeDir: tmpdir(), readyTimeoutMs: 1000 }, tmpdir()),
  );
  let base = '';
  before(async () => {
    process.env.JUPYTER_PATH = await mkdtemp(join(tmpdir(), 'no-kernels-'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(base + path, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, statusText: res.statusText, text: await res.text() };
  };

  it('answers health and lists no contexts; query strings are ignored', async () => {
    assert.deepEqual(await call('GET', '/health?source=ci'), { status: 200, statusText: 'OK', text: '"OK"' });
    assert.equal((await call('GET', '/contexts?source=x')).text, '[]');
  });

  it('refuses bad execute requests with a clear 4xx', async () => {
    const both = await call('POST', '/execute', { code: '1', context_id: 'a', language: 'python' });
    assert.equal(both.status, 400);
    assert.equal(both.statusText, 'Only one of context_id or language can be provided');
    const unknown = await call('POST', '/execute', { code: '1', context_id: 'nope' });
    assert.deepEqual([unknown.status, unknown.text], [404, 'Context nope not found']);
    const noCode = await call('POST', '/execute', { language: 'python' });
    assert.equal(noCode.status, 400);
    assert.match(noCode.statusText, /"code" must be a string/);
    assert.equal((await call('POST', '/execute', '{"code": ')).status, 400);
    const cobol = await call('POST', '/execute', { code: '1', language: 'cobol' });
    assert.equal(cobol.status, 400);
    assert.match(cobol.statusText, /Unknown language "cobol"/);
    const envs = await call('POST', '/execute', { code: '1', env_vars: { A: 1 } });
    assert.equal(envs.status, 400);
  });

  it('refuses unknown languages, missing kernels and unknown contexts', async () => {
    assert.match((await call('POST', '/contexts', { language: 'cobol' })).statusText, /Unknown language/);
    const noKernel = await call('POST', '/contexts', { language: 'r' });
    assert.equal(noKernel.status, 400);
    assert.match(noKernel.statusText, /No kernel for language "r"/);
    assert.equal((await call('POST', '/contexts/nope/restart')).status, 404);
    assert.equal((await call('DELETE', '/contexts/nope')).text, 'Context nope not found');
    assert.equal((await call('GET', '/nothing')).status, 404);
  });
});
