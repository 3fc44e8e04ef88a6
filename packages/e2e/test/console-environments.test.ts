// The console's Environments page against a real `aiva up` (containers), in Debian's
// Chromium: with none, the page says how to make one (`aiva init`); an environment made,
// started and deployed through aiva's API (its service echoes a known line) is listed as
// running with a link to its sandbox; its page shows that line in the service log tail
// and its console log on demand; Stop in the page stops it (the API agrees), a Remove
// asked of a list that is out of date is refused (409) with the server's reason in an
// alert, Stop and Start by keyboard (the focus kept on the row's action), and Remove,
// confirmed by keyboard, removes it (the API then answers 404). axe light and dark, no
// console errors but that 409 (and the removed one's page's 404); screenshots go to a
// temporary directory (printed).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from 'e2b';
import type { BrowserContext, Locator, Page } from 'playwright-core';
import { aivaUpForFile } from './helpers/aiva-up.js';
import { assertAccessible } from './helpers/console-accessibility.js';
import {
  assertNoConsoleErrors,
  consoleBrowserForFile,
  signedInPage,
  until,
} from './helpers/console-browser.js';

const server = aivaUpForFile();
const WAIT_MS = 20_000;
/** Starting an environment makes (or resumes) its sandbox and mounts its volume. */
const START_MS = 90_000;
const NAME = 'console-web';
const LINE = 'hello-from-service';
/** Where the environment's supervisor writes its service's output (environment-supervisor.ts). */
const SERVICE_LOG = '/var/log/aiva/service.log';

const ui = consoleBrowserForFile('console-environments');

interface Env {
  name: string;
  state: string;
  desiredState: string;
  sandboxID: string | null;
  volumeID: string;
  settings: Record<string, string>;
}

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${server.up.url}${path}`, {
    method,
    headers: {
      'x-api-key': server.up.apiKey,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(START_MS),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function apiEnv(): Promise<Env> {
  const r = await api('GET', `/v1/environments/${NAME}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body as Env;
}

/** Opens the page from the nav (read afresh: the same page again is a reload). */
async function openEnvironments(page: Page): Promise<void> {
  if (new URL(page.url()).pathname === '/ui/environments') await page.reload();
  else
    await page
      .getByRole('navigation', { name: 'Main' })
      .getByRole('link', { name: 'Environments', exact: true })
      .click();
  await page.getByRole('heading', { level: 1, name: 'Environments' }).waitFor({ timeout: WAIT_MS });
  await page.getByText('Loading…').waitFor({ state: 'detached', timeout: WAIT_MS });
}

/** Waits until the row's State cell reads `state`. */
async function rowState(row: Locator, state: string, ms = START_MS): Promise<void> {
  await row.locator(`.state-${state}`).waitFor({ timeout: ms });
}

/** Screenshot and axe, light and dark. */
async function checkBothThemes(page: Page, name: string, what: string): Promise<void> {
  await page.emulateMedia({ colorScheme: 'light' });
  await ui.screenshot(page, name);
  await assertAccessible(page, what);
  await page.emulateMedia({ colorScheme: 'dark' });
  await ui.screenshot(page, `${name}-dark`);
  await assertAccessible(page, `${what}, dark`);
  await page.emulateMedia({ colorScheme: 'light' });
}

