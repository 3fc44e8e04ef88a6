// sandbox.pty through the real e2b SDK: a login shell on a pseudo-terminal.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CommandExitError } from 'e2b';
import { eventually, sdk, useSandbox } from './helpers/sandbox.js';

const sandbox = useSandbox();
const encode = (s: string) => new TextEncoder().encode(s);

/** Collects PTY output and waits for text to appear in it. */
class Screen {
  text = '';
  readonly onData = (d: Uint8Array) => {
    this.text += new TextDecoder().decode(d);
  };
  async waitFor(pattern: RegExp, what: string): Promise<RegExpExecArray> {
    let m: RegExpExecArray | null = null;
    await eventually(
      () => {
        m = pattern.exec(this.text);
        return m !== null;
      },
      `${what} (screen so far: ${JSON.stringify(this.text.slice(-300))})`,
    );
    return m as unknown as RegExpExecArray;
  }
}

describe('pty', () => {
  test('create: an interactive login shell of the user on a terminal of the asked size', async () => {
    const sbx = await sdk();
    const screen = new Screen();
    const pty = await sbx.pty.create({ cols: 123, rows: 45, onData: screen.onData });
    await sbx.pty.sendInput(pty.pid, encode('tty; stty size; tput cols; id -un; echo "T=$TERM"; exit\n'));
    const r = await pty.wait();
    assert.equal(r.exitCode, 0);
    assert.match(screen.text, /\/dev\/pts\/\d+/);
    assert.match(screen.text, /\r\n45 123\r\n/);
    assert.match(screen.text, /\r\n123\r\n/);
    assert.match(screen.text, /\r\nuser\r\n/);
    assert.match(screen.text, /T=xterm-256color/);
  });

  test('resize: the shell sees the new size (tput cols)', async () => {
    const sbx = await sdk();
    const screen = new Screen();
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: screen.onData });
    await sbx.pty.sendInput(pty.pid, encode('echo "A$(tput cols)A"\n'));
    await screen.waitFor(/A80A/, 'the first width');
    await sbx.pty.resize(pty.pid, { cols: 150, rows: 50 });
    await sbx.pty.sendInput(pty.pid, encode('echo "B$(tput cols)x$(tput lines)B"\n'));
    await screen.waitFor(/B150x50B/, 'the new width');
    await sbx.pty.sendInput(pty.pid, encode('exit\n'));
    await pty.wait();
  });

  test('input: the terminal echoes, signals Ctrl-C to the foreground job, and Ctrl-D ends the shell', async (t) => {
    const s = sandbox();
    const sbx = await sdk();
    const screen = new Screen();
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: screen.onData });
    // A failure must not leave the shell (and its sleep) to the tests after this one.
    t.after(() => sbx.pty.kill(pty.pid).catch(() => false));
    await sbx.pty.sendInput(pty.pid, encode('sleep 600\n'));
    await screen.waitFor(/sleep 600\r\n/, 'the echoed command');
    // Ctrl-C reaches the terminal's foreground process group: until the shell has made
    // the sleep's the foreground one (`+` in ps's STAT), it would interrupt the shell.
    await eventually(
      async () =>
        /\+/.test((await s.exec(['ps', '-o', 'stat=', '-C', 'sleep']).catch(() => ({ stdout: '' }))).stdout),
      'the sleep in the foreground',
    );
    await sbx.pty.sendInput(pty.pid, encode('\x03'));
    await screen.waitFor(/\^C/, 'the interrupted sleep');
    await sbx.pty.sendInput(pty.pid, encode('echo "after $?"\n'));
    await screen.waitFor(/after 130/, 'the exit status of the interrupted sleep');
    await sbx.pty.sendInput(pty.pid, encode('\x04'));
    const r = await pty.wait();
    assert.equal(r.exitCode, 0);
  });

  test('kill: the shell dies with SIGKILL and the PTY relay goes too', async () => {
    const s = sandbox();
    const sbx = await sdk();
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: () => {} });
    assert.equal(await sbx.pty.kill(pty.pid), true);
    await assert.rejects(
      pty.wait(),
      (e: unknown) => e instanceof CommandExitError && e.error === 'signal: killed',
    );
    await eventually(async () => (await s.envdChildren()).length === 0, 'the relay to exit');
    assert.equal(await sbx.pty.kill(pty.pid), false);
  });

  test('reconnect: another client attaches to a running terminal and sees new output', async () => {
    const sbx = await sdk();
    const first = new Screen();
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: first.onData });
    await pty.disconnect();
    const other = await sdk();
    const second = new Screen();
    const again = await other.pty.connect(pty.pid, { onData: second.onData });
    assert.equal(again.pid, pty.pid);
    await other.pty.sendInput(pty.pid, encode('echo "re$((40+2))"\n'));
    await second.waitFor(/re42/, 'output after reconnecting');
    assert.doesNotMatch(first.text, /re42/, 'the disconnected handle gets nothing');
    await other.pty.sendInput(pty.pid, encode('exit 5\n'));
    await assert.rejects(again.wait(), (e: unknown) => e instanceof CommandExitError && e.exitCode === 5);
  });

  test('background jobs of a PTY shell do not keep the terminal session alive', async () => {
    const s = sandbox();
    const sbx = await sdk();
    const screen = new Screen();
    const pty = await sbx.pty.create({ cols: 80, rows: 24, onData: screen.onData });
    await sbx.pty.sendInput(pty.pid, encode('nohup sleep 600 >/dev/null 2>&1 &\nexit\n'));
    await pty.wait();
    await eventually(async () => (await s.envdChildren()).length === 0, 'the relay to exit');
    await s.exec(['pkill', '-f', 'sleep 600']);
    await eventually(async () => (await s.zombies()).length === 0, 'no zombies');
  });
});
