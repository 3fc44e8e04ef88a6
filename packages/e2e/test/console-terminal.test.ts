// The sandbox page's terminal and file browser against a real `aiva up`, in Debian's
// Chromium (headless, driven by playwright-core): `echo $((6*7))` typed into the terminal
// (xterm.js over envd's PTY) prints 42; envd is reached on the server's origin with E2B's
// routing headers and the sandbox's access token, never with the session cookie; Escape
// then Tab leaves the terminal; a directory is entered and left; a file uploaded through
// the page is the SDK's to read, downloads back byte for byte, and is gone (for the SDK)
// once deleted. No console errors; axe (WCAG 2.0/2.1 A and AA) finds nothing with the
// terminal open, light and dark. Screenshots go to a temporary directory (printed).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from 'e2b';
import type { BrowserContext, Page, Request } from 'playwright-core';
import { aivaUpForFile } from './helpers/aiva-up.js';
import { assertAccessible } from './helpers/console-accessibility.js';
import { consoleBrowserForFile, signIn, watchedPage } from './helpers/console-browser.js';

const server = aivaUpForFile();
const WAIT_MS = 30_000;

const ui = consoleBrowserForFile('console-terminal');
let sbx: Sandbox;

/** A signed-in page whose console errors, uncaught exceptions and envd requests are collected. */
async function signedInPage(
  context: BrowserContext,
): Promise<{ page: Page; errors: string[]; toEnvd: Request[] }> {
  const { page, errors } = await watchedPage(context);
  const toEnvd: Request[] = [];
  page.on('request', (r) => {
    if (r.headers()['e2b-sandbox-id'] !== undefined) toEnvd.push(r);
  });
  await signIn(page, errors, server.up.url, server.up.apiKey, WAIT_MS);
  return { page, errors, toEnvd };
}

/** Opens the sandbox's page and waits for its shell; prints how long that took (not asserted). */
async function openSandboxPage(page: Page): Promise<void> {
  const started = Date.now();
  await page.goto(`${server.up.url}/ui/sandboxes/${sbx.sandboxId}`);
  await page.getByRole('heading', { name: 'Terminal' }).waitFor({ timeout: WAIT_MS });
  await page
    .getByRole('status')
    .filter({ hasText: /^Connected$/ })
    .waitFor({ timeout: WAIT_MS });
  console.log(`sandbox page: terminal connected ${Date.now() - started} ms after navigation`);
}

/** The terminal's rows as xterm.js renders them, one string a row. */
async function terminalRows(page: Page): Promise<string[]> {
  return (await page.locator('.xterm-rows > div').allTextContents()).map((r) =>
    r.replace(/\u00a0/g, ' ').trimEnd(),
  );
}

