// The web console's files as the server serves them, from the built @aiva/console: index.html
// at `/` and at the console's pages (`/ui/…`) with a strict Content-Security-Policy, the
// bundle at `/console/…`, nothing else taken over; and a clear 503 when it is not built.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Fastify from 'fastify';
import { consoleDist, registerConsole } from '../src/api/console-static.js';

describe('console files', () => {
  test('served at /, /ui/… and /console/…, with a CSP; other paths are not the console’s', async (t) => {
    const dist = consoleDist();
    assert.ok(dist, 'the console is built (npm run build)');
    const app = Fastify();
    t.after(() => app.close());
    await registerConsole(app, dist);
    const index = await readFile(join(dist, 'index.html'), 'utf8');
    for (const url of ['/', '/ui/sandboxes', '/ui/sandboxes/abc123']) {
      const r = await app.inject(url);
      assert.equal(r.statusCode, 200, url);
      assert.equal(r.body, index, url);
      assert.match(r.headers['content-security-policy'] as string, /default-src 'none'; script-src 'self'/);
      assert.match(r.headers['content-security-policy'] as string, /frame-ancestors 'none'/);
    }
    const js = await app.inject('/console/app.js');
    assert.equal(js.statusCode, 200);
    assert.match(js.headers['content-type'] as string, /javascript/);
    assert.ok(index.includes('/console/app.js') && index.includes('/console/app.css'));
    for (const url of ['/sandboxes', '/v2/sandboxes', '/health', '/templates', '/ui', '/console/missing.js'])
      assert.equal((await app.inject(url)).statusCode, 404, url);
  });

  test('not built: `/` says so (503), nothing crashes', async (t) => {
    const app = Fastify();
    t.after(() => app.close());
    await registerConsole(app, undefined);
    for (const url of ['/', '/ui/sandboxes']) {
      const r = await app.inject(url);
      assert.equal(r.statusCode, 503);
      assert.match(r.body, /console is not built\. Run <code>npm run build<\/code>/);
    }
  });
});
