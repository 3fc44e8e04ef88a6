import assert from 'node:assert/strict';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DELIMITER, MessageCodec, WireError } from '../src/jupyter-wire.js';
import { builtinSpec, kernelSpecFor, normaliseLanguage, UnknownLanguageError } from '../src/kernel-specs.js';
import { MAX_STREAM_TEXT, resultFields, splitStreamText } from '../src/output-lines.js';
import { envRestoreCode, envSetCode, envVarsProblem, usableEnvVars } from '../src/run-env.js';

describe('Jupyter wire messages', () => {
  it('round-trip signed, with the HMAC Jupyter computes over the four dicts', () => {
    const codec = new MessageCodec('secret', 'session-1');
    const msg = codec.request('execute_request', { code: 'x = 1' });
    const frames = codec.encode(msg);
    assert.equal(frames[0]?.toString(), DELIMITER);
    assert.equal(frames.length, 6);
    const back = codec.decode([Buffer.from('routing-id'), ...frames]);
    assert.deepEqual(back.header, msg.header);
    assert.deepEqual(back.content, { code: 'x = 1' });
    assert.equal(back.header.version, '5.3');
    assert.equal(back.header.session, 'session-1');
  });

  it('refuse a wrong signature, a missing delimiter and missing frames', () => {
    const codec = new MessageCodec('secret');
    const frames = codec.encode(codec.request('kernel_info_request', {}));
    const other = new MessageCodec('another key');
    assert.throws(() => other.decode(frames), WireError);
    assert.throws(() => codec.decode(frames.slice(1)), /delimiter/);
    assert.throws(() => codec.decode(frames.slice(0, 4)), /frames/);
  });
});

describe('results', () => {
  it('map MIME types to E2B fields; unknown ones go under extra', () => {
    const r = resultFields({
      'text/plain': "'abc'",
      'text/html': '<b>x</b>',
      'image/png': 'iVBOR',
      'application/json': { a: 1 },
      'application/x-custom': 'y',
    });
    assert.deepEqual(r, {
      text: 'abc',
      html: '<b>x</b>',
      png: 'iVBOR',
      json: { a: 1 },
      extra: { 'application/x-custom': 'y' },
    });
    assert.equal(resultFields({ 'text/plain': '2' }).text, '2');
    assert.equal(resultFields({ 'text/plain': '"' }).text, '"');
    assert.deepEqual(resultFields({}), { extra: {} });
  });

  it('cut long stream text into bounded pieces that join to the original', () => {
    const long = 'a'.repeat(MAX_STREAM_TEXT * 2 + 5);
    const pieces = splitStreamText(long);
    assert.equal(pieces.length, 3);
    assert.equal(pieces.join(''), long);
    const emoji = `${'b'.repeat(9)}😀`;
    const split = splitStreamText(emoji, 10);
    assert.equal(split.join(''), emoji);
    assert.ok(split.every((p) => !/[\ud800-\udbff]$/.test(p)));
  });
});

