// The web console against a real `aiva up`, in Debian's Chromium (headless, driven by
// playwright-core): a wrong key shows its message; signing in sets an HttpOnly,
// SameSite=Strict cookie with an expiry and keeps the key out of browser storage; a
// sandbox the e2b SDK creates appears in the list without a reload, and the filters
// (state, metadata) apply; pause, resume and kill from the page are seen by the SDK; the
// sandbox proxy does not pass the session cookie to a sandbox; a sandbox created from the
// page is the SDK's too, and its page follows it live and sets its timeout; a cookie-authenticated change
// without the console's header is a 403; sign-in works by keyboard alone; sign-out ends
// the session (the old cookie is a 401). Every page: no console errors (but the network's
// line for an expected 401/403), and axe finds no violation of the WCAG 2.0/2.1 A and AA
// rules, light and dark. Screenshots go to a temporary directory (printed).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { NotFoundError, Sandbox } from 'e2b';
import type { BrowserContext, Page } from 'playwright-core';
import { aivaUpForFile } from './helpers/aiva-up.js';
import { assertAccessible } from './helpers/console-accessibility.js';
import {
  assertNoConsoleErrors,
  consoleBrowserForFile,
  submitKey,
  until,
  watchedPage,
} from './helpers/console-browser.js';

const server = aivaUpForFile();
const COOKIE = 'aiva_console';
const WAIT_MS = 20_000;

const ui = consoleBrowserForFile('console');

async function sdkState(id: string): Promise<string> {
  try {
    return (await Sandbox.getInfo(id)).state;
  } catch (e) {
    if (e instanceof NotFoundError) return 'gone';
    throw e;
  }
}

