// The console's resource pages against a real `aiva up`, in Debian's Chromium (headless,
// driven by playwright-core): each page of the nav opens, has no console errors and passes
// axe (WCAG 2.0/2.1 A and AA), light and dark; an API key made in the page works from Node
// (200) until it is revoked in the page (401); a template built from a Dockerfile typed in
// the page streams its log to ready and is what the SDK's sandboxes start from; a snapshot
// starts a sandbox and is deleted from its page; the events and audit pages show what
// happened; a key of another team sees no Nodes entry (its page says "operators only"),
// and a key with the sandboxes scope alone sees only its pages. Screenshots go to a
// temporary directory (printed).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from 'e2b';
import type { BrowserContext, Page } from 'playwright-core';
import { aivaUpForFile } from './helpers/aiva-up.js';
import { assertAccessible } from './helpers/console-accessibility.js';
import { consoleBrowserForFile, signedInPage, until } from './helpers/console-browser.js';

const server = aivaUpForFile();
const WAIT_MS = 20_000;
/** A build from the cached base takes seconds; the first on a fresh store, longer. */
const BUILD_MS = 5 * 60_000;
const NAV_ALL = [
  'Sandboxes',
  'Dashboard',
  'Templates',
  'Snapshots',
  'Environments',
  'API keys',
  'Usage',
  'Events',
  'Audit',
];

const ui = consoleBrowserForFile('console-pages');

async function navLabels(page: Page): Promise<string[]> {
  return (await page.getByRole('navigation', { name: 'Main' }).getByRole('link').allTextContents()).map((t) =>
    t.trim(),
  );
}

async function openFromNav(page: Page, label: string, heading: string | RegExp): Promise<void> {
  await page
    .getByRole('navigation', { name: 'Main' })
    .getByRole('link', { name: label, exact: true })
    .click();
  await page.getByRole('heading', { level: 1, name: heading }).waitFor({ timeout: WAIT_MS });
}

