// The browser template against `aiva up` on containers: Chromium's DevTools Protocol on
// port 9222, reached as E2B users reach any port, at sandbox.getHost(9222) through aiva's
// proxy. Playwright's connectOverCDP opens a page that another process in the same
// sandbox serves and reads its title; a download lands in the sandbox.
//
// aiva serves its domain over plain HTTP here (`--no-tls`, as desktop.test.ts says why),
// and names under it are asked of aiva's own DNS listener (helpers/test-domain-resolver,
// loaded into this process once the listener's address is known).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from 'e2b';
import { type Browser, chromium } from 'playwright-core';
import { aivaUpForFile, templateBuiltForFile } from './helpers/aiva-up.js';

const DOMAIN = 'aiva.test';

templateBuiltForFile('browser');
const aiva = aivaUpForFile(['--domain', DOMAIN, '--no-tls', '--dns-listen', '127.0.0.1:0']);

const SITE = {
  'index.html':
    '<!doctype html><html><head><title>served in the sandbox</title></head><body><a id="report" href="report.csv" download>report</a></body></html>',
  'report.csv': 'name,value\nanswer,42\n',
};

describe('the browser template: Chromium over CDP through the proxy', () => {
  let sbx: Sandbox;
  let cdp: Browser | undefined;
  let endpoint = '';

  before(async () => {
    const dns = new RegExp(`DNS: aiva answers for ${DOMAIN} .* at (127\\.0\\.0\\.1:\\d+) `).exec(
      aiva.up.output(),
    )?.[1];
    assert.ok(dns, aiva.up.output());
    process.env.AIVA_TEST_DOMAIN = DOMAIN;
    process.env.AIVA_TEST_DNS = dns;
    await import('./helpers/test-domain-resolver.js');
    process.env.E2B_DOMAIN = DOMAIN;
    sbx = await Sandbox.create('browser', { timeoutMs: 300_000 });
    endpoint = `http://${sbx.getHost(9222)}:${new URL(aiva.up.url).port}`;
  });

  after(async () => {
    await cdp?.close();
    await sbx?.kill();
  });

  test('Chromium is listening when the create returns; its DevTools answer with addresses the client can use', async () => {
    assert.equal(sbx.getHost(9222), `9222-${sbx.sandboxId}.${DOMAIN}`);
    const res = await fetch(`${endpoint}/json/version`);
    assert.equal(res.status, 200);
    const version = (await res.json()) as { Browser: string; webSocketDebuggerUrl: string };
    assert.match(version.Browser, /^(Headless)?Chrome\/\d+\./);
    assert.match(
      version.webSocketDebuggerUrl,
      new RegExp(`^ws://9222-${sbx.sandboxId}\\.aiva\\.test:\\d+/devtools/browser/[0-9a-f-]+$`),
    );
  });

  test('connectOverCDP at getHost(9222) opens a page another process in the sandbox serves', async () => {
    for (const [name, content] of Object.entries(SITE))
      await sbx.files.write(`/home/user/site/${name}`, content);
    await sbx.commands.run('python3 -m http.server 8000 --bind 127.0.0.1 --directory /home/user/site', {
      background: true,
    });
    await sbx.commands.run(
      'for i in $(seq 1 50); do curl -sf -o /dev/null http://127.0.0.1:8000/ && exit 0; sleep 0.1; done; exit 1',
    );
    cdp = await chromium.connectOverCDP(endpoint);
    assert.match(cdp.version(), /^\d+\./);
    const context = cdp.contexts()[0];
    assert.ok(context, 'the default context of the running Chromium');
    const page = await context.newPage();
    const response = await page.goto('http://127.0.0.1:8000/');
    assert.equal(response?.status(), 200);
    assert.equal(await page.title(), 'served in the sandbox');
  });

  test('a download lands in the sandbox', async () => {
    assert.ok(cdp, 'connected by the test before');
    const context = cdp.contexts()[0];
    assert.ok(context);
    // Playwright points a browser it connected to at a directory of the client's; here
    // the browser's own downloads directory in the sandbox is asked for instead.
    const session = await cdp.newBrowserCDPSession();
    await session.send('Browser.setDownloadBehavior', {
      behavior: 'allow',
      downloadPath: '/home/user/Downloads',
    });
    const page =
      context.pages().find((p) => p.url().startsWith('http://127.0.0.1:8000')) ?? (await context.newPage());
    if (!page.url().startsWith('http://127.0.0.1:8000')) await page.goto('http://127.0.0.1:8000/');
    await page.click('#report');
    const deadline = Date.now() + 30_000;
    let saved = '';
    while (Date.now() < deadline) {
      saved = await sbx.files.read('/home/user/Downloads/report.csv').catch(() => '');
      if (saved !== '') break;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.equal(saved, SITE['report.csv']);
  });
});