describe('languages', () => {
  it('normalise as E2B does', () => {
    assert.equal(normaliseLanguage(undefined), 'python');
    assert.equal(normaliseLanguage(' Python '), 'python');
    assert.equal(normaliseLanguage('js'), 'javascript');
    assert.equal(normaliseLanguage('TS'), 'typescript');
  });

  it('find kernelspecs on the data path and refuse unknown languages', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ci-specs-'));
    await mkdir(join(dir, 'python3'));
    await writeFile(
      join(dir, 'python3', 'kernel.json'),
      JSON.stringify({ argv: ['python3', '-f', '{connection_file}'] }),
    );
    const spec = await kernelSpecFor('python', [join(dir, 'missing'), dir]);
    assert.equal(spec.name, 'python3');
    assert.deepEqual(spec.argv, ['python3', '-f', '{connection_file}']);
    await assert.rejects(kernelSpecFor('cobol', [dir]), UnknownLanguageError);
    await assert.rejects(kernelSpecFor('r', [dir]), /No kernel for language "r"/);
  });

  it('serve bash with the kernel this server carries unless a bash kernelspec is installed', async () => {
    const guest = join(import.meta.dirname, '..', '..', 'guest');
    const dir = await mkdtemp(join(tmpdir(), 'ci-specs-'));
    const carried = await kernelSpecFor('bash', [dir], (name) => builtinSpec(name, guest));
    assert.deepEqual(carried.argv, ['python3', join(guest, 'bash_kernel.py'), '-f', '{connection_file}']);
    assert.equal(builtinSpec('bash', dir), undefined);
    await assert.rejects(
      kernelSpecFor('bash', [dir], () => undefined),
      /No kernel for language "bash"/,
    );
    await mkdir(join(dir, 'bash'));
    await writeFile(
      join(dir, 'bash', 'kernel.json'),
      JSON.stringify({ argv: ['mybash', '{connection_file}'] }),
    );
    const installed = await kernelSpecFor('bash', [dir], (name) => builtinSpec(name, guest));
    assert.deepEqual(installed.argv, ['mybash', '{connection_file}']);
  });

  it('refuse java with the reason, short enough for a reason phrase', async () => {
    const e = await kernelSpecFor('java', []).catch((e: Error) => e);
    assert.ok(e instanceof UnknownLanguageError);
    assert.match(e.message, /^No Java kernel in this template: /);
    assert.ok(e.message.length <= 200);
  });
});

describe('run environment', () => {
  it('sets and restores variables as Python code, quoting values', () => {
    assert.equal(envSetCode('python', {}), '');
    const set = envSetCode('python', { FOO: 'it\'s "q"\n' });
    assert.match(set, /environ\["FOO"\] = "it's \\"q\\"\\n"/);
    const restore = envRestoreCode('python', { FOO: 'x', BAR: 'y' }, { BAR: 'sandbox' });
    assert.match(restore, /environ\.pop\("FOO", None\)/);
    assert.match(restore, /environ\["BAR"\] = "sandbox"/);
    assert.throws(
      () => envSetCode('java', { A: 'b' }),
      /supported for python, javascript, typescript, bash, r/,
    );
  });

  it('sets and restores variables as JavaScript code for javascript and typescript', () => {
    assert.equal(envSetCode('typescript', {}), '');
    assert.equal(envSetCode('javascript', { FOO: 'it\'s "q"' }), 'process.env["FOO"] = "it\'s \\"q\\"";');
    assert.equal(
      envRestoreCode('typescript', { FOO: 'x', BAR: 'y' }, { BAR: 'sandbox' }),
      'delete process.env["FOO"]; process.env["BAR"] = "sandbox";',
    );
  });

  it('sets and restores variables as bash code, single-quoted', () => {
    assert.equal(
      envSetCode('bash', { FOO: "it's $HOME `x`", B: '' }),
      "export FOO='it'\\''s $HOME `x`'\nexport B=''",
    );
    assert.equal(
      envRestoreCode('bash', { FOO: 'x', BAR: 'y', B: '' }, { BAR: 'sb' }),
      "unset FOO B\nexport BAR='sb'",
    );
    assert.match(envVarsProblem('bash', { 'A-B': 'x' }) ?? '', /not a name bash can export/);
    assert.match(envVarsProblem('python', { 'A=B': 'x' }) ?? '', /not a valid environment variable/);
    assert.equal(envVarsProblem('python', { 'A-B': 'x' }), undefined);
    assert.deepEqual(usableEnvVars('bash', { 'A-B': 'x', OK: 'y' }), { OK: 'y' });
  });

  it('sets and restores variables as R code', () => {
    assert.equal(envSetCode('r', { FOO: 'a"b\\' }), 'invisible(Sys.setenv("FOO" = "a\\"b\\\\"))');
    assert.equal(
      envRestoreCode('r', { FOO: 'x', BAR: 'y' }, { BAR: 'sb' }),
      'invisible(Sys.unsetenv(c("FOO")))\ninvisible(Sys.setenv("BAR" = "sb"))',
    );
  });
});
