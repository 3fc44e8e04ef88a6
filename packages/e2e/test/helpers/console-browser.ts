// What the console's e2e files share: Debian's Chromium launched once per file, a
// screenshot directory, pages whose console errors are collected, signing in, and the
// check that nothing but the expected network lines reached the console.
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

export interface ConsoleBrowser {
  readonly browser: Browser;
  /** Saves a full-page screenshot as `<name>.png` in the file's screenshot directory. */
  screenshot(page: Page, name: string): Promise<void>;
}

/** Launches Chromium before the file's tests (closed after them); screenshots go to a temporary directory it prints. */
export function consoleBrowserForFile(what: string): ConsoleBrowser {
  let browser: Browser | undefined;
  let shots = '';
  before(async () => {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true });
    shots = await mkdtemp(join(tmpdir(), `aiva-${what}-screenshots-`));
    console.log(`${what} screenshots: ${shots} (Chromium ${browser.version()})`);
  });
  after(async () => browser?.close());
  return {
    get browser() {
      assert.ok(browser, 'the browser is launched before the tests');
      return browser;
    },
    async screenshot(page, name) {
      await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    },
  };
}

/** A new page whose console errors, warnings and uncaught exceptions are collected in `errors`. */
export async function watchedPage(context: BrowserContext): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning')
      errors.push(`${m.type()}: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  return { page, errors };
}

/** Fills the sign-in form with `key` and submits it (the page shows the form). */
export async function submitKey(page: Page, key: string): Promise<void> {
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/**
 * Opens the console at `url` and signs in with `key`, waiting for the sandbox list. The
 * page's session check before signing in is a 401 the network logs (unless the context
 * still had a session): that line is taken out of `errors`, the others stay.
 */
export async function signIn(
  page: Page,
  errors: string[],
  url: string,
  key: string,
  waitMs: number,
): Promise<void> {
  await page.goto(url);
  await submitKey(page, key);
  await page.getByRole('heading', { name: 'Sandboxes' }).waitFor({ timeout: waitMs });
  const check = errors.findIndex((e) => e.includes('status of 401'));
  if (check >= 0) errors.splice(check, 1);
}

/** No console error but the network's own line for each `expected` status (each must be there). */
export function assertNoConsoleErrors(errors: string[], expected: number[] = []): void {
  const left = errors.splice(0);
  for (const status of expected) {
    const i = left.findIndex((e) => e.includes(`status of ${status}`));
    assert.ok(i >= 0, `the ${status} expected in the console: ${JSON.stringify(left)}`);
    left.splice(i, 1);
  }
  assert.deepEqual(left, [], 'console errors on the page');
}

/** Waits until `check` holds, failing with `what` after `ms`. */
export async function until(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A new watched page of `context`, signed in at `url` with `key`. */
export async function signedInPage(
  context: BrowserContext,
  url: string,
  key: string,
  waitMs = 30_000,
): Promise<{ page: Page; errors: string[] }> {
  const { page, errors } = await watchedPage(context);
  await signIn(page, errors, url, key, waitMs);
  return { page, errors };
}
