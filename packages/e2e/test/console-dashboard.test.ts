// The console's dashboard, the sandbox page's charts, log tail, snapshot and fork, the
// create form's env vars, metadata and network policy, and the operator's view of every
// team, against a real `aiva up` in Debian's Chromium (headless, playwright-core): the
// dashboard's running count is the SDK's and follows a create without a reload; a
// sandbox's page shows CPU and memory samples and console log lines; a snapshot taken
// from the page is one the SDK creates from, a fork from the page is a running sandbox; a
// sandbox made by the form has the env var (`echo $FOO`) and the network policy asked
// for, and a bad destination shows the API's message; the operator lists another team's
// sandbox with its team, a team key may not (403), nor read another team's stats. No
// console errors (but the expected 400/403 lines); axe (WCAG 2.0/2.1 A and AA) on each
// page, light and dark. Screenshots go to a temporary directory (printed).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from 'e2b';
import type { BrowserContext, Page } from 'playwright-core';
import { aivaUpForFile } from './helpers/aiva-up.js';
import { assertAccessible } from './helpers/console-accessibility.js';
import {
  assertNoConsoleErrors,
  consoleBrowserForFile,
  signedInPage,
  until,
} from './helpers/console-browser.js';

const server = aivaUpForFile();
const WAIT_MS = 30_000;

const ui = consoleBrowserForFile('console-dashboard');

async function sdkRunning(): Promise<number> {
  return (await Sandbox.list({ query: { state: ['running'] } }).nextItems()).length;
}

async function api(path: string, key = server.up.apiKey, init: RequestInit = {}): Promise<Response> {
  return fetch(`${server.up.url}${path}`, {
    ...init,
    headers: { 'x-api-key': key, 'content-type': 'application/json', ...init.headers },
  });
}

