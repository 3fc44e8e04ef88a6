// The desktop template against `aiva up` on containers, driven by E2B's own
// `@e2b/desktop` SDK as a computer-use agent would: the desktop is drawn when the create
// returns (the template's start command), screenshots are PNGs of the whole screen,
// typing reaches an editor, a click changes the screen, and the SDK's noVNC stream loads
// through aiva's proxy in Debian's Chromium (driven by Playwright) with the VNC WebSocket
// connected.
//
// The stream's URL is `https://6080-<id>.<domain>/vnc.html`. aiva serves the domain here
// over plain HTTP (`--no-tls`) and Chromium loads the same host and path over http:// at
// aiva's port, with the domain mapped to 127.0.0.1: the SDK in this process cannot trust
// aiva's test CA (Node 20 reads NODE_EXTRA_CA_CERTS only at start, and the SDK connects
// through its own undici agent), and TLS by host name is host-routing.test.ts's subject.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from '@e2b/desktop';
import { type Browser, chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import { aivaUpForFile, templateBuiltForFile } from './helpers/aiva-up.js';

const DOMAIN = 'aiva.test';

// Minutes the first time (Xfce, Chromium), then cached in the shared image store.
templateBuiltForFile('desktop');
const aiva = aivaUpForFile(['--domain', DOMAIN, '--no-tls']);

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last error: ${last})`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

function decode(bytes: Uint8Array): PNG {
  return PNG.sync.read(Buffer.from(bytes));
}

/**
 * How many pixels differ between two screenshots of the same size, below the top panel
 * (whose clock changes by itself).
 */
function changedPixels(a: PNG, b: PNG): number {
  let changed = 0;
  for (let i = a.width * 4 * 40; i < a.data.length; i += 4) {
    if (a.data[i] !== b.data[i] || a.data[i + 1] !== b.data[i + 1] || a.data[i + 2] !== b.data[i + 2])
      changed++;
  }
  return changed;
}

describe('the desktop template through @e2b/desktop', () => {
  let desktop: Sandbox;
  let browser: Browser | undefined;

  before(async () => {
    // getHost(port) names the sandbox under this domain, as with E2B's cloud.
    process.env.E2B_DOMAIN = DOMAIN;
    const started = performance.now();
    desktop = await Sandbox.create({ timeoutMs: 300_000 });
    const created = performance.now();
    await desktop.screenshot();
    process.stderr.write(
      `# desktop: create ${((created - started) / 1000).toFixed(2)} s (SDK's Xvfb and Xfce checks included), first screenshot ${((performance.now() - created) / 1000).toFixed(2)} s\n`,
    );
  });

  after(async () => {
    await browser?.close();
    await desktop?.kill();
  });

  test('screenshot() is a PNG of the whole 1024x768 screen showing the drawn desktop', async () => {
    const bytes = await desktop.screenshot();
    assert.equal(Buffer.from(bytes).subarray(0, 8).toString('hex'), '89504e470d0a1a0a');
    const png = decode(bytes);
    assert.deepEqual([png.width, png.height], [1024, 768]);
    assert.deepEqual(await desktop.getScreenSize(), { width: 1024, height: 768 });
    const colours = new Set<number>();
    for (let i = 0; i < png.data.length; i += 4)
      colours.add(((png.data[i] ?? 0) << 16) | ((png.data[i + 1] ?? 0) << 8) | (png.data[i + 2] ?? 0));
    // A flat Xvfb screen is one colour; Xfce's backdrop, panel, icons and text are many.
    assert.ok(colours.size > 50, `only ${colours.size} colours on the screen`);
    // The session the template started is the one the SDK checked: one of each.
    const procs = await desktop.commands.run(
      'pgrep -c -x xfce4-session; pgrep -c -x xfwm4; pgrep -c -x Xvfb',
    );
    assert.equal(procs.stdout, '1\n1\n1\n');
  });

  test('a click changes the screen: a right click on the backdrop opens its menu', async () => {
    await desktop.moveMouse(700, 500);
    assert.deepEqual(await desktop.getCursorPosition(), { x: 700, y: 500 });
    const before = decode(await desktop.screenshot());
    // Where the pointer is (given the same place again, the SDK's `mousemove --sync`
    // waits for a move that never comes: xdotool gives up after ~15 s).
    await desktop.rightClick();
    const changed = await until('the screen to change after the click', async () => {
      const n = changedPixels(before, decode(await desktop.screenshot()));
      return n > 2000 ? n : undefined;
    });
    assert.ok(changed > 2000);
    await desktop.press('esc');
  });

  test('write() types into Mousepad, launched by the SDK; the saved file reads back', async () => {
    const file = '/home/user/hello.txt';
    await desktop.files.write(file, '');
    await desktop.launch('org.xfce.mousepad', file);
    const windows = await until('a Mousepad window', async () => {
      const ids = await desktop.getApplicationWindows('mousepad');
      return ids.filter((id) => id !== '').length > 0 ? ids : undefined;
    });
    const id = windows[0] ?? '';
    assert.match(await desktop.getWindowTitle(id), /hello\.txt/);
    await desktop.commands.run(`xdotool windowactivate --sync ${id}`);
    await until('Mousepad to have the focus', async () =>
      (await desktop.getCurrentWindowId()) === id ? true : undefined,
    );
    await desktop.write('hello');
    await desktop.press(['ctrl', 's']);
    const text = await until('the saved text', async () => {
      const t = await desktop.files.read(file);
      return t.trim() === 'hello' ? t : undefined;
    });
    assert.equal(text.trim(), 'hello');
    await desktop.press(['ctrl', 'q']);
  });

  test('open() shows a file in its default application (xdg-open: Mousepad for text)', async () => {
    await desktop.files.write('/home/user/opened.txt', 'opened by xdg-open\n');
    await desktop.open('/home/user/opened.txt');
    const id = await until('a window showing opened.txt', async () => {
      const r = await desktop.commands.run('xdotool search --onlyvisible --name opened.txt');
      return r.stdout.trim().split('\n')[0] || undefined;
    });
    assert.match(await desktop.getWindowTitle(id), /opened\.txt/);
    await desktop.commands.run(`xdotool windowactivate --sync ${id} key ctrl+q`);
  });

  test('drag() selects text in Mousepad (typing then replaces it); scroll() scrolls the text', async () => {
    const file = '/home/user/long.txt';
    const original = Array.from({ length: 300 }, (_, i) => `line ${i + 1}`).join('\n');
    await desktop.files.write(file, original);
    await desktop.launch('org.xfce.mousepad', file);
    const id = await until('a window showing long.txt', async () => {
      const r = await desktop.commands.run('xdotool search --onlyvisible --name long.txt');
      return r.stdout.trim().split('\n')[0] || undefined;
    });
    await desktop.commands.run(`xdotool windowactivate --sync ${id}`);
    // The window's client area on the screen (below its menu bar the text begins).
    const info = (await desktop.commands.run(`xwininfo -id ${id}`)).stdout;
    const field = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(info)?.[1]);
    const [x, y] = [field('Absolute upper-left X'), field('Absolute upper-left Y')];
    const [width, height] = [field('Width'), field('Height')];
    assert.ok(width > 300 && height > 300, info);

    await desktop.drag([x + 20, y + 120], [x + 250, y + 220]);
    await desktop.write('X');
    await desktop.press(['ctrl', 's']);
    const saved = await until('the file saved with the selection replaced', async () => {
      const t = await desktop.files.read(file);
      return t !== original ? t : undefined;
    });
    assert.ok(saved.includes('X'), saved.slice(0, 200));
    assert.ok(saved.split('\n').length < 300, 'lines selected by the drag were replaced');

    await desktop.moveMouse(x + Math.floor(width / 2), y + Math.floor(height / 2));
    const before = decode(await desktop.screenshot());
    await desktop.scroll('down', 5);
    const changed = await until('the text to scroll', async () => {
      const n = changedPixels(before, decode(await desktop.screenshot()));
      return n > 500 ? n : undefined;
    });
    assert.ok(changed > 500);
    await desktop.commands.run(`xdotool windowactivate --sync ${id} key ctrl+q`);
  });

  test('stream.start(): the noVNC page loads through aiva’s proxy and its VNC WebSocket connects', async () => {
    await desktop.stream.start({ requireAuth: true });
    const authKey = desktop.stream.getAuthKey();
    const url = new URL(desktop.stream.getUrl({ authKey }));
    assert.equal(url.protocol, 'https:');
    assert.equal(url.host, `6080-${desktop.sandboxId}.${DOMAIN}`);
    assert.equal(url.pathname, '/vnc.html');
    assert.equal(url.searchParams.get('password'), authKey);

    const port = new URL(aiva.up.url).port;
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [`--host-resolver-rules=MAP *.${DOMAIN} 127.0.0.1`],
    });
    const page = await browser.newPage();
    const response = await page.goto(`http://${url.hostname}:${port}${url.pathname}${url.search}`);
    assert.equal(response?.status(), 200);
    // noVNC marks the page connected once the VNC handshake (and its password) passed over
    // the WebSocket, and draws the remote screen at its size.
    await page.waitForFunction("document.documentElement.classList.contains('noVNC_connected')", null, {
      timeout: 60_000,
    });
    const size = await page.waitForFunction(
      "(() => { const c = document.querySelector('canvas'); return c && c.width === 1024 && c.height === 768 ? [c.width, c.height] : undefined })()",
      null,
      { timeout: 30_000 },
    );
    assert.deepEqual(await size.jsonValue(), [1024, 768]);

    // A wrong key is refused: the stream is not open to whoever finds the address.
    const other = await browser.newPage();
    const wrong = new URL(url);
    wrong.searchParams.set('password', 'not-the-key');
    await other.goto(`http://${url.hostname}:${port}${wrong.pathname}${wrong.search}`);
    await other.waitForFunction(
      "/failed|authentication/i.test(document.getElementById('noVNC_status')?.textContent ?? '')",
      null,
      { timeout: 30_000 },
    );
    assert.equal(
      await other.evaluate("document.documentElement.classList.contains('noVNC_connected')"),
      false,
    );
    await desktop.stream.stop();
  });
});