describe('the sandbox page: terminal and files', () => {
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  let toEnvd: Request[];

  before(async () => {
    // In the suite's hook: the file's own hooks may not have pointed the SDK at the server yet.
    sbx = await Sandbox.create({ timeoutMs: 300_000 });
    await sbx.files.makeDir('/home/user/inner');
    await sbx.files.write('/home/user/inner/nested.txt', 'nested');
    context = await ui.browser.newContext({
      viewport: { width: 1280, height: 900 },
      colorScheme: 'light',
      acceptDownloads: true,
    });
    ({ page, errors, toEnvd } = await signedInPage(context));
  });
  after(async () => {
    await context?.close();
    await sbx?.kill();
  });

  test('the terminal runs `echo $((6*7))` and shows 42; envd gets the access token, not the cookie', async () => {
    await openSandboxPage(page);
    await page.locator('[data-terminal]').click();
    await page.keyboard.type('echo $((6*7))');
    await page.keyboard.press('Enter');
    const deadline = Date.now() + WAIT_MS;
    let rows = await terminalRows(page);
    while (!rows.includes('42')) {
      assert.ok(Date.now() < deadline, `no row "42" in the terminal: ${JSON.stringify(rows)}`);
      await new Promise((r) => setTimeout(r, 200));
      rows = await terminalRows(page);
    }
    assert.ok(
      rows.some((r) => r.endsWith('echo $((6*7))')),
      `the typed line is echoed: ${JSON.stringify(rows)}`,
    );
    await ui.screenshot(page, '1-terminal');

    // Escape, then Tab: the focus leaves the terminal (no keyboard trap).
    assert.equal(await page.evaluate('document.activeElement.className'), 'xterm-helper-textarea');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Tab');
    assert.notEqual(await page.evaluate('document.activeElement.className'), 'xterm-helper-textarea');

    assert.ok(toEnvd.length >= 3, `requests to envd: ${toEnvd.length}`);
    for (const r of toEnvd) {
      const h = await r.allHeaders();
      assert.equal(h['e2b-sandbox-id'], sbx.sandboxId);
      assert.equal(h['e2b-sandbox-port'], '49983');
      assert.ok(h['x-access-token'], `${r.url()} carries the envd access token`);
      assert.equal(h.cookie, undefined, `${r.url()} carries no cookie`);
      assert.equal(new URL(r.url()).origin, new URL(server.up.url).origin, 'envd on the same origin');
    }
    await assertAccessible(page, 'the sandbox page with its terminal');
    assert.deepEqual(errors.splice(0), [], 'console errors on the page');
  });

  test('the file browser enters a directory, uploads, downloads and deletes a file', async () => {
    // The home directory, then into inner/ and back up.
    await page.locator('[data-directory]').filter({ hasText: '/home/user' }).waitFor({ timeout: WAIT_MS });
    await page.getByRole('button', { name: 'inner/' }).click();
    await page.locator('tr[data-file="nested.txt"]').waitFor({ timeout: WAIT_MS });
    assert.equal(await page.locator('[data-directory]').textContent(), '/home/user/inner');
    await page.getByRole('button', { name: 'Up', exact: true }).click();
    await page.getByRole('button', { name: 'inner/' }).waitFor({ timeout: WAIT_MS });

    // Upload: arbitrary bytes, read back by the SDK.
    const bytes = randomBytes(64 * 1024 + 7);
    await page.getByLabel('Upload a file').setInputFiles({
      name: 'from-console.bin',
      mimeType: 'application/octet-stream',
      buffer: bytes,
    });
    const row = page.locator('tr[data-file="from-console.bin"]');
    await row.waitFor({ timeout: WAIT_MS });
    assert.match((await row.textContent()) ?? '', /64\.0 KiB/);
    const stored = await sbx.files.read('/home/user/from-console.bin', { format: 'bytes' });
    assert.ok(Buffer.from(stored).equals(bytes), 'the SDK reads the uploaded bytes');
    await ui.screenshot(page, '2-files');
    await assertAccessible(page, 'the file browser with a file');

    // Download: the same bytes.
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: WAIT_MS }),
      page.getByRole('button', { name: 'Download from-console.bin' }).click(),
    ]);
    assert.equal(download.suggestedFilename(), 'from-console.bin');
    const saved = await download.path();
    assert.ok((await readFile(saved)).equals(bytes), 'the downloaded bytes are the uploaded ones');

    // Delete, asked once more.
    await page.getByRole('button', { name: 'Delete from-console.bin' }).click();
    await page.getByRole('button', { name: 'Confirm delete from-console.bin' }).click();
    await row.waitFor({ state: 'detached', timeout: WAIT_MS });
    assert.equal(await sbx.files.exists('/home/user/from-console.bin'), false, 'gone for the SDK');
    assert.deepEqual(errors.splice(0), [], 'console errors on the page');
  });

  test('dark theme: the sandbox page with its terminal passes axe', async () => {
    const dark = await ui.browser.newContext({ viewport: { width: 1366, height: 768 }, colorScheme: 'dark' });
    try {
      const { page: darkPage, errors: darkErrors } = await signedInPage(dark);
      await openSandboxPage(darkPage);
      await ui.screenshot(darkPage, '3-terminal-dark');
      await assertAccessible(darkPage, 'the sandbox page with its terminal, dark');
      assert.deepEqual(darkErrors, [], 'console errors on the dark page');
    } finally {
      await dark.close();
    }
  });
});