describe('web console', () => {
  let context: BrowserContext;
  let page: Page;
  let errors: string[];

  before(async () => {
    context = await ui.browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
    ({ page, errors } = await watchedPage(context));
  });
  after(async () => context?.close());

  test('`/` serves the console; a wrong key shows its message', async () => {
    const started = Date.now();
    const response = await page.goto(server.up.url);
    assert.equal(response?.status(), 200);
    await page.getByLabel('API key').waitFor();
    const interactive = Date.now() - started;
    const dom = await page.evaluate<number>("performance.getEntriesByType('navigation')[0].domInteractive");
    console.log(
      `console sign-in form interactive after ${interactive} ms (domInteractive ${Math.round(dom)} ms)`,
    );
    await ui.screenshot(page, '1-sign-in');
    await assertAccessible(page, 'the sign-in page');

    await submitKey(page, `e2b_${'0'.repeat(40)}`);
    const alert = page.getByRole('alert');
    await alert.waitFor({ timeout: WAIT_MS });
    assert.equal(await alert.textContent(), 'Invalid API key');
    assert.deepEqual(await context.cookies(server.up.url), [], 'no cookie for a wrong key');
    await ui.screenshot(page, '2-wrong-key');
    await assertAccessible(page, 'the sign-in page with its error');
    // The session check on load and the refused key: the network's two 401 lines.
    assertNoConsoleErrors(errors, [401, 401]);
  });

  test('signing in sets an HttpOnly, SameSite=Strict cookie with an expiry; the key is kept nowhere in the browser', async () => {
    await submitKey(page, server.up.apiKey);
    await page.getByRole('heading', { name: 'Sandboxes' }).waitFor({ timeout: WAIT_MS });
    assert.equal(new URL(page.url()).pathname, '/ui/sandboxes');
    const [cookie, ...others] = await context.cookies(server.up.url);
    assert.deepEqual(others, []);
    assert.equal(cookie?.name, COOKIE);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.path, '/');
    const hours = (cookie.expires * 1000 - Date.now()) / 3600_000;
    assert.ok(hours > 11.9 && hours <= 12, `the cookie expires in ${hours} h`);
    assert.ok(!cookie.value.includes(server.up.apiKey));
    // The page's own view (this test's TypeScript has no DOM types: the expression is the page's).
    const stored = await page.evaluate(
      '({ local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }), cookie: document.cookie })',
    );
    assert.deepEqual(
      stored,
      { local: '{}', session: '{}', cookie: '' },
      'no storage, and the cookie is not readable',
    );
    await page.getByText('Live').waitFor({ timeout: WAIT_MS });
    await ui.screenshot(page, '3-sandboxes-empty');
    await assertAccessible(page, 'the empty sandbox list');
    assertNoConsoleErrors(errors);
  });

  test('a sandbox the SDK creates appears without a reload; pause, resume and kill from the page', async () => {
    await page.evaluate('window.notReloaded = true');
    const sbx = await Sandbox.create({ metadata: { made: 'sdk' }, timeoutMs: 300_000 });
    try {
      const row = page.locator(`tr[data-sandbox="${sbx.sandboxId}"]`);
      await row.waitFor({ timeout: WAIT_MS });
      assert.equal(await page.evaluate('window.notReloaded'), true, 'the page was not reloaded');
      const text = await row.textContent();
      assert.match(text ?? '', /running/);
      assert.match(text ?? '', /made=sdk/);
      assert.match(text ?? '', /vCPU/);
      await ui.screenshot(page, '4-sandboxes-live');
      await assertAccessible(page, 'the sandbox list');

      // Filters: by state, by metadata, then back.
      await page.getByLabel('State').selectOption('paused');
      await row.waitFor({ state: 'detached', timeout: WAIT_MS });
      await page.getByLabel('State').selectOption('');
      await row.waitFor({ timeout: WAIT_MS });
      await page.getByLabel('Metadata').fill('made=other');
      await row.waitFor({ state: 'detached', timeout: WAIT_MS });
      await page.getByLabel('Metadata').fill('made=sdk');
      await row.waitFor({ timeout: WAIT_MS });
      await page.getByLabel('Metadata').fill('');

      // Sandbox traffic on the server's own origin never carries the console's session to the sandbox.
      await sbx.files.write(
        '/tmp/echo-cookie.py',
        [
          'import http.server as h',
          'class E(h.BaseHTTPRequestHandler):',
          '    def do_GET(self):',
          "        body = (self.headers.get('cookie') or 'none').encode()",
          '        self.send_response(200)',
          '        self.end_headers()',
          '        self.wfile.write(body)',
          "h.HTTPServer(('0.0.0.0', 8000), E).serve_forever()",
        ].join('\n'),
      );
      await sbx.commands.run('python3 /tmp/echo-cookie.py', { background: true });
      const [cookie] = await context.cookies(server.up.url);
      const echo = async (c: string) => {
        const res = await fetch(`${server.up.url}/`, {
          headers: { 'e2b-sandbox-id': sbx.sandboxId, 'e2b-sandbox-port': '8000', cookie: c },
        });
        return res.status === 200 ? res.text() : `status ${res.status}`;
      };
      await until('the echo server in the sandbox', async () => !(await echo('a=1')).startsWith('status'));
      assert.equal(await echo(`a=1; ${COOKIE}=${cookie?.value}; b=2`), 'a=1; b=2');
      assert.equal(await echo(`${COOKIE}=${cookie?.value}`), 'none');

      await page.getByRole('button', { name: `Pause ${sbx.sandboxId}` }).click();
      await until('the SDK sees it paused', async () => (await sdkState(sbx.sandboxId)) === 'paused');
      await row.getByText('paused', { exact: true }).waitFor({ timeout: WAIT_MS });
      await ui.screenshot(page, '5-sandbox-paused');

      await page.getByRole('button', { name: `Resume ${sbx.sandboxId}` }).click();
      await until('the SDK sees it running', async () => (await sdkState(sbx.sandboxId)) === 'running');
      await row.getByText('running', { exact: true }).waitFor({ timeout: WAIT_MS });
      assert.equal((await sbx.commands.run('echo $((6*7))')).stdout, '42\n', 'the resumed sandbox works');

      await page.getByRole('button', { name: `Kill ${sbx.sandboxId}` }).click();
      await page.getByRole('button', { name: `Confirm kill ${sbx.sandboxId}` }).click();
      await until('the SDK sees it gone', async () => (await sdkState(sbx.sandboxId)) === 'gone');
      await row.waitFor({ state: 'detached', timeout: WAIT_MS });
      assertNoConsoleErrors(errors);
    } finally {
      await sbx.kill().catch(() => {});
    }
  });

  test('a sandbox created from the page is the SDK’s too; its page is live, resumes it, sets its timeout and kills it', async () => {
    await page.getByRole('link', { name: 'New sandbox' }).click();
    await page.getByRole('heading', { name: 'New sandbox' }).waitFor();
    await page.getByLabel('Template').selectOption('base');
    await page.getByLabel('Timeout (seconds)').fill('600');
    for (const [i, [k, v]] of [
      ['made', 'console'],
      ['owner', 'e2e'],
    ].entries()) {
      await page.getByRole('button', { name: 'Add metadata entry' }).click();
      await page.getByLabel(`Metadata entry ${i + 1} name`).fill(k ?? '');
      await page.getByLabel(`Metadata entry ${i + 1} value`).fill(v ?? '');
    }
    await ui.screenshot(page, '6-create');
    await assertAccessible(page, 'the create form');
    await page.getByRole('button', { name: 'Create sandbox' }).click();
    await page.getByRole('heading', { name: /^Sandbox / }).waitFor({ timeout: 60_000 });
    const id = new URL(page.url()).pathname.split('/').pop() ?? '';
    const listed = await Sandbox.list({ query: { metadata: { made: 'console' } } }).nextItems();
    assert.deepEqual(
      listed.map((s) => [s.sandboxId, s.metadata]),
      [[id, { made: 'console', owner: 'e2e' }]],
    );
    const info = await Sandbox.getInfo(id);
    const lifeS = (info.endAt.getTime() - info.startedAt.getTime()) / 1000;
    assert.ok(Math.abs(lifeS - 600) < 5, `the timeout asked for: ${lifeS} s`);
    await page.getByText('running', { exact: true }).waitFor({ timeout: WAIT_MS });
    await ui.screenshot(page, '7-detail');
    await assertAccessible(page, 'the sandbox page');

    // The page is live too: a pause through the SDK shows, and the page resumes it.
    const sbx = await Sandbox.connect(id);
    assert.equal(await sbx.pause(), true);
    const state = page.locator('.facts .state');
    await page.locator('.facts .state', { hasText: 'paused' }).waitFor({ timeout: WAIT_MS });
    await page.getByRole('button', { name: `Resume ${id}` }).click();
    await until('the SDK sees it running', async () => (await sdkState(id)) === 'running');
    await page.locator('.facts .state', { hasText: 'running' }).waitFor({ timeout: WAIT_MS });
    assert.equal(await state.textContent(), 'running');

    // Its timeout, from the page: the SDK sees the new end, and the page shows it.
    await page.getByLabel('Timeout from now (seconds)').fill('900');
    const asked = Date.now();
    await page.getByRole('button', { name: 'Set timeout' }).click();
    await page.getByText('It now ends 900 s from now.').waitFor({ timeout: WAIT_MS });
    const endAt = (await Sandbox.getInfo(id)).endAt.getTime();
    assert.ok(Math.abs(endAt - asked - 900_000) < 10_000, `ends ${(endAt - asked) / 1000} s after the call`);
    await until('the page shows the new end', async () => {
      const shown = await page.locator('.facts time').nth(1).getAttribute('datetime');
      return shown !== null && new Date(shown).getTime() === endAt;
    });
    await assertAccessible(page, 'the sandbox page after setting its timeout');

    await page.getByRole('button', { name: `Kill ${id}` }).click();
    await page.getByRole('button', { name: `Confirm kill ${id}` }).click();
    await page.getByText('This sandbox has ended.').waitFor({ timeout: WAIT_MS });
    assert.equal(await sdkState(id), 'gone');
    // The SDK paused the sandbox under the page's terminal: Chromium logs its cut stream
    // (a pause or kill from the page closes the stream first, and logs nothing).
    const cut = errors.findIndex((e) => /ERR_INCOMPLETE_CHUNKED_ENCODING.*\/process\.Process\/Start/.test(e));
    if (cut >= 0) errors.splice(cut, 1);
    assertNoConsoleErrors(errors);
  });

  test('a change authenticated by the cookie needs the console’s header and this origin (403)', async () => {
    const [cookie] = await context.cookies(server.up.url);
    assert.ok(cookie);
    const body = JSON.stringify({ templateID: 'base' });
    const post = (headers: Record<string, string>) =>
      fetch(`${server.up.url}/sandboxes`, {
        method: 'POST',
        headers: { cookie: `${COOKIE}=${cookie.value}`, 'content-type': 'application/json', ...headers },
        body,
      });
    const bare = await post({});
    assert.equal(bare.status, 403);
    assert.match(((await bare.json()) as { message: string }).message, /X-Aiva-Console: 1/);
    const foreign = await post({ 'x-aiva-console': '1', origin: 'http://attacker.example' });
    assert.equal(foreign.status, 403);
    // The page itself, without the header: the same.
    const fromPage = await page.evaluate(
      async (b) =>
        (
          await fetch('/sandboxes', {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: b,
          })
        ).status,
      body,
    );
    assert.equal(fromPage, 403);
    // Reads need no header.
    const read = await fetch(`${server.up.url}/v2/sandboxes`, {
      headers: { cookie: `${COOKIE}=${cookie.value}` },
    });
    assert.equal(read.status, 200);
    assert.deepEqual(await Sandbox.list().nextItems(), [], 'nothing was created');
    assertNoConsoleErrors(errors, [403]);
  });

  test('dark theme, signed in by keyboard: the pages pass axe too', async () => {
    const dark = await ui.browser.newContext({ viewport: { width: 1366, height: 768 }, colorScheme: 'dark' });
    try {
      const { page: darkPage, errors: darkErrors } = await watchedPage(dark);
      await darkPage.goto(server.up.url);
      // By keyboard alone: the key field is the first stop, Enter submits.
      await darkPage.getByLabel('API key').waitFor();
      await darkPage.keyboard.press('Tab');
      assert.equal(await darkPage.evaluate('document.activeElement.id'), 'api-key');
      await darkPage.keyboard.type(server.up.apiKey);
      await darkPage.keyboard.press('Enter');
      await darkPage.getByText('No sandboxes yet.').waitFor({ timeout: WAIT_MS });
      await ui.screenshot(darkPage, '8-dark-sandboxes');
      await assertAccessible(darkPage, 'the sandbox list, dark');
      await darkPage.getByRole('link', { name: 'New sandbox' }).click();
      await darkPage.getByRole('heading', { name: 'New sandbox' }).waitFor();
      await assertAccessible(darkPage, 'the create form, dark');
      // A console address that is no page says so (and `/` is the list).
      await darkPage.goto(`${server.up.url}/ui/no-such-page`);
      await darkPage.getByRole('heading', { name: 'Page not found' }).waitFor({ timeout: WAIT_MS });
      await assertAccessible(darkPage, 'the not-found page, dark');
      await darkPage.goto(server.up.url);
      await darkPage.getByRole('heading', { name: 'Sandboxes' }).waitFor({ timeout: WAIT_MS });
      assert.equal(new URL(darkPage.url()).pathname, '/ui/sandboxes');
      assertNoConsoleErrors(darkErrors, [401]);
    } finally {
      await dark.close();
    }
  });

  test('sign-out ends the session: the old cookie is a 401', async () => {
    const [cookie] = await context.cookies(server.up.url);
    assert.ok(cookie);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor({ timeout: WAIT_MS });
    assert.deepEqual(await context.cookies(server.up.url), [], 'the cookie is cleared');
    const old = await fetch(`${server.up.url}/v2/sandboxes`, {
      headers: { cookie: `${COOKIE}=${cookie.value}` },
    });
    assert.equal(old.status, 401);
    await ui.screenshot(page, '9-signed-out');
    assertNoConsoleErrors(errors);
  });
});