async function api(method: string, path: string, key: string, body?: unknown) {
  const res = await fetch(`${server.up.url}${path}`, {
    method,
    headers: { 'x-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

describe('console resource pages', () => {
  let context: BrowserContext;
  let page: Page;
  let errors: string[];

  before(async () => {
    context = await ui.browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.up.url });
    ({ page, errors } = await signedInPage(context, server.up.url, server.up.apiKey, WAIT_MS));
  });
  after(async () => context?.close());

  test('the nav has every resource page this server has; each passes axe, light and dark', async () => {
    // `aiva up` is one node, not a cluster: no Nodes entry even for the operator's key.
    assert.deepEqual(await navLabels(page), NAV_ALL);
    // By keyboard: from the brand, Tab three times (Sandboxes, Dashboard) is Templates, and Enter opens it.
    await page.locator('a.brand').focus();
    for (let i = 0; i < 3; i++) await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Templates' }).waitFor({ timeout: WAIT_MS });
    const pages: [string, string | RegExp][] = [
      ['Templates', 'Templates'],
      ['Snapshots', 'Snapshots'],
      ['Environments', 'Environments'],
      ['API keys', 'API keys'],
      ['Usage', 'Usage and cost'],
      ['Events', 'Events'],
      ['Audit', 'Audit log'],
    ];
    for (const [label, heading] of pages) {
      await openFromNav(page, label, heading);
      await page.getByText('Loading…').waitFor({ state: 'detached', timeout: WAIT_MS });
      const name = label.toLowerCase().replace(/ /g, '-');
      await page.emulateMedia({ colorScheme: 'light' });
      await ui.screenshot(page, name);
      await assertAccessible(page, `the ${label} page`);
      await page.emulateMedia({ colorScheme: 'dark' });
      await ui.screenshot(page, `${name}-dark`);
      await assertAccessible(page, `the ${label} page, dark`);
    }
    await page.emulateMedia({ colorScheme: 'light' });
    // The operator on a server without nodes: the page says so, and asks nothing.
    await page.goto(`${server.up.url}/ui/nodes`);
    await page.getByText(/not a cluster/).waitFor({ timeout: WAIT_MS });
    assert.deepEqual(errors.splice(0), [], 'console errors');
  });

  test('an API key made in the page works from Node (200); revoked in the page, it is refused (401)', async () => {
    await openFromNav(page, 'API keys', 'API keys');
    await page.getByLabel('Name', { exact: true }).fill('from-the-console');
    await page.getByLabel('sandboxes and snapshots').check();
    await page.getByLabel('Expires').selectOption({ label: 'in a day' });
    await page.getByRole('button', { name: 'Create key' }).click();
    const field = page.getByLabel('The new API key');
    await field.waitFor({ timeout: WAIT_MS });
    const key = await field.inputValue();
    assert.match(key, /^e2b_[0-9a-f]{40}$/);
    await page.getByRole('button', { name: 'Copy', exact: true }).click();
    await page.getByRole('button', { name: 'Copied' }).waitFor({ timeout: WAIT_MS });
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), key);
    await ui.screenshot(page, 'api-key-made');
    await assertAccessible(page, 'the API keys page with a new key');
    const row = page.locator('tr[data-key="from-the-console"]');
    assert.match((await row.textContent()) ?? '', /sandboxes/);
    // Shown once: after Done the page has it nowhere, and the list never had it.
    await page.getByRole('button', { name: 'Done' }).click();
    assert.equal(await page.getByLabel('The new API key').count(), 0);
    assert.ok(!(await page.content()).includes(key));

    assert.equal((await api('GET', '/v2/sandboxes', key)).status, 200);
    // Its scope is the sandboxes: the keys are not its business.
    assert.equal((await api('GET', '/v1/keys', key)).status, 403);

    await row.getByRole('button', { name: 'Revoke from-the-console' }).click();
    await row.getByRole('button', { name: 'Confirm revoke from-the-console' }).click();
    await row.waitFor({ state: 'detached', timeout: WAIT_MS });
    await page.getByText('Revoked key from-the-console').waitFor();
    assert.equal((await api('GET', '/v2/sandboxes', key)).status, 401);
    assert.deepEqual(errors.splice(0), [], 'console errors');
  });

  test('a template built from a Dockerfile in the page streams its log to ready; the SDK starts it', async () => {
    await openFromNav(page, 'Templates', 'Templates');
    await page.getByRole('link', { name: 'Build from a Dockerfile' }).click();
    await page.getByLabel('Name').fill('console-hi');
    // `RUN echo hi > /hi` is cached after the first run; a step of this run's own is not, so
    // the build takes a few seconds and its log is seen while it runs.
    const nonce = `${process.pid}-${Date.now()}`;
    await page
      .getByRole('textbox', { name: 'Dockerfile' })
      .fill(`FROM base\nRUN echo hi > /hi\nRUN echo ${nonce} > /nonce\n`);
    await page.getByLabel('vCPUs').fill('1');
    await page.getByLabel('Memory (MiB)').fill('512');
    await assertAccessible(page, 'the build form');
    await page.getByRole('button', { name: 'Build' }).click();
    await page.waitForURL(/\/ui\/templates\/[a-z0-9]+\/builds\/[a-z0-9-]+$/, { timeout: WAIT_MS });
    const log = page.getByRole('log', { name: 'Build log' });
    // The log grows while the build runs: lines are seen before it is ready.
    const status = page.locator('.state');
    let seenWhileBuilding = 0;
    await until(
      'the build to be ready',
      async () => {
        const s = (await status.textContent()) ?? '';
        assert.notEqual(s, 'error', (await log.textContent()) ?? '');
        if (s !== 'ready')
          seenWhileBuilding = Math.max(seenWhileBuilding, await log.locator('.log-line').count());
        return s === 'ready';
      },
      BUILD_MS,
    );
    assert.ok(seenWhileBuilding > 0, 'log lines shown before the build was ready');
    const text = (await log.textContent()) ?? '';
    assert.match(text, /RUN echo hi > \/hi/);
    assert.match(text, /Build finished/);
    await ui.screenshot(page, 'template-build-log');
    await assertAccessible(page, 'a build log');

    await page.getByRole('link', { name: '← Template' }).click();
    await page.getByRole('heading', { name: 'Template console-hi' }).waitFor({ timeout: WAIT_MS });
    assert.match((await page.locator('table').textContent()) ?? '', /ready/);
    await ui.screenshot(page, 'template-detail');
    await assertAccessible(page, 'a template page');

    const sbx = await Sandbox.create('console-hi');
    try {
      assert.equal(await sbx.files.read('/hi'), 'hi\n');
      // As the e2b SDK's Dockerfile parser leaves it: user, in /home/user.
      assert.equal(await sbx.files.read('/nonce'), `${nonce}\n`);
      assert.equal((await sbx.commands.run('echo "$(whoami) $(pwd)"')).stdout.trim(), 'user /home/user');
    } finally {
      await sbx.kill();
    }
    // Its own layer is not left in the shared image store.
    assert.equal((await api('DELETE', '/templates/console-hi', server.up.apiKey)).status, 204);
    assert.deepEqual(errors.splice(0), [], 'console errors');
  });

  test('a Dockerfile the form cannot build is refused with its reason, and nothing is made', async () => {
    await page.goto(`${server.up.url}/ui/templates/new`);
    await page.getByLabel('Name').fill('console-copy');
    await page.getByRole('textbox', { name: 'Dockerfile' }).fill('FROM base\nCOPY app /app\n');
    await page.getByRole('button', { name: 'Build' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor({ timeout: WAIT_MS });
    assert.match((await alert.textContent()) ?? '', /line 2: COPY needs files from a build context/);
    const templates = (await api('GET', '/templates', server.up.apiKey)).body as { names: string[] }[];
    assert.ok(!templates.some((t) => t.names.includes('console-copy')));
    assert.deepEqual(errors.splice(0), [], 'console errors');
  });

  test('snapshots: listed, a sandbox started from one, deleted from the page', async () => {
    const src = await Sandbox.create('base');
    let snapshotId: string;
    try {
      await src.files.write('/home/user/mark.txt', 'kept');
      snapshotId = (await src.createSnapshot({ name: 'console-snap' })).snapshotId;
    } finally {
      await src.kill();
    }
    await openFromNav(page, 'Snapshots', 'Snapshots');
    const row = page.locator(`tr[data-snapshot="${snapshotId}"]`);
    await row.waitFor({ timeout: WAIT_MS });
    await ui.screenshot(page, 'snapshots-one');
    await assertAccessible(page, 'the snapshots page with a snapshot');

    await row.getByRole('button', { name: `New sandbox from ${snapshotId}` }).click();
    await page.waitForURL(/\/ui\/sandboxes\/[a-z0-9]+$/, { timeout: WAIT_MS });
    const made = new URL(page.url()).pathname.split('/').pop() as string;
    await page.getByRole('heading', { level: 1, name: new RegExp(made) }).waitFor({ timeout: WAIT_MS });
    // Away from its page before it ends (its page would ask for it after).
    await openFromNav(page, 'Snapshots', 'Snapshots');
    const sbx = await Sandbox.connect(made);
    try {
      assert.equal(await sbx.files.read('/home/user/mark.txt'), 'kept');
    } finally {
      await sbx.kill();
    }

    await row.getByRole('button', { name: `Delete ${snapshotId}` }).click();
    await row.getByRole('button', { name: `Confirm delete ${snapshotId}` }).click();
    await row.waitFor({ state: 'detached', timeout: WAIT_MS });
    const left = (await api('GET', '/snapshots', server.up.apiKey)).body as { snapshotID: string }[];
    assert.ok(!left.some((s) => s.snapshotID === snapshotId), 'the snapshot is gone from the API');
    assert.deepEqual(errors.splice(0), [], 'console errors');
  });

  test('events, audit and usage show what this file did', async () => {
    await openFromNav(page, 'Events', 'Events');
    await page.locator('tr[data-event="sandbox.lifecycle.killed"]').first().waitFor({ timeout: WAIT_MS });
    const times: number[] = [];
    for (const t of await page.locator('tr[data-event] time').all())
      times.push(Date.parse((await t.getAttribute('datetime')) ?? ''));
    assert.deepEqual(
      times,
      [...times].sort((a, b) => b - a),
      'newest first',
    );

    await openFromNav(page, 'Audit', 'Audit log');
    for (const action of ['key.create', 'key.delete', 'template.build', 'snapshot.create'])
      await page.locator(`tr[data-action="${action}"]`).first().waitFor({ timeout: WAIT_MS });
    // The newest entry is the last change this page's session made: the snapshot's delete.
    assert.match((await page.locator('tbody tr').first().textContent()) ?? '', /template\.delete/);

    await openFromNav(page, 'Usage', 'Usage and cost');
    await page.getByLabel('Group by').selectOption('template');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.getByRole('table').getByText('by template').waitFor({ timeout: WAIT_MS });
    assert.match((await page.locator('tfoot').textContent()) ?? '', /^Total/);
    // The operator's report says whose each row is.
    await page.getByRole('columnheader', { name: 'Team' }).waitFor();
    await ui.screenshot(page, 'usage-by-template');
    assert.deepEqual(errors.splice(0), [], 'console errors');
  });
});

describe('console resource pages for other keys', () => {
  test('another team’s key sees no Nodes entry (the page says operators only); a sandboxes-only key sees its pages alone', async () => {
    const team = await api('POST', '/v1/teams', server.up.apiKey, { name: 'console-pages-team' });
    assert.equal(team.status, 201);
    const teamKey = team.body.key as string;
    const scoped = await api('POST', '/v1/keys', server.up.apiKey, {
      name: 'sandboxes-only',
      scopes: ['sandboxes'],
    });
    assert.equal(scoped.status, 201);

    const context = await ui.browser.newContext({
      viewport: { width: 1280, height: 800 },
      colorScheme: 'dark',
    });
    try {
      const { page, errors } = await signedInPage(context, server.up.url, teamKey, WAIT_MS);
      // A full key of a team that is not the operator's: every page but the nodes.
      assert.deepEqual(await navLabels(page), NAV_ALL);
      await page.goto(`${server.up.url}/ui/nodes`);
      await page.getByText(/^Operators only/).waitFor({ timeout: WAIT_MS });
      await ui.screenshot(page, 'nodes-operators-only');
      await assertAccessible(page, 'the nodes page for another team');
      assert.deepEqual(errors.splice(0), [], 'console errors');
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByLabel('API key').waitFor({ timeout: WAIT_MS });
      // Signed in at `/`, the console opens the sandboxes (at /ui/nodes it would stay there).
      await page.goto(server.up.url);
      await page.getByLabel('API key').waitFor({ timeout: WAIT_MS });
      const signedOut = errors.findIndex((e) => e.includes('status of 401'));
      if (signedOut >= 0) errors.splice(signedOut, 1);
      await page.getByLabel('API key').fill(scoped.body.key);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('heading', { name: 'Sandboxes' }).waitFor({ timeout: WAIT_MS });
      assert.deepEqual(await navLabels(page), [
        'Sandboxes',
        'Dashboard',
        'Snapshots',
        'Environments',
        'Events',
      ]);
      // A page its scopes do not open says so, and asks the server nothing (no 403 in the console).
      await page.goto(`${server.up.url}/ui/keys`);
      await page.getByText(/scopes do not open this page/).waitFor({ timeout: WAIT_MS });
      await assertAccessible(page, 'a page the key may not see');
      assert.deepEqual(errors.splice(0), [], 'console errors');
    } finally {
      await context.close();
    }
  });
});