describe('console dashboard and sandbox page', () => {
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  const made: string[] = [];

  before(async () => {
    context = await ui.browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
    ({ page, errors } = await signedInPage(context, server.up.url, server.up.apiKey));
  });
  after(async () => {
    for (const id of made) await Sandbox.kill(id).catch(() => {});
    await context?.close();
  });

  test('the dashboard’s running count is the SDK’s, and follows a create without a reload', async () => {
    await page.getByRole('link', { name: 'Dashboard' }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor({ timeout: WAIT_MS });
    const running = page.locator('.tile[data-state="running"] dd');
    await running.waitFor({ timeout: WAIT_MS });
    assert.equal(await running.textContent(), String(await sdkRunning()));
    await page.evaluate('window.notReloaded = true');

    const sbx = await Sandbox.create({ timeoutMs: 300_000 });
    made.push(sbx.sandboxId);
    const want = String(await sdkRunning());
    assert.equal(want, '1');
    await until('the dashboard counts it', async () => (await running.textContent()) === want);
    assert.equal(await page.evaluate('window.notReloaded'), true, 'the page was not reloaded');
    // The create is in the creates chart and its latency in the other (their text alternatives).
    await page.getByText(/^1 created, 0 failed to start/).waitFor({ timeout: WAIT_MS });
    await page.getByText(/^Latest minute with creates: p50 \d/).waitFor({ timeout: WAIT_MS });
    // The operator (the first team, `aiva up`'s key) sees the node's sandboxes.
    await page.getByText('Every team’s sandboxes (operator).').waitFor();
    const nodeRow = page.getByRole('table', { name: 'Capacity per node' }).locator('tbody tr');
    assert.equal(await nodeRow.count(), 1);
    assert.match((await nodeRow.textContent()) ?? '', /1/);
    // A chart's table alternative lists the values.
    await page.getByText('Creates and failures per minute: the values as a table').click();
    const table = page.getByRole('table', { name: 'Creates and failures per minute' });
    await table.waitFor();
    assert.ok((await table.locator('tbody tr').count()) >= 1);
    await ui.screenshot(page, '1-dashboard');
    await assertAccessible(page, 'the dashboard');
    assertNoConsoleErrors(errors);
  });

  test('a sandbox page shows CPU and memory samples and console log lines; snapshot and fork from it', async () => {
    const id = made[0] ?? '';
    await page.goto(`${server.up.url}/ui/sandboxes/${id}`);
    await page.getByRole('heading', { name: `Sandbox ${id}` }).waitFor({ timeout: WAIT_MS });
    await page.getByText(/^\d+\.\d % of \d+ vCPU now\.$/).waitFor({ timeout: WAIT_MS });
    await page
      .getByText(/^[\d.]+ [MG]iB of [\d.]+ [MG]iB used now\./)
      .first()
      .waitFor({ timeout: WAIT_MS });
    await page.getByText('Memory: the values as a table').click();
    const memory = page.getByRole('table', { name: 'Memory' });
    await memory.waitFor();
    assert.match((await memory.locator('tbody tr').first().textContent()) ?? '', /[\d.]+ [MG]iB/);
    const log = page.getByRole('log', { name: 'Console log lines' });
    await log.locator('.log-line').first().waitFor({ timeout: WAIT_MS });
    assert.ok((await log.locator('.log-line').count()) >= 1);
    await ui.screenshot(page, '2-sandbox-page');
    await assertAccessible(page, 'the sandbox page with its charts and log');

    // Snapshot: the page shows the new snapshot's id, which the SDK creates a sandbox from.
    await page.getByRole('button', { name: 'Snapshot', exact: true }).click();
    const saved = page.locator('.snapshot-id');
    await saved.waitFor({ timeout: 120_000 });
    const snapshotId = (await saved.textContent()) ?? '';
    assert.ok(snapshotId.length > 0);
    const listed = await (await api('/snapshots')).json();
    assert.ok(
      (listed as { snapshotID: string }[]).some((s) => s.snapshotID === snapshotId),
      `${snapshotId} in ${JSON.stringify(listed)}`,
    );
    const copy = await Sandbox.create(snapshotId, { timeoutMs: 120_000 });
    made.push(copy.sandboxId);
    assert.equal((await copy.commands.run('echo $((6*7))')).stdout, '42\n');

    // Fork: a link to the new sandbox, which runs.
    await page.getByRole('button', { name: 'Fork', exact: true }).click();
    const forked = page.getByRole('status').locator('a code');
    await forked.waitFor({ timeout: 120_000 });
    const forkId = ((await forked.textContent()) ?? '').trim();
    assert.notEqual(forkId, id);
    made.push(forkId);
    assert.equal((await Sandbox.getInfo(forkId)).state, 'running');
    await ui.screenshot(page, '3-snapshot-fork');
    await assertAccessible(page, 'the sandbox page after a snapshot and a fork');
    assertNoConsoleErrors(errors);
  });

  test('the create form: env vars, metadata rows and network policy reach the sandbox; a bad destination shows the API’s message', async () => {
    await page.goto(`${server.up.url}/ui/sandboxes/new`);
    await page.getByRole('heading', { name: 'New sandbox' }).waitFor({ timeout: WAIT_MS });
    await page.getByRole('button', { name: 'Add environment variable' }).click();
    await page.getByLabel('Environment variable 1 name').fill('FOO');
    await page.getByLabel('Environment variable 1 value').fill('from the console');
    await page.getByRole('button', { name: 'Add metadata entry' }).click();
    await page.getByLabel('Metadata entry 1 name').fill('made');
    await page.getByLabel('Metadata entry 1 value').fill('form');
    await page.getByLabel('Allow internet access').uncheck();
    await page.getByLabel(/^Always allowed destinations/).fill('203.0.113.7');
    await page.getByLabel(/^Denied destinations/).fill('999.1.1.1');
    await ui.screenshot(page, '4-create-form');
    await assertAccessible(page, 'the create form with rows');
    await page.getByRole('button', { name: 'Create sandbox' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor({ timeout: 60_000 });
    assert.match((await alert.textContent()) ?? '', /999\.1\.1\.1.*not a valid IPv4 address/);
    assert.equal(new URL(page.url()).pathname, '/ui/sandboxes/new', 'still on the form');
    assertNoConsoleErrors(errors, [400]);

    await page.getByLabel(/^Denied destinations/).fill('198.51.100.0/24');
    await page.getByRole('button', { name: 'Create sandbox' }).click();
    await page.getByRole('heading', { name: /^Sandbox / }).waitFor({ timeout: 60_000 });
    const id = new URL(page.url()).pathname.split('/').pop() ?? '';
    made.push(id);
    const sbx = await Sandbox.connect(id);
    assert.equal((await sbx.commands.run('echo $FOO')).stdout, 'from the console\n');
    const info = (await (await api(`/sandboxes/${id}`)).json()) as {
      metadata: Record<string, string>;
      allowInternetAccess: boolean | null;
      network?: { allowOut?: string[]; denyOut?: string[] };
    };
    assert.deepEqual(info.metadata, { made: 'form' });
    assert.equal(info.allowInternetAccess, false);
    assert.deepEqual(info.network?.allowOut, ['203.0.113.7']);
    assert.deepEqual(info.network?.denyOut, ['198.51.100.0/24']);
    assertNoConsoleErrors(errors);
  });

  test('the operator lists every team’s sandboxes with their team; a team key may not, nor read another team’s stats', async () => {
    const res = await api('/v1/teams', server.up.apiKey, {
      method: 'POST',
      body: JSON.stringify({ name: 'console-other' }),
    });
    assert.equal(res.status, 201);
    const other = (await res.json()) as { teamId: string; key: string };
    const theirs = await Sandbox.create({ apiKey: other.key, timeoutMs: 300_000 });
    try {
      await page.getByRole('link', { name: 'Sandboxes', exact: true }).click();
      await page.getByRole('heading', { name: 'Sandboxes' }).waitFor({ timeout: WAIT_MS });
      const row = page.locator(`tr[data-sandbox="${theirs.sandboxId}"]`);
      assert.equal(await row.count(), 0, 'this team’s list has only its own');
      await page.getByLabel('Teams').selectOption('all');
      await row.waitFor({ timeout: WAIT_MS });
      assert.match((await row.textContent()) ?? '', new RegExp(other.teamId));
      assert.match((await row.textContent()) ?? '', /another team’s/);
      await page.getByLabel(/^Team(?!s)/).selectOption(other.teamId);
      const own = page.locator(`tr[data-sandbox="${made[0]}"]`);
      await own.waitFor({ state: 'detached', timeout: WAIT_MS });
      await ui.screenshot(page, '5-every-team');
      await assertAccessible(page, 'the list of every team’s sandboxes');

      // The other team's key: its own stats only; no list of every team.
      const stats = await api('/v1/sandboxes/stats?range=15m', other.key);
      assert.equal(stats.status, 200);
      const body = (await stats.json()) as { scope: string; states: { running: number }; nodes?: unknown };
      assert.equal(body.scope, 'team');
      assert.equal(body.states.running, 1);
      assert.equal(body.nodes, undefined);
      const foreign = await api(`/v1/sandboxes/stats?teamID=${encodeURIComponent('team_x')}`, other.key);
      assert.equal(foreign.status, 403);
      assert.equal((await api('/v1/sandboxes/stats?range=2y', other.key)).status, 400);
      const stream = await api('/v1/sandboxes/stream?teams=all', other.key);
      assert.equal(stream.status, 403);
      assert.match(((await stream.json()) as { message: string }).message, /operator/);
      // The session says who is the operator.
      const session = await page.evaluate(async () => (await fetch('/v1/console/session')).json());
      assert.equal((session as { operator: boolean }).operator, true);
      assertNoConsoleErrors(errors);
    } finally {
      await theirs.kill().catch(() => {});
    }
  });

  test('dark theme: the dashboard and the sandbox page pass axe', async () => {
    const dark = await ui.browser.newContext({ viewport: { width: 1366, height: 768 }, colorScheme: 'dark' });
    try {
      const { page: darkPage, errors: darkErrors } = await signedInPage(
        dark,
        server.up.url,
        server.up.apiKey,
      );
      await darkPage.getByRole('link', { name: 'Dashboard' }).click();
      await darkPage.locator('.tile[data-state="running"] dd').waitFor({ timeout: WAIT_MS });
      await darkPage.getByText(/created, \d+ failed to start/).waitFor({ timeout: WAIT_MS });
      await ui.screenshot(darkPage, '6-dark-dashboard');
      await assertAccessible(darkPage, 'the dashboard, dark');
      const id = made[0] ?? '';
      await darkPage.goto(`${server.up.url}/ui/sandboxes/${id}`);
      await darkPage.getByText(/of \d+ vCPU now\./).waitFor({ timeout: WAIT_MS });
      await darkPage.getByRole('log', { name: 'Console log lines' }).waitFor({ timeout: WAIT_MS });
      await ui.screenshot(darkPage, '7-dark-sandbox-page');
      await assertAccessible(darkPage, 'the sandbox page, dark');
      assertNoConsoleErrors(darkErrors);
    } finally {
      await dark.close();
    }
  });
});