describe('console environments page', { timeout: 10 * 60_000 }, () => {
  let context: BrowserContext;
  let page: Page;
  let errors: string[];

  before(async () => {
    context = await ui.browser.newContext({ viewport: { width: 1400, height: 900 }, colorScheme: 'light' });
    ({ page, errors } = await signedInPage(context, server.up.url, server.up.apiKey, WAIT_MS));
  });
  after(async () => {
    await context?.close();
    // A failed test leaves nothing behind for the host leak check: the environment goes.
    await api('DELETE', `/v1/environments/${NAME}?force=true`).catch(() => undefined);
  });

  test('with none, the page says to make one with aiva init', async () => {
    await openEnvironments(page);
    const empty = page.getByText(/^No environments yet/);
    await empty.waitFor({ timeout: WAIT_MS });
    assert.match((await empty.textContent()) ?? '', /aiva init <name>/);
    await checkBothThemes(page, 'environments-empty', 'the Environments page with none');
    assertNoConsoleErrors(errors);
  });

  test('a running environment: listed with its sandbox, its service log and console log in its page', async () => {
    assert.equal((await api('POST', '/v1/environments', { name: NAME })).status, 201);
    const set = await api('PATCH', `/v1/environments/${NAME}/config`, { set: { 'env.GREETING': 'hi' } });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    const started = await api('POST', `/v1/environments/${NAME}/start`, {});
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const deployed = await api('POST', `/v1/environments/${NAME}/deploy`, {
      cmd: `sh -c 'echo ${LINE}; sleep 600'`,
    });
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    const env = await apiEnv();
    assert.equal(env.state, 'running');
    assert.ok(env.sandboxID);

    await openEnvironments(page);
    const row = page.locator(`tr[data-environment="${NAME}"]`);
    await rowState(row, 'running', WAIT_MS);
    const text = (await row.textContent()) ?? '';
    assert.match(text, /base/, 'its template');
    assert.ok(text.includes(env.volumeID), 'its volume');
    assert.match(text, /env\.GREETING=hi/, 'its settings');
    assert.match(text, /cmd=sh -c/, 'its service command');
    const sandboxLink = row.getByRole('link', { name: `Sandbox ${env.sandboxID} of ${NAME}` });
    assert.equal(await sandboxLink.getAttribute('href'), `/ui/sandboxes/${env.sandboxID}`);
    await checkBothThemes(page, 'environments-running', 'the Environments page with one running');

    // Its sandbox's page, from the link.
    await sandboxLink.click();
    await page
      .getByRole('heading', { level: 1, name: new RegExp(`Sandbox ${env.sandboxID}`) })
      .waitFor({ timeout: WAIT_MS });
    await page.locator('.facts').waitFor({ timeout: WAIT_MS });
    assert.match(
      (await page.locator('.facts').textContent()) ?? '',
      new RegExp(`aiva\\.environment.*${NAME}`),
    );

    // Its own page: the fields, the service log tail (read again while open), the console log on demand.
    await openEnvironments(page);
    await row.getByRole('link', { name: NAME, exact: true }).click();
    await page.waitForURL(new RegExp(`/ui/environments/${NAME}$`));
    await page.getByRole('heading', { level: 1, name: `Environment ${NAME}` }).waitFor({ timeout: WAIT_MS });
    const serviceLog = page.getByRole('log', { name: 'Service log lines' });
    await serviceLog.waitFor({ timeout: WAIT_MS });
    await until('the service’s line in its log', async () =>
      ((await serviceLog.textContent()) ?? '').includes(LINE),
    );
    // A line written now shows without reloading: the tail is read again while the page is open.
    const later = `later-line-${Date.now()}`;
    const sandbox = await Sandbox.connect(env.sandboxID);
    await sandbox.commands.run(`echo ${later} >> ${SERVICE_LOG}`, { user: 'root' });
    await until('a later line in the shown log', async () =>
      ((await serviceLog.textContent()) ?? '').includes(later),
    );
    await page.getByRole('button', { name: 'Show the console log' }).click();
    const consoleLog = page.getByRole('log', { name: 'Console log lines' });
    await consoleLog.waitFor({ timeout: WAIT_MS });
    assert.ok(((await consoleLog.textContent()) ?? '').trim().length > 0, 'console lines shown');
    assert.match(
      (await page.locator('.facts').textContent()) ?? '',
      new RegExp(`running.*base.*${env.sandboxID}.*${env.volumeID}`, 's'),
    );
    await checkBothThemes(page, 'environment-detail', 'an environment’s page');
    assertNoConsoleErrors(errors);
  });

  test('Stop, a refused Remove (409), Start, and Remove confirmed by keyboard', async () => {
    await openEnvironments(page);
    const row = page.locator(`tr[data-environment="${NAME}"]`);
    await rowState(row, 'running', WAIT_MS);

    await row.getByRole('button', { name: `Stop ${NAME}` }).click();
    await rowState(row, 'stopped');
    const stopped = await apiEnv();
    assert.equal(stopped.state, 'stopped');
    assert.equal(stopped.desiredState, 'stopped');
    // Its sandbox is kept (shelved): still linked, as the API names it.
    assert.equal(
      await row.getByRole('link', { name: /^Sandbox / }).count(),
      stopped.sandboxID ? 1 : 0,
      `the sandbox link of a stopped environment whose sandbox is ${stopped.sandboxID}`,
    );

    // Started elsewhere (the CLI, say) while the page still shows it stopped: a plain
    // Remove is refused, and the alert says why; the list is read again.
    assert.equal((await api('POST', `/v1/environments/${NAME}/start`, {})).status, 200);
    await row.getByRole('button', { name: `Remove ${NAME}` }).click();
    await row.getByRole('button', { name: `Confirm remove ${NAME}` }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor({ timeout: WAIT_MS });
    assert.match((await alert.textContent()) ?? '', /is running/);
    await rowState(row, 'running', WAIT_MS);
    assert.equal((await apiEnv()).state, 'running', 'nothing removed');
    await ui.screenshot(page, 'environments-refused');
    await assertAccessible(page, 'the Environments page with a refusal');

    // By keyboard: Enter on Stop; once stopped the focus is on Start, and Enter starts it.
    await row.getByRole('button', { name: `Stop ${NAME}` }).focus();
    await page.keyboard.press('Enter');
    await rowState(row, 'stopped');
    const focused = () => page.evaluate<string>("document.activeElement?.getAttribute('aria-label') ?? ''");
    await until('the focus on Start', async () => (await focused()) === `Start ${NAME}`, WAIT_MS);
    await page.keyboard.press('Enter');
    await rowState(row, 'running');
    const again = await apiEnv();
    assert.equal(again.state, 'running');
    assert.equal(again.desiredState, 'running');
    assert.equal(await page.getByRole('alert').count(), 0, 'the refusal is gone once an action worked');

    // By keyboard: Enter asks, Escape takes it back, Enter twice removes (with force: it runs).
    const remove = row.getByRole('button', { name: `Remove ${NAME}` });
    await remove.focus();
    await page.keyboard.press('Enter');
    const confirm = row.getByRole('button', { name: `Confirm force remove ${NAME} (it runs)` });
    await confirm.waitFor();
    await page.keyboard.press('Escape');
    await remove.waitFor();
    await page.keyboard.press('Enter');
    await confirm.waitFor();
    await page.keyboard.press('Enter');
    await row.waitFor({ state: 'detached', timeout: START_MS });
    await page.getByText(`Removed ${NAME}.`).waitFor();
    await page.getByText(/^No environments yet/).waitFor();
    assert.equal((await api('GET', `/v1/environments/${NAME}`)).status, 404);
    const list = (await api('GET', '/v1/environments')).body as Env[];
    assert.deepEqual(list, []);
    // Its page says it is gone.
    await page.goto(`${server.up.url}/ui/environments/${NAME}`);
    await page.getByText(`There is no environment ${NAME}`).waitFor({ timeout: WAIT_MS });
    assertNoConsoleErrors(errors, [409, 404]);
  });
});
