import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { signalOfStatus } from '@aiva/node';
import { sandboxCommandLine, shellExitCode, shellQuote, shellQuoteArgv } from '../src/command-line.js';

/** What `shell -c line` prints and exits with, on this host. */
function run(shell: string, line: string) {
  const r = spawnSync(shell, ['-c', line], { encoding: 'utf8' });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

// Arguments a shell would otherwise split, expand, glob or end a quote on.
const awkward = [
  '',
  ' ',
  'plain',
  "it's",
  "''",
  "'\\''",
  '"double"',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, meant literally
  '$HOME $(id -un) `id -un` ${PATH}',
  '*',
  '~',
  'a\\b',
  'tab\there',
  'new\nline',
  '; exit 9',
  '&& false || true',
  '-n',
  '--',
  '!',
  'ünïcödé ✓',
];

describe('shellQuote', () => {
  it('single-quotes, writing each quote as close-escape-reopen', () => {
    assert.equal(shellQuote('abc'), "'abc'");
    assert.equal(shellQuote(''), "''");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    assert.equal(shellQuote("'"), "''\\'''");
    assert.equal(shellQuote('$x `y` "z"'), '\'$x `y` "z"\'');
    assert.equal(shellQuoteArgv(['sh', '-c', 'echo ok-$(id -un)']), "'sh' '-c' 'echo ok-$(id -un)'");
    assert.equal(shellQuoteArgv([]), '');
  });

  for (const shell of ['sh', 'bash']) {
    it(`gives ${shell} back every argument as it was`, () => {
      const r = run(shell, `printf '%s\\0' ${shellQuoteArgv(awkward)}`);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.split('\0').slice(0, -1), awkward);
    });
  }
});

describe('sandboxCommandLine (run by bash -c, as envd runs commands)', () => {
  it('runs the argv exactly: a sh -c script is one argument', () => {
    const r = run('bash', sandboxCommandLine(['sh', '-c', 'echo ok-$(echo user)']));
    assert.deepEqual([r.code, r.stdout], [0, 'ok-user\n']);
    const args = run('bash', sandboxCommandLine(['printf', '%s\\0', ...awkward]));
    assert.deepEqual(args.stdout.split('\0').slice(0, -1), awkward);
  });

  it("exits with the command's exit code", () => {
    assert.equal(run('bash', sandboxCommandLine(['sh', '-c', 'exit 3'])).code, 3);
    assert.equal(run('bash', sandboxCommandLine(['false'])).code, 1);
    assert.equal(run('bash', sandboxCommandLine(['true'])).code, 0);
  });

  it('execs the program, so a signal that kills it is seen as such', () => {
    const r = run('bash', sandboxCommandLine(['sh', '-c', 'kill -TERM $$']));
    assert.equal(r.signal, 'SIGTERM');
  });

  it('says clearly that a program is not there, and exits 127', () => {
    for (const name of ['no-such-program', '/no/such/program', "it's-not-here"]) {
      const r = run('bash', sandboxCommandLine([name, 'arg']));
      assert.equal(r.code, 127, name);
      assert.equal(r.stderr, `aiva: ${name}: command not found in the sandbox\n`);
    }
    // A shell builtin is no program: docker run cannot run `cd` either.
    assert.equal(run('bash', sandboxCommandLine(['cd', '/'])).code, 127);
  });

  it('lets the shell say why a file that is there cannot run (126)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'aiva-cli-'));
    try {
      const file = join(dir, 'not-executable');
      writeFileSync(file, 'echo no\n', { mode: 0o644 });
      const r = run('bash', sandboxCommandLine([file]));
      assert.equal(r.code, 126);
      assert.match(r.stderr, /not-executable: cannot execute: Permission denied/);
      const d = run('bash', sandboxCommandLine([dir]));
      assert.equal(d.code, 126);
      assert.match(d.stderr, /Is a directory/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('takes a program whose name starts with a dash as a program', () => {
    const r = run('bash', sandboxCommandLine(['-x']));
    assert.equal(r.code, 127);
    assert.equal(r.stderr, 'aiva: -x: command not found in the sandbox\n');
  });

  it('refuses an empty argv', () => {
    assert.throws(() => sandboxCommandLine([]), /no command/);
  });
});

describe('shellExitCode', () => {
  it('is the exit code, or 128 + the signal that killed the command', () => {
    assert.equal(shellExitCode({ exitCode: 0 }), 0);
    assert.equal(shellExitCode({ exitCode: 3 }), 3);
    assert.equal(shellExitCode({ exitCode: -1, signal: 'SIGKILL' }), 137);
    assert.equal(shellExitCode({ exitCode: -1, signal: 'SIGTERM' }), 143);
    assert.equal(shellExitCode({ exitCode: -1, signal: 'SIGINT' }), 130);
    assert.equal(shellExitCode({ exitCode: -1 }), 255);
  });

  it("reads the signal from envd's end status (Go's signal names)", () => {
    assert.equal(signalOfStatus('signal: killed'), 'SIGKILL');
    assert.equal(signalOfStatus('signal: terminated'), 'SIGTERM');
    assert.equal(signalOfStatus('signal: segmentation fault'), 'SIGSEGV');
    assert.equal(signalOfStatus('signal: user defined signal 1'), 'SIGUSR1');
    assert.equal(signalOfStatus('signal: sigwinch'), 'SIGWINCH');
    assert.equal(signalOfStatus('signal: signal 10'), 'SIGUSR1');
    assert.equal(signalOfStatus('exit status 1'), undefined);
    assert.equal(signalOfStatus('signal: nonsense'), undefined);
  });
});
